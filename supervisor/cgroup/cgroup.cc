// jobworkerd: picks the cgroup backend (v2 only if /sys/fs/cgroup is cgroup2); shared helpers.
#include <dirent.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <set>

#include "common/fd.h"
#include "common/io.h"
#include "common/log.h"
#include "common/names.h"
#include "supervisor/cgroup/cgroup_impl.h"

namespace jw::supervisor {

Result<std::unique_ptr<CgroupBackend>> CgroupBackend::detect(const CgroupInstance& instance) {
  if (Status s = cg::validateInstance(instance.name); !s) return s.error();
  struct statfs sfs {};
  if (::statfs("/sys/fs/cgroup", &sfs) != 0) return sysError("statfs /sys/fs/cgroup");
  // A hybrid host's /sys/fs/cgroup/unified is cgroup2 too, but without controllers: only a
  // cgroup2 /sys/fs/cgroup itself means the unified hierarchy is the real one.
  if (static_cast<uint64_t>(sfs.f_type) == CGROUP2_SUPER_MAGIC) {
    // systemd as PID 1 owns the tree above its units (sd_booted()'s test): jobs get scopes of
    // their own from it; under a v1 systemd host, and without systemd, cgroupfs as before.
    struct stat st {};
    if (::lstat("/run/systemd/system", &st) == 0 && S_ISDIR(st.st_mode)) {
      auto backend = cg::openSystemdBackend(instance);
      if (!backend) return Error{"systemd placement: " + backend.error().message};
      return backend;
    }
    return cg::openV2Backend("/sys/fs/cgroup", instance);
  }
  return cg::openV1Backend(instance);
}

Result<std::unique_ptr<CgroupBackend>> CgroupBackend::openV2(const std::string& mount_point,
                                                             const CgroupInstance& instance) {
  if (Status s = cg::validateInstance(instance.name); !s) return s.error();
  return cg::openV2Backend(mount_point, instance);
}

std::string cgroupInstanceName(const std::string& canonical_state_dir) {
  // FNV-1a, 64 bits: fixed here (std::hash may change between library versions).
  uint64_t hash = 0xcbf29ce484222325ULL;
  for (unsigned char c : canonical_state_dir) {
    hash ^= c;
    hash *= 0x100000001b3ULL;
  }
  std::string_view path = canonical_state_dir;
  while (path.size() > 1 && path.back() == '/') path.remove_suffix(1);
  std::string_view last = path.substr(path.rfind('/') + 1);
  std::string readable;
  for (char c : last.substr(0, 32)) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    bool keep = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
    readable.push_back(keep ? c : '_');
  }
  if (readable.empty()) readable = "root";
  char hex[9];
  std::snprintf(hex, sizeof hex, "%08x", static_cast<unsigned>(hash >> 32));
  return readable + "_" + hex;
}

Status checkLimits(const CgroupLimits& limits) {
  if (limits.cpu_millicores > 0) {
    if (auto q = cg::cpuQuotaUs(limits.cpu_millicores); !q) return q.error();
  }
  if (auto disks = cg::resolveIoLimits(limits.io); !disks) return disks.error();
  return okStatus();
}

namespace cg {

// --- Files -----------------------------------------------------------------------------------

namespace {
// cgroup.procs of a busy cgroup is the largest file we read; nothing legitimate comes near this.
constexpr size_t kMaxFileBytes = 16 << 20;

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\n' || s.front() == '\t')) {
    s.remove_prefix(1);
  }
  while (!s.empty() && (s.back() == ' ' || s.back() == '\n' || s.back() == '\t')) {
    s.remove_suffix(1);
  }
  return s;
}

std::vector<std::string_view> splitLines(std::string_view text) {
  std::vector<std::string_view> lines;
  while (!text.empty()) {
    size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    if (!line.empty()) lines.push_back(line);
    if (nl == std::string_view::npos) break;
    text.remove_prefix(nl + 1);
  }
  return lines;
}

std::vector<std::string> splitOn(std::string_view s, char sep) {
  std::vector<std::string> parts;
  while (true) {
    size_t at = s.find(sep);
    parts.emplace_back(s.substr(0, at));
    if (at == std::string_view::npos) break;
    s.remove_prefix(at + 1);
  }
  return parts;
}
}  // namespace

Result<std::string> readFile(const std::string& path) { return jw::readFile(path, kMaxFileBytes); }

Status writeFile(const std::string& path, std::string_view value) {
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
  if (!fd) return sysError("open " + path);
  // cgroupfs takes one value per write(): never split it.
  ssize_t n;
  do {
    n = ::write(fd.get(), value.data(), value.size());
  } while (n < 0 && errno == EINTR);
  if (n < 0) return sysError("write \"" + std::string(value) + "\" to " + path);
  if (static_cast<size_t>(n) != value.size()) {
    return Error{"write \"" + std::string(value) + "\" to " + path + ": short write"};
  }
  return okStatus();
}

bool fileExists(const std::string& path) { return ::access(path.c_str(), F_OK) == 0; }

Status makeDir(const std::string& path) {
  if (::mkdir(path.c_str(), 0755) == 0) return okStatus();
  if (errno != EEXIST) return sysError("mkdir " + path);
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return sysError("stat " + path);
  if (!S_ISDIR(st.st_mode)) return Error{"mkdir " + path + ": exists and is not a directory"};
  return okStatus();
}

std::vector<std::string> listSubdirs(const std::string& path) {
  std::vector<std::string> names;
  DIR* dir = ::opendir(path.c_str());
  if (dir == nullptr) return names;
  while (struct dirent* e = ::readdir(dir)) {
    std::string_view name = e->d_name;
    if (name == "." || name == "..") continue;
    bool is_dir = e->d_type == DT_DIR;
    if (e->d_type == DT_UNKNOWN) {
      struct stat st {};
      is_dir = ::stat((path + "/" + e->d_name).c_str(), &st) == 0 && S_ISDIR(st.st_mode);
    }
    if (is_dir) names.emplace_back(name);
  }
  ::closedir(dir);
  std::sort(names.begin(), names.end());
  return names;
}

Status removeTree(const std::string& path) {
  // A job may have made its own sub-cgroups (a root job can): cgroupfs rmdir needs them gone first.
  for (const std::string& child : listSubdirs(path)) {
    if (Status s = removeTree(path + "/" + child); !s) return s;
  }
  if (::rmdir(path.c_str()) != 0 && errno != ENOENT) return sysError("rmdir " + path);
  return okStatus();
}

std::optional<uint64_t> parseU64(std::string_view text) {
  text = trim(text);
  uint64_t v = 0;
  const char* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(text.data(), end, v);
  if (ec != std::errc() || ptr != end) return std::nullopt;  // empty, a sign, junk or overflow
  return v;
}

std::optional<uint64_t> keyedValue(std::string_view text, std::string_view key) {
  for (std::string_view line : splitLines(text)) {
    if (line.size() > key.size() && line.substr(0, key.size()) == key && line[key.size()] == ' ') {
      return parseU64(line.substr(key.size() + 1));
    }
  }
  return std::nullopt;
}

std::vector<pid_t> parsePids(std::string_view text) {
  std::vector<pid_t> pids;
  for (std::string_view line : splitLines(text)) {
    if (auto v = parseU64(line); v && *v > 0 && *v <= INT32_MAX) {
      pids.push_back(static_cast<pid_t>(*v));
    }
  }
  return pids;
}

Result<std::vector<pid_t>> readPidsRecursive(const std::string& path) {
  auto text = readFile(path + "/cgroup.procs");
  if (!text) {
    // The cgroup is already gone: nothing left in it.
    if (text.error().sys_errno == ENOENT) return std::vector<pid_t>{};
    return text.error();
  }
  std::vector<pid_t> pids = parsePids(*text);
  for (const std::string& child : listSubdirs(path)) {
    auto more = readPidsRecursive(path + "/" + child);
    if (!more) return more.error();
    pids.insert(pids.end(), more->begin(), more->end());
  }
  return pids;
}

// --- /proc parsing ---------------------------------------------------------------------------

std::vector<ProcCgroupLine> parseProcCgroup(std::string_view text) {
  std::vector<ProcCgroupLine> out;
  for (std::string_view line : splitLines(text)) {
    size_t c1 = line.find(':');
    if (c1 == std::string_view::npos) continue;
    size_t c2 = line.find(':', c1 + 1);
    if (c2 == std::string_view::npos) continue;
    ProcCgroupLine l;
    l.hierarchy_id = std::string(line.substr(0, c1));
    std::string_view ctrls = line.substr(c1 + 1, c2 - c1 - 1);
    if (!ctrls.empty()) l.controllers = splitOn(ctrls, ',');
    l.path = std::string(line.substr(c2 + 1));  // a path may itself contain ':'
    out.push_back(std::move(l));
  }
  return out;
}

Result<std::vector<ProcCgroupLine>> readProcCgroup(pid_t pid) {
  std::string path = pid == 0 ? "/proc/self/cgroup" : "/proc/" + std::to_string(pid) + "/cgroup";
  auto text = readFile(path);
  if (!text) return text.error();
  return parseProcCgroup(*text);
}

namespace {
std::string unescapeMountField(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 3 < s.size() && s[i + 1] >= '0' && s[i + 1] <= '3' && s[i + 2] >= '0' &&
        s[i + 2] <= '7' && s[i + 3] >= '0' && s[i + 3] <= '7') {
      out.push_back(
          static_cast<char>((s[i + 1] - '0') * 64 + (s[i + 2] - '0') * 8 + (s[i + 3] - '0')));
      i += 3;
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}
}  // namespace

std::vector<CgroupMount> parseCgroupMounts(std::string_view mountinfo) {
  std::vector<CgroupMount> out;
  for (std::string_view line : splitLines(mountinfo)) {
    // id parent maj:min root mount-point options [optional...] - fstype source super-options
    size_t sep = line.find(" - ");
    if (sep == std::string_view::npos) continue;
    std::vector<std::string> head = splitOn(line.substr(0, sep), ' ');
    std::vector<std::string> tail = splitOn(line.substr(sep + 3), ' ');
    if (head.size() < 6 || tail.size() < 3) continue;
    CgroupMount m;
    if (tail[0] == "cgroup2") {
      m.v2 = true;
    } else if (tail[0] != "cgroup") {
      continue;
    }
    m.root = unescapeMountField(head[3]);
    m.mount_point = unescapeMountField(head[4]);
    if (!m.v2) {
      for (std::string& opt : splitOn(tail[2], ',')) {
        // rw/ro and named hierarchies (name=systemd) are not controllers; harmless extras such
        // as clone_children never match a controller we look for.
        if (opt == "rw" || opt == "ro" || opt.find('=') != std::string::npos) continue;
        m.controllers.push_back(std::move(opt));
      }
    }
    out.push_back(std::move(m));
  }
  return out;
}

Result<std::vector<CgroupMount>> readCgroupMounts() {
  auto text = readFile("/proc/self/mountinfo");
  if (!text) return text.error();
  return parseCgroupMounts(*text);
}

Result<std::string> pathUnderMount(const CgroupMount& m, const std::string& path) {
  if (path.empty() || path[0] != '/') {
    return Error{"cgroup path \"" + path + "\" is not absolute (outside our cgroup namespace?)"};
  }
  std::string rel;
  if (m.root == "/") {
    rel = path;
  } else if (path == m.root) {
    rel = "/";
  } else if (path.compare(0, m.root.size() + 1, m.root + "/") == 0) {
    rel = path.substr(m.root.size());
  } else {
    return Error{"cgroup " + path + " is outside the part " + m.root + " mounted at " +
                 m.mount_point};
  }
  return rel == "/" ? m.mount_point : m.mount_point + rel;
}

// --- Validation and devices ------------------------------------------------------------------

Status validateJobId(const std::string& job_id) {
  if (!names::validJobId(job_id)) {
    return Error{"job id " + log::quote(job_id) + " is not a lowercase UUIDv4"};
  }
  return okStatus();
}

Status validateUser(const std::string& user) {
  if (!names::validUserName(user)) {
    return Error{"user name " + log::quote(user) + " is not " +
                 std::string(names::kUserNamePattern)};
  }
  return okStatus();
}

Status validateInstance(const std::string& name) {
  bool ok = !name.empty() && name.size() <= 48 && std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
  });
  if (!ok) return Error{"cgroup instance name " + log::quote(name) + " is not [a-z0-9_]{1,48}"};
  return okStatus();
}

std::string diskKey(const DiskId& d) {
  return std::to_string(d.major) + ":" + std::to_string(d.minor);
}

namespace {
Result<DiskId> parseDevFile(const std::string& path) {
  auto text = readFile(path);
  if (!text) return text.error();
  std::vector<std::string> parts = splitOn(trim(*text), ':');
  if (parts.size() != 2) return Error{path + ": not MAJ:MIN"};
  auto maj = parseU64(parts[0]);
  auto min = parseU64(parts[1]);
  if (!maj || !min || *maj > UINT32_MAX || *min > UINT32_MAX) return Error{path + ": not MAJ:MIN"};
  return DiskId{static_cast<unsigned>(*maj), static_cast<unsigned>(*min)};
}
}  // namespace

Result<DiskId> resolveDisk(const std::string& device_path) {
  // Root stats this user-supplied path: keep it to /dev so the answer says nothing about files
  // elsewhere.
  if (device_path.compare(0, 5, "/dev/") != 0 || device_path.find("/../") != std::string::npos ||
      device_path.size() > 4096) {
    return Error{"io device \"" + device_path + "\" must be a path under /dev/"};
  }
  struct stat st {};
  if (::stat(device_path.c_str(), &st) != 0) return sysError("io device " + device_path);
  if (!S_ISBLK(st.st_mode)) return Error{"io device " + device_path + " is not a block device"};
  DiskId id{::major(st.st_rdev), ::minor(st.st_rdev)};
  std::string sys = "/sys/dev/block/" + diskKey(id);
  if (!fileExists(sys)) return Error{"io device " + device_path + ": " + sys + " missing"};
  if (fileExists(sys + "/partition")) {
    // The kernel throttles whole disks only; a partition's limit applies to its disk (stricter
    // for the job, never looser).
    auto parent = parseDevFile(sys + "/../dev");
    if (!parent) {
      return Error{"io device " + device_path +
                   " is a partition whose disk cannot be found: " + parent.error().message};
    }
    return *parent;
  }
  return id;
}

Result<std::vector<DiskLimit>> resolveIoLimits(const std::vector<protocol::IoLimit>& io) {
  std::vector<DiskLimit> out;
  auto merge = [](uint64_t a, uint64_t b) {
    if (a == 0) return b;
    if (b == 0) return a;
    return std::min(a, b);
  };
  for (const protocol::IoLimit& l : io) {
    if (l.read_bps == 0 && l.write_bps == 0 && l.read_iops == 0 && l.write_iops == 0) continue;
    auto disk = resolveDisk(l.device);
    if (!disk) return disk.error();
    auto same =
        std::find_if(out.begin(), out.end(), [&](const DiskLimit& d) { return d.disk == *disk; });
    if (same == out.end()) {
      out.push_back(DiskLimit{*disk, l.device, l.read_bps, l.write_bps, l.read_iops, l.write_iops});
    } else {
      same->read_bps = merge(same->read_bps, l.read_bps);
      same->write_bps = merge(same->write_bps, l.write_bps);
      same->read_iops = merge(same->read_iops, l.read_iops);
      same->write_iops = merge(same->write_iops, l.write_iops);
    }
  }
  return out;
}

Result<uint64_t> cpuQuotaUs(uint32_t millicores) {
  uint64_t quota = static_cast<uint64_t>(millicores) * kCpuPeriodUs / 1000;
  if (quota < kMinCpuQuotaUs) {
    return Error{"cpu limit of " + std::to_string(millicores) +
                 " millicores is below the kernel's minimum of 0.01 cores"};
  }
  return quota;
}

// --- Killing ---------------------------------------------------------------------------------

namespace {
// Raw syscalls: Debian 12's glibc 2.36 <sys/pidfd.h> lacks extern "C", so its wrappers do not link
// from C++.
int pidfdOpen(pid_t pid) { return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0u)); }
int pidfdKill(int pidfd) {
  return static_cast<int>(::syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, nullptr, 0u));
}
}  // namespace

bool pidInCgroup(pid_t pid, const Membership& m) {
  auto lines = readProcCgroup(pid);
  if (!lines) return false;
  for (const ProcCgroupLine& l : *lines) {
    bool right_hierarchy = m.controller.empty()
                               ? (l.hierarchy_id == "0" && l.controllers.empty())
                               : std::find(l.controllers.begin(), l.controllers.end(),
                                           m.controller) != l.controllers.end();
    if (!right_hierarchy) continue;
    return l.path == m.path || l.path.compare(0, m.path.size() + 1, m.path + "/") == 0;
  }
  return false;
}

Status killMember(pid_t pid, const Membership& m) {
  UniqueFd pidfd(pidfdOpen(pid));
  if (!pidfd) {
    if (errno == ESRCH) return okStatus();  // gone already
    if (errno != ENOSYS) return sysError("pidfd_open " + std::to_string(pid));
    // Kernel < 5.3: a plain kill after the membership check (a tiny reuse window remains).
    if (pidInCgroup(pid, m) && ::kill(pid, SIGKILL) != 0 && errno != ESRCH) {
      return sysError("kill " + std::to_string(pid));
    }
    return okStatus();
  }
  // The pidfd pins the process: if this check sees our cgroup, the signal reaches that process.
  if (!pidInCgroup(pid, m)) return okStatus();
  if (pidfdKill(pidfd.get()) != 0 && errno != ESRCH) {
    return sysError("pidfd_send_signal SIGKILL " + std::to_string(pid));
  }
  return okStatus();
}

bool removeLeftover(JobCgroup& job, const std::string& name, std::vector<std::string>& notes) {
  Status killed = job.killAll();
  waitUntil([&] { return job.empty(); }, 2 * kFreezeWait);
  Status removed = job.remove();
  if (killed && removed) {
    log::notice("removed leftover job cgroup " + log::quote(name) + " of a previous run");
    return true;
  }
  std::string why = !killed ? killed.error().message : removed.error().message;
  log::warning("leftover job cgroup " + log::quote(name) + " not removed: " + why);
  notes.push_back("leftover not removed: " + name);
  return false;
}

bool waitUntil(const std::function<bool()>& done, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  long nap_ns = 1'000'000;
  while (true) {
    if (done()) return true;
    if (std::chrono::steady_clock::now() >= deadline) return done();
    struct timespec ts {
      0, nap_ns
    };
    ::nanosleep(&ts, nullptr);
    nap_ns = std::min(nap_ns * 2, 20'000'000L);
  }
}

Status freezeKillThaw(const FreezeOps& ops) {
  // An empty cgroup stays empty (only its members fork into it, only we move pids in): no freeze
  // and thaw round trip for a job that has already ended, the common case at its exit.
  if (auto members = ops.list(); members && members->empty()) return okStatus();
  auto deadline = std::chrono::steady_clock::now() + 2 * kFreezeWait;
  std::set<pid_t> killed;
  while (true) {
    // Without a freeze we still kill (racing forks) rather than leave the job running.
    if (Status s = ops.freeze(); !s) {
      log::warning("cgroup kill without freezing: " + s.error().message);
    } else if (!waitUntil(ops.frozen, kFreezeWait)) {
      log::warning("cgroup " + ops.membership.path + " not frozen after " +
                   std::to_string(kFreezeWait.count()) + " ms; killing anyway");
    }
    auto pids = ops.list();
    Status first_error = okStatus();
    if (pids) {
      for (pid_t p : *pids) {
        Status s = killMember(p, ops.membership);
        if (!s && first_error) first_error = s;
        killed.insert(p);
      }
    }
    Status thawed = ops.thaw();
    if (!pids) return pids.error();
    if (!first_error) return first_error;
    if (!thawed) return thawed;
    // Killed processes stay listed until they have exited; only a pid never seen before means
    // something forked past the freeze, and needs another round.
    auto again = ops.list();
    if (!again) return again.error();
    bool fresh =
        std::any_of(again->begin(), again->end(), [&](pid_t p) { return killed.count(p) == 0; });
    if (!fresh) return okStatus();
    if (std::chrono::steady_clock::now() >= deadline) {
      return Error{"cgroup " + ops.membership.path +
                   ": new processes keep appearing while killing"};
    }
  }
}

// --- The instance lock ------------------------------------------------------------------------

Status InstanceLock::acquire(const std::vector<std::string>& dirs) {
  std::vector<UniqueFd> fds;
  for (const std::string& d : dirs) {
    UniqueFd fd(::open(d.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!fd) return sysError("open " + d);
    if (::flock(fd.get(), LOCK_EX | LOCK_NB) != 0) {
      if (errno == EWOULDBLOCK) {
        return Error{"another jobworkerd runs this instance (same state dir): " + d + " is locked"};
      }
      return sysError("flock " + d);
    }
    fds.push_back(std::move(fd));
  }
  fds_ = std::move(fds);
  return okStatus();
}

}  // namespace cg
}  // namespace jw::supervisor
