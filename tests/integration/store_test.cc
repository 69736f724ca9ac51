// Integration tests of the output store's promises, against the real jobworkerd over real HTTPS:
// a full state disk kills no job and heals by itself, thousands of finished jobs hold no fd, and
// one user's volume never evicts another user's history. Runs in the test process, as root.
#include <gtest/gtest.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "common/sanitizer.h"
#include "tests/integration/daemon.h"

namespace jw::test {
namespace {

using Clock = std::chrono::steady_clock;

double secondsSince(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

std::string errorCode(const HttpResponse& r) {
  return jsonField(jsonField(r.body, "error"), "code");
}

size_t countOf(const std::string& haystack, const std::string& needle) {
  size_t n = 0;
  for (size_t at = haystack.find(needle); at != std::string::npos;
       at = haystack.find(needle, at + needle.size())) {
    n++;
  }
  return n;
}

size_t openFdsOf(pid_t pid) {
  size_t n = 0;
  std::error_code ec;
  for (const auto& e :
       std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/fd", ec)) {
    (void)e;
    n++;
  }
  return n;
}

// "SOFT HARD" of the "Max open files" line of /proc/PID/limits.
std::string nofileLimits(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/limits");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("Max open files", 0) != 0) continue;
    std::istringstream words(line.substr(std::strlen("Max open files")));
    std::string soft, hard;
    words >> soft >> hard;
    return soft + " " + hard;
  }
  return "";
}

bool noneRunning(const Daemon& d, const std::string& token) {
  HttpResponse r = https(d, "GET", "/v1/jobs?state=running", "", token);
  return r.status == 200 && r.body.find(R"("state":"running")") == std::string::npos;
}

// Starts `count` copies of the job, one after another, and waits until none runs. A start the
// daemon refuses for fds (503) or running jobs (403) waits for the running jobs to end and tries
// again: that refusal is the designed back-pressure, counted in *retries.
void runMany(const Daemon& d, const std::string& token, int count, const std::string& body,
             int* retries) {
  for (int i = 0; i < count; i++) {
    HttpResponse r = https(d, "POST", "/v1/jobs", body, token);
    if (r.status == 503 || (r.status == 403 && errorCode(r) == "limit_exceeded")) {
      (*retries)++;
      i--;
      ASSERT_TRUE(waitUntil([&] { return noneRunning(d, token); }, std::chrono::seconds(60)));
      continue;
    }
    ASSERT_EQ(r.status, 201) << "start " << i << ": " << r.body;
  }
  ASSERT_TRUE(waitUntil([&] { return noneRunning(d, token); }, std::chrono::seconds(120)))
      << "jobs still running 120 s after the last start";
}

// --- a full disk -------------------------------------------------------------------------------

// A 20 MiB tmpfs as the state dir, mounted by the test and unmounted after it.
class SmallStateDisk {
 public:
  SmallStateDisk() {
    dir_ = makeTempDir("jwstore-tmpfs");
    mounted_ =
        mount("jwtest", dir_.c_str(), "tmpfs", MS_NOSUID | MS_NODEV, "size=20m,mode=0700") == 0;
    if (!mounted_) ADD_FAILURE() << "mount tmpfs on " << dir_ << ": " << std::strerror(errno);
  }
  ~SmallStateDisk() {
    if (mounted_ && umount2(dir_.c_str(), MNT_DETACH) != 0) {
      ADD_FAILURE() << "umount " << dir_ << ": " << std::strerror(errno);
    }
    rmdir(dir_.c_str());
  }
  SmallStateDisk(const SmallStateDisk&) = delete;
  SmallStateDisk& operator=(const SmallStateDisk&) = delete;
  const std::string& path() const { return dir_; }
  bool mounted() const { return mounted_; }

 private:
  std::string dir_;
  bool mounted_ = false;
};

// A directory jobs can see (not /tmp: each job has its own), where the test drops a file to
// tell a job to finish.
class SignalDir {
 public:
  SignalDir() {
    std::string t = "/var/tmp/jwstore-signal-XXXXXX";
    if (mkdtemp(t.data()) == nullptr) ADD_FAILURE() << "mkdtemp: " << std::strerror(errno);
    chmod(t.c_str(), 0755);
    dir_ = t;
  }
  ~SignalDir() { removeTree(dir_); }
  SignalDir(const SignalDir&) = delete;
  SignalDir& operator=(const SignalDir&) = delete;
  std::string file(const std::string& name) const { return dir_ + "/" + name; }

 private:
  std::string dir_;
};

TEST(Store, AFullDiskKillsNoJobAndHealsByItself) {
  SmallStateDisk disk;
  ASSERT_TRUE(disk.mounted());
  SignalDir signal;
  Daemon::Options o;
  o.state_dir = disk.path();
  o.config_text = "state_reserve = 2M\n";
  auto d = Daemon::start(o);
  std::string t = login(*d, "admin", d->adminPassword());
  // Most of the disk taken by a file the test removes later: "space returns".
  const std::string filler = disk.path() + "/filler";
  {
    std::ofstream f(filler, std::ios::binary);
    std::string mib(1 << 20, 'f');
    for (int i = 0; i < 12; i++) f << mib;
  }
  ASSERT_EQ(jsonField(https(*d, "GET", "/v1/healthz").body, "status"), "ok");

  // The unrelated job: prints a 200-byte line every 20 ms until the test says stop.
  const std::string line(199, 'b');
  std::string other = startJob(*d, t,
                               R"({"command":["sh","-c","while [ ! -e )" + signal.file("stop") +
                                   R"( ]; do echo )" + line + R"(; sleep 0.02; done; exit 3"]})");
  ASSERT_TRUE(waitUntil(
      [&] {
        return jsonField(https(*d, "GET", "/v1/jobs/" + other, "", t).body, "output_bytes") != "0";
      },
      std::chrono::seconds(30)));

  // The job that fills the disk: 30 MB of zeros into what is left of 20 MiB.
  std::string filler_job =
      startJob(*d, t, R"({"command":["head","-c","30000000","/dev/zero"],"output":"separate"})");
  std::string s = waitJob(*d, t, filler_job);
  EXPECT_EQ(jsonField(s, "state"), "exited") << s;  // not SIGPIPE
  EXPECT_EQ(jsonField(s, "exit_code"), "0") << s;
  const std::string error = jsonField(s, "output_error");
  EXPECT_EQ(error.rfind("no space left on device at byte ", 0), 0u) << s;
  EXPECT_EQ(error, "no space left on device at byte " + jsonField(s, "output_bytes")) << s;
  EXPECT_EQ(
      std::stoull(jsonField(s, "output_bytes")) + std::stoull(jsonField(s, "output_dropped_bytes")),
      30'000'000u)
      << s;
  EXPECT_EQ(jsonField(s, "output_truncated"), "true") << s;
  EXPECT_EQ(jsonField(s, "stderr_error"), "null") << s;  // it wrote nothing there
  std::printf("[ measure ] filler job: %s bytes stored, %s dropped: %s\n",
              jsonField(s, "output_bytes").c_str(), jsonField(s, "output_dropped_bytes").c_str(),
              error.c_str());
  // What was stored reads back.
  HttpResponse tail = https(*d, "GET",
                            "/v1/jobs/" + filler_job + "/logs?offset=" +
                                std::to_string(std::stoull(jsonField(s, "output_bytes")) - 4),
                            "", t);
  EXPECT_EQ(tail.body, std::string(4, '\0'));

  // The unrelated job runs on, its own output now failing too.
  std::string os;
  ASSERT_TRUE(waitUntil(
      [&] {
        os = https(*d, "GET", "/v1/jobs/" + other, "", t).body;
        return jsonField(os, "output_error") != "null";
      },
      std::chrono::seconds(30)))
      << os;
  EXPECT_EQ(jsonField(os, "state"), "running") << os;
  EXPECT_EQ(jsonField(os, "output_error").rfind("no space left on device at byte ", 0), 0u) << os;

  HttpResponse h = https(*d, "GET", "/v1/healthz", "", t);  // the reason is a detail
  EXPECT_EQ(h.status, 200) << h.body;
  EXPECT_EQ(jsonField(h.body, "status"), "degraded") << h.body;
  EXPECT_NE(h.body.find("state_reserve"), std::string::npos) << h.body;
  HttpResponse refused = https(*d, "POST", "/v1/jobs", R"({"command":["true"]})", t);
  EXPECT_EQ(refused.status, 507) << refused.body;
  EXPECT_EQ(errorCode(refused), "insufficient_storage") << refused.body;
  EXPECT_NE(refused.body.find("state_reserve"), std::string::npos) << refused.body;

  // Space returns: healthz and starts recover without anyone touching the daemon.
  ASSERT_EQ(unlink(filler.c_str()), 0);
  EXPECT_TRUE(
      waitUntil([&] { return jsonField(https(*d, "GET", "/v1/healthz").body, "status") == "ok"; },
                std::chrono::seconds(10)));
  std::string back = startJob(*d, t, R"({"command":["echo","back"]})");
  s = waitJob(*d, t, back);
  EXPECT_EQ(jsonField(s, "exit_code"), "0") << s;
  EXPECT_EQ(jsonField(s, "output_error"), "null") << s;
  EXPECT_EQ(https(*d, "GET", "/v1/jobs/" + back + "/logs", "", t).body, "back\n");

  // The unrelated job ends the way it chose to, with its status saying what is missing.
  std::ofstream(signal.file("stop")) << "";
  os = waitJob(*d, t, other);
  EXPECT_EQ(jsonField(os, "state"), "exited") << os;
  EXPECT_EQ(jsonField(os, "exit_code"), "3") << os;
  EXPECT_EQ(jsonField(os, "output_error").rfind("no space left on device at byte ", 0), 0u) << os;
  EXPECT_NE(d->log().find("no space left on device"), std::string::npos);
}

// --- file descriptors --------------------------------------------------------------------------

// jobworkerd started under `ulimit -n`: prlimit sets the limits and execs it in place.
std::unique_ptr<Daemon> startWithNofile(Daemon::Options o, int soft, int hard) {
  o.exec_prefix = {"/usr/bin/prlimit",
                   "--nofile=" + std::to_string(soft) + ":" + std::to_string(hard), "--"};
  return Daemon::start(o);
}

TEST(Store, JobsGetTheSoftFdLimitTheDaemonWasStartedWith) {
  auto d = startWithNofile({}, 1024, 4096);
  std::string limits = nofileLimits(d->pid());
  EXPECT_EQ(limits, "4096 4096");  // raised to the hard limit
  std::string t = login(*d, "admin", d->adminPassword());
  std::string id = startJob(*d, t, R"({"command":["sh","-c","ulimit -Sn; ulimit -Hn"]})");
  waitJob(*d, t, id);
  EXPECT_EQ(https(*d, "GET", "/v1/jobs/" + id + "/logs", "", t).body, "1024\n4096\n");
}

// The volume tests run at full size in the normal build; under the sanitizers every start costs
// ~5x, so they run smaller, still past the fd limit and the retention caps they are about.
constexpr int kSeparateJobs = JW_ASAN ? 1200 : 2000;  // x2 fds each, past RLIMIT_NOFILE 1024
constexpr int kTrivialJobs = JW_ASAN ? 600 : 2000;

TEST(Store, TwoThousandFinishedJobsHoldNoFd) {
  Daemon::Options o;
  o.config_text = "retention_count = 5000\nmax_running_jobs_per_user = 1000\n";
  auto d = startWithNofile(o, 1024, 1024);
  std::string t = login(*d, "admin", d->adminPassword());
  size_t fds_before = openFdsOf(d->pid());
  std::string first =
      startJob(*d, t, R"({"command":["sh","-c","echo out; echo err >&2"],"output":"separate"})");
  int retries = 0;
  auto t0 = Clock::now();
  runMany(*d, t, kSeparateJobs - 1,
          R"({"command":["sh","-c","echo out; echo err >&2"],"output":"separate"})", &retries);
  double took = secondsSince(t0);
  size_t fds_after = openFdsOf(d->pid());
  std::printf(
      "[ measure ] %d separate jobs under RLIMIT_NOFILE 1024 in %.1f s (%.1f ms per job, %d "
      "starts retried after 503); jobworkerd open fds: %zu before, %zu after\n",
      kSeparateJobs, took, took * 1000 / kSeparateJobs, retries, fds_before, fds_after);
  EXPECT_LT(fds_after, fds_before + 16);
  HttpResponse list = https(*d, "GET", "/v1/jobs", "", t);
  EXPECT_EQ(countOf(list.body, R"("state":"exited")"), static_cast<size_t>(kSeparateJobs));
  // The oldest job's logs still read (opened for the read), and a new start works.
  EXPECT_EQ(https(*d, "GET", "/v1/jobs/" + first + "/logs?stream=stderr", "", t).body, "err\n");
  std::string last = startJob(*d, t, R"({"command":["echo","still"]})");
  waitJob(*d, t, last);
  EXPECT_EQ(https(*d, "GET", "/v1/jobs/" + last + "/logs", "", t).body, "still\n");
  HttpResponse h = https(*d, "GET", "/v1/healthz", "", t);  // the fd count is a detail
  EXPECT_EQ(jsonField(h.body, "status"), "ok") << h.body;
  EXPECT_NE(h.body.find("file descriptors: "), std::string::npos) << h.body;
}

TEST(Store, StartsAreRefusedWith503BeforeFdsRunOut) {
  Daemon::Options o;
  o.config_text = "max_running_jobs_per_user = 1000\n";
  auto d = startWithNofile(o, 128, 128);
  std::string t = login(*d, "admin", d->adminPassword());
  std::vector<std::string> running;
  HttpResponse r, h;
  // 128 fds hold far fewer jobs than this. A start's own short-lived fds (its exec report) may
  // still be open when the next is refused: the refusal stands once healthz agrees.
  for (int i = 0; i < 100; i++) {
    r = https(*d, "POST", "/v1/jobs", R"({"command":["sleep","600"],"output":"separate"})", t);
    if (r.status == 201) {
      running.push_back(jsonField(r.body, "id"));
      continue;
    }
    h = https(*d, "GET", "/v1/healthz");
    if (r.status != 503 || jsonField(h.body, "status") == "degraded") break;
  }
  std::printf(
      "[ measure ] RLIMIT_NOFILE 128: %zu running separate jobs, then %d; jobworkerd has "
      "%zu fds open\n",
      running.size(), r.status, openFdsOf(d->pid()));
  EXPECT_EQ(r.status, 503) << r.body;
  EXPECT_EQ(errorCode(r), "unavailable") << r.body;
  EXPECT_NE(r.body.find("file descriptors"), std::string::npos) << r.body;
  EXPECT_FALSE(running.empty());
  EXPECT_EQ(jsonField(h.body, "status"), "degraded") << h.body;
  // Reads of running jobs still work at the limit.
  EXPECT_EQ(https(*d, "GET", "/v1/jobs/" + running[0] + "/logs", "", t).status, 200);
  for (const auto& id : running) {
    EXPECT_EQ(https(*d, "POST", "/v1/jobs/" + id + "/stop", "", t).status, 202);
  }
  ASSERT_TRUE(waitUntil([&] { return noneRunning(*d, t); }, std::chrono::seconds(60)));
  std::string id = startJob(*d, t, R"({"command":["echo","again"]})");
  waitJob(*d, t, id);
  EXPECT_EQ(https(*d, "GET", "/v1/jobs/" + id + "/logs", "", t).body, "again\n");
  EXPECT_EQ(jsonField(https(*d, "GET", "/v1/healthz").body, "status"), "ok");
}

// --- retention ---------------------------------------------------------------------------------

TEST(Store, OneUsersJobsDoNotEvictAnothersHistory) {
  Daemon::Options o;
  // kTrivialJobs jobs of alice pass both: her own count, then the host-wide cap.
  o.config_text = "retention_count = " + std::to_string(kTrivialJobs * 3 / 4) +
                  "\nretention_total = " + std::to_string(kTrivialJobs / 2) +
                  "\nmax_running_jobs_per_user = 1000\n";
  auto d = Daemon::start(o);
  d->addUser("alice", "user", "alice-password");
  d->addUser("bob", "user", "bob-password");
  std::string a = login(*d, "alice", "alice-password");
  std::string b = login(*d, "bob", "bob-password");
  std::string bobs = startJob(*d, b, R"({"command":["echo","bob was here"]})");
  waitJob(*d, b, bobs);
  int retries = 0;
  auto t0 = Clock::now();
  runMany(*d, a, kTrivialJobs, R"({"command":["true"]})", &retries);
  std::printf("[ measure ] %d trivial jobs of one user in %.1f s (%d starts retried)\n",
              kTrivialJobs, secondsSince(t0), retries);
  HttpResponse mine = https(*d, "GET", "/v1/jobs/" + bobs, "", b);
  EXPECT_EQ(mine.status, 200) << mine.body;
  EXPECT_EQ(https(*d, "GET", "/v1/jobs/" + bobs + "/logs", "", b).body, "bob was here\n");
  // alice keeps what the host-wide cap leaves after bob's one job.
  HttpResponse hers = https(*d, "GET", "/v1/jobs", "", a);
  EXPECT_EQ(countOf(hers.body, R"("owner":"alice")"), static_cast<size_t>(kTrivialJobs / 2 - 1));
}

}  // namespace
}  // namespace jw::test
