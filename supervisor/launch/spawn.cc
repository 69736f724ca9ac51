// Job process creation (see spawn.h); runs in jobworkerd (spawnJob also in the tests, whose clone
// child runs init_exec.cc's few async-signal-safe steps up to execveat of jobworker-init).
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
#include "supervisor/launch/init_exec.h"
#include "supervisor/launch/shim_spec.h"

namespace jw::supervisor {

namespace {

// --- parent side ------------------------------------------------------------------------------

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

}  // namespace

std::optional<Result<pid_t>> readStartReport(const SpawnRequest& req, int channel,
                                             SpawnFailure* failure) {
  uint8_t buf[shim::kMaxFrameBytes];
  ssize_t got;
  while ((got = recv(channel, buf, sizeof buf, MSG_DONTWAIT)) < 0 && errno == EINTR) {
  }
  if (got < 0 && errno == EAGAIN) return std::nullopt;
  if (got <= 0) return Result<pid_t>(Error{"the job shim exited before it reported", ECHILD});
  shim::FrameReader r(buf, static_cast<size_t>(got));
  shim::Frame type{};
  if (!r.type(&type)) return Result<pid_t>(Error{"empty frame from the job shim", EPROTO});
  if (type == shim::Frame::kStarted) {
    uint32_t pid = 0;
    if (!r.get32(&pid) || !r.complete()) return Result<pid_t>(Error{"bad Started frame", EPROTO});
    return Result<pid_t>(static_cast<pid_t>(pid));
  }
  uint32_t step = 0;
  int32_t err = 0, detail = 0;
  if (type != shim::Frame::kExecFailed || !r.get32(&step) || !r.getI32(&err) ||
      !r.getI32(&detail) || !r.complete()) {
    return Result<pid_t>(Error{"unexpected first frame from the job shim", EPROTO});
  }
  return Result<pid_t>(reportedError(req, step, err, detail, failure));
}

void killAndReapShim(int pidfd) {
  (void)syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, nullptr, 0);
  siginfo_t info{};
  while (waitid(static_cast<idtype_t>(P_PIDFD), static_cast<id_t>(pidfd), &info, WEXITED) < 0 &&
         errno == EINTR) {
  }
}

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

Result<PreparedShim> prepareShim(const SpawnRequest& req, SpawnFailure* failure) {
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
  PreparedShim p;
  p.channel.reset(sv[0]);
  p.shim_channel.reset(sv[1]);
  // Shared with the shim's copy of our end, which it never reads: only jobworkerd's reads see it.
  int fl = fcntl(p.channel.get(), F_GETFL);
  if (fl < 0 || fcntl(p.channel.get(), F_SETFL, fl | O_NONBLOCK) != 0) {
    return sysError("make the status channel non-blocking");
  }
  p.spec = std::move(memfd.value());
  p.ns_flags = cloneFlags(req.isolation);
  p.cgroup_dir = req.cgroup != nullptr ? req.cgroup->directoryFd() : -1;
  p.short_id = req.job_id.substr(0, 8);
  return p;
}

Status releaseShim(const SpawnRequest& req, pid_t pid, int channel) {
  if (req.cgroup != nullptr) {
    if (Status st = req.cgroup->addProcess(pid); !st) {
      return Error{"move the job into its cgroup: " + st.error().message, st.error().sys_errno};
    }
  }
  shim::FrameWriter release(shim::Frame::kRelease);
  // EPIPE: the shim already died; its report (or its exit) tells the rest.
  (void)send(channel, release.data(), release.size(), MSG_NOSIGNAL);
  return okStatus();
}

Result<SpawnedJob> spawnJob(const SpawnRequest& req, SpawnFailure* failure) {
  auto prepared = prepareShim(req, failure);
  if (!prepared) return prepared.error();
  PreparedShim& p = prepared.value();
  UniqueFd devnull(open("/dev/null", O_RDWR | O_CLOEXEC));
  if (!devnull) return sysError("open /dev/null");
  InitFds fds{devnull.get(),      p.spec.get(),      p.shim_channel.get(),
              p.channel.get(),    req.stdout_log_fd, req.stderr_log_fd,
              req.exit_record_fd, req.stdin_read_fd, req.init_fd};
  InitArgv args(p.short_id.c_str());
  int raw_pidfd = -1;
  pid_t pid = cloneShim(p.ns_flags, p.cgroup_dir, false, &raw_pidfd);
  if (pid < 0) return sysError(p.ns_flags != 0 ? "clone the job into its namespaces" : "fork");
  // execJobInit ends in execveat or _exit: no destructor of this frame ever runs in the child.
  if (pid == 0) execJobInit(fds, args);
  UniqueFd pidfd(raw_pidfd);
  p.shim_channel.reset();
  p.spec.reset();
  if (Status st = releaseShim(req, pid, p.channel.get()); !st) {
    killAndReapShim(pidfd.get());
    return st.error();
  }
  pollfd w[2] = {{p.channel.get(), POLLIN, 0}, {pidfd.get(), POLLIN, 0}};
  int n;
  while ((n = poll(w, 2, kShimStartTimeoutMs)) < 0 && errno == EINTR) {
  }
  std::optional<Result<pid_t>> started;
  if (n > 0) started = readStartReport(req, p.channel.get(), failure);
  if (!started) {
    started = Result<pid_t>(n == 0 ? Error{"the job shim did not start within 30 s", ETIMEDOUT}
                                   : Error{"the job shim exited before it reported", ECHILD});
  }
  if (!*started) {
    killAndReapShim(pidfd.get());
    return started->error();
  }
  *failure = SpawnFailure::kNone;
  return SpawnedJob{pid, std::move(pidfd), std::move(p.channel), started->value()};
}

}  // namespace jw::supervisor
