// Command-line grammar of the jobworker CLI (CLI process): commands, flags, help texts, and the
// job request built from start/run flags. Option syntax is Poco::Util::OptionProcessor's.
#pragma once

#include <Poco/JSON/Object.h>

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "common/result.h"

namespace jw::client {

enum class Command {
  kNone,
  kHelp,
  kLogin,
  kLogout,
  kWhoami,
  kStart,
  kRun,
  kStop,
  kStatus,
  kList,
  kLogs,
  kWait,
  kEvents,
  kRm,
  kVersion,
  kCompletion,
  kContext
};
// human: tables and blocks; json: the server's JSON; yaml: the same as YAML; wide: tables with
// more columns; name: job ids only (the last three for list and status).
enum class OutputFormat { kHuman, kJson, kYaml, kWide, kName };

struct IoLimitArg {
  std::optional<uint64_t> read_bps, write_bps, read_iops, write_iops;
};

// What start and run send as POST /v1/jobs.
struct JobSpec {
  std::vector<std::string> command;  // PROG ARGS... (everything after "--")
  std::vector<std::string> env;      // "K=V", or "K" to copy K from our own environment
  std::optional<std::string> cwd;
  std::optional<uint64_t> timeout_ms;
  bool separate_stderr = false;
  std::optional<uint32_t> cpu_millicores;
  std::optional<uint64_t> memory_bytes;
  std::optional<uint32_t> pids;
  std::map<std::string, IoLimitArg> io;  // by device
  std::optional<std::string> network;    // "none" or "host"
  std::optional<std::string> name;
  std::vector<std::string> labels;  // "K=V"
  bool stdin_pipe = false;          // -i: the job reads our stdin ("stdin": "pipe")
};

struct Invocation {
  Command command = Command::kNone;
  Command help_topic = Command::kNone;  // for `jobworker help CMD`
  // Flags every command accepts (also before the command name).
  std::optional<std::string> server;
  std::optional<std::string> ca_file;
  OutputFormat output = OutputFormat::kHuman;
  bool help = false;
  bool version = false;
  // login
  std::optional<std::string> user;
  bool password_stdin = false;
  // stop
  std::optional<uint64_t> grace_ms;
  // list
  bool all = false;
  bool quiet = false;
  bool no_trunc = false;
  std::optional<std::string> state;
  std::vector<std::string> label_filter;  // list -l K=V (repeatable)
  std::optional<std::string> owner;
  std::optional<uint32_t> limit;
  // wait
  std::optional<uint64_t> wait_timeout_ms;
  // completion: bash, zsh or fish
  std::string shell;
  // --context NAME (every command), and `context add|use|list [NAME]`
  std::optional<std::string> context;
  std::string context_action;
  std::string context_name;
  // logs
  bool follow = false;
  std::optional<std::string> stream;
  std::optional<uint32_t> tail_lines;  // --tail N: from the N-th last line
  std::optional<std::string> since;    // --since: RFC 3339 or a duration back from now
  bool timestamps = false;             // --timestamps: each line prefixed with its arrival
  // events --job ID: an id, a job name or a unique prefix of an id.
  std::optional<std::string> event_job;
  // The ID argument (logs): an id, a job name or a unique prefix of an id.
  std::string job;
  // The ID arguments of stop, status, wait and rm (job is the first of them).
  std::vector<std::string> jobs;
  JobSpec spec;
};

struct ParseOutcome {
  Invocation inv;
  std::optional<std::string> usage_error;  // set: print it and exit with usageExitCode()
};

// args: argv without argv[0].
ParseOutcome parseCommandLine(const std::vector<std::string>& args);

// The full --help text of a command, or the overview for kNone / kHelp.
std::string helpText(Command c);
std::string commandName(Command c);
// 2 for a usage error, except `run`, whose own failures are all 125 (docker run's convention).
int usageExitCode(Command c);

// Sets a duration field of a request body ("timeout_s", "grace_s") from milliseconds.
void setSeconds(Poco::JSON::Object& o, const std::string& key, uint64_t ms);

// The grammar as data, for `jobworker completion`: generated from the same command and flag
// tables the parser uses, so the completion scripts cannot drift from it.
struct FlagSpec {
  std::string long_name;   // without "--"
  std::string short_name;  // without "-", "" for none
  std::string value_name;  // "" when the flag takes no value
  std::string description;
  std::vector<std::string> choices;  // the values it accepts, when they are a fixed set
  enum class Value { kNone, kFree, kChoice, kFile, kDirectory } value = Value::kNone;
};
struct CommandSpec {
  std::string name;
  std::string summary;
  std::vector<FlagSpec> flags;  // its own flags, then the global ones
  bool takes_jobs = false;      // its arguments are job IDs
  bool takes_program = false;   // "-- PROG [ARGS...]"
};
std::vector<CommandSpec> commandSpecs();
std::vector<FlagSpec> globalFlagSpecs();  // the flags before a command name (--version too)

using EnvLookup = std::function<const char*(const char*)>;
// POST /v1/jobs body. Fails on `--env K` when K is not set in our environment.
Result<Poco::JSON::Object::Ptr> buildJobRequest(const JobSpec& spec, const EnvLookup& getenv_fn);

}  // namespace jw::client
