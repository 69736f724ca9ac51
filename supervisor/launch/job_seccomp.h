// The default seccomp profile for jobs: built with libseccomp in jobworkerd (once, before any
// fork) and installed by the job process just before execve with a single prctl.
#pragma once

#include <linux/filter.h>

#include <vector>

#include "common/result.h"

namespace jw::supervisor {

class JobSeccompProfile {
 public:
  // The default profile: allow everything but the syscalls no ordinary job needs (EPERM), user
  // namespace creation (EPERM), clone3 (ENOSYS, so libc falls back to clone, whose flags the
  // filter can see); syscalls of a non-native ABI (x32, i386 on x86_64) kill the process.
  static Result<JobSeccompProfile> build();

  // The program for PR_SET_SECCOMP; points into this object, which must outlive the fork.
  sock_fprog program() const;
  size_t instructionCount() const { return filter_.size(); }

 private:
  std::vector<sock_filter> filter_;
};

// In the job process, after its credentials changed and as the last step before execve:
// PR_SET_NO_NEW_PRIVS (required to install a filter without CAP_SYS_ADMIN, and kept across exec),
// then the filter. Async-signal-safe. Returns 0 or errno.
int installSeccomp(const sock_fprog& program);

}  // namespace jw::supervisor
