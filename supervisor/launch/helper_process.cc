// fork + exec of jobworkerd's helper programs (see helper_process.h); runs in jobworkerd, and
// execHelper() in the forked child up to its execve.
#include "supervisor/launch/helper_process.h"

#include <fcntl.h>
#include <linux/close_range.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

extern char** environ;

namespace jw::supervisor {

namespace {

constexpr int kFirstHelperFd = 3;
constexpr size_t kMaxHelperFds = 8;

std::vector<char*> cStrings(std::vector<std::string>& v) {
  std::vector<char*> out;
  for (auto& s : v) out.push_back(s.data());
  out.push_back(nullptr);
  return out;
}

// Between fork and execve: async-signal-safe calls only; a failure reports errno and exits 127.
[[noreturn]] void execHelper(pid_t parent, const int* fds, size_t nfds, int report_w,
                             char* const* argv, char* const* envp) {
  auto fail = [report_w](int err) {
    ssize_t n = write(report_w, &err, sizeof err);
    (void)n;
    _exit(127);
  };
  for (int sig = 1; sig < NSIG; sig++) {
    if (sig == SIGKILL || sig == SIGSTOP) continue;
    struct sigaction sa {};
    sa.sa_handler = SIG_DFL;
    sigaction(sig, &sa, nullptr);
  }
  sigset_t none;
  sigemptyset(&none);
  if (sigprocmask(SIG_SETMASK, &none, nullptr) != 0) fail(errno);
  // A helper must not outlive the supervisor it serves.
  if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) != 0) fail(errno);
  if (getppid() != parent) _exit(1);
  // Move every fd above the targets first so the dup2s below cannot clobber each other.
  int moved[kMaxHelperFds];
  for (size_t i = 0; i < nfds; i++) {
    moved[i] = fcntl(fds[i], F_DUPFD_CLOEXEC, 16);
    if (moved[i] < 0) fail(errno);
  }
  for (size_t i = 0; i < nfds; i++) {
    if (dup2(moved[i], kFirstHelperFd + static_cast<int>(i)) < 0) fail(errno);
  }
  auto first_closed = static_cast<unsigned>(kFirstHelperFd + nfds);
  if (syscall(SYS_close_range, first_closed, ~0U, CLOSE_RANGE_CLOEXEC) != 0) fail(errno);
  execve(argv[0], argv, envp);
  fail(errno);
  _exit(127);
}

}  // namespace

Result<HelperChild> spawnHelper(const HelperSpec& spec) {
  if (spec.fds.size() > kMaxHelperFds) return Error{"too many descriptors for a helper"};
  auto report = makePipe(O_CLOEXEC, "pipe2 (exec report of " + spec.path + ")");
  if (!report) return report.error();
  std::vector<std::string> argv_s = {spec.path};
  argv_s.insert(argv_s.end(), spec.args.begin(), spec.args.end());
  std::vector<std::string> env_s = spec.env;
  std::vector<char*> argv = cStrings(argv_s);
  std::vector<char*> envp = cStrings(env_s);
  pid_t parent = getpid();

  pid_t pid = fork();
  if (pid == 0) {
    execHelper(parent, spec.fds.data(), spec.fds.size(), report->write.get(), argv.data(),
               envp.data());
  }
  int fork_errno = errno;
  report->write.reset();
  if (pid < 0) return sysError("fork (" + spec.path + ")", fork_errno);
  // Opened before anything can reap it: the pid cannot be reused while it is our unwaited child.
  UniqueFd pidfd(static_cast<int>(syscall(SYS_pidfd_open, pid, 0)));
  int pidfd_errno = errno;
  int child_errno = 0;
  ssize_t n;
  do {
    n = read(report->read.get(), &child_errno, sizeof child_errno);
  } while (n < 0 && errno == EINTR);
  report->read.reset();
  if (!pidfd || n == sizeof child_errno) {
    if (!pidfd) kill(pid, SIGKILL);
    while (waitpid(pid, nullptr, 0) < 0 && errno == EINTR) {
    }
    if (!pidfd) return sysError("pidfd_open(" + spec.path + ")", pidfd_errno);
    return sysError("execute " + spec.path, child_errno);
  }
  return HelperChild{pid, std::move(pidfd)};
}

std::vector<std::string> sanitizerEnvironment() {
  std::vector<std::string> env;
  for (char** e = environ; *e != nullptr; e++) {
    std::string_view kv(*e);
    for (std::string_view keep : {"ASAN_OPTIONS=", "UBSAN_OPTIONS=", "LSAN_OPTIONS="}) {
      if (kv.substr(0, keep.size()) == keep) env.emplace_back(kv);
    }
  }
  return env;
}

}  // namespace jw::supervisor
