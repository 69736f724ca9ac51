// Integration tests of the job isolation modules (namespaces, job init, seccomp profile,
// capabilities) against the real kernel, driven directly through their API, no daemon. Root.
#include <fcntl.h>
#include <grp.h>
#include <gtest/gtest.h>
#include <linux/keyctl.h>
#include <linux/magic.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio_ext.h>
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
#include <functional>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "supervisor/launch/credentials.h"
#include "supervisor/launch/job_init.h"
#include "supervisor/launch/job_seccomp.h"
#include "supervisor/launch/namespaces.h"
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

// What a job runs: an argv (exec'd), or, for calls no shell tool makes, a function run in the
// command process after every containment step (in place of execve).
struct Command {
  std::vector<std::string> argv;
  std::function<int()> in_process;
};

struct JobOptions {
  IsolationSpec spec;
  uid_t uid = 0;  // non-zero: drop to uid/gid with the capability steps
  int cgroup_fd = -1;
};

// A started job, as the supervisor would hold it.
struct RunningJob {
  pid_t init_pid = -1;  // the host pid of the job init (or of the command without a PID ns)
  int pidfd = -1;
  int out_fd = -1;     // stdout+stderr of the command
  int status_fd = -1;  // read end of the init's status pipe
  ~RunningJob() {
    if (init_pid > 0) {  // a test gave up on it: the namespace dies with its init
      kill(init_pid, SIGKILL);
      waitpid(init_pid, nullptr, 0);
    }
    for (int fd : {pidfd, out_fd, status_fd}) {
      if (fd >= 0) close(fd);
    }
  }
};

struct Finished {
  int init_status = -1;         // the init's own wait status
  std::optional<int> reported;  // the command's, from the status pipe
  std::string output;
};

struct ChildReport {
  int32_t step;
  int32_t err;
};

enum Step : int32_t { kBecomeInit = 1, kRelease, kContainment, kFork, kCommandSetup, kExec };

// Everything the clone child reads, prepared before the clone (as spawn.cc does).
struct Plan {
  ContainmentPlan containment;
  sock_fprog seccomp{};
  bool use_seccomp = false;
  int last_cap = 0;
  uid_t uid = 0;
  std::vector<char*> argv;
  std::vector<char*> envp;
  const Command* command = nullptr;
  int out_w = -1, status_w = -1, report_w = -1, release_r = -1, devnull = -1;
};

[[noreturn]] void fail(const Plan& p, int32_t step, int err) {
  ChildReport r{step, err};
  ssize_t n = write(p.report_w, &r, sizeof r);
  (void)n;
  _exit(127);
}

// The command process: the job's own steps, in spawn.cc's order.
[[noreturn]] void runCommand(const Plan& p) {
  if (setpgid(0, 0) != 0) fail(p, kCommandSetup, errno);
  if (dup2(p.devnull, 0) < 0 || dup2(p.out_w, 1) < 0 || dup2(p.out_w, 2) < 0) {
    fail(p, kCommandSetup, errno);
  }
  if (p.uid != 0) {
    int err = dropBoundingSet(p.last_cap);
    if (err != 0) fail(p, kCommandSetup, err);
    gid_t gid = p.uid;
    if (setgroups(0, nullptr) != 0 || setresgid(gid, gid, gid) != 0 ||
        setresuid(p.uid, p.uid, p.uid) != 0) {
      fail(p, kCommandSetup, errno);
    }
    if ((err = clearCapabilities()) != 0) fail(p, kCommandSetup, err);
  }
  if (chdir("/") != 0) fail(p, kCommandSetup, errno);
  if (p.use_seccomp) {
    int err = installSeccomp(p.seccomp);
    if (err != 0) fail(p, kCommandSetup, err);
  }
  if (p.command->in_process) {
    // No execve to close these: the supervisor must see EOF on the report pipe now, and the
    // command must never hold the status pipe.
    // stdout's buffer may hold this test process's pending output: drop it, not print it.
    close(p.report_w);
    close(p.status_w);
    __fpurge(stdout);
    int rc = p.command->in_process();
    std::fflush(stdout);
    _exit(rc);
  }
  execvpe(p.argv[0], p.argv.data(), p.envp.data());
  fail(p, kExec, errno);
}

// The clone child: the containment order as spawn.cc will run it.
[[noreturn]] void runJobProcess(const Plan& p, bool with_init) {
  int err;
  if (with_init && (err = becomeJobInit()) != 0) fail(p, kBecomeInit, err);
  char c;
  if (read(p.release_r, &c, 1) != 1) fail(p, kRelease, ECANCELED);
  ContainmentStep failed;
  if ((err = setupContainment(p.containment, &failed)) != 0) {
    fail(p, kContainment * 100 + static_cast<int32_t>(failed), err);
  }
  if (!with_init) runCommand(p);
  pid_t command = forkJobCommand();
  if (command < 0) fail(p, kFork, errno);
  if (command == 0) runCommand(p);
  runJobInit(command, p.status_w);
}

std::string readAll(int fd) {
  std::string out;
  char buf[4096];
  for (;;) {
    ssize_t n = read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

// Starts a job like the supervisor will: plan, profile, pipes, clone, release, read the report.
::testing::AssertionResult startJob(const JobOptions& o, const Command& cmd, RunningJob* job) {
  static const Result<JobSeccompProfile> profile = JobSeccompProfile::build();
  if (!profile) return ::testing::AssertionFailure() << profile.error().message;
  auto containment = planContainment(o.spec);
  if (!containment) return ::testing::AssertionFailure() << containment.error().message;
  auto last_cap = lastCapability();
  if (!last_cap) return ::testing::AssertionFailure() << last_cap.error().message;

  Plan p;
  p.containment = *containment;
  p.seccomp = profile->program();
  p.use_seccomp = o.spec.seccomp;
  p.last_cap = *last_cap;
  p.uid = o.uid;
  p.command = &cmd;
  for (const auto& a : cmd.argv) p.argv.push_back(const_cast<char*>(a.c_str()));
  p.argv.push_back(nullptr);
  std::string path = kPath;
  p.envp = {path.data(), nullptr};
  if (cmd.argv.empty() && !cmd.in_process) return ::testing::AssertionFailure() << "no command";

  int out[2], status[2], report[2], release[2];
  if (pipe2(out, O_CLOEXEC) != 0 || pipe2(status, O_CLOEXEC) != 0 ||
      pipe2(report, O_CLOEXEC) != 0 || pipe2(release, O_CLOEXEC) != 0) {
    return ::testing::AssertionFailure() << "pipe2: " << strerror(errno);
  }
  p.devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
  p.out_w = out[1];
  p.status_w = status[1];
  p.report_w = report[1];
  p.release_r = release[0];

  pid_t pid = cloneJobProcess(cloneFlags(o.spec), o.cgroup_fd);
  if (pid < 0) return ::testing::AssertionFailure() << "clone: " << strerror(errno);
  if (pid == 0) runJobProcess(p, o.spec.pid);

  for (int fd : {out[1], status[1], report[1], release[0], p.devnull}) close(fd);
  // As spawn.cc does: the init leads its own group (alone in it: the command makes its own).
  if (setpgid(pid, pid) != 0)
    return ::testing::AssertionFailure() << "setpgid: " << strerror(errno);
  job->init_pid = pid;
  job->out_fd = out[0];
  job->status_fd = status[0];
  job->pidfd = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
  // The supervisor moves the child into its cgroup here, then releases it.
  if (write(release[1], "x", 1) != 1) return ::testing::AssertionFailure() << "release";
  close(release[1]);
  ChildReport r{};
  std::string rep = readAll(report[0]);
  close(report[0]);
  if (!rep.empty()) {
    std::memcpy(&r, rep.data(), std::min(rep.size(), sizeof r));
    waitpid(pid, nullptr, 0);
    job->init_pid = -1;
    return ::testing::AssertionFailure()
           << "job setup step " << r.step << " failed: " << strerror(r.err);
  }
  if (job->pidfd < 0) return ::testing::AssertionFailure() << "pidfd_open: " << strerror(errno);
  return ::testing::AssertionSuccess();
}

// Waits for the init to exit (its pidfd), then collects what the supervisor would.
::testing::AssertionResult finishJob(RunningJob* job, Finished* f, int timeout_ms = 20000) {
  pollfd pfd{job->pidfd, POLLIN, 0};
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
  auto st = readJobStatus(job->status_fd);
  if (!st) return ::testing::AssertionFailure() << st.error().message;
  f->reported = *st;
  f->output = readAll(job->out_fd);  // every writer is gone once the init has exited
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
  return run(o, Command{std::move(argv), {}});
}

Finished run(const JobOptions& o, std::function<int()> fn) {
  return run(o, Command{{}, std::move(fn)});
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
  EXPECT_TRUE(plan->mount_proc);

  spec.net = false;
  spec.pid = false;
  EXPECT_EQ(cloneFlags(spec), CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC);
  EXPECT_FALSE(planContainment(spec)->mount_proc);  // /proc of the host's PID namespace stays

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

TEST(Isolation, ProcListsOnlyJobProcesses) {
  Finished f = run(defaults(), [] {
    int count = 0;
    for (const auto& e : std::filesystem::directory_iterator("/proc")) {
      std::string n = e.path().filename();
      if (std::all_of(n.begin(), n.end(), ::isdigit)) count++;
    }
    std::printf("self=%d parent=%d count=%d\n", getpid(), getppid(), count);
    return 0;
  });
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
    ASSERT_TRUE(startJob(defaults(), Command{{"sleep", "60"}, {}}, &job));
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
    ASSERT_EQ(syscall(SYS_pidfd_send_signal, job.pidfd, sig, nullptr, 0), 0) << strerror(errno);
    Finished f;
    ASSERT_TRUE(finishJob(&job, &f, 10000));
    expectKilledBy(f, sig);
  }
}

TEST(Isolation, ASignalBeforeTheCommandStartsIsNotLost) {
  // The stop arrives while the init is still setting up: it is queued, then forwarded.
  RunningJob job;
  ASSERT_TRUE(startJob(defaults(), Command{{"sleep", "60"}, {}}, &job));
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

TEST(Isolation, ACommandThatMakesTheInitItsTracerStillReportsItsExit) {
  // Without the profile a job may PTRACE_TRACEME: the init then sees ptrace stops, which are
  // not the command's end; it lets the tracee go.
  JobOptions o = defaults();
  o.spec.seccomp = false;
  Finished f = run(o, [] {
    if (ptrace(PTRACE_TRACEME, 0, nullptr, nullptr) != 0) return 90;
    char sh[] = "/bin/sh", c[] = "-c", script[] = "kill -USR1 $$ 2>/dev/null; exit 6";
    char* argv[] = {sh, c, script, nullptr};
    execv(sh, argv);
    return 91;
  });
  // The SIGUSR1 is delivered as without a tracer: the shell dies of it.
  expectKilledBy(f, SIGUSR1);
  Finished g = run(o, [] {
    if (ptrace(PTRACE_TRACEME, 0, nullptr, nullptr) != 0) return 90;
    char sh[] = "/bin/sh", c[] = "-c", script[] = "exit 6";
    char* argv[] = {sh, c, script, nullptr};
    execv(sh, argv);
    return 91;
  });
  expectExited(g, 6);  // the exec's SIGTRAP did not kill it
}

TEST(Isolation, WhenTheCommandExitsEverythingLeftIsKilled) {
  RunningJob job;
  ASSERT_TRUE(
      startJob(defaults(), Command{{"sh", "-c", "sleep 1000 & sleep 1000 & exit 5"}, {}}, &job));
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
  ASSERT_TRUE(startJob(defaults(), Command{{"sh", "-c", script}, {}}, &job));
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
  ASSERT_EQ(syscall(SYS_pidfd_send_signal, job.pidfd, SIGTERM, nullptr, 0), 0);
  pollfd pfd{job.pidfd, POLLIN, 0};
  EXPECT_EQ(poll(&pfd, 1, 500), 0) << "the job ended on an ignored SIGTERM";
  EXPECT_EQ(processesInPidNs(ns).size(), 4u);

  // The grace period is over: SIGKILL to the init ends the whole namespace.
  ASSERT_EQ(syscall(SYS_pidfd_send_signal, job.pidfd, SIGKILL, nullptr, 0), 0);
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

TEST(Isolation, TheJobDiesWithTheSupervisor) {
  // A stand-in supervisor starts the job and is killed; PR_SET_PDEATHSIG takes the init (and so
  // the namespace) with it. This process becomes the subreaper, so it can reap the init.
  ASSERT_EQ(prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0), 0);
  int ns_pipe[2];
  ASSERT_EQ(pipe2(ns_pipe, O_CLOEXEC), 0);
  pid_t fake = fork();
  ASSERT_GE(fake, 0);
  if (fake == 0) {
    RunningJob job;
    if (!startJob(defaults(), Command{{"sleep", "1000"}, {}}, &job)) _exit(1);
    std::string line = std::to_string(job.init_pid) + " " + nsOf(job.init_pid, "pid");
    if (write(ns_pipe[1], line.data(), line.size()) < 0) _exit(1);
    pause();
    _exit(0);
  }
  close(ns_pipe[1]);
  char buf[256] = {};
  ASSERT_GT(read(ns_pipe[0], buf, sizeof buf - 1), 0);
  close(ns_pipe[0]);
  std::istringstream in(buf);
  pid_t init_pid;
  std::string ns;
  in >> init_pid >> ns;
  ASSERT_EQ(processesInPidNs(ns).size(), 2u);
  kill(fake, SIGKILL);
  waitpid(fake, nullptr, 0);
  int st = 0;
  EXPECT_EQ(waitpid(init_pid, &st, 0), init_pid);  // reparented to us, the subreaper
  EXPECT_TRUE(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
  EXPECT_TRUE(processesInPidNs(ns).empty());
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

TEST(Isolation, TheHostsLoopbackIsUnreachable) {
  uint16_t port = 0;
  int listener = listenOnLoopback(&port);
  ASSERT_GE(listener, 0) << strerror(errno);
  ASSERT_EQ(connectLoopback(port), 0);  // reachable from the host
  auto probe = [port] {
    std::printf("connect=%s\n", strerror(connectLoopback(port)));
    // The job's own loopback works: listen and connect inside.
    uint16_t own = 0;
    int l = listenOnLoopback(&own);
    std::printf("own=%s\n", l < 0 ? "listen failed" : strerror(connectLoopback(own)));
    return 0;
  };
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
  ASSERT_TRUE(startJob(defaults(), Command{{"sleep", "60"}, {}}, &job));
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

TEST(Isolation, NonRootJobCannotTouchTheInit) {
  JobOptions o = defaults();
  o.uid = kNobody;
  o.spec.seccomp = false;  // the uid alone must protect the root init
  Finished f = run(o, [] {
    int fd = open("/proc/1/mem", O_RDONLY);
    std::printf("mem=%s kill=%s\n", fd < 0 ? strerror(errno) : "opened",
                kill(1, SIGKILL) == 0 ? "sent" : strerror(errno));
    return 0;
  });
  expectExited(f, 0);
  // The init stays root: its memory (a copy of the supervisor's) and its life are out of reach.
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

TEST(Isolation, BlockedSyscallsGetEperm) {
  auto probe = [] {
    std::printf("keyctl=%d ", keyctlErrno());
    std::printf("ptrace=%d ", ptrace(PTRACE_TRACEME, 0, nullptr, nullptr) == 0 ? 0 : errno);
    std::printf("bpf=%d ", syscall(SYS_bpf, 0, nullptr, 0) == 0 ? 0 : errno);
    std::printf("reboot=%d ", syscall(SYS_reboot, 0, 0, 0, nullptr) == 0 ? 0 : errno);
    std::printf("mount=%d ", mount("none", "/mnt", "tmpfs", 0, nullptr) == 0 ? 0 : errno);
    std::printf("unshare_user=%d ", unshare(CLONE_NEWUSER) == 0 ? 0 : errno);
    std::printf("clone3=%d\n", syscall(SYS_clone3, nullptr, 0) == 0 ? 0 : errno);
    return 0;
  };
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

TEST(Isolation, UnshareOfAUserNamespaceFailsForAProgram) {
  if (!hasProgram("/usr/bin/unshare")) GTEST_SKIP() << "no unshare(1)";
  Finished f = run(defaults(), {"unshare", "-U", "true"});
  expectExited(f, 1);
  EXPECT_NE(f.output.find("Operation not permitted"), std::string::npos) << f.output;
  // The rule looks at the flag only: other clones (fork) work.
  expectExited(run(defaults(), {"sh", "-c", "sh -c 'exit 4'; exit $?"}), 4);
}

#if defined(__x86_64__)
TEST(Isolation, ForeignAbisAreKilled) {
  // x32: the x86_64 entry with bit 30 set. Without the profile: ENOSYS or a result.
  expectKilledBy(run(defaults(), [] { return static_cast<int>(syscall(0x40000000 | SYS_getpid)); }),
                 SIGSYS);
  // i386 via int 0x80 (getpid is 20 there).
  auto int80 = [] {
    long ret = 20;
    asm volatile("int $0x80" : "+a"(ret) : : "r8", "r9", "r10", "r11", "memory");
    return ret > 0 ? 0 : 1;
  };
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
  ASSERT_TRUE(startJob(o, Command{{"sleep", "60"}, {}}, &job));
  std::ifstream cg("/proc/" + std::to_string(job.init_pid) + "/cgroup");
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

}  // namespace
}  // namespace jw::supervisor
