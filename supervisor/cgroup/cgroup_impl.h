// jobworkerd: private helpers of the v1 and v2 cgroup backends (not part of cgroup.h's API).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/fd.h"
#include "supervisor/cgroup/cgroup.h"

namespace jw::supervisor::cg {

inline constexpr std::string_view kJobsDir = "jobworker";
inline constexpr std::string_view kSupervisorLeaf = "supervisor";
inline constexpr uint64_t kCpuPeriodUs = 100000;
// cpu.max / cpu.cfs_quota_us reject quotas below 1 ms.
inline constexpr uint64_t kMinCpuQuotaUs = 1000;
// The freeze wait of killAll; the whole kill stays within about twice this.
inline constexpr std::chrono::milliseconds kFreezeWait{1000};

// --- Files -----------------------------------------------------------------------------------
// A cgroupfs or procfs file, whole (common/io.h's readFile with the cap of kMaxFileBytes).
Result<std::string> readFile(const std::string& path);
Status writeFile(const std::string& path, std::string_view value);
bool fileExists(const std::string& path);
Status makeDir(const std::string& path);  // 0755; an existing directory is fine
// Names of the sub-directories of path (empty when path does not exist).
std::vector<std::string> listSubdirs(const std::string& path);
// rmdir path after its sub-directories, deepest first; a missing path is fine.
Status removeTree(const std::string& path);

// "key value" lines (cpu.stat, memory.events, memory.oom_control, cgroup.events).
std::optional<uint64_t> keyedValue(std::string_view text, std::string_view key);
std::optional<uint64_t> parseU64(std::string_view text);  // trims whitespace
// One number per line (cgroup.procs).
std::vector<pid_t> parsePids(std::string_view text);
// Pids of path's cgroup.procs and of every descendant cgroup's.
Result<std::vector<pid_t>> readPidsRecursive(const std::string& path);

// --- /proc parsing ---------------------------------------------------------------------------
struct ProcCgroupLine {
  std::string hierarchy_id;              // "0" for the unified hierarchy
  std::vector<std::string> controllers;  // empty for the unified hierarchy
  std::string path;                      // relative to the cgroup namespace root
};
std::vector<ProcCgroupLine> parseProcCgroup(std::string_view text);
// self when pid == 0
Result<std::vector<ProcCgroupLine>> readProcCgroup(pid_t pid = 0);

struct CgroupMount {
  std::string mount_point;
  std::string root;  // the mount's root inside the hierarchy (usually "/")
  bool v2 = false;
  std::vector<std::string> controllers;  // v1 super options naming controllers
};
// Only cgroup and cgroup2 mounts, in mount order; octal escapes (\040) decoded.
std::vector<CgroupMount> parseCgroupMounts(std::string_view mountinfo);
Result<std::vector<CgroupMount>> readCgroupMounts();
// The directory of cgroup `path` (as /proc/self/cgroup names it) under mount m.
Result<std::string> pathUnderMount(const CgroupMount& m, const std::string& path);

// --- Validation and devices ------------------------------------------------------------------
// A job id becomes a directory name in every hierarchy: only names::validJobId's (a lowercase
// UUIDv4: hex digits and dashes, never '/' or '.'), checked again here where the path is made.
Status validateJobId(const std::string& job_id);
// "/dev/..." → the whole disk's MAJ:MIN (a partition maps to its disk: blk-throttle on both
// hierarchies only takes whole disks).
struct DiskId {
  unsigned major = 0, minor = 0;
  bool operator==(const DiskId&) const = default;
};
Result<DiskId> resolveDisk(const std::string& device_path);
struct DiskLimit {
  DiskId disk;
  std::string device;  // as the user named it, for messages
  uint64_t read_bps = 0, write_bps = 0, read_iops = 0, write_iops = 0;
};
// Resolves every entry; entries on the same disk merge, the smaller non-zero value winning.
Result<std::vector<DiskLimit>> resolveIoLimits(const std::vector<protocol::IoLimit>& io);
std::string diskKey(const DiskId& d);  // "MAJ:MIN"

// millicores → CFS quota in µs for kCpuPeriodUs, or an error below the kernel's minimum.
Result<uint64_t> cpuQuotaUs(uint32_t millicores);

// --- Killing ---------------------------------------------------------------------------------
// Where a process must be to be killed: its /proc/PID/cgroup line for `controller` ("" = the
// unified hierarchy) names `path` or a descendant. Re-checked through a pidfd so a pid reused by
// an unrelated process after we listed it is never signalled.
struct Membership {
  std::string controller;
  std::string path;
};
bool pidInCgroup(pid_t pid, const Membership& m);
Status killMember(pid_t pid, const Membership& m);

struct FreezeOps {
  std::function<Status()> freeze;  // asks the kernel to freeze
  std::function<bool()> frozen;    // true once every task is frozen
  std::function<Status()> thaw;
  std::function<Result<std::vector<pid_t>>()> list;
  Membership membership;
};
// Freeze (waiting up to kFreezeWait), SIGKILL every listed pid, thaw; again until a round lists no
// pid that was not already killed (killed ones are just dying). Freezing first means nothing can
// fork between listing and killing. An empty cgroup returns at once.
Status freezeKillThaw(const FreezeOps& ops);

// v2 without cgroup.kill (kernel < 5.14): freezeKillThaw over cgroup.freeze. path is the job's
// directory, rel its path as /proc/PID/cgroup shows it.
Status killByFreezingV2(const std::string& path, const std::string& rel);

// Polls until done() or the timeout; returns done()'s last value.
bool waitUntil(const std::function<bool()>& done, std::chrono::milliseconds timeout);

// Kills and removes a previous run's job cgroup `name` (either backend); logs the outcome, and a
// failure also as a health note. True when it is gone.
bool removeLeftover(JobCgroup& job, const std::string& name, std::vector<std::string>& notes);

// --- One instance per state dir --------------------------------------------------------------
// An exclusive flock on the instance's directories, held for the backend's life: two
// jobworkerds on one state dir would kill each other's jobs as leftovers, so the second is
// refused. Other instances have directories of their own and never contend.
class InstanceLock {
 public:
  InstanceLock() = default;
  InstanceLock(const InstanceLock&) = delete;
  InstanceLock& operator=(const InstanceLock&) = delete;
  // All or nothing: on failure nothing stays locked.
  Status acquire(const std::vector<std::string>& dirs);
  bool held() const { return !fds_.empty(); }

 private:
  std::vector<UniqueFd> fds_;
};

// The user level's directory name: names::validUserName (never '/', '.' or ".."), checked again
// here where the path is made.
Status validateUser(const std::string& user);
// What cgroupInstanceName() makes: [a-z0-9_], 1..48 characters.
Status validateInstance(const std::string& name);

// The backends (cgroup_v1.cc, cgroup_v2.cc, cgroup_systemd.cc).
Result<std::unique_ptr<CgroupBackend>> openV1Backend(const CgroupInstance& instance);
Result<std::unique_ptr<CgroupBackend>> openV2Backend(const std::string& mount_point,
                                                     const CgroupInstance& instance);
// The v2 layout placed by systemd: /sys/fs/cgroup/jobworker.slice/... (cgroup_systemd.cc).
Result<std::unique_ptr<CgroupBackend>> openSystemdBackend(const CgroupInstance& instance);

// --- v2 pieces both v2 placements use (cgroup_v2.cc) -------------------------------------------
inline constexpr std::string_view kV2Controllers[] = {"cpu", "memory", "io", "pids"};
std::string_view controllerName(Controller c);
std::vector<std::string> words(std::string_view text);  // split on spaces and newlines
bool contains(const std::vector<std::string>& v, std::string_view s);
// A v2 job cgroup at path (rel: as /proc/PID/cgroup names it); dir may be empty.
std::unique_ptr<JobCgroup> makeV2Job(std::string path, std::string rel, UniqueFd dir);
// A job's limits into its v2 directory: cpu.max, memory.max with memory.swap.max 0, pids.max,
// io.max.
Status writeV2JobLimits(const std::string& path, const CgroupLimits& limits, uint64_t quota_us,
                        const std::vector<DiskLimit>& disks);
// Every limit asked for needs its controller enabled for jobs; where names the place for the
// message.
Status checkV2Controllers(const CgroupLimits& limits, const std::vector<std::string>& enabled,
                          const std::string& where);
// An aggregate cap needs its controller: without it the cap is noted (once), not enforced (the
// per-job limits of that kind are refused anyway). True when it is to be written.
// What all jobs of a v2 instance (its directory) use together.
JobsUsage v2JobsUsage(const std::string& instance_dir);
// The "controllers: ..." and "missing controller: ..." lines of details().
void appendV2ControllerDetails(const std::vector<std::string>& enabled,
                               std::vector<std::string>& details);
bool capEnforced(bool wanted, std::string_view controller, const std::vector<std::string>& enabled,
                 std::vector<std::string>& notes);

// --- systemd unit names (cgroup_systemd.cc) ----------------------------------------------------
// systemd's unit name escaping of one name component (systemd-escape): [A-Za-z0-9_:] and a '.'
// that is not first stay, everything else becomes \xNN (so '-', which nests slices, never splits
// one).
std::string unitNameEscape(std::string_view s);
// jobworker-<instance>.slice, in jobworker.slice (a '-' in a slice's name is its parent).
std::string instanceSliceName(const std::string& instance);
// jobworker-<instance>-<escaped user>.slice, in the instance's slice.
std::string userSliceName(const std::string& instance, const std::string& user);
// jobworker-job-<id>.scope; and back: the id of such a name, nullopt for any other name.
std::string jobScopeName(const std::string& job_id);
std::optional<std::string> jobIdOfScope(std::string_view unit);

}  // namespace jw::supervisor::cg
