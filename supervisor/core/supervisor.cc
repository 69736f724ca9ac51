// jobworkerd's core (see supervisor.h): signals, users and sessions, the frontend channel, and
// the request handlers with their re-validation, role and ownership rules. Runs in jobworkerd.
#include "supervisor/core/supervisor.h"

#include <signal.h>
#include <sodium.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "common/io.h"
#include "common/log.h"
#include "common/names.h"
#include "supervisor/core/service_manager.h"
#include "supervisor/launch/credentials.h"

namespace jw::supervisor {

using protocol::ErrorCode;
using protocol::Role;

namespace {

constexpr uint64_t kHousekeepingMs = 60'000;

// Error text must fit the codec's kMaxMessage.
std::string clip(std::string s) {
  if (s.size() > protocol::kMaxMessage) s.resize(protocol::kMaxMessage);
  return s;
}

PasswordVerifierOptions verifierOptions(const SupervisorOptions& o) {
  PasswordVerifierOptions v;
  v.path = o.verifier_path;
  if (o.as_root) {
    v.args = {"--run-as", o.settings.verifier_user};
  } else {
    v.args = {"--no-setuid"};
  }
  v.max_in_flight = o.settings.max_concurrent_password_checks;
  return v;
}

LoginThrottleLimits throttleLimits(const config::Settings& s) {
  LoginThrottleLimits l;
  l.pair_free_failures = s.login_max_failures;
  l.backoff_cap_ms = std::max<uint64_t>(s.login_lockout_ms, l.backoff_base_ms);
  return l;
}

}  // namespace

Supervisor::Supervisor(SupervisorOptions options)
    : opt_(std::move(options)),
      settings_(opt_.settings),
      store_(opt_.state_dir),
      state_(opt_.state_dir),
      sessions_(opt_.settings.session_ttl_ms),
      verifier_(loop_, verifierOptions(opt_)),
      throttle_([] { return EventLoop::monotonicMs(); }, throttleLimits(opt_.settings)),
      metrics_(opt_.settings.metrics_max_users),
      events_(kEventRingSize, static_cast<uint64_t>(realtimeMs()) * 1000),
      launcher_(loop_, opt_.spawner_path, opt_.init_fd.get()) {}

Supervisor::~Supervisor() {
  frontend_.reset();
  // Records and output stay for the next start; a job still running now is killed and its
  // record, which says running, becomes a lost job then.
  for (Job* j : jobs_.all()) releaseJob(*j);
}

Status Supervisor::init() {
  if (Status st = prepareIsolation(); !st) return st;
  if (Status st = loop_.init(); !st) return st;
  startWatchdog();
  startLagProbe();
  if (Status st = setupSignals(); !st) return st;
  if (Status st = loadUsers(); !st) return st;
  if (sodium_init() < 0) return Error{"sodium_init failed"};
  if (Status st = store_.prepare(); !st) return st;
  if (Status st = loadState(); !st) return Error{"state: " + st.error().message};
  enforceRetention();
  verifier_.start();
  launcher_.start();
  control_ = std::make_unique<ControlServer>(
      loop_, [this](ControlServer::ConnId c, const protocol::ControlFrameHeader& h,
                    std::string_view p) { return onControlRequest(c, h, p); });
  if (Status st = control_->listen(config::controlSocketPath(settings_)); !st) {
    return Error{"control socket: " + st.error().message, st.error().sys_errno};
  }

  FrontendOptions fo;
  fo.path = opt_.frontend_path;
  fo.listen_fd = opt_.listen_fd.get();
  fo.args = {"--channel-fd", "3",           "--listen-fd", "4",
             "--tls-cert",   opt_.tls_cert, "--tls-key",   opt_.tls_key};
  if (!opt_.config_file.empty()) fo.args.insert(fo.args.end(), {"--config", opt_.config_file});
  if (opt_.as_root) {
    fo.args.insert(fo.args.end(), {"--run-as", settings_.frontend_user});
  } else {
    fo.args.push_back("--no-setuid");
  }
  if (opt_.dev) fo.args.push_back("--dev");
  FrontendProcess::Callbacks cb;
  cb.on_connected = [this] { onFrontendConnected(); };
  cb.on_request = [this](const protocol::FrameHeader& h, std::string_view p) {
    return onRequest(h, p);
  };
  cb.on_disconnected = [this] { onFrontendGone(); };
  frontend_ = std::make_unique<FrontendProcess>(loop_, std::move(fo), std::move(cb));
  frontend_->start();
  loop_.addTimer(kHousekeepingMs, [this] { housekeeping(); });
  return okStatus();
}

int Supervisor::run() {
  Status st = loop_.run();
  if (!st) {
    log::err("event loop: " + st.error().message);
    return 1;
  }
  return 0;
}

// --- job isolation, signals, users, sessions ---------------------------------------------------

Status Supervisor::prepareIsolation() {
  auto profile = JobSeccompProfile::build();
  if (profile) {
    job_seccomp_ = std::move(profile.value());
  } else if (settings_.job_seccomp) {
    // Jobs would otherwise run without the filter the configuration promises: fail closed.
    return Error{"job seccomp profile (isolation.seccomp): " + profile.error().message,
                 profile.error().sys_errno};
  } else {
    log::warning("job seccomp profile unavailable (" + profile.error().message +
                 "); isolation.seccomp is off anyway");
  }
  if (opt_.as_root) {
    // Only root changes a job's credentials, and so drops its bounding set.
    auto last = lastCapability();
    if (!last) return Error{"capabilities: " + last.error().message, last.error().sys_errno};
    last_cap_ = last.value();
  }
  auto boot_id = readFile("/proc/sys/kernel/random/boot_id", 64);
  if (!boot_id) return Error{"boot id: " + boot_id.error().message};
  boot_id_ = boot_id->substr(0, boot_id->find('\n'));
  if (!opt_.as_root) {
    log::warning("not root: jobs run without namespaces (the job seccomp profile still applies)");
  } else {
    // A setting every job would fail on (job_tmp_size = 0) is a startup error, not failed jobs.
    IsolationSpec sample;
    sample.mount = settings_.isolate_mount;
    sample.hostname = jobHostname("00000000");
    sample.tmp_size = settings_.job_tmp_size;
    if (auto plan = planContainment(sample); !plan) {
      return Error{"job isolation: " + plan.error().message, plan.error().sys_errno};
    }
    std::string off;
    using Switch = std::pair<bool, const char*>;
    for (auto [on, name] :
         {Switch{settings_.isolate_pid, "pid"}, Switch{settings_.isolate_mount, "mount"},
          Switch{settings_.isolate_net, "net"}, Switch{settings_.isolate_uts, "uts"},
          Switch{settings_.isolate_ipc, "ipc"}, Switch{settings_.job_seccomp, "seccomp"}}) {
      if (!on) off += (off.empty() ? "" : ", ") + std::string(name);
    }
    if (!off.empty()) log::warning("job isolation turned off by the configuration: " + off);
  }
  return okStatus();
}

Status Supervisor::setupSignals() {
  sigset_t set;
  sigemptyset(&set);
  for (int s : {SIGTERM, SIGINT, SIGHUP, SIGCHLD}) sigaddset(&set, s);
  signal_fd_.reset(signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC));
  if (!signal_fd_) return sysError("signalfd");
  auto w = loop_.watch(signal_fd_.get(), EPOLLIN, [this](uint32_t) { onSignal(); });
  if (!w) return w.error();
  return okStatus();
}

void Supervisor::onSignal() {
  signalfd_siginfo si{};
  while (read(signal_fd_.get(), &si, sizeof si) == sizeof si) {
    switch (si.ssi_signo) {
      case SIGTERM:
      case SIGINT:
        beginShutdown();
        break;
      case SIGHUP:
        reloadUsers();
        break;
      default:
        break;  // SIGCHLD: every child is reaped through its own pidfd
    }
  }
}

Status Supervisor::loadUsers() {
  auto users = loadUsersFile(opt_.users_file);
  if (!users) return users.error();
  std::map<std::string, UserRecord> table;
  for (auto& u : users.value()) table[u.name] = std::move(u);
  users_ = std::move(table);
  log::info("loaded " + std::to_string(users_.size()) + " user(s) from " + opt_.users_file);
  return okStatus();
}

void Supervisor::reloadUsers() {
  std::map<std::string, UserRecord> old = users_;
  Status st = loadUsers();
  if (!st) {
    log::event(log::Priority::kErr, log::ids::kUsersReload,
               "SIGHUP: keeping the previous users: " + st.error().message,
               {{"USERS_FILE", opt_.users_file},
                {"RELOAD_RESULT", "failed"},
                {"REASON", st.error().message},
                {"USERS_COUNT", std::to_string(users_.size())},
                {"USERS_ADDED", "0"},
                {"USERS_REMOVED", "0"},
                {"USERS_CHANGED", "0"},
                {"SESSIONS_ENDED", "0"}});
    return;
  }
  size_t added = 0, removed = 0, changed = 0;
  for (const auto& [name, u] : users_) {
    auto it = old.find(name);
    if (it == old.end()) {
      added++;
    } else if (it->second.password_hash != u.password_hash || it->second.role != u.role ||
               it->second.run_as != u.run_as) {
      changed++;
    }
  }
  for (const auto& [name, u] : old) removed += users_.contains(name) ? 0 : 1;
  // A removed user's sessions end, and so do those of a user whose password changed: a new
  // password is how an administrator locks out whoever knew the old one.
  size_t ended = sessions_.removeUsersIf([&](const std::string& name) {
    const UserRecord* u = findUser(name);
    auto it = old.find(name);
    return u == nullptr || it == old.end() || u->password_hash != it->second.password_hash;
  });
  log::event(log::Priority::kNotice, log::ids::kUsersReload,
             "SIGHUP: " + std::to_string(users_.size()) + " user(s) from " + opt_.users_file +
                 " (" + std::to_string(added) + " added, " + std::to_string(removed) +
                 " removed, " + std::to_string(changed) + " changed; " + std::to_string(ended) +
                 " session(s) ended)",
             {{"USERS_FILE", opt_.users_file},
              {"RELOAD_RESULT", "ok"},
              {"REASON", ""},
              {"USERS_COUNT", std::to_string(users_.size())},
              {"USERS_ADDED", std::to_string(added)},
              {"USERS_REMOVED", std::to_string(removed)},
              {"USERS_CHANGED", std::to_string(changed)},
              {"SESSIONS_ENDED", std::to_string(ended)}});
}

const UserRecord* Supervisor::findUser(const std::string& name) const {
  auto it = users_.find(name);
  return it == users_.end() ? nullptr : &it->second;
}

void Supervisor::startWatchdog() {
  uint64_t interval = service_manager::watchdogIntervalMs();
  if (interval == 0) return;
  watchdog_ms_ = interval;
  // Half the interval, as sd_watchdog_enabled(3) advises: one late wake-up is not a restart.
  watchdog_ping_ms_ = std::max<uint64_t>(interval / 2, 1);
  log::info("systemd watchdog: " + std::to_string(interval) + " ms; pinging every " +
            std::to_string(watchdog_ping_ms_) + " ms from the event loop");
  pingWatchdog();
}

void Supervisor::pingWatchdog() {
  // From a timer of the one event loop: a loop that no longer turns stops the pings.
  service_manager::notify("WATCHDOG=1");
  loop_.addTimer(watchdog_ping_ms_, [this] { pingWatchdog(); });
}

size_t Supervisor::runningJobs() const {
  size_t running = 0;
  jobs_.forEach([&](const Job& j) { running += j.ended() ? 0 : 1; });
  return running;
}

void Supervisor::updateServiceStatus() {
  service_manager::notify(
      "STATUS=" + service_manager::statusLine(ready_notified_, shutting_down_, runningJobs()));
}

void Supervisor::housekeeping() {
  sessions_.pruneExpired(realtimeMs());
  enforceRetention();
  loop_.addTimer(kHousekeepingMs, [this] { housekeeping(); });
}

// --- frontend channel --------------------------------------------------------------------------

void Supervisor::onFrontendConnected() {
  frontend_ready_ = false;
  frontend_generation_++;  // the sessions stay here; the new frontend gets nothing
}

void Supervisor::onFrontendGone() {
  // Parked reads belong to the old connection; nobody is left to answer.
  for (auto& [job_id, reads] : parked_) {
    for (auto& [key, p] : reads) loop_.cancelTimer(p.timer);
  }
  for (auto& [job_id, waits] : parked_waits_) {
    for (auto& [key, w] : waits) loop_.cancelTimer(w.timer);
  }
  parked_.clear();
  parked_waits_.clear();
  parked_count_ = 0;
  for (auto& [key, p] : parked_events_) loop_.cancelTimer(p.timer);
  parked_events_.clear();
  // Nobody is left to send the rest: each upload in progress ends cut short (EOF for its job).
  endUploads("the frontend is gone");
}

Status Supervisor::handleReady(uint32_t, const protocol::Empty&) {
  // Ready ends the frontend's start sequence once; a second one means it is not running the code
  // we started.
  if (frontend_ready_) return Error{"a second Ready from the same frontend"};
  frontend_ready_ = true;
  if (ready_notified_) return okStatus();  // a respawned frontend: systemd heard it already
  ready_notified_ = true;
  log::notice("frontend ready; serving");
  service_manager::notify("READY=1");
  updateServiceStatus();
  return okStatus();
}

void Supervisor::replyError(uint32_t id, ErrorCode code, const std::string& message,
                            int sys_errno) {
  protocol::ErrorReply e{code, sys_errno, clip(message)};
  frontend_->send(protocol::encodeErrorReply(id, e));
}

void Supervisor::refuse(uint32_t id, const Requester& who, const RequestError& e) {
  // What the user may not do (role, limits) is audited; a malformed or impossible request
  // (bad request, exec failure) is the user's mistake and only answered.
  if (e.code == ErrorCode::kForbidden || e.code == ErrorCode::kLimitExceeded) {
    std::string code(e.code == ErrorCode::kForbidden ? "forbidden" : "limit_exceeded");
    log::event(log::Priority::kNotice, log::ids::kRefused,
               std::string(who.action) + " by " + who.user.name + " from " +
                   log::quote(who.remote_address) + " refused (" + code + "): " + e.message,
               {{"USER", who.user.name},
                {"REMOTE_ADDR", who.remote_address},
                {"ACTION", std::string(who.action)},
                {"REFUSAL", code},
                {"REASON", e.message}});
  }
  replyError(id, e.code, e.message, e.sys_errno);
}

void Supervisor::replyStatus(uint32_t id, const Job& job) {
  frontend_->send(protocol::encodeJobStatus(id, job.status()));
}

// --- requests ----------------------------------------------------------------------------------

Job* Supervisor::accessibleJob(uint32_t id, const UserRecord& user, const std::string& job_id,
                               Access access) {
  const UserRecord* u = &user;
  Job* job = jobs_.find(job_id);
  // A user never learns whether another user's job exists.
  if (job == nullptr || (u->role == Role::kUser && job->owner() != u->name)) {
    replyError(id, ErrorCode::kNotFound, "no job " + log::quote(job_id));
    return nullptr;
  }
  if (u->role == Role::kViewer && access == Access::kWrite) {
    replyError(id, ErrorCode::kForbidden, "role viewer cannot stop jobs");
    return nullptr;
  }
  return job;
}

void Supervisor::handleJobStop(uint32_t id, const protocol::JobStopRequest& r) {
  const UserRecord* u = authenticate(id, r.token);
  if (u == nullptr) return;
  // Role first: a viewer learns nothing about which jobs exist from a stop.
  if (u->role == Role::kViewer) {
    refuse(id, {*u, r.remote_address, "job_stop"},
           {ErrorCode::kForbidden, "role viewer cannot stop jobs"});
    return;
  }
  Job* job = accessibleJob(id, *u, r.job_id, Access::kWrite);
  if (job == nullptr) return;
  if (job->ended()) {
    replyError(id, ErrorCode::kConflict,
               "job " + job->id() + " already ended (" +
                   std::string(protocol::jobStateName(job->visibleState())) + ")");
    return;
  }
  // A job whose main process already exited is being finalised: nothing left to stop.
  if (!job->mainExited()) {
    stopJob(*job, u->name, r.has_grace ? r.grace_ms : settings_.stop_grace_ms, r.remote_address);
  }
  replyStatus(id, *job);
}

void Supervisor::handleJobGet(uint32_t id, const protocol::JobRef& r) {
  const UserRecord* u = authenticate(id, r.token);
  if (u == nullptr) return;
  Job* job = accessibleJob(id, *u, r.job_id, Access::kRead);
  if (job != nullptr) replyStatus(id, *job);
}

void Supervisor::handleJobList(uint32_t id, const protocol::JobListRequest& r) {
  const UserRecord* u = authenticate(id, r.token);
  if (u == nullptr) return;
  // Role user asking for `all` gets its own jobs: the list is still correct for what it may see.
  // Another owner's jobs it may not ask for at all.
  if (u->role == Role::kUser && !r.owner.empty() && r.owner != u->name) {
    replyError(id, ErrorCode::kForbidden, "role user sees only its own jobs");
    return;
  }
  if (!r.name.empty() && !names::validJobName(r.name)) {
    replyError(id, ErrorCode::kBadRequest, "malformed name filter");
    return;
  }
  for (const auto& l : r.labels) {
    if (!names::validLabel(l)) {
      replyError(id, ErrorCode::kBadRequest, "malformed label filter");
      return;
    }
  }
  const bool everyone = (r.all || !r.owner.empty()) && u->role != Role::kUser;
  JobTable::Query q{everyone ? r.owner : u->name,
                    r.state,
                    r.name,
                    r.labels,
                    r.since_ms,
                    std::min(r.limit, protocol::kMaxListLimit),
                    r.after_created_ms,
                    r.after_id};
  JobTable::Page page = jobs_.query(q);
  // One pass, no cgroup file opened: each status with its last usage sample, encoded straight
  // into its frame. The stale samples are refreshed after the reply, a slice at a time.
  protocol::JobListPacker packer(id);
  const int64_t now_ms = static_cast<int64_t>(EventLoop::monotonicMs());
  protocol::JobStatus s;
  for (const Job* job : page.jobs) {
    job->statusInto(s, Job::UsageRead::kLastSample);
    packer.add(s);
    if (job->usageStale(now_ms)) usage_sampler_.add(job->id());
  }
  for (auto& f : packer.finish(page.more)) frontend_->send(std::move(f));
  scheduleUsageSampling();
}

void Supervisor::handleJobWait(uint32_t id, const protocol::JobWaitRequest& r) {
  const UserRecord* u = authenticate(id, r.token);
  if (u == nullptr) return;
  Job* job = accessibleJob(id, *u, r.job_id, Access::kRead);
  if (job == nullptr) return;
  if (job->ended() || r.wait_ms == 0) {
    replyStatus(id, *job);
    return;
  }
  // Parked like a follow read: the loop never blocks, and the cap bounds the memory.
  if (parked_count_ >= kMaxParkedReads) {
    replyError(id, ErrorCode::kUnavailable, "too many waits and follow reads waiting; retry later");
    return;
  }
  uint64_t key = next_parked_key_++;
  std::string job_id = job->id();
  uint64_t ms = std::min<uint64_t>(r.wait_ms, kParkedReadMs);
  auto timer = loop_.addTimer(ms, [this, job_id, key] { expireWait(job_id, key); });
  parked_waits_[job_id].emplace(key, ParkedWait{id, r.token, timer});
  parked_count_++;
}

void Supervisor::answerWaits(const Job& job) {
  auto it = parked_waits_.find(job.id());
  if (it == parked_waits_.end()) return;
  for (auto& [key, w] : it->second) {
    loop_.cancelTimer(w.timer);
    replyStatus(w.request_id, job);
    parked_count_--;
  }
  parked_waits_.erase(it);
}

void Supervisor::expireWait(const std::string& job_id, uint64_t key) {
  auto it = parked_waits_.find(job_id);
  if (it == parked_waits_.end()) return;
  auto w = it->second.find(key);
  if (w == it->second.end()) return;
  Job* job = jobs_.find(job_id);
  if (job != nullptr) {
    replyStatus(w->second.request_id, *job);
  } else {
    replyError(w->second.request_id, ErrorCode::kNotFound, "no job " + log::quote(job_id));
  }
  it->second.erase(w);
  parked_count_--;
  if (it->second.empty()) parked_waits_.erase(it);
}

void Supervisor::handleJobDelete(uint32_t id, const protocol::JobDeleteRequest& r) {
  const UserRecord* u = authenticate(id, r.token);
  if (u == nullptr) return;
  if (u->role == Role::kViewer) {
    refuse(id, {*u, r.remote_address, "job_delete"},
           {ErrorCode::kForbidden, "role viewer cannot delete jobs"});
    return;
  }
  Job* job = accessibleJob(id, *u, r.job_id, Access::kWrite);
  if (job == nullptr) return;
  if (!job->ended()) {
    replyError(id, ErrorCode::kConflict,
               "job " + job->id() + " is still running: stop it first, then delete it");
    return;
  }
  log::info("job " + job->id() + " of " + job->owner() + " deleted by " + u->name + " from " +
            log::quote(r.remote_address));
  dropJob(job->id());
  updateServiceStatus();
  frontend_->send(protocol::encodeOk(id, protocol::Empty{}));
}

void Supervisor::handleServerInfo(uint32_t id, const protocol::SessionRef& r) {
  if (authenticate(id, r.token) == nullptr) return;
  protocol::ServerInfoReply info;
  info.cgroup_backend = opt_.cgroups ? opt_.cgroups->name() : "none";
  frontend_->send(protocol::encodeServerInfoReply(id, info));
}

void Supervisor::handleHealth(uint32_t id, const protocol::Empty&) {
  protocol::HealthReply h;
  if (opt_.cgroups) {
    h.details.push_back("cgroups: " + opt_.cgroups->name());
    for (auto& d : opt_.cgroups->details()) {
      if (d.rfind("cgroup backend: ", 0) != 0) h.details.push_back(clip(d));  // said just above
    }
  } else {
    h.details.push_back("cgroups: none");
  }
  size_t running = runningJobs();
  h.details.push_back("jobs: " + std::to_string(running) + " running, " +
                      std::to_string(jobs_.size()) + " known");
  // Degraded: still serving status and output, but checkStartCapacity() refuses new jobs.
  if (auto refused = checkStartCapacity()) {
    h.degraded = true;
    h.details.insert(h.details.begin(),
                     clip("degraded: new jobs are refused: " + refused->message));
  }
  if (auto open_fds = countOpenFds()) {
    h.details.push_back("file descriptors: " + std::to_string(open_fds.value()) + " open of " +
                        std::to_string(opt_.fd_limits.soft));
  }
  if (h.details.size() > protocol::kMaxHealthDetails) h.details.resize(protocol::kMaxHealthDetails);
  frontend_->send(protocol::encodeHealthReply(id, h));
}

// --- output reads ------------------------------------------------------------------------------

protocol::OutputChunk Supervisor::readChunk(const Job& job, const protocol::OutputReadRequest& r) {
  protocol::OutputChunk c;
  c.offset = r.offset;
  const OutputLog& log = *job.streams[static_cast<int>(r.stream)].log;
  size_t max = std::min<size_t>(r.max_bytes, protocol::kMaxChunk);
  // With timestamps the byte before tells whether the chunk starts a line.
  uint64_t from = r.timestamps && r.offset > 0 ? r.offset - 1 : r.offset;
  auto data = log.read(from, max + (r.offset - from));
  if (!data) {
    log::err(data.error().message);
  } else if (!r.timestamps) {
    c.data = std::move(data.value());
  } else if (data->size() > r.offset - from) {
    bool at_line_start = r.offset == 0 || (*data)[0] == '\n';
    std::string_view raw = std::string_view(data.value()).substr(r.offset - from);
    // Bytes no mark covers yet (a running job's newest) arrived about now; a finished job's
    // bytes all have marks, unless a crash cost the last ones: then its end is the best bound.
    int64_t unmarked = job.ended() ? job.endedAtMs() : realtimeMs();
    size_t consumed = 0;
    c.data =
        withTimestamps(raw, r.offset, at_line_start, log.timeMarks(), unmarked, max, &consumed);
    c.raw_size = static_cast<uint32_t>(consumed);
  }
  if (!r.timestamps) c.raw_size = static_cast<uint32_t>(c.data.size());
  c.eof = job.ended() && r.offset + c.raw_size >= log.size();
  return c;
}

std::optional<std::string> Supervisor::chunkFrame(uint32_t request_id, const Job& job,
                                                  const protocol::OutputReadRequest& r) {
  const OutputLog& log = *job.streams[static_cast<int>(r.stream)].log;
  if (r.timestamps) {
    protocol::OutputChunk c = readChunk(job, r);
    if (c.data.empty() && r.offset < log.size()) return std::nullopt;
    return protocol::encodeOutputChunk(request_id, c);
  }
  auto frame = protocol::encodeOutputChunkRead(
      request_id, r.offset, r.max_bytes,
      [&](char* dst, size_t max) { return log.readInto(r.offset, dst, max); },
      [&](size_t n) { return job.ended() && r.offset + n >= log.size(); });
  if (!frame) {
    log::err(frame.error().message);
    return std::nullopt;
  }
  return std::move(frame.value());
}

// Where a tail_lines / since read starts: the later of the two bounds, at a line start.
Result<uint64_t> Supervisor::startOffset(const Job& job, const protocol::OutputReadRequest& r) {
  // Bounded work on the event loop: a tail scans at most this many bytes backwards.
  constexpr uint64_t kMaxTailScan = uint64_t{16} << 20;
  const OutputLog& log = *job.streams[static_cast<int>(r.stream)].log;
  uint64_t size = log.size();
  uint64_t start = 0;
  if (r.tail) {
    auto t = tailStart(log.path(), size, r.tail_lines, kMaxTailScan);
    if (!t) return t.error();
    start = t.value();
  }
  if (r.since_unix_ms > 0) {
    auto since = static_cast<int64_t>(std::min<uint64_t>(r.since_unix_ms, INT64_MAX));
    uint64_t first = firstOffsetSince(log.timeMarks(), since, size);
    // A line whose first byte came earlier is not "since": move on to the next line start.
    auto s = nextLineStart(log.path(), first, size, kMaxTailScan);
    if (!s) return s.error();
    start = std::max(start, s.value());
  }
  return start;
}

void Supervisor::handleOutputRead(uint32_t id, const protocol::OutputReadRequest& r) {
  const UserRecord* u = authenticate(id, r.token);
  if (u == nullptr) return;
  Job* job = accessibleJob(id, *u, r.job_id, Access::kRead);
  if (job == nullptr) return;
  if (r.stream == protocol::Stream::kStderr && !job->separate()) {
    replyError(id, ErrorCode::kBadRequest,
               "job " + job->id() + " keeps one merged log; it has no separate stderr");
    return;
  }
  protocol::OutputReadRequest req = r;
  if (r.tail || r.since_unix_ms > 0) {
    if (r.offset != 0) {
      replyError(id, ErrorCode::kBadRequest, "offset cannot be combined with tail_lines or since");
      return;
    }
    auto start = startOffset(*job, r);
    if (!start) {
      log::err("job " + job->id() + ": " + start.error().message);
      replyError(id, ErrorCode::kInternal, "the job's log could not be read");
      return;
    }
    req.offset = start.value();
    req.tail = false;
    req.since_unix_ms = 0;
  }
  // Nothing to read yet: a follow read waits (parked) for bytes or the job's end.
  const OutputLog& log = *job->streams[static_cast<int>(req.stream)].log;
  bool waits = req.follow && !job->ended() && req.offset >= log.size();
  std::optional<std::string> frame;
  if (!waits) frame = chunkFrame(id, *job, req);
  if (!frame && !waits && !req.follow) {
    frame = protocol::encodeOutputChunk(id, readChunk(*job, req));  // empty: the read failed
  }
  if (frame) {
    frontend_->send(std::move(*frame));
    return;
  }
  if (parked_count_ >= kMaxParkedReads) {
    replyError(id, ErrorCode::kUnavailable, "too many follow reads waiting; retry later");
    return;
  }
  uint64_t key = next_parked_key_++;
  std::string job_id = job->id();
  auto timer = loop_.addTimer(kParkedReadMs, [this, job_id, key] { expireParked(job_id, key); });
  parked_[job_id].emplace(key, ParkedRead{id, req, timer});
  parked_count_++;
}

void Supervisor::answerParked(Job& job, int stream, bool all) {
  auto it = parked_.find(job.id());
  if (it == parked_.end()) return;
  auto& reads = it->second;
  for (auto p = reads.begin(); p != reads.end();) {
    const auto& req = p->second.req;
    bool ready = all || (static_cast<int>(req.stream) == stream &&
                         req.offset < job.streams[stream].log->size());
    if (!ready) {
      ++p;
      continue;
    }
    loop_.cancelTimer(p->second.timer);
    auto frame = chunkFrame(p->second.request_id, job, req);
    frontend_->send(frame ? std::move(*frame)
                          : protocol::encodeOutputChunk(p->second.request_id, readChunk(job, req)));
    p = reads.erase(p);
    parked_count_--;
  }
  if (reads.empty()) parked_.erase(it);
}

void Supervisor::expireParked(const std::string& job_id, uint64_t key) {
  auto it = parked_.find(job_id);
  if (it == parked_.end()) return;
  auto p = it->second.find(key);
  if (p == it->second.end()) return;
  // An empty, non-eof chunk: the frontend checks its client is still there and asks again.
  protocol::OutputChunk c;
  c.offset = p->second.req.offset;
  frontend_->send(protocol::encodeOutputChunk(p->second.request_id, c));
  it->second.erase(p);
  parked_count_--;
  if (it->second.empty()) parked_.erase(it);
}

void Supervisor::releaseParkedWithoutSession() {
  struct Dead {
    std::string job_id;
    uint64_t key;
    EventLoop::TimerId timer;
  };
  std::vector<Dead> dead;  // collected first: expireParked erases from parked_
  int64_t now = realtimeMs();
  for (const auto& [job_id, reads] : parked_) {
    for (const auto& [key, p] : reads) {
      if (sessions_.find(p.req.token, now) == nullptr) dead.push_back({job_id, key, p.timer});
    }
  }
  for (const Dead& d : dead) {
    loop_.cancelTimer(d.timer);
    expireParked(d.job_id, d.key);
  }
  dead.clear();
  for (const auto& [job_id, waits] : parked_waits_) {
    for (const auto& [key, w] : waits) {
      if (sessions_.find(w.token, now) == nullptr) dead.push_back({job_id, key, w.timer});
    }
  }
  for (const Dead& d : dead) {
    loop_.cancelTimer(d.timer);
    expireWait(d.job_id, d.key);
  }
  std::vector<std::pair<uint64_t, EventLoop::TimerId>> dead_events;
  for (const auto& [key, p] : parked_events_) {
    if (sessions_.find(p.req.token, now) == nullptr) dead_events.emplace_back(key, p.timer);
  }
  for (auto [key, timer] : dead_events) {
    loop_.cancelTimer(timer);
    expireParkedEvents(key);
  }
}

void Supervisor::dropParked(const std::string& job_id) {
  // Nothing ended is parked (its reads and waits were answered when it ended); a running job
  // dropped at shutdown has no frontend left to answer.
  if (auto it = parked_.find(job_id); it != parked_.end()) {
    for (auto& [key, p] : it->second) loop_.cancelTimer(p.timer);
    parked_count_ -= it->second.size();
    parked_.erase(it);
  }
  if (auto it = parked_waits_.find(job_id); it != parked_waits_.end()) {
    for (auto& [key, w] : it->second) loop_.cancelTimer(w.timer);
    parked_count_ -= it->second.size();
    parked_waits_.erase(it);
  }
}

// --- shutdown ----------------------------------------------------------------------------------

void Supervisor::beginShutdown() {
  if (shutting_down_) {
    log::warning("second termination signal: killing every job now");
    for (Job* j : jobs_.all()) {
      if (!j->ended()) killJob(*j);
    }
    loop_.stop();
    return;
  }
  shutting_down_ = true;
  service_manager::notify("STOPPING=1");
  updateServiceStatus();
  log::notice("shutting down: stopping every running job");
  frontend_->shutdown();
  control_->shutdown();
  launcher_.drain();  // a job whose shim is being started is stopped with the others
  uint64_t grace = std::min(settings_.stop_grace_ms, kMaxShutdownGraceMs);
  for (Job* j : jobs_.all()) {
    if (!j->mainExited()) stopJob(*j, "shutdown", grace);
  }
  // Escaped processes may hold a pipe; the drain deadline bounds that, this bounds everything.
  loop_.addTimer(grace + kDrainDeadlineMs + 1000, [this] {
    log::warning("shutdown deadline reached; exiting with jobs still being finalised");
    loop_.stop();
  });
  maybeFinishShutdown();
}

void Supervisor::maybeFinishShutdown() {
  if (!shutting_down_) return;
  for (Job* j : jobs_.all()) {
    if (!j->ended()) return;
  }
  log::notice("every job has ended; exiting");
  loop_.stop();
}

}  // namespace jw::supervisor
