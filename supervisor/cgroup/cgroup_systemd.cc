// jobworkerd: the cgroup v2 layout placed through systemd (systemd is PID 1): each job in a
// transient scope of its own, jobworker-job-<id>.scope (Delegate=yes), below a slice per instance
// and per user in jobworker.slice, so jobs live outside jobworkerd.service's cgroup and survive
// its restart. Limits go into the scope's delegated `job` leaf.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <set>

#include "common/log.h"
#include "common/names.h"
#include "supervisor/cgroup/cgroup_impl.h"
#include "supervisor/cgroup/systemd_manager.h"

#ifdef JW_HAVE_SYSTEMD
#include <systemd/sd-login.h>
#endif

namespace jw::supervisor::cg {

namespace {
constexpr std::string_view kSliceRoot = "jobworker.slice";
constexpr std::string_view kScopePrefix = "jobworker-job-";
constexpr std::string_view kScopeSuffix = ".scope";
// The delegated leaf inside a job's scope: the scope hands controllers to it (no process may sit
// in the scope itself then), and its attribute files are ours, never rewritten by systemd.
constexpr std::string_view kJobLeaf = "job";
// systemd moves a scope's PIDs= while it runs the start job: milliseconds; bounded anyway.
constexpr std::chrono::milliseconds kPlacementWait{10000};
constexpr const char* kCgroupMount = "/sys/fs/cgroup";
}  // namespace

std::string unitNameEscape(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); i++) {
    auto c = static_cast<unsigned char>(s[i]);
    bool keep = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                c == '_' || c == ':' || (c == '.' && i > 0);
    if (keep) {
      out.push_back(static_cast<char>(c));
    } else {
      char hex[5];
      std::snprintf(hex, sizeof hex, "\\x%02x", c);
      out += hex;
    }
  }
  return out;
}

std::string instanceSliceName(const std::string& instance) {
  return "jobworker-" + instance + ".slice";
}

std::string userSliceName(const std::string& instance, const std::string& user) {
  return "jobworker-" + instance + "-" + unitNameEscape(user) + ".slice";
}

std::string jobScopeName(const std::string& job_id) {
  return std::string(kScopePrefix) + job_id + std::string(kScopeSuffix);
}

std::optional<std::string> jobIdOfScope(std::string_view unit) {
  if (unit.size() <= kScopePrefix.size() + kScopeSuffix.size() ||
      unit.substr(0, kScopePrefix.size()) != kScopePrefix ||
      unit.substr(unit.size() - kScopeSuffix.size()) != kScopeSuffix) {
    return std::nullopt;
  }
  std::string id(
      unit.substr(kScopePrefix.size(), unit.size() - kScopePrefix.size() - kScopeSuffix.size()));
  if (!names::validJobId(id)) return std::nullopt;
  return id;
}

namespace {

// The aggregate caps of a slice as systemd properties (systemd owns a slice's attribute files
// and rewrites them from its properties, e.g. on daemon-reload). An unset cap is written as
// infinity, so a cap of a previous run's drop-in never lingers.
std::vector<UnitProperty> capProperties(const AggregateLimits& t,
                                        const std::vector<std::string>& enabled,
                                        std::vector<std::string>& notes) {
  std::vector<UnitProperty> p;
  uint64_t cpu = kUnitInfinity, memory = kUnitInfinity, pids = kUnitInfinity;
  // CPUQuotaPerSecUSec: µs of cpu per second; systemd writes cpu.max with a 100 ms period.
  if (capEnforced(t.cpu_millicores > 0, "cpu", enabled, notes)) {
    cpu = static_cast<uint64_t>(t.cpu_millicores) * 1000;
  }
  if (capEnforced(t.memory_bytes > 0, "memory", enabled, notes)) memory = t.memory_bytes;
  if (capEnforced(t.pids > 0, "pids", enabled, notes)) pids = t.pids;
  p.push_back({"CPUQuotaPerSecUSec", cpu});
  p.push_back({"MemoryMax", memory});
  // Swap is counted into memory caps, as for each job.
  p.push_back({"MemorySwapMax", memory == kUnitInfinity ? kUnitInfinity : uint64_t{0}});
  p.push_back({"TasksMax", pids});
  return p;
}

// One job's cgroup: the scope systemd makes once the shim's pid is known (addProcess), then
// the `job` leaf inside it, where the shim moves and the limits are written.
class SystemdJob : public JobCgroup {
 public:
  struct Plan {
    std::string scope;                // jobworker-job-<id>.scope
    std::string slice;                // the user's slice
    std::string description;          // for systemctl status
    std::string scope_path;           // its directory under /sys/fs/cgroup
    std::string scope_rel;            // as /proc/PID/cgroup names it
    std::vector<UnitProperty> extra;  // Before=<our unit>, OOMPolicy= where systemd has it
    CgroupLimits limits;
    uint64_t quota_us = 0;
    std::vector<DiskLimit> disks;
    std::vector<std::string> controllers;  // to hand on to the leaf
  };

  SystemdJob(std::shared_ptr<SystemdManager> manager, Plan plan)
      : manager_(std::move(manager)),
        plan_(std::move(plan)),
        scope_(makeV2Job(plan_.scope_path, plan_.scope_rel, UniqueFd())) {}

  // An existing scope's leaf (adopt).
  void setLeaf(std::unique_ptr<JobCgroup> leaf) { leaf_ = std::move(leaf); }

  // The shim waits for its release meanwhile: nothing of the job runs before its limits hold.
  Status addProcess(pid_t pid) override {
    if (leaf_) return Error{"job cgroup " + plan_.scope + " already holds its shim"};
    if (Status s = startScope(pid); !s) return s;
    std::string leaf = plan_.scope_path + "/" + std::string(kJobLeaf);
    if (Status s = makeDir(leaf); !s) return s;
    if (Status s = writeFile(leaf + "/cgroup.procs", std::to_string(pid)); !s) return s;
    for (const std::string& c : plan_.controllers) {
      if (Status s = writeFile(plan_.scope_path + "/cgroup.subtree_control", "+" + c); !s) {
        return s;
      }
    }
    if (Status s = writeV2JobLimits(leaf, plan_.limits, plan_.quota_us, plan_.disks); !s) return s;
    UniqueFd dir(::open(leaf.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!dir) return sysError("open " + leaf);
    leaf_ = makeV2Job(leaf, plan_.scope_rel + "/" + std::string(kJobLeaf), std::move(dir));
    return okStatus();
  }

  // The scope exists only once a pid is in it: the shim starts outside and moves in.
  int directoryFd() const override { return leaf_ ? leaf_->directoryFd() : -1; }
  bool unified() const override { return true; }

  // The leaf is where every process of the job is once placed; before, the scope itself.
  Status killAll() override { return leaf_ ? leaf_->killAll() : scope_->killAll(); }
  bool empty() override { return leaf_ ? leaf_->empty() : scope_->empty(); }
  protocol::Usage usage() override { return leaf_ ? leaf_->usage() : protocol::Usage{}; }
  std::optional<uint64_t> memoryNow() override { return leaf_ ? leaf_->memoryNow() : std::nullopt; }
  bool oomKilled() override { return leaf_ && leaf_->oomKilled(); }

  // Only the leaf is ours to remove: systemd removes the scope once it is empty.
  Status remove() override { return removeTree(plan_.scope_path + "/" + std::string(kJobLeaf)); }

 private:
  Status startScope(pid_t pid) {
    std::vector<UnitProperty> props = {
        {"Description", plan_.description},
        {"Slice", plan_.slice},
        {"PIDs", std::vector<uint32_t>{static_cast<uint32_t>(pid)}},
        // The subtree below the scope is ours: the leaf, its limits, a root job's sub-cgroups.
        {"Delegate", true},
        // A failed scope (killed by a stop timeout) is unloaded too, never left listed.
        {"CollectMode", std::string("inactive-or-failed")},
    };
    props.insert(props.end(), plan_.extra.begin(), plan_.extra.end());
    if (Status s = manager_->startTransientUnit(plan_.scope, props); !s) return s;
    Membership in_scope{"", plan_.scope_rel};
    if (!waitUntil([&] { return pidInCgroup(pid, in_scope); }, kPlacementWait)) {
      return Error{"systemd did not place the job's shim (pid " + std::to_string(pid) + ") in " +
                       plan_.scope + " within " + std::to_string(kPlacementWait.count()) + " ms",
                   ETIMEDOUT};
    }
    return okStatus();
  }

  std::shared_ptr<SystemdManager> manager_;
  Plan plan_;
  std::unique_ptr<JobCgroup> scope_;
  std::unique_ptr<JobCgroup> leaf_;
};

class SystemdBackend : public CgroupBackend {
 public:
  static Result<std::unique_ptr<CgroupBackend>> open(const CgroupInstance& instance) {
    auto manager = SystemdManager::connect();
    if (!manager) return manager.error();
    auto backend = std::unique_ptr<SystemdBackend>(new SystemdBackend(std::move(*manager)));
    if (Status s = backend->prepare(instance); !s) return s.error();
    return std::unique_ptr<CgroupBackend>(std::move(backend));
  }

  // A clean stop (no job left in the instance) stops the instance's slices too; a slice still
  // holding a job stays.
  ~SystemdBackend() override {
    if (!lock_.held()) return;
    auto events = readFile(instance_ + "/cgroup.events");
    if (events && keyedValue(*events, "populated") == 0u) {
      (void)manager_->stopUnit(instanceSliceName(instance_name_));
    }
  }

  std::string name() const override { return "v2"; }

  bool has(Controller c) const override { return contains(enabled_, controllerName(c)); }

  JobsUsage jobsUsage() const override { return v2JobsUsage(instance_); }

  std::vector<std::string> details() const override {
    std::vector<std::string> d{"cgroup backend: v2", "placement: systemd scopes",
                               "jobs: " + instance_};
    appendV2ControllerDetails(enabled_, d);
    d.insert(d.end(), notes_.begin(), notes_.end());
    return d;
  }

  Result<std::unique_ptr<JobCgroup>> create(const std::string& job_id, const std::string& user,
                                            const AggregateLimits& user_total,
                                            const CgroupLimits& limits) override {
    if (Status s = validateJobId(job_id); !s) return s.error();
    if (Status s = validateUser(user); !s) return s.error();
    if (Status s = checkV2Controllers(limits, enabled_, instance_); !s) return s.error();
    SystemdJob::Plan plan = planFor(job_id, user);
    if (limits.cpu_millicores > 0) {
      auto q = cpuQuotaUs(limits.cpu_millicores);
      if (!q) return q.error();
      plan.quota_us = *q;
    }
    auto disks = resolveIoLimits(limits.io);
    if (!disks) return disks.error();
    if (Status s = prepareUser(user, user_total); !s) return s.error();
    plan.limits = limits;
    plan.disks = std::move(*disks);
    return std::unique_ptr<JobCgroup>(std::make_unique<SystemdJob>(manager_, std::move(plan)));
  }

  Result<std::unique_ptr<JobCgroup>> adopt(const std::string& job_id,
                                           const std::string& user) override {
    if (Status s = validateJobId(job_id); !s) return s.error();
    if (Status s = validateUser(user); !s) return s.error();
    SystemdJob::Plan plan = planFor(job_id, user);
    std::string leaf = plan.scope_path + "/" + std::string(kJobLeaf);
    UniqueFd dir(::open(leaf.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!dir) return sysError("adopt the job cgroup " + leaf);
    std::string leaf_rel = plan.scope_rel + "/" + std::string(kJobLeaf);
    auto job = std::make_unique<SystemdJob>(manager_, std::move(plan));
    job->setLeaf(makeV2Job(leaf, leaf_rel, std::move(dir)));
    return std::unique_ptr<JobCgroup>(std::move(job));
  }

  // A leftover scope is killed through cgroupfs (its leaf and anything still in the scope
  // itself); systemd then sees it empty and removes it. Only scopes named like ours, in this
  // instance's user slices, are touched.
  size_t removeLeftovers(const std::set<std::string>& keep) override {
    size_t removed = 0;
    for (const std::string& slice : listSubdirs(instance_)) {
      std::string slice_dir = instance_ + "/" + slice;
      for (const std::string& scope : listSubdirs(slice_dir)) {
        auto id = jobIdOfScope(scope);
        if (!id || keep.count(*id) != 0) continue;
        if (removeLeftoverScope(slice_dir + "/" + scope, instance_rel_ + "/" + slice + "/" + scope,
                                slice + "/" + scope)) {
          ++removed;
        }
      }
    }
    return removed;
  }

 private:
  explicit SystemdBackend(std::shared_ptr<SystemdManager> manager) : manager_(std::move(manager)) {}

  Status prepare(const CgroupInstance& instance) {
    instance_name_ = instance.name;
    std::string slice = instanceSliceName(instance.name);
    instance_rel_ = "/" + std::string(kSliceRoot) + "/" + slice;
    instance_ = kCgroupMount + instance_rel_;
    findControllers();
    learnManager();
    std::vector<UnitProperty> caps = capProperties(instance.total, enabled_, notes_);
    if (Status s = manager_->setUnitProperties(slice, caps); !s) {
      return Error{"the instance's aggregate caps: " + s.error().message, s.error().sys_errno};
    }
    if (Status s = manager_->startUnit(slice); !s) return s;
    if (!waitUntil([&] { return fileExists(instance_); }, kPlacementWait)) {
      return Error{"systemd did not make " + instance_ + " for " + slice, ETIMEDOUT};
    }
    return lock_.acquire({instance_});
  }

  // What systemd can hand a delegated scope: the root's controllers (it enables them on the way
  // down for Delegate=yes).
  void findControllers() {
    auto offered = readFile(std::string(kCgroupMount) + "/cgroup.controllers");
    if (!offered) {
      notes_.push_back("cannot read controllers: " + offered.error().message);
      return;
    }
    std::vector<std::string> available = words(*offered);
    for (std::string_view c : kV2Controllers) {
      if (contains(available, c)) enabled_.emplace_back(c);
    }
  }

  // Jobs' scopes are ordered Before= the unit jobworkerd runs in, so at system shutdown
  // jobworkerd stops them itself (stopped_by "shutdown") before systemd stops the scopes. Since
  // systemd 253 a scope has an OOMPolicy= (default stop): continue, as for the service, since an
  // OOM kill inside a job is the job's business.
  void learnManager() {
#ifdef JW_HAVE_SYSTEMD
    char* unit = nullptr;
    if (sd_pid_get_unit(0, &unit) >= 0) {
      std::string_view u = unit;
      if (u.size() > 8 && u.substr(u.size() - 8) == ".service") {
        extra_.push_back({"Before", std::vector<std::string>{std::string(u)}});
      }
      free(unit);  // sd-login allocates it with malloc
    }
#endif
    auto version = manager_->version();
    if (version && std::atoi(version->c_str()) >= 253) {
      extra_.push_back({"OOMPolicy", std::string("continue")});
    }
  }

  SystemdJob::Plan planFor(const std::string& job_id, const std::string& user) const {
    SystemdJob::Plan plan;
    plan.scope = jobScopeName(job_id);
    plan.slice = userSliceName(instance_name_, user);
    plan.description = "jobworker job " + job_id + " of " + user;
    plan.scope_rel = instance_rel_ + "/" + plan.slice + "/" + plan.scope;
    plan.scope_path = kCgroupMount + plan.scope_rel;
    plan.extra = extra_;
    plan.controllers = enabled_;
    return plan;
  }

  // The user's slice and its aggregate caps, once per backend life; the scope's Slice= starts it.
  Status prepareUser(const std::string& user, const AggregateLimits& total) {
    if (users_ready_.count(user) != 0) return okStatus();
    std::vector<UnitProperty> caps = capProperties(total, enabled_, notes_);
    if (Status s = manager_->setUnitProperties(userSliceName(instance_name_, user), caps); !s) {
      return Error{"the aggregate caps of user " + user + ": " + s.error().message,
                   s.error().sys_errno};
    }
    users_ready_.insert(user);
    return okStatus();
  }

  bool removeLeftoverScope(const std::string& path, const std::string& rel,
                           const std::string& name) {
    std::unique_ptr<JobCgroup> scope = makeV2Job(path, rel, UniqueFd());
    Status killed = scope->killAll();
    waitUntil([&] { return scope->empty(); }, 2 * kFreezeWait);
    (void)removeTree(path + "/" + std::string(kJobLeaf));
    bool gone = waitUntil([&] { return !fileExists(path); }, 2 * kFreezeWait);
    if (killed && gone) {
      log::notice("removed leftover job scope " + log::quote(name) + " of a previous run");
      return true;
    }
    std::string why = !killed ? killed.error().message : "systemd has not removed it";
    log::warning("leftover job scope " + log::quote(name) + " not removed: " + why);
    notes_.push_back("leftover not removed: " + name);
    return false;
  }

  std::shared_ptr<SystemdManager> manager_;
  std::string instance_name_;
  std::string instance_;      // /sys/fs/cgroup/jobworker.slice/jobworker-<instance>.slice
  std::string instance_rel_;  // as /proc/PID/cgroup names it
  std::vector<std::string> enabled_;
  std::vector<std::string> notes_;
  std::vector<UnitProperty> extra_;
  std::set<std::string> users_ready_;
  InstanceLock lock_;
};

}  // namespace

Result<std::unique_ptr<CgroupBackend>> openSystemdBackend(const CgroupInstance& instance) {
  return SystemdBackend::open(instance);
}

}  // namespace jw::supervisor::cg
