// Integration tests of the job's shim (jobworker-init) through the real daemon: what a job sees
// of its PID 1 and of /sys/fs/cgroup, a shim without a PID namespace, and jobs that outlive a
// SIGKILLed jobworkerd (their output keeps landing, their timeout still passes, their exit is
// recorded in <job>/exit). Runs in the integration test process (root).
#include <gtest/gtest.h>
#include <pwd.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "common/protocol/shim_messages.h"
#include "tests/integration/daemon.h"

namespace jw::test {
namespace {

using std::chrono::seconds;

void ensureFrontendAccount() {
  if (getpwnam("jobworker") != nullptr) return;
  CmdResult r = run({"/usr/sbin/useradd", "--system", "--no-create-home", "--shell",
                     "/usr/sbin/nologin", "jobworker"});
  ASSERT_EQ(r.exit_code, 0) << "useradd jobworker: " << r.err;
}

std::string jobBody(const std::string& script, const std::string& extra = "") {
  return "{\"command\":[\"sh\",\"-c\"," + jsonString(script) + "]" + extra + "}";
}

std::string readText(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

std::string logsOf(const Daemon& d, const std::string& token, const std::string& id) {
  HttpResponse r = https(d, "GET", "/v1/jobs/" + id + "/logs", "", token);
  EXPECT_EQ(r.status, 200) << r.body;
  return r.body;
}

bool alive(pid_t pid) {
  std::string state = procStatusField(pid, "State");
  return !state.empty() && state[0] != 'Z';
}

// A job's cgroup directories, from its shim's /proc/PID/cgroup while it runs: the ones named
// after the job (never the daemon's own).
std::vector<std::string> jobCgroupDirs(pid_t shim, const std::string& job_id) {
  std::vector<std::string> out;
  std::istringstream in(readText("/proc/" + std::to_string(shim) + "/cgroup"));
  std::string line;
  while (std::getline(in, line)) {
    size_t c1 = line.find(':'), c2 = line.find(':', c1 + 1);
    if (c1 == std::string::npos || c2 == std::string::npos) continue;
    std::string controllers = line.substr(c1 + 1, c2 - c1 - 1), path = line.substr(c2 + 1);
    if (path.size() < job_id.size() ||
        path.compare(path.size() - job_id.size(), job_id.size(), job_id) != 0) {
      continue;
    }
    out.push_back(controllers.empty() ? "/sys/fs/cgroup" + path
                                      : "/sys/fs/cgroup/" + controllers + path);
  }
  return out;
}

// After a jobworkerd was SIGKILLed nobody removes a job's cgroups: the test does.
void removeCgroups(const std::vector<std::string>& dirs) {
  for (const auto& dir : dirs) {
    EXPECT_TRUE(waitUntil([&] { return rmdir(dir.c_str()) == 0 || errno == ENOENT; }, seconds(10)))
        << dir << ": " << strerror(errno);
  }
}

class Shim : public ::testing::Test {
 protected:
  void SetUp() override { ensureFrontendAccount(); }
  void TearDown() override {
    if (HasFailure() && daemon_)
      std::fprintf(stderr, "--- jobworkerd log ---\n%s\n", log().c_str());
  }
  void start(const std::string& config = "") {
    Daemon::Options o;
    o.config_text = config;
    daemon_ = Daemon::start(o);
    ASSERT_TRUE(daemon_);
    token_ = login(*daemon_, "admin", daemon_->adminPassword());
  }
  std::string log() const { return daemon_->log(); }
  std::unique_ptr<Daemon> daemon_;
  std::string token_;
};

TEST_F(Shim, Pid1IsJwInitAndShowsNothingOfTheSupervisor) {
  start();
  std::string id =
      startJob(*daemon_, token_,
               jobBody("tr '\\0' ' ' < /proc/1/cmdline; echo; wc -c < /proc/1/environ; "
                       "cat /proc/1/comm; ls /proc/1/fd 2>&1 | wc -l"));
  ASSERT_FALSE(id.empty());
  std::string status = waitJob(*daemon_, token_, id);
  EXPECT_EQ(jsonField(status, "exit_code"), "0") << status;
  std::string out = logsOf(*daemon_, token_, id);
  std::istringstream in(out);
  std::string cmdline, environ_bytes, comm;
  std::getline(in, cmdline);
  std::getline(in, environ_bytes);
  std::getline(in, comm);
  EXPECT_EQ(cmdline, "jw-init " + id.substr(0, 8) + " ");
  // Empty, or (a non-root job's view of its root PID 1) not even readable.
  EXPECT_TRUE(environ_bytes == "0" || environ_bytes.find("Permission denied") != std::string::npos)
      << environ_bytes;
  EXPECT_EQ(comm, "jw-init");
  EXPECT_EQ(out.find(daemon_->stateDir()), std::string::npos) << out;
  EXPECT_EQ(out.find(std::to_string(daemon_->port())), std::string::npos) << out;
  EXPECT_EQ(out.find("jobworkerd"), std::string::npos) << out;
}

TEST_F(Shim, WithoutAPidNamespaceTheJobStillHasAShimAndExactOutput) {
  start("isolation.pid = false\n");
  std::string id =
      startJob(*daemon_, token_,
               jobBody("tr '\\0' ' ' < /proc/$PPID/cmdline; echo; seq 1 200000; seq 1 1000 >&2",
                       R"(,"output":"separate")"));
  ASSERT_FALSE(id.empty());
  std::string status = waitJob(*daemon_, token_, id);
  EXPECT_EQ(jsonField(status, "exit_code"), "0") << status;
  std::string want = "jw-init " + id.substr(0, 8) + " \n";
  for (int i = 1; i <= 200000; i++) want += std::to_string(i) + "\n";
  std::string out = logsOf(*daemon_, token_, id);
  EXPECT_EQ(out.size(), want.size());
  EXPECT_TRUE(out == want) << out.substr(0, 200);
  std::string err_want;
  for (int i = 1; i <= 1000; i++) err_want += std::to_string(i) + "\n";
  HttpResponse err = https(*daemon_, "GET", "/v1/jobs/" + id + "/logs?stream=stderr", "", token_);
  EXPECT_EQ(err.body, err_want);
  EXPECT_EQ(jsonField(status, "output_bytes"), std::to_string(want.size())) << status;
}

TEST_F(Shim, NoOtherJobsIdIsVisibleFromInsideAJob) {
  start();
  std::string other = startJob(*daemon_, token_, jobBody("sleep 60"));
  ASSERT_FALSE(other.empty());
  // Everything a job could list: names under /sys/fs/cgroup and /proc, and every readable
  // file under /sys/fs/cgroup (cgroup.procs, ...).
  std::string id = startJob(*daemon_, token_,
                            jobBody("find /sys/fs/cgroup /proc -maxdepth 8 2>/dev/null; "
                                    "grep -rs . /sys/fs/cgroup 2>/dev/null; "
                                    "echo ---; cat /proc/self/cgroup"));
  ASSERT_FALSE(id.empty());
  std::string status = waitJob(*daemon_, token_, id);
  EXPECT_EQ(jsonField(status, "exit_code"), "0") << status;
  std::string out = logsOf(*daemon_, token_, id);
  EXPECT_GT(out.size(), 1000u) << out;  // it did see a /proc and a /sys/fs/cgroup of its own
  EXPECT_NE(out.find("/sys/fs/cgroup/"), std::string::npos) << out;
  EXPECT_NE(out.find("cgroup.procs"), std::string::npos) << "no cgroup hierarchy mounted: " << out;
  EXPECT_EQ(out.find(other), std::string::npos) << "the other job's id is visible";
  EXPECT_EQ(out.find(other.substr(0, 8)), std::string::npos) << "its short id is visible";
  EXPECT_EQ(out.find(id), std::string::npos) << "its own cgroup path is visible";
  EXPECT_EQ(out.find("jobworker"), std::string::npos) << "the daemon's cgroups are visible";
  // Its own cgroup is the root of every hierarchy it sits in.
  std::string self = out.substr(out.rfind("---\n") + 4);
  std::istringstream in(self);
  std::string line;
  while (std::getline(in, line)) {
    EXPECT_EQ(line.substr(line.rfind(':')), ":/") << self;
  }
  EXPECT_EQ(https(*daemon_, "POST", "/v1/jobs/" + other + "/stop", "", token_).status, 202);
  waitJob(*daemon_, token_, other);
}

TEST_F(Shim, ASigkilledSupervisorLeavesItsJobRunningAndItsOutputLanding) {
  start();
  std::string id =
      startJob(*daemon_, token_, jobBody("i=0; while :; do i=$((i+1)); echo $i; sleep 0.01; done"));
  ASSERT_FALSE(id.empty());
  HttpResponse s = https(*daemon_, "GET", "/v1/jobs/" + id, "", token_);
  pid_t shim = std::stoi(jsonField(s.body, "pid"));
  std::vector<std::string> cgroups = jobCgroupDirs(shim, id);
  std::string output = daemon_->stateDir() + "/jobs/" + id + "/output";
  auto size = [&] {
    struct stat st {};
    return stat(output.c_str(), &st) == 0 ? st.st_size : -1;
  };
  ASSERT_TRUE(waitUntil([&] { return size() > 100; }, seconds(10)));

  ASSERT_EQ(kill(daemon_->pid(), SIGKILL), 0);
  ASSERT_TRUE(waitUntil([&] { return !alive(daemon_->pid()); }, seconds(10)));
  // No parent-death signal: the shim and its command go on, and so does their output.
  off_t at_kill = size();
  EXPECT_TRUE(waitUntil([&] { return size() > at_kill + 200; }, seconds(10)))
      << "the log stopped growing at " << at_kill << " bytes";
  EXPECT_TRUE(alive(shim));
  // Every counter value exactly once, in order: nothing was lost or doubled.
  std::istringstream lines(readText(output));
  std::string line;
  int expect = 1, last_complete = 0;
  while (std::getline(lines, line)) {
    if (lines.eof()) break;  // a partial last line may still be being written
    EXPECT_EQ(line, std::to_string(expect)) << "line " << expect;
    last_complete = expect++;
  }
  EXPECT_GT(last_complete, 10);

  ASSERT_EQ(kill(shim, SIGKILL), 0);  // the PID namespace dies with it
  EXPECT_TRUE(waitUntil([&] { return !alive(shim); }, seconds(10)));
  removeCgroups(cgroups);
}

TEST_F(Shim, ATimeoutPassesWhileNoSupervisorRunsAndTheExitRecordSaysSo) {
  start("stop_grace = 1s\n");
  std::string id =
      startJob(*daemon_, token_, jobBody("echo started; exec sleep 1000", R"(,"timeout_s":1.5)"));
  ASSERT_FALSE(id.empty());
  HttpResponse s = https(*daemon_, "GET", "/v1/jobs/" + id, "", token_);
  pid_t shim = std::stoi(jsonField(s.body, "pid"));
  std::vector<std::string> cgroups = jobCgroupDirs(shim, id);
  std::string dir = daemon_->stateDir() + "/jobs/" + id;
  ASSERT_EQ(kill(daemon_->pid(), SIGKILL), 0);
  ASSERT_TRUE(waitUntil([&] { return !alive(daemon_->pid()); }, seconds(10)));

  // The shim stops the job at its deadline by itself, records the exit and is gone.
  EXPECT_TRUE(waitUntil([&] { return !alive(shim); }, seconds(20)));
  std::string record = readText(dir + "/exit");
  ASSERT_FALSE(record.empty()) << "no exit record";
  shim::FrameReader r(reinterpret_cast<const uint8_t*>(record.data()), record.size());
  shim::Frame type{};
  shim::Exited e;
  ASSERT_TRUE(r.type(&type) && type == shim::Frame::kExited && shim::decodeExited(r, &e));
  EXPECT_TRUE(e.timed_out);
  EXPECT_TRUE(WIFSIGNALED(e.wait_status) && WTERMSIG(e.wait_status) == SIGTERM)
      << "raw wait status " << e.wait_status;
  EXPECT_EQ(e.streams[0].stored, 8u);  // "started\n"
  EXPECT_EQ(readText(dir + "/output"), "started\n");
  removeCgroups(cgroups);
}

}  // namespace
}  // namespace jw::test
