// The supervisor's job lifecycle: start (the steps of jobs/start.h, then spawn), output
// draining, the end of a job (kill the rest, drain, publish), stop and timeout, retention. Runs in
// jobworkerd.
#include <signal.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "common/log.h"
#include "common/policy.h"
#include "supervisor/core/supervisor.h"
#include "supervisor/jobs/start.h"
#include "supervisor/launch/job_init.h"
#include "supervisor/launch/namespaces.h"

namespace jw::supervisor {

using protocol::ErrorCode;
using protocol::Role;

namespace {

constexpr int kReadsPerWakeup = 4;  // 4 x 64 KiB per job per wake-up: fair to other jobs
constexpr int kCgroupRemoveAttempts = 50;
constexpr uint64_t kCgroupRemoveRetryMs = 100;

std::string describeWait(int wait_code, int wait_value) {
  if (wait_code == CLD_EXITED) return "exit code " + std::to_string(wait_value);
  return "signal " + std::to_string(wait_value);
}

// Signals the job's main process through its pidfd while there is one (never a reused pid).
int signalMain(const Job& job, int sig) {
  if (job.pidfd) {
    return static_cast<int>(syscall(SYS_pidfd_send_signal, job.pidfd.get(), sig, nullptr, 0U));
  }
  return kill(job.pid(), sig);
}

}  // namespace

IsolationSpec Supervisor::isolationFor(const UserRecord& u, const protocol::JobStartRequest& r,
                                       const std::string& job_id) const {
  IsolationSpec spec;
  // Namespaces need root (no user namespaces: they would hand the job capabilities); a non-root
  // dev supervisor runs jobs without them. The seccomp profile works unprivileged.
  const bool ns = opt_.as_root;
  spec.pid = ns && settings_.isolate_pid;
  spec.mount = ns && settings_.isolate_mount;
  spec.net = ns && settings_.isolate_net && r.network != protocol::Network::kHost;
  spec.uts = ns && settings_.isolate_uts;
  spec.ipc = ns && settings_.isolate_ipc;
  spec.seccomp = settings_.job_seccomp && policy::jobSeccomp(settings_, u.name, u.role) &&
                 job_seccomp_.has_value();
  spec.hostname = jobHostname(job_id);
  spec.tmp_size = settings_.job_tmp_size;
  return spec;
}

void Supervisor::handleJobStart(uint32_t id, const protocol::JobStartRequest& r) {
  const uint64_t received_us = monotonicUs();
  const UserRecord* u = authenticate(id, r.token);
  if (u == nullptr) return;
  const Requester who{*u, r.remote_address, "job_start", received_us};
  if (u->role == Role::kViewer) {
    refuse(id, who, {ErrorCode::kForbidden, "role viewer cannot start jobs"});
    return;
  }
  if (auto bad = validateJobStart(r, settings_.max_timeout_ms)) {
    refuse(id, who, *bad);
    return;
  }
  if (shutting_down_) {
    refuse(id, who, {ErrorCode::kUnavailable, "jobworkerd is shutting down"});
    return;
  }
  if (jobs_.runningJobsOf(u->name) >= settings_.max_running_jobs_per_user) {
    refuse(id, who,
           {ErrorCode::kLimitExceeded, "user " + u->name + " already runs " +
                                           std::to_string(settings_.max_running_jobs_per_user) +
                                           " jobs (max_running_jobs_per_user)"});
    return;
  }
  if (auto e = checkStartCapacity()) {
    replyError(id, e->code, e->message);
    return;
  }
  Job* job = startJob(id, who, r);
  if (job != nullptr) replyStatus(id, *job);
}

// Room for one more job: disk (507) and file descriptors (503). Checked per start, so starts
// work again as soon as space or fds come back.
std::optional<RequestError> Supervisor::checkStartCapacity() const {
  if (auto shortage = stateSpaceShortage(store_, settings_.state_reserve_bytes)) {
    return RequestError{ErrorCode::kInsufficientStorage, "cannot store job output: " + *shortage};
  }
  if (opt_.fd_limits.soft == 0) return std::nullopt;
  auto open_fds = countOpenFds();
  if (!open_fds) return RequestError{ErrorCode::kUnavailable, open_fds.error().message};
  return checkFdHeadroom(open_fds.value(), opt_.fd_limits.soft);
}

// Returns the new job, or null after replying with the error. Each step refuses with the code
// and message the user sees; until the spawn succeeded, `resources` removes what was made.
Job* Supervisor::startJob(uint32_t id, const Requester& who, const protocol::JobStartRequest& r) {
  const UserRecord& u = who.user;
  auto refused = [&](const RequestError& e) -> Job* {
    refuse(id, who, e);
    return nullptr;
  };
  auto account =
      resolveAccount(settings_, u, opt_.as_root ? nullptr : &opt_.self, opt_.frontend_account);
  if (!account) return refused(account.error());
  if (auto e = checkNetwork(settings_, u, r.network)) return refused(*e);
  auto limits = jobLimits(settings_, u, r.limits, opt_.cgroups != nullptr);
  if (!limits) return refused(limits.error());
  auto job_id = newJobId();
  if (!job_id) return refused({ErrorCode::kInternal, job_id.error().message});

  IsolationSpec isolation = isolationFor(u, r, job_id.value());
  auto job = std::make_unique<Job>(jobSpec(job_id.value(), u, r, *limits, *account, isolation),
                                   realtimeMs());
  auto resources =
      JobResources::create(*job, store_, opt_.cgroups.get(), settings_.output_cap_bytes);
  if (!resources) return refused(resources.error());

  SpawnFailure failure = SpawnFailure::kNone;
  auto spawned = spawnJob(spawnRequest(*job, r, *account, isolation), &failure);
  if (!spawned) {
    const Error& e = spawned.error();
    if (failure == SpawnFailure::kExec || failure == SpawnFailure::kCwd) {
      // The program or the directory is wrong: the user's mistake, no job record.
      return refused(
          {failure == SpawnFailure::kExec ? ErrorCode::kExecFailed : ErrorCode::kBadRequest,
           e.message, e.sys_errno});
    }
    log::err("job " + job->id() + " of " + u.name + " failed to start: " + e.message);
    job->markFailed(e.message, realtimeMs());
    resources->releaseOutput();
    countJobEnd(*job);
    Job* raw = jobs_.insert(std::move(job));
    enforceRetention();
    return raw;
  }
  resources->release();

  SpawnedJob& sj = spawned.value();
  job->markStarted(sj.pid, realtimeMs());
  metrics_.jobStarted(u.name, monotonicUs() - who.received_us);
  job->pidfd = std::move(sj.pidfd);
  job->has_init = static_cast<bool>(sj.status_fd);
  job->status_fd = std::move(sj.status_fd);
  job->streams[0].pipe_fd = std::move(sj.out_fd);
  job->streams[1].pipe_fd = std::move(sj.err_fd);
  Job* raw = jobs_.insert(std::move(job));
  watchJob(*raw);
  armJobTimeout(*raw, jobTimeoutMs(settings_, r.timeout_ms));
  logJobStart(*raw, who, r, account->name);
  updateServiceStatus();
  return raw;
}

JobSpec Supervisor::jobSpec(const std::string& job_id, const UserRecord& u,
                            const protocol::JobStartRequest& r, const protocol::Limits& limits,
                            const Account& account, const IsolationSpec& isolation) const {
  JobSpec spec;
  spec.id = job_id;
  spec.isolation = isolationLabels(isolation);
  // JobResources::create() either gives the job its cgroup or refuses the job.
  if (opt_.cgroups) spec.isolation.push_back("cgroup");
  spec.owner = u.name;
  spec.command = r.argv;
  spec.output = r.output;
  spec.limits = limits;
  spec.run_as = account.name;
  return spec;
}

SpawnRequest Supervisor::spawnRequest(const Job& job, const protocol::JobStartRequest& r,
                                      const Account& account,
                                      const IsolationSpec& isolation) const {
  SpawnRequest sr;
  sr.argv = r.argv;
  sr.env = buildJobEnvironment(
      r.env, {settings_.job_path, account.home, account.name, settings_.job_lang});
  sr.search_path = envValue(sr.env, "PATH").value_or(settings_.job_path);
  sr.cwd = r.cwd;
  sr.home = account.home;
  sr.change_credentials = opt_.as_root;
  sr.uid = account.uid;
  sr.gid = account.gid;
  sr.groups = account.groups;
  sr.separate_stderr = job.separate();
  sr.core_dumps = settings_.job_core_dumps;
  sr.nofile_soft = opt_.fd_limits.original_soft;
  sr.cgroup = job.cgroup.get();
  sr.isolation = isolation;
  sr.seccomp = job_seccomp_ ? &*job_seccomp_ : nullptr;
  sr.last_cap = last_cap_;
  return sr;
}

void Supervisor::armJobTimeout(Job& job, uint64_t timeout_ms) {
  if (timeout_ms == 0) return;
  std::string jid = job.id();
  job.timeout_timer = loop_.addTimer(timeout_ms, [this, jid] {
    Job* j = jobs_.find(jid);
    if (j == nullptr) return;
    j->timeout_timer = 0;
    if (!j->mainExited()) stopJob(*j, "timeout", settings_.stop_grace_ms);
  });
}

void Supervisor::logJobStart(const Job& job, const Requester& who,
                             const protocol::JobStartRequest& r, const std::string& run_as) {
  log::Fields fields = {{"JOB_ID", job.id()},
                        {"JOB_USER", who.user.name},
                        {"REMOTE_ADDR", who.remote_address},
                        {"JOB_RUN_AS", run_as},
                        {"JOB_PID", std::to_string(job.pid())},
                        {"JOB_ENV_KEYS", std::to_string(r.env.size())}};
  // One JOB_ARGV per argument, in order: the boundaries survive (an argument may hold spaces).
  for (const auto& a : r.argv) fields.emplace_back("JOB_ARGV", a);
  log::event(log::Priority::kInfo, log::ids::kJobStart,
             "job " + job.id() + " started by " + who.user.name + " as " + run_as + ": pid " +
                 std::to_string(job.pid()) + (job.has_init ? " (job init)" : ""),
             fields);
}

void Supervisor::watchJob(Job& job) {
  std::string jid = job.id();
  auto pw = loop_.watch(job.pidfd.get(), EPOLLIN, [this, jid](uint32_t) { onJobExit(jid); });
  if (!pw) {
    // Without exit notification the job could never end: kill it now rather than leak it.
    log::err("job " + jid + ": watch pidfd: " + pw.error().message + "; killing it");
    killJob(job);
    int status = 0;
    pid_t r;
    while ((r = waitpid(job.pid(), &status, 0)) < 0 && errno == EINTR) {
    }
    job.pidfd.reset();
    recordJobEnd(job, r == job.pid() ? status : W_EXITCODE(0, SIGKILL));
  } else {
    job.pidfd_watch = pw.value();
  }
  for (int s = 0; s < 2; s++) {
    if (!job.streams[s].pipe_fd) continue;
    auto w = loop_.watch(job.streams[s].pipe_fd.get(), EPOLLIN,
                         [this, jid, s](uint32_t) { onJobPipe(jid, s); });
    if (!w) {
      log::err("job " + jid + ": watch output pipe: " + w.error().message);
      job.streams[s].pipe_fd.reset();
      job.streams[s].log->seal();
      continue;
    }
    job.streams[s].watch = w.value();
  }
  maybePublish(job);
}

void Supervisor::onJobPipe(const std::string& job_id, int stream) {
  Job* job = jobs_.find(job_id);
  if (job == nullptr) return;
  Job::Stream& st = job->streams[stream];
  if (!st.pipe_fd) return;
  uint64_t before = st.log->size();
  const bool had_error = !st.log->error().empty();
  for (int i = 0; i < kReadsPerWakeup; i++) {
    auto r = st.log->drainOnce(st.pipe_fd.get());
    if (!r) {
      log::err("job " + job_id + ": " + r.error().message);
      closeJobPipe(*job, stream);
      break;
    }
    if (r.value() == OutputLog::Drain::kWouldBlock) break;
    if (r.value() == OutputLog::Drain::kEof) {
      closeJobPipe(*job, stream);
      break;
    }
  }
  if (!had_error && !st.log->error().empty()) {
    // Once per log: the job keeps running, its status says what is missing.
    log::warning("job " + job_id + ": " + st.log->path() + ": " + st.log->error() +
                 "; its further output is counted as dropped");
  }
  if (st.log->size() != before) answerParked(*job, stream, false);
  maybePublish(*job);
}

void Supervisor::closeJobPipe(Job& job, int stream) {
  Job::Stream& st = job.streams[stream];
  if (!st.pipe_fd) return;
  loop_.unwatch(st.watch);
  st.watch = 0;
  st.pipe_fd.reset();
  st.log->seal();  // a finished job holds no fd: reads open the file
}

// The main process has been reaped with init_wait_status. With an init, the command's own
// status from the status pipe is the job's; the init's counts only when it wrote none (it was
// SIGKILLed: stop grace, OOM, a supervisor-side kill).
void Supervisor::recordJobEnd(Job& job, int init_wait_status) {
  WaitOutcome outcome = waitOutcome(init_wait_status);
  if (job.status_fd) {
    auto reported = readJobStatus(job.status_fd.get());
    if (!reported) {
      log::err("job " + job.id() + ": " + reported.error().message);
    } else if (reported.value()) {
      outcome = waitOutcome(*reported.value());
    }
    job.status_fd.reset();
  }
  job.recordExit(outcome.code, outcome.value);
}

void Supervisor::onJobExit(const std::string& job_id) {
  Job* job = jobs_.find(job_id);
  if (job == nullptr || !job->pidfd) return;
  // Kill the rest while the main process is still a zombie: its pid, which is the process
  // group id, cannot have been reused yet. (With an init the kernel has already killed the whole
  // PID namespace before its exit was reported; the cgroup kill is the backup.)
  killJob(*job);
  int status = 0;
  rusage ru{};
  pid_t r = wait4(job->pid(), &status, WNOHANG, &ru);
  if (r == 0) return;  // spurious wake-up
  loop_.unwatch(job->pidfd_watch);
  job->pidfd_watch = 0;
  job->pidfd.reset();
  if (r < 0) {
    log::err("job " + job_id + ": wait4: " + std::string(strerror(errno)));
    status = W_EXITCODE(0, SIGKILL);
  }
  recordJobEnd(*job, status);
  if (!job->cgroup) {
    // Without a cgroup, rusage of the main process and the children it waited for is the best
    // figure there is.
    job->final_usage.has_cpu = true;
    job->final_usage.cpu_seconds =
        static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
        static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
  }
  for (EventLoop::TimerId* t : {&job->kill_timer, &job->timeout_timer}) {
    if (*t != 0) loop_.cancelTimer(*t);
    *t = 0;
  }
  if (job->pipesOpen()) {
    // A process that escaped the group may keep the pipe open forever: stop waiting at some
    // point, the main process's output is complete by then.
    job->drain_timer = loop_.addTimer(kDrainDeadlineMs, [this, jid = job_id] {
      Job* j = jobs_.find(jid);
      if (j == nullptr) return;
      j->drain_timer = 0;
      log::warning("job " + jid + ": output pipe still open " + std::to_string(kDrainDeadlineMs) +
                   " ms after the job ended; closing it");
      for (int s = 0; s < 2; s++) {
        if (j->streams[s].pipe_fd) {
          onJobPipe(jid, s);  // take what is buffered
          closeJobPipe(*j, s);
        }
      }
      maybePublish(*j);
    });
  }
  maybePublish(*job);
}

void Supervisor::maybePublish(Job& job) {
  if (job.phase() == JobPhase::kDraining && !job.pipesOpen()) publishJob(job);
}

void Supervisor::publishJob(Job& job) {
  if (job.drain_timer != 0) loop_.cancelTimer(job.drain_timer);
  job.drain_timer = 0;
  if (job.cgroup) {
    job.oom_killed = job.cgroup->oomKilled();
    job.final_usage = job.cgroup->usage();
  }
  job.publish(realtimeMs());
  protocol::JobStatus s = job.status();
  std::string how = s.state == protocol::JobState::kExited ? describeWait(CLD_EXITED, s.exit_code)
                                                           : describeWait(CLD_KILLED, s.signal);
  // Every field always: empty or 0 when it does not apply (a killed job has no exit code).
  log::Fields fields = {{"JOB_ID", job.id()},
                        {"JOB_USER", job.owner()},
                        {"JOB_STATE", std::string(protocol::jobStateName(s.state))},
                        {"JOB_EXIT_CODE", s.has_exit_code ? std::to_string(s.exit_code) : ""},
                        {"JOB_SIGNAL", std::to_string(s.signal)},
                        {"JOB_STOPPED_BY", s.stopped_by},
                        {"JOB_OOM_KILLED", s.oom_killed ? "1" : "0"},
                        {"JOB_OUTPUT_BYTES", std::to_string(s.output_bytes + s.stderr_bytes)}};
  log::event(log::Priority::kInfo, log::ids::kJobExit,
             "job " + job.id() + " of " + job.owner() + " ended: " + how, fields);
  countJobEnd(job);
  answerParked(job, 0, true);
  updateServiceStatus();
  if (job.cgroup) removeCgroupLater(job.id(), 0);
  enforceRetention();
  maybeFinishShutdown();
}

void Supervisor::removeCgroupLater(const std::string& job_id, int attempt) {
  Job* job = jobs_.find(job_id);
  if (job == nullptr || !job->cgroup) return;
  job->cgroup_timer = 0;
  if (job->cgroup->empty()) {
    Status st = job->cgroup->remove();
    if (st) {
      job->cgroup.reset();
      return;
    }
    if (attempt + 1 >= kCgroupRemoveAttempts) {
      log::err("job " + job_id + ": cannot remove its cgroup: " + st.error().message);
      job->cgroup.reset();
      return;
    }
  } else {
    (void)job->cgroup->killAll();
    if (attempt + 1 >= kCgroupRemoveAttempts) {
      log::err("job " + job_id + ": its cgroup still has processes after SIGKILL; leaving it");
      job->cgroup.reset();
      return;
    }
  }
  job->cgroup_timer = loop_.addTimer(
      kCgroupRemoveRetryMs, [this, job_id, attempt] { removeCgroupLater(job_id, attempt + 1); });
}

void Supervisor::stopJob(Job& job, const std::string& by, uint64_t grace_ms,
                         const std::string& remote_address) {
  bool first = !job.stopRequested();
  if (!job.requestStop(by)) return;
  if (first) {
    log::event(log::Priority::kInfo, log::ids::kJobStop,
               "job " + job.id() + " of " + job.owner() + " stopped by " + by + " (grace " +
                   std::to_string(grace_ms) + " ms)",
               {{"JOB_ID", job.id()},
                {"JOB_USER", job.owner()},
                {"JOB_STOPPED_BY", by},
                {"REMOTE_ADDR", remote_address},
                {"JOB_STOP_GRACE_MS", std::to_string(grace_ms)}});
  }
  if (job.has_init) {
    // Once, to the init alone: it forwards it to the command's process group (a second copy
    // would reach the command twice).
    if (signalMain(job, SIGTERM) != 0 && errno != ESRCH) {
      log::err("job " + job.id() + ": SIGTERM to its init: " + strerror(errno));
    }
  } else {
    // The group, and the main process in case it left the group.
    if (kill(-job.pid(), SIGTERM) != 0 && errno != ESRCH) {
      log::err("job " + job.id() + ": SIGTERM to its process group: " + strerror(errno));
    }
    signalMain(job, SIGTERM);
  }
  uint64_t deadline = EventLoop::monotonicMs() + grace_ms;
  if (job.kill_timer != 0 && job.kill_deadline_ms <= deadline) return;  // an earlier one stands
  if (job.kill_timer != 0) loop_.cancelTimer(job.kill_timer);
  job.kill_deadline_ms = deadline;
  std::string jid = job.id();
  job.kill_timer = loop_.addTimer(grace_ms, [this, jid] {
    Job* j = jobs_.find(jid);
    if (j == nullptr) return;
    j->kill_timer = 0;
    if (!j->mainExited()) killJob(*j);
  });
}

void Supervisor::killJob(Job& job) {
  if (job.pid() <= 0) return;
  if (job.has_init) {
    // The init's death makes the kernel kill every process of its PID namespace.
    if (!job.mainExited() && signalMain(job, SIGKILL) != 0 && errno != ESRCH) {
      log::err("job " + job.id() + ": SIGKILL to its init: " + strerror(errno));
    }
  } else {
    if (kill(-job.pid(), SIGKILL) != 0 && errno != ESRCH) {
      log::err("job " + job.id() + ": SIGKILL to its process group: " + strerror(errno));
    }
    if (!job.mainExited()) signalMain(job, SIGKILL);
  }
  // Also catches what left the process group of a job without a PID namespace.
  if (job.cgroup) {
    Status st = job.cgroup->killAll();
    if (!st) log::err("job " + job.id() + ": kill its cgroup: " + st.error().message);
  }
}

void Supervisor::enforceRetention() {
  JobTable::Retention rules{settings_.retention_count, settings_.retention_age_ms,
                            settings_.retention_total};
  for (const auto& id : jobs_.expired(rules, realtimeMs())) dropJob(id);
}

void Supervisor::dropJob(const std::string& job_id) {
  Job* job = jobs_.find(job_id);
  if (job == nullptr) return;
  for (EventLoop::TimerId t :
       {job->kill_timer, job->timeout_timer, job->drain_timer, job->cgroup_timer}) {
    if (t != 0) loop_.cancelTimer(t);
  }
  for (int s = 0; s < 2; s++) closeJobPipe(*job, s);
  if (job->pidfd_watch != 0) loop_.unwatch(job->pidfd_watch);
  if (!job->ended() && job->pid() > 0) killJob(*job);
  if (job->cgroup) (void)job->cgroup->remove();
  if (auto it = parked_.find(job_id); it != parked_.end()) {
    for (auto& [key, p] : it->second) loop_.cancelTimer(p.timer);
    parked_count_ -= it->second.size();
    parked_.erase(it);
  }
  Status st = store_.removeJobDir(job_id);
  if (!st) log::err("job " + job_id + ": remove its output: " + st.error().message);
  jobs_.erase(job_id);
}

}  // namespace jw::supervisor
