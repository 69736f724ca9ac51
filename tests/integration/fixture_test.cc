// Integration test of the test fixture itself: a test process that dies takes its daemon with
// it (PR_SET_PDEATHSIG in spawnLogged), so an aborted run leaks no jobworkerd. Runs in the
// integration test process (root) and, for its child half, in a second copy of it.
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>

#include "tests/integration/daemon.h"

namespace jw::test {
namespace {

constexpr const char* kPidFileVar = "JW_FIXTURE_PID_FILE";

// The child half: starts a fixture daemon, says where it is, and waits to be SIGKILLed.
TEST(FixtureChild, StartsADaemonAndWaitsToBeKilled) {
  const char* pid_file = std::getenv(kPidFileVar);
  if (pid_file == nullptr) GTEST_SKIP() << "the child half of Fixture.DaemonDiesWithItsTestProcess";
  auto d = Daemon::start();
  std::string tmp = std::string(pid_file) + ".tmp";
  std::ofstream(tmp) << d->pid() << " " << d->frontendPid() << " " << d->stateDir() << "\n";
  ASSERT_EQ(std::rename(tmp.c_str(), pid_file), 0);  // whole, or not there at all
  waitUntil([] { return false; }, std::chrono::minutes(5));
  ADD_FAILURE() << "the parent test never killed this process";
}

// An fd that becomes readable when `pid` exits (any process, not only a child), or -1.
int pidfdOf(pid_t pid) { return static_cast<int>(syscall(SYS_pidfd_open, pid, 0)); }

bool exitsWithin(int pidfd, std::chrono::milliseconds timeout) {
  pollfd p{pidfd, POLLIN, 0};
  return poll(&p, 1, static_cast<int>(timeout.count())) == 1;
}

TEST(Fixture, DaemonDiesWithItsTestProcess) {
  char self[4096];
  ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  ASSERT_GT(n, 0);
  self[n] = '\0';
  std::string dir = makeTempDir("jwfixture");
  std::string pid_file = dir + "/pids";
  pid_t child = spawnLogged({self, "--gtest_filter=FixtureChild.*"},
                            {std::string(kPidFileVar) + "=" + pid_file}, dir + "/child.log");
  ASSERT_GT(child, 0);
  bool started = waitUntil([&] { return !readFile(pid_file).empty(); }, std::chrono::seconds(60));
  if (!started) kill(child, SIGKILL);
  ASSERT_TRUE(started) << readFile(dir + "/child.log");
  pid_t daemon = -1, frontend = -1;
  std::string state_dir;
  std::istringstream(readFile(pid_file)) >> daemon >> frontend >> state_dir;
  ASSERT_GT(daemon, 0);
  ASSERT_GT(frontend, 0);
  int daemon_fd = pidfdOf(daemon), frontend_fd = pidfdOf(frontend);
  ASSERT_GE(daemon_fd, 0) << std::strerror(errno);
  ASSERT_GE(frontend_fd, 0) << std::strerror(errno);
  ASSERT_FALSE(exitsWithin(daemon_fd, std::chrono::milliseconds(0)));

  // The test process dies the way an aborted run does: no destructor, no TearDown.
  auto t0 = std::chrono::steady_clock::now();
  ASSERT_EQ(kill(child, SIGKILL), 0);
  ASSERT_EQ(waitpid(child, nullptr, 0), child);
  bool daemon_gone = exitsWithin(daemon_fd, std::chrono::seconds(30));
  if (!daemon_gone) kill(daemon, SIGKILL);  // leak nothing even when the test fails
  EXPECT_TRUE(daemon_gone) << "jobworkerd outlived its test process";
  EXPECT_TRUE(exitsWithin(frontend_fd, std::chrono::seconds(10))) << "and so did its frontend";
  std::printf(
      "fixture daemon gone %.0f ms after its test process was SIGKILLed\n",
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  // It shut down cleanly (the SIGTERM), as its log says.
  std::string log = readFile(state_dir + ".log");
  EXPECT_NE(log.find("shutting down: stopping every running job"), std::string::npos) << log;
  close(daemon_fd);
  close(frontend_fd);
  removeTree(state_dir);
  std::remove((state_dir + ".log").c_str());
  removeTree(dir);
}

}  // namespace
}  // namespace jw::test
