// Logging to stderr and journald (see log.h); runs in both processes.
#include "common/log.h"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#ifdef JW_HAVE_SYSTEMD
#include <sys/uio.h>
// CODE_FILE= and friends would name log.cc for every event: the MESSAGE_ID says where from.
#define SD_JOURNAL_SUPPRESS_LOCATION
#include <systemd/sd-journal.h>
#endif

namespace jw::log {

namespace {
std::string g_identity = "jobworker";
bool g_journal_always = false;  // set once at start, before any thread

void writeLine(const std::string& line) {
  // One write() per line so lines from several threads never interleave mid-line.
  ssize_t ignored = ::write(STDERR_FILENO, line.data(), line.size());
  (void)ignored;
}

[[maybe_unused]] bool underJournald() {
#ifdef JW_HAVE_SYSTEMD
  // Read once; no thread of ours ever calls setenv.
  static const bool yes =
      std::getenv("JOURNAL_STREAM") != nullptr;  // NOLINT(concurrency-mt-unsafe)
  return yes || g_journal_always;
#else
  return false;
#endif
}
}  // namespace

void setIdentity(std::string_view name) { g_identity = std::string(name); }

void sendEventsToJournal() { g_journal_always = true; }

void write(Priority p, std::string_view message) {
  // Appended piece by piece rather than `"<" + std::to_string(...) + ...`: GCC 12 at -O3 inlines
  // operator+(const char*, std::string&&) into a memcpy it wrongly reports as overlapping
  // (-Wrestrict), which broke the release build.
  std::string prio = std::to_string(static_cast<int>(p));
  std::string line;
  line.reserve(prio.size() + g_identity.size() + message.size() + 5);
  line.push_back('<');
  line.append(prio);
  line.push_back('>');
  line.append(g_identity);
  line.append(": ");
  line.append(message);
  line.push_back('\n');
  writeLine(line);
}

void event(Priority p, std::string_view message_id, std::string_view message,
           const Fields& fields) {
#ifdef JW_HAVE_SYSTEMD
  if (underJournald()) {
    std::vector<std::string> parts;
    parts.push_back("MESSAGE=" + std::string(message));
    parts.push_back("MESSAGE_ID=" + std::string(message_id));
    parts.push_back("PRIORITY=" + std::to_string(static_cast<int>(p)));
    parts.push_back("SYSLOG_IDENTIFIER=" + g_identity);
    for (const auto& [k, v] : fields) parts.push_back(k + "=" + v);
    std::vector<iovec> iov;
    for (auto& s : parts) iov.push_back({s.data(), s.size()});
    if (sd_journal_sendv(iov.data(), static_cast<int>(iov.size())) == 0) return;
  }
#else
  (void)message_id;
#endif
  std::string line(message);
  for (const auto& [k, v] : fields) line += " " + k + "=" + quote(v);
  write(p, line);
}

std::string quote(std::string_view s) {
  static const char* hex = "0123456789abcdef";
  std::string out = "\"";
  size_t n = 0;
  for (unsigned char c : s) {
    if (++n > 200) {
      out += "...";
      break;
    }
    if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') {
      out.push_back(static_cast<char>(c));
    } else {
      out += "\\x";
      out.push_back(hex[c >> 4]);
      out.push_back(hex[c & 15]);
    }
  }
  out.push_back('"');
  return out;
}

}  // namespace jw::log
