// The frontend's seccomp allowlist, in one place. Runs in jobworker-frontend as the last step
// of its privilege drop.
#pragma once

#include <string>
#include <vector>

#include "common/result.h"

namespace jw::frontend {

// Loads the filter for every thread (TSYNC): default action kill-process; file opens fail
// with EPERM; clone3 fails with ENOSYS (glibc then falls back to clone); clone only with
// CLONE_THREAD; no execve, fork, ptrace, mount or setuid family.
Status installSeccompFilter();

// The names of the unconditionally allowed system calls (for tests and documentation).
std::vector<std::string> seccompAllowedSyscalls();

}  // namespace jw::frontend
