// Where jobworkerd finds the programs it execs: the frontend, the password verifier, the job shim,
// its spawner and the admin tool. Runs in jobworkerd at startup.
#pragma once

#include <string>

namespace jw::supervisor {

// `flag` (--frontend) when given, else <dir of /proc/self/exe>/../frontend/jobworker-frontend when
// it exists (a build tree), else the installed libexec path.
std::string resolveFrontendPath(const std::string& flag);
// <dir of /proc/self/exe>/verifier/jobworker-verifier in a build tree (jobworkerd is
// build/supervisor/jobworkerd), else the installed libexec path.
std::string resolveVerifierPath();
// <dir of /proc/self/exe>/init/jobworker-init in a build tree, else the installed libexec path.
std::string resolveInitPath();
// <dir of /proc/self/exe>/spawner/jobworker-spawner in a build tree, else the installed path.
std::string resolveSpawnerPath();
// <dir of /proc/self/exe>/../tools/jobworker-admin in a build tree, else jobworker-admin next to
// jobworkerd, else the installed sbin path.
std::string resolveAdminPath();

}  // namespace jw::supervisor
