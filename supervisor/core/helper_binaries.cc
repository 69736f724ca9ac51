// Where jobworkerd finds the programs it execs: a build tree's sibling folders first, then the
// installed paths meson configured. Runs in jobworkerd at startup.
#include "supervisor/core/helper_binaries.h"

#include <unistd.h>

#include <initializer_list>
#include <string>

#include "jw_build_config.h"

namespace jw::supervisor {
namespace {

// The first of <dir of /proc/self/exe>/<relative...> that is executable, else `installed`.
std::string nextToSelf(std::initializer_list<const char*> relative, const std::string& installed) {
  char self[4096];
  ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  if (n <= 0) return installed;
  std::string exe(self, static_cast<size_t>(n));
  std::string dir = exe.substr(0, exe.rfind('/'));
  for (const char* r : relative) {
    std::string candidate = dir + "/" + r;
    if (access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return installed;
}

}  // namespace

std::string resolveFrontendPath(const std::string& flag) {
  if (!flag.empty()) return flag;
  return nextToSelf({"../frontend/jobworker-frontend"}, JW_FRONTEND_PATH);
}

std::string resolveVerifierPath() {
  return nextToSelf({"verifier/jobworker-verifier"}, JW_VERIFIER_PATH);
}

std::string resolveInitPath() { return nextToSelf({"init/jobworker-init"}, JW_INIT_PATH); }

std::string resolveSpawnerPath() {
  return nextToSelf({"spawner/jobworker-spawner"}, JW_SPAWNER_PATH);
}

// Installed, jobworker-admin sits in the same sbin directory as jobworkerd.
std::string resolveAdminPath() {
  return nextToSelf({"../tools/jobworker-admin", "jobworker-admin"}, JW_ADMIN_PATH);
}

}  // namespace jw::supervisor
