// Following the job event stream with resume (see event_stream.h); CLI process and tests.
#include "client/event_stream.h"

#include <Poco/JSON/Object.h>
#include <Poco/JSON/Parser.h>

#include <thread>

namespace jw::client {

namespace {

using Clock = std::chrono::steady_clock;

// The seq of one event line; nullopt when the line is not an event object.
std::optional<uint64_t> seqOf(std::string_view line) {
  try {
    Poco::JSON::Parser parser;
    auto v = parser.parse(std::string(line));
    auto o = v.extract<Poco::JSON::Object::Ptr>();
    if (!o || !o->has("seq")) return std::nullopt;
    return o->getValue<uint64_t>("seq");
  } catch (const Poco::Exception&) {
    return std::nullopt;
  }
}

}  // namespace

std::string eventsPath(const EventStreamRequest& req) {
  std::string path = "/v1/events?follow=true";
  if (!req.job_id.empty()) path += "&job=" + urlEncode(req.job_id);
  if (req.since) path += "&since=" + std::to_string(*req.since);
  return path;
}

ClientResult<uint64_t> followEvents(const ApiClient& api, EventStreamRequest req,
                                    const EventSink& sink, const EventNote& note) {
  auto window_start = Clock::now();
  auto backoff = std::chrono::milliseconds(100);
  for (;;) {
    std::string partial;
    bool stopped = false;
    std::optional<ClientError> bad_line;
    bool delivered = false;
    auto r = api.streamBody(eventsPath(req), req.idle_reconnect, [&](std::string_view piece) {
      partial.append(piece);
      size_t start = 0;
      for (size_t nl; (nl = partial.find('\n', start)) != std::string::npos; start = nl + 1) {
        std::string_view line(partial.data() + start, nl - start);
        auto seq = seqOf(line);
        if (!seq) {
          bad_line = ClientError{ClientError::Kind::kProtocol,
                                 api.server().text + " sent a line that is not an event", 0, ""};
          return false;
        }
        // Deliver each event once: a resumed stream starts after `since`, but say it twice.
        if (req.since && *seq <= *req.since) continue;
        req.since = *seq;
        delivered = true;
        if (!sink(line, *seq)) {
          stopped = true;
          return false;
        }
      }
      partial.erase(0, start);
      return true;
    });
    if (stopped) return req.since.value_or(0);
    if (bad_line) return *bad_line;
    // A stream that delivered, or that was connected until it broke, starts a new retry window:
    // an idle follower must not give up on the first failure after a quiet half hour.
    if (delivered || (!r && r.error().kind == ClientError::Kind::kLost)) {
      window_start = Clock::now();
      backoff = std::chrono::milliseconds(100);
    }
    std::optional<ClientError> why;
    const int status = r ? r->response.status : 0;
    if (!r) {
      // A silent stream timed out: reconnecting at once is the point of the idle timeout.
      if (r.error().kind == ClientError::Kind::kTimeout) continue;
      // A failed handshake after a drop is a restarting frontend; trust failures stay fatal.
      if (!r.error().transient() && r.error().kind != ClientError::Kind::kTls) return r.error();
      why = r.error();
    } else if (status == 502 || status == 503 || status == 504) {
      why = httpError(r->response, "events", api.server());
    } else if (status == 410) {
      if (note) {
        note(
            "some events were missed (the server no longer keeps them): run 'jobworker list' "
            "for the current state; going on with the newest");
      }
      req.since.reset();
      continue;
    } else if (r->response.status != 200) {
      return httpError(r->response, "events", api.server());
    } else if (r->complete && delivered) {
      continue;  // the server ended the stream (its frontend restarting): resume at once
    }
    if (Clock::now() - window_start > req.retry_budget) {
      return why ? *why
                 : ClientError{ClientError::Kind::kLost,
                               "lost the event stream of " + api.server().text, 0, ""};
    }
    if (note && why) note(why->message + "; reconnecting");
    std::this_thread::sleep_for(backoff);
    backoff = std::min(backoff * 2, std::chrono::milliseconds(2000));
  }
}

}  // namespace jw::client
