// Capability steps for non-root jobs (see credentials.h); lastCapability runs in jobworkerd, the
// other two in the job process between fork and execve (async-signal-safe).
#include "supervisor/launch/credentials.h"

#include <fcntl.h>
#include <linux/capability.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <string>

#include "common/io.h"

namespace jw::supervisor {

Result<int> lastCapability() {
  const std::string path = "/proc/sys/kernel/cap_last_cap";
  auto text = readFile(path, 16);
  if (!text) return text.error();
  int value = 0;
  const char* begin = text->data();
  auto [end, ec] = std::from_chars(begin, begin + text->size(), value);
  if (ec != std::errc() || end == begin || value < 0 || value > 1023) {
    return Error{"unexpected content in " + path};
  }
  return value;
}

int dropBoundingSet(int last_cap) {
  for (int cap = 0; cap <= last_cap; cap++) {
    if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0) return errno;
  }
  // EINVAL: a kernel without ambient capabilities (< 4.3) has none to clear.
  if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0 && errno != EINVAL) {
    return errno;
  }
  return 0;
}

int clearCapabilities() {
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3] = {};
  if (syscall(SYS_capset, &header, data) != 0) return errno;
  if (syscall(SYS_capget, &header, data) != 0) return errno;
  for (const auto& d : data) {
    if (d.effective != 0 || d.permitted != 0 || d.inheritable != 0) return EPERM;
  }
  return 0;
}

}  // namespace jw::supervisor
