// The access log (see access_log.h); runs in jobworker-frontend's HTTP worker threads.
#include "frontend/api/access_log.h"

#include <time.h>

#include <algorithm>

#include "common/log.h"

namespace jw::frontend {

namespace {

int64_t monotonicMs() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1'000'000;
}

}  // namespace

AccessLog::AccessLog(config::Settings::AccessLog mode, uint32_t rate_per_s)
    : mode_(mode), rate_per_s_(rate_per_s), tokens_(rate_per_s) {}

bool AccessLog::admit() {
  using Mode = config::Settings::AccessLog;
  if (mode_ == Mode::kOff) return false;
  if (mode_ == Mode::kAll) return true;
  // A token bucket: at most rate_per_s_ entries a second, a burst of one second's worth.
  std::lock_guard<std::mutex> lock(mu_);
  int64_t now = monotonicMs();
  tokens_ = std::min(rate_per_s_,
                     tokens_ + static_cast<double>(now - refilled_ms_) * rate_per_s_ / 1000.0);
  refilled_ms_ = now;
  if (tokens_ < 1) return false;
  tokens_ -= 1;
  return true;
}

void AccessLog::write(const AccessRecord& r) {
  std::string job = r.job_id.empty() ? "" : " job " + std::string(r.job_id);
  log::event(log::Priority::kInfo, log::ids::kAccess,
             std::string(r.method) + " " + std::string(r.route) + job + " from " +
                 log::quote(r.remote_addr) + ": " + std::to_string(r.status) + " in " +
                 std::to_string(r.duration_ms) + " ms",
             {{"REMOTE_ADDR", std::string(r.remote_addr)},
              {"USER", std::string(r.user)},
              {"METHOD", std::string(r.method)},
              {"ROUTE", std::string(r.route)},
              {"JOB_ID", std::string(r.job_id)},
              {"STATUS", std::to_string(r.status)},
              {"DURATION_MS", std::to_string(r.duration_ms)},
              {"BYTES_OUT", std::to_string(r.bytes_out)}});
}

}  // namespace jw::frontend
