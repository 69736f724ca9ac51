// The default seccomp profile for jobs: built with libseccomp in jobworkerd (once, before any
// fork), exported as BPF into each job's spec and installed by its shim's command process as the
// last step before execve (supervisor/init/command).
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

}  // namespace jw::supervisor
