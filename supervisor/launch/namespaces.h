// Job namespaces (pid, mount, net, uts, ipc): the clone of a job's first process and the in-child
// containment steps (mounts, loopback, hostname). Runs in jobworkerd; the child part in the job.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "common/result.h"

namespace jw::supervisor {

// What isolation one job gets (from the config's isolation.* switches and the request's network).
struct IsolationSpec {
  bool pid = true;       // own PID namespace, with the job init (job_init.h) as its PID 1
  bool mount = true;     // own mount namespace: fresh /proc, private /tmp and /dev/shm
  bool net = true;       // own network namespace with only `lo` (false: "network": "host")
  bool uts = true;       // own hostname
  bool ipc = true;       // own System V IPC and POSIX message queues
  bool seccomp = true;   // the default job seccomp profile (job_seccomp.h)
  std::string hostname;  // with uts: jobHostname(id)
  uint64_t tmp_size = 64ULL << 20;  // size= of the /tmp and /dev/shm tmpfs, bytes
};

// "job-" + the first 8 characters of the job id.
std::string jobHostname(const std::string& job_id);

// The labels of the status object's `isolation` array for this spec ("pid", "mount", "net",
// "uts", "ipc", "seccomp"); the caller adds "cgroup" when the job got one.
std::vector<std::string> isolationLabels(const IsolationSpec& spec);

// Everything the child needs for its containment, prepared before the clone: the child only
// reads it (no allocation after the clone).
struct ContainmentPlan {
  int clone_flags = 0;  // CLONE_NEW* for the spec (without an exit signal)
  bool new_mount = false;
  bool mount_proc = false;  // pid and mount: /proc must describe the new PID namespace
  bool new_net = false;
  bool new_uts = false;
  std::string hostname;
  std::string tmp_options;  // "size=N,mode=1777"
};

// Checks the spec (hostname length, tmp size) and builds the plan.
Result<ContainmentPlan> planContainment(const IsolationSpec& spec);

// CLONE_NEW* flags for the spec.
int cloneFlags(const IsolationSpec& spec);

// fork() into new namespaces: returns the child's pid (as seen by the caller) in the parent, 0 in
// the child, -1 with errno on failure. With a PID namespace the child is its PID 1. When
// cgroup_dir_fd >= 0 (a v2 cgroup directory) the child is created inside that cgroup
// (clone3 CLONE_INTO_CGROUP), so it never runs outside it; -1: stays in the caller's cgroup.
// The child must only make async-signal-safe calls and must not call raise()/abort() (glibc's
// cached thread id is the parent's after a raw clone).
pid_t cloneJobProcess(int clone_flags, int cgroup_dir_fd);

// The steps of setupContainment, in their order (for the child's error report).
enum class ContainmentStep : int32_t {
  kNone = 0,
  kMountPropagation,  // make / recursively a slave
  kProc,              // mount proc on /proc
  kTmp,               // tmpfs on /tmp
  kShm,               // tmpfs on /dev/shm
  kLoopback,          // bring `lo` up
  kHostname,          // sethostname
};
const char* containmentStepName(ContainmentStep step);

// In the child, before anything of the job runs, in this order: mount namespace (/ recursively
// slave, so nothing propagates back to the host) -> /proc for the new PID namespace -> /tmp and
// /dev/shm tmpfs -> `lo` up -> hostname. Async-signal-safe. Returns 0, or the errno of the failed
// step and sets *failed to that step.
int setupContainment(const ContainmentPlan& plan, ContainmentStep* failed);

}  // namespace jw::supervisor
