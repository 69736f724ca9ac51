// Integration tests of jobs outliving jobworkerd (issue 13): a SIGKILLed daemon's running jobs
// taken over by the next one on the same state dir (their output exact, their real exit, a
// follower that reconnects), a timeout the shim enforces while no daemon runs, the upgrade in
// place through the control socket (same PID, jobs and followers kept, a missing binary refused)
// and a state dir of record format version 1. Runs in the test process, as root.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <regex>
#include <string>
#include <vector>

#include "tests/integration/daemon.h"

namespace jw::test {
namespace {

using Clock = std::chrono::steady_clock;

// A job printing 0..n-1, one line every 10 ms, then exiting with `code`; with `separate`, each
// line also as "e<i>" on stderr.
std::string counterJob(int n, int code, bool separate) {
  std::string body = "i=0; while [ $i -lt " + std::to_string(n) + " ]; do echo $i; " +
                     (separate ? "echo e$i >&2; " : "") + "i=$((i+1)); sleep 0.01; done; exit " +
                     std::to_string(code);
  return std::string(R"({"command":["/bin/sh","-c",)") + jsonString(body) + "]" +
         (separate ? R"(,"output":"separate")" : "") + "}";
}

std::string counterText(int n, const std::string& prefix = "") {
  std::string s;
  for (int i = 0; i < n; i++) s += prefix + std::to_string(i) + "\n";
  return s;
}

std::string output(const Daemon& d, const std::string& token, const std::string& id,
                   const std::string& stream = "") {
  HttpResponse r =
      https(d, "GET", "/v1/jobs/" + id + "/logs" + (stream.empty() ? "" : "?stream=" + stream), "",
            token);
  EXPECT_EQ(r.status, 200) << r.body;
  return r.body;
}

std::string status(const Daemon& d, const std::string& token, const std::string& id) {
  return https(d, "GET", "/v1/jobs/" + id, "", token).body;
}

uint64_t outputBytes(const Daemon& d, const std::string& token, const std::string& id) {
  std::string b = jsonField(status(d, token, id), "output_bytes");
  return b.empty() ? 0 : std::stoull(b);
}

bool processGone(pid_t pid) {
  std::string state = procStatusField(pid, "State");
  return state.empty() || state[0] == 'Z';
}

int waitExit(pid_t pid, int timeout_s) {
  int st = 0;
  if (waitUntil([&] { return waitpid(pid, &st, WNOHANG) == pid; },
                std::chrono::seconds(timeout_s))) {
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  }
  kill(pid, SIGKILL);
  waitpid(pid, nullptr, 0);
  return -1;
}

// One state dir and port, for a daemon and the ones that follow it there.
class Adopt : public ::testing::Test {
 protected:
  void SetUp() override {
    state_ = makeTempDir("jwadopt");
    xdg_ = makeTempDir("jwadoptcli");
    opt_.state_dir = state_;
    opt_.port = freePort();
  }
  void TearDown() override {
    for (auto it = daemons_.rbegin(); it != daemons_.rend(); ++it) it->reset();
    removeTree(state_);
    removeTree(xdg_);
  }
  Daemon& startDaemon() {
    daemons_.push_back(Daemon::start(opt_));
    return *daemons_.back();
  }
  std::string loginAdmin(const Daemon& d) { return login(d, "admin", d.adminPassword()); }
  // `jobworker logs -f id` in the background, its stdout in `out_path`.
  pid_t follow(const Daemon& d, const std::string& id, const std::string& out_path) {
    CmdResult r = run({binary("jobworker"), "login", "--server", d.url(), "--ca-file", d.caFile(),
                       "--user", "admin", "--password-stdin"},
                      d.adminPassword() + "\n", {"XDG_CONFIG_HOME=" + xdg_});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return spawnLogged({binary("jobworker"), "logs", "-f", id}, {"XDG_CONFIG_HOME=" + xdg_},
                       out_path, out_path + ".err");
  }

  std::string state_, xdg_;
  Daemon::Options opt_;
  std::vector<std::unique_ptr<Daemon>> daemons_;
};

TEST_F(Adopt, ACrashedDaemonsRunningJobsAreTakenOverWithExactOutputAndTheirRealExit) {
  constexpr int kLines = 800;  // 8 s of output at best: it outlives the restart on a busy host
  Daemon& first = startDaemon();
  std::string token = loginAdmin(first);
  std::string merged = startJob(first, token, counterJob(kLines, 7, false));
  std::string separate = startJob(first, token, counterJob(kLines, 9, true));
  const std::string follow_out = xdg_ + "/follow.out";
  pid_t follower = follow(first, merged, follow_out);
  ASSERT_GT(follower, 0);
  ASSERT_TRUE(waitUntil([&] { return readFile(follow_out).find("\n20\n") != std::string::npos; },
                        std::chrono::seconds(30)))
      << readFile(follow_out + ".err");
  const pid_t shim = std::stoi(jsonField(status(first, token, merged), "pid"));
  first.crash();
  EXPECT_FALSE(processGone(shim)) << "the job's shim died with jobworkerd";

  Daemon& second = startDaemon();
  std::string st = status(second, token, merged);
  EXPECT_EQ(jsonField(st, "state"), "running") << st;
  EXPECT_NE(second.log().find("taken over"), std::string::npos);

  std::string end = waitJob(second, token, merged, 120);
  EXPECT_EQ(jsonField(end, "state"), "exited") << end;
  EXPECT_EQ(jsonField(end, "exit_code"), "7") << end;
  EXPECT_EQ(output(second, token, merged), counterText(kLines));
  end = waitJob(second, token, separate, 120);
  EXPECT_EQ(jsonField(end, "exit_code"), "9") << end;
  EXPECT_EQ(output(second, token, separate), counterText(kLines));
  EXPECT_EQ(output(second, token, separate, "stderr"), counterText(kLines, "e"));

  EXPECT_EQ(waitExit(follower, 60), 0) << readFile(follow_out + ".err");
  EXPECT_EQ(readFile(follow_out), counterText(kLines)) << readFile(follow_out + ".err");
}

TEST_F(Adopt, ATimeoutThatPassesWhileNoDaemonRunsIsEnforcedByTheShim) {
  Daemon& first = startDaemon();
  std::string token = loginAdmin(first);
  std::string id = startJob(first, token, R"({"command":["/bin/sleep","300"],"timeout_s":3})");
  const pid_t shim = std::stoi(jsonField(status(first, token, id), "pid"));
  first.crash();
  // The shim alone sees the deadline, sends SIGTERM and exits with its record written.
  EXPECT_TRUE(waitUntil([&] { return processGone(shim); }, std::chrono::seconds(30)));
  Daemon& second = startDaemon();
  std::string end = waitJob(second, token, id, 30);
  EXPECT_EQ(jsonField(end, "state"), "killed") << end;
  EXPECT_EQ(jsonField(end, "signal"), "15") << end;
  EXPECT_EQ(jsonField(end, "stopped_by"), "timeout") << end;
}

TEST_F(Adopt, AStopRequestedBeforeTheCrashStillEndsTheJob) {
  Daemon& first = startDaemon();
  std::string token = loginAdmin(first);
  // Ignores SIGTERM: only the shim's SIGKILL after the grace (or the backup kill) ends it.
  std::string id = startJob(
      first, token,
      R"({"command":["/bin/sh","-c","trap '' TERM; echo ready; while :; do sleep 0.1; done"]})");
  ASSERT_TRUE(
      waitUntil([&] { return outputBytes(first, token, id) > 0; }, std::chrono::seconds(30)));
  HttpResponse stop = https(first, "POST", "/v1/jobs/" + id + "/stop", R"({"grace_s":3})", token);
  ASSERT_EQ(stop.status, 202) << stop.body;
  first.crash();
  Daemon& second = startDaemon();
  std::string end = waitJob(second, token, id, 60);
  EXPECT_EQ(jsonField(end, "state"), "killed") << end;
  EXPECT_EQ(jsonField(end, "signal"), "9") << end;
  EXPECT_EQ(jsonField(end, "stopped_by"), "admin") << end;
}

TEST_F(Adopt, TakingOverAHundredRunningJobs) {
  constexpr int kJobs = 100;
  opt_.config_text = "max_running_jobs_per_user = 200\n";
  Daemon& first = startDaemon();
  std::string token = loginAdmin(first);
  std::vector<std::string> ids;
  for (int i = 0; i < kJobs; i++) {
    ids.push_back(startJob(first, token, R"({"command":["/bin/sleep","300"]})"));
  }
  first.crash();
  auto t0 = Clock::now();
  Daemon& second = startDaemon();
  double healthy_ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
  for (const auto& id : ids) EXPECT_EQ(jsonField(status(second, token, id), "state"), "running");
  std::smatch m;
  std::string log = second.log();
  static const std::regex kTakeover(R"((\d+) running taken over in (\d+) ms)");
  std::string last;
  for (std::sregex_iterator it(log.begin(), log.end(), kTakeover), e; it != e; ++it) {
    last = (*it)[0];
  }
  std::printf(
      "[ figure ] re-adopting %d running jobs after a crash: %s; the new daemon healthy "
      "%.0f ms after its start\n",
      kJobs, last.c_str(), healthy_ms);
  EXPECT_NE(last.find(std::to_string(kJobs) + " running taken over"), std::string::npos) << last;
}

// --- the upgrade in place -----------------------------------------------------------------------

CmdResult upgrade(const Daemon& d, const std::string& to) {
  return run({binary("jobworker-admin"), "upgrade", "--binary", to, "--control",
              d.stateDir() + "/control.sock"},
             "", {}, 120);
}

// Nanosecond timestamps a job printed, one a line.
std::vector<int64_t> stamps(const std::string& text) {
  std::vector<int64_t> out;
  size_t at = 0;
  while (at < text.size()) {
    size_t eol = text.find('\n', at);
    if (eol == std::string::npos) break;
    out.push_back(std::stoll(text.substr(at, eol - at)));
    at = eol + 1;
  }
  return out;
}

TEST_F(Adopt, AnUpgradeInPlaceKeepsThePidEveryJobAndAFollower) {
  constexpr int kLines = 800;
  Daemon& d = startDaemon();
  std::string token = loginAdmin(d);
  std::vector<std::string> ids = {startJob(d, token, counterJob(kLines, 3, false)),
                                  startJob(d, token, counterJob(kLines, 4, true))};
  // The third prints the time every 10 ms: the largest gap is how long the job itself paused.
  ids.push_back(startJob(
      d, token,
      R"({"command":["/bin/sh","-c","i=0; while [ $i -lt 600 ]; do date +%s%N; i=$((i+1)); sleep 0.01; done"]})"));
  const std::string follow_out = xdg_ + "/follow.out";
  pid_t follower = follow(d, ids[0], follow_out);
  ASSERT_TRUE(waitUntil([&] { return readFile(follow_out).find("\n20\n") != std::string::npos; },
                        std::chrono::seconds(30)))
      << readFile(follow_out + ".err");
  const pid_t frontend = d.frontendPid();

  auto wall_ns = [] {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
  };
  auto t0 = Clock::now();
  const int64_t window_from = wall_ns();
  CmdResult up = upgrade(d, binary("jobworkerd"));
  const int64_t window_to = wall_ns();
  double upgrade_ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
  ASSERT_EQ(up.exit_code, 0) << up.err
                             << d.log().substr(d.log().size() > 4000 ? d.log().size() - 4000 : 0);
  EXPECT_NE(up.out.find("upgraded in place"), std::string::npos) << up.out;
  EXPECT_NE(up.out.find("3 running job(s) taken over"), std::string::npos) << up.out;
  EXPECT_FALSE(processGone(d.pid())) << "jobworkerd's pid changed";
  EXPECT_NE(d.frontendPid(), frontend);  // the new image runs its own frontend
  for (const auto& id : ids) EXPECT_EQ(jsonField(status(d, token, id), "state"), "running");

  EXPECT_EQ(jsonField(waitJob(d, token, ids[0], 120), "exit_code"), "3");
  EXPECT_EQ(output(d, token, ids[0]), counterText(kLines));
  EXPECT_EQ(jsonField(waitJob(d, token, ids[1], 120), "exit_code"), "4");
  EXPECT_EQ(output(d, token, ids[1]), counterText(kLines));
  EXPECT_EQ(output(d, token, ids[1], "stderr"), counterText(kLines, "e"));
  EXPECT_EQ(jsonField(waitJob(d, token, ids[2], 120), "exit_code"), "0");
  EXPECT_EQ(waitExit(follower, 60), 0) << readFile(follow_out + ".err");
  EXPECT_EQ(readFile(follow_out), counterText(kLines)) << readFile(follow_out + ".err");

  std::vector<int64_t> t = stamps(output(d, token, ids[2]));
  ASSERT_EQ(t.size(), 600u);
  // The job's own pace across the upgrade (a gap overlapping the command's run) against the
  // rest of its run: the shim never waits for a supervisor, so the two should look alike.
  int64_t across = 0, elsewhere = 0;
  std::vector<int64_t> gaps;
  for (size_t i = 1; i < t.size(); i++) {
    int64_t g = t[i] - t[i - 1];
    gaps.push_back(g);
    int64_t& widest = t[i] >= window_from && t[i - 1] <= window_to ? across : elsewhere;
    widest = std::max(widest, g);
  }
  std::sort(gaps.begin(), gaps.end());
  std::printf(
      "[ figure ] upgrade in place with 3 running jobs and a follower: `jobworker-admin "
      "upgrade` took %.0f ms; a job ticking every 10 ms: widest gap across the upgrade "
      "%.1f ms, elsewhere in its run %.1f ms (median %.1f ms)\n",
      upgrade_ms, static_cast<double>(across) / 1e6, static_cast<double>(elsewhere) / 1e6,
      static_cast<double>(gaps[gaps.size() / 2]) / 1e6);
}

// The new image starts as systemd started the old one: jobs still get the soft RLIMIT_NOFILE the
// daemon was started with (not the one it raised itself to), and the watchdog is armed again.
TEST_F(Adopt, AnUpgradeKeepsTheJobsFdLimitAndTheWatchdog) {
  opt_.exec_prefix = {"/usr/bin/prlimit", "--nofile=1000:20000", "--"};
  opt_.env = {"WATCHDOG_USEC=120000000"};  // no WATCHDOG_PID: sd_watchdog_enabled takes it
  Daemon& d = startDaemon();
  std::string token = loginAdmin(d);
  const std::string limit_job = R"({"command":["/bin/sh","-c","ulimit -n"]})";
  auto jobLimit = [&] {
    std::string id = startJob(d, token, limit_job);
    EXPECT_EQ(jsonField(waitJob(d, token, id, 60), "exit_code"), "0");
    return output(d, token, id);
  };
  EXPECT_EQ(jobLimit(), "1000\n");
  CmdResult up = upgrade(d, binary("jobworkerd"));
  ASSERT_EQ(up.exit_code, 0) << up.err;
  EXPECT_EQ(jobLimit(), "1000\n") << d.log();
  std::string log = d.log();
  size_t armed = 0;
  for (size_t at = log.find("systemd watchdog: 120000 ms"); at != std::string::npos;
       at = log.find("systemd watchdog: 120000 ms", at + 1)) {
    armed++;
  }
  EXPECT_EQ(armed, 2u) << log;
}

TEST_F(Adopt, AnUpgradeToAMissingOrRefusingBinaryLeavesTheDaemonServing) {
  Daemon& d = startDaemon();
  std::string token = loginAdmin(d);
  std::string id = startJob(d, token, R"({"command":["/bin/sleep","300"]})");
  const pid_t frontend = d.frontendPid();
  CmdResult missing = upgrade(d, "/nonexistent/jobworkerd");
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_NE(missing.err.find("/nonexistent/jobworkerd"), std::string::npos) << missing.err;
  EXPECT_NE(missing.err.find("keeps running"), std::string::npos) << missing.err;
  // /bin/false "refuses the state": exit 1 from its --check-state.
  CmdResult refused = upgrade(d, "/bin/false");
  EXPECT_EQ(refused.exit_code, 1);
  EXPECT_NE(refused.err.find("--check-state exited 1"), std::string::npos) << refused.err;
  EXPECT_TRUE(d.waitHealthy());
  EXPECT_EQ(d.frontendPid(), frontend);
  EXPECT_EQ(jsonField(status(d, token, id), "state"), "running");
  HttpResponse stop = https(d, "POST", "/v1/jobs/" + id + "/stop", R"({"grace_s":1})", token);
  EXPECT_EQ(stop.status, 202) << stop.body;
  EXPECT_EQ(jsonField(waitJob(d, token, id, 30), "signal"), "15");
}

// The state a version-1 jobworkerd left (tests/integration/fixtures/state-v1): its finished
// jobs load as they were, its running job (no shim in a v1 record) is lost, and an upgrade in
// place keeps every one of them and a running job of this version.
TEST_F(Adopt, AStateOfRecordFormatOneLoadsAndSurvivesAnUpgrade) {
  const std::string fixture =
      std::string(std::getenv("JW_SOURCE_ROOT") ? std::getenv("JW_SOURCE_ROOT") : ".") +
      "/tests/integration/fixtures/state-v1/jobs";
  std::filesystem::copy(fixture, state_ + "/jobs", std::filesystem::copy_options::recursive);
  Daemon& d = startDaemon();
  std::string token = loginAdmin(d);
  const std::string merged = "190831b3-1f31-4223-8c23-94d5cd82153a";
  const std::string separate = "15ca0c22-7bd3-45ef-a7f3-f9afb2d3498e";
  const std::string stopped = "afc00d0d-1cf1-41b4-970d-0b0445aef976";
  const std::string running = "53f716a0-76fa-4679-bb46-03ea7c88d9c4";
  std::string seq;
  for (int i = 1; i <= 1000; i++) seq += std::to_string(i) + "\n";
  auto check = [&] {
    std::string m = status(d, token, merged);
    EXPECT_EQ(jsonField(m, "state"), "exited") << m;
    EXPECT_EQ(jsonField(m, "exit_code"), "0") << m;
    EXPECT_EQ(jsonField(m, "name"), "v1-merged") << m;
    EXPECT_EQ(output(d, token, merged), seq);
    std::string s = status(d, token, separate);
    EXPECT_EQ(jsonField(s, "exit_code"), "3") << s;
    EXPECT_EQ(output(d, token, separate), "out-line\n");
    EXPECT_EQ(output(d, token, separate, "stderr"), "err-line\n");
    std::string k = status(d, token, stopped);
    EXPECT_EQ(jsonField(k, "state"), "killed") << k;
    EXPECT_EQ(jsonField(k, "stopped_by"), "admin") << k;
    std::string r = status(d, token, running);
    EXPECT_EQ(jsonField(r, "state"), "failed") << r;
    EXPECT_EQ(jsonField(r, "error").rfind("lost: ", 0), 0u) << r;
  };
  check();
  std::vector<std::string> before;
  for (const auto& id : {merged, separate, stopped, running})
    before.push_back(status(d, token, id));
  std::string now = startJob(d, token, counterJob(300, 5, false));
  CmdResult up = upgrade(d, binary("jobworkerd"));
  ASSERT_EQ(up.exit_code, 0) << up.err;
  check();
  size_t i = 0;
  for (const auto& id : {merged, separate, stopped, running}) {
    EXPECT_EQ(status(d, token, id), before[i++]) << "job " << id << " changed in the upgrade";
  }
  EXPECT_EQ(jsonField(waitJob(d, token, now, 120), "exit_code"), "5");
  EXPECT_EQ(output(d, token, now), counterText(300));
}

}  // namespace
}  // namespace jw::test
