// Entry point of `jobworker`, the CLI (runs as the invoking user on the client machine).
#include <signal.h>

#include <cstdio>
#include <cstdlib>
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
    int code = jw::client::runCli(args);
    // Every command has closed its connections (close_notify sent) and stored its files by now;
    // what exit() would still do is tear down OpenSSL's and Poco's global tables, about 1 ms of
    // a `run` measured with perf (OPENSSL_cleanup walking its provider hash tables). Nothing of
    // it is visible outside the process, so the output is flushed and the process ends here.
    std::fflush(nullptr);
    std::_Exit(code);
  } catch (const std::exception& e) {
    // Nothing should get here; if something does, it is still one line, never a trace.
    std::fprintf(stderr, "jobworker: internal error (%s): please report it\n", e.what());
  } catch (...) {
    std::fprintf(stderr, "jobworker: internal error: please report it\n");
  }
  bool run = !args.empty() && args[0] == "run";
  return run ? 125 : 1;
}
