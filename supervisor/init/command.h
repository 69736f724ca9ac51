// The job's command process, forked by the shim: its own steps up to execve (process group,
// stdio, rlimits, credentials, capabilities, NNP, cwd, fds, seccomp last). Runs in jobworker-init
// (the forked command process).
#pragma once

#include "common/protocol/shim_messages.h"
#include "supervisor/init/spec.h"

namespace jw::init {

struct CommandFds {
  int out_w = -1;     // stdout (and stderr when merged)
  int err_w = -1;     // separate stderr, else -1
  int report_w = -1;  // close-on-exec: a failed step writes {step, errno} here
};

// Runs in the forked command: never returns. A failed step writes its InitStep and errno to
// fds.report_w and _exits; a successful execve closes report_w (EOF for the shim).
[[noreturn]] void runCommand(const InitSpec& spec, const CommandFds& fds);

}  // namespace jw::init
