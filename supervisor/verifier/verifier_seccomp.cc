// The seccomp allowlist of jobworker-verifier (see verifier_seccomp.h); installed once, after
// the uid change and PR_SET_NO_NEW_PRIVS, in a process that never starts a thread.
//
// How the list was collected: `strace -f` of a release-build verifier answering a wrong
// password, a malformed hash, an empty password and a frame of the wrong direction (its exit).
// After the filter it made only brk, mmap, munmap, recvfrom, sendto, write and exit_group;
// madvise and mremap stay for glibc's free/realloc of large blocks, the signal calls for abort().
// Anything not listed kills the process (SIGSYS); the supervisor answers pending checks
// "unavailable" and starts a new verifier, and the verifier's integration test shows a missing
// entry at once.
#include "supervisor/verifier/verifier_seccomp.h"

#include "common/sandbox/seccomp_allowlist.h"

namespace jw::verifier {

namespace {

using sandbox::SyscallGroup;

const std::vector<SyscallGroup>& allowlist() {
  static const std::vector<SyscallGroup> groups = {
      {"memory: argon2id's 64 MiB of blocks (mmap'd and unmapped per check), malloc",
       {"brk", "mmap", "munmap", "mremap", "madvise"}},
      {"the link to jobworkerd (recv/send on fd 3) and log lines on stderr",
       {"recvfrom", "sendto", "write"}},
      {"leaving: exit, and abort() on a broken invariant (raise: getpid, gettid, tgkill)",
       {"exit", "exit_group", "rt_sigprocmask", "rt_sigreturn", "getpid", "gettid", "tgkill"}},
      {"time, should libc ask the kernel instead of the vDSO",
       {"clock_gettime", "restart_syscall"}},
  };
  return groups;
}

// Sanitizer builds only (CI's -Db_sanitize=address,undefined tree): the runtime's alternate
// signal stack and its memory probes through a pipe. Never in a production build.
const std::vector<const char*>& sanitizerExtras() {
#if defined(__SANITIZE_ADDRESS__)
  static const std::vector<const char*> extras = {"sigaltstack", "pipe2", "read", "close",
                                                  "mprotect"};
#else
  static const std::vector<const char*> extras;
#endif
  return extras;
}

Status build(scmp_filter_ctx ctx) {
  if (Status s = sandbox::allowGroups(ctx, allowlist()); !s) return s;
  for (const char* call : sanitizerExtras()) {
    if (Status s = sandbox::addRule(ctx, SCMP_ACT_ALLOW, call); !s) return s;
  }
  return okStatus();
}

}  // namespace

Status installSeccompFilter() { return sandbox::loadKillByDefault(build); }

std::vector<std::string> seccompAllowedSyscalls() { return sandbox::callNames(allowlist()); }

}  // namespace jw::verifier
