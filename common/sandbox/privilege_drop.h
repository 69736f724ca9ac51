// The privilege drop of an unprivileged child of jobworkerd: one fixed sequence in which every
// failed step is fatal. Runs in jobworker-frontend and jobworker-verifier, once, while still
// single-threaded, before either serves anything.
#pragma once

#include <sys/types.h>

#include <string>

#include "common/result.h"

namespace jw::sandbox {

struct DropTarget {
  bool change_uid = true;  // false with --no-setuid (non-root dev mode): keep the uid, still NNP
  std::string account;     // for messages
  uid_t uid = 0;
  gid_t gid = 0;
};

// Looks up the account (getpwnam reads /etc/passwd and NSS: must run before the drop). An
// account with uid or gid 0 is refused: dropping to root is no drop.
Result<DropTarget> lookupAccount(const std::string& name);

// What a helper's `--run-as ACCOUNT | --no-setuid` pair means: that account, or with no_setuid
// (non-root dev mode) the current ids, refused when they are root's.
Result<DropTarget> dropTargetFor(const std::string& run_as, bool no_setuid);

// A descriptor the spawning jobworkerd promised is a SOCK_SEQPACKET socket (a helper's link):
// catches a wrong spawn at once. `what` names it in the error.
Status requireSeqpacket(int fd, const std::string& what);

// The process's seccomp allowlist, installed as the last step. Each process has its own list
// (frontend/seccomp_filter.cc, supervisor/verifier/verifier_seccomp.cc); the order is shared.
using InstallSeccomp = Status (*)();

// Bounding set + securebits -> setgroups -> setresgid -> setresuid -> verify root cannot be
// regained -> clear capabilities -> PR_SET_NO_NEW_PRIVS -> seccomp allowlist. Without a uid
// change the first four steps are skipped; the rest always run. Returns an error naming the
// step that failed; the caller exits.
Status dropPrivileges(const DropTarget& target, InstallSeccomp install_seccomp);

}  // namespace jw::sandbox
