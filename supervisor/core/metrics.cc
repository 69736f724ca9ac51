// jobworkerd's counters for GET /metrics (see metrics.h); runs on jobworkerd's event loop.
#include "supervisor/core/metrics.h"

#include <time.h>

#include <algorithm>

namespace jw::supervisor {

uint64_t monotonicUs() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1'000'000 + static_cast<uint64_t>(ts.tv_nsec) / 1000;
}

LatencyHistogram::LatencyHistogram(std::span<const double> bounds) : bounds_(bounds) {
  data_.buckets.assign(bounds.size() + 1, 0);
}

void LatencyHistogram::observe(uint64_t us) {
  const double seconds = static_cast<double>(us) / 1e6;
  size_t i = 0;
  while (i < bounds_.size() && seconds > bounds_[i]) i++;
  data_.buckets[i]++;
  data_.sum_us += us;
}

SupervisorMetrics::SupervisorMetrics(size_t max_users)
    : max_users_(std::min(max_users, protocol::kMaxMetricsUsers)),
      start_latency_(protocol::kStartLatencyBuckets),
      loop_lag_(protocol::kLoopLagBuckets) {}

protocol::UserJobCounts& SupervisorMetrics::countsOf(const std::string& user) {
  // A user keeps the label it got first; past the cap, newcomers share one entry, so the
  // series a scraper stores stay bounded however many accounts run jobs.
  if (auto it = users_.find(user); it != users_.end()) return it->second;
  if (users_.size() >= std::min(max_users_, protocol::kMaxMetricsUsers)) return others_;
  protocol::UserJobCounts& c = users_[user];
  c.user = user;
  return c;
}

void SupervisorMetrics::jobStarted(const std::string& user, uint64_t latency_us) {
  countsOf(user).starts++;
  start_latency_.observe(latency_us);
}

void SupervisorMetrics::jobEnded(const std::string& user, protocol::JobOutcome outcome,
                                 uint64_t stored_bytes, uint64_t dropped_bytes) {
  countsOf(user).ends[static_cast<size_t>(outcome)]++;
  ended_stored_bytes_ += stored_bytes;
  ended_dropped_bytes_ += dropped_bytes;
}

protocol::MetricsReply SupervisorMetrics::snapshot() const {
  protocol::MetricsReply m;
  m.users.reserve(users_.size() + 1);
  for (const auto& [name, counts] : users_) m.users.push_back(counts);
  const bool others_counted =
      others_.starts != 0 ||
      std::any_of(others_.ends.begin(), others_.ends.end(), [](uint64_t n) { return n != 0; });
  if (others_counted) m.users.push_back(others_);
  m.start_latency = start_latency_.data();
  m.loop_lag = loop_lag_.data();
  m.output_stored_bytes = ended_stored_bytes_;
  m.output_dropped_bytes = ended_dropped_bytes_;
  m.logins = logins_;
  return m;
}

void SupervisorMetrics::addMemory(protocol::MetricsReply& m, const std::string& user,
                                  uint64_t bytes) const {
  const std::string& label = users_.count(user) != 0 ? user : others_.user;  // "" for others
  for (auto& u : m.users) {
    if (u.user == label) {
      u.memory_bytes += bytes;
      return;
    }
  }
  protocol::UserJobCounts c;  // the shared entry had no counts yet
  c.memory_bytes = bytes;
  m.users.push_back(std::move(c));
}

}  // namespace jw::supervisor
