// Capabilities of a non-root job: what spawn.cc's uid/gid change leaves to do (the bounding and
// ambient sets, and an explicit, verified empty set). Runs in jobworkerd; the child part in the
// job process between fork and execve.
#pragma once

#include "common/result.h"

namespace jw::supervisor {

// Before fork: the highest capability number of the running kernel (/proc/sys/kernel/cap_last_cap).
Result<int> lastCapability();

// In the job process of a non-root job, while still root (PR_CAPBSET_DROP needs CAP_SETPCAP),
// i.e. before setgroups/setresgid/setresuid: empties the capability bounding set, so no exec can
// ever grant a capability again (file capabilities, set-uid root), and the ambient set.
// Async-signal-safe. Returns 0 or errno.
int dropBoundingSet(int last_cap);

// In the job process of a non-root job, after setresuid: sets the permitted, effective and
// inheritable sets to empty (the kernel already clears permitted and effective on a change away
// from uid 0, but the inheritable set survives it) and checks that none remains (EPERM if one
// does). Async-signal-safe. Returns 0 or errno.
int clearCapabilities();

}  // namespace jw::supervisor
