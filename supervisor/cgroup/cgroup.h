// One interface over the two cgroup hierarchies (v2 unified, v1 per-controller); the backend is
// chosen once at startup. Runs in jobworkerd.
#pragma once

#include <sys/types.h>

#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "common/protocol/codec.h"
#include "common/result.h"

namespace jw::supervisor {

// What a job's cgroup enforces; 0 / empty means "no limit of that kind".
struct CgroupLimits {
  uint32_t cpu_millicores = 0;
  uint64_t memory_bytes = 0;
  uint32_t pids = 0;
  std::vector<protocol::IoLimit> io;
};

enum class Controller { kCpu, kMemory, kIo, kPids };

// One job's cgroup (in every controller's hierarchy on v1).
class JobCgroup {
 public:
  virtual ~JobCgroup() = default;
  // Moves pid in (cgroup.procs). Called by the parent before it releases the child to exec.
  virtual Status addProcess(pid_t pid) = 0;
  // v2: an O_DIRECTORY fd of the job cgroup (for clone3 CLONE_INTO_CGROUP); v1, and the systemd
  // placement before addProcess made the scope: -1.
  virtual int directoryFd() const = 0;
  // The unified (v2) hierarchy: the shim mounts cgroup2 for its job.
  virtual bool unified() const { return directoryFd() >= 0; }
  // Kills every process in the cgroup, wherever it moved in the process tree:
  // v2 cgroup.kill; v1 freeze, SIGKILL every pid, thaw.
  virtual Status killAll() = 0;
  virtual bool empty() = 0;
  // Usage where the kernel offers it (has_* flags say which).
  virtual protocol::Usage usage() = 0;
  // Memory charged to the cgroup now (v2 memory.current, v1 memory.usage_in_bytes); /metrics.
  virtual std::optional<uint64_t> memoryNow() = 0;
  // True when the kernel's OOM killer killed a process of this cgroup
  // (v2 memory.events oom_kill; v1 memory.oom_control oom_kill).
  virtual bool oomKilled() = 0;
  // rmdir in every hierarchy; fails (EBUSY) while processes remain.
  virtual Status remove() = 0;
};

// What only the client can fix, checked before any cgroup exists: each io device must be a block
// device under /dev, and a cpu limit at least the kernel's smallest quota. The supervisor answers
// these with 400; create() then fails only for the host's reasons (a missing controller,
// cgroupfs errors). Stats io device paths as root: only under /dev.
Status checkLimits(const CgroupLimits& limits);

// The aggregate caps of one level of the layout (the instance, one user): what all the jobs below
// it take together; 0 means "no cap of that kind".
struct AggregateLimits {
  uint32_t cpu_millicores = 0;
  uint64_t memory_bytes = 0;
  uint32_t pids = 0;
};

// Which jobworkerd this is, as the cgroup layout names it: <root>/<instance>/<user>/<job>.
struct CgroupInstance {
  std::string name;       // cgroupInstanceName() of the state dir
  AggregateLimits total;  // written into <root>/<instance>
};

// The instance name of a state directory (its canonical path): its last component made safe
// ([a-z0-9_], at most 32 characters, "root" for "/") and 8 hex digits of the path's 64-bit
// FNV-1a hash, e.g. "jobworker_1f0c2a9e". Stable across versions: a later jobworkerd on the same
// state dir finds (and cleans or re-adopts) the same directory.
std::string cgroupInstanceName(const std::string& canonical_state_dir);

// What every job's cgroup holds together now, read from the jobs' parent cgroup (/metrics);
// nullopt where the kernel does not say.
struct JobsUsage {
  std::optional<uint64_t> memory_bytes;  // v2 memory.current, v1 memory.usage_in_bytes
  std::optional<uint64_t> cpu_us;        // v2 cpu.stat usage_usec, v1 cpuacct.usage
  std::optional<uint64_t> pids;          // pids.current
};

class CgroupBackend {
 public:
  virtual ~CgroupBackend() = default;
  // v2 only when /sys/fs/cgroup itself is cgroup2 (statfs), else v1. The layout is
  // <root>/<instance>/<user>/<job>. With systemd as PID 1 on v2 systemd places it: <root> is
  // jobworker.slice, the instance and user levels are slices (their caps systemd properties),
  // each job a transient scope jobworker-job-<id>.scope with Delegate=yes whose `job` leaf holds
  // the job and its limits; jobs then live outside jobworkerd's unit and survive its restart.
  // Otherwise (cgroupfs placement) <root> = <own>/jobworker with <own> the daemon's own cgroup
  // from /proc/self/cgroup. Creates <root>/<instance> with the instance's caps and holds an
  // exclusive flock on it: a second jobworkerd of the same instance (state dir) is refused, any
  // other instance is never touched. Leftovers stay until removeLeftovers().
  static Result<std::unique_ptr<CgroupBackend>> detect(const CgroupInstance& instance);
  // A v2 backend rooted at an explicit cgroup2 mount (tests: a hybrid host's
  // /sys/fs/cgroup/unified). Uses <mount_point><own path from the 0:: line of /proc/self/cgroup>,
  // moves this process into the <own>/supervisor leaf and tolerates missing controllers: limits
  // needing them fail, placement, kill and removal still work.
  static Result<std::unique_ptr<CgroupBackend>> openV2(const std::string& mount_point,
                                                       const CgroupInstance& instance);
  virtual std::string name() const = 0;  // "v1" or "v2"
  virtual bool has(Controller c) const = 0;
  // For healthz and the startup log: backend, instance, root paths, missing controllers.
  virtual std::vector<std::string> details() const = 0;
  virtual JobsUsage jobsUsage() const = 0;
  // Creates <root>/<instance>/<user>/<job_id> with the limits applied; the user's level is made
  // on first use (in this backend's life) with user_total written into it. A limit whose
  // controller is missing is an error (never silently unlimited).
  virtual Result<std::unique_ptr<JobCgroup>> create(const std::string& job_id,
                                                    const std::string& user,
                                                    const AggregateLimits& user_total,
                                                    const CgroupLimits& limits) = 0;
  // The existing cgroup of a job of this instance (one a previous jobworkerd made), as create()
  // would have returned it: usage, kill and removal work on it. Fails when it does not exist.
  virtual Result<std::unique_ptr<JobCgroup>> adopt(const std::string& job_id,
                                                   const std::string& user) = 0;
  // Kills and removes every job cgroup of this instance whose id is not in keep, then the user
  // levels left empty; never looks outside <root>/<instance>. Returns how many it removed; one
  // that cannot be removed is logged and listed in details().
  virtual size_t removeLeftovers(const std::set<std::string>& keep) = 0;
};

}  // namespace jw::supervisor
