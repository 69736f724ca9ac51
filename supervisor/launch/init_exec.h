// The few steps between the clone of a job's shim and its execveat of jobworker-init, shared by
// jobworker-spawner (every job of jobworkerd) and spawnJob() (the tests' in-process start). The
// child part is async-signal-safe: it runs in a raw clone of its caller.
#pragma once

#include <sys/types.h>

namespace jw::supervisor {

// The descriptors a shim is exec'd with, as the caller holds them (-1: absent), and the program.
struct InitFds {
  int devnull = -1;
  int spec = -1;            // the sealed spec memfd
  int channel = -1;         // the shim's end of the status channel
  int supervisor_end = -1;  // jobworkerd's end, kept by the shim for a take-over
  int stdout_log = -1;
  int stderr_log = -1;
  int exit_record = -1;
  int stdin_read = -1;
  int init = -1;  // O_PATH fd of jobworker-init
};

// The shim's argv: `jw-init <short id>`; short_id must outlive the exec (at most 8 characters).
struct InitArgv {
  char name[8] = "jw-init";
  char short_id[9] = {};
  char* argv[3] = {nullptr, nullptr, nullptr};
  char* envp[1] = {nullptr};
  explicit InitArgv(const char* id);
};

// In the clone child: places the descriptors at the shim's fixed numbers, closes every other
// one and execs jobworker-init. A failure is reported as ExecFailed(kExecInit) on the channel.
[[noreturn]] void execJobInit(const InitFds& fds, InitArgv& args);

// clone3 of a shim: into `ns_flags` (CLONE_NEW*), created inside the v2 cgroup `cgroup_dir`
// (-1: the caller's), and with `as_sibling` a child of the caller's parent (CLONE_PARENT), so
// that jobworkerd reaps the shims jobworker-spawner makes. *pidfd gets the child's pidfd
// (close-on-exec). Returns the pid in the caller, 0 in the child, -1 with errno.
pid_t cloneShim(int ns_flags, int cgroup_dir, bool as_sibling, int* pidfd);

}  // namespace jw::supervisor
