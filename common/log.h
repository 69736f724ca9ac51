// Logging for both processes: stderr lines with <N> priority prefixes (journald reads them), and
// structured events with a stable MESSAGE_ID and KEY=value fields for what administrators search.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace jw::log {

enum class Priority { kErr = 3, kWarning = 4, kNotice = 5, kInfo = 6, kDebug = 7 };

// Set once at start: the process name shown in each line ("jobworkerd", "jobworker-frontend").
void setIdentity(std::string_view name);

void write(Priority p, std::string_view message);
inline void err(std::string_view m) { write(Priority::kErr, m); }
inline void warning(std::string_view m) { write(Priority::kWarning, m); }
inline void notice(std::string_view m) { write(Priority::kNotice, m); }
inline void info(std::string_view m) { write(Priority::kInfo, m); }

using Fields = std::vector<std::pair<std::string, std::string>>;

// Stable ids (128-bit, as journalctl MESSAGE_ID=) of the events administrators look for; each
// event's fields are listed in docs/operations.md ("Audit events") and always present.
namespace ids {
inline constexpr std::string_view kLogin = "5b0e3a7f1c2d4e8f9a6b3c1d2e4f5a60";
inline constexpr std::string_view kLoginFailed = "5b0e3a7f1c2d4e8f9a6b3c1d2e4f5a61";
inline constexpr std::string_view kJobStart = "5b0e3a7f1c2d4e8f9a6b3c1d2e4f5a62";
inline constexpr std::string_view kJobStop = "5b0e3a7f1c2d4e8f9a6b3c1d2e4f5a63";
inline constexpr std::string_view kJobExit = "5b0e3a7f1c2d4e8f9a6b3c1d2e4f5a64";
inline constexpr std::string_view kFrontendRestart = "5b0e3a7f1c2d4e8f9a6b3c1d2e4f5a65";
inline constexpr std::string_view kProtocolViolation = "5b0e3a7f1c2d4e8f9a6b3c1d2e4f5a66";
inline constexpr std::string_view kControlRefused = "5b0e3a7f1c2d4e8f9a6b3c1d2e4f5a70";
inline constexpr std::string_view kSessionsRevoked = "5b0e3a7f1c2d4e8f9a6b3c1d2e4f5a71";
inline constexpr std::string_view kLoginUnknownUser = "5b0e3a7f1c2d4e8f9a6b3c1d2e4f5a67";
inline constexpr std::string_view kLogout = "5b0e3a7f1c2d4e8f9a6b3c1d2e4f5a68";
inline constexpr std::string_view kRefused = "5b0e3a7f1c2d4e8f9a6b3c1d2e4f5a69";
inline constexpr std::string_view kUsersReload = "5b0e3a7f1c2d4e8f9a6b3c1d2e4f5a6a";
inline constexpr std::string_view kAdminUserChange = "5b0e3a7f1c2d4e8f9a6b3c1d2e4f5a6b";
inline constexpr std::string_view kAccess = "5b0e3a7f1c2d4e8f9a6b3c1d2e4f5a90";
inline constexpr std::string_view kTokenCreated = "5b0e3a7f1c2d4e8f9a6b3c1d2e4f5a91";
}  // namespace ids

// A structured event. Under journald (JOURNAL_STREAM set and libsystemd linked) it is sent with
// sd_journal_send so each field is searchable (journalctl MESSAGE_ID=... JOB_ID=...); otherwise
// it is one stderr line with the fields appended as KEY="value".
// A field may repeat (JOB_ARGV, one per argument): journald keeps every value, in order.
void event(Priority p, std::string_view message_id, std::string_view message, const Fields& fields);

// For a process no unit starts (jobworker-admin, run from a shell): events go to journald
// whenever its socket accepts them, not only under JOURNAL_STREAM; otherwise to stderr.
void sendEventsToJournal();

// Quotes an untrusted string for a log line: printable ASCII kept, everything else \xNN,
// capped at 200 bytes.
std::string quote(std::string_view untrusted);

}  // namespace jw::log
