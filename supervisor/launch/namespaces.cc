// Job namespaces (see namespaces.h): planning in jobworkerd, clone and containment steps in the
// job's first process, where only async-signal-safe calls are allowed.
#include "supervisor/launch/namespaces.h"

#include <linux/sched.h>
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "common/fd.h"

namespace jw::supervisor {

namespace {

// Upper bound from the kernel (struct new_utsname), without the terminating NUL.
constexpr size_t kMaxHostname = 64;

// --- child steps: async-signal-safe only ------------------------------------------------------

// MS_SLAVE rather than MS_PRIVATE: the host's later unmounts still reach the job (a job must not
// keep a host filesystem busy), while nothing the job mounts propagates back.
int stopPropagation() {
  return mount(nullptr, "/", nullptr, MS_REC | MS_SLAVE, nullptr) == 0 ? 0 : errno;
}

// The host's /proc describes the host's PID namespace: `ps` would list host processes and
// /proc/<pid> of the host would be reachable. A proc mounted from inside the new PID namespace
// shows only the job's processes.
int mountProc() {
  return mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr) == 0 ? 0 : errno;
}

// Size-limited so a job cannot fill the host's memory through /tmp; its pages are also charged
// to the job's memory cgroup.
int mountTmpfs(const char* target, const char* options) {
  return mount("tmpfs", target, "tmpfs", MS_NOSUID | MS_NODEV, options) == 0 ? 0 : errno;
}

// POSIX shared memory lives in /dev/shm, which the IPC namespace does not cover: without a
// private one, jobs of the same account could meet there. Hosts without /dev/shm are fine.
int mountShm(const char* options) {
  int err = mountTmpfs("/dev/shm", options);
  return err == ENOENT ? 0 : err;
}

// A new network namespace starts with `lo` down: bring it up so the job can talk to itself.
int bringLoopbackUp() {
  // UniqueFd is async-signal-safe: its destructor is a bare close(2).
  UniqueFd s(socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!s) return errno;
  ifreq ifr{};
  std::memcpy(ifr.ifr_name, "lo", 3);
  if (ioctl(s.get(), SIOCGIFFLAGS, &ifr) != 0) return errno;
  ifr.ifr_flags = static_cast<short>(ifr.ifr_flags | IFF_UP | IFF_RUNNING);
  if (ioctl(s.get(), SIOCSIFFLAGS, &ifr) != 0) return errno;
  return 0;
}

int setHostname(const std::string& name) {
  return sethostname(name.data(), name.size()) == 0 ? 0 : errno;
}

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
  plan.new_mount = spec.mount;
  plan.mount_proc = spec.mount && spec.pid;
  plan.new_net = spec.net;
  plan.new_uts = spec.uts;
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

pid_t cloneJobProcess(int clone_flags, int cgroup_dir_fd) {
  clone_args args{};
  args.flags = static_cast<uint64_t>(static_cast<unsigned>(clone_flags));
  args.exit_signal = SIGCHLD;
  if (cgroup_dir_fd >= 0) {
    args.flags |= CLONE_INTO_CGROUP;
    args.cgroup = static_cast<uint64_t>(cgroup_dir_fd);
  }
  // No stack: without CLONE_VM the child gets a copy of ours, exactly like fork().
  long r = syscall(SYS_clone3, &args, sizeof args);
  if (r >= 0 || errno != ENOSYS) return static_cast<pid_t>(r);
  // Kernels before 5.3: plain clone, the caller's cgroup placement (addProcess before the
  // release) still keeps the job's code out until it is in its cgroup.
  r = syscall(SYS_clone, static_cast<unsigned long>(clone_flags) | SIGCHLD, 0UL, nullptr, nullptr,
              0UL);
  return static_cast<pid_t>(r);
}

const char* containmentStepName(ContainmentStep step) {
  switch (step) {
    case ContainmentStep::kNone:
      return "none";
    case ContainmentStep::kMountPropagation:
      return "make / a recursive slave mount";
    case ContainmentStep::kProc:
      return "mount /proc";
    case ContainmentStep::kTmp:
      return "mount tmpfs on /tmp";
    case ContainmentStep::kShm:
      return "mount tmpfs on /dev/shm";
    case ContainmentStep::kLoopback:
      return "bring lo up";
    case ContainmentStep::kHostname:
      return "sethostname";
  }
  return "unknown containment step";
}

int setupContainment(const ContainmentPlan& plan, ContainmentStep* failed) {
  int err = 0;
  auto step = [&](ContainmentStep s, int result) {
    if (result != 0) *failed = s;
    err = result;
    return result == 0;
  };
  *failed = ContainmentStep::kNone;
  if (plan.new_mount) {
    if (!step(ContainmentStep::kMountPropagation, stopPropagation())) return err;
    if (plan.mount_proc && !step(ContainmentStep::kProc, mountProc())) return err;
    if (!step(ContainmentStep::kTmp, mountTmpfs("/tmp", plan.tmp_options.c_str()))) return err;
    if (!step(ContainmentStep::kShm, mountShm(plan.tmp_options.c_str()))) return err;
  }
  if (plan.new_net && !step(ContainmentStep::kLoopback, bringLoopbackUp())) return err;
  if (plan.new_uts && !step(ContainmentStep::kHostname, setHostname(plan.hostname))) return err;
  return 0;
}

}  // namespace jw::supervisor
