// The CLI's own settings file, $XDG_CONFIG_HOME/jobworker/config.json (CLI process): server URL,
// CA file and session token. Written atomically with mode 0600; a copy others can read is
// refused, since the token in it is as good as the password for its lifetime.
#pragma once

#include <functional>
#include <optional>
#include <string>

#include "common/result.h"

namespace jw::client {

struct CliConfig {
  std::string server;   // normalised https://host:port
  std::string ca_file;  // absolute path, or "" for the system store
  std::string token;
  std::string user;
  std::string role;
  std::string expires_at;
};

// $XDG_CONFIG_HOME/jobworker/config.json, else $HOME/.config/jobworker/config.json.
// `getenv_fn` lets tests supply the environment.
using GetEnv = std::function<const char*(const char*)>;
Result<std::string> configPath(const GetEnv& getenv_fn = {});

// Reads the file. A missing file is an empty config (nullopt). Refuses a file that group or
// others can access, or that belongs to someone else, with a message saying how to fix it.
Result<std::optional<CliConfig>> loadConfig(const std::string& path);

// Writes the file atomically (temporary file in the same directory, fsync, rename), creating the
// directory with mode 0700 if needed; the file is 0600.
Status saveConfig(const std::string& path, const CliConfig& cfg);

std::string serializeConfig(const CliConfig& cfg);
Result<CliConfig> parseConfig(const std::string& text, const std::string& origin);

}  // namespace jw::client
