// The job table and its retention rules (see job_table.h); runs in jobworkerd.
#include "supervisor/jobs/job_table.h"

#include <algorithm>
#include <map>
#include <string_view>
#include <utility>

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

const Job* JobTable::runningJobNamed(const std::string& owner, const std::string& name) const {
  for (const auto& j : order_) {
    if (!j->ended() && j->owner() == owner && j->spec().name == name) return j.get();
  }
  return nullptr;
}

namespace {

bool matches(const Job& j, const JobTable::Query& q) {
  if (!q.owner.empty() && j.owner() != q.owner) return false;
  if (q.state != 0 && static_cast<uint8_t>(j.visibleState()) != q.state) return false;
  if (!q.name.empty() && j.spec().name != q.name) return false;
  if (j.createdAtMs() < q.since_ms) return false;
  const auto& mine = j.spec().labels;
  return std::all_of(q.labels.begin(), q.labels.end(), [&](const std::string& l) {
    return std::find(mine.begin(), mine.end(), l) != mine.end();
  });
}

// The list order's key: a larger key is newer.
std::pair<int64_t, std::string_view> listKey(const Job& j) { return {j.createdAtMs(), j.id()}; }
bool newer(const Job* a, const Job* b) { return listKey(*a) > listKey(*b); }

}  // namespace

JobTable::Page JobTable::query(const Query& q) const {
  Page page;
  for (const auto& j : order_) {
    if (!matches(*j, q)) continue;
    if (!q.after_id.empty() &&
        listKey(*j) >= std::pair<int64_t, std::string_view>(q.after_created_ms, q.after_id)) {
      continue;
    }
    page.jobs.push_back(j.get());
  }
  std::sort(page.jobs.begin(), page.jobs.end(), newer);
  if (q.limit != 0 && page.jobs.size() > q.limit) {
    page.jobs.resize(q.limit);
    page.more = true;
  }
  return page;
}

std::vector<std::string> JobTable::expired(const Retention& rules, int64_t now_ms) const {
  std::vector<std::string> out;
  // Per owner, newest first: what the owner's own rules keep.
  std::map<std::string, std::vector<const Job*>> kept;
  size_t total = 0;
  for (const auto& j : order_) {
    if (!j->ended()) continue;
    auto& mine = kept[j->owner()];
    bool too_old =
        rules.max_age_ms > 0 && j->endedAtMs() + static_cast<int64_t>(rules.max_age_ms) < now_ms;
    if (too_old || mine.size() >= rules.per_owner) {
      out.push_back(j->id());
    } else {
      mine.push_back(j.get());
      total++;
    }
  }
  // The host-wide cap: the owner keeping the most gives up its oldest, one at a time, so owners
  // under the fair share are the last to lose anything. Between owners keeping as many, the
  // older job goes.
  while (total > rules.total) {
    auto largest = kept.begin();
    for (auto it = kept.begin(); it != kept.end(); ++it) {
      const auto& a = it->second;
      const auto& b = largest->second;
      if (a.size() > b.size() ||
          (a.size() == b.size() && !a.empty() && a.back()->endedAtMs() < b.back()->endedAtMs())) {
        largest = it;
      }
    }
    out.push_back(largest->second.back()->id());
    largest->second.pop_back();
    total--;
  }
  return out;
}

}  // namespace jw::supervisor
