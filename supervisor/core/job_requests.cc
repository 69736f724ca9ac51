// The supervisor's job lifecycle: start (the steps of jobs/start.h, then the shim), the shim's
// status channel (output sizes, deadline, exit), the end of a job (kill what is left, publish),
// stop, retention. The output bytes themselves never pass through jobworkerd: the shim appends
// them. Runs in jobworkerd.
#include <signal.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "common/log.h"
#include "common/policy.h"
#include "supervisor/core/supervisor.h"
#include "supervisor/jobs/start.h"
#include "supervisor/launch/namespaces.h"

namespace jw::supervisor {

using protocol::ErrorCode;
using protocol::Role;

namespace {

constexpr int kCgroupRemoveAttempts = 50;
constexpr uint64_t kCgroupRemoveRetryMs = 100;

std::string describeWait(int wait_code, int wait_value) {
  if (wait_code == CLD_EXITED) return "exit code " + std::to_string(wait_value);
  return "signal " + std::to_string(wait_value);
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
  if (!r.name.empty()) {
    const Job* other = jobs_.runningJobNamed(u->name, r.name);
    if (other == nullptr) other = startingJobNamed(u->name, r.name);
    if (other != nullptr) {
      refuse(id, who,
             {ErrorCode::kConflict, "job " + other->id() + " of yours, still running, is named " +
                                        log::quote(r.name) + ": names are unique among them"});
      return;
    }
  }
  if (jobs_.runningJobsOf(u->name) + startingJobsOf(u->name) >=
      settings_.max_running_jobs_per_user) {
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
  startJob(id, who, r);
}

size_t Supervisor::startingJobsOf(const std::string& user) const {
  size_t n = 0;
  for (const auto& [key, p] : starting_) n += p.user.name == user ? 1 : 0;
  return n;
}

const Job* Supervisor::startingJobNamed(const std::string& user, const std::string& name) const {
  for (const auto& [key, p] : starting_) {
    if (p.user.name == user && p.request.name == name) return p.job.get();
  }
  return nullptr;
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

// The checks and everything a job needs before its shim runs; each step refuses with the code
// and message the user sees, and until the spawn succeeded `resources` removes what was made.
// The shim is then started by the launcher, and finishStart() answers.
void Supervisor::startJob(uint32_t id, const Requester& who, const protocol::JobStartRequest& r) {
  const UserRecord& u = who.user;
  auto refused = [&](const RequestError& e) { refuse(id, who, e); };
  auto account =
      resolveAccount(settings_, u, opt_.as_root ? nullptr : &opt_.self, opt_.frontend_account);
  if (!account) return refused(account.error());
  if (auto e = checkNetwork(settings_, u, r.network)) return refused(*e);
  auto limits = jobLimits(settings_, u, r.limits, opt_.cgroups != nullptr);
  if (!limits) return refused(limits.error());
  auto job_id = newJobId();
  // Ids stay unique across restarts: a loaded job keeps its id.
  while (job_id && jobs_.find(job_id.value()) != nullptr) job_id = newJobId();
  if (!job_id) return refused({ErrorCode::kInternal, job_id.error().message});

  IsolationSpec isolation = isolationFor(u, r, job_id.value());
  auto job = std::make_unique<Job>(jobSpec(job_id.value(), u, r, *limits, *account, isolation),
                                   realtimeMs());
  auto resources = JobResources::create(*job, store_, opt_.cgroups.get(),
                                        aggregateLimits(policy::totals(settings_, u.name, u.role)));
  if (!resources) return refused(resources.error());
  if (Status st = state_.reserveEndRecord(job->status()); !st) {
    log::err("job " + job->id() + ": " + st.error().message);
    bool full = st.error().sys_errno == ENOSPC || st.error().sys_errno == EDQUOT;
    return refused({full ? ErrorCode::kInsufficientStorage : ErrorCode::kInternal,
                    full ? "reserving the job's end record failed: the state filesystem is full"
                         : "reserving the job's end record failed (details in the daemon's log)",
                    st.error().sys_errno});
  }

  UniqueFd stdin_read;  // closed after the launch: the command's fd 0 is the only read end left
  if (r.stdin_pipe) {
    auto feed = StdinFeed::create(&stdin_read);
    if (!feed) return refused({ErrorCode::kInternal, feed.error().message});
    job->stdin_feed.emplace(std::move(feed.value()));
  }
  SpawnRequest spawn = spawnRequest(*job, r, *account, isolation);
  spawn.stdin_read_fd = stdin_read.get();
  const uint64_t key = next_start_key_++;
  launcher_.launch(spawn, [this, key](Result<SpawnedJob> spawned, SpawnFailure failure) {
    finishStart(key, std::move(spawned), failure);
  });
  stdin_read.reset();
  // The launch holds its own copies now: jobworkerd keeps no fd of the job's files; reads open
  // them on demand.
  for (auto& st : job->streams) {
    if (st.log) st.log->seal();
  }
  job->exit_record.reset();
  starting_.emplace(
      key, PendingStart{id, frontend_generation_, u, who.remote_address, who.received_us, r,
                        account->name, std::move(job), std::move(resources.value())});
}

// The shim reported (or could not be started): the job runs, or is refused, or is recorded as
// failed; the answer goes to the frontend that asked, if it still runs.
void Supervisor::finishStart(uint64_t key, Result<SpawnedJob> spawned, SpawnFailure failure) {
  auto node = starting_.extract(key);
  if (node.empty()) return;
  PendingStart& p = node.mapped();
  const Requester who{p.user, p.remote_address, "job_start", p.received_us};
  const bool answer = p.frontend_generation == frontend_generation_;
  auto refused = [&](const RequestError& e) {
    if (answer) refuse(p.reply_id, who, e);
  };
  std::unique_ptr<Job>& job = p.job;
  if (!spawned) {
    const Error& e = spawned.error();
    if (failure == SpawnFailure::kExec || failure == SpawnFailure::kCwd) {
      // The program or the directory is wrong: the user's mistake, no job record.
      return refused(
          {failure == SpawnFailure::kExec ? ErrorCode::kExecFailed : ErrorCode::kBadRequest,
           e.message, e.sys_errno});
    }
    if (failure == SpawnFailure::kUnavailable) {
      log::err("job " + job->id() + " of " + p.user.name + " not started: " + e.message);
      return refused({ErrorCode::kUnavailable,
                      "jobs cannot be started for a moment (the job spawner is restarting)",
                      e.sys_errno});
    }
    log::err("job " + job->id() + " of " + p.user.name + " failed to start: " + e.message);
    job->markFailed(e.message, realtimeMs());
    if (job->stdin_feed) (void)job->stdin_feed->close(false);
    p.resources.releaseOutput();
    state_.saveEndRecord(job->status());
    countJobEnd(*job);
    Job* raw = jobs_.insert(std::move(job));
    emitEvent(*raw, protocol::EventType::kCreated);
    emitEvent(*raw, protocol::EventType::kEnded);
    enforceRetention();
    if (answer) replyStatus(p.reply_id, *raw);
    return;
  }
  p.resources.release();

  SpawnedJob& sj = spawned.value();
  job->markStarted(sj.pid, realtimeMs());
  metrics_.jobStarted(p.user.name, monotonicUs() - p.received_us);
  job->pidfd = std::move(sj.pidfd);
  job->channel = std::move(sj.channel);
  job->command_pid = sj.command_pid;
  if (auto identity = readJobIdentity(sj.pid, boot_id_)) {
    job->identity = std::move(identity.value());
  } else {
    log::warning("job " + job->id() + ": its identity: " + identity.error().message);
  }
  Job* raw = jobs_.insert(std::move(job));
  state_.saveJob(raw->record());
  emitEvent(*raw, protocol::EventType::kCreated);
  emitEvent(*raw, protocol::EventType::kStarted);
  watchJob(*raw);
  // Its first usage sample, soon and off this request: a list never has to read it itself.
  usage_sampler_.add(raw->id());
  scheduleUsageSampling();
  logJobStart(*raw, who, p.request, p.run_as);
  updateServiceStatus();
  if (answer) replyStatus(p.reply_id, *raw);
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
  spec.name = r.name;
  spec.labels = r.labels;
  return spec;
}

SpawnRequest Supervisor::spawnRequest(const Job& job, const protocol::JobStartRequest& r,
                                      const Account& account,
                                      const IsolationSpec& isolation) const {
  SpawnRequest sr;
  sr.init_fd = opt_.init_fd.get();
  sr.job_id = job.id();
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
  sr.stdout_log_fd = job.streams[0].log->writeFd();
  sr.stderr_log_fd = job.streams[1].log ? job.streams[1].log->writeFd() : -1;
  sr.exit_record_fd = job.exit_record.get();
  sr.output_cap = settings_.output_cap_bytes;
  // The shim enforces the timeout itself, so it passes even while no jobworkerd runs.
  sr.timeout_ms = jobTimeoutMs(settings_, r.timeout_ms);
  sr.stop_grace_ms = settings_.stop_grace_ms;
  return sr;
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
                 std::to_string(job.pid()) + " (its shim)",
             fields);
}

void Supervisor::watchJob(Job& job) {
  std::string jid = job.id();
  // A job taken over without its channel (pidfd_getfd failed) still ends through its pidfd.
  Result<EventLoop::WatchId> cw = EventLoop::WatchId{0};
  if (job.channel) {
    cw = loop_.watch(job.channel.get(), EPOLLIN, [this, jid](uint32_t) {
      if (Job* j = jobs_.find(jid)) onShimFrames(*j);
    });
  }
  if (cw) job.channel_watch = cw.value();
  auto pw = loop_.watch(job.pidfd.get(), EPOLLIN, [this, jid](uint32_t) { onJobExit(jid); });
  if (!pw || !cw) {
    // Without exit notification the job could never end: kill it now rather than leak it.
    log::err("job " + jid + ": watch its shim: " + (pw ? cw.error() : pw.error()).message +
             "; killing it");
    if (pw) loop_.unwatch(pw.value());
    killJob(job);
    if (job.adopted) {
      finishAdoptedJob(job, std::nullopt);
      return;
    }
    int status = 0;
    pid_t r;
    while ((r = waitpid(job.pid(), &status, 0)) < 0 && errno == EINTR) {
    }
    job.pidfd.reset();
    recordShimEnd(job, r == job.pid() ? status : W_EXITCODE(0, SIGKILL));
    maybePublish(job);
    return;
  }
  job.pidfd_watch = pw.value();
}

// Every frame the shim has queued. A frame that is not what a shim sends is logged and skipped:
// a root job could drive its shim, and nothing it sends may do more than mislead its own status.
void Supervisor::onShimFrames(Job& job) {
  uint8_t buf[shim::kMaxFrameBytes];
  while (job.channel) {
    ssize_t n = recv(job.channel.get(), buf, sizeof buf, MSG_DONTWAIT);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      // EOF: the shim is gone (its exit comes through the pidfd); EAGAIN: nothing more for now.
      if (n == 0 || errno != EAGAIN) closeShimChannel(job);
      return;
    }
    shim::FrameReader r(buf, static_cast<size_t>(n));
    shim::Frame type{};
    shim::StreamSizes out, err;
    shim::Exited exited;
    bool ok = r.type(&type);
    if (ok && type == shim::Frame::kProgress) {
      ok = r.getSizes(&out) && r.getSizes(&err) && r.complete();
      if (ok) applySizes(job, out, err);
    } else if (ok && type == shim::Frame::kExited) {
      ok = shim::decodeExited(r, &exited);
      if (ok && !job.reported_exit) {
        job.reported_exit = exited;
        applySizes(job, exited.streams[0], exited.streams[1]);
        takeFinalCgroupFigures(job);
      }
    } else if (ok && type == shim::Frame::kDeadlinePassed) {
      ok = r.complete();
      if (ok) onJobDeadline(job);
    } else {
      ok = false;
    }
    if (!ok) log::warning("job " + job.id() + ": unexpected frame from its shim; ignored");
  }
}

// The command has ended and its shim, the job's last process, waits for Collected: the cgroup's
// figures are final now, and still there (under systemd the job's scope goes once it is empty).
void Supervisor::takeFinalCgroupFigures(Job& job) {
  if (job.cgroup) {
    job.oom_killed = job.cgroup->oomKilled();
    job.final_usage = job.cgroup->usage();
  }
  shim::FrameWriter collected(shim::Frame::kCollected);
  // EPIPE: the shim is gone already; a full channel: it exits after kCollectWaitMs anyway.
  (void)send(job.channel.get(), collected.data(), collected.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
}

void Supervisor::applySizes(Job& job, const shim::StreamSizes& out, const shim::StreamSizes& err) {
  const shim::StreamSizes* sizes[2] = {&out, &err};
  for (int s = 0; s < 2; s++) {
    OutputLog* log = job.streams[s].log.get();
    if (log == nullptr) continue;
    uint64_t before = log->size();
    const bool had_error = !log->error().empty();
    log->update(*sizes[s]);
    if (!had_error && !log->error().empty()) {
      // Once per log: the job keeps running, its status says what is missing.
      log::warning("job " + job.id() + ": " + log->path() + ": " + log->error() +
                   "; its further output is counted as dropped");
    }
    if (log->size() != before) answerParked(job, s, false);
  }
}

// The shim's deadline passed: it has sent SIGTERM and runs the grace itself.
void Supervisor::onJobDeadline(Job& job) {
  if (job.mainExited()) return;
  bool first = !job.stopRequested();
  if (!job.requestStop("timeout")) return;
  if (first) {
    logJobStop(job, "timeout", settings_.stop_grace_ms, "");
    emitEvent(job, protocol::EventType::kStopRequested);
  }
  armBackupKill(job, settings_.stop_grace_ms);
  if (first) state_.saveJob(job.record());
}

void Supervisor::closeShimChannel(Job& job) {
  if (job.channel_watch != 0) loop_.unwatch(job.channel_watch);
  job.channel_watch = 0;
  job.channel.reset();
}

// The shim has been reaped with shim_wait_status. The command's status from its Exited frame is
// the job's; the shim's own counts only when it sent none (it was SIGKILLed: a backup kill, the
// OOM killer).
void Supervisor::recordShimEnd(Job& job, int shim_wait_status) {
  if (job.channel) onShimFrames(job);  // what it sent before it exited
  closeShimChannel(job);
  WaitOutcome outcome = waitOutcome(shim_wait_status);
  if (job.reported_exit) outcome = waitOutcome(job.reported_exit->wait_status);
  // The deadline passed while no jobworkerd heard DeadlinePassed: the exit says so.
  if (job.reported_exit && job.reported_exit->timed_out) job.requestStop("timeout");
  job.recordExit(outcome.code, outcome.value);
}

void Supervisor::onJobExit(const std::string& job_id) {
  Job* job = jobs_.find(job_id);
  if (job == nullptr || !job->pidfd) return;
  if (job->adopted) {
    onAdoptedJobExit(*job);
    return;
  }
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
  recordShimEnd(*job, status);
  // Nobody reads the pipe any more (an upload in progress learns it from its next frame).
  endStdin(*job, false, "the job ended");
  // The shim killed the rest of its job before it reported; the cgroup kill catches what left
  // its process group without a PID namespace.
  killJob(*job);
  if (!job->cgroup) {
    // Without a cgroup, the command's rusage (and its waited-for children) is the best figure
    // there is: from the shim's report, else the shim's own.
    job->final_usage.has_cpu = true;
    if (job->reported_exit) {
      job->final_usage.cpu_seconds =
          static_cast<double>(job->reported_exit->utime_us + job->reported_exit->stime_us) / 1e6;
    } else {
      job->final_usage.cpu_seconds =
          static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
          static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
    }
  }
  if (job->kill_timer != 0) loop_.cancelTimer(job->kill_timer);
  job->kill_timer = 0;
  maybePublish(*job);
}

// The shim drained the output to its end before it exited: nothing is left to wait for.
void Supervisor::maybePublish(Job& job) {
  if (job.phase() == JobPhase::kDraining) publishJob(job);
}

void Supervisor::publishJob(Job& job) {
  for (auto& st : job.streams) {
    if (st.log) st.log->finish();
  }
  // Without an Exited frame (the shim was killed) the figures are read now, if still there.
  if (job.cgroup && !job.reported_exit) {
    job.oom_killed = job.cgroup->oomKilled();
    job.final_usage = job.cgroup->usage();
  }
  job.publish(realtimeMs());
  emitEvent(job, protocol::EventType::kEnded);
  protocol::JobStatus s = job.status();
  state_.saveEndRecord(s);
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
  answerWaits(job);
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

void Supervisor::logJobStop(const Job& job, const std::string& by, uint64_t grace_ms,
                            const std::string& remote_address) {
  log::event(log::Priority::kInfo, log::ids::kJobStop,
             "job " + job.id() + " of " + job.owner() + " stopped by " + by + " (grace " +
                 std::to_string(grace_ms) + " ms)",
             {{"JOB_ID", job.id()},
              {"JOB_USER", job.owner()},
              {"JOB_STOPPED_BY", by},
              {"REMOTE_ADDR", remote_address},
              {"JOB_STOP_GRACE_MS", std::to_string(grace_ms)}});
}

void Supervisor::stopJob(Job& job, const std::string& by, uint64_t grace_ms,
                         const std::string& remote_address) {
  bool first = !job.stopRequested();
  if (!job.requestStop(by)) return;
  if (first) {
    logJobStop(job, by, grace_ms, remote_address);
    emitEvent(job, protocol::EventType::kStopRequested);
  }
  // The shim signals the command's process group and SIGKILLs the whole job after the grace.
  shim::FrameWriter stop(shim::Frame::kStop);
  stop.put32(static_cast<uint32_t>(SIGTERM));
  stop.put32(static_cast<uint32_t>(std::min<uint64_t>(grace_ms, UINT32_MAX)));
  bool sent = job.channel && send(job.channel.get(), stop.data(), stop.size(),
                                  MSG_DONTWAIT | MSG_NOSIGNAL) == static_cast<ssize_t>(stop.size());
  if (!sent) {
    // A full or closed channel: SIGTERM to the shim, which forwards it (the backup kill below
    // then ends the job after the grace).
    if (job.pidfd && syscall(SYS_pidfd_send_signal, job.pidfd.get(), SIGTERM, nullptr, 0U) != 0 &&
        errno != ESRCH) {
      log::err("job " + job.id() + ": SIGTERM to its shim: " + strerror(errno));
    }
  }
  armBackupKill(job, grace_ms);
  // Who stopped it and when the backup kill is due, should the daemon not see its end.
  if (first) state_.saveJob(job.record());
}

void Supervisor::armBackupKill(Job& job, uint64_t grace_ms) {
  uint64_t deadline = EventLoop::monotonicMs() + grace_ms + kShimGraceMarginMs;
  if (job.kill_timer != 0 && job.kill_deadline_ms <= deadline) return;  // an earlier one stands
  if (job.kill_timer != 0) loop_.cancelTimer(job.kill_timer);
  job.kill_deadline_ms = deadline;
  std::string jid = job.id();
  job.kill_timer = loop_.addTimer(grace_ms + kShimGraceMarginMs, [this, jid] {
    Job* j = jobs_.find(jid);
    if (j == nullptr) return;
    j->kill_timer = 0;
    if (!j->mainExited()) killJob(*j);
  });
}

void Supervisor::killJob(Job& job) {
  if (job.pid() <= 0) return;
  if (!job.mainExited() && job.pidfd) {
    // The shim's death takes its PID namespace with it; without one, the command's group too.
    const auto& iso = job.spec().isolation;
    if (job.command_pid > 0 && std::find(iso.begin(), iso.end(), "pid") == iso.end()) {
      kill(-job.command_pid, SIGKILL);
    }
    if (syscall(SYS_pidfd_send_signal, job.pidfd.get(), SIGKILL, nullptr, 0U) != 0 &&
        errno != ESRCH) {
      log::err("job " + job.id() + ": SIGKILL to its shim: " + strerror(errno));
    }
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
  releaseJob(*job);
  Status st = store_.removeJobDir(job_id);
  if (!st) log::err("job " + job_id + ": remove its output: " + st.error().message);
  state_.jobRemoved();
  jobs_.erase(job_id);
}

void Supervisor::releaseJob(Job& job) {
  for (EventLoop::TimerId t : {job.kill_timer, job.cgroup_timer}) {
    if (t != 0) loop_.cancelTimer(t);
  }
  closeShimChannel(job);
  endStdin(job, false, "the job was released");
  if (job.pidfd_watch != 0) loop_.unwatch(job.pidfd_watch);
  if (!job.ended() && job.pid() > 0) killJob(job);
  if (job.cgroup) (void)job.cgroup->remove();
  dropParked(job.id());
}

// A slice samples for at most 2 ms, then the loop serves everything else for a millisecond
// (a timer due now would fire again before epoll is asked): thousands of stale jobs cost the
// loop no stall longer than a slice.
void Supervisor::scheduleUsageSampling() {
  constexpr int64_t kSliceBudgetUs = 2000;
  if (usage_timer_ != 0 || usage_sampler_.empty()) return;
  usage_timer_ = loop_.addTimer(1, [this] {
    usage_timer_ = 0;
    if (usage_sampler_.runSlice(jobs_, kSliceBudgetUs)) scheduleUsageSampling();
  });
}

}  // namespace jw::supervisor
