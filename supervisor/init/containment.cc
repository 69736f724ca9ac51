// Containment steps of the job shim (see containment.h); runs in jobworker-init.
#include "supervisor/init/containment.h"

#include <fcntl.h>
#include <net/if.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace jw::init {

namespace {

using shim::ContainmentStep;

constexpr unsigned long kSafeMount = MS_NOSUID | MS_NODEV | MS_NOEXEC;

// MS_SLAVE rather than MS_PRIVATE: the host's later unmounts still reach the job (a job must not
// keep a host filesystem busy), while nothing the job mounts propagates back.
int stopPropagation() {
  return mount(nullptr, "/", nullptr, MS_REC | MS_SLAVE, nullptr) == 0 ? 0 : errno;
}

// The host's /proc describes the host's PID namespace; one mounted from inside the new one shows
// only the job's processes.
int mountProc() { return mount("proc", "/proc", "proc", kSafeMount, nullptr) == 0 ? 0 : errno; }

// Size-limited so a job cannot fill the host's memory through /tmp; its pages are also charged
// to the job's memory cgroup.
int mountTmpfs(const char* target, const char* options) {
  return mount("tmpfs", target, "tmpfs", MS_NOSUID | MS_NODEV, options) == 0 ? 0 : errno;
}

// POSIX shared memory lives in /dev/shm, which the IPC namespace does not cover. Hosts without
// /dev/shm are fine.
int mountShm(const char* options) {
  int err = mountTmpfs("/dev/shm", options);
  return err == ENOENT ? 0 : err;
}

int readCgroupTable(char* buf, size_t size) {
  int fd = open("/proc/self/cgroup", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return errno;
  size_t got = 0;
  for (;;) {
    ssize_t n = read(fd, buf + got, size - 1 - got);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    got += static_cast<size_t>(n);
    if (got == size - 1) break;
  }
  close(fd);
  buf[got] = '\0';
  return got == size - 1 ? E2BIG : 0;
}

int bringLoopbackUp() {
  int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (s < 0) return errno;
  ifreq ifr{};
  std::memcpy(ifr.ifr_name, "lo", 3);
  int err = 0;
  if (ioctl(s, SIOCGIFFLAGS, &ifr) != 0) {
    err = errno;
  } else {
    ifr.ifr_flags = static_cast<short>(ifr.ifr_flags | IFF_UP | IFF_RUNNING);
    if (ioctl(s, SIOCSIFFLAGS, &ifr) != 0) err = errno;
  }
  close(s);
  return err;
}

// v1: one mount per hierarchy this process sits in a cgroup named `leaf` of, as
// /proc/self/cgroup listed it before the unshare ("4:cpu,cpuacct:/.../<leaf>"), with the same
// controllers. Hierarchies jobworkerd does not place jobs in (cpuset, devices, ...) would show
// jobworkerd's own cgroup: they are left out.
int mountOwnHierarchies(const char* leaf, const char* table) {
  const size_t leaf_len = std::strlen(leaf);
  for (const char* line = table; *line != '\0';) {
    const char* end = std::strchr(line, '\n');
    if (end == nullptr) end = line + std::strlen(line);
    const char* c1 =
        static_cast<const char*>(std::memchr(line, ':', static_cast<size_t>(end - line)));
    const char* c2 =
        c1 == nullptr
            ? nullptr
            : static_cast<const char*>(std::memchr(c1 + 1, ':', static_cast<size_t>(end - c1 - 1)));
    if (c2 != nullptr && c2 > c1 + 1 && static_cast<size_t>(end - c2 - 1) > leaf_len &&
        std::memcmp(end - leaf_len, leaf, leaf_len) == 0 &&
        end[-static_cast<long>(leaf_len) - 1] == '/') {
      char controllers[128], path[160];
      size_t n = static_cast<size_t>(c2 - c1 - 1);
      if (n >= sizeof controllers || std::memchr(c1 + 1, '/', n) != nullptr) return EINVAL;
      std::memcpy(controllers, c1 + 1, n);
      controllers[n] = '\0';
      // "name=systemd" hierarchies have no controllers of ours: only plain controller lists.
      if (std::strchr(controllers, '=') == nullptr) {
        std::memcpy(path, "/sys/fs/cgroup/", 15);
        std::memcpy(path + 15, controllers, n + 1);
        if (mkdir(path, 0755) != 0 && errno != EEXIST) return errno;
        if (mount("cgroup", path, "cgroup", kSafeMount, controllers) != 0) return errno;
      }
    }
    line = *end == '\n' ? end + 1 : end;
  }
  return 0;
}

// The host's /sys/fs/cgroup lists every job's cgroup (ids, host pids). Mounted from inside the
// job's cgroup namespace, a hierarchy's root is the job's own cgroup; hierarchies the job has no
// cgroup of its own in are not mounted at all. Without a cgroup of its own the job sees an empty
// directory.
int mountCgroupView(const InitSpec& s, const char* cgroup_table) {
  const char* dir = "/sys/fs/cgroup";
  const bool v2 = s.has(shim::kFlagCgroupV2);
  if (s.has(shim::kFlagOwnCgroup) && v2 &&
      mount("cgroup2", dir, "cgroup2", kSafeMount, nullptr) == 0) {
    return 0;
  }
  // v1, no cgroup of its own, or a cgroup2 mount the host refuses (EBUSY under systemd's
  // service sandbox): an empty read-only tmpfs still hides every other job.
  if (mount("tmpfs", dir, "tmpfs", kSafeMount, "size=64k,mode=755") != 0) {
    return errno == ENOENT ? 0 : errno;  // no /sys/fs/cgroup: nothing to hide
  }
  if (s.has(shim::kFlagOwnCgroup) && !v2) {
    if (int err = mountOwnHierarchies(s.cgroup_leaf, cgroup_table); err != 0) return err;
  }
  return mount(nullptr, dir, nullptr, MS_REMOUNT | MS_RDONLY | kSafeMount, "size=64k,mode=755") == 0
             ? 0
             : errno;
}

}  // namespace

int setupContainment(const InitSpec& s, ContainmentStep* failed) {
  int err = 0;
  auto step = [&](ContainmentStep st, int result) {
    if (result != 0) *failed = st;
    err = result;
    return result == 0;
  };
  *failed = ContainmentStep::kNone;
  if (s.has(shim::kFlagMountNs)) {
    if (!step(ContainmentStep::kMountPropagation, stopPropagation())) return err;
    if (s.has(shim::kFlagPidNs) && !step(ContainmentStep::kProc, mountProc())) return err;
    if (!step(ContainmentStep::kTmp, mountTmpfs("/tmp", s.tmp_options))) return err;
    if (!step(ContainmentStep::kShm, mountShm(s.tmp_options))) return err;
  }
  if (s.has(shim::kFlagNetNs) && !step(ContainmentStep::kLoopback, bringLoopbackUp())) return err;
  if (s.has(shim::kFlagUtsNs) &&
      !step(ContainmentStep::kHostname, sethostname(s.hostname, s.hostname_len) == 0 ? 0 : errno)) {
    return err;
  }
  // /proc/self/cgroup before the unshare: afterwards every path reads "/".
  char cgroup_table[2048] = "";
  if (s.has(shim::kFlagOwnCgroup) && !s.has(shim::kFlagCgroupV2) &&
      !step(ContainmentStep::kCgroupNamespace,
            readCgroupTable(cgroup_table, sizeof cgroup_table))) {
    return err;
  }
  if (s.has(shim::kFlagOwnCgroup) &&
      !step(ContainmentStep::kCgroupNamespace, unshare(CLONE_NEWCGROUP) == 0 ? 0 : errno)) {
    return err;
  }
  if (s.has(shim::kFlagMountNs) &&
      !step(ContainmentStep::kCgroupMount, mountCgroupView(s, cgroup_table))) {
    return err;
  }
  return 0;
}

}  // namespace jw::init
