// The seccomp allowlist of jobworker-frontend (see seccomp_filter.h); installed once, after the
// uid change and PR_SET_NO_NEW_PRIVS, before any thread exists.
//
// How the list was collected: `strace -f -c -p <frontend pid>` (and `strace -f -o` for the
// per-call arguments) against a frontend serving a real workload through jobworkerd: logins
// (JSON and Basic, good and bad passwords), job starts, status and list calls, stops, log reads
// with and without follow, many parallel and silent connections, the supervisor's SIGHUP user
// table, and kill -9 / respawn. Anything not listed kills the process (SIGSYS), which the
// supervisor logs and answers with a respawn: a missing entry shows up at once in the tests.
#include "frontend/seccomp_filter.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <seccomp.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include "common/sandbox/seccomp_allowlist.h"
#include "common/sanitizer.h"

namespace jw::frontend {

namespace {

using sandbox::addRule;
using Group = sandbox::SyscallGroup;

// Every unconditionally allowed call, grouped by why the frontend needs it.
const std::vector<Group>& allowlist() {
  static const std::vector<Group> groups = {
      {"memory: malloc arenas, thread stacks, argon2's 64 MiB blocks, OpenSSL buffers",
       {"brk", "mmap", "munmap", "mprotect", "madvise", "mremap"}},
      {"threads: glibc pthread start/exit, futex-based mutexes and condition variables",
       {"set_robust_list", "rseq", "futex", "gettid", "sched_yield", "exit", "exit_group"}},
      {"glibc malloc sizes its arenas with sched_getaffinity once its /proc opens fail",
       {"sched_getaffinity"}},
      {"signals: glibc's pthread_create blocks signals and installs its SIGRT handler; abort()",
       {"rt_sigaction", "rt_sigprocmask", "rt_sigreturn", "tgkill", "getpid"}},
      {"time: timeouts, throttling delays, Date headers, session expiry (vDSO where it can)",
       {"clock_gettime", "clock_nanosleep", "nanosleep", "gettimeofday", "restart_syscall"}},
      {"I/O on descriptors the process already holds: channel, sockets, eventfd, stderr",
       {"read", "write", "close", "fcntl"}},
      {"waiting: the acceptor's poll and wake-up eventfd; Poco's Socket::poll uses epoll",
       {"poll", "epoll_create", "epoll_create1", "epoll_ctl", "epoll_wait", "epoll_pwait",
        "eventfd2"}},
      {"TCP and the SEQPACKET channel: accept, send/recv, socket options and addresses; "
       "sendmsg for journald",
       {"accept4", "recvfrom", "sendto", "sendmsg", "shutdown", "setsockopt", "getsockopt",
        "getsockname", "getpeername"}},
      {"randomness: session tokens (libsodium), TLS (OpenSSL)", {"getrandom"}},
      {"identity queries (never changes: the setuid family is absent)",
       {"getuid", "geteuid", "getgid", "getegid"}},
  };
  return groups;
}

// Sanitizer builds only (CI's -Db_sanitize=address,undefined tree): the runtime gives every
// thread an alternate signal stack, and probes memory by writing it into a pipe. Never in a
// production build; collected the same way (strace under the same workload).
const std::vector<const char*>& sanitizerExtras() {
#if JW_ASAN
  static const std::vector<const char*> extras = {"sigaltstack", "pipe2"};
#else
  static const std::vector<const char*> extras;
#endif
  return extras;
}

// What SCMP_A0()..SCMP_A5() build, without their C99 compound literals (not C++: -Wpedantic).
constexpr scmp_arg_cmp argCmp(unsigned arg, scmp_compare op, scmp_datum_t a, scmp_datum_t b = 0) {
  return scmp_arg_cmp{arg, op, a, b};
}

Status build(scmp_filter_ctx ctx) {
  if (int rc = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_TSYNC, 1); rc != 0) {
    return sysError("seccomp_attr_set(TSYNC)", -rc);
  }
  if (Status s = sandbox::allowGroups(ctx, allowlist()); !s) return s;
  for (const char* call : sanitizerExtras()) {
    if (Status s = addRule(ctx, SCMP_ACT_ALLOW, call); !s) return s;
  }
  // Threads only: clone with CLONE_THREAD set. clone3 passes its flags behind a pointer the
  // filter cannot read, so it fails with ENOSYS and glibc falls back to clone.
  scmp_arg_cmp thread_only = argCmp(0, SCMP_CMP_MASKED_EQ, CLONE_THREAD, CLONE_THREAD);
  if (Status s = addRule(ctx, SCMP_ACT_ALLOW, "clone", 1, &thread_only); !s) return s;
  if (Status s = addRule(ctx, SCMP_ACT_ERRNO(ENOSYS), "clone3"); !s) return s;
  // File opens fail instead of killing: glibc (malloc's /proc reads), OpenSSL and Poco probe
  // files lazily and cope with a failure; nothing the frontend needs is a file after the drop.
  for (const char* call : {"open", "openat", "openat2", "creat"}) {
    if (Status s = addRule(ctx, SCMP_ACT_ERRNO(EPERM), call); !s) return s;
  }
  // Sockets: only AF_UNIX datagrams to journald (sd_journal_send); no new network sockets.
  scmp_arg_cmp unix_only = argCmp(0, SCMP_CMP_EQ, AF_UNIX);
  if (Status s = addRule(ctx, SCMP_ACT_ALLOW, "socket", 1, &unix_only); !s) return s;
  // ioctl: FIONREAD only (Poco's available() on plain sockets).
  scmp_arg_cmp fionread = argCmp(1, SCMP_CMP_EQ, FIONREAD);
  if (Status s = addRule(ctx, SCMP_ACT_ALLOW, "ioctl", 1, &fionread); !s) return s;
#if JW_TSAN
  // jobworker-frontend-tsan only: a report asks isatty(2) (TCGETS) to choose its colours; killed
  // there, the race would end as a SIGSYS instead of a report.
  scmp_arg_cmp tcgets = argCmp(1, SCMP_CMP_EQ, TCGETS);
  if (Status s = addRule(ctx, SCMP_ACT_ALLOW, "ioctl", 1, &tcgets); !s) return s;
#endif
  return okStatus();
}

}  // namespace

Status installSeccompFilter() { return sandbox::loadKillByDefault(build); }

std::vector<std::string> seccompAllowedSyscalls() { return sandbox::callNames(allowlist()); }

}  // namespace jw::frontend
