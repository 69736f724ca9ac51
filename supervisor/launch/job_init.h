// The job init: PID 1 of a job's PID namespace, forked from jobworkerd (no separate program). It
// starts the command, forwards stop signals to it, reaps orphans and reports the command's wait
// status to the supervisor. The child-side calls run in the job's first process; the
// supervisor-side helpers in jobworkerd.
#pragma once

#include <sys/types.h>

#include <optional>

#include "common/result.h"

namespace jw::supervisor {

// --- in the job's first process (PID 1 of the new PID namespace); async-signal-safe ------------

// First step after cloneJobProcess, before waiting for the cgroup release: SIGKILL when the
// supervisor dies (PR_SET_PDEATHSIG; if it died before this call, the release read sees EOF),
// default dispositions, and a signal mask of exactly SIGTERM, SIGINT, SIGHUP and SIGCHLD, which
// the init then takes synchronously. PID 1 drops any default-disposition signal, even from the
// supervisor; blocked signals are queued instead, so none sent between clone and the init loop
// is lost (the supervisor blocks the same signals for its signalfd, and this keeps them blocked).
// Returns 0 or errno.
int becomeJobInit();

// Forks the command process. In the init: its pid (made leader of its own process group, which
// the init signals) or -1 with errno. In the command process: 0, with an empty signal mask and
// default dispositions; it continues with the job's own steps (process group, stdio, rlimits,
// credentials, seccomp, ..., execve) and must _exit() if they fail.
pid_t forkJobCommand();

// The init loop. Closes every fd but status_fd (the init must hold no pipe of the job and none of
// the supervisor's), then until `command` exits: forwards SIGTERM, SIGINT and SIGHUP to the
// command's process group and reaps every child (orphans included). When `command` exits it
// writes its raw wait status (an int, 4 bytes, host byte order) to status_fd and exits 0; the
// kernel then kills whatever is left in the namespace before the init's exit is reported.
[[noreturn]] void runJobInit(pid_t command, int status_fd);

// --- in jobworkerd ----------------------------------------------------------------------------

// The command's raw wait status from the status pipe's read end, once the init has exited (its
// pidfd is readable): nullopt when the init wrote none (it was killed, e.g. by the stop's SIGKILL,
// or the setup failed); then the init's own wait status is the job's.
Result<std::optional<int>> readJobStatus(int status_read_fd);

// A raw wait status as waitid() would report it: si_code (CLD_EXITED, CLD_KILLED, CLD_DUMPED)
// and si_status (exit code or signal number).
struct WaitOutcome {
  int code = 0;
  int value = 0;
};
WaitOutcome waitOutcome(int raw_wait_status);

}  // namespace jw::supervisor
