// The clone of a job's shim and its last steps up to execveat (see init_exec.h). Between the
// clone and the exec only async-signal-safe calls are made.
#include "supervisor/launch/init_exec.h"

#include <fcntl.h>
#include <linux/sched.h>
#include <sched.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>

#include "common/protocol/shim_messages.h"

namespace jw::supervisor {

namespace {

constexpr int kInitFdSlot = shim::kFirstFreeFd;  // close-on-exec: gone once the shim runs
constexpr int kParkFds = 64;                     // above every fixed number

[[noreturn]] void childFail(int err) {
  shim::FrameWriter w = shim::encodeExecFailed(shim::InitStep::kExecInit, err, 0);
  ssize_t n = send(shim::kChannelFd, w.data(), w.size(), MSG_NOSIGNAL);
  (void)n;
  _exit(127);
}

}  // namespace

InitArgv::InitArgv(const char* id) {
  size_t n = strnlen(id, sizeof short_id - 1);
  memcpy(short_id, id, n);
  short_id[n] = '\0';
  argv[0] = name;
  argv[1] = short_id;
}

// The job pins no page of its parent: the fds move to their fixed numbers and the shim is
// exec'd at once, before anything else runs in this copy of the caller.
void execJobInit(const InitFds& fds, InitArgv& args) {
  const int sources[8] = {fds.devnull,    fds.spec,       fds.channel,     fds.supervisor_end,
                          fds.stdout_log, fds.stderr_log, fds.exit_record, fds.stdin_read};
  constexpr int kTargets[8] = {shim::kDevNullFd,       shim::kSpecFd,      shim::kChannelFd,
                               shim::kSupervisorEndFd, shim::kStdoutLogFd, shim::kStderrLogFd,
                               shim::kExitRecordFd,    shim::kStdinFd};
  int parked[8];
  for (int i = 0; i < 8; i++) {
    parked[i] = sources[i] < 0 ? -1 : fcntl(sources[i], F_DUPFD_CLOEXEC, kParkFds);
    if (sources[i] >= 0 && parked[i] < 0) _exit(127);
  }
  int init = fcntl(fds.init, F_DUPFD_CLOEXEC, kParkFds);
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
  syscall(SYS_execveat, kInitFdSlot, "", args.argv, args.envp, AT_EMPTY_PATH);
  childFail(errno);
}

pid_t cloneShim(int ns_flags, int cgroup_dir, bool as_sibling, int* pidfd) {
  clone_args a{};
  a.flags = static_cast<uint64_t>(static_cast<unsigned>(ns_flags)) | CLONE_PIDFD;
  a.pidfd = reinterpret_cast<uint64_t>(pidfd);
  a.exit_signal = SIGCHLD;
  if (as_sibling) {
    // clone3 takes no exit signal with CLONE_PARENT: the child gets the caller's (SIGCHLD).
    a.flags |= CLONE_PARENT;
    a.exit_signal = 0;
  }
  if (cgroup_dir >= 0) {
    a.flags |= CLONE_INTO_CGROUP;
    a.cgroup = static_cast<uint64_t>(cgroup_dir);
  }
  // No stack: without CLONE_VM the child gets a copy of ours, exactly like fork().
  long r = syscall(SYS_clone3, &a, sizeof a);
  if (r >= 0 || errno != ENOSYS) return static_cast<pid_t>(r);
  // systemd's RestrictNamespaces= makes clone3 fail with ENOSYS (its flags sit in memory that
  // seccomp cannot inspect): plain clone then, and the shim joins its v2 cgroup through
  // releaseShim's addProcess before it is released, so no code of the job runs outside it.
  unsigned long flags = static_cast<unsigned long>(static_cast<unsigned>(ns_flags)) | CLONE_PIDFD |
                        (as_sibling ? CLONE_PARENT : 0UL) | SIGCHLD;
  r = syscall(SYS_clone, flags, 0UL, pidfd, nullptr, 0UL);
  return static_cast<pid_t>(r);
}

}  // namespace jw::supervisor
