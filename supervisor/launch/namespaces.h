// Job namespaces (pid, mount, net, uts, ipc): what a job gets and its plan (the clone of its
// shim into them is init_exec.h's cloneShim). The containment steps inside (mounts, loopback,
// hostname, cgroup namespace) run in the shim (supervisor/init/containment). Runs in jobworkerd.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "common/result.h"

namespace jw::supervisor {

// What isolation one job gets (from the config's isolation.* switches and the request's network).
struct IsolationSpec {
  bool pid = true;       // own PID namespace, with the job's shim (jobworker-init) as its PID 1
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

// What the shim's spec carries for its containment.
struct ContainmentPlan {
  int clone_flags = 0;      // CLONE_NEW* for the spec (without an exit signal)
  std::string hostname;     // with uts
  std::string tmp_options;  // with mount: "size=N,mode=1777"
};

// Checks the spec (hostname length, tmp size) and builds the plan.
Result<ContainmentPlan> planContainment(const IsolationSpec& spec);

// CLONE_NEW* flags for the spec.
int cloneFlags(const IsolationSpec& spec);

}  // namespace jw::supervisor
