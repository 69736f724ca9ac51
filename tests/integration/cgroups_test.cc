// Integration test process (root): the cgroup backends against the real kernel, no daemon.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/magic.h>
#include <linux/sched.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "supervisor/cgroup/cgroup.h"
#include "supervisor/cgroup/cgroup_impl.h"
#include "tests/wait_until.h"

namespace jw::supervisor {
namespace {

using std::chrono::milliseconds;
using std::chrono::steady_clock;

constexpr uint64_t kMiB = 1 << 20;
// The jobworker user every test job belongs to (the <user> level of the layout).
const std::string kUser = "alice";

// This test process's own instance, so that its leftovers are its alone.
CgroupInstance testInstance(const std::string& suffix = "", AggregateLimits total = {}) {
  return CgroupInstance{"test_" + std::to_string(::getpid()) + suffix, total};
}

// --- Moving this test process into a private cgroup --------------------------------------------
// The backends put jobs below the caller's own cgroup. On a shared host, other jobworkerd
// instances may use the same <own>/jobworker (v1's cpu, pids... are at "/"), so each suite first
// moves this process one level down into jwtest-<pid> and puts it back afterwards: the tests'
// <own>/jobworker is then theirs alone, and the leftover tests are deterministic.
struct MovedCgroup {
  std::string original;  // directory we came from
  std::string scratch;   // our private directory
};

Status moveInto(const std::string& dir) {
  return cg::writeFile(dir + "/cgroup.procs", std::to_string(::getpid()));
}

Result<std::vector<MovedCgroup>> moveSelfToScratch(bool v2, const std::string& v2_mount) {
  auto mounts = cg::readCgroupMounts();
  if (!mounts) return mounts.error();
  auto own = cg::readProcCgroup();
  if (!own) return own.error();
  std::vector<MovedCgroup> moved;
  std::vector<std::string> seen;
  for (const cg::CgroupMount& m : *mounts) {
    if (m.v2 != v2 || (v2 && m.mount_point != v2_mount)) continue;
    const cg::ProcCgroupLine* line = nullptr;
    for (const cg::ProcCgroupLine& l : *own) {
      if (v2 ? l.hierarchy_id == "0"
             : std::any_of(m.controllers.begin(), m.controllers.end(), [&](const std::string& c) {
                 return std::find(l.controllers.begin(), l.controllers.end(), c) !=
                        l.controllers.end();
               })) {
        line = &l;
      }
    }
    bool managed = v2 || std::any_of(m.controllers.begin(), m.controllers.end(), [](auto& c) {
                     return c == "cpu" || c == "cpuacct" || c == "memory" || c == "blkio" ||
                            c == "pids" || c == "freezer";
                   });
    if (line == nullptr || !managed) continue;
    auto dir = cg::pathUnderMount(m, line->path);
    if (!dir) continue;
    if (std::find(seen.begin(), seen.end(), *dir) != seen.end()) continue;
    seen.push_back(*dir);
    MovedCgroup mc{*dir, *dir + "/jwtest-" + std::to_string(::getpid())};
    if (Status s = cg::makeDir(mc.scratch); !s) return s.error();
    if (Status s = moveInto(mc.scratch); !s) return s.error();
    moved.push_back(mc);
  }
  return moved;
}

void moveBack(const std::vector<MovedCgroup>& moved) {
  for (const MovedCgroup& m : moved) {
    Status back = moveInto(m.original);
    EXPECT_TRUE(back) << back.error().message;
    Status gone = cg::removeTree(m.scratch);
    EXPECT_TRUE(gone) << gone.error().message;
  }
}

// --- Processes ---------------------------------------------------------------------------------

// A forked child held on a pipe until release(): the parent places it in its cgroup first, as
// the daemon does before a job's exec.
class HeldChild {
 public:
  // body runs in the child after release (it must not return).
  explicit HeldChild(const std::function<void()>& body, int extra_fd = -1) {
    int p[2];
    if (::pipe2(p, O_CLOEXEC) != 0) {
      ADD_FAILURE() << "pipe2: " << std::strerror(errno);
      return;
    }
    pid_ = ::fork();
    if (pid_ == 0) {
      ::close(p[1]);
      char c;
      if (::read(p[0], &c, 1) != 1) ::_exit(120);
      if (extra_fd >= 0 && ::dup2(extra_fd, 3) != 3) ::_exit(121);
      body();
      ::_exit(122);
    }
    ::close(p[0]);
    release_fd_ = p[1];
    if (pid_ < 0) ADD_FAILURE() << "fork: " << std::strerror(errno);
  }
  ~HeldChild() {
    if (release_fd_ >= 0) ::close(release_fd_);
    if (pid_ > 0 && !reaped_) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }
  pid_t pid() const { return pid_; }
  void release() {
    ASSERT_EQ(::write(release_fd_, "x", 1), 1);
    ::close(release_fd_);
    release_fd_ = -1;
  }
  // Waits for the exit; false on timeout.
  bool wait(int* status, milliseconds timeout) {
    reaped_ =
        jw::test::waitUntil([&] { return ::waitpid(pid_, status, WNOHANG) == pid_; }, timeout);
    return reaped_;
  }

 private:
  pid_t pid_ = -1;
  int release_fd_ = -1;
  bool reaped_ = false;
};

[[noreturn]] void execOrDie(const std::vector<std::string>& argv) {
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  ::execvp(args[0], args.data());
  ::_exit(127);
}

// Waits for pid (our child, or an orphan reparented to us as subreaper); false on timeout.
bool reap(pid_t pid, int* status, milliseconds timeout) {
  return jw::test::waitUntil([&] { return ::waitpid(pid, status, WNOHANG) == pid; }, timeout);
}

void reapAllOrphans() {
  while (::waitpid(-1, nullptr, WNOHANG) > 0) {
  }
}

bool processGone(pid_t pid) { return ::kill(pid, 0) != 0 && errno == ESRCH; }

std::string readLine(int fd, milliseconds timeout) {
  std::string out;
  auto deadline = steady_clock::now() + timeout;
  while (steady_clock::now() < deadline) {
    struct pollfd p {
      fd, POLLIN, 0
    };
    if (::poll(&p, 1, 50) <= 0) continue;
    char c;
    if (::read(fd, &c, 1) != 1) break;
    if (c == '\n') break;
    out.push_back(c);
  }
  return out;
}

std::vector<pid_t> procsOf(const std::string& dir) {
  auto t = cg::readFile(dir + "/cgroup.procs");
  return t ? cg::parsePids(*t) : std::vector<pid_t>{};
}

// How /proc/PID/cgroup ends for a process of job id: the layout <root>/<instance>/<user>/<job>.
std::string layoutPath(const std::string& id) {
  return "/jobworker/" + testInstance().name + "/" + kUser + "/" + id;
}

// The instance's directory in every hierarchy, from the backend's "<name>: /path" details.
std::vector<std::string> instanceDirs(const CgroupBackend& b) {
  std::vector<std::string> dirs;
  for (const std::string& d : b.details()) {
    size_t at = d.find(": /");
    if (at != std::string::npos && d.find(' ') > at) dirs.push_back(d.substr(at + 2));
  }
  return dirs;
}

// The job's directory in every hierarchy: <instance>/<user>/<id>.
std::vector<std::string> jobDirs(const CgroupBackend& b, const std::string& id,
                                 const std::string& user = kUser) {
  std::vector<std::string> dirs;
  for (const std::string& d : instanceDirs(b)) dirs.push_back(d + "/" + user + "/" + id);
  return dirs;
}

// A UUIDv4, as the backends accept only what jobworkerd makes: the test's pid in the first
// group (so leftovers name their run) and a hash of `what` in the last (so ids differ per test).
std::string jobId(const std::string& what) {
  char id[37];
  std::snprintf(id, sizeof id, "%08x-0000-4000-8000-%012llx", static_cast<unsigned>(::getpid()),
                static_cast<unsigned long long>(std::hash<std::string>{}(what)&0xffffffffffffULL));
  return id;
}

// Kills, waits until empty, removes, and checks nothing is left in any hierarchy.
void killAndRemove(CgroupBackend& b, JobCgroup& job, const std::string& id) {
  Status killed = job.killAll();
  EXPECT_TRUE(killed) << killed.error().message;
  EXPECT_TRUE(cg::waitUntil([&] { return job.empty(); }, milliseconds(5000)));
  reapAllOrphans();
  Status removed = job.remove();
  EXPECT_TRUE(removed) << removed.error().message;
  std::vector<std::string> dirs = jobDirs(b, id);
  EXPECT_FALSE(dirs.empty());
  for (const std::string& d : dirs) EXPECT_FALSE(cg::fileExists(d)) << d << " left behind";
}

// --- The host's backend (v1 here) --------------------------------------------------------------

bool hostIsV2() {
  struct statfs s {};
  return ::statfs("/sys/fs/cgroup", &s) == 0 &&
         static_cast<uint64_t>(s.f_type) == CGROUP2_SUPER_MAGIC;
}

class HostCgroups : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    ASSERT_EQ(::prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
    auto moved = moveSelfToScratch(hostIsV2(), "/sys/fs/cgroup");
    ASSERT_TRUE(moved) << moved.error().message;
    moved_ = new std::vector<MovedCgroup>(std::move(*moved));
  }
  static void TearDownTestSuite() {
    if (moved_ != nullptr) moveBack(*moved_);
    delete moved_;
    moved_ = nullptr;
  }
  void SetUp() override {
    auto b = CgroupBackend::detect(testInstance());
    ASSERT_TRUE(b) << b.error().message;
    backend_ = std::move(*b);
  }
  void TearDown() override { reapAllOrphans(); }

  std::unique_ptr<JobCgroup> create(const std::string& id, const CgroupLimits& limits) {
    auto job = backend_->create(id, kUser, {}, limits);
    EXPECT_TRUE(job) << job.error().message;
    return job ? std::move(*job) : nullptr;
  }

  static std::vector<MovedCgroup>* moved_;
  std::unique_ptr<CgroupBackend> backend_;
};
std::vector<MovedCgroup>* HostCgroups::moved_ = nullptr;

TEST_F(HostCgroups, DetectsTheHostHierarchy) {
  std::vector<std::string> d = backend_->details();
  ASSERT_FALSE(d.empty());
  EXPECT_EQ(d[0], hostIsV2() ? "cgroup backend: v2" : "cgroup backend: v1");
  EXPECT_EQ(backend_->name(), hostIsV2() ? "v2" : "v1");
  for (const std::string& line : d) std::printf("  detail: %s\n", line.c_str());
  // Every job directory lives below this process's own cgroup.
  for (const std::string& dir : jobDirs(*backend_, "x")) {
    EXPECT_NE(dir.find("/jwtest-" + std::to_string(::getpid()) + "/jobworker/" +
                       testInstance().name + "/" + kUser + "/x"),
              std::string::npos)
        << dir;
  }
  // The team's hosts and CI mount every controller: a missing one here is a setup problem.
  EXPECT_TRUE(backend_->has(Controller::kCpu));
  EXPECT_TRUE(backend_->has(Controller::kMemory));
  EXPECT_TRUE(backend_->has(Controller::kIo));
  EXPECT_TRUE(backend_->has(Controller::kPids));
}

TEST_F(HostCgroups, RejectsBadJobIdsAndLimits) {
  EXPECT_FALSE(backend_->create("../escape", kUser, {}, {}));
  EXPECT_FALSE(backend_->create("", kUser, {}, {}));
  CgroupLimits tiny_cpu;
  tiny_cpu.cpu_millicores = 5;  // below the kernel's 1 ms quota
  EXPECT_FALSE(backend_->create(jobId("tinycpu"), kUser, {}, tiny_cpu));
  CgroupLimits not_a_disk;
  not_a_disk.io.push_back({"/etc/passwd", 0, kMiB, 0, 0});
  auto r = backend_->create(jobId("notdisk"), kUser, {}, not_a_disk);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("/dev/"), std::string::npos) << r.error().message;
  CgroupLimits null_dev;
  null_dev.io.push_back({"/dev/null", 0, kMiB, 0, 0});
  r = backend_->create(jobId("nulldev"), kUser, {}, null_dev);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("not a block device"), std::string::npos) << r.error().message;
  // A refused job leaves nothing behind.
  for (const std::string& id : {jobId("tinycpu"), jobId("notdisk"), jobId("nulldev")}) {
    for (const std::string& d : jobDirs(*backend_, id)) EXPECT_FALSE(cg::fileExists(d)) << d;
  }
}

TEST_F(HostCgroups, MemoryLimitEndsInOomKill) {
  CgroupLimits limits;
  limits.memory_bytes = 64 * kMiB;
  std::string id = jobId("oom");
  auto job = create(id, limits);
  ASSERT_TRUE(job);
  // Touches 512 MiB in 1 MiB steps: far past the limit, in user mode. One volatile write per
  // page: memory nobody reads again is fair game for the optimiser, and clang -O2 removed a
  // plain malloc + memset loop altogether (the child then exited 0).
  HeldChild child([] {
    for (int i = 0; i < 512; ++i) {
      auto* p = static_cast<volatile char*>(std::malloc(kMiB));
      if (p == nullptr) ::_exit(3);
      for (size_t off = 0; off < kMiB; off += 4096) p[off] = static_cast<char>(i + 1);
    }
    ::_exit(0);
  });
  Status placed = job->addProcess(child.pid());
  ASSERT_TRUE(placed) << placed.error().message;
  child.release();
  int status = 0;
  ASSERT_TRUE(child.wait(&status, milliseconds(30000)));
  ASSERT_TRUE(WIFSIGNALED(status)) << "exited " << WEXITSTATUS(status);
  EXPECT_EQ(WTERMSIG(status), SIGKILL);
  EXPECT_TRUE(job->oomKilled());
  protocol::Usage u = job->usage();
  EXPECT_TRUE(u.has_memory);
  EXPECT_GE(u.memory_peak_bytes, 32 * kMiB);
  EXPECT_LE(u.memory_peak_bytes, 64 * kMiB);
  std::printf("  memory peak %.1f MiB under a 64 MiB limit, oom_killed\n",
              static_cast<double>(u.memory_peak_bytes) / kMiB);
  killAndRemove(*backend_, *job, id);
}

TEST_F(HostCgroups, CpuLimitHoldsABusyLoop) {
  CgroupLimits limits;
  limits.cpu_millicores = 200;
  std::string id = jobId("cpu");
  auto job = create(id, limits);
  ASSERT_TRUE(job);
  HeldChild child([] {
    auto end = steady_clock::now() + milliseconds(3000);
    volatile uint64_t spin = 0;
    while (steady_clock::now() < end) spin = spin + 1;
    ::_exit(0);
  });
  ASSERT_TRUE(job->addProcess(child.pid()));
  auto start = steady_clock::now();
  child.release();
  int status = 0;
  ASSERT_TRUE(child.wait(&status, milliseconds(20000)));
  double wall = std::chrono::duration<double>(steady_clock::now() - start).count();
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  protocol::Usage u = job->usage();
  ASSERT_TRUE(u.has_cpu);
  double share = u.cpu_seconds / wall;
  std::printf("  cpu 0.2: %.3f s of cpu in %.3f s = %.1f %% of one core\n", u.cpu_seconds, wall,
              share * 100);
  RecordProperty("cpu_percent", std::to_string(share * 100));
  EXPECT_GE(share, 0.10);
  EXPECT_LE(share, 0.35);
  EXPECT_FALSE(job->oomKilled());
  killAndRemove(*backend_, *job, id);
}

TEST_F(HostCgroups, PidsLimitStopsAForkLoop) {
  CgroupLimits limits;
  limits.pids = 20;
  std::string id = jobId("pids");
  auto job = create(id, limits);
  ASSERT_TRUE(job);
  int err[2];
  ASSERT_EQ(::pipe2(err, O_CLOEXEC), 0);
  HeldChild child([&] {
    ::dup2(err[1], 2);
    execOrDie({"sh", "-c", "for i in $(seq 100); do sleep 5 & done; wait"});
  });
  ::close(err[1]);
  ASSERT_TRUE(job->addProcess(child.pid()));
  child.release();
  int status = 0;
  ASSERT_TRUE(child.wait(&status, milliseconds(20000)));
  EXPECT_FALSE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  EXPECT_LE(procsOf(jobDirs(*backend_, id).front()).size(), 20u);
  protocol::Usage u = job->usage();
  if (u.has_pids) {
    EXPECT_EQ(u.pids_peak, 20u);
    std::printf("  pids peak %llu under pids.max 20\n",
                static_cast<unsigned long long>(u.pids_peak));
  }
  // The sleeps hold the stderr pipe open: kill them before reading it to the end.
  Status killed = job->killAll();
  ASSERT_TRUE(killed) << killed.error().message;
  std::string errors;
  char buf[4096];
  ssize_t n;
  while ((n = ::read(err[0], buf, sizeof buf)) > 0) errors.append(buf, static_cast<size_t>(n));
  ::close(err[0]);
  // The shell could not start all 100 sleeps: a fork failed inside the job.
  EXPECT_NE(errors.find("fork"), std::string::npos) << errors;
  killAndRemove(*backend_, *job, id);
}

// Starts `setsid sleep 1000` double-forked inside job; returns the sleep's pid once its parents
// have exited.
pid_t startEscapedSleep(JobCgroup& job) {
  int out[2];
  if (::pipe2(out, O_CLOEXEC) != 0) return -1;
  pid_t sleeper = -1;
  {
    HeldChild child(
        [] {
          execOrDie({"sh", "-c", "(setsid sh -c 'echo $$ >&3; exec sleep 1000' &); exit 0"});
        },
        out[1]);
    ::close(out[1]);
    Status placed = job.addProcess(child.pid());
    EXPECT_TRUE(placed) << placed.error().message;
    child.release();
    std::string line = readLine(out[0], milliseconds(10000));
    int status = 0;
    EXPECT_TRUE(child.wait(&status, milliseconds(10000)));
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    sleeper = line.empty() ? -1 : static_cast<pid_t>(std::stol(line));
  }
  ::close(out[0]);
  return sleeper;
}

TEST_F(HostCgroups, KillAllReachesADoubleForkedSetsidProcess) {
  std::string id = jobId("kill");
  auto job = create(id, {});
  ASSERT_TRUE(job);
  pid_t sleeper = startEscapedSleep(*job);
  ASSERT_GT(sleeper, 0);
  // It escaped the process tree and session: only the cgroup still knows it.
  EXPECT_EQ(::kill(sleeper, 0), 0);
  EXPECT_EQ(::getsid(sleeper), sleeper);
  EXPECT_FALSE(job->empty());
  Status killed = job->killAll();
  ASSERT_TRUE(killed) << killed.error().message;
  int status = 0;
  ASSERT_TRUE(reap(sleeper, &status, milliseconds(5000)));  // we are its subreaper
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
  EXPECT_TRUE(processGone(sleeper));
  EXPECT_TRUE(job->empty());
  killAndRemove(*backend_, *job, id);
}

// The whole disk behind path as /dev/NAME, or "" with the reason in *why.
std::string diskOf(const std::string& path, std::string* why) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    *why = "stat " + path + ": " + std::strerror(errno);
    return "";
  }
  std::string sys =
      "/sys/dev/block/" + std::to_string(major(st.st_dev)) + ":" + std::to_string(minor(st.st_dev));
  if (!cg::fileExists(sys)) {
    *why = path + " is not on a block device (" + sys + " missing)";
    return "";
  }
  if (cg::fileExists(sys + "/partition")) sys += "/..";
  auto uevent = cg::readFile(sys + "/uevent");
  size_t at = uevent ? uevent->find("DEVNAME=") : std::string::npos;
  if (at == std::string::npos) {
    *why = "no DEVNAME in " + sys + "/uevent";
    return "";
  }
  std::string dev = "/dev/" + uevent->substr(at + 8, uevent->find('\n', at) - at - 8);
  if (::stat(dev.c_str(), &st) != 0 || !S_ISBLK(st.st_mode)) {
    *why = dev + " is not a block device node";
    return "";
  }
  return dev;
}

// Runs a 4 MiB O_DIRECT dd into dir inside a new job with `limits`; returns its seconds, or < 0.
double timedDirectWrite(CgroupBackend& b, const std::string& id, const CgroupLimits& limits,
                        const std::string& dir, protocol::Usage* usage) {
  auto job = b.create(id, kUser, {}, limits);
  EXPECT_TRUE(job) << job.error().message;
  if (!job) return -1;
  std::string file = dir + "/jw-cgroup-io-" + std::to_string(::getpid());
  HeldChild child([&] {
    int null = ::open("/dev/null", O_WRONLY);
    ::dup2(null, 2);
    execOrDie({"dd", "if=/dev/zero", "of=" + file, "bs=64k", "count=64", "oflag=direct"});
  });
  EXPECT_TRUE((*job)->addProcess(child.pid()));
  auto start = steady_clock::now();
  child.release();
  int status = 0;
  bool exited = child.wait(&status, milliseconds(60000));
  double secs = std::chrono::duration<double>(steady_clock::now() - start).count();
  ::unlink(file.c_str());
  EXPECT_TRUE(exited && WIFEXITED(status) && WEXITSTATUS(status) == 0)
      << "dd failed: status " << status;
  *usage = (*job)->usage();
  killAndRemove(b, **job, id);
  return exited ? secs : -1;
}

TEST_F(HostCgroups, WriteBpsLimitSlowsDirectWrites) {
  std::string dir = "/tmp";
  std::string why;
  std::string disk = diskOf(dir, &why);
  if (disk.empty()) GTEST_SKIP() << "cannot find the disk under " << dir << ": " << why;
  protocol::Usage u;
  // Unthrottled first: a disk that is slow anyway proves nothing about the limit.
  double free_secs = timedDirectWrite(*backend_, jobId("io-free"), {}, dir, &u);
  ASSERT_GE(free_secs, 0);
  if (free_secs > 1.0) GTEST_SKIP() << "unthrottled 4 MiB direct write took " << free_secs << " s";
  CgroupLimits limits;
  // v1 blkio throttles only IO the job itself submits (direct IO), not buffered writeback.
  limits.io.push_back({disk, 0, 1 * kMiB, 0, 0});
  double secs = timedDirectWrite(*backend_, jobId("io"), limits, dir, &u);
  std::printf("  dd of 4 MiB with oflag=direct on %s: %.2f s free, %.2f s under write_bps 1M\n",
              disk.c_str(), free_secs, secs);
  RecordProperty("dd_seconds", std::to_string(secs));
  EXPECT_GE(secs, 2.0);
  EXPECT_LE(secs, 30.0);
  if (u.has_io) {
    EXPECT_GE(u.io_write_bytes, 4 * kMiB);
  }
}

// --- Leftovers, instances and adoption (both backends) -----------------------------------------

using Opener = std::function<Result<std::unique_ptr<CgroupBackend>>(const CgroupInstance&)>;

// A job with an escaped sleep in it, then the "daemon" goes away without stopping it (a crash):
// the cgroup and the sleep stay. Returns the sleep's pid.
pid_t leaveAJobBehind(std::unique_ptr<CgroupBackend>& backend, const std::string& id,
                      std::vector<std::string>* dirs) {
  auto job = backend->create(id, kUser, {}, {});
  EXPECT_TRUE(job) << job.error().message;
  if (!job) return -1;
  pid_t sleeper = startEscapedSleep(**job);
  *dirs = jobDirs(*backend, id);
  for (const std::string& d : *dirs) EXPECT_TRUE(cg::fileExists(d)) << d;
  backend.reset();  // its flock goes with it
  EXPECT_EQ(::kill(sleeper, 0), 0);
  return sleeper;
}

void expectKilled(pid_t sleeper) {
  int status = 0;
  ASSERT_TRUE(reap(sleeper, &status, milliseconds(5000)));  // we are its subreaper
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
  EXPECT_TRUE(processGone(sleeper));
}

void leftoversAreRemovedByTheNextRun(std::unique_ptr<CgroupBackend>& backend, const Opener& open) {
  std::string id = jobId("leftover");
  std::vector<std::string> dirs;
  pid_t sleeper = leaveAJobBehind(backend, id, &dirs);
  ASSERT_GT(sleeper, 0);
  auto again = open(testInstance());
  ASSERT_TRUE(again) << again.error().message;
  EXPECT_EQ(::kill(sleeper, 0), 0);  // opening alone touches nothing
  EXPECT_EQ((*again)->removeLeftovers({}), 1u);
  expectKilled(sleeper);
  for (const std::string& d : dirs) EXPECT_FALSE(cg::fileExists(d)) << d << " left behind";
  // The emptied user level went too; the instance stays.
  std::vector<std::string> instance = instanceDirs(**again);
  for (const std::string& d : instance) {
    EXPECT_FALSE(cg::fileExists(d + "/" + kUser)) << d;
    EXPECT_TRUE(cg::fileExists(d)) << d;
  }
  // A clean stop with no job left removes the instance's directory as well.
  again->reset();
  for (const std::string& d : instance) EXPECT_FALSE(cg::fileExists(d)) << d;
}

void instancesNeverTouchEachOther(std::unique_ptr<CgroupBackend>& backend, const Opener& open) {
  std::string id = jobId("live");
  auto job = backend->create(id, kUser, {}, {});
  ASSERT_TRUE(job) << job.error().message;
  pid_t sleeper = startEscapedSleep(**job);
  ASSERT_GT(sleeper, 0);
  // A second jobworkerd on the same state dir is refused: it would take our jobs for leftovers.
  auto same = open(testInstance());
  ASSERT_FALSE(same);
  EXPECT_NE(same.error().message.find("another jobworkerd"), std::string::npos)
      << same.error().message;
  // ...and leaves our levels alone: the user's next job still finds its level.
  std::string id2 = jobId("live2");
  auto next = backend->create(id2, kUser, {}, {});
  ASSERT_TRUE(next) << next.error().message;
  killAndRemove(*backend, **next, id2);
  // Another instance (another state dir) runs beside us and cleans only its own leftovers.
  auto other = open(testInstance("_other"));
  ASSERT_TRUE(other) << other.error().message;
  EXPECT_EQ((*other)->removeLeftovers({}), 0u);
  EXPECT_EQ(::kill(sleeper, 0), 0);
  for (const std::string& d : jobDirs(*backend, id)) EXPECT_TRUE(cg::fileExists(d)) << d;
  std::vector<std::string> other_dirs = instanceDirs(**other);
  other->reset();
  for (const std::string& d : other_dirs) {
    Status gone = cg::removeTree(d);
    EXPECT_TRUE(gone) << gone.error().message;
  }
  killAndRemove(*backend, **job, id);  // reaps the sleep too
  EXPECT_TRUE(processGone(sleeper));
}

void adoptedCgroupKillsItsLiveProcess(std::unique_ptr<CgroupBackend>& backend, const Opener& open) {
  std::string kept = jobId("adopted");
  std::string stale = jobId("stale");
  std::vector<std::string> kept_dirs, stale_dirs;
  auto first = backend->create(stale, kUser, {}, {});
  ASSERT_TRUE(first) << first.error().message;
  pid_t stale_sleeper = startEscapedSleep(**first);
  ASSERT_GT(stale_sleeper, 0);
  first->reset();
  pid_t sleeper = leaveAJobBehind(backend, kept, &kept_dirs);
  ASSERT_GT(sleeper, 0);

  // The next run keeps the job it re-adopts and cleans the rest.
  auto again = open(testInstance());
  ASSERT_TRUE(again) << again.error().message;
  EXPECT_EQ((*again)->removeLeftovers({kept}), 1u);
  expectKilled(stale_sleeper);
  EXPECT_EQ(::kill(sleeper, 0), 0);
  for (const std::string& d : kept_dirs) EXPECT_TRUE(cg::fileExists(d)) << d;

  EXPECT_FALSE((*again)->adopt(jobId("never-made"), kUser));
  EXPECT_FALSE((*again)->adopt(kept, "bob"));  // another user's level has no such job
  EXPECT_FALSE((*again)->adopt("../" + kept, kUser));
  EXPECT_FALSE((*again)->adopt(kept, "../x"));
  auto adopted = (*again)->adopt(kept, kUser);
  ASSERT_TRUE(adopted) << adopted.error().message;
  JobCgroup& job = **adopted;
  EXPECT_FALSE(job.empty());
  protocol::Usage u = job.usage();
  EXPECT_TRUE(u.has_cpu);
  EXPECT_GT(u.cpu_seconds, 0.0);  // the shells that started the sleep ran in it
  std::printf("  adopted job: %.4f s of cpu so far\n", u.cpu_seconds);
  Status killed = job.killAll();
  ASSERT_TRUE(killed) << killed.error().message;
  expectKilled(sleeper);
  EXPECT_TRUE(job.empty());
  Status removed = job.remove();
  EXPECT_TRUE(removed) << removed.error().message;
  for (const std::string& d : kept_dirs) EXPECT_FALSE(cg::fileExists(d)) << d << " left behind";
}

Opener hostOpener() {
  return [](const CgroupInstance& i) { return CgroupBackend::detect(i); };
}

TEST_F(HostCgroups, LeftoversOfAPreviousRunAreRemovedByTheNextOne) {
  leftoversAreRemovedByTheNextRun(backend_, hostOpener());
}

TEST_F(HostCgroups, InstancesNeverTouchEachOthersJobs) {
  instancesNeverTouchEachOther(backend_, hostOpener());
}

TEST_F(HostCgroups, AdoptedCgroupKillsItsLiveProcess) {
  adoptedCgroupKillsItsLiveProcess(backend_, hostOpener());
}

// The first line of a cgroupfs file, for the cap files the levels hold.
std::string firstLine(const std::string& path) {
  auto t = cg::readFile(path);
  if (!t) return "(" + t.error().message + ")";
  return t->substr(0, t->find('\n'));
}

// The directory of the hierarchy whose details line names controller.
std::string instanceDirOf(const CgroupBackend& b, const std::string& controller) {
  for (const std::string& d : b.details()) {
    size_t at = d.find(": /");
    if (at == std::string::npos) continue;
    std::string names = "," + d.substr(0, at) + ",";
    if (d.rfind("jobs: ", 0) == 0 || names.find("," + controller + ",") != std::string::npos) {
      return d.substr(at + 2);
    }
  }
  return "";
}

TEST_F(HostCgroups, AggregateCapsSitOnTheInstanceAndUserLevels) {
  backend_.reset();
  auto b = CgroupBackend::detect(testInstance("", {3000, 512 * kMiB, 300}));
  ASSERT_TRUE(b) << b.error().message;
  backend_ = std::move(*b);
  std::string id = jobId("agg");
  auto job = backend_->create(id, kUser, {1500, 256 * kMiB, 30}, {});
  ASSERT_TRUE(job) << job.error().message;
  bool v2 = backend_->name() == "v2";
  std::string pids = instanceDirOf(*backend_, "pids");
  std::string mem = instanceDirOf(*backend_, "memory");
  std::string cpu = instanceDirOf(*backend_, "cpu");
  EXPECT_EQ(firstLine(pids + "/pids.max"), "300");
  EXPECT_EQ(firstLine(pids + "/" + kUser + "/pids.max"), "30");
  std::string mem_file = v2 ? "/memory.max" : "/memory.limit_in_bytes";
  EXPECT_EQ(firstLine(mem + mem_file), std::to_string(512 * kMiB));
  EXPECT_EQ(firstLine(mem + "/" + kUser + mem_file), std::to_string(256 * kMiB));
  if (v2) {
    EXPECT_EQ(firstLine(cpu + "/cpu.max"), "300000 100000");
    EXPECT_EQ(firstLine(cpu + "/" + kUser + "/cpu.max"), "150000 100000");
  } else {
    EXPECT_EQ(firstLine(cpu + "/cpu.cfs_quota_us"), "300000");
    EXPECT_EQ(firstLine(cpu + "/" + kUser + "/cpu.cfs_quota_us"), "150000");
    if (cg::fileExists(mem + "/memory.memsw.limit_in_bytes")) {
      EXPECT_EQ(firstLine(mem + "/" + kUser + "/memory.memsw.limit_in_bytes"),
                std::to_string(256 * kMiB));
    }
  }

  // The user's pids are one budget: a job holding 20 leaves the next one 10, whatever its own
  // limit says.
  int out[2];
  ASSERT_EQ(::pipe2(out, O_CLOEXEC), 0);
  HeldChild holder([] { execOrDie({"sh", "-c", "for i in $(seq 19); do sleep 60 & done; wait"}); });
  ASSERT_TRUE((*job)->addProcess(holder.pid()));
  holder.release();
  ASSERT_TRUE(jw::test::waitUntil(
      [&] { return firstLine(pids + "/" + kUser + "/pids.current") == "20"; }, milliseconds(10000)))
      << firstLine(pids + "/" + kUser + "/pids.current");
  std::string id2 = jobId("agg2");
  CgroupLimits own;
  own.pids = 25;
  auto second = backend_->create(id2, kUser, {1500, 256 * kMiB, 30}, own);
  ASSERT_TRUE(second) << second.error().message;
  HeldChild forker(
      [] {
        execOrDie({"sh", "-c", "for i in $(seq 20); do sleep 60 & echo $i >&3; done; wait"});
      },
      out[1]);
  ::close(out[1]);
  ASSERT_TRUE((*second)->addProcess(forker.pid()));
  forker.release();
  int status = 0;
  ASSERT_TRUE(forker.wait(&status, milliseconds(20000)));
  EXPECT_FALSE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "all 20 forks succeeded";
  std::string started;
  char buf[512];
  ssize_t n;
  while ((n = ::read(out[0], buf, sizeof buf)) > 0) started.append(buf, static_cast<size_t>(n));
  ::close(out[0]);
  size_t forks = static_cast<size_t>(std::count(started.begin(), started.end(), '\n'));
  std::printf("  user pids cap 30: the second job started %zu of 20 children\n", forks);
  EXPECT_LE(forks, 10u);
  killAndRemove(*backend_, **second, id2);
  killAndRemove(*backend_, **job, id);
}

// --- v2 on a cgroup2 mount ---------------------------------------------------------------------

std::string v2Mount() {
  for (const char* m : {"/sys/fs/cgroup/unified", "/sys/fs/cgroup"}) {
    struct statfs s {};
    if (::statfs(m, &s) == 0 && static_cast<uint64_t>(s.f_type) == CGROUP2_SUPER_MAGIC) return m;
  }
  return "";
}

class V2Cgroups : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    ASSERT_EQ(::prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
    mount_ = new std::string(v2Mount());
    if (mount_->empty()) return;
    auto moved = moveSelfToScratch(true, *mount_);
    ASSERT_TRUE(moved) << moved.error().message;
    moved_ = new std::vector<MovedCgroup>(std::move(*moved));
  }
  static void TearDownTestSuite() {
    if (moved_ != nullptr) moveBack(*moved_);
    delete moved_;
    moved_ = nullptr;
    delete mount_;
    mount_ = nullptr;
  }
  void SetUp() override {
    if (mount_->empty()) GTEST_SKIP() << "no cgroup2 mount";
    auto b = CgroupBackend::openV2(*mount_, testInstance());
    ASSERT_TRUE(b) << b.error().message;
    backend_ = std::move(*b);
  }
  void TearDown() override { reapAllOrphans(); }

  static std::string* mount_;
  static std::vector<MovedCgroup>* moved_;
  std::unique_ptr<CgroupBackend> backend_;
};
std::string* V2Cgroups::mount_ = nullptr;
std::vector<MovedCgroup>* V2Cgroups::moved_ = nullptr;

std::string unifiedPathOf(pid_t pid) {
  auto lines = cg::readProcCgroup(pid);
  if (!lines) return "";
  for (const cg::ProcCgroupLine& l : *lines) {
    if (l.hierarchy_id == "0") return l.path;
  }
  return "";
}

TEST_F(V2Cgroups, DaemonMovesIntoItsLeaf) {
  EXPECT_EQ(backend_->name(), "v2");
  std::string self = unifiedPathOf(0);
  EXPECT_EQ(self.substr(self.rfind('/')), "/supervisor") << self;
  for (const std::string& d : backend_->details()) std::printf("  detail: %s\n", d.c_str());
}

TEST_F(V2Cgroups, PlacesKillsAndRemoves) {
  std::string id = jobId("v2");
  auto job = backend_->create(id, kUser, {}, {});
  ASSERT_TRUE(job) << job.error().message;
  std::string dir = jobDirs(*backend_, id).front();
  EXPECT_GE((*job)->directoryFd(), 0);
  pid_t sleeper = startEscapedSleep(**job);
  ASSERT_GT(sleeper, 0);
  std::vector<pid_t> procs = procsOf(dir);
  EXPECT_NE(std::find(procs.begin(), procs.end(), sleeper), procs.end());
  EXPECT_TRUE(unifiedPathOf(sleeper).ends_with(layoutPath(id))) << unifiedPathOf(sleeper);
  EXPECT_FALSE((*job)->empty());
  Status killed = (*job)->killAll();  // cgroup.kill
  ASSERT_TRUE(killed) << killed.error().message;
  int status = 0;
  ASSERT_TRUE(reap(sleeper, &status, milliseconds(5000)));
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
  EXPECT_TRUE(processGone(sleeper));
  killAndRemove(*backend_, **job, id);
}

TEST_F(V2Cgroups, FreezeKillFallbackForKernelsWithoutCgroupKill) {
  std::string id = jobId("v2freeze");
  auto job = backend_->create(id, kUser, {}, {});
  ASSERT_TRUE(job) << job.error().message;
  std::string dir = jobDirs(*backend_, id).front();
  pid_t sleeper = startEscapedSleep(**job);
  ASSERT_GT(sleeper, 0);
  std::string rel = unifiedPathOf(sleeper);
  ASSERT_TRUE(rel.ends_with(layoutPath(id))) << rel;
  Status killed = cg::killByFreezingV2(dir, rel);
  ASSERT_TRUE(killed) << killed.error().message;
  int status = 0;
  ASSERT_TRUE(reap(sleeper, &status, milliseconds(5000)));
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
  EXPECT_TRUE(processGone(sleeper));
  // Thawed again: a frozen empty cgroup would still be removable, but a left-frozen job is a bug.
  auto events = cg::readFile(dir + "/cgroup.events");
  ASSERT_TRUE(events);
  EXPECT_EQ(cg::keyedValue(*events, "frozen"), 0u);
  killAndRemove(*backend_, **job, id);
}

TEST_F(V2Cgroups, CloneIntoCgroupUsesTheDirectoryFd) {
  std::string id = jobId("clone3");
  auto job = backend_->create(id, kUser, {}, {});
  ASSERT_TRUE(job) << job.error().message;
  struct clone_args args {};
  args.flags = CLONE_INTO_CGROUP;
  args.exit_signal = SIGCHLD;
  args.cgroup = static_cast<uint64_t>((*job)->directoryFd());
  long pid = ::syscall(SYS_clone3, &args, sizeof args);
  if (pid == 0) {
    ::pause();
    ::_exit(0);
  }
  ASSERT_GT(pid, 0) << std::strerror(errno);
  // Born in the job's cgroup: no window in which it ran elsewhere.
  EXPECT_TRUE(unifiedPathOf(static_cast<pid_t>(pid)).ends_with(layoutPath(id)));
  ASSERT_TRUE((*job)->killAll());
  int status = 0;
  ASSERT_TRUE(reap(static_cast<pid_t>(pid), &status, milliseconds(5000)));
  killAndRemove(*backend_, **job, id);
}

TEST_F(V2Cgroups, RefusesLimitsOfMissingControllers) {
  if (backend_->has(Controller::kMemory)) GTEST_SKIP() << "this mount has the memory controller";
  CgroupLimits limits;
  limits.memory_bytes = 64 * kMiB;
  auto job = backend_->create(jobId("nomem"), kUser, {}, limits);
  ASSERT_FALSE(job);
  EXPECT_NE(job.error().message.find("memory"), std::string::npos) << job.error().message;
  bool said = false;
  for (const std::string& d : backend_->details()) said = said || d == "missing controller: memory";
  EXPECT_TRUE(said);
  for (const std::string& d : jobDirs(*backend_, jobId("nomem"))) EXPECT_FALSE(cg::fileExists(d));
}

Opener v2Opener(const std::string& mount) {
  return [mount](const CgroupInstance& i) { return CgroupBackend::openV2(mount, i); };
}

TEST_F(V2Cgroups, LeftoversOfAPreviousRunAreRemovedByTheNextOne) {
  leftoversAreRemovedByTheNextRun(backend_, v2Opener(*mount_));
}

TEST_F(V2Cgroups, InstancesNeverTouchEachOthersJobs) {
  instancesNeverTouchEachOther(backend_, v2Opener(*mount_));
}

TEST_F(V2Cgroups, AdoptedCgroupKillsItsLiveProcess) {
  adoptedCgroupKillsItsLiveProcess(backend_, v2Opener(*mount_));
}

}  // namespace
}  // namespace jw::supervisor
