// One validator per kind of name (users, Unix accounts, environment variables, job ids), shared by
// jobworkerd, jobworker-frontend, jobworker-admin and the CLI so that no two disagree.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace jw::names {

// The patterns, for error messages that tell the user what is allowed.
inline constexpr std::string_view kUserNamePattern = "[a-z_][a-z0-9_.-]{0,31}";
inline constexpr std::string_view kEnvNamePattern = "[A-Za-z_][A-Za-z0-9_]*";

// A jobworker user (the users file, login, session and job owner): [a-z_][a-z0-9_.-]{0,31}.
bool validUserName(std::string_view name);

// Syntax of a Unix account name (a user's run_as): [A-Za-z_][A-Za-z0-9_.-]*[$]?, at most 32
// bytes. Wider than useradd's default so directory-service names ("first.last") work; never ':'
// or whitespace. Existence is checked separately (the supervisor's lookupAccount).
bool validAccountName(std::string_view name);

// An environment variable name a job may be given: [A-Za-z_][A-Za-z0-9_]*.
bool validEnvName(std::string_view name);

// A job id as jobworkerd makes them: a random UUIDv4 in lowercase text form
// (xxxxxxxx-xxxx-4xxx-[89ab]xxx-xxxxxxxxxxxx). The id names a directory in the output store and
// in every cgroup hierarchy, so this is also what keeps a forged id from leaving them: no '/',
// no '.', nothing but hex digits and four dashes.
bool validJobId(std::string_view id);

// A job's optional name: [A-Za-z0-9][A-Za-z0-9_.-]{0,62}, never in the form of a job id (an id
// always means the job it names). Unique per owner among running jobs (jobworkerd's rule).
inline constexpr std::string_view kJobNamePattern = "[A-Za-z0-9][A-Za-z0-9_.-]{0,62}";
inline constexpr size_t kMaxJobName = 63;
bool validJobName(std::string_view name);

// Job labels, "key=value" each: key [A-Za-z0-9][A-Za-z0-9_./-]{0,62}, value [A-Za-z0-9_.-]{0,63},
// at most kMaxLabels per job with distinct keys. The same syntax selects jobs in a list.
inline constexpr std::string_view kLabelPattern =
    "KEY=VALUE, KEY [A-Za-z0-9][A-Za-z0-9_./-]{0,62}, VALUE [A-Za-z0-9_.-]{0,63}";
inline constexpr size_t kMaxLabels = 32;
inline constexpr size_t kMaxLabelKey = 63;
inline constexpr size_t kMaxLabelValue = 63;
inline constexpr size_t kMaxLabelText = kMaxLabelKey + 1 + kMaxLabelValue;
bool validLabel(std::string_view key_value);
// The first problem of a job's label list (a malformed label, a repeated key, too many), or ""
// when there is none.
std::string labelListProblem(const std::vector<std::string>& labels);

}  // namespace jw::names
