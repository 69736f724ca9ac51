// GET /metrics' supervisor half: MetricsGet (role admin or metrics) answered with the counters of
// SupervisorMetrics plus what is gathered now (jobs by state, running jobs' output, the state
// filesystem, the jobs' cgroup, the frontend link), and the event loop's lag probe. The gather
// runs only per scrape; the hot paths only bump counters. Runs in jobworkerd.
#include "common/policy.h"
#include "supervisor/core/supervisor.h"

namespace jw::supervisor {

namespace {

// How often the lag probe asks to run: its lateness is the loop's lag.
constexpr uint64_t kLagProbeMs = 500;

protocol::JobOutcome jobOutcome(const protocol::JobStatus& s) {
  if (s.oom_killed) return protocol::JobOutcome::kOom;
  switch (s.state) {
    case protocol::JobState::kExited:
      return protocol::JobOutcome::kExited;
    case protocol::JobState::kKilled:
      return protocol::JobOutcome::kKilled;
    case protocol::JobState::kRunning:
    case protocol::JobState::kFailed:
      break;
  }
  return protocol::JobOutcome::kFailed;
}

}  // namespace

void Supervisor::countJobEnd(const Job& job) {
  Job::OutputTotals out = job.outputTotals();
  metrics_.jobEnded(job.owner(), jobOutcome(job.status()), out.stored, out.dropped);
}

void Supervisor::probeLoopLag(uint64_t due_us) {
  uint64_t now = monotonicUs();
  metrics_.loopLag(now > due_us ? now - due_us : 0);
  uint64_t next_due = monotonicUs() + kLagProbeMs * 1000;
  loop_.addTimer(kLagProbeMs, [this, next_due] { probeLoopLag(next_due); });
}

void Supervisor::startLagProbe() {
  uint64_t due = monotonicUs() + kLagProbeMs * 1000;
  loop_.addTimer(kLagProbeMs, [this, due] { probeLoopLag(due); });
}

void Supervisor::handleMetricsGet(uint32_t id, const protocol::SessionRef& s) {
  const UserRecord* u = authenticate(id, s.token, AuthScope::kScrape);
  if (u == nullptr) return;
  protocol::MetricsReply m = metrics_.snapshot();
  jobs_.forEach([&](const Job& job) {
    m.jobs_by_state.at(static_cast<size_t>(job.visibleState()) - 1)++;
    if (job.ended()) return;  // counted into the totals when it ended
    Job::OutputTotals out = job.outputTotals();
    m.output_stored_bytes += out.stored;
    m.output_dropped_bytes += out.dropped;
    // One cgroup file per running job: only here, per scrape.
    if (job.cgroup) {
      if (auto bytes = job.cgroup->memoryNow()) metrics_.addMemory(m, job.owner(), *bytes);
    }
  });
  if (frontend_) {
    m.frontend_restarts = frontend_->restarts();
    m.protocol_violations = frontend_->violations();
  }
  if (auto space = store_.space()) {
    m.has_state_free = true;
    m.state_free_bytes = space->available_bytes;
  }
  if (opt_.cgroups) {
    JobsUsage usage = opt_.cgroups->jobsUsage();
    m.has_jobs_memory = usage.memory_bytes.has_value();
    m.jobs_memory_bytes = usage.memory_bytes.value_or(0);
    m.has_jobs_cpu = usage.cpu_us.has_value();
    m.jobs_cpu_us = usage.cpu_us.value_or(0);
    m.has_jobs_pids = usage.pids.has_value();
    m.jobs_pids = usage.pids.value_or(0);
  }
  frontend_->send(protocol::encodeMetrics(id, m));
}

}  // namespace jw::supervisor
