// Job process creation (see spawn.h); runs in jobworkerd, and the clone child's few steps up to
// execveat of jobworker-init, where only async-signal-safe calls are allowed.
#include "supervisor/launch/spawn.h"

#include <fcntl.h>
#include <linux/close_range.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>

#include "common/fd.h"
#include "common/protocol/shim_messages.h"
#include "supervisor/launch/shim_spec.h"

namespace jw::supervisor {

namespace {

// The shim reports Started or ExecFailed within milliseconds; this only bounds a wedged kernel.
constexpr int kStartTimeoutMs = 30'000;

// The clone child's descriptors, in the order of their fixed numbers in the shim.
struct InitExec {
  // devnull, spec, channel, supervisor end, stdout log, stderr log, exit record, stdin read end
  int sources[8];
  int init_fd = -1;
  char* argv[3] = {nullptr, nullptr, nullptr};
  char* envp[1] = {nullptr};
};

constexpr int kTargets[8] = {shim::kDevNullFd,       shim::kSpecFd,      shim::kChannelFd,
                             shim::kSupervisorEndFd, shim::kStdoutLogFd, shim::kStderrLogFd,
                             shim::kExitRecordFd,    shim::kStdinFd};
constexpr int kInitFdSlot = shim::kFirstFreeFd;  // close-on-exec: gone once the shim runs
constexpr int kParkFds = 64;                     // above every fixed number

// --- in the clone child: async-signal-safe only, and nothing but getting the shim running ------

[[noreturn]] void childFail(int err) {
  shim::FrameWriter w = shim::encodeExecFailed(shim::InitStep::kExecInit, err, 0);
  ssize_t n = send(shim::kChannelFd, w.data(), w.size(), MSG_NOSIGNAL);
  (void)n;
  _exit(127);
}

// The job pins no page of jobworkerd: the fds move to their fixed numbers and the shim is exec'd
// at once, before anything else runs in this copy of the supervisor.
[[noreturn]] void execInit(const InitExec& x) {
  int parked[8];
  for (int i = 0; i < 8; i++) {
    parked[i] = x.sources[i] < 0 ? -1 : fcntl(x.sources[i], F_DUPFD_CLOEXEC, kParkFds);
    if (x.sources[i] >= 0 && parked[i] < 0) _exit(127);
  }
  int init = fcntl(x.init_fd, F_DUPFD_CLOEXEC, kParkFds);
  if (init < 0) _exit(127);
  for (int i = 0; i < 8; i++) {
    if (parked[i] < 0) {
      close(kTargets[i]);
    } else if (dup2(parked[i], kTargets[i]) < 0) {
      _exit(127);
    }
  }
  if (dup2(parked[0], 1) < 0 || dup2(parked[0], 2) < 0) childFail(errno);
  if (dup3(init, kInitFdSlot, O_CLOEXEC) < 0) childFail(errno);
  if (syscall(SYS_close_range, static_cast<unsigned>(kInitFdSlot + 1), ~0U, 0U) != 0) {
    for (int fd = kInitFdSlot + 1; fd < 65536; fd++) close(fd);
  }
  syscall(SYS_execveat, kInitFdSlot, "", x.argv, x.envp, AT_EMPTY_PATH);
  childFail(errno);
}

// --- parent side ------------------------------------------------------------------------------

void killAndReap(pid_t pid) {
  kill(pid, SIGKILL);
  while (waitpid(pid, nullptr, 0) < 0 && errno == EINTR) {
  }
}

uint64_t boottimeNs() {
  timespec ts{};
  clock_gettime(CLOCK_BOOTTIME, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1'000'000'000 + static_cast<uint64_t>(ts.tv_nsec);
}

Result<ShimSpec> shimSpec(const SpawnRequest& req, SpawnFailure* failure) {
  ShimSpec s;
  s.candidates = execCandidates(req.argv[0], req.search_path);
  if (s.candidates.empty()) {
    *failure = SpawnFailure::kExec;
    return Error{"program " + req.argv[0] + " not found: PATH is empty", ENOENT};
  }
  auto containment = planContainment(req.isolation);
  if (!containment) return containment.error();
  const IsolationSpec& iso = req.isolation;
  uint32_t f = 0;
  if (iso.pid) f |= shim::kFlagPidNs;
  if (iso.mount) f |= shim::kFlagMountNs;
  if (iso.net) f |= shim::kFlagNetNs;
  if (iso.uts) f |= shim::kFlagUtsNs;
  if (req.change_credentials) f |= shim::kFlagCredentials;
  if (req.core_dumps) f |= shim::kFlagCoreDumps;
  if (req.separate_stderr) f |= shim::kFlagSeparate;
  if (req.stdin_read_fd >= 0) f |= shim::kFlagStdinPipe;
  if (req.cgroup != nullptr) {
    f |= shim::kFlagOwnCgroup;
    if (req.cgroup->unified()) f |= shim::kFlagCgroupV2;
  }
  if (iso.seccomp) {
    // Asked for but missing would run the job unfiltered: refuse instead.
    if (req.seccomp == nullptr) return Error{"the job seccomp profile is not available"};
    f |= shim::kFlagSeccomp;
    sock_fprog p = req.seccomp->program();
    s.seccomp.assign(p.filter, p.filter + p.len);
  }
  s.flags = f;
  s.uid = req.uid;
  s.gid = req.gid;
  s.groups = req.groups;
  s.last_cap = req.last_cap;
  rlimit nofile{};
  if (req.nofile_soft != 0 && getrlimit(RLIMIT_NOFILE, &nofile) == 0) {
    s.nofile_cur = std::min<rlim_t>(req.nofile_soft, nofile.rlim_max);
    s.nofile_max = nofile.rlim_max;
  }
  s.output_cap = req.output_cap;
  s.deadline_ns = req.timeout_ms == 0 ? 0 : boottimeNs() + req.timeout_ms * 1'000'000;
  s.stop_grace_ms = req.stop_grace_ms;
  s.hostname = containment->hostname;
  s.tmp_options = containment->tmp_options;
  s.cwd = req.cwd;
  s.home = req.home;
  s.cgroup_leaf = req.job_id;
  s.argv = req.argv;
  s.env = req.env;
  return s;
}

// The error for a step the shim reported, and which kind of failure it is.
Error reportedError(const SpawnRequest& req, uint32_t step, int err, int32_t detail,
                    SpawnFailure* failure) {
  if (step == static_cast<uint32_t>(shim::InitStep::kExec)) {
    *failure = SpawnFailure::kExec;
    return Error{"cannot execute " + req.argv[0] + ": " + std::strerror(err), err};
  }
  if (step == static_cast<uint32_t>(shim::InitStep::kWorkingDir)) {
    *failure = SpawnFailure::kCwd;
    return Error{"working directory " + req.cwd + ": " + std::strerror(err), err};
  }
  std::string what = shim::initStepName(step);
  if (step == static_cast<uint32_t>(shim::InitStep::kContainment)) {
    what += std::string(": ") + shim::containmentStepName(detail);
  }
  return Error{"job setup step '" + what + "' failed: " + std::strerror(err), err};
}

// Waits for the shim's first frame: Started (its command pid) or ExecFailed.
Result<pid_t> awaitStart(const SpawnRequest& req, int channel, int pidfd, SpawnFailure* failure) {
  pollfd p[2] = {{channel, POLLIN, 0}, {pidfd, POLLIN, 0}};
  int n;
  while ((n = poll(p, 2, kStartTimeoutMs)) < 0 && errno == EINTR) {
  }
  if (n == 0) return Error{"the job shim did not start within 30 s", ETIMEDOUT};
  uint8_t buf[shim::kMaxFrameBytes];
  ssize_t got = recv(channel, buf, sizeof buf, MSG_DONTWAIT);
  if (got <= 0) return Error{"the job shim exited before it reported", ECHILD};
  shim::FrameReader r(buf, static_cast<size_t>(got));
  shim::Frame type{};
  if (!r.type(&type)) return Error{"empty frame from the job shim", EPROTO};
  if (type == shim::Frame::kStarted) {
    uint32_t pid = 0;
    if (!r.get32(&pid) || !r.complete()) return Error{"bad Started frame", EPROTO};
    return static_cast<pid_t>(pid);
  }
  uint32_t step = 0;
  int32_t err = 0, detail = 0;
  if (type != shim::Frame::kExecFailed || !r.get32(&step) || !r.getI32(&err) ||
      !r.getI32(&detail) || !r.complete()) {
    return Error{"unexpected first frame from the job shim", EPROTO};
  }
  return reportedError(req, step, err, detail, failure);
}

}  // namespace

std::vector<std::string> execCandidates(const std::string& argv0, const std::string& path) {
  if (argv0.find('/') != std::string::npos) return {argv0};
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= path.size()) {
    size_t end = path.find(':', start);
    if (end == std::string::npos) end = path.size();
    std::string dir = path.substr(start, end - start);
    if (!dir.empty()) out.push_back(dir.back() == '/' ? dir + argv0 : dir + "/" + argv0);
    start = end + 1;
  }
  return out;
}

WaitOutcome waitOutcome(int raw_wait_status) {
  if (WIFEXITED(raw_wait_status)) return {CLD_EXITED, WEXITSTATUS(raw_wait_status)};
  if (WIFSIGNALED(raw_wait_status)) {
    return {WCOREDUMP(raw_wait_status) ? CLD_DUMPED : CLD_KILLED, WTERMSIG(raw_wait_status)};
  }
  // waitpid without WUNTRACED/WCONTINUED reports only the two above.
  return {CLD_EXITED, 0};
}

Result<SpawnedJob> spawnJob(const SpawnRequest& req, SpawnFailure* failure) {
  *failure = SpawnFailure::kSetup;
  if (req.argv.empty()) return Error{"empty argv"};
  if (req.init_fd < 0 || req.stdout_log_fd < 0) return Error{"no job shim or no output log"};
  auto spec = shimSpec(req, failure);
  if (!spec) return spec.error();
  auto bytes = encodeShimSpec(spec.value());
  if (!bytes) return bytes.error();
  auto memfd = sealedSpecMemfd(bytes.value());
  if (!memfd) return memfd.error();
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) {
    return sysError("socketpair for the job's status channel");
  }
  UniqueFd ours(sv[0]), shims(sv[1]);
  UniqueFd devnull(open("/dev/null", O_RDWR | O_CLOEXEC));
  if (!devnull) return sysError("open /dev/null");

  std::string name = "jw-init";
  std::string short_id = req.job_id.substr(0, 8);
  InitExec x{{devnull.get(), memfd->get(), shims.get(), ours.get(), req.stdout_log_fd,
              req.stderr_log_fd, req.exit_record_fd, req.stdin_read_fd},
             req.init_fd,
             {name.data(), short_id.data(), nullptr},
             {nullptr}};

  // With namespaces, clone3 creates the child directly in its v2 cgroup (no moment outside it).
  const int flags = cloneFlags(req.isolation);
  const int cgroup_dir = req.cgroup != nullptr ? req.cgroup->directoryFd() : -1;
  pid_t pid = flags != 0 || cgroup_dir >= 0 ? cloneJobProcess(flags, cgroup_dir) : fork();
  if (pid < 0) return sysError(flags != 0 ? "clone the job into its namespaces" : "fork");
  // execInit ends in execveat or _exit: no destructor of this frame ever runs in the child.
  if (pid == 0) execInit(x);

  shims.reset();
  memfd->reset();
  UniqueFd pidfd(static_cast<int>(syscall(SYS_pidfd_open, pid, 0)));
  if (!pidfd) {
    Error e = sysError("pidfd_open");
    killAndReap(pid);
    return e;
  }
  if (req.cgroup != nullptr) {
    if (Status st = req.cgroup->addProcess(pid); !st) {
      killAndReap(pid);
      return Error{"move the job into its cgroup: " + st.error().message, st.error().sys_errno};
    }
  }
  shim::FrameWriter release(shim::Frame::kRelease);
  // EPIPE: the shim already died; its report (or its exit) tells the rest.
  (void)send(ours.get(), release.data(), release.size(), MSG_NOSIGNAL);
  auto started = awaitStart(req, ours.get(), pidfd.get(), failure);
  if (!started) {
    killAndReap(pid);
    return started.error();
  }
  int fl = fcntl(ours.get(), F_GETFL);
  if (fl < 0 || fcntl(ours.get(), F_SETFL, fl | O_NONBLOCK) != 0) {
    Error e = sysError("make the status channel non-blocking");
    killAndReap(pid);
    return e;
  }
  *failure = SpawnFailure::kNone;
  return SpawnedJob{pid, std::move(pidfd), std::move(ours), started.value()};
}

}  // namespace jw::supervisor
