// Integration tests of job isolation (namespaces, the job's shim jobworker-init, seccomp profile,
// capabilities) against the real kernel, driven through spawnJob, no daemon. Root.
#include <fcntl.h>
#include <grp.h>
#include <gtest/gtest.h>
#include <linux/keyctl.h>
#include <linux/magic.h>
#include <linux/netlink.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "common/fd.h"
#include "common/protocol/shim_messages.h"
#include "supervisor/cgroup/cgroup.h"
#include "supervisor/launch/credentials.h"
#include "supervisor/launch/job_seccomp.h"
#include "supervisor/launch/namespaces.h"
#include "supervisor/launch/spawn.h"
#include "tests/integration/daemon.h"

namespace jw::supervisor {
namespace {

using jw::test::nsOf;
using jw::test::processesInPidNs;
using jw::test::procStatusField;
using jw::test::waitUntil;

using std::chrono::milliseconds;
using std::chrono::seconds;
using std::chrono::steady_clock;

constexpr const char* kPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
constexpr uid_t kNobody = 65534;

// Calls no shell tool makes run in the job as this test binary, exec'd by the shim as the
// command with `--jw-in-job=NAME ARGS...`: each such function is registered by name (IN_JOB) and
// dispatched before gtest starts (InJobDispatch at the end of this file).
using InJobFn = int (*)(const std::vector<std::string>& args);
std::map<std::string, InJobFn>& inJobFunctions() {
  static std::map<std::string, InJobFn> table;
  return table;
}
struct InJobRegistrar {
  InJobRegistrar(const char* name, InJobFn fn) { inJobFunctions()[name] = fn; }
};
#define IN_JOB(name)                                           \
  int inJob_##name(const std::vector<std::string>& args);      \
  const InJobRegistrar registrar_##name(#name, &inJob_##name); \
  int inJob_##name([[maybe_unused]] const std::vector<std::string>& args)

std::string selfExe() {
  char buf[4096];
  ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
  return n > 0 ? std::string(buf, static_cast<size_t>(n)) : "";
}

// This binary where a job can exec it: a job gets a fresh tmpfs on /tmp, and the checkout may be
// under /tmp (CI clones into `mktemp -d`), so a copy in a 0755 directory under /var/tmp that any
// job uid can reach; removed when the test process exits.
class JobVisibleCopy {
 public:
  JobVisibleCopy() {
    std::string dir = "/var/tmp/jw-isolation-XXXXXX";
    if (mkdtemp(dir.data()) == nullptr) return;
    namespace fs = std::filesystem;
    std::error_code ec;
    dir_ = dir;
    fs::permissions(dir_,
                    fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec |
                        fs::perms::others_read | fs::perms::others_exec,
                    ec);
    std::string to = dir_ + "/integration_isolation";
    fs::copy_file(selfExe(), to, ec);
    if (!ec)
      fs::permissions(to,
                      fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec |
                          fs::perms::others_read | fs::perms::others_exec,
                      ec);
    if (!ec) path_ = to;
  }
  ~JobVisibleCopy() {
    std::error_code ec;
    if (!dir_.empty()) std::filesystem::remove_all(dir_, ec);
  }
  JobVisibleCopy(const JobVisibleCopy&) = delete;
  JobVisibleCopy& operator=(const JobVisibleCopy&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string dir_, path_;
};

const std::string& jobVisibleSelf() {
  static const JobVisibleCopy copy;
  return copy.path();
}

// What a job runs: an argv (the shim execs it), or a registered in-job function.
struct Command {
  std::vector<std::string> argv;
};
Command inJob(const std::string& name, std::vector<std::string> args = {}) {
  Command c{{jobVisibleSelf(), "--jw-in-job=" + name}};
  c.argv.insert(c.argv.end(), args.begin(), args.end());
  return c;
}

// A v2 cgroup directory the test made, as the job's cgroup.
class TestCgroup : public JobCgroup {
 public:
  explicit TestCgroup(int dir_fd) : fd_(dir_fd) {}
  Status addProcess(pid_t) override { return okStatus(); }  // clone3 placed it already
  int directoryFd() const override { return fd_; }
  Status killAll() override { return okStatus(); }
  bool empty() override { return true; }
  protocol::Usage usage() override { return {}; }
  bool oomKilled() override { return false; }
  std::optional<uint64_t> memoryNow() override { return std::nullopt; }
  Status remove() override { return okStatus(); }

 private:
  int fd_;
};

struct JobOptions {
  IsolationSpec spec;
  uid_t uid = 0;  // non-zero: drop to uid/gid with the capability steps
  int cgroup_fd = -1;
};

// A started job, as the supervisor would hold it: the shim, its channel, the job's files.
struct RunningJob {
  pid_t init_pid = -1;  // the host pid of the job's shim (PID 1 of its namespace)
  SpawnedJob spawned;
  std::string dir;
  std::vector<UniqueFd> files;  // output, exit record
  std::unique_ptr<TestCgroup> cgroup;
  ~RunningJob() {
    if (init_pid > 0) {  // a test gave up on it: the namespace dies with its shim
      kill(init_pid, SIGKILL);
      waitpid(init_pid, nullptr, 0);
    }
    if (!dir.empty()) std::filesystem::remove_all(dir);
  }
};

struct Finished {
  int init_status = -1;         // the shim's own wait status
  std::optional<int> reported;  // the command's, from the shim's Exited frame
  std::string output;
};

std::string readFileText(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// Starts a job like the supervisor does: spawnJob with the real jobworker-init.
::testing::AssertionResult startJob(const JobOptions& o, const Command& cmd, RunningJob* job) {
  static const Result<JobSeccompProfile> profile = JobSeccompProfile::build();
  if (!profile) return ::testing::AssertionFailure() << profile.error().message;
  auto last_cap = lastCapability();
  if (!last_cap) return ::testing::AssertionFailure() << last_cap.error().message;
  static UniqueFd init_fd(
      open((std::string(std::getenv("JW_BUILD_ROOT") ? std::getenv("JW_BUILD_ROOT") : "build") +
            "/supervisor/init/jobworker-init")
               .c_str(),
           O_PATH | O_CLOEXEC));
  if (!init_fd) return ::testing::AssertionFailure() << "no jobworker-init under JW_BUILD_ROOT";
  std::string t = "/tmp/jw-iso-job-XXXXXX";
  if (mkdtemp(t.data()) == nullptr) return ::testing::AssertionFailure() << "mkdtemp";
  job->dir = t;
  for (const char* name : {"output", "exit"}) {
    job->files.emplace_back(
        open((t + "/" + name).c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
  }
  if (o.cgroup_fd >= 0) job->cgroup = std::make_unique<TestCgroup>(o.cgroup_fd);

  SpawnRequest r;
  r.init_fd = init_fd.get();
  r.job_id = "1a2b3c4d-0000-4000-8000-000000000000";
  r.argv = cmd.argv;
  r.env = {kPath};
  r.search_path = std::string(kPath).substr(5);
  r.change_credentials = o.uid != 0;
  r.uid = o.uid;
  r.gid = o.uid;
  r.cgroup = job->cgroup.get();
  r.isolation = o.spec;
  r.seccomp = &profile.value();
  r.last_cap = *last_cap;
  r.stdout_log_fd = job->files[0].get();
  r.exit_record_fd = job->files[1].get();
  r.output_cap = 1 << 20;
  r.stop_grace_ms = 1000;
  SpawnFailure failure;
  auto spawned = spawnJob(r, &failure);
  if (!spawned) return ::testing::AssertionFailure() << spawned.error().message;
  job->spawned = std::move(spawned.value());
  job->init_pid = job->spawned.pid;
  return ::testing::AssertionSuccess();
}

// Waits for the shim to exit (its pidfd), then collects what the supervisor would.
::testing::AssertionResult finishJob(RunningJob* job, Finished* f, int timeout_ms = 20000) {
  pollfd pfd{job->spawned.pidfd.get(), POLLIN, 0};
  int n = poll(&pfd, 1, timeout_ms);
  if (n != 1) {
    kill(job->init_pid, SIGKILL);
    waitpid(job->init_pid, nullptr, 0);
    job->init_pid = -1;
    return ::testing::AssertionFailure() << "job did not end within " << timeout_ms << " ms";
  }
  if (waitpid(job->init_pid, &f->init_status, 0) != job->init_pid) {
    return ::testing::AssertionFailure() << "waitpid: " << strerror(errno);
  }
  job->init_pid = -1;
  uint8_t buf[shim::kMaxFrameBytes];
  ssize_t got;
  while ((got = recv(job->spawned.channel.get(), buf, sizeof buf, MSG_DONTWAIT)) > 0) {
    shim::FrameReader r(buf, static_cast<size_t>(got));
    shim::Frame type{};
    shim::Exited e;
    if (r.type(&type) && type == shim::Frame::kExited && shim::decodeExited(r, &e)) {
      f->reported = e.wait_status;
    }
  }
  f->output = readFileText(job->dir + "/output");
  return ::testing::AssertionSuccess();
}

// Runs a job to its end.
Finished run(const JobOptions& o, const Command& cmd) {
  RunningJob job;
  Finished f;
  EXPECT_TRUE(startJob(o, cmd, &job));
  if (job.init_pid > 0) {
    EXPECT_TRUE(finishJob(&job, &f));
  }
  return f;
}

Finished run(const JobOptions& o, std::vector<std::string> argv) {
  return run(o, Command{std::move(argv)});
}

JobOptions defaults() {
  JobOptions o;
  o.spec.hostname = "job-1a2b3c4d";
  o.spec.tmp_size = 1 << 20;
  return o;
}

bool hasProgram(const char* path) { return access(path, X_OK) == 0; }

void expectExited(const Finished& f, int code) {
  ASSERT_TRUE(f.reported.has_value()) << "init reported no status; output: " << f.output;
  EXPECT_TRUE(WIFEXITED(*f.reported)) << "raw status " << *f.reported;
  EXPECT_EQ(WEXITSTATUS(*f.reported), code) << f.output;
  EXPECT_EQ(waitOutcome(*f.reported).code, CLD_EXITED);
  EXPECT_EQ(waitOutcome(*f.reported).value, code);
}

void expectKilledBy(const Finished& f, int sig) {
  ASSERT_TRUE(f.reported.has_value()) << "init reported no status; output: " << f.output;
  EXPECT_TRUE(WIFSIGNALED(*f.reported)) << "raw status " << *f.reported << "; " << f.output;
  EXPECT_EQ(WTERMSIG(*f.reported), sig);
  EXPECT_EQ(waitOutcome(*f.reported).code, CLD_KILLED);
  EXPECT_EQ(waitOutcome(*f.reported).value, sig);
}

// --- planning ---------------------------------------------------------------------------------

TEST(IsolationPlan, FlagsLabelsAndChecks) {
  IsolationSpec spec;
  spec.hostname = jobHostname("0123456789abcdef");
  EXPECT_EQ(spec.hostname, "job-01234567");
  EXPECT_EQ(cloneFlags(spec),
            CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWUTS | CLONE_NEWIPC);
  EXPECT_EQ(isolationLabels(spec),
            (std::vector<std::string>{"pid", "mount", "net", "uts", "ipc", "seccomp"}));
  auto plan = planContainment(spec);
  ASSERT_TRUE(plan.ok()) << plan.error().message;
  EXPECT_EQ(plan->tmp_options, "size=67108864,mode=1777");

  spec.net = false;
  spec.pid = false;
  EXPECT_EQ(cloneFlags(spec), CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC);

  IsolationSpec zero = spec;
  zero.tmp_size = 0;  // tmpfs would read it as "unlimited"
  EXPECT_FALSE(planContainment(zero).ok());
  IsolationSpec long_name = spec;
  long_name.hostname = std::string(65, 'a');
  EXPECT_FALSE(planContainment(long_name).ok());
}

TEST(IsolationPlan, SeccompProfileBuilds) {
  auto profile = JobSeccompProfile::build();
  ASSERT_TRUE(profile.ok()) << profile.error().message;
  EXPECT_GT(profile->instructionCount(), 40u);
  EXPECT_EQ(profile->program().len, profile->instructionCount());
}

// --- PID namespace and the init ---------------------------------------------------------------

TEST(Isolation, PsShowsOnlyTheJobAndItsParentIsPid1) {
  if (!hasProgram("/usr/bin/ps") && !hasProgram("/bin/ps")) GTEST_SKIP() << "no ps";
  Finished f = run(defaults(), {"sh", "-c", "echo ppid=$PPID; ps -e -o pid=,ppid=,comm="});
  expectExited(f, 0);
  std::istringstream in(f.output);
  std::string line;
  std::getline(in, line);
  EXPECT_EQ(line, "ppid=1");
  std::set<std::string> comms;
  std::vector<int> pids;
  int pid, ppid;
  std::string comm;
  while (in >> pid >> ppid >> comm) {
    pids.push_back(pid);
    comms.insert(comm);
    if (pid == 1) {
      EXPECT_EQ(comm, "jw-init");
    }
  }
  // jw-init, the shell and ps (or only ps when the shell exec'd it): never a host process.
  EXPECT_GE(pids.size(), 2u) << f.output;
  EXPECT_LE(pids.size(), 3u) << f.output;
  for (const auto& c : comms) {
    EXPECT_TRUE(c == "jw-init" || c == "sh" || c == "ps") << "unexpected process " << c;
  }
}

IN_JOB(countProcesses) {
  int count = 0;
  for (const auto& e : std::filesystem::directory_iterator("/proc")) {
    std::string n = e.path().filename();
    if (std::all_of(n.begin(), n.end(), ::isdigit)) count++;
  }
  std::printf("self=%d parent=%d count=%d\n", getpid(), getppid(), count);
  return 0;
}

TEST(Isolation, ProcListsOnlyJobProcesses) {
  Finished f = run(defaults(), inJob("countProcesses"));
  expectExited(f, 0);
  EXPECT_EQ(f.output, "self=2 parent=1 count=2\n");  // the init and this command
}

TEST(Isolation, ExitCodesAndSignalsAreReportedExactly) {
  expectExited(run(defaults(), {"true"}), 0);
  expectExited(run(defaults(), {"sh", "-c", "exit 3"}), 3);
  expectKilledBy(run(defaults(), {"sh", "-c", "kill -KILL $$"}), SIGKILL);
  expectKilledBy(run(defaults(), {"sh", "-c", "kill -SEGV $$"}), SIGSEGV);
  // The init itself always exits 0 after reporting.
  Finished f = run(defaults(), {"sh", "-c", "exit 7"});
  EXPECT_TRUE(WIFEXITED(f.init_status) && WEXITSTATUS(f.init_status) == 0);
}

TEST(Isolation, SigtermToTheInitIsForwardedToTheCommand) {
  for (int sig : {SIGTERM, SIGINT, SIGHUP}) {
    RunningJob job;
    ASSERT_TRUE(startJob(defaults(), Command{{"sleep", "60"}}, &job));
    // The signal must reach the command, not the init still setting up (the next test covers
    // that case): wait until the job's PID namespace runs `sleep`.
    std::string ns = nsOf(job.init_pid, "pid");
    ASSERT_NE(ns, nsOf(getpid(), "pid"));  // else a `sleep` of the host would do
    ASSERT_TRUE(waitUntil(
        [&] {
          for (pid_t p : processesInPidNs(ns)) {
            if (procStatusField(p, "Name") == "sleep") return true;
          }
          return false;
        },
        seconds(10)))
        << "the job's command never started";
    ASSERT_EQ(syscall(SYS_pidfd_send_signal, job.spawned.pidfd.get(), sig, nullptr, 0), 0)
        << strerror(errno);
    Finished f;
    ASSERT_TRUE(finishJob(&job, &f, 10000));
    expectKilledBy(f, sig);
  }
}

TEST(Isolation, ASignalBeforeTheCommandStartsIsNotLost) {
  // The stop arrives while the init is still setting up: it is queued, then forwarded.
  RunningJob job;
  ASSERT_TRUE(startJob(defaults(), Command{{"sleep", "60"}}, &job));
  ASSERT_EQ(kill(job.init_pid, SIGTERM), 0);
  Finished f;
  ASSERT_TRUE(finishJob(&job, &f, 10000));
  expectKilledBy(f, SIGTERM);
}

TEST(Isolation, OrphansAreReapedWhileTheJobRuns) {
  // The inner shell exits at once, orphaning its background sleep to PID 1; once that sleep ends
  // the init must reap it, or ps would show a zombie.
  Finished f =
      run(defaults(), {"sh", "-c", "sh -c 'sleep 0.2 &'; sleep 1; ps -e -o pid=,stat=,comm="});
  expectExited(f, 0);
  EXPECT_EQ(f.output.find(" Z"), std::string::npos) << f.output;
  EXPECT_EQ(f.output.find("defunct"), std::string::npos) << f.output;
}

IN_JOB(traceMeThenRun) {
  if (ptrace(PTRACE_TRACEME, 0, nullptr, nullptr) != 0) return 90;
  char sh[] = "/bin/sh", c[] = "-c";
  std::string script = args.at(0);
  char* argv[] = {sh, c, script.data(), nullptr};
  execv(sh, argv);
  return 91;
}

TEST(Isolation, ACommandThatMakesTheInitItsTracerStillReportsItsExit) {
  // Without the profile a job may PTRACE_TRACEME: the init then sees ptrace stops, which are
  // not the command's end; it lets the tracee go.
  JobOptions o = defaults();
  o.spec.seccomp = false;
  Finished f = run(o, inJob("traceMeThenRun", {"kill -USR1 $$ 2>/dev/null; exit 6"}));
  // The SIGUSR1 is delivered as without a tracer: the shell dies of it.
  expectKilledBy(f, SIGUSR1);
  Finished g = run(o, inJob("traceMeThenRun", {"exit 6"}));
  expectExited(g, 6);  // the exec's SIGTRAP did not kill it
}

TEST(Isolation, WhenTheCommandExitsEverythingLeftIsKilled) {
  RunningJob job;
  ASSERT_TRUE(
      startJob(defaults(), Command{{"sh", "-c", "sleep 1000 & sleep 1000 & exit 5"}}, &job));
  std::string ns = nsOf(job.init_pid, "pid");
  ASSERT_FALSE(ns.empty());
  Finished f;
  ASSERT_TRUE(finishJob(&job, &f, 10000));  // would hang on the output pipe if sleeps survived
  expectExited(f, 5);
  EXPECT_TRUE(processesInPidNs(ns).empty());
}

TEST(Isolation, StopKillsAJobWhoseChildIgnoresSigtermAndOrphansAGrandchild) {
  // The command ignores SIGTERM (and so do its children: SIG_IGN survives exec); the inner shell
  // exits at once, so its sleep is an orphan of the init.
  const char* script =
      "trap '' TERM\n"
      "sh -c 'sleep 1000 & echo orphaned' \n"
      "sleep 1000 &\n"
      "wait\n";
  RunningJob job;
  ASSERT_TRUE(startJob(defaults(), Command{{"sh", "-c", script}}, &job));
  std::string ns = nsOf(job.init_pid, "pid");
  ASSERT_FALSE(ns.empty());
  // Settled: the init, sh and two sleeps, one of them an orphan whose parent is the init (the
  // inner shell is gone).
  std::vector<pid_t> pids;
  auto settled = [&] {
    pids = processesInPidNs(ns);
    int sleeps = 0, orphans = 0;
    for (pid_t p : pids) {
      if (procStatusField(p, "Name") != "sleep") continue;
      sleeps++;
      if (procStatusField(p, "PPid") == std::to_string(job.init_pid)) orphans++;
    }
    return pids.size() == 4 && sleeps == 2 && orphans == 1;
  };
  ASSERT_TRUE(waitUntil(settled, seconds(10))) << pids.size() << " processes";

  // SIGTERM is forwarded and ignored: nothing ends.
  ASSERT_EQ(syscall(SYS_pidfd_send_signal, job.spawned.pidfd.get(), SIGTERM, nullptr, 0), 0);
  pollfd pfd{job.spawned.pidfd.get(), POLLIN, 0};
  EXPECT_EQ(poll(&pfd, 1, 500), 0) << "the job ended on an ignored SIGTERM";
  EXPECT_EQ(processesInPidNs(ns).size(), 4u);

  // The grace period is over: SIGKILL to the init ends the whole namespace.
  ASSERT_EQ(syscall(SYS_pidfd_send_signal, job.spawned.pidfd.get(), SIGKILL, nullptr, 0), 0);
  Finished f;
  ASSERT_TRUE(finishJob(&job, &f, 10000));
  EXPECT_FALSE(f.reported.has_value());  // killed before it could report: its own status counts
  EXPECT_TRUE(WIFSIGNALED(f.init_status) && WTERMSIG(f.init_status) == SIGKILL);
  for (pid_t p : pids) {
    EXPECT_NE(kill(p, 0), 0) << "pid " << p << " survived (state " << procStatusField(p, "State")
                             << ")";
  }
  EXPECT_TRUE(processesInPidNs(ns).empty());  // no zombie either
  EXPECT_EQ(f.output, "orphaned\n");
}

TEST(Isolation, TheJobOutlivesTheSupervisor) {
  // A stand-in supervisor starts the job and is SIGKILLed: the shim has no parent-death signal,
  // so the job keeps running and its output keeps landing in its log. This process becomes the
  // subreaper, so it can reap the shim afterwards.
  ASSERT_EQ(prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0), 0);
  int info_pipe[2];
  ASSERT_EQ(pipe2(info_pipe, O_CLOEXEC), 0);
  pid_t fake = fork();
  ASSERT_GE(fake, 0);
  if (fake == 0) {
    RunningJob job;
    if (!startJob(defaults(), Command{{"sh", "-c", "while :; do echo tick; sleep 0.01; done"}},
                  &job)) {
      _exit(1);
    }
    std::string line =
        std::to_string(job.init_pid) + " " + nsOf(job.init_pid, "pid") + " " + job.dir;
    if (write(info_pipe[1], line.data(), line.size()) < 0) _exit(1);
    pause();
    _exit(0);
  }
  close(info_pipe[1]);
  char buf[512] = {};
  ASSERT_GT(read(info_pipe[0], buf, sizeof buf - 1), 0);
  close(info_pipe[0]);
  std::istringstream in(buf);
  pid_t init_pid;
  std::string ns, dir;
  in >> init_pid >> ns >> dir;
  kill(fake, SIGKILL);
  waitpid(fake, nullptr, 0);
  // Still running, and still writing: the log grows after the supervisor is gone.
  auto size = [&] {
    struct stat st {};
    return stat((dir + "/output").c_str(), &st) == 0 ? st.st_size : -1;
  };
  off_t after_kill = size();
  EXPECT_TRUE(waitUntil([&] { return size() > after_kill + 100; }, seconds(10)))
      << "the job's output stopped at " << after_kill << " bytes";
  EXPECT_GE(processesInPidNs(ns).size(), 2u);
  kill(init_pid, SIGKILL);
  int st = 0;
  EXPECT_EQ(waitpid(init_pid, &st, 0), init_pid);  // reparented to us, the subreaper
  EXPECT_TRUE(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
  EXPECT_TRUE(processesInPidNs(ns).empty());
  std::filesystem::remove_all(dir);
  prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0);
}

// --- mount namespace --------------------------------------------------------------------------

TEST(Isolation, TmpIsPrivateAndSizeLimited) {
  std::string name =
      "jw-iso-" + std::to_string(getpid()) + "-" + std::to_string(std::random_device{}());
  std::string script = "echo secret > /tmp/" + name + " && cat /tmp/" + name +
                       " && stat -f -c 'blocks=%b bsize=%S' /tmp"
                       " && if head -c 2097152 /dev/zero > /tmp/big 2>/dev/null;"
                       " then echo big-ok; else echo big-refused; fi"
                       " && grep -E ' /(tmp|dev/shm) ' /proc/mounts";
  Finished f = run(defaults(), {"sh", "-c", script});
  expectExited(f, 0);
  EXPECT_NE(f.output.find("secret\n"), std::string::npos) << f.output;
  EXPECT_NE(f.output.find("blocks=256 bsize=4096"), std::string::npos) << f.output;  // 1 MiB
  EXPECT_NE(f.output.find("big-refused"), std::string::npos) << f.output;
  EXPECT_NE(f.output.find("tmpfs /tmp tmpfs rw,nosuid,nodev"), std::string::npos) << f.output;
  EXPECT_NE(f.output.find("tmpfs /dev/shm tmpfs rw,nosuid,nodev"), std::string::npos) << f.output;
  struct stat st {};
  EXPECT_NE(stat(("/tmp/" + name).c_str(), &st), 0) << "the job's /tmp file is on the host";
  // Nothing of the job's mounts reached the host.
  std::ifstream mounts("/proc/self/mountinfo");
  std::string all((std::istreambuf_iterator<char>(mounts)), std::istreambuf_iterator<char>());
  EXPECT_EQ(all.find("size=1024k"), std::string::npos);
}

TEST(Isolation, WithoutAMountNamespaceTmpIsTheHosts) {
  // The control for the test above: the same write lands on the host.
  JobOptions o = defaults();
  o.spec.mount = false;
  std::string path = "/tmp/jw-iso-host-" + std::to_string(getpid());
  expectExited(run(o, {"sh", "-c", "echo x > " + path}), 0);
  struct stat st {};
  EXPECT_EQ(stat(path.c_str(), &st), 0);
  unlink(path.c_str());
}

// --- network namespace ------------------------------------------------------------------------

TEST(Isolation, OnlyLoopbackAndItIsUp) {
  Finished f = run(defaults(), {"sh", "-c", "tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '"});
  expectExited(f, 0);
  EXPECT_EQ(f.output, "lo\n");
  if (hasProgram("/usr/sbin/ip") || hasProgram("/sbin/ip") || hasProgram("/usr/bin/ip")) {
    Finished ip = run(defaults(), {"ip", "-o", "link", "show"});
    expectExited(ip, 0);
    EXPECT_EQ(std::count(ip.output.begin(), ip.output.end(), '\n'), 1) << ip.output;
    EXPECT_NE(ip.output.find("1: lo: <LOOPBACK,UP,LOWER_UP>"), std::string::npos) << ip.output;
  }
}

int listenOnLoopback(uint16_t* port) {
  int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  if (s < 0 || bind(s, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || listen(s, 8) != 0 ||
      getsockname(s, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    return -1;
  }
  *port = ntohs(a.sin_port);
  return s;
}

int connectLoopback(uint16_t port) {
  int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  int rc = connect(s, reinterpret_cast<sockaddr*>(&a), sizeof a);
  int err = rc == 0 ? 0 : errno;
  close(s);
  return err;
}

IN_JOB(probeLoopback) {
  auto port = static_cast<uint16_t>(std::stoi(args.at(0)));
  std::printf("connect=%s\n", strerror(connectLoopback(port)));
  // The job's own loopback works: listen and connect inside.
  uint16_t own = 0;
  int l = listenOnLoopback(&own);
  std::printf("own=%s\n", l < 0 ? "listen failed" : strerror(connectLoopback(own)));
  return 0;
}

TEST(Isolation, TheHostsLoopbackIsUnreachable) {
  uint16_t port = 0;
  int listener = listenOnLoopback(&port);
  ASSERT_GE(listener, 0) << strerror(errno);
  ASSERT_EQ(connectLoopback(port), 0);  // reachable from the host
  Command probe = inJob("probeLoopback", {std::to_string(port)});
  Finished f = run(defaults(), probe);
  expectExited(f, 0);
  EXPECT_EQ(f.output,
            std::string("connect=") + strerror(ECONNREFUSED) + "\nown=" + strerror(0) + "\n");
  JobOptions host = defaults();
  host.spec.net = false;  // "network": "host" reaches it
  Finished h = run(host, probe);
  EXPECT_EQ(h.output.rfind(std::string("connect=") + strerror(0), 0), 0u) << h.output;
  close(listener);
}

// --- UTS and IPC ------------------------------------------------------------------------------

TEST(Isolation, HostnameIsTheJobs) {
  char before[256] = {};
  gethostname(before, sizeof before);
  Finished f = run(defaults(), {"hostname"});
  expectExited(f, 0);
  EXPECT_EQ(f.output, "job-1a2b3c4d\n");
  char after[256] = {};
  gethostname(after, sizeof after);
  EXPECT_STREQ(before, after);
}

TEST(Isolation, NamespacesDifferFromTheHosts) {
  RunningJob job;
  ASSERT_TRUE(startJob(defaults(), Command{{"sleep", "60"}}, &job));
  for (const char* ns : {"pid_for_children", "mnt", "net", "uts", "ipc"}) {
    std::string host = nsOf(getpid(), ns);
    // The init's own pid entry is the host's; its children's is the new one.
    std::string job_ns = nsOf(job.init_pid, ns);
    EXPECT_NE(job_ns, host) << ns;
  }
  EXPECT_EQ(nsOf(job.init_pid, "user"), nsOf(getpid(), "user"));
  kill(job.init_pid, SIGKILL);
  Finished f;
  ASSERT_TRUE(finishJob(&job, &f));
}

// --- credentials and capabilities -------------------------------------------------------------

TEST(Isolation, NonRootJobHasNoCapabilityAtAll) {
  JobOptions o = defaults();
  o.uid = kNobody;
  Finished f = run(
      o, {"sh", "-c", "id -u; grep -E '^(Cap[A-Za-z]+|NoNewPrivs|Seccomp):' /proc/self/status"});
  expectExited(f, 0);
  EXPECT_EQ(f.output,
            "65534\n"
            "CapInh:\t0000000000000000\nCapPrm:\t0000000000000000\nCapEff:\t0000000000000000\n"
            "CapBnd:\t0000000000000000\nCapAmb:\t0000000000000000\n"
            "NoNewPrivs:\t1\nSeccomp:\t2\n");
}

IN_JOB(touchTheInit) {
  int fd = open("/proc/1/mem", O_RDONLY);
  std::printf("mem=%s kill=%s\n", fd < 0 ? strerror(errno) : "opened",
              kill(1, SIGKILL) == 0 ? "sent" : strerror(errno));
  return 0;
}

TEST(Isolation, NonRootJobCannotTouchTheInit) {
  JobOptions o = defaults();
  o.uid = kNobody;
  o.spec.seccomp = false;  // the uid alone must protect the root init
  Finished f = run(o, inJob("touchTheInit"));
  expectExited(f, 0);
  // The shim stays root: its memory and its life are out of reach.
  EXPECT_TRUE(
      f.output == std::string("mem=") + strerror(EPERM) + " kill=" + strerror(EPERM) + "\n" ||
      f.output == std::string("mem=") + strerror(EACCES) + " kill=" + strerror(EPERM) + "\n")
      << f.output;
}

// --- seccomp ----------------------------------------------------------------------------------

int keyctlErrno() {
  long r = syscall(SYS_keyctl, KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING, 1);
  return r < 0 ? errno : 0;
}

IN_JOB(probeBlockedSyscalls) {
  std::printf("keyctl=%d ", keyctlErrno());
  std::printf("ptrace=%d ", ptrace(PTRACE_TRACEME, 0, nullptr, nullptr) == 0 ? 0 : errno);
  std::printf("bpf=%d ", syscall(SYS_bpf, 0, nullptr, 0) == 0 ? 0 : errno);
  std::printf("reboot=%d ", syscall(SYS_reboot, 0, 0, 0, nullptr) == 0 ? 0 : errno);
  std::printf("mount=%d ", mount("none", "/mnt", "tmpfs", 0, nullptr) == 0 ? 0 : errno);
  std::printf("unshare_user=%d ", unshare(CLONE_NEWUSER) == 0 ? 0 : errno);
  std::printf("clone3=%d\n", syscall(SYS_clone3, nullptr, 0) == 0 ? 0 : errno);
  return 0;
}

TEST(Isolation, BlockedSyscallsGetEperm) {
  Command probe = inJob("probeBlockedSyscalls");
  // As root (the strongest case: only the filter stands in the way).
  Finished f = run(defaults(), probe);
  expectExited(f, 0);
  EXPECT_EQ(
      f.output,
      "keyctl=1 ptrace=1 bpf=1 reboot=1 mount=1 unshare_user=1 clone3=38\n");  // EPERM, ENOSYS
  // The control: without the profile none of these is EPERM for root (reboot's bad magic is
  // EINVAL, bpf's null attr EFAULT, clone3's null args EFAULT...).
  JobOptions off = defaults();
  off.spec.seccomp = false;
  Finished c = run(off, probe);
  expectExited(c, 0);
  EXPECT_EQ(c.output.find("=1 "), std::string::npos) << c.output;
  // The supervisor (this process) is not filtered.
  EXPECT_EQ(procStatusField(getpid(), "Seccomp"), "0");
  EXPECT_NE(keyctlErrno(), EPERM);
}

IN_JOB(probeSockets) {
  auto errnoOf = [](long domain, int type, long protocol) {
    long fd = syscall(SYS_socket, domain, type, protocol);
    if (fd < 0) return errno;
    close(static_cast<int>(fd));
    return 0;
  };
  std::printf("unix=%d inet=%d inet6=%d route=%d ", errnoOf(AF_UNIX, SOCK_STREAM, 0),
              errnoOf(AF_INET, SOCK_STREAM, 0), errnoOf(AF_INET6, SOCK_DGRAM, 0),
              errnoOf(AF_NETLINK, SOCK_RAW, NETLINK_ROUTE));
  std::printf("vsock=%d vsock_high_bits=%d packet=%d ", errnoOf(AF_VSOCK, SOCK_STREAM, 0),
              errnoOf((1L << 32) | AF_VSOCK, SOCK_STREAM, 0), errnoOf(AF_PACKET, SOCK_RAW, 0));
  std::printf("audit=%d uevent=%d audit_high_bits=%d ",
              errnoOf(AF_NETLINK, SOCK_RAW, NETLINK_AUDIT),
              errnoOf(AF_NETLINK, SOCK_RAW, NETLINK_KOBJECT_UEVENT),
              errnoOf(AF_NETLINK, SOCK_RAW, (1L << 32) | NETLINK_AUDIT));
  int sv[2];
  std::printf("vsock_pair=%d\n", socketpair(AF_VSOCK, SOCK_STREAM, 0, sv) == 0 ? 0 : errno);
  return 0;
}

TEST(Isolation, OnlyUnixIpAndRouteNetlinkSocketsCanBeCreated) {
  Command probe = inJob("probeSockets");
  // As root, so that packet and audit sockets would otherwise be allowed.
  Finished f = run(defaults(), probe);
  expectExited(f, 0);
  EXPECT_EQ(f.output,
            "unix=0 inet=0 inet6=0 route=0 vsock=97 vsock_high_bits=97 packet=97 audit=93 "
            "uevent=93 audit_high_bits=93 vsock_pair=97\n");  // EAFNOSUPPORT, EPROTONOSUPPORT
  // The control: without the profile root gets a packet socket.
  JobOptions off = defaults();
  off.spec.seccomp = false;
  Finished c = run(off, probe);
  expectExited(c, 0);
  EXPECT_NE(c.output.find("packet=0 "), std::string::npos) << c.output;
}

TEST(Isolation, UnshareOfAUserNamespaceFailsForAProgram) {
  if (!hasProgram("/usr/bin/unshare")) GTEST_SKIP() << "no unshare(1)";
  Finished f = run(defaults(), {"unshare", "-U", "true"});
  expectExited(f, 1);
  EXPECT_NE(f.output.find("Operation not permitted"), std::string::npos) << f.output;
  // The rule looks at the flag only: other clones (fork) work.
  expectExited(run(defaults(), {"sh", "-c", "sh -c 'exit 4'; exit $?"}), 4);
}

#if defined(__x86_64__)
IN_JOB(x32Getpid) { return static_cast<int>(syscall(0x40000000 | SYS_getpid)); }

// i386 via int 0x80 (getpid is 20 there).
IN_JOB(int80Getpid) {
  long ret = 20;
  asm volatile("int $0x80" : "+a"(ret) : : "r8", "r9", "r10", "r11", "memory");
  return ret > 0 ? 0 : 1;
}

TEST(Isolation, ForeignAbisAreKilled) {
  // x32: the x86_64 entry with bit 30 set. Without the profile: ENOSYS or a result.
  expectKilledBy(run(defaults(), inJob("x32Getpid")), SIGSYS);
  Command int80 = inJob("int80Getpid");
  expectKilledBy(run(defaults(), int80), SIGSYS);
  JobOptions off = defaults();
  off.spec.seccomp = false;
  Finished f = run(off, int80);
  ASSERT_TRUE(f.reported.has_value());
  EXPECT_FALSE(WIFSIGNALED(*f.reported) && WTERMSIG(*f.reported) == SIGSYS);
}
#endif

// --- placement --------------------------------------------------------------------------------

TEST(Isolation, CloneIntoACgroup) {
  std::string root;
  for (const char* m : {"/sys/fs/cgroup", "/sys/fs/cgroup/unified"}) {
    struct statfs s {};
    if (statfs(m, &s) == 0 && s.f_type == CGROUP2_SUPER_MAGIC) root = m;
  }
  if (root.empty()) GTEST_SKIP() << "no cgroup2 mount";
  // Our own v2 cgroup, from the 0:: line.
  std::ifstream in("/proc/self/cgroup");
  std::string line, own;
  while (std::getline(in, line)) {
    if (line.rfind("0::", 0) == 0) own = line.substr(3);
  }
  std::string dir = root + own + (own == "/" ? "" : "/") + "jwiso-" + std::to_string(getpid());
  ASSERT_EQ(mkdir(dir.c_str(), 0755), 0) << dir << ": " << strerror(errno);
  int fd = open(dir.c_str(), O_DIRECTORY | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  JobOptions o = defaults();
  o.cgroup_fd = fd;
  RunningJob job;
  ASSERT_TRUE(startJob(o, Command{{"sleep", "60"}}, &job));
  std::ifstream cg("/proc/" + std::to_string(job.init_pid) + "/cgroup");
  // The shim unshared a cgroup namespace in it: the host sees the real path.
  std::string v2line;
  while (std::getline(cg, line)) {
    if (line.rfind("0::", 0) == 0) v2line = line;
  }
  EXPECT_NE(v2line.find("/jwiso-" + std::to_string(getpid())), std::string::npos) << v2line;
  kill(job.init_pid, SIGKILL);
  Finished f;
  ASSERT_TRUE(finishJob(&job, &f));
  close(fd);
  EXPECT_TRUE(waitUntil([&] { return rmdir(dir.c_str()) == 0; }, seconds(10))) << strerror(errno);
}

// When this binary is a job's command (`--jw-in-job=NAME`): run NAME before gtest starts. Last in
// the file, so every IN_JOB above has registered.
struct InJobDispatch {
  InJobDispatch() {
    std::string cmdline = readFileText("/proc/self/cmdline");
    std::vector<std::string> argv;
    for (size_t pos = 0; pos < cmdline.size();) {
      size_t end = cmdline.find('\0', pos);
      if (end == std::string::npos) end = cmdline.size();
      argv.push_back(cmdline.substr(pos, end - pos));
      pos = end + 1;
    }
    const std::string flag = "--jw-in-job=";
    if (argv.size() < 2 || argv[1].rfind(flag, 0) != 0) return;
    auto it = inJobFunctions().find(argv[1].substr(flag.size()));
    if (it == inJobFunctions().end()) _exit(99);
    int rc = it->second(std::vector<std::string>(argv.begin() + 2, argv.end()));
    std::fflush(stdout);
    _exit(rc);
  }
};
const InJobDispatch in_job_dispatch;

}  // namespace
}  // namespace jw::supervisor
