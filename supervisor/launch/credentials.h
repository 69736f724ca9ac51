// The kernel's highest capability number, which the shim's spec carries for the bounding-set
// drop of non-root jobs (the drop itself: supervisor/init/command). Runs in jobworkerd.
#pragma once

#include "common/result.h"

namespace jw::supervisor {

// Before fork: the highest capability number of the running kernel (/proc/sys/kernel/cap_last_cap).
Result<int> lastCapability();

}  // namespace jw::supervisor
