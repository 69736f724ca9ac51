// jobworkerd: cgroup v2 backend (daemon in <own>/supervisor, jobs in <own>/jobworker/<id>).
#include <fcntl.h>
#include <linux/magic.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <algorithm>

#include "common/log.h"
#include "supervisor/cgroup/cgroup_impl.h"

namespace jw::supervisor::cg {
namespace {

constexpr std::string_view kWanted[] = {"cpu", "memory", "io", "pids"};

std::string joinRel(const std::string& parent, std::string_view child) {
  return (parent == "/" ? "" : parent) + "/" + std::string(child);
}

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

}  // namespace

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
  static Result<std::unique_ptr<CgroupBackend>> open(const std::string& mount_point) {
    auto backend = std::unique_ptr<V2Backend>(new V2Backend());
    if (Status s = backend->locate(mount_point); !s) return s.error();
    if (Status s = backend->enterLeaf(); !s) return s.error();
    backend->enableControllers();
    if (Status s = backend->prepare(); !s) return s.error();
    return std::unique_ptr<CgroupBackend>(std::move(backend));
  }

  std::string name() const override { return "v2"; }

  bool has(Controller c) const override { return contains(enabled_, controllerName(c)); }

  JobsUsage jobsUsage() const override {
    JobsUsage u;
    if (auto t = readFile(base_ + "/memory.current"); t) u.memory_bytes = parseU64(*t);
    if (auto t = readFile(base_ + "/cpu.stat"); t) u.cpu_us = keyedValue(*t, "usage_usec");
    if (auto t = readFile(base_ + "/pids.current"); t) u.pids = parseU64(*t);
    return u;
  }

  std::vector<std::string> details() const override {
    std::vector<std::string> d{"cgroup backend: v2", "jobs: " + base_};
    std::string on;
    for (const std::string& c : enabled_) on += (on.empty() ? "" : " ") + c;
    d.push_back("controllers: " + (on.empty() ? std::string("none") : on));
    for (std::string_view c : kWanted) {
      if (!contains(enabled_, c)) d.push_back("missing controller: " + std::string(c));
    }
    d.insert(d.end(), notes_.begin(), notes_.end());
    return d;
  }

  Result<std::unique_ptr<JobCgroup>> create(const std::string& job_id,
                                            const CgroupLimits& limits) override {
    if (Status s = validateJobId(job_id); !s) return s.error();
    if (Status s = checkControllers(limits); !s) return s.error();
    uint64_t quota = 0;
    if (limits.cpu_millicores > 0) {
      auto q = cpuQuotaUs(limits.cpu_millicores);
      if (!q) return q.error();
      quota = *q;
    }
    auto disks = resolveIoLimits(limits.io);
    if (!disks) return disks.error();

    std::string path = base_ + "/" + job_id;
    if (::mkdir(path.c_str(), 0755) != 0) return sysError("mkdir " + path);
    Status applied = applyLimits(path, limits, quota, *disks);
    UniqueFd dir(::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (applied && !dir) applied = sysError("open " + path);
    if (!applied) {
      (void)removeTree(path);  // undo; the limit error is the one to report
      return applied.error();
    }
    return std::unique_ptr<JobCgroup>(
        std::make_unique<V2Job>(path, joinRel(base_rel_, job_id), std::move(dir)));
  }

 private:
  V2Backend() = default;

  static std::string_view controllerName(Controller c) {
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

  // Finds our own cgroup (the 0:: line) under mount_point.
  Status locate(const std::string& mount_point) {
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
    base_ = own_ + "/" + std::string(kJobsDir);
    base_rel_ = joinRel(own_rel_, kJobsDir);
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

  // Enables what the parent offers; whatever stays off is reported and refused per job.
  void enableControllers() {
    auto offered = readFile(own_ + "/cgroup.controllers");
    if (!offered) {
      notes_.push_back("cannot read controllers: " + offered.error().message);
      return;
    }
    std::vector<std::string> available = words(*offered);
    if (Status s = makeDir(base_); !s) {
      notes_.push_back(s.error().message);
      return;
    }
    for (std::string_view c : kWanted) {
      if (!contains(available, c)) continue;
      std::string plus = "+" + std::string(c);
      for (const std::string& dir : {own_, base_}) {
        if (Status s = writeFile(dir + "/cgroup.subtree_control", plus); !s) {
          notes_.push_back("cannot enable " + std::string(c) + ": " + s.error().message +
                           (s.error().sys_errno == EBUSY
                                ? " (other processes in " + own_ + "? see docs/operations.md)"
                                : ""));
          break;
        }
      }
    }
    if (auto on = readFile(base_ + "/cgroup.subtree_control"); on) enabled_ = words(*on);
  }

  Status prepare() {
    if (Status s = makeDir(base_); !s) return s;
    auto exclusive = locks_.acquire({base_});
    if (!exclusive) return exclusive.error();
    if (!*exclusive) {
      notes_.push_back("leftover cleanup skipped: another jobworkerd uses " + base_);
      return okStatus();
    }
    for (const std::string& n : listSubdirs(base_)) {
      std::string path = base_ + "/" + n;
      V2Job job(path, joinRel(base_rel_, n),
                UniqueFd(::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC)));
      Status killed = job.killAll();
      waitUntil([&] { return job.empty(); }, 2 * kFreezeWait);
      Status removed = job.remove();
      if (killed && removed) {
        log::notice("removed leftover job cgroup " + log::quote(n) + " of a previous run");
      } else {
        std::string why = !killed ? killed.error().message : removed.error().message;
        log::warning("leftover job cgroup " + log::quote(n) + " not removed: " + why);
        notes_.push_back("leftover not removed: " + n);
      }
    }
    return locks_.share();
  }

  Status checkControllers(const CgroupLimits& limits) const {
    auto need = [&](bool wanted, Controller c, const char* limit) -> Status {
      if (wanted && !has(c)) {
        return Error{std::string(limit) + " limit requested but the " +
                     std::string(controllerName(c)) +
                     " controller is not enabled for jobs (cgroup v2, " + base_ + ")"};
      }
      return okStatus();
    };
    if (Status s = need(limits.cpu_millicores > 0, Controller::kCpu, "cpu"); !s) return s;
    if (Status s = need(limits.memory_bytes > 0, Controller::kMemory, "memory"); !s) return s;
    if (Status s = need(limits.pids > 0, Controller::kPids, "pids"); !s) return s;
    return need(!limits.io.empty(), Controller::kIo, "io");
  }

  static Status applyLimits(const std::string& path, const CgroupLimits& limits, uint64_t quota_us,
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

  std::string own_rel_, current_rel_;
  std::string own_, base_, base_rel_;
  std::vector<std::string> enabled_;
  std::vector<std::string> notes_;
  BaseLocks locks_;
};

}  // namespace

Result<std::unique_ptr<CgroupBackend>> openV2Backend(const std::string& mount_point) {
  return V2Backend::open(mount_point);
}

}  // namespace jw::supervisor::cg
