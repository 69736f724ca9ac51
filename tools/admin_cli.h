// `jobworker-admin user add|del|passwd|list`: edits the users file without an editor. Runs in
// jobworker-admin, as root (no daemon involved; SIGHUP the daemon to apply).
#pragma once

namespace jw::admin {

// argv[0] is "user". Returns the process exit status (0 ok, 1 failure, 2 usage error).
int runUserCommand(int argc, char** argv);

}  // namespace jw::admin
