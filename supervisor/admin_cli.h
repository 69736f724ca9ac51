// `jobworkerd user add|del|passwd`: edits the users file without an editor. Runs as a short-lived
// jobworkerd invocation (no daemon involved; SIGHUP the daemon to apply).
#pragma once

namespace jw::supervisor {

// argv[0] is "user". Returns the process exit status (0 ok, 1 failure, 2 usage error).
int runUserCommand(int argc, char** argv);

}  // namespace jw::supervisor
