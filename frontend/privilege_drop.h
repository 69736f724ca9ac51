// The frontend's privilege drop: the shared sequence of common/sandbox with the frontend's own
// seccomp allowlist. Runs in jobworker-frontend, once, before it serves anything.
#pragma once

#include "common/result.h"
#include "common/sandbox/privilege_drop.h"

namespace jw::frontend {

using sandbox::DropTarget;
using sandbox::lookupAccount;

// common/sandbox's dropPrivileges with installSeccompFilter (frontend/seccomp_filter.h) last.
Status dropPrivileges(const DropTarget& target);

}  // namespace jw::frontend
