// The command's steps up to execve (see command.h); runs in the command process the shim forks.
#include "supervisor/init/command.h"

#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <linux/close_range.h>
#include <linux/seccomp.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>

namespace jw::init {

namespace {

using shim::InitStep;

[[noreturn]] void fail(const CommandFds& fds, InitStep step, int err) {
  int32_t r[2] = {static_cast<int32_t>(step), err};
  ssize_t n = write(fds.report_w, r, sizeof r);
  (void)n;
  _exit(127);
}

int resetSignals() {
  // The shim's own mask and dispositions must not reach the job (both survive execve).
  for (int sig = 1; sig < NSIG; sig++) {
    if (sig == SIGKILL || sig == SIGSTOP) continue;
    struct sigaction sa {};
    sa.sa_handler = SIG_DFL;
    sigaction(sig, &sa, nullptr);  // EINVAL for the glibc-reserved RT signals is fine
  }
  sigset_t none;
  sigemptyset(&none);
  return sigprocmask(SIG_SETMASK, &none, nullptr) == 0 ? 0 : errno;
}

int redirectStdio(const InitSpec& s, const CommandFds& fds) {
  // fd 0 is already /dev/null (the shim was exec'd with it), unless the job reads a pipe.
  if (s.has(shim::kFlagStdinPipe) && dup2(shim::kStdinFd, STDIN_FILENO) < 0) return errno;
  if (dup2(fds.out_w, STDOUT_FILENO) < 0) return errno;
  if (dup2(fds.err_w >= 0 ? fds.err_w : fds.out_w, STDERR_FILENO) < 0) return errno;
  return 0;
}

int setResourceLimits(const InitSpec& s) {
  umask(022);
  if (!s.has(shim::kFlagCoreDumps)) {
    rlimit none{0, 0};
    if (setrlimit(RLIMIT_CORE, &none) != 0) return errno;
  }
  // jobworkerd raised its own soft RLIMIT_NOFILE; the job gets the original one back.
  if (s.nofile_cur != 0) {
    rlimit nofile{s.nofile_cur, s.nofile_max};
    if (setrlimit(RLIMIT_NOFILE, &nofile) != 0) return errno;
  }
  return 0;
}

bool dropsCapabilities(const InitSpec& s) { return s.has(shim::kFlagCredentials) && s.uid != 0; }

// While still root (PR_CAPBSET_DROP needs CAP_SETPCAP): no exec can ever grant a capability
// again (file capabilities, set-uid root), and the ambient set.
int dropBoundingSet(int last_cap) {
  for (int cap = 0; cap <= last_cap; cap++) {
    if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0) return errno;
  }
  // EINVAL: a kernel without ambient capabilities (< 4.3) has none to clear.
  if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0 && errno != EINVAL) {
    return errno;
  }
  return 0;
}

int changeCredentials(const InitSpec& s) {
  if (!s.has(shim::kFlagCredentials)) return 0;
  if (setgroups(s.ngroups, s.groups) != 0) return errno;
  if (setresgid(s.gid, s.gid, s.gid) != 0) return errno;
  if (setresuid(s.uid, s.uid, s.uid) != 0) return errno;
  if (s.uid != 0 && setresuid(0, 0, 0) == 0) return EPERM;  // fail closed if root came back
  return 0;
}

// The kernel clears permitted and effective on the change away from uid 0, but the inheritable
// set survives it: set all three empty and verify.
int clearCapabilities() {
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3] = {};
  if (syscall(SYS_capset, &header, data) != 0) return errno;
  if (syscall(SYS_capget, &header, data) != 0) return errno;
  for (const auto& d : data) {
    if (d.effective != 0 || d.permitted != 0 || d.inheritable != 0) return EPERM;
  }
  return 0;
}

int enterWorkingDir(const InitSpec& s) {
  // After the credential change, so the job cannot start inside a directory it may not enter.
  if (s.cwd[0] != '\0') return chdir(s.cwd) == 0 ? 0 : errno;
  if (s.home[0] != '\0' && chdir(s.home) == 0) return 0;
  return chdir("/") == 0 ? 0 : errno;
}

int closeFds() {
  // Close-on-exec rather than close: the report pipe must stay usable until execve succeeds.
  if (syscall(SYS_close_range, 3U, ~0U, CLOSE_RANGE_CLOEXEC) == 0) return 0;
  for (int fd = 3; fd < 65536; fd++) fcntl(fd, F_SETFD, FD_CLOEXEC);
  return 0;
}

int installSeccomp(const InitSpec& s) {
  sock_fprog program{s.seccomp_len, s.seccomp};
  if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &program, 0, 0) != 0) return errno;
  return 0;
}

int execProgram(const InitSpec& s) {
  int result = ENOENT;
  bool saw_eacces = false;
  for (char** c = s.candidates; *c != nullptr; c++) {
    execve(*c, s.argv, s.envp);
    result = errno;
    if (result == EACCES) {
      saw_eacces = true;
    } else if (result != ENOENT && result != ENOTDIR && result != ESTALE) {
      return result;  // e.g. ENOEXEC, E2BIG: the program was found, say why it did not run
    }
  }
  return saw_eacces ? EACCES : result;
}

}  // namespace

void runCommand(const InitSpec& s, const CommandFds& fds) {
  int err;
  if ((err = resetSignals()) != 0) fail(fds, InitStep::kSignals, err);
  if (setpgid(0, 0) != 0) fail(fds, InitStep::kProcessGroup, errno);
  if ((err = redirectStdio(s, fds)) != 0) fail(fds, InitStep::kStdio, err);
  if ((err = setResourceLimits(s)) != 0) fail(fds, InitStep::kResourceLimits, err);
  if (dropsCapabilities(s) && (err = dropBoundingSet(s.last_cap)) != 0) {
    fail(fds, InitStep::kBoundingSet, err);
  }
  if ((err = changeCredentials(s)) != 0) fail(fds, InitStep::kCredentials, err);
  if (dropsCapabilities(s) && (err = clearCapabilities()) != 0) {
    fail(fds, InitStep::kCapabilities, err);
  }
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) fail(fds, InitStep::kNoNewPrivs, errno);
  if ((err = enterWorkingDir(s)) != 0) fail(fds, InitStep::kWorkingDir, err);
  if ((err = closeFds()) != 0) fail(fds, InitStep::kCloseFds, err);
  // Last before execve: the filter then covers nothing of ours.
  if (s.has(shim::kFlagSeccomp) && (err = installSeccomp(s)) != 0) {
    fail(fds, InitStep::kSeccomp, err);
  }
  fail(fds, InitStep::kExec, execProgram(s));
}

}  // namespace jw::init
