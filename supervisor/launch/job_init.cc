// The job init (see job_init.h): PID 1 of a job's PID namespace, running code of jobworkerd in a
// forked copy of it (async-signal-safe calls only); and the supervisor's reading of its report.
#include "supervisor/launch/job_init.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>

#include "common/io.h"

namespace jw::supervisor {

namespace {

// The signals the init takes synchronously: the three a stop or a terminal sends, forwarded to
// the command, and SIGCHLD, which only wakes the reaping.
sigset_t initSignals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGHUP);
  sigaddset(&set, SIGCHLD);
  return set;
}

void defaultDispositions() {
  for (int sig = 1; sig < NSIG; sig++) {
    if (sig == SIGKILL || sig == SIGSTOP) continue;
    struct sigaction sa {};
    sa.sa_handler = SIG_DFL;
    sigaction(sig, &sa, nullptr);  // EINVAL for the glibc-reserved RT signals is fine
  }
}

// The init inherited every fd of the supervisor (it never execs, so close-on-exec does not help):
// the frontend channel, other jobs' pipes, the job's own output pipe (which would keep followers
// waiting). It keeps only the status pipe.
void closeAllBut(int keep) {
  bool ok = true;
  if (keep > 0) ok = syscall(SYS_close_range, 0U, static_cast<unsigned>(keep - 1), 0U) == 0;
  if (ok) ok = syscall(SYS_close_range, static_cast<unsigned>(keep + 1), ~0U, 0U) == 0;
  if (ok) return;
  rlimit nofile{};
  int max_fd = getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur < 65536
                   ? static_cast<int>(nofile.rlim_cur)
                   : 65536;
  for (int fd = 0; fd < max_fd; fd++) {
    if (fd != keep) close(fd);
  }
}

void forward(pid_t command, int sig) {
  // The command's group reaches what it started in the foreground; the command itself when it
  // has not become a group leader (yet).
  if (kill(-command, sig) != 0 && errno == ESRCH) kill(command, sig);
}

[[noreturn]] void reportAndExit(int status_fd, int wait_status) {
  const char* p = reinterpret_cast<const char*>(&wait_status);
  size_t left = sizeof wait_status;
  while (left > 0) {
    ssize_t n = write(status_fd, p, left);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;  // the supervisor is gone: nobody to tell
    p += n;
    left -= static_cast<size_t>(n);
  }
  _exit(0);
}

}  // namespace

int becomeJobInit() {
  if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) != 0) return errno;
  sigset_t set = initSignals();
  if (sigprocmask(SIG_SETMASK, &set, nullptr) != 0) return errno;
  defaultDispositions();
  // Shows as "jw-init" in `ps`, inside the job and on the host, instead of "jobworkerd".
  prctl(PR_SET_NAME, "jw-init", 0, 0, 0);
  return 0;
}

pid_t forkJobCommand() {
  // _Fork, not fork: no atfork handlers (libraries' locks) run in this copy of the supervisor.
  pid_t pid = _Fork();
  if (pid == 0) {
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    return 0;
  }
  // Both sides set the group, so a signal forwarded right after the fork reaches the command
  // even before it ran its own setpgid. EACCES once it has exec'd: then it did it itself.
  if (pid > 0) setpgid(pid, pid);
  return pid;
}

void runJobInit(pid_t command, int status_fd) {
  closeAllBut(status_fd);
  // Do not pin the supervisor's working directory (and its mount) for the job's lifetime.
  if (chdir("/") != 0) {
    // Not fatal: the init only waits; "/" always exists.
  }
  sigset_t set = initSignals();
  for (;;) {
    // Reap first: SIGCHLD may have arrived before the loop, and one SIGCHLD can stand for many.
    for (;;) {
      int status = 0;
      pid_t pid = waitpid(-1, &status, WNOHANG);
      if (pid > 0 && WIFSTOPPED(status)) {
        // Only a tracee reports a stop without WUNTRACED: a job process that made the init its
        // tracer (PTRACE_TRACEME, when seccomp is off). Let it go with the signal it stopped on,
        // except the SIGTRAP that only tracing caused (at execve), which would kill it.
        int sig = WSTOPSIG(status) == SIGTRAP ? 0 : WSTOPSIG(status);
        ptrace(PTRACE_DETACH, pid, nullptr, sig);
        continue;
      }
      if (pid == command) reportAndExit(status_fd, status);
      if (pid > 0) continue;  // an orphan that was reparented to us
      if (pid < 0 && errno == EINTR) continue;
      if (pid < 0 && errno == ECHILD) _exit(0);  // cannot happen while `command` is unreaped
      break;
    }
    siginfo_t info;
    int sig = sigwaitinfo(&set, &info);
    if (sig < 0 || sig == SIGCHLD) continue;
    forward(command, sig);
  }
}

Result<std::optional<int>> readJobStatus(int status_read_fd) {
  int status = 0;
  // Non-blocking: an empty pipe (EAGAIN) means the init wrote nothing, like EOF.
  auto got = readExact(status_read_fd, &status, sizeof status, "job init status pipe");
  if (!got) return got.error();
  if (got.value() == 0) return std::optional<int>{};
  if (got.value() != sizeof status) return Error{"short status from job init"};
  return std::optional<int>{status};
}

WaitOutcome waitOutcome(int raw_wait_status) {
  if (WIFEXITED(raw_wait_status)) return {CLD_EXITED, WEXITSTATUS(raw_wait_status)};
  if (WIFSIGNALED(raw_wait_status)) {
    return {WCOREDUMP(raw_wait_status) ? CLD_DUMPED : CLD_KILLED, WTERMSIG(raw_wait_status)};
  }
  // waitpid without WUNTRACED/WCONTINUED reports only the two above.
  return {CLD_EXITED, 0};
}

}  // namespace jw::supervisor
