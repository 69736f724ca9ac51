// The seccomp allowlist of jobworker-verifier, in one place. Runs in jobworker-verifier as the
// last step of its privilege drop.
#pragma once

#include <string>
#include <vector>

#include "common/result.h"

namespace jw::verifier {

// Default action kill-process. Allowed: memory for argon2id's blocks, recv/send on the link,
// write to stderr, exit, and what abort() needs. No open, socket, clone, execve, kill, ptrace or
// setuid family: the verifier can compute and answer, nothing else.
Status installSeccompFilter();

// The names of the allowed system calls (for tests and documentation).
std::vector<std::string> seccompAllowedSyscalls();

}  // namespace jw::verifier
