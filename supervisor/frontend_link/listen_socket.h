// The frontend's listening socket: taken from systemd socket activation (LISTEN_FDS) or bound by
// jobworkerd itself, never with SO_REUSEPORT (a second daemon must fail, not share the port).
// Runs in jobworkerd.
#pragma once

#include <string>

#include "common/fd.h"
#include "common/result.h"

namespace jw::supervisor {

// "127.0.0.1:8443", "[::1]:8443", "localhost:8443". Returns a listening, close-on-exec TCP fd.
// LISTEN_PID/LISTEN_FDS (fd 3) win over `listen` when they name this process.
Result<UniqueFd> openListenSocket(const std::string& listen);

// The local port a bound socket listens on (useful with port 0, where the kernel picks one).
Result<int> boundPort(int fd);

struct ListenAddress {
  std::string host;  // numeric, as given ("127.0.0.1", "::1"); "localhost" maps to 127.0.0.1
  int port = 0;
};
// Parses "HOST:PORT" / "[V6]:PORT"; errors say what is wrong with the string.
Result<ListenAddress> parseListenAddress(const std::string& listen);

}  // namespace jw::supervisor
