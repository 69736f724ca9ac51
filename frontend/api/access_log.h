// The access log: one structured journald entry per request (MESSAGE_ID kAccess), all of them
// or at most access_log_rate a second ("sampled"), so the unit's journald rate limit is never
// spent on them before the audit events. Never a token, a password, a request body or a query
// string: the route template and a well-formed job id name what was asked. Runs in
// jobworker-frontend (any HTTP worker thread).
#pragma once

#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>

#include "common/config.h"

namespace jw::frontend {

struct AccessRecord {
  std::string_view remote_addr;
  std::string_view user;  // "" when the request named no session, or not one still alive
  std::string_view method;
  std::string_view route;   // the template, e.g. "/v1/jobs/{id}/logs"
  std::string_view job_id;  // "" when there is none (or it was malformed)
  int status = 0;
  uint64_t duration_ms = 0;
  uint64_t bytes_out = 0;  // response bytes written, head and body
};

class AccessLog {
 public:
  AccessLog(config::Settings::AccessLog mode, uint32_t rate_per_s);

  // Whether this request gets an entry: asked once per request, before its user is looked up
  // (which costs a round trip to jobworkerd).
  bool admit();
  void write(const AccessRecord& r);

 private:
  config::Settings::AccessLog mode_;
  double rate_per_s_;
  std::mutex mu_;
  double tokens_;
  int64_t refilled_ms_ = 0;
};

}  // namespace jw::frontend
