// Unit tests of the job record and state machine, request validation, the job environment,
// the job table's retention, the session table, and spawning real processes without root.
// Runs in the unit test process.
#include "supervisor/jobs/job.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>

#include "common/fd.h"
#include "common/protocol/control_codec.h"
#include "common/protocol/shim_messages.h"
#include "supervisor/accounts/sessions.h"
#include "supervisor/jobs/job_table.h"
#include "supervisor/jobs/usage_sampler.h"
#include "supervisor/launch/spawn.h"

namespace jw::supervisor {
namespace {

using protocol::ErrorCode;
using protocol::JobState;

std::unique_ptr<Job> makeJob(const std::string& id = "job-1", const std::string& owner = "alice",
                             int64_t created = 1000) {
  JobSpec spec;
  spec.id = id;
  spec.owner = owner;
  spec.command = {"/bin/true"};
  spec.run_as = "nobody";
  return std::make_unique<Job>(spec, created);
}

TEST(JobStateMachine, NormalExitIsPublishedOnlyAfterDraining) {
  auto job = makeJob();
  EXPECT_EQ(job->phase(), JobPhase::kStarting);
  job->markStarted(4242, 1001);
  EXPECT_EQ(job->phase(), JobPhase::kRunning);
  EXPECT_EQ(job->status().pid, 4242);
  EXPECT_EQ(job->status().started_at_ms, 1001);
  job->recordExit(CLD_EXITED, 0);
  // Main process gone, pipes not yet drained: still running from the outside.
  EXPECT_EQ(job->phase(), JobPhase::kDraining);
  EXPECT_TRUE(job->mainExited());
  EXPECT_EQ(job->status().state, JobState::kRunning);
  EXPECT_FALSE(job->status().has_exit_code);
  EXPECT_EQ(job->status().ended_at_ms, 0);
  job->publish(2000);
  protocol::JobStatus s = job->status();
  EXPECT_EQ(s.state, JobState::kExited);
  EXPECT_TRUE(s.has_exit_code);
  EXPECT_EQ(s.exit_code, 0);
  EXPECT_EQ(s.signal, 0);
  EXPECT_EQ(s.ended_at_ms, 2000);
  EXPECT_EQ(s.stopped_by, "");
  EXPECT_EQ(s.run_as, "nobody");
  EXPECT_TRUE(job->ended());
}

TEST(JobStateMachine, ExitCodeIsKept) {
  auto job = makeJob();
  job->markStarted(1, 1);
  job->recordExit(CLD_EXITED, 3);
  job->publish(5);
  EXPECT_EQ(job->status().state, JobState::kExited);
  EXPECT_EQ(job->status().exit_code, 3);
}

TEST(JobStateMachine, DeathBySignalIsKilledWithTheSignal) {
  for (int code : {CLD_KILLED, CLD_DUMPED}) {
    auto job = makeJob();
    job->markStarted(1, 1);
    job->recordExit(code, SIGKILL);
    job->publish(5);
    protocol::JobStatus s = job->status();
    EXPECT_EQ(s.state, JobState::kKilled);
    EXPECT_EQ(s.signal, SIGKILL);
    EXPECT_FALSE(s.has_exit_code);
  }
}

TEST(JobStateMachine, SetupFailureEndsAtOnceWithTheError) {
  auto job = makeJob();
  job->markFailed("move into cgroup: Device or resource busy", 77);
  protocol::JobStatus s = job->status();
  EXPECT_EQ(s.state, JobState::kFailed);
  EXPECT_EQ(s.error, "move into cgroup: Device or resource busy");
  EXPECT_EQ(s.ended_at_ms, 77);
  EXPECT_TRUE(job->ended());
  // Nothing moves a failed job any more.
  job->recordExit(CLD_EXITED, 0);
  job->publish(100);
  EXPECT_EQ(job->status().state, JobState::kFailed);
  EXPECT_FALSE(job->requestStop("alice"));
  // Error text is clipped to what the codec carries.
  auto long_job = makeJob();
  long_job->markFailed(std::string(5000, 'e'), 1);
  EXPECT_EQ(long_job->status().error.size(), protocol::kMaxMessage);
}

TEST(JobStateMachine, FirstStopperIsRecorded) {
  auto job = makeJob();
  EXPECT_FALSE(job->requestStop("alice"));  // not started yet
  job->markStarted(1, 1);
  EXPECT_TRUE(job->requestStop("alice"));
  EXPECT_TRUE(job->requestStop("shutdown"));  // still running: accepted, but alice asked first
  EXPECT_EQ(job->status().stopped_by, "alice");
  job->recordExit(CLD_KILLED, SIGTERM);
  EXPECT_FALSE(job->requestStop("bob"));
  job->publish(9);
  EXPECT_EQ(job->status().stopped_by, "alice");
  EXPECT_EQ(job->status().state, JobState::kKilled);
  EXPECT_EQ(job->status().signal, SIGTERM);
}

TEST(JobStateMachine, StoppedJobThatExitsNormallyKeepsStoppedBy) {
  auto job = makeJob();
  job->markStarted(1, 1);
  EXPECT_TRUE(job->requestStop("timeout"));
  job->recordExit(CLD_EXITED, 0);
  job->publish(3);
  EXPECT_EQ(job->status().state, JobState::kExited);
  EXPECT_EQ(job->status().stopped_by, "timeout");
}

TEST(JobId, IsARandomUuidV4) {
  std::regex uuid("^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$");
  std::set<std::string> seen;
  for (int i = 0; i < 1000; i++) {
    auto id = newJobId();
    ASSERT_TRUE(id.ok());
    EXPECT_TRUE(std::regex_match(id.value(), uuid)) << id.value();
    EXPECT_EQ(id.value().size(), protocol::kMaxJobId);
    seen.insert(id.value());
  }
  EXPECT_EQ(seen.size(), 1000u);
}

protocol::JobStartRequest request(std::vector<std::string> argv) {
  protocol::JobStartRequest r;
  r.argv = std::move(argv);
  return r;
}

TEST(JobValidation, AcceptsAGoodRequest) {
  auto r = request({"/bin/echo", "hi"});
  r.env = {"FOO=bar", "_X1=", "EMPTY=="};
  r.cwd = "/tmp";
  r.timeout_ms = 5000;
  EXPECT_FALSE(validateJobStart(r, 10'000).has_value());
}

TEST(JobValidation, RefusesWhatTheFrontendShouldHaveRefused) {
  auto expectBad = [](const protocol::JobStartRequest& r, ErrorCode code, const char* what) {
    auto e = validateJobStart(r, 10'000);
    ASSERT_TRUE(e.has_value()) << what;
    EXPECT_EQ(e->code, code) << what;
    EXPECT_FALSE(e->message.empty());
  };
  expectBad(request({}), ErrorCode::kBadRequest, "empty argv");
  expectBad(request({""}), ErrorCode::kBadRequest, "empty program");
  expectBad(request({"/bin/echo", std::string("a\0b", 3)}), ErrorCode::kBadRequest, "NUL arg");
  for (const char* env : {"NOEQUALS", "=v", "1A=x", "A-B=x", "A B=x"}) {
    auto r = request({"/bin/true"});
    r.env = {env};
    expectBad(r, ErrorCode::kBadRequest, env);
  }
  auto dup = request({"/bin/true"});
  dup.env = {"A=1", "A=2"};
  expectBad(dup, ErrorCode::kBadRequest, "duplicate env");
  auto nul_env = request({"/bin/true"});
  nul_env.env = {std::string("A=x\0y", 5)};
  expectBad(nul_env, ErrorCode::kBadRequest, "NUL env");
  auto rel = request({"/bin/true"});
  rel.cwd = "tmp";
  expectBad(rel, ErrorCode::kBadRequest, "relative cwd");
  auto slow = request({"/bin/true"});
  slow.timeout_ms = 10'001;
  expectBad(slow, ErrorCode::kBadRequest, "timeout over max");
  auto big = request({"/bin/echo", std::string(protocol::kMaxJobSpecBytes, 'x')});
  expectBad(big, ErrorCode::kTooLarge, "too large");
  // No maximum configured: any timeout.
  slow.timeout_ms = 1u << 31;
  EXPECT_FALSE(validateJobStart(slow, 0).has_value());
}

TEST(JobEnvironment, OnlyRequestedVariablesPlusDefaults) {
  EnvDefaults d{"/usr/bin:/bin", "/home/alice", "alice", "C.UTF-8"};
  auto env = buildJobEnvironment({"FOO=bar", "PATH=/opt/bin"}, d);
  std::set<std::string> got(env.begin(), env.end());
  std::set<std::string> want = {"FOO=bar", "PATH=/opt/bin", "HOME=/home/alice", "USER=alice",
                                "LANG=C.UTF-8"};
  EXPECT_EQ(got, want);
  EXPECT_EQ(envValue(env, "PATH").value(), "/opt/bin");
  EXPECT_FALSE(envValue(env, "PAT").has_value());
  EXPECT_FALSE(envValue(env, "HOMEX").has_value());
}

TEST(Spawn, ExecCandidatesFollowPath) {
  EXPECT_EQ(execCandidates("./x", "/a:/b"), std::vector<std::string>{"./x"});
  EXPECT_EQ(execCandidates("ls", "/a::/b/"), (std::vector<std::string>{"/a/ls", "/b/ls"}));
  EXPECT_TRUE(execCandidates("ls", "").empty());
}

// A job started the way jobworkerd starts one, without root: its files in a temp directory, the
// real jobworker-init (JW_INIT, from meson) as its shim, no namespaces and no cgroup.
class SpawnFixture {
 public:
  SpawnFixture() {
    std::string t = "/tmp/jw-spawn-test-XXXXXX";
    EXPECT_NE(mkdtemp(t.data()), nullptr);
    dir_ = t;
    const char* init = std::getenv("JW_INIT");
    init_.reset(open(init != nullptr ? init : "", O_PATH | O_CLOEXEC));
    EXPECT_TRUE(init_) << "JW_INIT=" << (init != nullptr ? init : "(unset)");
    for (const char* name : {"output", "stderr", "exit"}) {
      files_.emplace_back(
          open((dir_ + "/" + name).c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
    }
  }
  ~SpawnFixture() { std::filesystem::remove_all(dir_); }

  SpawnRequest request(std::vector<std::string> argv, bool separate = false) {
    SpawnRequest r;
    r.init_fd = init_.get();
    r.job_id = "1a2b3c4d-0000-4000-8000-000000000000";
    r.argv = std::move(argv);
    r.env = {"PATH=/usr/bin:/bin", "ONLY=this"};
    r.search_path = "/usr/bin:/bin";
    r.separate_stderr = separate;
    r.stdout_log_fd = files_[0].get();
    r.stderr_log_fd = separate ? files_[1].get() : -1;
    r.exit_record_fd = files_[2].get();
    r.output_cap = 1 << 20;
    return r;
  }

  // Waits for the shim to exit and returns the command's exit code (128 + signal when killed)
  // from the shim's Exited frame; -1 without one.
  int finish(SpawnedJob& j) {
    siginfo_t info{};
    EXPECT_EQ(
        waitid(static_cast<idtype_t>(P_PIDFD), static_cast<id_t>(j.pidfd.get()), &info, WEXITED),
        0);
    j.pidfd.reset();
    uint8_t buf[shim::kMaxFrameBytes];
    for (;;) {
      ssize_t n = recv(j.channel.get(), buf, sizeof buf, MSG_DONTWAIT);
      if (n <= 0) return -1;
      shim::FrameReader r(buf, static_cast<size_t>(n));
      shim::Frame type{};
      shim::Exited e;
      if (r.type(&type) && type == shim::Frame::kExited && shim::decodeExited(r, &e)) {
        WaitOutcome o = waitOutcome(e.wait_status);
        return o.code == CLD_EXITED ? o.value : 128 + o.value;
      }
    }
  }
  std::string file(const char* name) const {
    std::ifstream f(dir_ + "/" + name, std::ios::binary);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
  }
  const std::string& dir() const { return dir_; }

 private:
  std::string dir_;
  UniqueFd init_;
  std::vector<UniqueFd> files_;
};

TEST(Spawn, RunsTheProgramWithOnlyItsEnvironmentAndMergedOutput) {
  SpawnFixture fx;
  auto r = fx.request({"sh", "-c", "env | sort; echo err >&2; pwd; exit 4"});
  r.cwd = "/tmp";
  SpawnFailure f;
  auto j = spawnJob(r, &f);
  ASSERT_TRUE(j.ok()) << j.error().message;
  EXPECT_EQ(f, SpawnFailure::kNone);
  EXPECT_EQ(fx.finish(j.value()), 4);
  std::string out = fx.file("output");
  EXPECT_NE(out.find("ONLY=this\n"), std::string::npos) << out;
  EXPECT_NE(out.find("err\n/tmp\n"), std::string::npos) << out;
  EXPECT_EQ(out.find("HOME="), std::string::npos) << out;  // spawn adds nothing itself
  EXPECT_EQ(fx.file("stderr"), "");
  EXPECT_FALSE(fx.file("exit").empty());  // the shim's exit record
}

TEST(Spawn, SeparateStderrAndOwnProcessGroupAndNoInheritedFds) {
  SpawnFixture fx;
  int leak = open("/dev/null", O_RDONLY);  // not close-on-exec: must still not reach the job
  ASSERT_GE(leak, 0);
  auto r = fx.request({"/bin/sh", "-c",
                       "echo out; echo err >&2; ls /proc/self/fd | tr '\\n' ' ' >&2; "
                       "echo pgid=$(cut -d' ' -f5 /proc/$$/stat) pid=$$"},
                      true);
  SpawnFailure f;
  auto j = spawnJob(r, &f);
  close(leak);
  ASSERT_TRUE(j.ok()) << j.error().message;
  EXPECT_EQ(fx.finish(j.value()), 0);
  std::string out = fx.file("output");
  EXPECT_EQ(out.rfind("out\n", 0), 0u) << out;
  // The command leads its own process group (the shim's pid is another).
  std::string pid = std::to_string(j->command_pid);
  EXPECT_NE(out.find("pgid=" + pid + " pid=" + pid), std::string::npos) << out;
  EXPECT_NE(j->command_pid, j->pid);
  // 0, 1, 2 and the fd ls opened for /proc/self/fd: nothing else.
  EXPECT_EQ(fx.file("stderr"), "err\n0 1 2 3 ");
}

TEST(Spawn, ExecFailuresAreReportedWithErrno) {
  SpawnFixture fx;
  SpawnFailure f;
  auto missing = spawnJob(fx.request({"/nonexistent/program"}), &f);
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(f, SpawnFailure::kExec);
  EXPECT_EQ(missing.error().sys_errno, ENOENT);

  auto not_in_path = spawnJob(fx.request({"jw-no-such-program"}), &f);
  ASSERT_FALSE(not_in_path.ok());
  EXPECT_EQ(f, SpawnFailure::kExec);
  EXPECT_EQ(not_in_path.error().sys_errno, ENOENT);

  std::string file = fx.dir() + "/not-executable";
  std::ofstream(file) << "#!/bin/sh\necho hi\n";
  chmod(file.c_str(), 0644);
  auto denied = spawnJob(fx.request({file}), &f);
  ASSERT_FALSE(denied.ok());
  EXPECT_EQ(f, SpawnFailure::kExec);
  EXPECT_EQ(denied.error().sys_errno, EACCES);

  auto r = fx.request({"/bin/true"});
  r.cwd = fx.dir() + "/missing";
  auto bad_cwd = spawnJob(r, &f);
  ASSERT_FALSE(bad_cwd.ok());
  EXPECT_EQ(f, SpawnFailure::kCwd);
  EXPECT_EQ(bad_cwd.error().sys_errno, ENOENT);
}

TEST(Spawn, SignalsAreResetForTheJob) {
  // The supervisor ignores SIGPIPE and blocks its signalfd signals; a job must see neither.
  SpawnFixture fx;
  signal(SIGPIPE, SIG_IGN);
  sigset_t set, old;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigprocmask(SIG_BLOCK, &set, &old);
  auto r = fx.request({"/bin/sh", "-c", "grep -E '^(SigBlk|SigIgn)' /proc/self/status"});
  SpawnFailure f;
  auto j = spawnJob(r, &f);
  sigprocmask(SIG_SETMASK, &old, nullptr);
  signal(SIGPIPE, SIG_DFL);
  ASSERT_TRUE(j.ok()) << j.error().message;
  EXPECT_EQ(fx.finish(j.value()), 0);
  std::string out = fx.file("output");
  EXPECT_NE(out.find("SigBlk:\t0000000000000000"), std::string::npos) << out;
  EXPECT_NE(out.find("SigIgn:\t0000000000000000"), std::string::npos) << out;
}

TEST(Spawn, TheShimIsJwInitWithAShortArgvAndNoEnvironment) {
  SpawnFixture fx;
  auto r = fx.request({"/bin/sh", "-c",
                       "tr '\\0' ' ' < /proc/$PPID/cmdline; echo; "
                       "wc -c < /proc/$PPID/environ; cat /proc/$PPID/comm"});
  SpawnFailure f;
  auto j = spawnJob(r, &f);
  ASSERT_TRUE(j.ok()) << j.error().message;
  EXPECT_EQ(fx.finish(j.value()), 0);
  EXPECT_EQ(fx.file("output"), "jw-init 1a2b3c4d \n0\njw-init\n");
}

TEST(JobTable, NewestFirstAndRetentionByCountAndAge) {
  JobTable t;
  for (int i = 0; i < 5; i++) {
    auto j = makeJob("job-" + std::to_string(i), i % 2 ? "bob" : "alice", 1000 + i);
    j->markStarted(100 + i, 1000 + i);
    if (i != 2) {
      j->recordExit(CLD_EXITED, 0);
      j->publish(2000 + i);
    }
    t.insert(std::move(j));
  }
  std::vector<std::string> order;
  t.forEach([&](const Job& j) { order.push_back(j.id()); });
  EXPECT_EQ(order, (std::vector<std::string>{"job-4", "job-3", "job-2", "job-1", "job-0"}));
  EXPECT_EQ(t.runningJobsOf("alice"), 1u);
  EXPECT_EQ(t.runningJobsOf("bob"), 0u);
  // Keep 1 ended job per owner: each owner's older one goes; the running one is never evicted.
  EXPECT_EQ(t.expired({1, 0, 100}, 10'000), (std::vector<std::string>{"job-1", "job-0"}));
  EXPECT_TRUE(t.expired({2, 0, 100}, 10'000).empty());
  // Age: ended before now - 2 ms.
  EXPECT_EQ(t.expired({100, 2, 100}, 2004), (std::vector<std::string>{"job-1", "job-0"}));
  // Host-wide cap of 2 with 2 + 2 kept: of two owners keeping as many, the older job goes
  // (alice's job-0), then bob's oldest, bob now keeping the most.
  EXPECT_EQ(t.expired({100, 0, 2}, 10'000), (std::vector<std::string>{"job-0", "job-1"}));
  t.erase("job-1");
  EXPECT_EQ(t.find("job-1"), nullptr);
  EXPECT_NE(t.find("job-2"), nullptr);
  EXPECT_EQ(t.size(), 4u);
}

// Pages over a filtered list: every match exactly once, newest first, a cursor that survives
// the removal of the job it names, ties on created_at broken by id.
TEST(JobTable, QueryPagesFiltersAndCursorsStayStable) {
  JobTable t;
  for (int i = 0; i < 25; i++) {
    JobSpec spec;
    spec.id = "job-" + std::string(i < 10 ? "0" : "") + std::to_string(i);
    spec.owner = i % 2 ? "bob" : "alice";
    spec.command = {"/bin/true"};
    spec.name = i == 7 ? "seven" : "";
    spec.labels = {i % 3 ? "tier=web" : "tier=db", "env=prod"};
    t.insert(std::make_unique<Job>(spec, 1000 + i / 2));  // pairs share a millisecond
  }
  JobTable::Query q;
  q.limit = 4;
  std::vector<std::string> seen;
  for (int pages = 0; pages < 20; pages++) {
    JobTable::Page p = t.query(q);
    for (const Job* j : p.jobs) seen.push_back(j->id());
    if (!p.more) break;
    q.after_created_ms = p.jobs.back()->createdAtMs();
    q.after_id = p.jobs.back()->id();
    if (pages == 2) t.erase(q.after_id);  // the cursor's own job goes: the next page still fits
  }
  ASSERT_EQ(seen.size(), 25u);
  EXPECT_EQ(seen.front(), "job-24");
  EXPECT_EQ(seen[1], "job-23");  // created in the same ms as job-22: the larger id first
  EXPECT_EQ(seen[2], "job-22");
  EXPECT_EQ(seen.back(), "job-00");
  JobTable::Query f;
  f.owner = "alice";
  f.labels = {"tier=db"};
  std::vector<std::string> db;
  for (const Job* j : t.query(f).jobs) db.push_back(j->id());
  EXPECT_EQ(db, (std::vector<std::string>{"job-24", "job-18", "job-12", "job-06", "job-00"}));
  f = {};
  f.name = "seven";
  ASSERT_EQ(t.query(f).jobs.size(), 1u);
  EXPECT_EQ(t.runningJobNamed("bob", "seven")->id(), "job-07");
  EXPECT_EQ(t.runningJobNamed("alice", "seven"), nullptr);
  f = {};
  f.since_ms = 1011;
  EXPECT_EQ(t.query(f).jobs.size(), 3u);  // job-22, 23, 24
}

// One owner's volume never evicts another's history: the host-wide cap takes from the largest
// owner, and per-owner counts only count the owner's own jobs.
TEST(JobTable, RetentionIsPerOwner) {
  JobTable t;
  auto ended = [&](const std::string& id, const std::string& owner, int64_t at) {
    auto j = makeJob(id, owner, at);
    j->markStarted(100, at);
    j->recordExit(CLD_EXITED, 0);
    j->publish(at + 1);
    t.insert(std::move(j));
  };
  ended("b-0", "bob", 1000);
  for (int i = 0; i < 6; i++) ended("a-" + std::to_string(i), "alice", 2000 + i);
  // Per owner 3: alice's three oldest go, bob's only job stays.
  EXPECT_EQ(t.expired({3, 0, 100}, 10'000), (std::vector<std::string>{"a-2", "a-1", "a-0"}));
  // Host-wide 4 of 7: alice loses three, bob keeps his one.
  EXPECT_EQ(t.expired({100, 0, 4}, 10'000), (std::vector<std::string>{"a-0", "a-1", "a-2"}));
  // A cap of 1 reaches bob only once alice is down to one job too (then his is the older).
  auto all = t.expired({100, 0, 1}, 10'000);
  ASSERT_EQ(all.size(), 6u);
  EXPECT_EQ(all[5], "b-0");
}

TEST(Sessions, MintFindExpireRevokeAndPrune) {
  SessionStore store(3600'000);
  const int64_t now = 1'000'000;
  auto a = store.mint("alice", "127.0.0.1", now);
  auto b = store.mint("bob", "127.0.0.1", now);
  EXPECT_EQ(a.expires_at_ms, now + 3600'000);
  EXPECT_NE(a.token, b.token);  // 256 random bits each
  ASSERT_NE(store.find(a.token, now), nullptr);
  EXPECT_EQ(store.find(a.token, now)->user, "alice");
  EXPECT_EQ(store.find(b.token, now)->user, "bob");
  EXPECT_EQ(store.find(a.token, now + 3600'000), nullptr);  // expired at its expiry
  protocol::Token never_seen;
  never_seen.bytes.fill(7);
  EXPECT_EQ(store.find(never_seen, now), nullptr);
  // The stored hash of a token is not a token: presented as one, it is unknown.
  protocol::Token hash_as_token;
  hash_as_token.bytes = SessionStore::hashToken(a.token);
  EXPECT_EQ(store.find(hash_as_token, now), nullptr);
  EXPECT_TRUE(store.revoke(b.token));
  EXPECT_FALSE(store.revoke(b.token));
  EXPECT_EQ(store.find(b.token, now), nullptr);
  EXPECT_EQ(store.size(), 1u);
  store.pruneExpired(now + 3600'000);
  EXPECT_EQ(store.size(), 0u);
  auto c = store.mint("carol", "127.0.0.1", now);
  store.removeUsersIf([](const std::string& u) { return u == "carol"; });
  EXPECT_EQ(store.find(c.token, now), nullptr);
}

TEST(Sessions, CapEvictsSoonestExpiring) {
  SessionStore store(3600'000);
  const int64_t now = 1'000'000;
  auto first = store.mint("u", "127.0.0.1", now);
  for (size_t i = 1; i < SessionStore::kMaxSessions; i++) {
    (void)store.mint("u", "127.0.0.1", now + static_cast<int64_t>(i));
  }
  EXPECT_EQ(store.size(), SessionStore::kMaxSessions);
  auto extra = store.mint("u", "127.0.0.1", now + 20'000);
  EXPECT_EQ(store.size(), SessionStore::kMaxSessions);
  EXPECT_NE(store.find(extra.token, now + 20'000), nullptr);
  EXPECT_EQ(store.find(first.token, now), nullptr);  // the soonest-expiring: evicted
}

TEST(Sessions, ListShowsIdsAddressesAndLastUseNeverTokens) {
  SessionStore store(3600'000);
  const int64_t now = 1'000'000;
  auto a = store.mint("alice", "192.0.2.7", now);
  auto b = store.mint("bob", "2001:db8::1", now + 5);
  EXPECT_NE(store.use(a.token, now + 10), nullptr);
  auto listed = store.list(now + 20);
  ASSERT_EQ(listed.size(), 2u);
  const SessionStore::Listed& la = listed[0];  // oldest first
  const SessionStore::Listed& lb = listed[1];
  EXPECT_EQ(la.session.user, "alice");
  EXPECT_EQ(la.session.remote_address, "192.0.2.7");
  EXPECT_EQ(la.session.created_at_ms, now);
  EXPECT_EQ(la.session.last_used_at_ms, now + 10);
  EXPECT_EQ(lb.session.user, "bob");
  EXPECT_EQ(lb.session.last_used_at_ms, 0);  // find() is no use
  (void)store.find(b.token, now + 30);
  EXPECT_EQ(store.list(now + 40)[1].session.last_used_at_ms, 0);
  // The id: the first hex digits of the token's hash, never of the token.
  EXPECT_TRUE(protocol::validSessionId(la.id)) << la.id;
  EXPECT_EQ(la.id, SessionStore::idOf(SessionStore::hashToken(a.token)));
  EXPECT_NE(la.id, lb.id);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string token_hex;
  for (uint8_t byte : a.token.bytes) token_hex += {kHex[byte >> 4], kHex[byte & 0xf]};
  EXPECT_EQ(token_hex.find(la.id), std::string::npos);
  // An expired session is not listed.
  EXPECT_TRUE(store.list(now + 3600'000 + 5).empty());
}

TEST(Sessions, RevokeByUserAndById) {
  SessionStore store(3600'000);
  const int64_t now = 1'000'000;
  auto a1 = store.mint("alice", "127.0.0.1", now);
  auto a2 = store.mint("alice", "127.0.0.1", now);
  auto b = store.mint("bob", "127.0.0.1", now);
  std::string b_id = SessionStore::idOf(SessionStore::hashToken(b.token));
  EXPECT_EQ(store.revokeId("000000000000"), 0u);
  EXPECT_EQ(store.revokeId(b_id), 1u);
  EXPECT_EQ(store.find(b.token, now), nullptr);
  EXPECT_NE(store.find(a1.token, now), nullptr);
  EXPECT_EQ(store.revokeUser("carol"), 0u);
  EXPECT_EQ(store.revokeUser("alice"), 2u);
  EXPECT_EQ(store.find(a1.token, now), nullptr);
  EXPECT_EQ(store.find(a2.token, now), nullptr);
  EXPECT_EQ(store.size(), 0u);
}

// --- usage in lists -----------------------------------------------------------------------------

// Counts usage() reads; cpu_seconds says how many so far.
class CountingCgroup : public JobCgroup {
 public:
  explicit CountingCgroup(int* reads) : reads_(reads) {}
  Status addProcess(pid_t) override { return okStatus(); }
  int directoryFd() const override { return -1; }
  Status killAll() override { return okStatus(); }
  bool empty() override { return true; }
  protocol::Usage usage() override {
    protocol::Usage u;
    u.has_cpu = true;
    u.cpu_seconds = ++*reads_;
    return u;
  }
  std::optional<uint64_t> memoryNow() override { return std::nullopt; }
  bool oomKilled() override { return false; }
  Status remove() override { return okStatus(); }

 private:
  int* reads_;
};

int64_t monotonicMsForTest() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1'000'000;
}

TEST(JobUsage, AListReadsOnlyAJobNeverSampledAndTheSamplerRefreshesStaleOnes) {
  int reads = 0;
  JobTable table;
  Job* job = table.insert(makeJob("job-u"));
  job->cgroup = std::make_unique<CountingCgroup>(&reads);
  job->markStarted(77, 1001);
  protocol::JobStatus s;
  job->statusInto(s, Job::UsageRead::kLastSample);  // never sampled: read once
  EXPECT_EQ(reads, 1);
  EXPECT_EQ(s.usage.cpu_seconds, 1);
  job->statusInto(s, Job::UsageRead::kLastSample);
  EXPECT_EQ(reads, 1);
  // A second later a list still serves the old sample; the sampler reads it once.
  const int64_t later = monotonicMsForTest() + Job::kUsageSampleMs;
  EXPECT_TRUE(job->usageStale(later));
  job->statusInto(s, Job::UsageRead::kLastSample);
  EXPECT_EQ(reads, 1);
  UsageSampler sampler;
  sampler.add(job->id());
  sampler.add(job->id());  // queued once
  EXPECT_EQ(sampler.size(), 1u);
  sampler.add("gone");  // a job erased meanwhile is skipped
  (void)sampler.runSlice(table, 1'000'000);
  EXPECT_TRUE(sampler.empty());
  EXPECT_EQ(reads, 1);  // not stale yet by the real clock: nothing read
  job->sampleUsage(monotonicMsForTest());
  EXPECT_EQ(reads, 2);
  job->statusInto(s, Job::UsageRead::kLastSample);
  EXPECT_EQ(s.usage.cpu_seconds, 2);
}

TEST(JobUsage, StatusIntoResetsWhatAnotherJobLeft) {
  auto ended = makeJob("job-e");
  ended->markStarted(5, 1001);
  ended->requestStop("bob");
  ended->recordExit(CLD_EXITED, 7);
  ended->publish(3000);
  auto running = makeJob("job-r", "carol");
  running->markStarted(6, 1002);
  protocol::JobStatus s;
  ended->statusInto(s, Job::UsageRead::kLastSample);
  EXPECT_EQ(s.exit_code, 7);
  running->statusInto(s, Job::UsageRead::kLastSample);
  EXPECT_EQ(s, running->status());
}

}  // namespace
}  // namespace jw::supervisor
