// jobworkerd: cgroup v1 backend (<own>/jobworker/<instance>/<user>/<id> in every controller
// hierarchy, freezer-based kill).
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <set>

#include "common/log.h"
#include "supervisor/cgroup/cgroup_impl.h"

namespace jw::supervisor::cg {
namespace {

// Every controller we put jobs under. cpuset and devices are left alone: cpuset refuses tasks
// until cpus/mems are set, and device policy belongs to the isolation code.
constexpr std::string_view kManaged[] = {"cpu", "cpuacct", "memory", "blkio", "pids", "freezer"};

// One controller hierarchy (co-mounted controllers such as cpu,cpuacct share one).
struct Hierarchy {
  std::vector<std::string> controllers;  // the managed ones mounted here
  std::string root;                      // <mount>/<own>/jobworker
  std::string base;                      // <mount>/<own>/jobworker/<instance>
  std::string base_rel;                  // <own>/jobworker/<instance>, as /proc/PID/cgroup says
  bool has(std::string_view c) const {
    return std::find(controllers.begin(), controllers.end(), c) != controllers.end();
  }
};

// A job's directory in one hierarchy.
struct JobDir {
  std::vector<std::string> controllers;
  std::string path;
  std::string rel;
  bool has(std::string_view c) const {
    return std::find(controllers.begin(), controllers.end(), c) != controllers.end();
  }
};

std::string joinRel(const std::string& parent, std::string_view child) {
  return (parent == "/" ? "" : parent) + "/" + std::string(child);
}

class V1Job : public JobCgroup {
 public:
  explicit V1Job(std::vector<JobDir> dirs) : dirs_(std::move(dirs)) {}

  Status addProcess(pid_t pid) override {
    std::string text = std::to_string(pid);
    // Every hierarchy, so that the freezer (and any other listing) sees every process of the job.
    for (const JobDir& d : dirs_) {
      if (Status s = writeFile(d.path + "/cgroup.procs", text); !s) return s;
    }
    return okStatus();
  }

  int directoryFd() const override { return -1; }

  Status killAll() override {
    std::vector<JobDir> present;
    for (const JobDir& d : dirs_) {
      if (fileExists(d.path)) present.push_back(d);
    }
    if (present.empty()) return okStatus();
    const JobDir* fz = nullptr;
    for (const JobDir& d : present) {
      if (d.has("freezer")) fz = &d;
    }
    FreezeOps ops;
    if (fz != nullptr) {
      std::string state = fz->path + "/freezer.state";
      ops.freeze = [state] { return writeFile(state, "FROZEN"); };
      // FREEZING while a task has not reached the refrigerator yet (e.g. in uninterruptible IO).
      ops.frozen = [state] {
        auto t = readFile(state);
        return t && t->compare(0, 6, "FROZEN") == 0;
      };
      ops.thaw = [state] { return writeFile(state, "THAWED"); };
      ops.list = [path = fz->path] { return readPidsRecursive(path); };
      ops.membership = Membership{"freezer", fz->rel};
    } else {
      // No freezer: kill-and-relist still ends the job unless it forks faster than we kill.
      const JobDir& any = present.front();
      ops.freeze = [] { return okStatus(); };
      ops.frozen = [] { return true; };
      ops.thaw = [] { return okStatus(); };
      ops.list = [path = any.path] { return readPidsRecursive(path); };
      ops.membership = Membership{any.controllers.front(), any.rel};
    }
    return freezeKillThaw(ops);
  }

  bool empty() override {
    for (const JobDir& d : dirs_) {
      auto pids = readPidsRecursive(d.path);
      if (!pids || !pids->empty()) return false;
    }
    return true;
  }

  std::optional<uint64_t> memoryNow() override {
    const JobDir* d = dir("memory");
    if (d == nullptr) return std::nullopt;
    auto t = readFile(d->path + "/memory.usage_in_bytes");
    return t ? parseU64(*t) : std::nullopt;
  }

  protocol::Usage usage() override {
    protocol::Usage u;
    if (const JobDir* d = dir("cpuacct")) {
      if (auto t = readFile(d->path + "/cpuacct.usage"); t) {
        if (auto ns = parseU64(*t)) {
          u.has_cpu = true;
          u.cpu_seconds = static_cast<double>(*ns) / 1e9;
        }
      }
    }
    if (const JobDir* d = dir("memory")) {
      if (auto t = readFile(d->path + "/memory.max_usage_in_bytes"); t) {
        if (auto v = parseU64(*t)) {
          u.has_memory = true;
          u.memory_peak_bytes = *v;
        }
      }
    }
    if (const JobDir* d = dir("blkio")) readBlkio(*d, &u);
    // pids.peak only exists on recent kernels; pids.current would be a guess, not a peak.
    if (const JobDir* d = dir("pids")) {
      if (auto t = readFile(d->path + "/pids.peak"); t) {
        if (auto v = parseU64(*t)) {
          u.has_pids = true;
          u.pids_peak = *v;
        }
      }
    }
    return u;
  }

  bool oomKilled() override {
    const JobDir* d = dir("memory");
    if (d == nullptr) return false;
    auto t = readFile(d->path + "/memory.oom_control");
    if (!t) return false;
    auto n = keyedValue(*t, "oom_kill");
    return n && *n > 0;
  }

  Status remove() override {
    Status first = okStatus();
    for (const JobDir& d : dirs_) {
      Status s = removeTree(d.path);
      if (!s && first) first = s;
    }
    return first;
  }

 private:
  const JobDir* dir(std::string_view controller) const {
    for (const JobDir& d : dirs_) {
      if (d.has(controller)) return &d;
    }
    return nullptr;
  }

  static void readBlkio(const JobDir& d, protocol::Usage* u) {
    // The recursive file includes sub-cgroups; older kernels only have the flat one.
    auto t = readFile(d.path + "/blkio.throttle.io_service_bytes_recursive");
    if (!t) t = readFile(d.path + "/blkio.throttle.io_service_bytes");
    if (!t) return;
    u->has_io = true;
    size_t pos = 0;
    std::string_view text = *t;
    while (pos < text.size()) {
      size_t nl = text.find('\n', pos);
      std::string_view line = text.substr(pos, nl == std::string_view::npos ? nl : nl - pos);
      pos = nl == std::string_view::npos ? text.size() : nl + 1;
      // "MAJ:MIN Read N" / "MAJ:MIN Write N"; "Total N" and other ops are skipped.
      size_t a = line.find(' ');
      if (a == std::string_view::npos) continue;
      size_t b = line.find(' ', a + 1);
      if (b == std::string_view::npos) continue;
      std::string_view op = line.substr(a + 1, b - a - 1);
      auto v = parseU64(line.substr(b + 1));
      if (!v) continue;
      if (op == "Read") u->io_read_bytes += *v;
      if (op == "Write") u->io_write_bytes += *v;
    }
  }

  std::vector<JobDir> dirs_;
};

class V1Backend : public CgroupBackend {
 public:
  static Result<std::unique_ptr<CgroupBackend>> open(const CgroupInstance& instance) {
    auto backend = std::unique_ptr<V1Backend>(new V1Backend());
    if (Status s = backend->discover(instance.name); !s) return s.error();
    if (Status s = backend->prepare(); !s) return s.error();
    std::vector<JobDir> levels;
    for (const Hierarchy& h : backend->hierarchies_) {
      levels.push_back(JobDir{h.controllers, h.base, h.base_rel});
    }
    if (Status s = applyTotal(levels, instance.total); !s) {
      return Error{"the instance's aggregate caps: " + s.error().message, s.error().sys_errno};
    }
    return std::unique_ptr<CgroupBackend>(std::move(backend));
  }

  // A clean stop leaves no empty level behind; a level still holding a job (or, later, one kept
  // for re-adoption) stays: rmdir refuses it.
  ~V1Backend() override {
    if (!lock_.held()) return;  // another daemon's levels, or none made
    for (const Hierarchy& h : hierarchies_) {
      for (const std::string& user : listSubdirs(h.base)) {
        (void)::rmdir((h.base + "/" + user).c_str());
      }
      (void)::rmdir(h.base.c_str());
    }
  }

  std::string name() const override { return "v1"; }

  bool has(Controller c) const override { return hierarchy(controllerName(c)) != nullptr; }

  std::vector<std::string> details() const override { return details_; }

  JobsUsage jobsUsage() const override {
    JobsUsage u;
    auto read = [&](std::string_view controller, const char* file) -> std::optional<uint64_t> {
      const Hierarchy* h = hierarchy(controller);
      if (h == nullptr) return std::nullopt;
      auto t = readFile(h->base + "/" + file);
      return t ? parseU64(*t) : std::nullopt;
    };
    u.memory_bytes = read("memory", "memory.usage_in_bytes");
    if (auto ns = read("cpuacct", "cpuacct.usage")) u.cpu_us = *ns / 1000;
    u.pids = read("pids", "pids.current");
    return u;
  }

  Result<std::unique_ptr<JobCgroup>> create(const std::string& job_id, const std::string& user,
                                            const AggregateLimits& user_total,
                                            const CgroupLimits& limits) override {
    if (Status s = validateJobId(job_id); !s) return s.error();
    if (Status s = validateUser(user); !s) return s.error();
    if (Status s = checkControllers(limits); !s) return s.error();
    uint64_t quota = 0;
    if (limits.cpu_millicores > 0) {
      auto q = cpuQuotaUs(limits.cpu_millicores);
      if (!q) return q.error();
      quota = *q;
    }
    auto disks = resolveIoLimits(limits.io);
    if (!disks) return disks.error();
    // The user's level went away under us (an administrator's rmdir of an empty one): again.
    if (!fileExists(hierarchies_.front().base + "/" + user)) users_ready_.erase(user);
    if (Status s = prepareUser(user, user_total); !s) return s.error();

    std::vector<JobDir> dirs;
    for (const JobDir& d : jobDirs(user, job_id)) {
      if (::mkdir(d.path.c_str(), 0755) != 0) {
        Error e = sysError("mkdir " + d.path);
        (void)V1Job(std::move(dirs)).remove();  // undo; the mkdir error is the one to report
        return e;
      }
      dirs.push_back(d);
    }
    auto job = std::make_unique<V1Job>(dirs);
    if (Status s = applyLimits(dirs, limits, quota, *disks); !s) {
      (void)job->remove();  // undo; the limit error is the one to report
      return s.error();
    }
    return std::unique_ptr<JobCgroup>(std::move(job));
  }

  Result<std::unique_ptr<JobCgroup>> adopt(const std::string& job_id,
                                           const std::string& user) override {
    if (Status s = validateJobId(job_id); !s) return s.error();
    if (Status s = validateUser(user); !s) return s.error();
    std::vector<JobDir> dirs = jobDirs(user, job_id);
    // create() makes it in every hierarchy or in none: a partial one is not a job's.
    for (const JobDir& d : dirs) {
      if (!fileExists(d.path)) return Error{"adopt the job cgroup " + d.path + ": missing"};
    }
    return std::unique_ptr<JobCgroup>(std::make_unique<V1Job>(std::move(dirs)));
  }

  size_t removeLeftovers(const std::set<std::string>& keep) override {
    // The same directories in every hierarchy, but a crash may have left some only in part.
    std::set<std::pair<std::string, std::string>> jobs;
    std::set<std::string> users;
    for (const Hierarchy& h : hierarchies_) {
      for (std::string& u : listSubdirs(h.base)) {
        for (std::string& n : listSubdirs(h.base + "/" + u)) jobs.emplace(u, std::move(n));
        users.insert(std::move(u));
      }
    }
    size_t removed = 0;
    for (const auto& [user, n] : jobs) {
      if (keep.count(n) != 0) continue;
      std::vector<JobDir> dirs;
      for (const JobDir& d : jobDirs(user, n)) {
        if (fileExists(d.path)) dirs.push_back(d);
      }
      V1Job job(std::move(dirs));
      if (removeLeftover(job, user + "/" + n, details_)) ++removed;
    }
    // Empty user levels go too; their next job makes them again, with the caps.
    for (const std::string& user : users) {
      for (const Hierarchy& h : hierarchies_) {
        std::string dir = h.base + "/" + user;
        if (listSubdirs(dir).empty()) (void)::rmdir(dir.c_str());
      }
      users_ready_.erase(user);
    }
    return removed;
  }

 private:
  V1Backend() = default;

  static std::string_view controllerName(Controller c) {
    switch (c) {
      case Controller::kCpu:
        return "cpu";
      case Controller::kMemory:
        return "memory";
      case Controller::kIo:
        return "blkio";
      case Controller::kPids:
        return "pids";
    }
    return "";
  }

  const Hierarchy* hierarchy(std::string_view controller) const {
    for (const Hierarchy& h : hierarchies_) {
      if (h.has(controller)) return &h;
    }
    return nullptr;
  }

  // The job's directory in every hierarchy.
  std::vector<JobDir> jobDirs(const std::string& user, const std::string& job_id) const {
    std::vector<JobDir> dirs;
    for (const Hierarchy& h : hierarchies_) {
      dirs.push_back(JobDir{h.controllers, h.base + "/" + user + "/" + job_id,
                            joinRel(joinRel(h.base_rel, user), job_id)});
    }
    return dirs;
  }

  // Finds each managed controller's mount and our own cgroup in it.
  Status discover(const std::string& instance) {
    auto mounts = readCgroupMounts();
    if (!mounts) return mounts.error();
    auto own = readProcCgroup();
    if (!own) return own.error();
    details_.push_back("cgroup backend: v1");
    for (std::string_view c : kManaged) {
      const ProcCgroupLine* line = nullptr;
      for (const ProcCgroupLine& l : *own) {
        if (std::find(l.controllers.begin(), l.controllers.end(), c) != l.controllers.end()) {
          line = &l;
        }
      }
      std::string base, problem = "not mounted";
      for (const CgroupMount& m : *mounts) {
        if (m.v2 ||
            std::find(m.controllers.begin(), m.controllers.end(), c) == m.controllers.end()) {
          continue;
        }
        if (line == nullptr) {
          problem = "not in /proc/self/cgroup";
          break;
        }
        auto dir = pathUnderMount(m, line->path);
        if (!dir) {
          problem = dir.error().message;
          continue;  // maybe another mount of the same hierarchy shows our part
        }
        base = *dir + "/" + std::string(kJobsDir);
        break;
      }
      if (base.empty()) {
        missing(c, problem);
        continue;
      }
      auto same = std::find_if(hierarchies_.begin(), hierarchies_.end(),
                               [&](const Hierarchy& h) { return h.root == base; });
      if (same != hierarchies_.end()) {
        same->controllers.emplace_back(c);
      } else {
        hierarchies_.push_back(Hierarchy{{std::string(c)},
                                         base,
                                         base + "/" + instance,
                                         joinRel(joinRel(line->path, kJobsDir), instance)});
      }
    }
    if (hierarchies_.empty()) {
      return Error{"cgroup v1: none of cpu, cpuacct, memory, blkio, pids, freezer is usable"};
    }
    details_.push_back("instance: " + instance);
    for (const Hierarchy& h : hierarchies_) {
      std::string names;
      for (const std::string& c : h.controllers) names += (names.empty() ? "" : ",") + c;
      details_.push_back(names + ": " + h.base);
    }
    return okStatus();
  }

  void missing(std::string_view c, const std::string& why) {
    std::string consequence;
    if (c == "cpuacct") consequence = " (no cpu usage)";
    if (c == "freezer") consequence = " (kill without freezing)";
    // Named as the interface names them: blkio is the io limit.
    std::string shown = c == "blkio" ? "io" : std::string(c);
    details_.push_back("missing controller: " + shown + consequence + ": " + why);
  }

  // Creates <own>/jobworker/<instance> everywhere and locks it for this daemon's life.
  Status prepare() {
    std::vector<std::string> bases;
    for (const Hierarchy& h : hierarchies_) {
      if (Status s = makeDir(h.root); !s) return s;
      if (Status s = makeDir(h.base); !s) return s;
      bases.push_back(h.base);
    }
    return lock_.acquire(bases);
  }

  // The user's level, once per backend life: its directory in every hierarchy and the user's
  // aggregate caps.
  Status prepareUser(const std::string& user, const AggregateLimits& total) {
    if (users_ready_.count(user) != 0) return okStatus();
    std::vector<JobDir> levels;
    for (const Hierarchy& h : hierarchies_) {
      JobDir d{h.controllers, h.base + "/" + user, joinRel(h.base_rel, user)};
      if (Status s = makeDir(d.path); !s) return s;
      levels.push_back(std::move(d));
    }
    if (Status s = applyTotal(levels, total); !s) {
      return Error{"the aggregate caps of user " + user + ": " + s.error().message,
                   s.error().sys_errno};
    }
    users_ready_.insert(user);
    return okStatus();
  }

  // A cap whose controller is not mounted is not enforced (details() lists the controller as
  // missing, and per-job limits of that kind are refused).
  static Status applyTotal(const std::vector<JobDir>& levels, const AggregateLimits& t) {
    CgroupLimits as_limits;
    as_limits.cpu_millicores = find(levels, "cpu") != nullptr ? t.cpu_millicores : 0;
    as_limits.memory_bytes = find(levels, "memory") != nullptr ? t.memory_bytes : 0;
    as_limits.pids = find(levels, "pids") != nullptr ? t.pids : 0;
    uint64_t quota = 0;
    if (as_limits.cpu_millicores > 0) {
      auto q = cpuQuotaUs(as_limits.cpu_millicores);
      if (!q) return q.error();
      quota = *q;
    }
    // The same files as a job's limits: cfs quota, memory and memory+swap, pids.max.
    return applyLimits(levels, as_limits, quota, {});
  }

  Status checkControllers(const CgroupLimits& limits) const {
    auto need = [&](bool wanted, Controller c, const char* limit) -> Status {
      if (wanted && !has(c)) {
        return Error{std::string(limit) + " limit requested but the " +
                     std::string(controllerName(c)) + " controller is not available (cgroup v1)"};
      }
      return okStatus();
    };
    if (Status s = need(limits.cpu_millicores > 0, Controller::kCpu, "cpu"); !s) return s;
    if (Status s = need(limits.memory_bytes > 0, Controller::kMemory, "memory"); !s) return s;
    if (Status s = need(limits.pids > 0, Controller::kPids, "pids"); !s) return s;
    return need(!limits.io.empty(), Controller::kIo, "io");
  }

  static const JobDir* find(const std::vector<JobDir>& dirs, std::string_view c) {
    for (const JobDir& d : dirs) {
      if (d.has(c)) return &d;
    }
    return nullptr;
  }

  static Status applyLimits(const std::vector<JobDir>& dirs, const CgroupLimits& limits,
                            uint64_t quota_us, const std::vector<DiskLimit>& disks) {
    if (limits.cpu_millicores > 0) {
      const std::string& p = find(dirs, "cpu")->path;
      if (Status s = writeFile(p + "/cpu.cfs_period_us", std::to_string(kCpuPeriodUs)); !s) {
        return s;
      }
      if (Status s = writeFile(p + "/cpu.cfs_quota_us", std::to_string(quota_us)); !s) return s;
    }
    if (limits.memory_bytes > 0) {
      const std::string& p = find(dirs, "memory")->path;
      std::string v = std::to_string(limits.memory_bytes);
      const std::string memsw = p + "/memory.memsw.limit_in_bytes";
      // memory+swap at the same value: otherwise the job swaps instead of meeting its limit.
      // The kernel wants memsw >= memory at every step: lowering sets memory first, raising (an
      // aggregate level written again by a later daemon) memsw first.
      Status lowered = writeFile(p + "/memory.limit_in_bytes", v);
      if (!lowered && lowered.error().sys_errno == EINVAL && fileExists(memsw)) {
        if (Status s = writeFile(memsw, v); !s) return s;
        lowered = writeFile(p + "/memory.limit_in_bytes", v);
      }
      if (!lowered) return lowered;
      if (fileExists(memsw)) {
        if (Status s = writeFile(memsw, v); !s) return s;
      }
    }
    if (limits.pids > 0) {
      const std::string& p = find(dirs, "pids")->path;
      if (Status s = writeFile(p + "/pids.max", std::to_string(limits.pids)); !s) return s;
    }
    if (!disks.empty()) {
      // v1 blk-throttle sees only IO the job's own tasks submit: reads and O_DIRECT writes.
      // Buffered writes are written back later by kernel flushers, charged to the root cgroup,
      // and are not throttled. The kernel also takes whole disks only (resolveDisk maps a
      // partition to its disk).
      const std::string& p = find(dirs, "blkio")->path;
      for (const DiskLimit& d : disks) {
        std::string key = diskKey(d.disk) + " ";
        const std::pair<const char*, uint64_t> files[] = {
            {"/blkio.throttle.read_bps_device", d.read_bps},
            {"/blkio.throttle.write_bps_device", d.write_bps},
            {"/blkio.throttle.read_iops_device", d.read_iops},
            {"/blkio.throttle.write_iops_device", d.write_iops},
        };
        for (const auto& [file, value] : files) {
          if (value == 0) continue;
          if (Status s = writeFile(p + file, key + std::to_string(value)); !s) {
            return Error{"io limit on " + d.device + ": " + s.error().message, s.error().sys_errno};
          }
        }
      }
    }
    return okStatus();
  }

  std::vector<Hierarchy> hierarchies_;
  std::vector<std::string> details_;
  std::set<std::string> users_ready_;
  InstanceLock lock_;
};

}  // namespace

Result<std::unique_ptr<CgroupBackend>> openV1Backend(const CgroupInstance& instance) {
  return V1Backend::open(instance);
}

}  // namespace jw::supervisor::cg
