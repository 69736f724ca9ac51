// Job status and error objects as REST JSON (fields in docs/api.md); runs in
// jobworker-frontend's HTTP worker threads.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "common/protocol/codec.h"
#include "frontend/api/api_error.h"
#include "frontend/api/json_writer.h"

namespace jw::frontend {

// "2026-11-30T00:33:09.123Z" (UTC, milliseconds).
std::string rfc3339Ms(int64_t epoch_ms);
// "2026-12-01T10:00:00Z", with optional fraction and offset, as epoch milliseconds; nullopt when
// it is not such a time.
std::optional<int64_t> parseRfc3339Ms(const std::string& text);

// Millicores as a JSON number of cores: 500 -> "0.5", 2000 -> "2".
std::string coresText(uint32_t millicores);

// The status object (fields in docs/api.md).
void writeStatus(JsonWriter& w, const protocol::JobStatus& s);
std::string statusJson(const protocol::JobStatus& s);
// One job event of GET /v1/events (without its line end).
void writeEvent(JsonWriter& w, const protocol::JobEvent& e);

// {"error":{"code":...,"message":...}}
std::string errorJson(const ApiError& e);

}  // namespace jw::frontend
