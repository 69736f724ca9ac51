// The job spec as the shim reads it from its sealed memfd (layout in
// common/protocol/shim_messages.h): every length and count checked against the bytes that are
// there and against its cap before anything is used. Runs in jobworker-init.
#pragma once

#include <linux/filter.h>
#include <sys/types.h>

#include <cstddef>
#include <cstdint>

namespace jw::init {

struct InitSpec {
  uint32_t flags = 0;
  uid_t uid = 0;
  gid_t gid = 0;
  int last_cap = 0;
  uint64_t nofile_cur = 0, nofile_max = 0;  // 0: keep the inherited RLIMIT_NOFILE
  uint64_t output_cap = 0;
  uint64_t deadline_ns = 0;  // CLOCK_BOOTTIME; 0: no timeout
  uint64_t stop_grace_ms = 0;
  // NUL-terminated strings pointing into the mapped spec; "" when not given.
  const char* hostname = "";
  size_t hostname_len = 0;
  const char* tmp_options = "";
  const char* cwd = "";
  const char* home = "";
  const char* cgroup_leaf = "";  // the job's cgroup directory name (its id)
  gid_t* groups = nullptr;
  size_t ngroups = 0;
  char** argv = nullptr;  // nullptr-terminated, like every list below
  char** envp = nullptr;
  char** candidates = nullptr;
  sock_filter* seccomp = nullptr;
  uint16_t seccomp_len = 0;

  bool has(uint32_t flag) const { return (flags & flag) != 0; }
};

// Parses `len` bytes at `data` into *spec. `storage` (at least specStorageBytes(len) bytes)
// receives the pointer arrays, groups and filter; strings stay in `data`. False on any
// violation: bad magic or version, overrun, a count over its cap, a string without its single
// terminating NUL, trailing bytes, an empty argv or candidate list.
bool parseSpec(const uint8_t* data, size_t len, void* storage, size_t storage_len, InitSpec* spec);

// Upper bound of the storage parseSpec needs for a spec of `len` bytes.
size_t specStorageBytes(size_t len);

}  // namespace jw::init
