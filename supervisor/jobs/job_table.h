// Every job the supervisor knows, newest first, with retention of finished jobs by count and
// age. Runs in jobworkerd.
#pragma once

#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "supervisor/jobs/job.h"

namespace jw::supervisor {

class JobTable {
 public:
  // Takes ownership; the job becomes the newest.
  Job* insert(std::unique_ptr<Job> job);
  Job* find(const std::string& id) const;
  // Destroys the job record (its resources must already be released by the caller).
  void erase(const std::string& id);

  // Newest first.
  template <typename F>
  void forEach(F&& f) const {
    for (const auto& j : order_) f(*j);
  }
  std::vector<Job*> all() const;

  size_t size() const { return order_.size(); }
  size_t runningJobsOf(const std::string& owner) const;

  // Ended jobs beyond `keep_count` (oldest first) or ended before `now_ms - max_age_ms`. The
  // caller deletes their output and erases them.
  std::vector<std::string> expired(uint32_t keep_count, uint64_t max_age_ms, int64_t now_ms) const;

 private:
  std::list<std::unique_ptr<Job>> order_;  // front: newest
  std::unordered_map<std::string, std::list<std::unique_ptr<Job>>::iterator> by_id_;
};

}  // namespace jw::supervisor
