// Human-readable output of the jobworker CLI (CLI process).
#include "client/output_format.h"

#include <Poco/DateTime.h>
#include <Poco/DateTimeFormat.h>
#include <Poco/DateTimeParser.h>
#include <string.h>

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <sstream>

namespace jw::client {
namespace {

using Poco::JSON::Object;

std::string str(const Object::Ptr& o, const std::string& key) {
  if (!o || !o->has(key) || o->isNull(key)) return "";
  const auto& v = o->get(key);
  if (v.isString()) return v.extract<std::string>();
  try {
    return v.convert<std::string>();
  } catch (const Poco::Exception&) {
    return "";
  }
}

bool num(const Object::Ptr& o, const std::string& key, double* out) {
  if (!o || !o->has(key) || o->isNull(key) || !o->get(key).isNumeric()) return false;
  try {
    *out = o->get(key).convert<double>();
    return true;
  } catch (const Poco::Exception&) {
    return false;
  }
}

bool boolean(const Object::Ptr& o, const std::string& key) {
  if (!o || !o->has(key) || o->isNull(key)) return false;
  try {
    return o->get(key).convert<bool>();
  } catch (const Poco::Exception&) {
    return false;
  }
}

std::string signalName(int sig) {
  const char* abbrev = sigabbrev_np(sig);
  return abbrev ? std::string("SIG") + abbrev : "signal " + std::to_string(sig);
}

bool parseTime(const std::string& s, Poco::Timestamp* out) {
  // Poco's parser is lenient to the point of reading "garbage" as a date: check the shape
  // (YYYY-MM-DDTHH:MM:SS...) first.
  auto digit = [&](size_t i) { return i < s.size() && s[i] >= '0' && s[i] <= '9'; };
  for (size_t i : {0u, 1u, 2u, 3u, 5u, 6u, 8u, 9u, 11u, 12u, 14u, 15u, 17u, 18u}) {
    if (!digit(i)) return false;
  }
  if (s[4] != '-' || s[7] != '-' || (s[10] != 'T' && s[10] != 't') || s[13] != ':' ||
      s[16] != ':') {
    return false;
  }
  Poco::DateTime dt;
  int tzd = 0;
  if (!Poco::DateTimeParser::tryParse(Poco::DateTimeFormat::ISO8601_FRAC_FORMAT, s, dt, tzd) &&
      !Poco::DateTimeParser::tryParse(Poco::DateTimeFormat::ISO8601_FORMAT, s, dt, tzd)) {
    return false;
  }
  dt.makeUTC(tzd);
  *out = dt.timestamp();
  return true;
}

std::string formatSpan(double seconds) {
  char buf[64];
  if (seconds < 0) seconds = 0;
  if (seconds < 10) {
    std::snprintf(buf, sizeof buf, "%.2fs", seconds);
  } else if (seconds < 120) {
    std::snprintf(buf, sizeof buf, "%.0fs", seconds);
  } else if (seconds < 7200) {
    long whole = static_cast<long>(seconds);
    std::snprintf(buf, sizeof buf, "%ldm%02lds", whole / 60, whole % 60);
  } else {
    std::snprintf(buf, sizeof buf, "%.1fh", seconds / 3600);
  }
  return buf;
}

std::vector<std::string> commandOf(const Object::Ptr& job) {
  std::vector<std::string> argv;
  auto arr = job ? job->getArray("command") : nullptr;
  if (!arr) return argv;
  for (size_t i = 0; i < arr->size(); ++i) {
    argv.push_back(arr->get(static_cast<unsigned>(i)).convert<std::string>());
  }
  return argv;
}

std::string table(const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> width;
  for (const auto& r : rows) {
    width.resize(std::max(width.size(), r.size()));
    for (size_t i = 0; i < r.size(); ++i) width[i] = std::max(width[i], r[i].size());
  }
  std::string out;
  for (const auto& r : rows) {
    std::string line;
    for (size_t i = 0; i < r.size(); ++i) {
      line += r[i];
      if (i + 1 < r.size()) line += std::string(width[i] - r[i].size() + 3, ' ');
    }
    out += line + "\n";
  }
  return out;
}

}  // namespace

int jobExitStatus(const Object::Ptr& job) {
  double v = 0;
  if (num(job, "exit_code", &v)) return std::clamp(static_cast<int>(v), 0, 255);
  if (num(job, "signal", &v) && v > 0 && v < 128) return 128 + static_cast<int>(v);
  return kExitRunFailure;
}

int startFailureExitStatus(int status, const std::string& code) {
  if (status == 422 && code == "program_not_found") return kExitNotFound;
  if (status == 422 && code == "program_not_executable") return kExitNotExecutable;
  return kExitRunFailure;
}

std::string shortId(const std::string& id) { return id.substr(0, kShortIdLength); }

std::string shellQuote(const std::vector<std::string>& argv) {
  std::string out;
  for (const auto& a : argv) {
    if (!out.empty()) out += ' ';
    bool plain = !a.empty() && std::all_of(a.begin(), a.end(), [](unsigned char c) {
      return std::isalnum(c) || std::strchr("@%_+=:,./-", c) != nullptr;
    });
    if (plain) {
      out += a;
      continue;
    }
    out += '\'';
    for (char c : a) {
      if (c == '\'') {
        out += "'\\''";
      } else if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
        out += '?';  // control characters must not reach the terminal raw
      } else {
        out += c;
      }
    }
    out += '\'';
  }
  return out;
}

std::string formatBytes(uint64_t n) {
  static const char* kUnits[] = {"KiB", "MiB", "GiB", "TiB"};
  if (n < 1024) return std::to_string(n) + " B";
  double v = static_cast<double>(n);
  int u = -1;
  while (v >= 1024 && u < 3) {
    v /= 1024;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, v < 10 ? "%.1f %s" : "%.0f %s", v, kUnits[u]);
  return buf;
}

std::string formatAge(const std::string& rfc3339, const Poco::Timestamp& now) {
  Poco::Timestamp t;
  if (!parseTime(rfc3339, &t)) return "";
  int64_t s = std::max<int64_t>(0, (now - t) / Poco::Timestamp::resolution());
  if (s < 60) return std::to_string(s) + "s ago";
  if (s < 3600) return std::to_string(s / 60) + "m ago";
  if (s < 86400) return std::to_string(s / 3600) + "h ago";
  return std::to_string(s / 86400) + "d ago";
}

std::string describeOutcome(const Object::Ptr& job) {
  std::string state = str(job, "state");
  double v = 0;
  if (state == "exited" && num(job, "exit_code", &v)) {
    return "exited " + std::to_string(static_cast<int>(v));
  }
  if (state == "killed") {
    if (boolean(job, "oom_killed")) return "killed (out of memory)";
    if (num(job, "signal", &v)) return "killed (" + signalName(static_cast<int>(v)) + ")";
  }
  return state.empty() ? "?" : state;
}

std::string formatJobTable(const Poco::JSON::Array::Ptr& jobs, const Poco::Timestamp& now) {
  std::vector<std::vector<std::string>> rows{{"ID", "OWNER", "STATE", "CREATED", "COMMAND"}};
  for (size_t i = 0; jobs && i < jobs->size(); ++i) {
    auto job = jobs->getObject(static_cast<unsigned>(i));
    if (!job) continue;
    std::string cmd = shellQuote(commandOf(job));
    if (cmd.size() > 60) cmd = cmd.substr(0, 57) + "...";
    rows.push_back({shortId(str(job, "id")), str(job, "owner"), describeOutcome(job),
                    formatAge(str(job, "created_at"), now), cmd});
  }
  return table(rows);
}

std::string formatStatus(const Object::Ptr& job, const Poco::Timestamp& now) {
  std::vector<std::vector<std::string>> rows;
  auto add = [&](const std::string& k, const std::string& v) {
    if (!v.empty()) rows.push_back({k + ":", v});
  };
  add("ID", str(job, "id"));
  std::string owner = str(job, "owner");
  if (!str(job, "run_as").empty()) owner += " (runs as " + str(job, "run_as") + ")";
  add("Owner", owner);
  add("Command", shellQuote(commandOf(job)));
  std::string state = str(job, "state");
  double v = 0;
  std::string line = state;
  if (state == "running" && num(job, "pid", &v))
    line += " (pid " + std::to_string(static_cast<long>(v)) + ")";
  if (num(job, "exit_code", &v)) line += ", exit code " + std::to_string(static_cast<int>(v));
  if (num(job, "signal", &v))
    line += ", signal " + std::to_string(static_cast<int>(v)) + " (" +
            signalName(static_cast<int>(v)) + ")";
  if (boolean(job, "oom_killed")) line += ", out of memory";
  if (!str(job, "stopped_by").empty()) line += ", stopped by " + str(job, "stopped_by");
  if (!str(job, "error").empty()) line += ": " + str(job, "error");
  add("State", line);
  for (const char* key : {"created_at", "started_at", "ended_at"}) {
    std::string t = str(job, key);
    if (t.empty()) continue;
    std::string label = key == std::string("created_at")   ? "Created"
                        : key == std::string("started_at") ? "Started"
                                                           : "Ended";
    std::string extra = formatAge(t, now);
    add(label, t + (extra.empty() ? "" : " (" + extra + ")"));
  }
  Poco::Timestamp started, ended;
  if (parseTime(str(job, "started_at"), &started)) {
    bool done = parseTime(str(job, "ended_at"), &ended);
    double secs = static_cast<double>((done ? ended : now) - started) / 1e6;
    add(done ? "Ran for" : "Running for", formatSpan(secs));
  }
  auto streamLine = [&](const std::string& prefix, const std::string& kind) {
    double bytes = 0, dropped = 0;
    if (!num(job, prefix + "_bytes", &bytes)) return std::string();
    std::string s = kind + formatBytes(static_cast<uint64_t>(bytes));
    if (boolean(job, prefix + "_truncated")) s += ", truncated";
    if (num(job, prefix + "_dropped_bytes", &dropped) && dropped > 0) {
      s += ", " + formatBytes(static_cast<uint64_t>(dropped)) + " dropped";
    }
    return s;
  };
  std::string out_kind = str(job, "output");
  add("Output", streamLine("output", out_kind.empty() ? "" : out_kind + ", "));
  add("Stderr", streamLine("stderr", ""));
  auto limits = job ? job->getObject("limits") : nullptr;
  if (limits) {
    std::vector<std::string> parts;
    if (num(limits, "cpu", &v)) {
      char buf[32];
      std::snprintf(buf, sizeof buf, "cpu %g", v);
      parts.push_back(buf);
    }
    if (num(limits, "memory", &v))
      parts.push_back("memory " + formatBytes(static_cast<uint64_t>(v)));
    if (num(limits, "pids", &v)) parts.push_back("pids " + std::to_string(static_cast<long>(v)));
    auto io = limits->getArray("io");
    for (size_t i = 0; io && i < io->size(); ++i) {
      auto e = io->getObject(static_cast<unsigned>(i));
      if (!e) continue;
      std::string s = "io " + str(e, "device");
      if (num(e, "read_bps", &v)) s += " read " + formatBytes(static_cast<uint64_t>(v)) + "/s";
      if (num(e, "write_bps", &v)) s += " write " + formatBytes(static_cast<uint64_t>(v)) + "/s";
      if (num(e, "read_iops", &v)) s += " read " + std::to_string(static_cast<long>(v)) + " iops";
      if (num(e, "write_iops", &v)) s += " write " + std::to_string(static_cast<long>(v)) + " iops";
      parts.push_back(s);
    }
    std::string joined;
    for (const auto& p : parts) joined += (joined.empty() ? "" : ", ") + p;
    add("Limits", joined);
  }
  auto usage = job ? job->getObject("usage") : nullptr;
  if (usage) {
    std::vector<std::string> parts;
    if (num(usage, "cpu_seconds", &v)) parts.push_back("cpu " + formatSpan(v));
    if (num(usage, "memory_peak_bytes", &v))
      parts.push_back("memory peak " + formatBytes(static_cast<uint64_t>(v)));
    if (num(usage, "io_read_bytes", &v))
      parts.push_back("read " + formatBytes(static_cast<uint64_t>(v)));
    if (num(usage, "io_write_bytes", &v))
      parts.push_back("written " + formatBytes(static_cast<uint64_t>(v)));
    if (num(usage, "pids_peak", &v))
      parts.push_back("pids peak " + std::to_string(static_cast<long>(v)));
    std::string joined;
    for (const auto& p : parts) joined += (joined.empty() ? "" : ", ") + p;
    add("Usage", joined);
  }
  auto iso = job ? job->getArray("isolation") : nullptr;
  if (iso) {
    std::string joined;
    for (size_t i = 0; i < iso->size(); ++i) {
      joined += (i ? ", " : "") + iso->get(static_cast<unsigned>(i)).convert<std::string>();
    }
    add("Isolation", joined.empty() ? "none" : joined);
  }
  if (!str(job, "network").empty()) add("Network", str(job, "network"));
  std::string out;
  size_t w = 0;
  for (const auto& r : rows) w = std::max(w, r[0].size());
  for (const auto& r : rows) out += r[0] + std::string(w - r[0].size() + 1, ' ') + r[1] + "\n";
  return out;
}

}  // namespace jw::client
