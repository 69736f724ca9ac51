// The job spec jobworkerd hands the shim (jobworker-init) in a sealed memfd, in the layout of
// common/protocol/shim_messages.h. Runs in jobworkerd.
#pragma once

#include <linux/filter.h>
#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "common/fd.h"
#include "common/result.h"

namespace jw::supervisor {

struct ShimSpec {
  uint32_t flags = 0;  // shim::SpecFlag
  uid_t uid = 0;
  gid_t gid = 0;
  int last_cap = 0;
  uint64_t nofile_cur = 0, nofile_max = 0;
  uint64_t output_cap = 0;
  uint64_t deadline_ns = 0;  // CLOCK_BOOTTIME, 0: none
  uint64_t stop_grace_ms = 0;
  std::string hostname, tmp_options, cwd, home, cgroup_leaf;
  std::vector<gid_t> groups;
  std::vector<std::string> argv, env, candidates;
  std::vector<sock_filter> seccomp;
};

// The bytes, field by field; an error when a count or the total is over the shim's caps (it
// would refuse the spec anyway) or a string holds a NUL.
Result<std::string> encodeShimSpec(const ShimSpec& spec);

// A memfd holding `bytes`, sealed against every change (the shim checks the seals).
Result<UniqueFd> sealedSpecMemfd(const std::string& bytes);

}  // namespace jw::supervisor
