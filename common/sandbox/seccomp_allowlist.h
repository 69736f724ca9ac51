// Building blocks of a default-kill seccomp allowlist (libseccomp), shared by the filters of
// jobworker-frontend and jobworker-verifier; each process keeps its own commented list.
#pragma once

#include <seccomp.h>

#include <cstdint>
#include <string>
#include <vector>

#include "common/result.h"

namespace jw::sandbox {

// Calls allowed without conditions, grouped by why the process needs them.
struct SyscallGroup {
  const char* why;
  std::vector<const char*> calls;
};

// One rule for the call named `name`; an unknown name is an error (a typo must not leave a hole).
Status addRule(scmp_filter_ctx ctx, uint32_t action, const char* name, unsigned count = 0,
               const scmp_arg_cmp* args = nullptr);

// Allows every call of every group.
Status allowGroups(scmp_filter_ctx ctx, const std::vector<SyscallGroup>& groups);

// Creates a filter whose default action kills the process, lets `build` add the rules, loads it
// and releases it. `build` returns an error to abort before anything is loaded.
Status loadKillByDefault(Status (*build)(scmp_filter_ctx));

// The names of every call in `groups` (for tests and documentation).
std::vector<std::string> callNames(const std::vector<SyscallGroup>& groups);

}  // namespace jw::sandbox
