// The background refresh of running jobs' cgroup usage for lists; runs in jobworkerd's event loop.
#pragma once

#include <cstdint>
#include <deque>
#include <string>
#include <unordered_set>

namespace jw::supervisor {

class JobTable;

// Jobs whose usage a list found stale (or that just started), sampled a slice at a time so the
// event loop never spends more than a slice's budget on cgroup files at once. A list answers
// from the last samples at once and queues the stale jobs here; the next list sees them fresh.
// Nothing is sampled while nobody lists: the cost follows the lists, not the number of jobs.
class UsageSampler {
 public:
  // Queues a job once, however often it is added before its turn.
  void add(const std::string& job_id);
  // Samples queued jobs until the queue is empty or `budget_us` of monotonic time has passed
  // (at least one job per call); jobs gone or ended meanwhile are skipped. True when some remain.
  bool runSlice(const JobTable& jobs, int64_t budget_us);
  bool empty() const { return queue_.empty(); }
  size_t size() const { return queue_.size(); }

 private:
  std::deque<std::string> queue_;
  std::unordered_set<std::string> queued_;
};

}  // namespace jw::supervisor
