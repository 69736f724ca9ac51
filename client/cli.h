// The jobworker CLI's commands (CLI process): resolves server, CA file and token (flag > env >
// config file), runs one command, prints results, and returns the exit status.
#pragma once

#include <string>
#include <vector>

#include "client/cli_args.h"
#include "client/cli_config.h"
#include "common/result.h"

namespace jw::client {

// args: argv without argv[0]. Writes to stdout/stderr; returns the process exit status.
int runCli(const std::vector<std::string>& args);

// Where the connection settings come from, after precedence: flag > environment > config file.
// The stored token is only used for the server it was issued by, so `--server other` never
// sends it elsewhere.
struct ConnectionSettings {
  std::string server;  // as given (parsed later); "" when nothing names one
  std::string ca_file;
  std::string token;
  bool token_from_config = false;
};
ConnectionSettings resolveConnection(const Invocation& inv, const EnvLookup& getenv_fn,
                                     const std::optional<CliConfig>& config);

}  // namespace jw::client
