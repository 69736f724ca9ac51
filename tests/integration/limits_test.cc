// Integration tests (root) of per-job resource limits through the real daemon over real HTTPS on
// this host's cgroup hierarchy: memory OOM, cpu quota, pids, blkio bandwidth, whole-tree stop,
// cgroup removal, policy (defaults, maxima), request validation, healthz and the CLI flags.
// Runs in the test process.
#include <Poco/Dynamic/Var.h>
#include <Poco/Exception.h>
#include <Poco/JSON/Array.h>
#include <Poco/JSON/Object.h>
#include <Poco/JSON/Parser.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "supervisor/cgroup/cgroup.h"
#include "tests/integration/daemon.h"

namespace jw::test {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;
using std::chrono::seconds;

constexpr double kMiB = 1024.0 * 1024.0;

// Every limit a test depends on is explicit here, so the tests hold whatever built-in defaults
// and host-derived maxima (host cores, host RAM) the configuration code has. default.cpu stays
// below one core so that it is under the cpu maximum of any host.
constexpr const char* kConfig =
    "default.cpu = 0.5\n"
    "default.memory = 100M\n"
    "default.pids = 500\n"
    "role.admin.max.memory = 128M\n"
    "user.carol.max.memory = 32M\n"
    "stop_grace = 2s\n";

// A shell loop doubling a string until the memory limit stops it (dash: no python3 for nobody).
const char* kMemoryHog = "a=x; while :; do a=$a$a; done";

// --- JSON ----------------------------------------------------------------------------------------

// {"command":["sh","-c",script]} plus extra members (", ..." text, may be empty).
std::string shJob(const std::string& script, const std::string& extra = "") {
  return "{\"command\":[\"sh\",\"-c\"," + jsonString(script) + "]" + extra + "}";
}

// The value at a path of object keys, or nullopt when absent or not JSON.
std::optional<Poco::Dynamic::Var> valueAt(const std::string& json,
                                          const std::vector<std::string>& path) {
  try {
    Poco::JSON::Parser p;
    Poco::Dynamic::Var v = p.parse(json);
    for (const auto& key : path) {
      if (v.type() != typeid(Poco::JSON::Object::Ptr)) return std::nullopt;
      auto o = v.extract<Poco::JSON::Object::Ptr>();
      if (!o->has(key)) return std::nullopt;
      v = o->get(key);
    }
    return v;
  } catch (const Poco::Exception&) {
    return std::nullopt;
  }
}

std::optional<double> numberAt(const std::string& json, const std::vector<std::string>& path) {
  auto v = valueAt(json, path);
  if (!v || v->isEmpty() || !v->isNumeric()) return std::nullopt;
  return v->convert<double>();
}

std::vector<std::string> stringsAt(const std::string& json, const std::vector<std::string>& path) {
  std::vector<std::string> out;
  auto v = valueAt(json, path);
  if (!v || v->type() != typeid(Poco::JSON::Array::Ptr)) return out;
  auto a = v->extract<Poco::JSON::Array::Ptr>();
  for (size_t i = 0; i < a->size(); i++) out.push_back(a->get(static_cast<unsigned>(i)).toString());
  return out;
}

// "2026-11-30T00:33:09.123Z" to ms since the epoch; -1 when malformed.
int64_t rfc3339Ms(const std::string& t) {
  std::tm tm{};
  int ms = 0;
  if (std::sscanf(t.c_str(), "%d-%d-%dT%d:%d:%d.%dZ", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
                  &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &ms) != 7) {
    return -1;
  }
  tm.tm_year -= 1900;
  tm.tm_mon -= 1;
  return static_cast<int64_t>(timegm(&tm)) * 1000 + ms;
}

// ended_at - started_at of a finished job's status, in seconds; -1 when either is missing.
double wallSeconds(const std::string& status) {
  int64_t a = rfc3339Ms(jsonField(status, "started_at"));
  int64_t b = rfc3339Ms(jsonField(status, "ended_at"));
  return a < 0 || b < 0 ? -1 : static_cast<double>(b - a) / 1000.0;
}

// --- Host view: cgroup directories and processes ------------------------------------------------

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> parts;
  std::stringstream ss(s);
  std::string part;
  while (std::getline(ss, part, sep)) parts.push_back(part);
  return parts;
}

std::string slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

bool exists(const std::string& path) { return ::access(path.c_str(), F_OK) == 0; }

// The cgroup instance of a daemon's state dir: the daemon's own rule (supervisor/cgroup).
std::string instanceOf(const std::string& state_dir) {
  return supervisor::cgroupInstanceName(std::filesystem::canonical(state_dir).string());
}

// The job's directories <mount><own>/jobworker/<instance>/<user>/<id>, with <own> the daemon's
// cgroup as /proc/<daemon>/cgroup names it: one per v1 hierarchy the daemon manages, or one on
// v2.
std::vector<std::string> jobCgroupDirs(pid_t daemon, const std::string& instance,
                                       const std::string& user, const std::string& id) {
  std::map<std::string, std::string> v1;  // controller -> mount point
  std::string v2;
  std::istringstream mounts(slurp("/proc/self/mounts"));
  std::string line;
  while (std::getline(mounts, line)) {
    auto f = split(line, ' ');
    if (f.size() < 4) continue;
    if (f[2] == "cgroup") {
      for (const auto& opt : split(f[3], ',')) v1[opt] = f[1];
    } else if (f[2] == "cgroup2" && f[1] == "/sys/fs/cgroup") {
      v2 = f[1];
    }
  }
  const std::set<std::string> managed = {"cpu", "cpuacct", "memory", "blkio", "pids", "freezer"};
  std::vector<std::string> dirs;
  std::istringstream own(slurp("/proc/" + std::to_string(daemon) + "/cgroup"));
  while (std::getline(own, line)) {
    size_t a = line.find(':');
    size_t b = line.find(':', a + 1);
    if (a == std::string::npos || b == std::string::npos) continue;
    std::string controllers = line.substr(a + 1, b - a - 1);
    std::string path = line.substr(b + 1);
    if (path == "/") path = "";
    std::vector<std::string> mounts_here;
    if (!v2.empty()) {
      // The v2 daemon lives in the <own>/supervisor leaf; jobs go beside it.
      if (line.substr(0, a) != "0") continue;
      const std::string leaf = "/supervisor";
      if (path.size() >= leaf.size() &&
          path.compare(path.size() - leaf.size(), leaf.size(), leaf) == 0) {
        path.resize(path.size() - leaf.size());
      }
      mounts_here.push_back(v2);
    } else {
      for (const auto& c : split(controllers, ',')) {
        if (managed.count(c) != 0 && v1.count(c) != 0) mounts_here.push_back(v1[c]);
      }
    }
    for (const auto& m : mounts_here) {
      std::string dir = m + path + "/jobworker/" + instance + "/" + user + "/" + id;
      if (std::find(dirs.begin(), dirs.end(), dir) == dirs.end()) dirs.push_back(dir);
    }
  }
  return dirs;
}

// The dirs still present after waiting up to timeout for all of them to go.
std::vector<std::string> waitGone(const std::vector<std::string>& dirs, seconds timeout) {
  std::vector<std::string> left;
  waitUntil(
      [&] {
        left.clear();
        for (const auto& d : dirs) {
          if (exists(d)) left.push_back(d);
        }
        return left.empty();
      },
      timeout);
  return left;
}

// A live (not zombie) process that is in the job's cgroup: checked together so that a recycled
// pid does not count.
bool liveInJob(pid_t pid, const std::string& job_id) {
  std::string p = "/proc/" + std::to_string(pid);
  std::string stat = slurp(p + "/stat");
  size_t rp = stat.rfind(')');
  if (rp == std::string::npos || rp + 2 >= stat.size()) return false;
  if (stat[rp + 2] == 'Z' || stat[rp + 2] == 'X') return false;
  return slurp(p + "/cgroup").find("/" + job_id + "\n") != std::string::npos;
}

// Host pids (whatever PID namespace the job has) of the job's live processes running argv.
std::vector<pid_t> hostPidsOf(const std::string& job_id, const std::vector<std::string>& argv) {
  std::string want;
  for (const auto& a : argv) want += a + '\0';
  std::vector<pid_t> pids;
  for (const auto& e : std::filesystem::directory_iterator("/proc")) {
    std::string name = e.path().filename();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    if (slurp(e.path().string() + "/cmdline") != want) continue;
    pid_t pid = std::stoi(name);
    if (liveInJob(pid, job_id)) pids.push_back(pid);
  }
  return pids;
}

// Polls until at least n such processes exist (at most timeout).
std::vector<pid_t> waitHostPids(const std::string& job_id, const std::vector<std::string>& argv,
                                size_t n, seconds timeout) {
  std::vector<pid_t> pids;
  waitUntil(
      [&] {
        pids = hostPidsOf(job_id, argv);
        return pids.size() >= n;
      },
      timeout);
  return pids;
}

// The pids still alive in the job after waiting up to timeout for all of them to die.
std::vector<pid_t> waitDead(const std::vector<pid_t>& pids, const std::string& job_id,
                            seconds timeout) {
  std::vector<pid_t> alive;
  waitUntil(
      [&] {
        alive.clear();
        for (pid_t p : pids) {
          if (liveInJob(p, job_id)) alive.push_back(p);
        }
        return alive.empty();
      },
      timeout);
  return alive;
}

std::string joinPids(const std::vector<pid_t>& pids) {
  std::string s;
  for (pid_t p : pids) {
    if (!s.empty()) s += ' ';  // not `(... ? "" : " ") + ...`: GCC 12 -O3's false -Wrestrict
    s += std::to_string(p);
  }
  return s;
}

// The whole disk (what v1 blk-throttle accepts) holding path, as /dev/NAME; "" with the reason.
std::string wholeDiskOf(const std::string& path, std::string* why) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    *why = "stat " + path + ": " + std::strerror(errno);
    return "";
  }
  std::string majmin = std::to_string(major(st.st_dev)) + ":" + std::to_string(minor(st.st_dev));
  std::string sys = "/sys/dev/block/" + majmin;
  if (!exists(sys)) {
    *why = path + " is on device " + majmin + ", which is no block device (overlay, tmpfs...)";
    return "";
  }
  std::error_code ec;
  std::filesystem::path real = std::filesystem::canonical(sys, ec);
  if (ec) {
    *why = "resolve " + sys + ": " + ec.message();
    return "";
  }
  if (exists(real.string() + "/partition")) real = real.parent_path();
  std::string name;
  std::istringstream uevent(slurp(real.string() + "/uevent"));
  std::string line;
  while (std::getline(uevent, line)) {
    if (line.rfind("DEVNAME=", 0) == 0) name = line.substr(8);
  }
  struct stat dst {};
  std::string dev = "/dev/" + name;
  if (name.empty() || ::stat(dev.c_str(), &dst) != 0 || !S_ISBLK(dst.st_mode)) {
    *why = "no device node for the disk " + real.string() + " behind " + path;
    return "";
  }
  return dev;
}

// --- The suite -----------------------------------------------------------------------------------

class LimitsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    Daemon::Options o;
    o.config_text = kConfig;
    daemon_ = Daemon::start(o).release();
    if (daemon_ != nullptr) daemon_->addUser("carol", "user", "carol-password-1");
  }
  static void TearDownTestSuite() {
    delete daemon_;
    daemon_ = nullptr;
  }
  void SetUp() override {
    ASSERT_NE(daemon_, nullptr) << "the daemon did not start";
    if (token_.empty()) token_ = login(*daemon_, "admin", daemon_->adminPassword());
    ASSERT_FALSE(token_.empty());
  }

  const Daemon& d() const { return *daemon_; }
  HttpResponse get(const std::string& path) { return https(d(), "GET", path, "", token_); }
  std::string status(const std::string& id) { return get("/v1/jobs/" + id).body; }
  // The directories of a job of the admin (the token the suite uses).
  std::vector<std::string> cgroupDirs(const std::string& id) {
    return jobCgroupDirs(d().pid(), instanceOf(d().stateDir()), "admin", id);
  }
  // The job's merged output so far.
  std::string output(const std::string& id) { return get("/v1/jobs/" + id + "/logs").body; }
  // Polls the output until it contains text (at most timeout); returns the output.
  std::string waitOutput(const std::string& id, const std::string& text, seconds timeout) {
    std::string out;
    waitUntil(
        [&] {
          out = output(id);
          return out.find(text) != std::string::npos;
        },
        timeout);
    return out;
  }
  // Checks the job's cgroup directories exist (so that their absence later means something).
  void expectCgroupsPresent(const std::string& id) {
    auto dirs = cgroupDirs(id);
    ASSERT_FALSE(dirs.empty()) << "no cgroup hierarchy found for the daemon";
    for (const auto& dir : dirs) EXPECT_TRUE(exists(dir)) << dir << " missing while job runs";
  }
  void expectCgroupsGone(const std::string& id) {
    auto dirs = cgroupDirs(id);
    ASSERT_FALSE(dirs.empty());
    auto left = waitGone(dirs, seconds(5));
    for (const auto& dir : left) ADD_FAILURE() << dir << " left behind 5 s after the job ended";
  }

  static Daemon* daemon_;
  static std::string token_;
};

Daemon* LimitsTest::daemon_ = nullptr;
std::string LimitsTest::token_;

TEST_F(LimitsTest, MemoryLimitEndsInOomKill) {
  std::string id = startJob(d(), token_, shJob(kMemoryHog, ",\"limits\":{\"memory\":\"64M\"}"));
  ASSERT_FALSE(id.empty());
  std::string st = waitJob(d(), token_, id, 60);
  EXPECT_EQ(jsonField(st, "state"), "killed") << st;
  EXPECT_EQ(jsonField(st, "signal"), "9") << st;
  EXPECT_EQ(jsonField(st, "oom_killed"), "true") << st;
  EXPECT_EQ(numberAt(st, {"limits", "memory"}), 64 * kMiB) << st;
  auto peak = numberAt(st, {"usage", "memory_peak_bytes"});
  ASSERT_TRUE(peak.has_value()) << st;
  // The kernel reclaims up to the limit before it kills: the peak sits at it.
  EXPECT_GE(*peak, 48 * kMiB) << st;
  EXPECT_LE(*peak, 65 * kMiB) << st;
  std::printf("[ figures  ] memory 64M: memory_peak_bytes %.1f MiB, wall %.2f s\n", *peak / kMiB,
              wallSeconds(st));
  expectCgroupsGone(id);
}

TEST_F(LimitsTest, JobWithinItsMemoryLimitIsNotOomKilled) {
  // The counterpart: SIGKILL alone is not an OOM kill.
  std::string id = startJob(d(), token_, shJob("kill -9 $$", ",\"limits\":{\"memory\":\"64M\"}"));
  std::string st = waitJob(d(), token_, id, 30);
  EXPECT_EQ(jsonField(st, "state"), "killed") << st;
  EXPECT_EQ(jsonField(st, "signal"), "9") << st;
  EXPECT_EQ(jsonField(st, "oom_killed"), "false") << st;
}

TEST_F(LimitsTest, CpuLimitHoldsABusyLoopNearItsShare) {
  std::string id = startJob(
      d(), token_, shJob("while :; do :; done", ",\"limits\":{\"cpu\":0.2},\"timeout_s\":3"));
  ASSERT_FALSE(id.empty());
  // Live usage is published while the job runs: wait for the first CPU time it reports.
  std::string live;
  waitUntil(
      [&] {
        live = status(id);
        return numberAt(live, {"usage", "cpu_seconds"}).value_or(0) > 0;
      },
      seconds(2));
  EXPECT_EQ(jsonField(live, "state"), "running") << live;
  auto live_cpu = numberAt(live, {"usage", "cpu_seconds"});
  ASSERT_TRUE(live_cpu.has_value()) << "no live usage: " << live;
  EXPECT_GT(*live_cpu, 0.0) << live;
  expectCgroupsPresent(id);

  std::string st = waitJob(d(), token_, id, 30);
  EXPECT_EQ(jsonField(st, "state"), "killed") << st;
  EXPECT_EQ(jsonField(st, "stopped_by"), "timeout") << st;
  EXPECT_EQ(numberAt(st, {"limits", "cpu"}), 0.2) << st;
  auto cpu = numberAt(st, {"usage", "cpu_seconds"});
  ASSERT_TRUE(cpu.has_value()) << st;
  double wall = wallSeconds(st);
  ASSERT_GT(wall, 2.5) << st;
  double share = *cpu / wall;
  std::printf("[ figures  ] cpu 0.2: %.3f cpu s over %.2f s wall = %.1f %% of a core\n", *cpu, wall,
              share * 100);
  EXPECT_GE(share, 0.10) << st;
  EXPECT_LE(share, 0.35) << st;
  expectCgroupsGone(id);
}

TEST_F(LimitsTest, PidsLimitMakesAForkLoopFailWhileTheDaemonStaysHealthy) {
  // A bounded fork loop (60 children), not an unbounded bomb: harmless if the limit failed.
  // dash gives up at the first failed fork; the outer shell then lives on for a few seconds with
  // the job at its limit.
  std::string script =
      "(i=0; while [ $i -lt 60 ]; do (echo ok; exec sleep 4) & i=$((i+1)); done); "
      "echo loop-ended; sleep 3; echo end";
  std::string id = startJob(d(), token_, shJob(script, ",\"limits\":{\"pids\":20}"));
  ASSERT_FALSE(id.empty());
  std::string out = waitOutput(id, "loop-ended", seconds(20));
  ASSERT_NE(out.find("loop-ended"), std::string::npos) << out;

  // The daemon is outside the job's pids budget: healthy, and it starts other jobs.
  HttpResponse h = https(d(), "GET", "/v1/healthz");
  EXPECT_EQ(h.status, 200) << h.body;
  std::string other = startJob(d(), token_, "{\"command\":[\"true\"]}");
  EXPECT_EQ(jsonField(waitJob(d(), token_, other, 30), "exit_code"), "0");

  std::string st = waitJob(d(), token_, id, 30);
  out = output(id);
  size_t oks = 0;
  for (size_t p = out.find("ok\n"); p != std::string::npos; p = out.find("ok\n", p + 1)) oks++;
  std::string lower = out;
  std::transform(lower.begin(), lower.end(), lower.begin(), ::tolower);
  EXPECT_NE(lower.find("fork"), std::string::npos) << "no fork failure reported:\n" << out;
  EXPECT_LE(oks, 20u) << out;
  EXPECT_GE(oks, 1u) << out;
  EXPECT_EQ(numberAt(st, {"limits", "pids"}), 20) << st;
  auto peak = numberAt(st, {"usage", "pids_peak"});
  if (peak) {
    EXPECT_LE(*peak, 20) << st;
  }
  std::printf("[ figures  ] pids 20: %zu of 60 children started, pids_peak %s\n", oks,
              peak ? std::to_string(static_cast<int>(*peak)).c_str() : "(not offered)");
  EXPECT_EQ(https(d(), "GET", "/v1/healthz").status, 200);
  expectCgroupsGone(id);
}

TEST_F(LimitsTest, StopKillsDoubleForkedAndSetsidProcesses) {
  // The inner shell backgrounds a sleep in a new session and exits: the sleep is orphaned, in no
  // process group of the job. The main shell sleeps too.
  std::string id = startJob(
      d(), token_, shJob("setsid sh -c 'sleep 1000 & echo escaped $!'; echo main $$; sleep 1000"));
  ASSERT_FALSE(id.empty());
  std::string out = waitOutput(id, "main", seconds(10));
  EXPECT_NE(out.find("escaped "), std::string::npos) << out;
  // Host pids: the pids the job prints are its own namespace's when it has one.
  std::vector<pid_t> pids = waitHostPids(id, {"sleep", "1000"}, 2, seconds(10));
  ASSERT_EQ(pids.size(), 2u) << "sleep processes of the job on the host: " << joinPids(pids);
  expectCgroupsPresent(id);

  HttpResponse r = https(d(), "POST", "/v1/jobs/" + id + "/stop", "{\"grace_s\":1}", token_);
  EXPECT_EQ(r.status, 202) << r.body;
  std::string st = waitJob(d(), token_, id, 30);
  EXPECT_EQ(jsonField(st, "state"), "killed") << st;
  EXPECT_NE(jsonField(st, "stopped_by"), "null") << st;
  auto alive = waitDead(pids, id, seconds(5));
  EXPECT_TRUE(alive.empty()) << "still alive after the stop: " << joinPids(alive);
  expectCgroupsGone(id);
  // Whatever was left is killed so that a failure does not leak sleeps.
  for (pid_t p : alive) ::kill(p, SIGKILL);
}

TEST_F(LimitsTest, EndOfTheMainProcessKillsEscapedProcesses) {
  std::string id = startJob(d(), token_, shJob("setsid sleep 1000 & sleep 2; echo done"));
  ASSERT_FALSE(id.empty());
  std::vector<pid_t> pids = waitHostPids(id, {"sleep", "1000"}, 1, seconds(5));
  ASSERT_EQ(pids.size(), 1u);
  std::string st = waitJob(d(), token_, id, 30);
  EXPECT_EQ(jsonField(st, "state"), "exited") << st;
  EXPECT_EQ(jsonField(st, "exit_code"), "0") << st;
  auto alive = waitDead(pids, id, seconds(5));
  EXPECT_TRUE(alive.empty()) << "escaped sleep survived the job: " << joinPids(alive);
  expectCgroupsGone(id);
  for (pid_t p : alive) ::kill(p, SIGKILL);
}

TEST_F(LimitsTest, NoJobCgroupIsLeftBehind) {
  // Exit, failure to exec (no job record), kill by signal, timeout: each removes its cgroups.
  std::vector<std::string> ids;
  ids.push_back(startJob(d(), token_, "{\"command\":[\"true\"]}"));
  ids.push_back(startJob(d(), token_, shJob("kill -9 $$")));
  ids.push_back(startJob(d(), token_, shJob("sleep 100", ",\"timeout_s\":1")));
  for (const auto& id : ids) {
    ASSERT_FALSE(id.empty());
    waitJob(d(), token_, id, 30);
    expectCgroupsGone(id);
  }
  // The parent directories stay, and hold no directory of these jobs.
  auto dirs = cgroupDirs(ids.front());
  ASSERT_FALSE(dirs.empty());
  for (const auto& dir : dirs) {
    std::string parent = std::filesystem::path(dir).parent_path();
    EXPECT_TRUE(exists(parent)) << parent;
  }
}

TEST_F(LimitsTest, MaximaRefuseWith403NamingTheLimit) {
  HttpResponse r =
      https(d(), "POST", "/v1/jobs", shJob("true", ",\"limits\":{\"memory\":\"256M\"}"), token_);
  EXPECT_EQ(r.status, 403) << r.body;
  auto code = valueAt(r.body, {"error", "code"});
  EXPECT_EQ(code ? code->toString() : "", "limit_exceeded") << r.body;
  auto msg = valueAt(r.body, {"error", "message"});
  ASSERT_TRUE(msg.has_value()) << r.body;
  EXPECT_NE(msg->toString().find("memory"), std::string::npos) << r.body;

  // Exactly the maximum is allowed.
  std::string id = startJob(d(), token_, shJob("true", ",\"limits\":{\"memory\":\"128M\"}"));
  std::string st = waitJob(d(), token_, id, 30);
  EXPECT_EQ(numberAt(st, {"limits", "memory"}), 128 * kMiB) << st;

  // A per-user maximum overrides the role's.
  std::string carol = login(d(), "carol", "carol-password-1");
  r = https(d(), "POST", "/v1/jobs", shJob("true", ",\"limits\":{\"memory\":\"64M\"}"), carol);
  EXPECT_EQ(r.status, 403) << r.body;
  EXPECT_NE(r.body.find("memory"), std::string::npos) << r.body;
}

TEST_F(LimitsTest, DefaultsApplyAndShowInTheStatusWithUsage) {
  std::string id = startJob(d(), token_, shJob("echo hi"));
  std::string st = waitJob(d(), token_, id, 30);
  EXPECT_EQ(jsonField(st, "state"), "exited") << st;
  EXPECT_EQ(numberAt(st, {"limits", "memory"}), 100 * kMiB) << st;
  EXPECT_EQ(numberAt(st, {"limits", "cpu"}), 0.5) << st;
  EXPECT_EQ(numberAt(st, {"limits", "pids"}), 500) << st;
  EXPECT_EQ(jsonField(st, "oom_killed"), "false") << st;
  EXPECT_TRUE(numberAt(st, {"usage", "cpu_seconds"}).has_value()) << st;
  EXPECT_TRUE(numberAt(st, {"usage", "memory_peak_bytes"}).has_value()) << st;

  // A request that sets one limit still gets the defaults for the others.
  id = startJob(d(), token_, shJob("true", ",\"limits\":{\"pids\":64}"));
  st = waitJob(d(), token_, id, 30);
  EXPECT_EQ(numberAt(st, {"limits", "pids"}), 64) << st;
  EXPECT_EQ(numberAt(st, {"limits", "memory"}), 100 * kMiB) << st;
  EXPECT_EQ(numberAt(st, {"limits", "cpu"}), 0.5) << st;
}

TEST_F(LimitsTest, DefaultAboveAUsersMaximumIsClampedNotRefused) {
  // carol's maximum (32M) is below the default (100M): a job that asks nothing, or asks only for
  // another limit, runs at her maximum; asking for memory over it is refused (previous test).
  std::string carol = login(d(), "carol", "carol-password-1");
  std::string id = startJob(d(), carol, shJob("true"));
  std::string st = waitJob(d(), carol, id, 30);
  EXPECT_EQ(numberAt(st, {"limits", "memory"}), 32 * kMiB) << st;

  HttpResponse r =
      https(d(), "POST", "/v1/jobs", shJob("true", ",\"limits\":{\"cpu\":0.25}"), carol);
  ASSERT_EQ(r.status, 201) << "carol asked for no memory limit: " << r.body;
  st = waitJob(d(), carol, jsonField(r.body, "id"), 30);
  EXPECT_EQ(numberAt(st, {"limits", "memory"}), 32 * kMiB) << st;
  EXPECT_EQ(numberAt(st, {"limits", "cpu"}), 0.25) << st;
}

TEST(LimitsPolicyTest, UnlimitedDefaultIsClampedToTheUsersMaximum) {
  // `default.memory = unlimited` lifts the default, not the maximum: a user-role job that asks
  // nothing runs at the role's maximum, never without a limit.
  Daemon::Options o;
  o.config_text = "default.memory = unlimited\nrole.user.max.memory = 32M\n";
  auto d = Daemon::start(o);
  ASSERT_NE(d, nullptr);
  d->addUser("dave", "user", "dave-password-1");
  std::string token = login(*d, "dave", "dave-password-1");
  std::string id = startJob(*d, token, shJob("true"));
  std::string st = waitJob(*d, token, id, 30);
  EXPECT_EQ(numberAt(st, {"limits", "memory"}), 32 * kMiB) << st;
  // Asking for more than the maximum is still refused.
  HttpResponse r =
      https(*d, "POST", "/v1/jobs", shJob("true", ",\"limits\":{\"memory\":\"64M\"}"), token);
  EXPECT_EQ(r.status, 403) << r.body;
}

// --- Aggregate caps: the user level of the layout ---------------------------------------------

// Each user-role user's jobs together get 50 pids, carol's 100; the instance keeps its host
// default. A job that asks for no pids limit gets the default fitted under the aggregate.
class AggregateTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    Daemon::Options o;
    o.config_text =
        "default.pids = 500\nrole.user.max.total_pids = 50\nuser.carol.max.total_pids = 100\n"
        "stop_grace = 1s\n";
    daemon_ = Daemon::start(o).release();
    if (daemon_ == nullptr) return;
    for (const char* u : {"alice", "bob", "carol"}) {
      daemon_->addUser(u, "user", std::string(u) + "-password-1");
    }
  }
  static void TearDownTestSuite() {
    delete daemon_;
    daemon_ = nullptr;
  }
  void SetUp() override { ASSERT_NE(daemon_, nullptr) << "the daemon did not start"; }
  static std::string tokenOf(const std::string& u) { return login(*daemon_, u, u + "-password-1"); }
  static std::string output(const std::string& token, const std::string& id) {
    return https(*daemon_, "GET", "/v1/jobs/" + id + "/logs", "", token).body;
  }
  static bool waitOutputHas(const std::string& token, const std::string& id,
                            const std::string& text) {
    return waitUntil([&] { return output(token, id).find(text) != std::string::npos; },
                     seconds(30));
  }
  static void stop(const std::string& token, const std::string& id) {
    https(*daemon_, "POST", "/v1/jobs/" + id + "/stop", "{\"grace_s\":1}", token);
    waitJob(*daemon_, token, id, 30);
  }
  static Daemon* daemon_;
};
Daemon* AggregateTest::daemon_ = nullptr;

TEST_F(AggregateTest, ExplicitLimitOverTheUsersAggregateIs403NamingIt) {
  std::string alice = tokenOf("alice");
  HttpResponse r =
      https(*daemon_, "POST", "/v1/jobs", shJob("true", ",\"limits\":{\"pids\":60}"), alice);
  EXPECT_EQ(r.status, 403) << r.body;
  auto code = valueAt(r.body, {"error", "code"});
  EXPECT_EQ(code ? code->toString() : "", "limit_exceeded") << r.body;
  EXPECT_NE(r.body.find("max.total_pids"), std::string::npos) << r.body;
  EXPECT_NE(r.body.find("alice"), std::string::npos) << r.body;
  // Exactly the aggregate is allowed; a default above it is fitted under it, not refused.
  std::string id = startJob(*daemon_, alice, shJob("true", ",\"limits\":{\"pids\":50}"));
  EXPECT_EQ(numberAt(waitJob(*daemon_, alice, id, 30), {"limits", "pids"}), 50);
  id = startJob(*daemon_, alice, shJob("true"));
  EXPECT_EQ(numberAt(waitJob(*daemon_, alice, id, 30), {"limits", "pids"}), 50);
  // A user's own aggregate overrides the role's.
  std::string carol = tokenOf("carol");
  id = startJob(*daemon_, carol, shJob("true", ",\"limits\":{\"pids\":80}"));
  EXPECT_EQ(numberAt(waitJob(*daemon_, carol, id, 30), {"limits", "pids"}), 80);
}

TEST_F(AggregateTest, AForkBombInOneUsersJobsLeavesAnotherUsersPidsAlone) {
  std::string alice = tokenOf("alice");
  std::string bob = tokenOf("bob");
  // 30 sleeps (+ the shell and the job's init): within the job's 50, most of alice's 50.
  const std::string holder = "for i in $(seq 30); do sleep 120 & done; echo ready; wait";
  std::string held = startJob(*daemon_, alice, shJob(holder, ",\"timeout_s\":90"));
  ASSERT_TRUE(waitOutputHas(alice, held, "ready")) << output(alice, held);

  // A bounded fork bomb in alice's second job: its own limit (50) would let it start 48
  // children, her aggregate leaves it fewer than 20. dash gives up at the first failed fork.
  const std::string bomb =
      "i=0; while [ $i -lt 200 ]; do sleep 120 & i=$((i+1)); echo started $i; done";
  auto started = Clock::now();
  std::string bombed = startJob(*daemon_, alice, shJob(bomb, ",\"timeout_s\":60"));
  std::string st = waitJob(*daemon_, alice, bombed, 60);
  double bomb_s = std::chrono::duration<double>(Clock::now() - started).count();
  std::string out = output(alice, bombed);
  size_t children = 0;
  for (size_t p = out.find("started "); p != std::string::npos; p = out.find("started ", p + 1)) {
    children++;
  }
  std::string lower = out;
  std::transform(lower.begin(), lower.end(), lower.begin(), ::tolower);
  EXPECT_NE(lower.find("fork"), std::string::npos) << "no fork failure:\n" << out;
  EXPECT_LT(children, 20u) << out;
  EXPECT_NE(jsonField(st, "exit_code"), "0") << st;

  // bob's jobs have their own 50: the same 30 sleeps start while alice's are all taken.
  std::string bobs = startJob(*daemon_, bob, shJob(holder, ",\"timeout_s\":90"));
  EXPECT_TRUE(waitOutputHas(bob, bobs, "ready")) << output(bob, bobs);
  std::printf(
      "[ figures  ] user aggregate 50 pids: alice's bomb started %zu children (in %.2f s) "
      "beside her 30 held; bob's 30 started\n",
      children, bomb_s);
  stop(bob, bobs);
  stop(alice, held);
}

TEST_F(LimitsTest, MalformedLimitsAre400NamingTheField) {
  struct Case {
    std::string limits;
    std::string names;
  } cases[] = {
      {"{\"memory\":\"12Q\"}", "limits.memory"},
      {"{\"memory\":0}", "limits.memory"},
      {"{\"memory\":-5}", "limits.memory"},
      {"{\"cpu\":-1}", "limits.cpu"},
      {"{\"cpu\":\"lots\"}", "limits.cpu"},
      {"{\"cpu\":0.005}", "limits.cpu"},  // below the kernel's minimum quota (0.01)
      {"{\"pids\":0}", "limits.pids"},
      {"{\"pids\":1.5}", "limits.pids"},
      {"{\"swap\":1}", "limits.swap"},
      {"{\"io\":[{\"device\":\"sda\",\"write_bps\":\"1M\"}]}", "limits.io[0].device"},
      {"{\"io\":[{\"device\":\"/dev/vda\",\"write_bps\":\"1X\"}]}", "limits.io[0].write_bps"},
      {"{\"io\":[{\"device\":\"/dev/vda\",\"burst\":1}]}", "limits.io[0].burst"},
      {"{\"io\":[{\"device\":\"/etc/passwd\",\"write_bps\":1}]}", "limits.io[0].device"},
      {"{\"io\":[{\"device\":\"/dev/vda\"}]}", "limits.io[0]"},  // limits nothing
      {"\"64M\"", "limits"},
      // Outside what the kernel takes: a 400 naming the range, never a 503 with a cgroup path.
      {"{\"pids\":1000000000}", "limits.pids must be in 1..4194304"},
      {"{\"memory\":18446744073709551616}", "is out of range"},  // 2^64: Poco wraps it to 0
      {"{\"memory\":\"8388608T\"}", "limits.memory must be in"},
  };
  for (const auto& c : cases) {
    HttpResponse r =
        https(d(), "POST", "/v1/jobs", shJob("true", ",\"limits\":" + c.limits), token_);
    EXPECT_EQ(r.status, 400) << c.limits << ": " << r.body;
    auto msg = valueAt(r.body, {"error", "message"});
    EXPECT_TRUE(msg && msg->toString().find(c.names) != std::string::npos)
        << c.limits << " should name " << c.names << ": " << r.body;
    EXPECT_EQ(r.body.find("/sys/fs/cgroup"), std::string::npos) << r.body;
  }
}

TEST_F(LimitsTest, IoLimitOnAMissingOrNonBlockDeviceIs400) {
  // Only the supervisor can tell (it stats the device as root): the client's mistake all the same,
  // not a 503 "try again later".
  for (const char* dev : {"/dev/jw-no-such-disk", "/dev/null"}) {
    std::string limits =
        ",\"limits\":{\"io\":[{\"device\":" + jsonString(dev) + ",\"write_bps\":\"1M\"}]}";
    HttpResponse r = https(d(), "POST", "/v1/jobs", shJob("true", limits), token_);
    EXPECT_EQ(r.status, 400) << dev << ": " << r.body;
    EXPECT_NE(r.body.find(dev), std::string::npos) << r.body;
  }
}

TEST_F(LimitsTest, IoWriteBandwidthLimitSlowsDirectWrites) {
  // Not under /tmp: jobs may get a private tmpfs there, where O_DIRECT has no disk behind it.
  std::string dir = "/var/tmp/jwlimits-XXXXXX";
  ASSERT_NE(::mkdtemp(dir.data()), nullptr) << std::strerror(errno);
  ASSERT_EQ(::chmod(dir.c_str(), 0777), 0);  // the job runs as nobody
  struct Cleanup {
    std::string d;
    ~Cleanup() { removeTree(d); }
  } cleanup{dir};
  std::string why;
  std::string disk = wholeDiskOf(dir, &why);
  if (disk.empty()) GTEST_SKIP() << "cannot tell the disk to throttle: " << why;

  const std::string dd = "dd if=/dev/zero of=f bs=1M count=4 oflag=direct 2>&1; rm -f f";
  std::string cwd = ",\"cwd\":" + jsonString(dir);
  std::string base_id = startJob(d(), token_, shJob(dd, cwd));
  std::string base = waitJob(d(), token_, base_id, 60);
  std::string base_out = output(base_id);
  if (jsonField(base, "exit_code") != "0" || base_out.find("copied") == std::string::npos) {
    GTEST_SKIP() << "direct IO does not work in " << dir << ": " << base_out;
  }
  double base_wall = wallSeconds(base);
  if (base_wall > 1.5) GTEST_SKIP() << "the disk is too slow for a band: " << base_wall << " s";

  std::string limited =
      ",\"limits\":{\"io\":[{\"device\":" + jsonString(disk) + ",\"write_bps\":\"1M\"}]}";
  std::string id = startJob(d(), token_, shJob(dd, cwd + limited));
  ASSERT_FALSE(id.empty());
  std::string st = waitJob(d(), token_, id, 60);
  std::string out = output(id);
  EXPECT_EQ(jsonField(st, "exit_code"), "0") << st << out;
  double wall = wallSeconds(st);
  std::printf("[ figures  ] io write_bps 1M on %s: 4 MiB direct in %.2f s (unlimited %.2f s)\n",
              disk.c_str(), wall, base_wall);
  // 4 MiB at 1 MiB/s: about 3 to 4 s (the throttle lets the first slice through).
  EXPECT_GE(wall, 2.0) << out;
  EXPECT_LE(wall, 10.0) << out;
  auto io = stringsAt(st, {"limits", "io"});
  ASSERT_EQ(io.size(), 1u) << st;
  EXPECT_EQ(valueAt(io[0], {"device"})->toString(), disk) << st;
  EXPECT_EQ(numberAt(io[0], {"write_bps"}), 1 * kMiB) << st;
  if (auto written = numberAt(st, {"usage", "io_write_bytes"})) {
    EXPECT_GE(*written, 4 * kMiB) << st;
  }
  expectCgroupsGone(id);
}

TEST_F(LimitsTest, HealthzNamesTheCgroupBackend) {
  HttpResponse h = https(d(), "GET", "/v1/healthz", "", token_);  // details need a session
  ASSERT_EQ(h.status, 200) << h.body;
  std::string details;
  for (const auto& s : stringsAt(h.body, {"details"})) details += s + "\n";
  // The backend is v2 only when /sys/fs/cgroup itself is the unified hierarchy.
  bool v2 = exists("/sys/fs/cgroup/cgroup.controllers");
  std::string want = v2 ? "cgroups: v2" : "cgroups: v1";
  EXPECT_NE(details.find(want), std::string::npos) << details;
}

TEST_F(LimitsTest, CliMemoryFlagEndsInOomAndStatusSaysSo) {
  std::string xdg = makeTempDir("jwlimcli");
  struct Cleanup {
    std::string d;
    ~Cleanup() { removeTree(d); }
  } cleanup{xdg};
  std::vector<std::string> env = {"XDG_CONFIG_HOME=" + xdg};
  for (const char* v : {"JOBWORKER_SERVER", "JOBWORKER_TOKEN", "JOBWORKER_CA_FILE"}) ::unsetenv(v);
  auto cli = [&](std::vector<std::string> args, const std::string& in = "") {
    args.insert(args.begin(), binary("jobworker"));
    return run(args, in, env, 120);
  };
  CmdResult r = cli({"login", "--server", d().url(), "--ca-file", d().caFile(), "--user", "admin",
                     "--password-stdin"},
                    d().adminPassword() + "\n");
  ASSERT_EQ(r.exit_code, 0) << r.err;

  r = cli({"run", "--memory", "64M", "--", "sh", "-c", kMemoryHog});
  EXPECT_EQ(r.exit_code, 137) << r.out << r.err;
  EXPECT_NE(r.err.find("out of memory"), std::string::npos) << r.err;

  r = cli({"list", "--quiet"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::string id = r.out.substr(0, r.out.find('\n'));
  ASSERT_FALSE(id.empty()) << r.out;
  r = cli({"status", id});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("out of memory"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("memory 64"), std::string::npos) << r.out;  // the limits line
  expectCgroupsGone(id);
}

}  // namespace
}  // namespace jw::test
