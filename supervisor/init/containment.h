// The job's containment, run by the shim once it sits in its cgroup(s): mounts, loopback,
// hostname, its own cgroup namespace and view of /sys/fs/cgroup. Runs in jobworker-init.
#pragma once

#include "common/protocol/shim_messages.h"
#include "supervisor/init/spec.h"

namespace jw::init {

// In this order: / recursively slave (nothing propagates back to the host) -> /proc for the new
// PID namespace -> /tmp and /dev/shm tmpfs -> `lo` up -> hostname -> with its own cgroup:
// unshare(CLONE_NEWCGROUP) (only now, so the namespace is rooted at the job's cgroup, not at
// jobworkerd's) and a fresh /sys/fs/cgroup. Returns 0, or the errno of the failed step and sets
// *failed to it.
int setupContainment(const InitSpec& spec, shim::ContainmentStep* failed);

}  // namespace jw::init
