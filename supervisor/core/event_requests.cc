// GET /v1/events in the supervisor: every job's life as numbered events in a bounded ring, read
// after a sequence number and filtered by the reader's role (a user sees its own jobs' events,
// viewers and admins everyone's); a follow read with nothing to show is parked like a follow read
// of a log. Runs in jobworkerd.
#include "common/log.h"
#include "common/names.h"
#include "supervisor/core/supervisor.h"

namespace jw::supervisor {

using protocol::ErrorCode;
using protocol::Role;

namespace {

bool mayRead(const std::string& user, Role role, const std::string& job_id,
             const protocol::JobEvent& e) {
  if (role == Role::kUser && e.owner != user) return false;
  return job_id.empty() || e.job_id == job_id;
}

}  // namespace

void Supervisor::emitEvent(const Job& job, protocol::EventType type) {
  protocol::JobStatus s = job.status();
  protocol::JobEvent e;
  e.time_ms = realtimeMs();
  e.type = type;
  e.job_id = s.id;
  e.owner = s.owner;
  e.name = s.name;
  e.state = s.state;
  e.has_exit_code = s.has_exit_code;
  e.exit_code = s.exit_code;
  e.signal = s.signal;
  e.stopped_by = s.stopped_by;
  e.error = s.error;
  events_.append(std::move(e));
  answerParkedEvents();
}

// Answers the read with what is there; false (nothing answered) when a follow read has nothing
// to show yet.
bool Supervisor::answerEvents(uint32_t id, const protocol::EventsReadRequest& r,
                              const std::string& user, Role role, bool park) {
  if (!events_.covers(r.since)) {
    // A parked read whose place the ring dropped while it waited: no silent gap either.
    replyError(id, ErrorCode::kGone,
               "events after " + std::to_string(r.since) +
                   " are no longer kept: list the jobs "
                   "again, then follow from " +
                   std::to_string(events_.last()));
    return true;
  }
  protocol::EventBatch b;
  b.events = events_.after(
      r.since, [&](const protocol::JobEvent& e) { return mayRead(user, role, r.job_id, e); },
      protocol::kMaxEventsPerBatch, &b.next_since);
  if (b.events.empty() && park) return false;
  // The events looked at were all filtered out: the next read starts past them anyway.
  frontend_->send(protocol::encodeEventBatch(id, b));
  return true;
}

void Supervisor::handleEventsRead(uint32_t id, const protocol::EventsReadRequest& r) {
  const UserRecord* u = authenticate(id, r.token);
  if (u == nullptr) return;
  if (!r.job_id.empty() && !names::validJobId(r.job_id)) {
    replyError(id, ErrorCode::kBadRequest, "malformed job id filter");
    return;
  }
  protocol::EventsReadRequest req = r;
  if (!req.has_since) {
    // From now on when following; else everything the ring still holds.
    req.has_since = true;
    req.since = r.follow ? events_.last() : events_.floor();
  }
  if (answerEvents(id, req, u->name, u->role, req.follow)) return;
  if (parked_count_ >= kMaxParkedReads) {
    replyError(id, ErrorCode::kUnavailable, "too many follow reads waiting; retry later");
    return;
  }
  uint64_t key = next_parked_key_++;
  auto timer = loop_.addTimer(kParkedReadMs, [this, key] { expireParkedEvents(key); });
  parked_events_.emplace(key, ParkedEvents{id, req, u->name, u->role, timer});
  parked_count_++;
}

void Supervisor::answerParkedEvents() {
  for (auto it = parked_events_.begin(); it != parked_events_.end();) {
    const ParkedEvents& p = it->second;
    if (!answerEvents(p.request_id, p.req, p.user, p.role, true)) {
      ++it;
      continue;
    }
    loop_.cancelTimer(p.timer);
    it = parked_events_.erase(it);
    parked_count_--;
  }
}

void Supervisor::expireParkedEvents(uint64_t key) {
  auto it = parked_events_.find(key);
  if (it == parked_events_.end()) return;
  // An empty batch: the frontend checks its client is still there and asks again.
  answerEvents(it->second.request_id, it->second.req, it->second.user, it->second.role, false);
  parked_events_.erase(it);
  parked_count_--;
}

}  // namespace jw::supervisor
