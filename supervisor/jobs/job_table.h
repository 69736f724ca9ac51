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
  // The owner's job with that name that has not ended (names are unique among those), or null.
  const Job* runningJobNamed(const std::string& owner, const std::string& name) const;

  // One page of a filtered list. Every non-empty filter must match. The order is newest first
  // by (created_at, id), stable across pages and restarts; a page starts after the job keyed
  // (after_created_ms, after_id) when after_id is set, even if that job is gone by now.
  struct Query {
    std::string owner;  // "": every owner
    uint8_t state = 0;  // 0: any, else a protocol::JobState
    std::string name;
    std::vector<std::string> labels;  // "key=value", each on the job
    int64_t since_ms = 0;             // created at or after
    uint32_t limit = 0;               // 0: every match
    int64_t after_created_ms = 0;
    std::string after_id;
  };
  struct Page {
    std::vector<const Job*> jobs;
    bool more = false;  // limit reached and another job matches after the last one
  };
  Page query(const Query& q) const;

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
