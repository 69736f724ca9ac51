// The default job seccomp profile (see job_seccomp.h): built with libseccomp in jobworkerd,
// installed by the job process between fork and execve.
#include "supervisor/launch/job_seccomp.h"

#include <fcntl.h>
#include <linux/netlink.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <seccomp.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>

#include "common/fd.h"

namespace jw::supervisor {

namespace {

// THE list of syscalls a job gets EPERM for: nothing an ordinary job (build, test, script,
// service) needs, and each one a known path to the host or to kernel attack surface. In the
// spirit of the container runtimes' default profiles; a job that probes gets an error it can
// handle rather than a kill. Non-root jobs also lack the capabilities most of these need; the
// filter is what still holds for jobs allowed to run as root and against kernel bugs.
const int kDeniedSyscalls[] = {
    // Loading code into the kernel or replacing it.
    SCMP_SYS(init_module),
    SCMP_SYS(finit_module),
    SCMP_SYS(delete_module),
    SCMP_SYS(create_module),
    SCMP_SYS(kexec_load),
    SCMP_SYS(kexec_file_load),
    // The machine itself: reboot, swap, the clock, accounting, quotas.
    SCMP_SYS(reboot),
    SCMP_SYS(swapon),
    SCMP_SYS(swapoff),
    SCMP_SYS(settimeofday),
    SCMP_SYS(clock_settime),
    SCMP_SYS(adjtimex),
    SCMP_SYS(clock_adjtime),
    SCMP_SYS(acct),
    SCMP_SYS(quotactl),
    SCMP_SYS(quotactl_fd),
    SCMP_SYS(nfsservctl),
    SCMP_SYS(vhangup),
    // Mounts, old and new API: the job's mount namespace is set up by the supervisor and stays so
    // (a root job could otherwise unmount its private /proc and /tmp and see the host's).
    SCMP_SYS(mount),
    SCMP_SYS(umount2),
    SCMP_SYS(pivot_root),
    SCMP_SYS(fsopen),
    SCMP_SYS(fsconfig),
    SCMP_SYS(fsmount),
    SCMP_SYS(fspick),
    SCMP_SYS(move_mount),
    SCMP_SYS(open_tree),
    SCMP_SYS(mount_setattr),
    // Joining other namespaces (user namespace creation is filtered on the flags below).
    SCMP_SYS(setns),
    // Kernel programmability and introspection: eBPF, perf, the kernel log, profiling cookies.
    SCMP_SYS(bpf),
    SCMP_SYS(perf_event_open),
    SCMP_SYS(syslog),
    SCMP_SYS(lookup_dcookie),
    // Keyrings are not namespaced: keys are shared with the host and every other job.
    SCMP_SYS(add_key),
    SCMP_SYS(request_key),
    SCMP_SYS(keyctl),
    // Reaching into other processes. Inside a PID namespace only the job's own processes are
    // visible, so ptrace would mostly reach the job itself; it is still denied: it has a long
    // kernel CVE history, and with isolation.pid off it would reach every process of the same
    // account, other jobs included. (Debuggers and strace do not work in jobs.)
    SCMP_SYS(ptrace),
    SCMP_SYS(process_vm_readv),
    SCMP_SYS(process_vm_writev),
    SCMP_SYS(kcmp),
    SCMP_SYS(pidfd_getfd),
    // File handles bypass path lookup and so the mount namespace ("shocker" escape).
    SCMP_SYS(open_by_handle_at),
    SCMP_SYS(name_to_handle_at),
    // Raw hardware I/O ports.
    SCMP_SYS(iopl),
    SCMP_SYS(ioperm),
    // Favourites of kernel exploits, rarely needed by jobs: userfaultfd widens race windows,
    // io_uring has had a steady stream of privilege escalations.
    SCMP_SYS(userfaultfd),
    SCMP_SYS(io_uring_setup),
    SCMP_SYS(io_uring_enter),
    SCMP_SYS(io_uring_register),
    // Obsolete interfaces kept only for old binaries.
    SCMP_SYS(uselib),
};

struct CtxDeleter {
  void operator()(void* ctx) const { seccomp_release(ctx); }
};
using Ctx = std::unique_ptr<void, CtxDeleter>;

Error seccompError(const std::string& what, int rc) {
  return Error{"seccomp: " + what + ": " + std::strerror(-rc), -rc};
}

// A new user namespace hands its creator every capability inside it, and with them kernel code
// (mounts, netfilter, ...) that is otherwise root-only: the classic source of container escapes.
Result<Ok> denyUserNamespaces(void* ctx) {
  scmp_arg_cmp newuser{};
  newuser.arg = 0;  // the flags: unshare(flags), and clone(flags, ...) on x86_64 and arm64
  newuser.op = SCMP_CMP_MASKED_EQ;
  newuser.datum_a = CLONE_NEWUSER;
  newuser.datum_b = CLONE_NEWUSER;
  for (int nr : {SCMP_SYS(unshare), SCMP_SYS(clone)}) {
    int rc = seccomp_rule_add_array(ctx, SCMP_ACT_ERRNO(EPERM), nr, 1, &newuser);
    if (rc < 0) return seccompError("rule for CLONE_NEWUSER", rc);
  }
  // clone3 passes its flags in memory, out of the filter's sight: ENOSYS makes glibc (2.34+)
  // fall back to clone, whose flags the rule above checks.
  int rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0);
  if (rc < 0) return seccompError("rule for clone3", rc);
  return Ok{};
}

// The socket families a job may create: local IPC, IP (its own loopback, or the host's network
// with "network": "host") and route netlink (what `ip addr` and getaddrinfo's interface checks
// use). Every other family is kernel code a job has no use for: vsock reaches the hypervisor,
// packet sockets the raw wire, other netlink protocols audit, netfilter or uevents, and the long
// tail (bluetooth, can, rds, tipc, xdp, alg, ...) is where socket CVEs cluster.
constexpr int kAllowedSocketFamilies[] = {AF_UNIX, AF_INET, AF_INET6, AF_NETLINK};
// Families are small numbers; the kernel itself refuses anything at or above AF_MAX (46 on 6.1).
constexpr int kFamilyCeiling = 64;

// Compares the low 32 bits only: the kernel truncates socket()'s int arguments, so a job passing
// 1<<32 | AF_VSOCK must still match AF_VSOCK.
scmp_arg_cmp intArgEquals(unsigned arg, int value) {
  scmp_arg_cmp c{};
  c.arg = arg;
  c.op = SCMP_CMP_MASKED_EQ;
  c.datum_a = 0xffffffffULL;
  c.datum_b = static_cast<uint32_t>(value);
  return c;
}

Result<Ok> denySocketFamilies(void* ctx) {
  for (int family = 0; family < kFamilyCeiling; family++) {
    bool allowed = false;
    for (int ok : kAllowedSocketFamilies) allowed = allowed || ok == family;
    if (allowed) continue;
    scmp_arg_cmp is_family = intArgEquals(0, family);
    for (int nr : {SCMP_SYS(socket), SCMP_SYS(socketpair)}) {
      int rc = seccomp_rule_add_array(ctx, SCMP_ACT_ERRNO(EAFNOSUPPORT), nr, 1, &is_family);
      if (rc < 0) return seccompError("rule for socket family " + std::to_string(family), rc);
    }
  }
  // Netlink only as NETLINK_ROUTE (0): any other protocol value, whatever its high bits, differs
  // from 0 as a 64-bit value too, so the unmasked comparison cannot be slipped past.
  scmp_arg_cmp netlink[2] = {intArgEquals(0, AF_NETLINK), {}};
  netlink[1].arg = 2;
  netlink[1].op = SCMP_CMP_NE;
  netlink[1].datum_a = NETLINK_ROUTE;
  int rc =
      seccomp_rule_add_array(ctx, SCMP_ACT_ERRNO(EPROTONOSUPPORT), SCMP_SYS(socket), 2, netlink);
  if (rc < 0) return seccompError("rule for netlink protocols", rc);
  return Ok{};
}

Result<std::vector<sock_filter>> exportBpf(void* ctx) {
  UniqueFd fd(memfd_create("jw-job-seccomp", MFD_CLOEXEC));
  if (!fd) return sysError("memfd_create for the seccomp program");
  int rc = seccomp_export_bpf(ctx, fd.get());
  if (rc < 0) return seccompError("export BPF", rc);
  struct stat st {};
  if (fstat(fd.get(), &st) != 0) return sysError("fstat the seccomp program");
  auto size = static_cast<size_t>(st.st_size);
  if (size == 0 || size % sizeof(sock_filter) != 0 || size / sizeof(sock_filter) > BPF_MAXINSNS) {
    return Error{"seccomp: exported program has a bad size: " + std::to_string(size)};
  }
  std::vector<sock_filter> filter(size / sizeof(sock_filter));
  ssize_t n = pread(fd.get(), filter.data(), size, 0);
  if (n < 0) return sysError("read the seccomp program");
  if (static_cast<size_t>(n) != size) return Error{"seccomp: short read of the program"};
  return filter;
}

}  // namespace

Result<JobSeccompProfile> JobSeccompProfile::build() {
  // seccomp_init adds only the native architecture. Every other ABI the CPU offers (i386 via
  // int 0x80 and x32 on x86_64) is a "bad architecture": kill the process. A deny list must cover
  // every ABI to mean anything, and the compat entry points have their own kernel bug history;
  // 32-bit binaries therefore do not run under the default profile (see threat-model.md).
  Ctx ctx(seccomp_init(SCMP_ACT_ALLOW));
  if (!ctx) return Error{"seccomp_init failed"};
  int rc = seccomp_attr_set(ctx.get(), SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS);
  if (rc < 0) return seccompError("set the bad-architecture action", rc);
  for (int nr : kDeniedSyscalls) {
    rc = seccomp_rule_add(ctx.get(), SCMP_ACT_ERRNO(EPERM), nr, 0);
    if (rc < 0) {
      char* name = seccomp_syscall_resolve_num_arch(SCMP_ARCH_NATIVE, nr);
      std::string what = "deny " + std::string(name != nullptr ? name : std::to_string(nr));
      free(name);
      return seccompError(what, rc);
    }
  }
  auto userns = denyUserNamespaces(ctx.get());
  if (!userns) return userns.error();
  auto families = denySocketFamilies(ctx.get());
  if (!families) return families.error();
  auto filter = exportBpf(ctx.get());
  if (!filter) return filter.error();
  JobSeccompProfile profile;
  profile.filter_ = std::move(filter.value());
  return profile;
}

sock_fprog JobSeccompProfile::program() const {
  sock_fprog prog{};
  prog.len = static_cast<unsigned short>(filter_.size());
  prog.filter = const_cast<sock_filter*>(filter_.data());
  return prog;
}

}  // namespace jw::supervisor
