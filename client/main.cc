// Entry point of `jobworker`, the CLI (runs as the invoking user on the client machine).
#include <signal.h>

#include <cstdio>
#include <exception>
#include <string>
#include <vector>

#include "client/cli.h"

int main(int argc, char** argv) {
  // A vanished reader must not kill us mid-request: sockets report EPIPE instead, and a closed
  // stdout is handled where output is written.
  signal(SIGPIPE, SIG_IGN);
  std::vector<std::string> args(argv + 1, argv + argc);
  try {
    return jw::client::runCli(args);
  } catch (const std::exception& e) {
    // Nothing should get here; if something does, it is still one line, never a trace.
    std::fprintf(stderr, "jobworker: internal error (%s): please report it\n", e.what());
  } catch (...) {
    std::fprintf(stderr, "jobworker: internal error: please report it\n");
  }
  bool run = !args.empty() && args[0] == "run";
  return run ? 125 : 1;
}
