// Human-readable output of the jobworker CLI (CLI process): job tables, status blocks, and the
// exit status a finished job maps to.
#pragma once

#include <Poco/JSON/Array.h>
#include <Poco/JSON/Object.h>
#include <Poco/Timestamp.h>

#include <cstdint>
#include <string>
#include <vector>

namespace jw::client {

// Exit statuses (docs/cli.md). `run` passes the job's own status through instead.
constexpr int kExitOk = 0;
constexpr int kExitFailure = 1;
constexpr int kExitUsage = 2;
constexpr int kExitRunFailure = 125;  // run: jobworker itself failed
constexpr int kExitNotExecutable = 126;
constexpr int kExitNotFound = 127;
constexpr int kExitDetached = 130;  // run: detached by a second Ctrl-C (128 + SIGINT)
constexpr size_t kShortIdLength = 8;

// What `run` exits with for a finished job: its exit code, 128+N for signal N, 125 when it
// never ran (state "failed") or the status makes no sense.
int jobExitStatus(const Poco::JSON::Object::Ptr& job);
// What `run` exits with when POST /v1/jobs answered `status` with API error `code`.
int startFailureExitStatus(int status, const std::string& code);

std::string shortId(const std::string& id);
// argv as a shell would need it typed (for display only).
std::string shellQuote(const std::vector<std::string>& argv);
std::string formatBytes(uint64_t n);
// "12s ago", "3m ago", "5h ago", "2d ago"; "" when the time does not parse.
std::string formatAge(const std::string& rfc3339, const Poco::Timestamp& now);
// "exited 3", "killed (SIGKILL)", "running", "failed" ...: the STATE column and status line.
std::string describeOutcome(const Poco::JSON::Object::Ptr& job);

// How a job table is laid out.
struct TableStyle {
  bool wide = false;      // NAME and LABELS columns too
  bool no_trunc = false;  // full ids, commands never shortened
  size_t columns = 0;     // a terminal's width: the COMMAND column is cut to fit; 0: never cut
  bool colour = false;    // states in colour (a terminal without NO_COLOR)
};
std::string formatJobTable(const Poco::JSON::Array::Ptr& jobs, const Poco::Timestamp& now,
                           const TableStyle& style = {});
// A JSON text as block YAML (strings double-quoted, so every scalar reads back as it was).
std::string jsonToYaml(const std::string& json);
std::string formatStatus(const Poco::JSON::Object::Ptr& job, const Poco::Timestamp& now);

}  // namespace jw::client
