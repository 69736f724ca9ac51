// The CLI's own settings file, $XDG_CONFIG_HOME/jobworker/config.json (CLI process): server URL,
// CA file and session token. Written atomically with mode 0600; a copy others can read is
// refused, since the token in it is as good as the password for its lifetime.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>

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

// The same for any text: what the context files use.
Status writePrivateFile(const std::string& path, const std::string& text);

std::string serializeConfig(const CliConfig& cfg);
Result<CliConfig> parseConfig(const std::string& text, const std::string& origin);

// Contexts, one per server: `<dir>/contexts/NAME.json` is a CliConfig file of its own (0600, its
// own token), `<dir>/current-context` names the one used without --context or
// JOBWORKER_CONTEXT. <dir> is the directory of configPath().
inline constexpr const char* kDefaultContext = "default";
bool validContextName(const std::string& name);  // [A-Za-z0-9][A-Za-z0-9_.-]{0,62}
std::string contextFile(const std::string& dir, const std::string& name);
Result<std::string> currentContext(const std::string& dir);  // "" when none is set
Status setCurrentContext(const std::string& dir, const std::string& name);
Result<std::vector<std::string>> listContexts(const std::string& dir);  // sorted
// The single-server config.json of earlier versions becomes the context "default" (and the
// current one), once, when no context exists yet. True when it migrated something.
Result<bool> migrateLegacyConfig(const std::string& dir);

}  // namespace jw::client
