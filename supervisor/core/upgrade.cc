// The upgrade in place (`jobworker-admin upgrade` over the control socket): the new binary's
// `--check-state` dry run, then execve of it under the same PID. Nothing is handed over but the
// listening socket: the new image takes the running jobs over exactly as after a crash (their
// shims hold the output path and the exit), so there is one take-over path, tested by both.
// Runs in jobworkerd, on the event loop.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <memory>

#include "common/log.h"
#include "jw_build_config.h"
#include "supervisor/core/service_manager.h"
#include "supervisor/core/supervisor.h"

extern char** environ;

namespace jw::supervisor {

namespace {

constexpr int kCheckDeadlineMs = 30'000;
constexpr size_t kMaxCheckOutput = 4096;

// Only root (the daemon's uid) may change it: owned by it and not group- or other-writable,
// a sticky directory (/tmp) excepted, where others cannot replace what is not theirs.
Status onlyRootMayChange(const std::string& path, const struct stat& st) {
  const bool sticky_dir = S_ISDIR(st.st_mode) && (st.st_mode & S_ISVTX) != 0;
  if (st.st_uid != geteuid() || (!sticky_dir && (st.st_mode & (S_IWGRP | S_IWOTH)) != 0)) {
    return Error{path + " may be changed by another user than the daemon's (owner uid " +
                 std::to_string(st.st_uid) + ", mode " + std::to_string(st.st_mode & 07777) +
                 "): refusing to exec it as root"};
  }
  return okStatus();
}

// Root execs it: its canonical path, a regular executable file, which nobody but root can change
// or replace (the file and every directory above it). Returns the path to exec, so that what
// was checked is what runs.
Result<std::string> checkBinary(const std::string& path) {
  std::unique_ptr<char, decltype(&::free)> real(::realpath(path.c_str(), nullptr), &::free);
  if (!real) return sysError(path);
  const std::string canonical = real.get();
  struct stat st {};
  if (stat(canonical.c_str(), &st) != 0) return sysError(canonical);
  if (!S_ISREG(st.st_mode)) return Error{canonical + " is not a regular file"};
  if ((st.st_mode & S_IXUSR) == 0) return Error{canonical + " is not executable"};
  if (Status ok = onlyRootMayChange(canonical, st); !ok) return ok.error();
  for (std::string dir = canonical; dir.size() > 1;) {
    dir = dir.substr(0, std::max<size_t>(dir.rfind('/'), 1));
    if (stat(dir.c_str(), &st) != 0) return sysError(dir);
    if (Status ok = onlyRootMayChange(dir, st); !ok) return ok.error();
  }
  return canonical;
}

// Runs `binary --check-state state_dir` (bounded in time and output); its stderr on failure.
Status runStateCheck(const std::string& binary, const std::string& state_dir) {
  int out[2];
  if (pipe2(out, O_CLOEXEC) != 0) return sysError("pipe2");
  UniqueFd read_end(out[0]), write_end(out[1]);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&fa, write_end.get(), 1);
  posix_spawn_file_actions_adddup2(&fa, write_end.get(), 2);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t none, all;
  sigemptyset(&none);
  sigfillset(&all);
  posix_spawnattr_setsigmask(&attr, &none);  // ours blocks TERM, INT, HUP, CHLD
  posix_spawnattr_setsigdefault(&attr, &all);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  std::string flag = "--check-state";
  char* argv[] = {const_cast<char*>(binary.c_str()), flag.data(),
                  const_cast<char*>(state_dir.c_str()), nullptr};
  pid_t pid = -1;
  int rc = posix_spawn(&pid, binary.c_str(), &fa, &attr, argv, environ);
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  write_end.reset();
  if (rc != 0) return sysError("run " + binary + " --check-state", rc);
  std::string text;
  const uint64_t deadline = EventLoop::monotonicMs() + kCheckDeadlineMs;
  bool timed_out = false;
  for (;;) {
    uint64_t now = EventLoop::monotonicMs();
    if (now >= deadline) {
      timed_out = true;
      break;
    }
    pollfd p{read_end.get(), POLLIN, 0};
    if (poll(&p, 1, static_cast<int>(deadline - now)) < 0 && errno != EINTR) break;
    char buf[1024];
    ssize_t n = read(read_end.get(), buf, sizeof buf);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (n <= 0) break;
    if (text.size() < kMaxCheckOutput) text.append(buf, static_cast<size_t>(n));
  }
  if (timed_out) kill(pid, SIGKILL);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (timed_out) return Error{binary + " --check-state did not finish within 30 s"};
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return okStatus();
  while (!text.empty() && text.back() == '\n') text.pop_back();
  std::string how = WIFEXITED(status) ? "exited " + std::to_string(WEXITSTATUS(status))
                                      : "was killed by signal " + std::to_string(WTERMSIG(status));
  return Error{binary + " --check-state " + how + (text.empty() ? "" : ": " + text)};
}

}  // namespace

void Supervisor::handleControlInfo(ControlServer::ConnId c, uint32_t id, const protocol::Empty&) {
  protocol::ControlInfoPayload info;
  info.pid = getpid();
  info.version = JW_VERSION;
  info.image_started_at_ms = image_started_at_ms_;
  info.running_jobs = static_cast<uint32_t>(runningJobs());
  info.known_jobs = static_cast<uint32_t>(jobs_.size());
  control_->send(c, protocol::encodeControlInfoReply(id, info));
}

void Supervisor::handleControlUpgrade(ControlServer::ConnId c, uint32_t id,
                                      const protocol::ControlUpgradeRequest& r) {
  const std::string asked = r.binary.empty() ? opt_.self_path : r.binary;
  auto refuse = [&](protocol::ErrorCode code, const std::string& why) {
    log::err("upgrade to " + log::quote(asked) + " refused: " + why);
    control_->send(c,
                   protocol::encodeControlError(id, {code, why.substr(0, protocol::kMaxMessage)}));
  };
  if (shutting_down_) return refuse(protocol::ErrorCode::kUnavailable, "shutting down");
  auto checked = checkBinary(asked);
  if (!checked) return refuse(protocol::ErrorCode::kBadRequest, checked.error().message);
  const std::string& binary = checked.value();
  log::notice("upgrade: checking that " + binary + " accepts the state in " + opt_.state_dir);
  if (Status st = runStateCheck(binary, opt_.state_dir); !st) {
    return refuse(protocol::ErrorCode::kConflict, st.error().message);
  }
  Status st = execInPlace(binary);
  // Only a failed execve comes back: everything runs as before.
  refuse(protocol::ErrorCode::kInternal, "exec failed: " + st.error().message);
}

// What must survive the execve: the records (on disk, fsynced now) and the listening socket
// (inherited, so no connection is refused meanwhile). The starts in flight are finished, and the
// frontend, the password verifier and the job spawner stopped and reaped first (the new image
// starts its own); the jobs' shims stay our children and are taken over from their records, as
// after a crash.
Status Supervisor::execInPlace(const std::string& binary) {
  std::vector<std::string> args = opt_.argv;
  // A previous upgrade's --listen-fd is replaced by this one's.
  for (size_t i = 1; i + 1 < args.size();) {
    if (args[i] == "--listen-fd") {
      args.erase(args.begin() + static_cast<std::ptrdiff_t>(i),
                 args.begin() + static_cast<std::ptrdiff_t>(i) + 2);
    } else {
      i++;
    }
  }
  args[0] = binary;
  const int listen_fd = opt_.listen_fd.get();
  args.insert(args.end(), {"--listen-fd", std::to_string(listen_fd)});
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);

  log::notice("upgrade: exec " + binary + " in place (pid " + std::to_string(getpid()) + ", " +
              std::to_string(runningJobs()) + " running job(s) to take over)");
  service_manager::notify("STATUS=upgrading in place to " + binary);
  launcher_.shutdown();  // first: every start in flight is a recorded job before the flush
  state_.flush();
  frontend_->shutdown();
  verifier_.shutdown();
  onFrontendGone();
  if (fcntl(listen_fd, F_SETFD, 0) != 0) {
    Status st = sysError("clear close-on-exec of the listening socket");
    frontend_->start();
    verifier_.start();
    launcher_.start();
    return st;
  }
  // The new image starts as systemd started us: with the soft RLIMIT_NOFILE jobs get (it raises
  // its own again) and the watchdog's environment (consumed at our start).
  rlimit raised{};
  (void)getrlimit(RLIMIT_NOFILE, &raised);
  rlimit original = raised;
  original.rlim_cur = std::min<rlim_t>(opt_.fd_limits.original_soft, raised.rlim_max);
  (void)setrlimit(RLIMIT_NOFILE, &original);
  service_manager::keepWatchdogEnvironment(watchdog_ms_);
  execve(binary.c_str(), argv.data(), environ);
  const int err = errno;
  service_manager::forgetWatchdogEnvironment();
  (void)setrlimit(RLIMIT_NOFILE, &raised);
  (void)fcntl(listen_fd, F_SETFD, FD_CLOEXEC);
  log::err("upgrade: execve " + binary + ": " + strerror(err) + "; carrying on as before");
  frontend_->start();
  verifier_.start();
  launcher_.start();
  updateServiceStatus();
  return sysError("execve " + binary, err);
}

}  // namespace jw::supervisor
