// The frontend's privilege drop: one fixed sequence, run once while still single-threaded,
// in which every failed step is fatal. Runs in jobworker-frontend before it serves anything.
#pragma once

#include <sys/types.h>

#include <string>

#include "common/result.h"

namespace jw::frontend {

struct DropTarget {
  bool change_uid = true;  // false with --no-setuid (non-root dev mode)
  std::string account;     // for messages
  uid_t uid = 0;
  gid_t gid = 0;
};

// Looks up the account (getpwnam reads /etc/passwd and NSS: must run before the drop).
Result<DropTarget> lookupAccount(const std::string& name);

// Bounding set + securebits -> setgroups -> setresgid -> setresuid -> verify root cannot be
// regained -> clear capabilities -> PR_SET_NO_NEW_PRIVS -> seccomp allowlist (TSYNC).
// Returns an error naming the step that failed; the caller exits.
Status dropPrivileges(const DropTarget& target);

}  // namespace jw::frontend
