// The frontend's listening socket: taken from systemd socket activation (LISTEN_FDS) or bound by
// jobworkerd itself, never with SO_REUSEPORT (a second daemon must fail, not share the port).
// Runs in jobworkerd.
#pragma once

#include <string>

#include "result.h"

namespace jw::supervisor {

// "127.0.0.1:8443", "[::1]:8443", "localhost:8443". Returns a listening, close-on-exec TCP fd.
// LISTEN_PID/LISTEN_FDS (fd 3) win over `listen` when they name this process.
Result<int> openListenSocket(const std::string& listen);

}  // namespace jw::supervisor
