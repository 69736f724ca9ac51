// The supervisor's durable state: loading the job and session records of a previous run at
// start, settling the jobs that were still running then, and writing records as jobs and
// sessions change (the files themselves: supervisor/state/). Runs in jobworkerd.
#include <sodium.h>

#include <algorithm>

#include "common/log.h"
#include "supervisor/core/supervisor.h"

namespace jw::supervisor {

namespace {

// The record of a job that was still running when the previous jobworkerd stopped, without a
// shim to take over: a version-1 record (that version's jobs died with their supervisor), or one
// whose shim's identity was never read. It is over: failed, and said to be lost.
void settleJobLeftRunning(protocol::JobStatus& r, int64_t now_ms) {
  r.state = protocol::JobState::kFailed;
  r.has_exit_code = false;
  r.exit_code = 0;
  r.signal = 0;
  r.error = "lost: jobworkerd stopped while the job ran (pid " + std::to_string(r.pid) +
            "), and its record names no shim to take over; its output up to then is kept";
  r.ended_at_ms = now_ms;
}

}  // namespace

SessionStore::Hash Supervisor::passwordTag(const std::string& user) const {
  SessionStore::Hash tag{};
  const UserRecord* u = findUser(user);
  std::string_view hash = u != nullptr ? std::string_view(u->password_hash) : "";
  crypto_generichash(tag.data(), tag.size(), reinterpret_cast<const uint8_t*>(hash.data()),
                     hash.size(), nullptr, 0);
  return tag;
}

Status Supervisor::loadState() {
  if (Status st = state_.prepare(); !st) return st;
  const int64_t now = realtimeMs();
  StateStore::Loaded loaded = state_.load(true, now);
  for (const auto& p : loaded.problems) log::err("state: set aside " + p);
  size_t lost = 0, taken_over = 0;
  uint64_t takeover_us = 0;
  std::set<std::string> keep_cgroups;
  for (JobRecord& record : loaded.jobs) {
    protocol::JobStatus& r = record.status;
    const bool was_running = r.state == protocol::JobState::kRunning;
    if (was_running && record.shim) {
      const uint64_t t0 = monotonicUs();
      takeOverJob(record, keep_cgroups);
      takeover_us += monotonicUs() - t0;
      taken_over++;
      continue;
    }
    if (was_running) {
      settleJobLeftRunning(r, now);
      lost++;
    }
    std::unique_ptr<Job> job = Job::restore(r);
    if (Status st = job->openStoredLogs(store_.jobsDir(), r); !st) {
      log::err("job " + r.id + ": " + st.error().message + "; its output reads as empty");
      continue;
    }
    if (was_running) state_.saveEndRecord(job->status());
    jobs_.insert(std::move(job));
  }
  // Every other job cgroup of this instance is a leftover (a job whose record was never written,
  // or one that has just been settled): kill and remove it.
  if (opt_.cgroups) {
    size_t removed = opt_.cgroups->removeLeftovers(keep_cgroups);
    if (removed > 0) log::notice("cgroups: removed " + std::to_string(removed) + " leftover jobs");
  }
  // Sessions of users the users file no longer has, or whose password changed meanwhile, end
  // here: the same rule as a reload's.
  size_t ended = 0;
  // Latest expiry first, so that over the table's cap the sessions expiring soonest go, as a
  // mint at the cap would evict them.
  std::sort(loaded.sessions.begin(), loaded.sessions.end(), [](const auto& a, const auto& b) {
    return a.session.expires_at_ms > b.session.expires_at_ms;
  });
  for (const SessionRecord& s : loaded.sessions) {
    if (findUser(s.session.user) == nullptr || passwordTag(s.session.user) != s.password_tag ||
        sessions_.size() >= SessionStore::kMaxSessions) {
      state_.removeSession(s.hash);
      ended++;
      continue;
    }
    sessions_.restore(s.hash, s.session);
  }
  sessions_.setObserver([this](const SessionStore::Hash& hash, const SessionStore::Session* s) {
    if (s == nullptr) {
      state_.removeSession(hash);
    } else {
      state_.saveSession({hash, *s, passwordTag(s->user)});
    }
  });
  log::notice(
      "state: " + std::to_string(jobs_.size()) + " job record(s) loaded (" +
      std::to_string(taken_over) + " running taken over in " + std::to_string(takeover_us / 1000) +
      " ms, " + std::to_string(lost) + " lost while running), " + std::to_string(sessions_.size()) +
      " session(s) (" + std::to_string(ended) + " of removed or changed users ended), " +
      std::to_string(loaded.corrupt) + " record(s) set aside in " + opt_.state_dir + "/corrupt");
  return okStatus();
}

}  // namespace jw::supervisor
