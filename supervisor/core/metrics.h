// jobworkerd's own figures for GET /metrics: cheap counters bumped where things happen (a job
// starts or ends, a login is decided, the loop's lag probe fires) and the histograms behind
// them. The scrape (Supervisor::handleMetricsGet) adds what it gathers then. Runs in jobworkerd.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <span>
#include <string>

#include "common/protocol/codec.h"

namespace jw::supervisor {

// CLOCK_MONOTONIC in microseconds: latencies finer than the event loop's milliseconds.
uint64_t monotonicUs();

// Counts per bucket of fixed upper bounds (seconds) plus the sum, as the wire carries them.
class LatencyHistogram {
 public:
  explicit LatencyHistogram(std::span<const double> bounds);
  void observe(uint64_t us);
  const protocol::Histogram& data() const { return data_; }

 private:
  std::span<const double> bounds_;
  protocol::Histogram data_;
};

class SupervisorMetrics {
 public:
  // max_users: users with their own label; every later one counts in one shared entry.
  explicit SupervisorMetrics(size_t max_users);

  void jobStarted(const std::string& user, uint64_t latency_us);
  void jobEnded(const std::string& user, protocol::JobOutcome outcome, uint64_t stored_bytes,
                uint64_t dropped_bytes);
  void login(protocol::LoginResult r) { logins_[static_cast<size_t>(r)]++; }
  void loopLag(uint64_t lag_us) { loop_lag_.observe(lag_us); }
  void setMaxUsers(size_t max_users) { max_users_ = max_users; }

  // Everything counted here; the caller adds what it gathers at scrape time (job states, the
  // running jobs' output, the state filesystem, the cgroup, the frontend link's counters).
  protocol::MetricsReply snapshot() const;
  // Adds a running job's memory to its owner's entry of m (made by snapshot()), or to the
  // shared one when the owner has no label.
  void addMemory(protocol::MetricsReply& m, const std::string& user, uint64_t bytes) const;

 private:
  protocol::UserJobCounts& countsOf(const std::string& user);

  size_t max_users_;
  std::map<std::string, protocol::UserJobCounts> users_;
  protocol::UserJobCounts others_;  // user "" on the wire
  LatencyHistogram start_latency_;
  LatencyHistogram loop_lag_;
  uint64_t ended_stored_bytes_ = 0, ended_dropped_bytes_ = 0;
  std::array<uint64_t, protocol::kLoginResults> logins_{};
};

}  // namespace jw::supervisor
