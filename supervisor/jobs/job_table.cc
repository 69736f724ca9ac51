// The job table and its retention rules (see job_table.h); runs in jobworkerd.
#include "supervisor/jobs/job_table.h"

namespace jw::supervisor {

Job* JobTable::insert(std::unique_ptr<Job> job) {
  Job* raw = job.get();
  order_.push_front(std::move(job));
  by_id_[raw->id()] = order_.begin();
  return raw;
}

Job* JobTable::find(const std::string& id) const {
  auto it = by_id_.find(id);
  return it == by_id_.end() ? nullptr : it->second->get();
}

void JobTable::erase(const std::string& id) {
  auto it = by_id_.find(id);
  if (it == by_id_.end()) return;
  order_.erase(it->second);
  by_id_.erase(it);
}

std::vector<Job*> JobTable::all() const {
  std::vector<Job*> out;
  out.reserve(order_.size());
  for (const auto& j : order_) out.push_back(j.get());
  return out;
}

size_t JobTable::runningJobsOf(const std::string& owner) const {
  size_t n = 0;
  for (const auto& j : order_) {
    if (!j->ended() && j->owner() == owner) n++;
  }
  return n;
}

std::vector<std::string> JobTable::expired(uint32_t keep_count, uint64_t max_age_ms,
                                           int64_t now_ms) const {
  std::vector<std::string> out;
  uint32_t kept = 0;
  for (const auto& j : order_) {
    if (!j->ended()) continue;
    bool too_old = max_age_ms > 0 && j->endedAtMs() + static_cast<int64_t>(max_age_ms) < now_ms;
    if (too_old || kept >= keep_count) {
      out.push_back(j->id());
    } else {
      kept++;
    }
  }
  return out;
}

}  // namespace jw::supervisor
