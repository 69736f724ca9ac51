// Job namespaces (see namespaces.h): planning and the clone of the shim; runs in jobworkerd.
#include "supervisor/launch/namespaces.h"

#include <linux/sched.h>
#include <sched.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace jw::supervisor {

namespace {

// Upper bound from the kernel (struct new_utsname), without the terminating NUL.
constexpr size_t kMaxHostname = 64;

}  // namespace

std::string jobHostname(const std::string& job_id) { return "job-" + job_id.substr(0, 8); }

std::vector<std::string> isolationLabels(const IsolationSpec& spec) {
  std::vector<std::string> out;
  if (spec.pid) out.push_back("pid");
  if (spec.mount) out.push_back("mount");
  if (spec.net) out.push_back("net");
  if (spec.uts) out.push_back("uts");
  if (spec.ipc) out.push_back("ipc");
  if (spec.seccomp) out.push_back("seccomp");
  return out;
}

int cloneFlags(const IsolationSpec& spec) {
  int flags = 0;
  if (spec.pid) flags |= CLONE_NEWPID;
  if (spec.mount) flags |= CLONE_NEWNS;
  if (spec.net) flags |= CLONE_NEWNET;
  if (spec.uts) flags |= CLONE_NEWUTS;
  if (spec.ipc) flags |= CLONE_NEWIPC;
  return flags;
}

Result<ContainmentPlan> planContainment(const IsolationSpec& spec) {
  ContainmentPlan plan;
  plan.clone_flags = cloneFlags(spec);
  if (spec.uts) {
    if (spec.hostname.empty() || spec.hostname.size() > kMaxHostname) {
      return Error{"job hostname must be 1 to 64 bytes: \"" + spec.hostname + "\"", EINVAL};
    }
    plan.hostname = spec.hostname;
  }
  if (spec.mount) {
    // tmpfs reads size=0 as "unlimited": refuse it rather than silently lift the limit.
    if (spec.tmp_size == 0) return Error{"job /tmp size must not be 0", EINVAL};
    plan.tmp_options = "size=" + std::to_string(spec.tmp_size) + ",mode=1777";
  }
  return plan;
}

}  // namespace jw::supervisor
