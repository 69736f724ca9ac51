// Following GET /v1/events (CLI process and integration tests): JSON lines in order, resumed
// after the last one delivered whenever the connection drops, so no event is lost or repeated
// while the server still keeps the ones missed.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "client/api_client.h"

namespace jw::client {

struct EventStreamRequest {
  std::string job_id;             // "": every job the caller may see
  std::optional<uint64_t> since;  // resume after this seq; none: from now on
  // How long a dropped connection is retried (with back-off) before giving up; the window
  // restarts each time an event arrives.
  std::chrono::milliseconds retry_budget{30'000};
  // A silent stream is re-opened after this long (a half-open connection would hang forever).
  std::chrono::milliseconds idle_reconnect{60'000};
};

// One event: its JSON line (without the line end) and its seq. Return false to stop.
using EventSink = std::function<bool(std::string_view line, uint64_t seq)>;
// Told when events were missed (the server no longer keeps them: 410) before the stream goes on
// from the newest, and about reconnects; may be empty.
using EventNote = std::function<void(const std::string& note)>;

// Follows until the sink stops it (the seq of the last event delivered), or an error that a
// retry cannot mend.
ClientResult<uint64_t> followEvents(const ApiClient& api, EventStreamRequest req,
                                    const EventSink& sink, const EventNote& note = {});

// The path of one connection: /v1/events?follow=true[&job=ID][&since=SEQ].
std::string eventsPath(const EventStreamRequest& req);

}  // namespace jw::client
