// The ring of job events (see event_ring.h); runs in jobworkerd.
#include "supervisor/jobs/event_ring.h"

namespace jw::supervisor {

const protocol::JobEvent& EventRing::append(protocol::JobEvent e) {
  e.seq = next_seq_++;
  if (events_.size() >= capacity_) {
    floor_ = events_.front().seq;
    events_.pop_front();
  }
  events_.push_back(std::move(e));
  return events_.back();
}

std::vector<protocol::JobEvent> EventRing::after(
    uint64_t since, const std::function<bool(const protocol::JobEvent&)>& visible, size_t max,
    uint64_t* next) const {
  std::vector<protocol::JobEvent> out;
  *next = since;
  if (events_.empty() || since >= events_.back().seq) return out;
  // Numbers are consecutive, so the first event after `since` is found by subtraction.
  size_t i = since < events_.front().seq ? 0 : static_cast<size_t>(since + 1 - events_.front().seq);
  for (; i < events_.size() && out.size() < max; i++) {
    *next = events_[i].seq;
    if (visible(events_[i])) out.push_back(events_[i]);
  }
  return out;
}

}  // namespace jw::supervisor
