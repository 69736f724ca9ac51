// Dev mode (`jobworkerd --dev`): runs jobworker-admin for the CA, certificate and first user,
// and warns when the daemon is not root. Runs in jobworkerd at startup, before the event loop.
#include "supervisor/core/dev_mode.h"

#include <spawn.h>
#include <sys/wait.h>

#include <cerrno>
#include <cstring>

#include "common/log.h"

extern char** environ;

namespace jw::supervisor {

Result<DevFiles> runDevBootstrap(const std::string& admin_path, const std::string& state_dir) {
  std::string command = "dev-bootstrap", flag = "--state-dir", dir = state_dir;
  char* argv[] = {const_cast<char*>(admin_path.c_str()), command.data(), flag.data(), dir.data(),
                  nullptr};
  pid_t pid = -1;
  if (int e = posix_spawn(&pid, admin_path.c_str(), nullptr, nullptr, argv, environ); e != 0) {
    return Error{"cannot run " + admin_path + ": " + std::strerror(e)};
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) return sysError("wait for " + admin_path);
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    return Error{admin_path + " dev-bootstrap failed (" +
                 (WIFEXITED(status) ? "exit " + std::to_string(WEXITSTATUS(status))
                                    : "signal " + std::to_string(WTERMSIG(status))) +
                 "; its message is above)"};
  }
  return devFilesIn(state_dir);
}

void warnUnprotectedDevMode(const Account& self) {
  log::warning("*** DEV MODE WITHOUT ROOT: the protections of a production jobworkerd are OFF ***");
  log::warning("*   the frontend keeps your uid (no change to the `jobworker` account)");
  log::warning("*   every job runs as you (" + self.name +
               "), whatever run_as the users file says");
  log::warning(
      "*   no cgroups (no cpu/memory/pids/io limits; a stop cannot catch escaped processes)");
  log::warning("*   no namespaces (jobs see your files, network and processes)");
  log::warning("*** use it to try jobworker out, never to serve other people ***");
}

}  // namespace jw::supervisor
