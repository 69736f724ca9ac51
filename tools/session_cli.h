// `jobworker-admin session list|revoke`, `token create|revoke` and `upgrade`: talk to jobworkerd
// over its root-only control socket. Runs in jobworker-admin, as root.
#pragma once

#include <string>

namespace jw::admin {

// Where jobworkerd reads its configuration under systemd; consulted for control_socket and
// state_dir when neither --control nor --config is given and the file exists.
inline constexpr const char* kDefaultConfigFile = "/etc/jobworker/jobworkerd.conf";

// argv[0] is "session". Returns the process exit status (0 ok, 1 failure, 2 usage error).
int runSessionCommand(int argc, char** argv);
// argv[0] is "token": `token create USER --expires D` and `token revoke ID` (scrape tokens).
int runTokenCommand(int argc, char** argv);
// argv[0] is "upgrade": `upgrade [--binary PATH]`, jobworkerd's upgrade in place.
int runUpgradeCommand(int argc, char** argv);

}  // namespace jw::admin
