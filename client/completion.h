// Shell completion scripts of the jobworker CLI (CLI process, and the build, which runs
// `jobworker completion SHELL` to install them): generated from commandSpecs(), the parser's own
// tables, so no second list of commands and flags is kept by hand.
#pragma once

#include <optional>
#include <string>

namespace jw::client {

// The script for "bash", "zsh" or "fish"; nullopt for another shell. Each completes commands,
// flags, the values of flags with a fixed set (and files, directories), and job IDs by running
// `jobworker list --quiet` (with --all where the role allows).
std::optional<std::string> completionScript(const std::string& shell);

}  // namespace jw::client
