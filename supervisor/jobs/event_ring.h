// The job events of GET /v1/events: a bounded ring of the newest, each with a sequence number
// one above the last. Numbers start at the supervisor's start time in microseconds, so a `since`
// from before a restart falls below the ring and is refused (410) instead of silently skipping
// this run's first events. Runs in jobworkerd.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <vector>

#include "common/protocol/codec.h"

namespace jw::supervisor {

class EventRing {
 public:
  EventRing(size_t capacity, uint64_t first_seq)
      : capacity_(capacity), floor_(first_seq - 1), next_seq_(first_seq) {}

  // Numbers and stores `e` (dropping the oldest when full); returns the stored event.
  const protocol::JobEvent& append(protocol::JobEvent e);
  // The newest number given out (the floor while none was).
  uint64_t last() const { return next_seq_ - 1; }
  // Every event with a larger number is still here.
  uint64_t floor() const { return floor_; }
  // True when every event after `since` is still here: since is neither older than the ring
  // (events were dropped) nor newer than the last event (not this ring's number).
  bool covers(uint64_t since) const { return since >= floor_ && since <= last(); }
  // The first `max` events after `since` that `visible` admits, in order; *next is the since to
  // ask with afterwards (past the events looked at, shown or not).
  std::vector<protocol::JobEvent> after(
      uint64_t since, const std::function<bool(const protocol::JobEvent&)>& visible, size_t max,
      uint64_t* next) const;

 private:
  size_t capacity_;
  uint64_t floor_;  // every event with a larger number is in events_
  uint64_t next_seq_;
  std::deque<protocol::JobEvent> events_;
};

}  // namespace jw::supervisor
