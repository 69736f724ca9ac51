// jobworkerd: cgroup v2 backend (daemon in <own>/supervisor, jobs in
// <own>/jobworker/<instance>/<user>/<id>).
#include <fcntl.h>
#include <linux/magic.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <algorithm>
#include <set>

#include "common/log.h"
#include "supervisor/cgroup/cgroup_impl.h"

namespace jw::supervisor::cg {
namespace {

std::string joinRel(const std::string& parent, std::string_view child) {
  return (parent == "/" ? "" : parent) + "/" + std::string(child);
}

}  // namespace

std::vector<std::string> words(std::string_view text) {
  std::vector<std::string> out;
  size_t i = 0;
  while (i < text.size()) {
    while (i < text.size() && (text[i] == ' ' || text[i] == '\n')) ++i;
    size_t j = i;
    while (j < text.size() && text[j] != ' ' && text[j] != '\n') ++j;
    if (j > i) out.emplace_back(text.substr(i, j - i));
    i = j;
  }
  return out;
}

bool contains(const std::vector<std::string>& v, std::string_view s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}

std::string_view controllerName(Controller c) {
  switch (c) {
    case Controller::kCpu:
      return "cpu";
    case Controller::kMemory:
      return "memory";
    case Controller::kIo:
      return "io";
    case Controller::kPids:
      return "pids";
  }
  return "";
}

JobsUsage v2JobsUsage(const std::string& instance_dir) {
  JobsUsage u;
  if (auto t = readFile(instance_dir + "/memory.current"); t) u.memory_bytes = parseU64(*t);
  if (auto t = readFile(instance_dir + "/cpu.stat"); t) u.cpu_us = keyedValue(*t, "usage_usec");
  if (auto t = readFile(instance_dir + "/pids.current"); t) u.pids = parseU64(*t);
  return u;
}

void appendV2ControllerDetails(const std::vector<std::string>& enabled,
                               std::vector<std::string>& details) {
  std::string on;
  for (const std::string& c : enabled) on += (on.empty() ? "" : " ") + c;
  details.push_back("controllers: " + (on.empty() ? std::string("none") : on));
  for (std::string_view c : kV2Controllers) {
    if (!contains(enabled, c)) details.push_back("missing controller: " + std::string(c));
  }
}

Status checkV2Controllers(const CgroupLimits& limits, const std::vector<std::string>& enabled,
                          const std::string& where) {
  auto need = [&](bool wanted, Controller c, const char* limit) -> Status {
    if (wanted && !contains(enabled, controllerName(c))) {
      return Error{std::string(limit) + " limit requested but the " +
                   std::string(controllerName(c)) +
                   " controller is not enabled for jobs (cgroup v2, " + where + ")"};
    }
    return okStatus();
  };
  if (Status s = need(limits.cpu_millicores > 0, Controller::kCpu, "cpu"); !s) return s;
  if (Status s = need(limits.memory_bytes > 0, Controller::kMemory, "memory"); !s) return s;
  if (Status s = need(limits.pids > 0, Controller::kPids, "pids"); !s) return s;
  return need(!limits.io.empty(), Controller::kIo, "io");
}

bool capEnforced(bool wanted, std::string_view controller, const std::vector<std::string>& enabled,
                 std::vector<std::string>& notes) {
  if (!wanted) return false;
  if (contains(enabled, controller)) return true;
  std::string note = "aggregate " + std::string(controller) + " cap not enforced: no " +
                     std::string(controller) + " controller";
  if (!contains(notes, note)) notes.push_back(note);
  return false;
}

Status killByFreezingV2(const std::string& path, const std::string& rel) {
  FreezeOps ops;
  ops.freeze = [path] { return writeFile(path + "/cgroup.freeze", "1"); };
  ops.frozen = [path] {
    auto t = readFile(path + "/cgroup.events");
    return t && keyedValue(*t, "frozen") == 1u;
  };
  ops.thaw = [path] { return writeFile(path + "/cgroup.freeze", "0"); };
  ops.list = [path] { return readPidsRecursive(path); };
  ops.membership = Membership{"", rel};
  return freezeKillThaw(ops);
}

namespace {

class V2Job : public JobCgroup {
 public:
  V2Job(std::string path, std::string rel, UniqueFd dir)
      : path_(std::move(path)), rel_(std::move(rel)), dir_(std::move(dir)) {}

  Status addProcess(pid_t pid) override {
    return writeFile(path_ + "/cgroup.procs", std::to_string(pid));
  }

  int directoryFd() const override { return dir_.get(); }

  Status killAll() override {
    if (!fileExists(path_)) return okStatus();
    // cgroup.kill (5.14+) kills the whole subtree and blocks forks into it while doing so.
    if (fileExists(path_ + "/cgroup.kill")) return writeFile(path_ + "/cgroup.kill", "1");
    return killByFreezingV2(path_, rel_);
  }

  bool empty() override {
    auto t = readFile(path_ + "/cgroup.events");
    if (!t) return t.error().sys_errno == ENOENT;
    // populated counts descendants too, and ignores zombies (which rmdir does not mind).
    return keyedValue(*t, "populated") == 0u;
  }

  protocol::Usage usage() override {
    protocol::Usage u;
    // cpu.stat's usage_usec is there even without the cpu controller.
    if (auto t = readFile(path_ + "/cpu.stat"); t) {
      if (auto us = keyedValue(*t, "usage_usec")) {
        u.has_cpu = true;
        u.cpu_seconds = static_cast<double>(*us) / 1e6;
      }
    }
    if (auto peak = peakOf("memory.peak", "memory.current", &memory_seen_)) {
      u.has_memory = true;
      u.memory_peak_bytes = *peak;
    }
    if (auto t = readFile(path_ + "/io.stat"); t) {
      u.has_io = true;
      for (const std::string& w : words(*t)) {
        if (w.compare(0, 7, "rbytes=") == 0) u.io_read_bytes += parseU64(w.substr(7)).value_or(0);
        if (w.compare(0, 7, "wbytes=") == 0) u.io_write_bytes += parseU64(w.substr(7)).value_or(0);
      }
    }
    if (auto peak = peakOf("pids.peak", "pids.current", &pids_seen_)) {
      u.has_pids = true;
      u.pids_peak = *peak;
    }
    return u;
  }

  std::optional<uint64_t> memoryNow() override {
    auto t = readFile(path_ + "/memory.current");
    return t ? parseU64(*t) : std::nullopt;
  }

  bool oomKilled() override {
    auto t = readFile(path_ + "/memory.events");
    if (!t) return false;
    auto n = keyedValue(*t, "oom_kill");
    return n && *n > 0;
  }

  Status remove() override { return removeTree(path_); }

 private:
  // The kernel's peak file where it has one (memory.peak 5.19+, pids.peak 6.1+), else the
  // highest current value we have sampled (a lower bound).
  std::optional<uint64_t> peakOf(const char* peak_file, const char* current_file, uint64_t* seen) {
    if (auto t = readFile(path_ + "/" + peak_file); t) return parseU64(*t);
    auto t = readFile(path_ + "/" + current_file);
    if (!t) return std::nullopt;
    auto v = parseU64(*t);
    if (!v) return std::nullopt;
    *seen = std::max(*seen, *v);
    return *seen;
  }

  std::string path_;
  std::string rel_;
  UniqueFd dir_;
  uint64_t memory_seen_ = 0;
  uint64_t pids_seen_ = 0;
};

class V2Backend : public CgroupBackend {
 public:
  static Result<std::unique_ptr<CgroupBackend>> open(const std::string& mount_point,
                                                     const CgroupInstance& instance) {
    auto backend = std::unique_ptr<V2Backend>(new V2Backend());
    if (Status s = backend->locate(mount_point, instance.name); !s) return s.error();
    if (Status s = backend->enterLeaf(); !s) return s.error();
    if (Status s = backend->makeLevels(); !s) return s.error();
    if (Status s = backend->lock_.acquire({backend->instance_}); !s) return s.error();
    backend->enableControllers();
    if (Status s = backend->applyTotal(backend->instance_, instance.total); !s) {
      return Error{"the instance's aggregate caps: " + s.error().message, s.error().sys_errno};
    }
    return std::unique_ptr<CgroupBackend>(std::move(backend));
  }

  // A clean stop leaves no empty level behind; a level still holding a job (or, later, one kept
  // for re-adoption) stays: rmdir refuses it.
  ~V2Backend() override {
    if (!lock_.held()) return;  // another daemon's levels, or none made
    for (const std::string& user : listSubdirs(instance_)) {
      (void)::rmdir((instance_ + "/" + user).c_str());
    }
    (void)::rmdir(instance_.c_str());
  }

  std::string name() const override { return "v2"; }

  bool has(Controller c) const override { return contains(enabled_, controllerName(c)); }

  JobsUsage jobsUsage() const override { return v2JobsUsage(instance_); }

  std::vector<std::string> details() const override {
    std::vector<std::string> d{"cgroup backend: v2", "jobs: " + instance_};
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
    uint64_t quota = 0;
    if (limits.cpu_millicores > 0) {
      auto q = cpuQuotaUs(limits.cpu_millicores);
      if (!q) return q.error();
      quota = *q;
    }
    auto disks = resolveIoLimits(limits.io);
    if (!disks) return disks.error();
    if (Status s = prepareUser(user, user_total); !s) return s.error();

    std::string path = instance_ + "/" + user + "/" + job_id;
    if (Status s = makeJobDir(path, user, user_total); !s) return s.error();
    Status applied = writeV2JobLimits(path, limits, quota, *disks);
    UniqueFd dir(::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (applied && !dir) applied = sysError("open " + path);
    if (!applied) {
      (void)removeTree(path);  // undo; the limit error is the one to report
      return applied.error();
    }
    return std::unique_ptr<JobCgroup>(
        std::make_unique<V2Job>(path, jobRel(user, job_id), std::move(dir)));
  }

  Result<std::unique_ptr<JobCgroup>> adopt(const std::string& job_id,
                                           const std::string& user) override {
    if (Status s = validateJobId(job_id); !s) return s.error();
    if (Status s = validateUser(user); !s) return s.error();
    std::string path = instance_ + "/" + user + "/" + job_id;
    UniqueFd dir(::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!dir) return sysError("adopt the job cgroup " + path);
    return std::unique_ptr<JobCgroup>(
        std::make_unique<V2Job>(path, jobRel(user, job_id), std::move(dir)));
  }

  size_t removeLeftovers(const std::set<std::string>& keep) override {
    size_t removed = 0;
    for (const std::string& user : listSubdirs(instance_)) {
      std::string user_dir = instance_ + "/" + user;
      for (const std::string& n : listSubdirs(user_dir)) {
        if (keep.count(n) != 0) continue;
        std::string path = user_dir + "/" + n;
        V2Job job(path, jobRel(user, n),
                  UniqueFd(::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC)));
        if (removeLeftover(job, user + "/" + n, notes_)) ++removed;
      }
      // An empty user level goes too; its next job makes it again, with the caps.
      if (listSubdirs(user_dir).empty()) (void)::rmdir(user_dir.c_str());
      users_ready_.erase(user);
    }
    return removed;
  }

 private:
  V2Backend() = default;

  std::string jobRel(const std::string& user, const std::string& job_id) const {
    return joinRel(joinRel(instance_rel_, user), job_id);
  }

  // Finds our own cgroup (the 0:: line) under mount_point.
  Status locate(const std::string& mount_point, const std::string& instance) {
    struct statfs sfs {};
    if (::statfs(mount_point.c_str(), &sfs) != 0) return sysError("statfs " + mount_point);
    if (static_cast<uint64_t>(sfs.f_type) != CGROUP2_SUPER_MAGIC) {
      return Error{mount_point + " is not a cgroup2 mount"};
    }
    auto lines = readProcCgroup();
    if (!lines) return lines.error();
    auto line = std::find_if(lines->begin(), lines->end(), [](const ProcCgroupLine& l) {
      return l.hierarchy_id == "0" && l.controllers.empty();
    });
    if (line == lines->end()) return Error{"/proc/self/cgroup has no cgroup2 (0::) line"};
    current_rel_ = line->path;
    own_rel_ = current_rel_;
    // Already in our leaf (a second backend in one process, or a re-exec): own is its parent.
    size_t slash = own_rel_.rfind('/');
    if (slash != std::string::npos && own_rel_.substr(slash + 1) == kSupervisorLeaf) {
      own_rel_ = slash == 0 ? "/" : own_rel_.substr(0, slash);
    }
    auto mounts = readCgroupMounts();
    if (!mounts) return mounts.error();
    auto m = std::find_if(mounts->begin(), mounts->end(), [&](const CgroupMount& c) {
      return c.v2 && c.mount_point == mount_point;
    });
    CgroupMount mount = m != mounts->end() ? *m : CgroupMount{mount_point, "/", true, {}};
    auto own = pathUnderMount(mount, own_rel_);
    if (!own) return own.error();
    own_ = *own;
    root_ = own_ + "/" + std::string(kJobsDir);
    instance_ = root_ + "/" + instance;
    instance_rel_ = joinRel(joinRel(own_rel_, kJobsDir), instance);
    return okStatus();
  }

  // No-internal-process rule: a cgroup that hands controllers to its children holds no process
  // itself, so the daemon lives in the <own>/supervisor leaf. Only this process moves: anything
  // else in <own> is not ours to move (enabling controllers then fails, and details() says so).
  Status enterLeaf() {
    std::string leaf = own_ + "/" + std::string(kSupervisorLeaf);
    if (Status s = makeDir(leaf); !s) return s;
    if (current_rel_ == joinRel(own_rel_, kSupervisorLeaf)) return okStatus();
    return writeFile(leaf + "/cgroup.procs", std::to_string(::getpid()));
  }

  Status makeLevels() {
    if (Status s = makeDir(root_); !s) return s;
    return makeDir(instance_);
  }

  // Enables what the parent offers at every level down to the instance (the no-internal-process
  // rule makes each level hand them on); whatever stays off is reported and refused per job.
  void enableControllers() {
    auto offered = readFile(own_ + "/cgroup.controllers");
    if (!offered) {
      notes_.push_back("cannot read controllers: " + offered.error().message);
      return;
    }
    std::vector<std::string> available = words(*offered);
    for (std::string_view c : kV2Controllers) {
      if (!contains(available, c)) continue;
      std::string plus = "+" + std::string(c);
      for (const std::string& dir : {own_, root_, instance_}) {
        if (Status s = writeFile(dir + "/cgroup.subtree_control", plus); !s) {
          notes_.push_back("cannot enable " + std::string(c) + ": " + s.error().message +
                           (s.error().sys_errno == EBUSY
                                ? " (other processes in " + own_ + "? see docs/operations.md)"
                                : ""));
          break;
        }
      }
    }
    if (auto on = readFile(instance_ + "/cgroup.subtree_control"); on) enabled_ = words(*on);
  }

  // The user's level, once per backend life: its directory, the controllers handed on to its
  // jobs, and the user's aggregate caps.
  Status prepareUser(const std::string& user, const AggregateLimits& total) {
    if (users_ready_.count(user) != 0) return okStatus();
    std::string dir = instance_ + "/" + user;
    if (Status s = makeDir(dir); !s) return s;
    for (const std::string& c : enabled_) {
      if (Status s = writeFile(dir + "/cgroup.subtree_control", "+" + c); !s) return s;
    }
    if (Status s = applyTotal(dir, total); !s) {
      return Error{"the aggregate caps of user " + user + ": " + s.error().message,
                   s.error().sys_errno};
    }
    users_ready_.insert(user);
    return okStatus();
  }

  // The job's directory; the user's level is made again if it went away under us (an
  // administrator's rmdir of an empty one).
  Status makeJobDir(const std::string& path, const std::string& user,
                    const AggregateLimits& user_total) {
    if (::mkdir(path.c_str(), 0755) == 0) return okStatus();
    if (errno != ENOENT) return sysError("mkdir " + path);
    users_ready_.erase(user);
    if (Status s = prepareUser(user, user_total); !s) return s;
    if (::mkdir(path.c_str(), 0755) != 0) return sysError("mkdir " + path);
    return okStatus();
  }

  // An aggregate cap needs its controller: without it the cap is noted, not enforced (the
  // per-job limits of that kind are refused anyway).
  Status applyTotal(const std::string& dir, const AggregateLimits& t) {
    auto enforce = [&](bool wanted, std::string_view c) {
      return capEnforced(wanted, c, enabled_, notes_);
    };
    if (enforce(t.cpu_millicores > 0, "cpu")) {
      auto q = cpuQuotaUs(t.cpu_millicores);
      if (!q) return q.error();
      std::string v = std::to_string(*q) + " " + std::to_string(kCpuPeriodUs);
      if (Status s = writeFile(dir + "/cpu.max", v); !s) return s;
    }
    if (enforce(t.memory_bytes > 0, "memory")) {
      if (Status s = writeFile(dir + "/memory.max", std::to_string(t.memory_bytes)); !s) {
        return s;
      }
      // Swap is counted into memory limits, as for each job.
      if (fileExists(dir + "/memory.swap.max")) {
        if (Status s = writeFile(dir + "/memory.swap.max", "0"); !s) return s;
      }
    }
    if (enforce(t.pids > 0, "pids")) {
      if (Status s = writeFile(dir + "/pids.max", std::to_string(t.pids)); !s) return s;
    }
    return okStatus();
  }

  std::string own_rel_, current_rel_;
  std::string own_;           // the daemon's own cgroup
  std::string root_;          // <own>/jobworker
  std::string instance_;      // <own>/jobworker/<instance>
  std::string instance_rel_;  // as /proc/PID/cgroup names it
  std::vector<std::string> enabled_;
  std::vector<std::string> notes_;
  std::set<std::string> users_ready_;
  InstanceLock lock_;
};

}  // namespace

Status writeV2JobLimits(const std::string& path, const CgroupLimits& limits, uint64_t quota_us,
                        const std::vector<DiskLimit>& disks) {
  if (limits.cpu_millicores > 0) {
    std::string v = std::to_string(quota_us) + " " + std::to_string(kCpuPeriodUs);
    if (Status s = writeFile(path + "/cpu.max", v); !s) return s;
  }
  if (limits.memory_bytes > 0) {
    if (Status s = writeFile(path + "/memory.max", std::to_string(limits.memory_bytes)); !s) {
      return s;
    }
    // No swap: otherwise the job pages out instead of meeting its limit.
    if (fileExists(path + "/memory.swap.max")) {
      if (Status s = writeFile(path + "/memory.swap.max", "0"); !s) return s;
    }
  }
  if (limits.pids > 0) {
    if (Status s = writeFile(path + "/pids.max", std::to_string(limits.pids)); !s) return s;
  }
  for (const DiskLimit& d : disks) {
    std::string v = diskKey(d.disk);
    const std::pair<const char*, uint64_t> keys[] = {{" rbps=", d.read_bps},
                                                     {" wbps=", d.write_bps},
                                                     {" riops=", d.read_iops},
                                                     {" wiops=", d.write_iops}};
    for (const auto& [key, value] : keys) {
      if (value > 0) v += key + std::to_string(value);
    }
    if (Status s = writeFile(path + "/io.max", v); !s) {
      return Error{"io limit on " + d.device + ": " + s.error().message, s.error().sys_errno};
    }
  }
  return okStatus();
}

std::unique_ptr<JobCgroup> makeV2Job(std::string path, std::string rel, UniqueFd dir) {
  return std::make_unique<V2Job>(std::move(path), std::move(rel), std::move(dir));
}

Result<std::unique_ptr<CgroupBackend>> openV2Backend(const std::string& mount_point,
                                                     const CgroupInstance& instance) {
  return V2Backend::open(mount_point, instance);
}

}  // namespace jw::supervisor::cg
