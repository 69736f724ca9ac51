// Job process creation (see spawn.h); runs in jobworkerd, and the child steps in the job process
// between fork and execve, where only async-signal-safe calls are allowed.
#include "supervisor/launch/spawn.h"

#include <fcntl.h>
#include <grp.h>
#include <linux/close_range.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>

#include "common/fd.h"
#include "common/io.h"
#include "supervisor/launch/credentials.h"
#include "supervisor/launch/job_init.h"

namespace jw::supervisor {

namespace {

// The child's steps, in the order it runs them (runChild). With a PID namespace the steps up to
// kForkCommand run in the job init, the rest in the command process it forks.
enum class ChildStep : int32_t {
  kSignals = 1,  // without an init
  kBecomeInit,   // with an init, instead of kSignals
  kRelease,
  kContainment,  // mounts, lo, hostname; the report's detail says which (ContainmentStep)
  kForkCommand,  // with an init
  kProcessGroup,
  kStdio,
  kResourceLimits,
  kBoundingSet,  // non-root jobs
  kCredentials,
  kCapabilities,  // non-root jobs
  kNoNewPrivs,
  kWorkingDir,
  kCloseFds,
  kSeccomp,
  kExec,
};

const char* stepName(ChildStep s) {
  switch (s) {
    case ChildStep::kSignals:
      return "reset signals";
    case ChildStep::kBecomeInit:
      return "become the job init";
    case ChildStep::kRelease:
      return "wait for cgroup placement";
    case ChildStep::kContainment:
      return "containment";
    case ChildStep::kForkCommand:
      return "fork the command from the job init";
    case ChildStep::kProcessGroup:
      return "setpgid";
    case ChildStep::kStdio:
      return "redirect stdio";
    case ChildStep::kResourceLimits:
      return "set resource limits";
    case ChildStep::kBoundingSet:
      return "drop the capability bounding set";
    case ChildStep::kCredentials:
      return "change credentials";
    case ChildStep::kCapabilities:
      return "clear capabilities";
    case ChildStep::kNoNewPrivs:
      return "PR_SET_NO_NEW_PRIVS";
    case ChildStep::kWorkingDir:
      return "chdir";
    case ChildStep::kCloseFds:
      return "close file descriptors";
    case ChildStep::kSeccomp:
      return "install the job seccomp profile";
    case ChildStep::kExec:
      return "execve";
  }
  return "unknown step";
}

struct ChildReport {
  int32_t step;
  int32_t err;
  int32_t detail;  // kContainment: the ContainmentStep that failed
};

// Everything the child needs, built before fork: the child only reads it.
struct ChildPlan {
  std::vector<std::string> candidates;
  std::vector<char*> argv;
  std::vector<char*> envp;
  const char* cwd = nullptr;   // explicit cwd (failure is fatal)
  const char* home = nullptr;  // default cwd (falls back to "/")
  bool change_credentials = false;
  uid_t uid = 0;
  gid_t gid = 0;
  const gid_t* groups = nullptr;
  size_t ngroups = 0;
  bool core_dumps = false;
  rlimit nofile{0, 0};  // rlim_cur 0: keep the supervisor's
  int devnull = -1;
  int out_w = -1;
  int err_w = -1;  // -1: stderr goes to out_w
  int release_r = -1;
  int report_w = -1;
  int max_fd = 1024;  // for the close-on-exec fallback loop
  ContainmentPlan containment;
  bool with_init = false;  // PID namespace: the first process is the job init
  int status_w = -1;       // with_init: the init reports the command's wait status here
  sock_fprog seccomp{};
  bool use_seccomp = false;
  int last_cap = 0;
};

[[noreturn]] void childFail(const ChildPlan& p, ChildStep step, int err, int32_t detail = 0) {
  ChildReport r{static_cast<int32_t>(step), err, detail};
  ssize_t n = write(p.report_w, &r, sizeof r);
  (void)n;
  _exit(127);
}

// --- child steps: async-signal-safe only ------------------------------------------------------

int resetSignals() {
  // The supervisor blocks its signalfd signals and ignores SIGPIPE; neither may leak into a job
  // (ignored dispositions survive execve).
  for (int sig = 1; sig < NSIG; sig++) {
    if (sig == SIGKILL || sig == SIGSTOP) continue;
    struct sigaction sa {};
    sa.sa_handler = SIG_DFL;
    sigaction(sig, &sa, nullptr);  // EINVAL for the glibc-reserved RT signals is fine
  }
  sigset_t none;
  sigemptyset(&none);
  return sigprocmask(SIG_SETMASK, &none, nullptr) == 0 ? 0 : errno;
}

int waitForRelease(const ChildPlan& p) {
  char c;
  for (;;) {
    ssize_t n = read(p.release_r, &c, 1);
    if (n == 1) return 0;
    if (n < 0 && errno == EINTR) continue;
    return n == 0 ? ECANCELED : errno;  // the parent gave up on us
  }
}

int newProcessGroup() { return setpgid(0, 0) == 0 ? 0 : errno; }

int redirectStdio(const ChildPlan& p) {
  if (dup2(p.devnull, STDIN_FILENO) < 0) return errno;
  if (dup2(p.out_w, STDOUT_FILENO) < 0) return errno;
  if (dup2(p.err_w >= 0 ? p.err_w : p.out_w, STDERR_FILENO) < 0) return errno;
  return 0;
}

int setResourceLimits(const ChildPlan& p) {
  umask(022);
  if (!p.core_dumps) {
    rlimit none{0, 0};
    if (setrlimit(RLIMIT_CORE, &none) != 0) return errno;
  }
  if (p.nofile.rlim_cur != 0 && setrlimit(RLIMIT_NOFILE, &p.nofile) != 0) return errno;
  return 0;
}

int changeCredentials(const ChildPlan& p) {
  if (!p.change_credentials) return 0;
  if (setgroups(p.ngroups, p.groups) != 0) return errno;
  if (setresgid(p.gid, p.gid, p.gid) != 0) return errno;
  if (setresuid(p.uid, p.uid, p.uid) != 0) return errno;
  // Fail closed if root could be regained.
  if (p.uid != 0 && setresuid(0, 0, 0) == 0) return EPERM;
  return 0;
}

int noNewPrivs() { return prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0 ? 0 : errno; }

int enterWorkingDir(const ChildPlan& p) {
  // After the credential change, so the job cannot start inside a directory it may not enter.
  if (p.cwd != nullptr) return chdir(p.cwd) == 0 ? 0 : errno;
  if (p.home != nullptr && chdir(p.home) == 0) return 0;
  return chdir("/") == 0 ? 0 : errno;
}

int closeFds(const ChildPlan& p) {
  // Close-on-exec rather than close: the report pipe must stay usable until execve succeeds.
  if (syscall(SYS_close_range, 3U, ~0U, CLOSE_RANGE_CLOEXEC) == 0) return 0;
  for (int fd = 3; fd < p.max_fd; fd++) fcntl(fd, F_SETFD, FD_CLOEXEC);
  return 0;
}

int execProgram(const ChildPlan& p) {
  int result = ENOENT;
  bool saw_eacces = false;
  for (const auto& c : p.candidates) {
    execve(c.c_str(), p.argv.data(), p.envp.data());
    result = errno;
    if (result == EACCES) {
      saw_eacces = true;
    } else if (result != ENOENT && result != ENOTDIR && result != ESTALE) {
      return result;  // e.g. ENOEXEC, E2BIG: the program was found, say why it did not run
    }
  }
  return saw_eacces ? EACCES : result;
}

bool dropsCapabilities(const ChildPlan& p) { return p.change_credentials && p.uid != 0; }

// The whole containment order, top to bottom. The first process (the clone child) runs it from
// the start; with a PID namespace it becomes the job init and forks the command after the
// containment steps, and the command continues from the process group on. Any failed step is
// reported and ends the process: the supervisor then kills the whole job.
[[noreturn]] void runChild(const ChildPlan& p) {
  int err;
  if (p.with_init) {
    // Instead of resetSignals: keeps TERM/INT/HUP/CHLD blocked, so a stop sent before the init
    // loop runs is queued rather than dropped (PID 1 ignores default-disposition signals).
    if ((err = becomeJobInit()) != 0) childFail(p, ChildStep::kBecomeInit, err);
  } else if ((err = resetSignals()) != 0) {
    childFail(p, ChildStep::kSignals, err);
  }
  if ((err = waitForRelease(p)) != 0) childFail(p, ChildStep::kRelease, err);
  ContainmentStep failed = ContainmentStep::kNone;
  if ((err = setupContainment(p.containment, &failed)) != 0) {
    childFail(p, ChildStep::kContainment, err, static_cast<int32_t>(failed));
  }
  if (p.with_init) {
    pid_t command = forkJobCommand();
    if (command < 0) childFail(p, ChildStep::kForkCommand, errno);
    // The init closes its copy of the report pipe and every other fd, and never returns.
    if (command > 0) runJobInit(command, p.status_w);
    // The command (PID 2): empty signal mask, default dispositions.
  }
  if ((err = newProcessGroup()) != 0) childFail(p, ChildStep::kProcessGroup, err);
  if ((err = redirectStdio(p)) != 0) childFail(p, ChildStep::kStdio, err);
  if ((err = setResourceLimits(p)) != 0) childFail(p, ChildStep::kResourceLimits, err);
  // While still root: PR_CAPBSET_DROP needs CAP_SETPCAP.
  if (dropsCapabilities(p) && (err = dropBoundingSet(p.last_cap)) != 0) {
    childFail(p, ChildStep::kBoundingSet, err);
  }
  if ((err = changeCredentials(p)) != 0) childFail(p, ChildStep::kCredentials, err);
  if (dropsCapabilities(p) && (err = clearCapabilities()) != 0) {
    childFail(p, ChildStep::kCapabilities, err);
  }
  if ((err = noNewPrivs()) != 0) childFail(p, ChildStep::kNoNewPrivs, err);
  if ((err = enterWorkingDir(p)) != 0) childFail(p, ChildStep::kWorkingDir, err);
  if ((err = closeFds(p)) != 0) childFail(p, ChildStep::kCloseFds, err);
  // Last before execve: the filter then also covers nothing of ours.
  if (p.use_seccomp && (err = installSeccomp(p.seccomp)) != 0) {
    childFail(p, ChildStep::kSeccomp, err);
  }
  childFail(p, ChildStep::kExec, execProgram(p));
}

// --- parent side ------------------------------------------------------------------------------

std::vector<char*> cStrings(const std::vector<std::string>& v) {
  std::vector<char*> out;
  out.reserve(v.size() + 1);
  for (const auto& s : v) out.push_back(const_cast<char*>(s.c_str()));
  out.push_back(nullptr);
  return out;
}

void killAndReap(pid_t pid) {
  kill(pid, SIGKILL);
  while (waitpid(pid, nullptr, 0) < 0 && errno == EINTR) {
  }
}

// Reads the child's report: 0 bytes (EOF at execve) means the program runs.
Result<bool> readReport(int fd, ChildReport* r) {
  auto got = readExact(fd, r, sizeof *r, "job report pipe");
  if (!got) return got.error();
  if (got.value() == 0) return false;
  if (got.value() != sizeof *r) return Error{"short report from job child"};
  return true;
}

}  // namespace

std::vector<std::string> execCandidates(const std::string& argv0, const std::string& path) {
  if (argv0.find('/') != std::string::npos) return {argv0};
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= path.size()) {
    size_t end = path.find(':', start);
    if (end == std::string::npos) end = path.size();
    std::string dir = path.substr(start, end - start);
    if (!dir.empty()) out.push_back(dir.back() == '/' ? dir + argv0 : dir + "/" + argv0);
    start = end + 1;
  }
  return out;
}

namespace {

// The error for a step the child reported, and which kind of failure it is.
Error reportedError(const SpawnRequest& req, const ChildReport& r, SpawnFailure* failure) {
  auto step = static_cast<ChildStep>(r.step);
  if (step == ChildStep::kExec) {
    *failure = SpawnFailure::kExec;
    return Error{"cannot execute " + req.argv[0] + ": " + std::strerror(r.err), r.err};
  }
  if (step == ChildStep::kWorkingDir) {
    *failure = SpawnFailure::kCwd;
    return Error{"working directory " + req.cwd + ": " + std::strerror(r.err), r.err};
  }
  std::string what = stepName(step);
  if (step == ChildStep::kContainment) {
    what += std::string(": ") + containmentStepName(static_cast<ContainmentStep>(r.detail));
  }
  return Error{"job setup step '" + what + "' failed: " + std::strerror(r.err), r.err};
}

// Everything but the pipes: what the child reads, built before the fork.
Result<ChildPlan> buildPlan(const SpawnRequest& req, SpawnFailure* failure) {
  ChildPlan plan;
  plan.candidates = execCandidates(req.argv[0], req.search_path);
  if (plan.candidates.empty()) {
    *failure = SpawnFailure::kExec;
    return Error{"program " + req.argv[0] + " not found: PATH is empty", ENOENT};
  }
  plan.argv = cStrings(req.argv);
  plan.envp = cStrings(req.env);
  plan.cwd = req.cwd.empty() ? nullptr : req.cwd.c_str();
  plan.home = req.home.empty() ? nullptr : req.home.c_str();
  plan.change_credentials = req.change_credentials;
  plan.uid = req.uid;
  plan.gid = req.gid;
  plan.groups = req.groups.data();
  plan.ngroups = req.groups.size();
  plan.core_dumps = req.core_dumps;
  rlimit nofile{};
  if (getrlimit(RLIMIT_NOFILE, &nofile) == 0) {
    plan.max_fd = static_cast<int>(std::min<rlim_t>(nofile.rlim_cur, 65536));
    if (req.nofile_soft != 0)
      plan.nofile = {std::min<rlim_t>(req.nofile_soft, nofile.rlim_max), nofile.rlim_max};
  }
  auto containment = planContainment(req.isolation);
  if (!containment) return containment.error();
  plan.containment = std::move(containment.value());
  plan.with_init = req.isolation.pid;
  if (req.isolation.seccomp) {
    // Asked for but missing would run the job unfiltered: refuse instead.
    if (req.seccomp == nullptr) return Error{"the job seccomp profile is not available"};
    plan.seccomp = req.seccomp->program();
    plan.use_seccomp = true;
  }
  plan.last_cap = req.last_cap;
  return plan;
}

// Every fd of one job start. The child gets its ends through the ChildPlan (borrowed ints); the
// parent closes them right after the fork, and whatever is left closes on any early return.
struct JobPipes {
  UniqueFd devnull;
  Pipe out, err, release, report, status;
};

Result<JobPipes> makeJobPipes(bool separate_stderr, bool with_init) {
  JobPipes p;
  p.devnull.reset(open("/dev/null", O_RDWR | O_CLOEXEC));
  if (!p.devnull) return sysError("open /dev/null");
  for (auto [pipe, wanted] :
       {std::pair{&p.out, true}, std::pair{&p.err, separate_stderr}, std::pair{&p.release, true},
        std::pair{&p.report, true}, std::pair{&p.status, with_init}}) {
    if (!wanted) continue;
    auto made = makePipe(O_CLOEXEC, "pipe2 for a job");
    if (!made) return made.error();
    *pipe = std::move(made.value());
  }
  return p;
}

// In the parent after the fork: its pidfd, the job's cgroup, then the go-ahead through the
// release pipe. Kills the child on failure.
Result<UniqueFd> placeAndRelease(pid_t pid, const SpawnRequest& req, JobPipes& io) {
  // Both sides set the group, so a stop sent right after this returns reaches the whole job.
  // (With an init, the init leads its own group and the command makes another.)
  setpgid(pid, pid);
  UniqueFd pidfd(static_cast<int>(syscall(SYS_pidfd_open, pid, 0)));
  if (!pidfd) {
    Error e = sysError("pidfd_open");
    killAndReap(pid);
    return e;
  }
  if (req.cgroup != nullptr) {
    Status st = req.cgroup->addProcess(pid);
    if (!st) {
      killAndReap(pid);
      return Error{"move the job into its cgroup: " + st.error().message, st.error().sys_errno};
    }
  }
  char go = 1;
  if (write(io.release.write.get(), &go, 1) != 1) {
    // EPIPE: the child already died; its report (or its exit) tells the rest.
  }
  io.release.write.reset();
  return pidfd;
}

// The supervisor's ends of the output and status pipes never block the event loop.
Status makeParentEndsNonBlocking(JobPipes& io) {
  for (const UniqueFd* fd : {&io.out.read, &io.err.read, &io.status.read}) {
    if (!*fd) continue;
    int fl = fcntl(fd->get(), F_GETFL);
    if (fl < 0 || fcntl(fd->get(), F_SETFL, fl | O_NONBLOCK) != 0) {
      return sysError("make job pipe non-blocking");
    }
    // A bigger pipe means fewer wake-ups for chatty jobs; failure only costs speed.
    if (fd != &io.status.read) fcntl(fd->get(), F_SETPIPE_SZ, 1 << 20);
  }
  return okStatus();
}

}  // namespace

Result<SpawnedJob> spawnJob(const SpawnRequest& req, SpawnFailure* failure) {
  *failure = SpawnFailure::kSetup;
  if (req.argv.empty()) return Error{"empty argv"};
  auto planned = buildPlan(req, failure);
  if (!planned) return planned.error();
  ChildPlan& plan = planned.value();
  auto made = makeJobPipes(req.separate_stderr, plan.with_init);
  if (!made) return made.error();
  JobPipes& io = made.value();
  plan.devnull = io.devnull.get();
  plan.out_w = io.out.write.get();
  plan.err_w = io.err.write.get();  // -1 when merged
  plan.release_r = io.release.read.get();
  plan.report_w = io.report.write.get();
  plan.status_w = io.status.write.get();  // -1 without an init

  // With namespaces, clone3 creates the child directly in its v2 cgroup (no moment outside it).
  const int flags = cloneFlags(req.isolation);
  const int cgroup_dir = req.cgroup != nullptr ? req.cgroup->directoryFd() : -1;
  pid_t pid = flags != 0 ? cloneJobProcess(flags, cgroup_dir) : fork();
  if (pid < 0) return sysError(flags != 0 ? "clone the job into its namespaces" : "fork");
  // runChild ends in execve or _exit: no destructor of this frame ever runs in the child.
  if (pid == 0) runChild(plan);

  for (UniqueFd* child_end : {&io.out.write, &io.err.write, &io.release.read, &io.report.write,
                              &io.status.write, &io.devnull}) {
    child_end->reset();
  }
  auto pidfd = placeAndRelease(pid, req, io);
  if (!pidfd) return pidfd.error();

  // EOF: every writer is gone, i.e. the command exec'd (and the init, if any, closed its copy
  // on entering its loop).
  ChildReport r{};
  Result<bool> got = readReport(io.report.read.get(), &r);
  io.report.read.reset();
  if (!got || got.value()) {
    killAndReap(pid);  // with an init: the whole namespace goes with it
    if (!got) return got.error();
    return reportedError(req, r, failure);
  }
  if (Status st = makeParentEndsNonBlocking(io); !st) {
    killAndReap(pid);
    return st.error();
  }
  *failure = SpawnFailure::kNone;
  return SpawnedJob{pid, std::move(pidfd.value()), std::move(io.out.read), std::move(io.err.read),
                    std::move(io.status.read)};
}

}  // namespace jw::supervisor
