// Every job the supervisor knows, newest first, with retention of finished jobs per owner (count
// and age) and a host-wide cap taken from the largest owner. Runs in jobworkerd.
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

  struct Retention {
    uint32_t per_owner = 0;   // ended jobs kept per owner, newest first
    uint64_t max_age_ms = 0;  // 0: no age limit
    uint32_t total = 0;  // ended jobs kept on the host; beyond it the owner keeping the most loses
                         // its oldest, so one user's volume never evicts another's history
  };
  // Ended jobs the retention rules no longer keep. The caller deletes their output and erases
  // them. Running jobs are never expired.
  std::vector<std::string> expired(const Retention& rules, int64_t now_ms) const;

 private:
  std::list<std::unique_ptr<Job>> order_;  // front: newest
  std::unordered_map<std::string, std::list<std::unique_ptr<Job>>::iterator> by_id_;
};

}  // namespace jw::supervisor
