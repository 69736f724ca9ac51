// Command-line grammar of the jobworker CLI (CLI process). Poco::Util::OptionSet describes each
// command's flags and OptionProcessor splits them; the subcommand dispatch, the `--` rule and value
// checks are ours, because Poco::Util::Application assumes a single flat command.
#include "client/cli_args.h"

#include <Poco/Util/Option.h>
#include <Poco/Util/OptionException.h>
#include <Poco/Util/OptionProcessor.h>
#include <Poco/Util/OptionSet.h>

#include <algorithm>
#include <cctype>
#include <sstream>

#include "common/config.h"
#include "common/names.h"

namespace jw::client {
namespace {

using Poco::Util::Option;
using Poco::Util::OptionSet;

struct CommandInfo {
  Command cmd;
  const char* name;
  const char* args;     // after "[FLAGS]" in the usage line
  const char* summary;  // one line for the overview
  const char* details;  // paragraph for the command's --help
};

constexpr CommandInfo kCommands[] = {
    {Command::kLogin, "login", "", "log in and store a session token",
     "Logs in to a jobworker server and stores the server URL, the CA file path and the session\n"
     "token in the context file (contexts/NAME.json, mode 0600). Prompts for the user name and\n"
     "password on the terminal unless --user and --password-stdin are given.\n"},
    {Command::kLogout, "logout", "", "revoke the session and forget the token",
     "Revokes the session on the server and removes the token from the config file.\n"},
    {Command::kWhoami, "whoami", "", "show the logged-in user and role",
     "Prints the user and role the server associates with the current session.\n"},
    {Command::kStart, "start", "-- PROG [ARGS...]", "start a job and print its id",
     "Starts PROG with ARGS on the server and prints only the job id, so that\n"
     "id=$(jobworker start -- ...) works. The `--` before the program is required. With -i,\n"
     "our stdin becomes the job's (sent until its EOF) before the id is printed.\n"},
    {Command::kRun, "run", "-- PROG [ARGS...]",
     "start a job, stream its output, exit with its status",
     "Starts PROG, writes its output live from the first byte, and exits with the job's exit code\n"
     "(128+N when killed by signal N). Exits 125 when jobworker itself fails, 126 when the "
     "program\n"
     "is not executable, 127 when it is not found. Ctrl-C stops the job (SIGTERM, then SIGKILL "
     "after\n"
     "the grace period) while the output keeps streaming; a second Ctrl-C detaches (exit 130) and\n"
     "prints how to reattach. Standard input is not forwarded unless -i is given: then it is\n"
     "the job's stdin, sent as fast as the job reads it (EOF when ours ends).\n"},
    {Command::kStop, "stop", "ID...", "stop jobs",
     "Sends SIGTERM to each job's processes, then SIGKILL after the grace period (the server's\n"
     "default unless --grace is given). Prints each job id.\n"},
    {Command::kStatus, "status", "ID...", "show jobs' status",
     "Shows state, exit code or signal, times, limits and resource usage of each job.\n"},
    {Command::kList, "list", "", "list jobs",
     "Lists your jobs, newest first (--all: every job your role may see), filtered by state,\n"
     "labels and owner; --limit N shows the newest N.\n"},
    {Command::kLogs, "logs", "ID", "write a job's output to stdout",
     "Writes the job's output, byte for byte, from the first byte to stdout. With --follow, keeps\n"
     "streaming until the job ends, then exits 0. A dropped connection is resumed at the last "
     "byte\n"
     "received (retried for about 30 s), so nothing is lost or repeated. --tail N starts at the\n"
     "N-th last line, --since at the first line written since then (10m, or "
     "2026-12-01T10:00:00Z);\n"
     "--timestamps prefixes each line with the time its first byte arrived (RFC 3339, ms, UTC).\n"},
    {Command::kWait, "wait", "ID...", "wait for jobs to end, print their exit codes",
     "Waits until every job has ended and prints each one's exit code (128+N when killed by\n"
     "signal N), one per line, in the order given. Exits with the first job's code (docker\n"
     "wait's convention); 1 when --timeout passes first or a job cannot be waited for.\n"},
    {Command::kEvents, "events", "", "print job events as they happen",
     "Prints every change in the life of the jobs you may see (created, started,\n"
     "stop_requested, exited, killed, failed) as it happens, like `docker events`, until\n"
     "interrupted. --job ID shows one job's. A dropped connection is resumed after the last\n"
     "event printed, so none is lost or repeated; if the server no longer has the ones missed,\n"
     "a note says so and the stream goes on from the newest. -o json prints the server's JSON\n"
     "lines.\n"},
    {Command::kRm, "rm", "ID...", "delete finished jobs and their output",
     "Removes each finished job and its stored output from the server. A running job is\n"
     "refused: stop it first.\n"},
    {Command::kVersion, "version", "", "print the client's and the server's version",
     "Prints this client's version, then the server's version, API version, cgroup backend and\n"
     "features (GET /v1/version; needs a login).\n"},
    {Command::kCompletion, "completion", "bash|zsh|fish", "print a shell completion script",
     "Prints the completion script for bash, zsh or fish, generated from this program's own\n"
     "command table. `meson install` installs all three; to try one now:\n"
     "  source <(jobworker completion bash)\n"},
    {Command::kContext, "context", "add NAME | use NAME | list", "manage servers to talk to",
     "A context is one server with its CA file and its own session token\n"
     "($XDG_CONFIG_HOME/jobworker/contexts/NAME.json, mode 0600). `context add NAME --server URL\n"
     "[--ca-file PEM]` adds one, `context use NAME` makes it the current one, `context list`\n"
     "shows them. Any command takes --context NAME (or JOBWORKER_CONTEXT) to use another.\n"},
};

// Flags whose value is one of a fixed set: the parser checks against it, completion offers it.
struct FlagChoices {
  const char* flag;
  std::vector<std::string_view> values;
  const char* hint;
};
const FlagChoices kFlagChoices[] = {
    {"state", {"running", "exited", "killed", "failed"}, "running, exited, killed or failed"},
    {"stream", {"stdout", "stderr"}, "stdout or stderr"},
    {"network", {"none", "host"}, "none or host"},
    {"output", {"human", "json", "yaml", "wide", "name"}, "human, json, yaml, wide or name"},
};

const FlagChoices* choicesOf(std::string_view flag) {
  for (const auto& c : kFlagChoices) {
    if (flag == c.flag) return &c;
  }
  return nullptr;
}

const CommandInfo* findCommand(const std::string& name) {
  for (const auto& c : kCommands) {
    if (name == c.name) return &c;
  }
  return nullptr;
}

const CommandInfo* infoFor(Command cmd) {
  for (const auto& c : kCommands) {
    if (c.cmd == cmd) return &c;
  }
  return nullptr;
}

void addGlobalOptions(OptionSet& set) {
  set.addOption(
      Option("server", "", "server URL, https://HOST:PORT (env JOBWORKER_SERVER)").argument("URL"));
  set.addOption(Option("ca-file", "",
                       "PEM file with the CA that signed the server certificate "
                       "(env JOBWORKER_CA_FILE)")
                    .argument("PEM"));
  set.addOption(Option("output", "o",
                       "output format: human (default) or json; for list and status also yaml, "
                       "wide, name")
                    .argument("FORMAT"));
  set.addOption(
      Option("context", "", "use this context (env JOBWORKER_CONTEXT; see 'jobworker context')")
          .argument("NAME"));
  set.addOption(Option("help", "h", "show this help"));
}

void addJobSpecOptions(OptionSet& set) {
  set.addOption(Option("env", "e",
                       "set an environment variable (K alone copies K from here); "
                       "repeatable")
                    .argument("K=V")
                    .repeatable(true));
  set.addOption(Option("cwd", "", "working directory of the job").argument("DIR"));
  set.addOption(Option("timeout", "", "stop the job after this long (e.g. 500ms, 10s, 2m, 1h)")
                    .argument("DUR"));
  set.addOption(Option("separate-stderr", "", "keep stderr apart from stdout"));
  set.addOption(Option("cpu", "", "CPU limit in cores (e.g. 0.5, 2)").argument("N"));
  set.addOption(Option("memory", "", "memory limit (e.g. 256M, 1G)").argument("SIZE"));
  set.addOption(Option("pids", "", "maximum number of processes").argument("N"));
  set.addOption(Option("io-read-bps", "",
                       "read bandwidth limit on a device (e.g. /dev/vda=10M); "
                       "repeatable")
                    .argument("DEV=SIZE")
                    .repeatable(true));
  set.addOption(Option("io-write-bps", "", "write bandwidth limit on a device; repeatable")
                    .argument("DEV=SIZE")
                    .repeatable(true));
  set.addOption(Option("io-read-iops", "", "read operations per second on a device; repeatable")
                    .argument("DEV=N")
                    .repeatable(true));
  set.addOption(Option("io-write-iops", "", "write operations per second on a device; repeatable")
                    .argument("DEV=N")
                    .repeatable(true));
  set.addOption(Option("network", "", "network access: none (default) or host").argument("MODE"));
  set.addOption(
      Option("name", "", "name the job (unique among your running jobs)").argument("NAME"));
  set.addOption(Option("label", "l", "label the job with KEY=VALUE; repeatable")
                    .argument("K=V")
                    .repeatable(true));
}

OptionSet commandOptions(Command cmd) {
  OptionSet set;
  switch (cmd) {
    case Command::kLogin:
      set.addOption(Option("user", "u", "user name (prompted for when omitted)").argument("NAME"));
      set.addOption(Option("password-stdin", "", "read the password from the first line of stdin"));
      break;
    case Command::kStart:
    case Command::kRun:
      addJobSpecOptions(set);
      set.addOption(Option("interactive", "i", "send our stdin to the job's stdin"));
      break;
    case Command::kStop:
      set.addOption(
          Option("grace", "", "time between SIGTERM and SIGKILL (e.g. 5s)").argument("DUR"));
      break;
    case Command::kList:
      set.addOption(Option("all", "a", "every job your role may see, not only yours"));
      set.addOption(Option("state", "", "only jobs in this state: running, exited, killed, failed")
                        .argument("STATE"));
      set.addOption(Option("quiet", "q", "print only full job ids"));
      set.addOption(Option("label", "l", "only jobs with this label KEY=VALUE; repeatable")
                        .argument("K=V")
                        .repeatable(true));
      set.addOption(Option("owner", "", "only jobs of this user (admin, viewer)").argument("USER"));
      set.addOption(Option("limit", "", "only the newest N jobs").argument("N"));
      set.addOption(Option("no-trunc", "", "never shorten ids or commands"));
      break;
    case Command::kWait:
      set.addOption(Option("timeout", "", "give up after this long (exit 1)").argument("DUR"));
      break;
    case Command::kEvents:
      set.addOption(Option("job", "", "only this job's events").argument("ID"));
      break;
    case Command::kLogs:
      set.addOption(Option("follow", "f", "keep streaming until the job ends"));
      set.addOption(Option("tail", "n", "start at the N-th last line").argument("N"));
      set.addOption(
          Option("since", "", "start at the first line written since (10m, RFC 3339 time)")
              .argument("TIME"));
      set.addOption(Option("timestamps", "t", "prefix each line with the time it arrived"));
      set.addOption(Option("stream", "", "stdout or stderr (jobs started with --separate-stderr)")
                        .argument("NAME"));
      break;
    default:
      break;
  }
  addGlobalOptions(set);
  return set;
}

std::string optionsHelp(const OptionSet& set) {
  std::vector<std::pair<std::string, std::string>> rows;
  size_t width = 0;
  for (const auto& o : set) {
    std::string left = o.shortName().empty() ? "    " : "-" + o.shortName() + ", ";
    left += "--" + o.fullName();
    if (o.takesArgument()) left += " " + o.argumentName();
    width = std::max(width, left.size());
    rows.emplace_back(left, o.description());
  }
  std::string out;
  for (const auto& [left, desc] : rows) {
    out += "  " + left + std::string(width - left.size() + 2, ' ') + desc + "\n";
  }
  return out;
}

// "unknown option specified: z" reads better as "unknown option '-z'".
std::string optionError(const Poco::Util::OptionException& e, const std::string& arg) {
  if (dynamic_cast<const Poco::Util::UnknownOptionException*>(&e) ||
      dynamic_cast<const Poco::Util::AmbiguousOptionException*>(&e)) {
    return "unknown flag '" + arg + "'";
  }
  if (dynamic_cast<const Poco::Util::MissingArgumentException*>(&e)) {
    return "flag '" + arg + "' needs a value";
  }
  if (dynamic_cast<const Poco::Util::UnexpectedArgumentException*>(&e)) {
    return "flag '" + arg + "' takes no value";
  }
  if (dynamic_cast<const Poco::Util::DuplicateOptionException*>(&e)) {
    return "flag '" + arg + "' given more than once";
  }
  return e.message();
}

// Poco accepts unambiguous abbreviations and any letter case ("--sep", "--Server"); scripts that
// rely on them break when a flag is added, so only exact names pass.
bool exactLongName(const OptionSet& set, const std::string& arg) {
  if (arg.size() < 3 || arg.compare(0, 2, "--") != 0) return true;
  std::string name = arg.substr(2, arg.find_first_of("=:") - 2);
  return std::any_of(set.begin(), set.end(), [&](const Option& o) { return o.fullName() == name; });
}

Result<std::pair<std::string, std::string>> splitDevValue(const std::string& flag,
                                                          const std::string& v) {
  size_t eq = v.rfind('=');
  if (eq == std::string::npos || eq == 0 || eq + 1 == v.size()) {
    return Error{"bad --" + flag + " '" + v + "': use DEVICE=VALUE (e.g. /dev/vda=10M)"};
  }
  return std::make_pair(v.substr(0, eq), v.substr(eq + 1));
}

Result<uint32_t> parseCount(const std::string& flag, const std::string& v) {
  if (v.empty() || v.size() > 9 || v.find_first_not_of("0123456789") != std::string::npos ||
      std::stoul(v) == 0) {
    return Error{"bad --" + flag + " '" + v + "': use a positive whole number"};
  }
  return static_cast<uint32_t>(std::stoul(v));
}

using Usage = std::optional<std::string>;  // a usage error, or nothing

// Flags that only switch something on.
bool* switchFor(Invocation& inv, const std::string& name) {
  if (name == "help") return &inv.help;
  if (name == "version") return &inv.version;
  if (name == "password-stdin") return &inv.password_stdin;
  if (name == "all") return &inv.all;
  if (name == "quiet") return &inv.quiet;
  if (name == "no-trunc") return &inv.no_trunc;
  if (name == "follow") return &inv.follow;
  if (name == "timestamps") return &inv.timestamps;
  if (name == "separate-stderr") return &inv.spec.separate_stderr;
  if (name == "interactive") return &inv.spec.stdin_pipe;
  return nullptr;
}

// Flags whose value is taken as given (checked where it is used).
std::optional<std::string>* textFor(Invocation& inv, const std::string& name) {
  if (name == "server") return &inv.server;
  if (name == "ca-file") return &inv.ca_file;
  if (name == "user") return &inv.user;
  if (name == "since") return &inv.since;
  if (name == "owner") return &inv.owner;
  if (name == "context") return &inv.context;
  if (name == "job") return &inv.event_job;
  return nullptr;
}

Usage setChoice(std::optional<std::string>& field, const std::string& name,
                const std::string& value, const std::vector<std::string_view>& allowed,
                const char* hint) {
  if (std::find(allowed.begin(), allowed.end(), value) == allowed.end()) {
    return "bad --" + name + " '" + value + "': use " + hint;
  }
  field = value;
  return std::nullopt;
}

Usage setOutput(Invocation& inv, const std::string& value) {
  static const std::pair<std::string_view, OutputFormat> kFormats[] = {
      {"human", OutputFormat::kHuman}, {"text", OutputFormat::kHuman},
      {"json", OutputFormat::kJson},   {"yaml", OutputFormat::kYaml},
      {"wide", OutputFormat::kWide},   {"name", OutputFormat::kName}};
  for (const auto& [name, format] : kFormats) {
    if (value == name) {
      inv.output = format;
      return std::nullopt;
    }
  }
  return "bad --output '" + value + "': use " + choicesOf("output")->hint;
}

// --grace and --timeout.
Usage setDuration(Invocation& inv, const std::string& name, const std::string& value) {
  auto d = jw::config::parseDurationMs(value);
  if (!d) return "bad --" + name + " '" + value + "': use a duration like 500ms, 10s, 2m or 1h";
  if (name == "timeout" && inv.command == Command::kWait) {
    inv.wait_timeout_ms = d.value();
    return std::nullopt;
  }
  (name == "grace" ? inv.grace_ms : inv.spec.timeout_ms) = d.value();
  if (name == "timeout" && d.value() == 0) return "bad --timeout '" + value + "': must be > 0";
  return std::nullopt;
}

// --io-{read,write}-{bps,iops} DEV=VALUE: a size for bandwidth, a count for operations.
Usage addIoLimit(JobSpec& spec, const std::string& name, const std::string& value) {
  auto dv = splitDevValue(name, value);
  if (!dv) return dv.error().message;
  const auto& [dev, v] = dv.value();
  bool bps = name.size() > 4 && name.compare(name.size() - 4, 4, "-bps") == 0;
  Result<uint64_t> n = bps ? jw::config::parseSize(v) : Result<uint64_t>(Error{""});
  if (!bps) {
    auto c = parseCount(name, v);
    if (c) n = static_cast<uint64_t>(c.value());
  }
  if (!n || n.value() == 0) {
    return "bad --" + name + " '" + value +
           "': use DEVICE=" + (bps ? "SIZE (e.g. /dev/vda=10M)" : "N");
  }
  IoLimitArg& io = spec.io[dev];
  if (name == "io-read-bps") io.read_bps = n.value();
  if (name == "io-write-bps") io.write_bps = n.value();
  if (name == "io-read-iops") io.read_iops = n.value();
  if (name == "io-write-iops") io.write_iops = n.value();
  return std::nullopt;
}

// The start/run flags that carry a checked value: --env, --cwd, --cpu, --memory, --pids.
Usage applyJobFlag(JobSpec& spec, const std::string& name, const std::string& value) {
  if (name == "env") {
    std::string key = value.substr(0, value.find('='));
    if (key.empty()) return "bad --env '" + value + "': use K=V or K";
    spec.env.push_back(value);
  } else if (name == "cwd") {
    if (value.empty()) return "bad --cwd: empty directory";
    spec.cwd = value;
  } else if (name == "cpu") {
    auto m = jw::config::parseCpuMillicores(value);
    if (!m) return "bad --cpu '" + value + "': use cores, e.g. 0.5 or 2";
    spec.cpu_millicores = m.value();
  } else if (name == "memory") {
    auto s = jw::config::parseSize(value);
    if (!s || s.value() == 0) return "bad --memory '" + value + "': use a size like 256M or 1G";
    spec.memory_bytes = s.value();
  } else if (name == "pids") {
    auto n = parseCount(name, value);
    if (!n) return n.error().message;
    spec.pids = n.value();
  } else {
    return "unknown flag '--" + name + "'";
  }
  return std::nullopt;
}

// Applies one parsed flag to the invocation.
Usage applyOption(Invocation& inv, const std::string& name, const std::string& value) {
  if (bool* on = switchFor(inv, name)) {
    *on = true;
    return std::nullopt;
  }
  if (std::optional<std::string>* text = textFor(inv, name)) {
    *text = value;
    return std::nullopt;
  }
  if (name == "state" || name == "stream" || name == "network") {
    const FlagChoices* c = choicesOf(name);
    auto& field = name == "state" ? inv.state : name == "stream" ? inv.stream : inv.spec.network;
    return setChoice(field, name, value, c->values, c->hint);
  }
  if (name == "output") return setOutput(inv, value);
  if (name == "label") {
    if (!names::validLabel(value)) {
      return "bad --label '" + value + "': use " + std::string(names::kLabelPattern);
    }
    (inv.command == Command::kList ? inv.label_filter : inv.spec.labels).push_back(value);
    return std::nullopt;
  }
  if (name == "name") {
    if (!names::validJobName(value)) {
      return "bad --name '" + value + "': use " + std::string(names::kJobNamePattern) +
             " (not a job id)";
    }
    inv.spec.name = value;
    return std::nullopt;
  }
  if (name == "limit") {
    auto n = parseCount(name, value);
    if (!n) return n.error().message;
    inv.limit = n.value();
    return std::nullopt;
  }
  if (name == "grace" || name == "timeout") return setDuration(inv, name, value);
  if (name == "tail") {
    // The server's bound (kMaxTailLines); six digits at most, so the parse cannot overflow.
    if (value.empty() || value.size() > 6 ||
        value.find_first_not_of("0123456789") != std::string::npos || std::stoul(value) > 100000) {
      return "--tail takes a number of lines from 0 to 100000, not '" + value + "'";
    }
    inv.tail_lines = static_cast<uint32_t>(std::stoul(value));
    return std::nullopt;
  }
  if (name.rfind("io-", 0) == 0) return addIoLimit(inv.spec, name, value);
  return applyJobFlag(inv.spec, name, value);
}

// Runs OptionProcessor over args[i..] until a non-flag (or "--"), applying each flag.
// Returns the index of the first argument it did not consume.
struct FlagScan {
  size_t next = 0;
  std::optional<std::string> error;
};

FlagScan scanFlags(const OptionSet& set, const std::vector<std::string>& args, size_t i,
                   Invocation& inv, bool stop_at_positional, std::vector<std::string>* positionals,
                   bool* saw_dashdash) {
  Poco::Util::OptionProcessor proc(set);
  proc.setUnixStyle(true);
  std::string last_flag;
  try {
    for (; i < args.size(); ++i) {
      const std::string& a = args[i];
      if (last_flag.empty() && a == "--") {
        if (saw_dashdash) *saw_dashdash = true;
        return {i + 1, std::nullopt};
      }
      bool is_flag = last_flag.empty() && a.size() > 1 && a[0] == '-';
      if (is_flag && !exactLongName(set, a)) return {i, "unknown flag '" + a + "'"};
      std::string name, value;
      if (!proc.process(a, name, value)) {
        if (stop_at_positional || !positionals) return {i, std::nullopt};
        positionals->push_back(a);
        continue;
      }
      if (name.empty()) {  // "--flag VALUE": the value comes with the next argument
        last_flag = a;
        continue;
      }
      last_flag.clear();
      if (auto err = applyOption(inv, name, value)) return {i, err};
    }
    proc.checkRequired();
  } catch (const Poco::Util::OptionException& e) {
    return {i, optionError(e, last_flag.empty() && i < args.size() ? args[i] : last_flag)};
  }
  return {i, std::nullopt};
}

// The flags accepted before the command name: the global ones plus --version.
OptionSet globalOptions() {
  OptionSet global;
  addGlobalOptions(global);
  global.addOption(Option("version", "V", "print the version and exit"));
  return global;
}

// Flags before the command name; *next is set to the index of the command name.
Usage scanGlobalFlags(const std::vector<std::string>& args, Invocation& inv, size_t* next) {
  bool early_dashdash = false;
  FlagScan g = scanFlags(globalOptions(), args, 0, inv, true, nullptr, &early_dashdash);
  if (g.error) return g.error;
  if (early_dashdash) {
    return "'--' before the command: use 'jobworker COMMAND [FLAGS] -- PROG [ARGS...]'";
  }
  *next = g.next;
  return std::nullopt;
}

// `jobworker help [COMMAND]`: args[i], if there, names the command to explain.
Usage takeHelpTopic(const std::vector<std::string>& args, size_t i, Invocation& inv) {
  inv.command = Command::kHelp;
  if (i >= args.size()) return std::nullopt;
  const CommandInfo* topic = findCommand(args[i]);
  if (!topic) return "unknown command '" + args[i] + "'";
  inv.help_topic = topic->cmd;
  return std::nullopt;
}

// start and run: everything after the "--" is the program and its arguments.
Usage takeProgram(const std::vector<std::string>& args, size_t i, bool dashdash,
                  const std::string& name, JobSpec& spec) {
  const std::string how = "use 'jobworker " + name + " [FLAGS] -- PROG [ARGS...]'";
  if (!dashdash) {
    return i < args.size() ? "missing '--' before the program '" + args[i] + "': " + how
                           : "missing '-- PROG [ARGS...]': " + how;
  }
  spec.command.assign(args.begin() + static_cast<std::ptrdiff_t>(i), args.end());
  if (spec.command.empty() || spec.command[0].empty()) return "missing program after '--': " + how;
  return std::nullopt;
}

// logs takes one job ID; stop, status, wait and rm one or more; the others none.
Usage takePositionals(std::vector<std::string> positionals, const std::string& name,
                      Invocation& inv) {
  const bool takes_ids = inv.command == Command::kStop || inv.command == Command::kStatus ||
                         inv.command == Command::kWait || inv.command == Command::kRm;
  if (inv.command == Command::kContext) {
    const std::string how =
        "use 'jobworker context add NAME --server URL', 'jobworker context use NAME' or "
        "'jobworker context list'";
    if (positionals.empty()) return "missing action: " + how;
    inv.context_action = positionals[0];
    const bool named = inv.context_action == "add" || inv.context_action == "use";
    if (!named && inv.context_action != "list") return "unknown action: " + how;
    if (positionals.size() != (named ? 2U : 1U)) return "wrong arguments: " + how;
    if (named) inv.context_name = positionals[1];
    return std::nullopt;
  }
  if (inv.command == Command::kCompletion) {
    if (positionals.size() != 1 ||
        (positionals[0] != "bash" && positionals[0] != "zsh" && positionals[0] != "fish")) {
      return "use 'jobworker completion bash', 'jobworker completion zsh' or 'jobworker "
             "completion fish'";
    }
    inv.shell = positionals[0];
    return std::nullopt;
  }
  if (takes_ids || inv.command == Command::kLogs) {
    if (positionals.empty()) {
      return "missing job ID: use 'jobworker " + name + " [FLAGS] ID" + (takes_ids ? "...'" : "'");
    }
    for (const auto& p : positionals) {
      if (p.empty()) return "empty job ID";
    }
    inv.job = positionals[0];
    size_t take = takes_ids ? positionals.size() : 1;
    inv.jobs.assign(positionals.begin(), positionals.begin() + static_cast<std::ptrdiff_t>(take));
    positionals.erase(positionals.begin(), positionals.begin() + static_cast<std::ptrdiff_t>(take));
  }
  if (!positionals.empty()) return "unexpected argument '" + positionals[0] + "'";
  return std::nullopt;
}

// The command's flags and arguments, args[i..].
Usage parseCommandArgs(const std::vector<std::string>& args, size_t i, const std::string& name,
                       Invocation& inv) {
  const bool takes_program = inv.command == Command::kStart || inv.command == Command::kRun;
  OptionSet set = commandOptions(inv.command);
  std::vector<std::string> positionals;
  bool dashdash = false;
  FlagScan c = scanFlags(set, args, i, inv, takes_program, &positionals, &dashdash);
  if (c.error) return c.error;
  if (inv.help) return std::nullopt;
  if (takes_program) return takeProgram(args, c.next, dashdash, name, inv.spec);
  // After "--" every remaining argument is positional.
  positionals.insert(positionals.end(), args.begin() + static_cast<std::ptrdiff_t>(c.next),
                     args.end());
  return takePositionals(std::move(positionals), name, inv);
}

}  // namespace

namespace {

FlagSpec flagSpec(const Option& o) {
  FlagSpec f;
  f.long_name = o.fullName();
  f.short_name = o.shortName();
  f.description = o.description();
  if (!o.takesArgument()) return f;
  f.value_name = o.argumentName();
  f.value = FlagSpec::Value::kFree;
  if (const FlagChoices* c = choicesOf(f.long_name)) {
    f.value = FlagSpec::Value::kChoice;
    for (auto v : c->values) f.choices.emplace_back(v);
  } else if (f.long_name == "ca-file") {
    f.value = FlagSpec::Value::kFile;
  } else if (f.long_name == "cwd") {
    f.value = FlagSpec::Value::kDirectory;  // on the server, but usually the same tree
  }
  return f;
}

}  // namespace

std::vector<CommandSpec> commandSpecs() {
  std::vector<CommandSpec> out;
  for (const auto& ci : kCommands) {
    CommandSpec c{ci.name, ci.summary, {}, false, false};
    for (const auto& o : commandOptions(ci.cmd)) c.flags.push_back(flagSpec(o));
    c.takes_jobs = ci.cmd == Command::kStop || ci.cmd == Command::kStatus ||
                   ci.cmd == Command::kWait || ci.cmd == Command::kRm || ci.cmd == Command::kLogs;
    c.takes_program = ci.cmd == Command::kStart || ci.cmd == Command::kRun;
    out.push_back(std::move(c));
  }
  return out;
}

std::vector<FlagSpec> globalFlagSpecs() {
  std::vector<FlagSpec> out;
  for (const auto& o : globalOptions()) out.push_back(flagSpec(o));
  return out;
}

std::string commandName(Command c) {
  if (c == Command::kHelp) return "help";
  const CommandInfo* info = infoFor(c);
  return info ? info->name : "";
}

int usageExitCode(Command c) { return c == Command::kRun ? 125 : 2; }

ParseOutcome parseCommandLine(const std::vector<std::string>& args) {
  ParseOutcome out;
  Invocation& inv = out.inv;
  size_t at = 0;  // the command name, after the flags before it
  if (auto err = scanGlobalFlags(args, inv, &at)) {
    out.usage_error = err;
    return out;
  }
  if (at >= args.size()) {
    if (!inv.help && !inv.version) out.usage_error = "missing command";
    return out;
  }
  const std::string& name = args[at];
  if (name == "help") {
    out.usage_error = takeHelpTopic(args, at + 1, inv);
    return out;
  }
  const CommandInfo* info = findCommand(name);
  if (!info) {
    out.usage_error = "unknown command '" + name + "'";
    return out;
  }
  inv.command = info->cmd;
  out.usage_error = parseCommandArgs(args, at + 1, name, inv);
  return out;
}

std::string helpText(Command c) {
  if (c == Command::kNone || c == Command::kHelp) {
    std::ostringstream os;
    os << "Usage: jobworker [FLAGS] COMMAND [FLAGS] [ARGS]\n\n"
          "Runs and watches Linux processes on a jobworker server.\n\nCommands:\n";
    for (const auto& ci : kCommands) {
      std::string n = ci.name;
      os << "  " << n << std::string(12 - n.size(), ' ') << ci.summary << "\n";
    }
    os << "\nFlags (also accepted after the command):\n" << optionsHelp(globalOptions());
    os << "\nEnvironment:\n"
          "  JOBWORKER_SERVER    server URL (overridden by --server)\n"
          "  JOBWORKER_TOKEN     session token (instead of the stored one)\n"
          "  JOBWORKER_CA_FILE   CA file (overridden by --ca-file)\n"
          "  JOBWORKER_CONTEXT   context to use (overridden by --context)\n"
          "  XDG_CONFIG_HOME     config directory (default ~/.config); the CLI keeps\n"
          "                      jobworker/contexts/NAME.json there\n"
          "\nExit status: 0 success, 1 failed operation, 2 usage error; run: the job's own\n"
          "status, 125 jobworker failed, 126 not executable, 127 not found.\n"
          "\nRun 'jobworker COMMAND --help' for a command's flags.\n";
    return os.str();
  }
  const CommandInfo* info = infoFor(c);
  if (!info) return "";
  std::string usage = std::string("Usage: jobworker ") + info->name + " [FLAGS]";
  if (info->args[0] != '\0') usage += std::string(" ") + info->args;
  return usage + "\n\n" + info->details + "\nFlags:\n" + optionsHelp(commandOptions(c));
}

void setSeconds(Poco::JSON::Object& o, const std::string& key, uint64_t ms) {
  // Whole seconds stay integers; the API takes fractions for sub-second durations.
  if (ms % 1000 == 0) {
    o.set(key, static_cast<Poco::UInt64>(ms / 1000));
  } else {
    o.set(key, static_cast<double>(ms) / 1000.0);
  }
}

Result<Poco::JSON::Object::Ptr> buildJobRequest(const JobSpec& spec, const EnvLookup& getenv_fn) {
  Poco::JSON::Object::Ptr body = new Poco::JSON::Object(Poco::JSON_PRESERVE_KEY_ORDER);
  Poco::JSON::Array::Ptr cmd = new Poco::JSON::Array;
  for (const auto& a : spec.command) cmd->add(a);
  body->set("command", cmd);
  if (!spec.env.empty()) {
    Poco::JSON::Object::Ptr env = new Poco::JSON::Object(Poco::JSON_PRESERVE_KEY_ORDER);
    for (const auto& kv : spec.env) {
      size_t eq = kv.find('=');
      if (eq != std::string::npos) {
        env->set(kv.substr(0, eq), kv.substr(eq + 1));
        continue;
      }
      const char* v = getenv_fn ? getenv_fn(kv.c_str()) : nullptr;
      if (v == nullptr)
        return Error{"--env " + kv + ": " + kv + " is not set here: use --env " + kv + "=VALUE"};
      env->set(kv, std::string(v));
    }
    body->set("env", env);
  }
  if (spec.cwd) body->set("cwd", *spec.cwd);
  if (spec.timeout_ms) setSeconds(*body, "timeout_s", *spec.timeout_ms);
  if (spec.separate_stderr) body->set("output", "separate");
  Poco::JSON::Object::Ptr limits = new Poco::JSON::Object(Poco::JSON_PRESERVE_KEY_ORDER);
  if (spec.cpu_millicores) limits->set("cpu", static_cast<double>(*spec.cpu_millicores) / 1000.0);
  if (spec.memory_bytes) limits->set("memory", static_cast<Poco::UInt64>(*spec.memory_bytes));
  if (spec.pids) limits->set("pids", static_cast<Poco::UInt64>(*spec.pids));
  if (!spec.io.empty()) {
    Poco::JSON::Array::Ptr io = new Poco::JSON::Array;
    for (const auto& [dev, l] : spec.io) {
      Poco::JSON::Object::Ptr e = new Poco::JSON::Object(Poco::JSON_PRESERVE_KEY_ORDER);
      e->set("device", dev);
      if (l.read_bps) e->set("read_bps", static_cast<Poco::UInt64>(*l.read_bps));
      if (l.write_bps) e->set("write_bps", static_cast<Poco::UInt64>(*l.write_bps));
      if (l.read_iops) e->set("read_iops", static_cast<Poco::UInt64>(*l.read_iops));
      if (l.write_iops) e->set("write_iops", static_cast<Poco::UInt64>(*l.write_iops));
      io->add(e);
    }
    limits->set("io", io);
  }
  if (limits->size() > 0) body->set("limits", limits);
  if (spec.network) body->set("network", *spec.network);
  if (spec.stdin_pipe) body->set("stdin", "pipe");
  if (spec.name) body->set("name", *spec.name);
  if (!spec.labels.empty()) {
    Poco::JSON::Object::Ptr labels = new Poco::JSON::Object(Poco::JSON_PRESERVE_KEY_ORDER);
    for (const auto& kv : spec.labels) {
      size_t eq = kv.find('=');
      labels->set(kv.substr(0, eq), kv.substr(eq + 1));
    }
    body->set("labels", labels);
  }
  return body;
}

}  // namespace jw::client
