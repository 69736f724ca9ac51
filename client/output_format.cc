// Human-readable output of the jobworker CLI (CLI process).
#include "client/output_format.h"

#include <Poco/DateTime.h>
#include <Poco/DateTimeFormat.h>
#include <Poco/DateTimeParser.h>
#include <Poco/JSON/Parser.h>
#include <Poco/JSON/Stringifier.h>
#include <string.h>

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <limits>
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

// A number from the server, as T: clamped into T's range. The server is not trusted, and a cast
// of an out-of-range double (exit_code 3.3e9, bytes -2) is undefined behaviour.
template <typename T>
T clampTo(double v) {
  constexpr auto lo = static_cast<double>(std::numeric_limits<T>::lowest());
  constexpr auto hi = static_cast<double>(std::numeric_limits<T>::max());
  if (!(v > lo)) return std::numeric_limits<T>::lowest();  // also NaN
  if (v >= hi) return std::numeric_limits<T>::max();
  return static_cast<T>(v);
}

// A server's text for the terminal: control characters become '?', so no escape sequence
// from an untrusted server reaches the terminal raw.
std::string terminalSafe(std::string text) {
  for (char& c : text) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = '?';
  }
  return text;
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
  if (num(job, "exit_code", &v)) return std::clamp(clampTo<int>(v), 0, 255);
  if (num(job, "signal", &v) && v > 0 && v < 128) return 128 + clampTo<int>(v);
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
    return "exited " + std::to_string(clampTo<int>(v));
  }
  if (state == "killed") {
    if (boolean(job, "oom_killed")) return "killed (out of memory)";
    if (num(job, "signal", &v)) return "killed (" + signalName(clampTo<int>(v)) + ")";
  }
  return state.empty() ? "?" : state;
}

namespace {

// The colour of a STATE cell: success green, running blue, anything else red.
std::string colourState(const std::string& state) {
  const char* code = state == "exited 0" ? "32" : state == "running" ? "34" : "31";
  return std::string("\x1b[") + code + "m" + state + "\x1b[0m";
}

// "tier=web,env=prod" for the LABELS column.
std::string labelsCell(const Object::Ptr& labels) {
  std::string out;
  if (!labels) return out;
  std::vector<std::string> keys;
  labels->getNames(keys);
  for (const auto& k : keys) out += (out.empty() ? "" : ",") + k + "=" + str(labels, k);
  return out;
}

}  // namespace

std::string formatJobTable(const Poco::JSON::Array::Ptr& jobs, const Poco::Timestamp& now,
                           const TableStyle& style) {
  std::vector<std::vector<std::string>> rows{{"ID", "OWNER", "STATE", "CREATED"}};
  if (style.wide) rows[0].insert(rows[0].end(), {"NAME", "LABELS"});
  rows[0].emplace_back("COMMAND");
  for (size_t i = 0; jobs && i < jobs->size(); ++i) {
    auto job = jobs->getObject(static_cast<unsigned>(i));
    if (!job) continue;
    std::vector<std::string> row{style.no_trunc ? str(job, "id") : shortId(str(job, "id")),
                                 str(job, "owner"), describeOutcome(job),
                                 formatAge(str(job, "created_at"), now)};
    if (style.wide) row.insert(row.end(), {str(job, "name"), labelsCell(job->getObject("labels"))});
    row.push_back(shellQuote(commandOf(job)));
    rows.push_back(std::move(row));
  }
  // On a terminal, the command is cut so that each line fits; elsewhere nothing is cut.
  if (style.columns > 0 && !style.no_trunc) {
    size_t before = 0;  // width of the columns before COMMAND, with their separators
    for (size_t c = 0; c + 1 < rows[0].size(); ++c) {
      size_t w = 0;
      for (const auto& r : rows) w = std::max(w, r[c].size());
      before += w + 3;
    }
    size_t room = style.columns > before + 10 ? style.columns - before : 10;
    for (auto& r : rows) {
      if (r.back().size() > room) r.back() = r.back().substr(0, room - 3) + "...";
    }
  }
  std::string out = table(rows);
  if (!style.colour) return out;
  // Colour after the layout, so the escape codes take no width.
  for (size_t i = 1; i < rows.size(); ++i) {
    const std::string& state = rows[i][2];
    size_t line = 0;
    for (size_t n = 0; n < i; ++n) line = out.find('\n', line) + 1;
    size_t at = out.find(state, line + rows[i][0].size());
    if (at != std::string::npos) out.replace(at, state.size(), colourState(state));
  }
  return out;
}

namespace {

std::string yamlScalar(const Poco::Dynamic::Var& v) {
  if (v.isEmpty()) return "null";
  if (v.isString()) {
    std::ostringstream os;
    Poco::JSON::Stringifier::formatString(v.extract<std::string>(), os);
    return os.str();
  }
  if (v.type() == typeid(bool)) return v.extract<bool>() ? "true" : "false";
  return v.convert<std::string>();
}

// Writes what follows "key:" or "-": " scalar", or the block of a non-empty object or array on
// the next lines at `indent`.
void yamlValue(const Poco::Dynamic::Var& v, size_t indent, std::string& out) {
  const std::string pad(indent, ' ');
  if (v.type() == typeid(Object::Ptr)) {
    auto o = v.extract<Object::Ptr>();
    std::vector<std::string> keys;
    o->getNames(keys);
    if (keys.empty()) {
      out += " {}\n";
      return;
    }
    out += "\n";
    for (const auto& k : keys) {
      out += pad + k + ":";
      yamlValue(o->get(k), indent + 2, out);
    }
    return;
  }
  if (v.type() == typeid(Poco::JSON::Array::Ptr)) {
    auto a = v.extract<Poco::JSON::Array::Ptr>();
    if (a->size() == 0) {
      out += " []\n";
      return;
    }
    out += "\n";
    for (size_t i = 0; i < a->size(); ++i) {
      out += pad + "-";
      yamlValue(a->get(static_cast<unsigned>(i)), indent + 2, out);
    }
    return;
  }
  out += " " + yamlScalar(v) + "\n";
}

}  // namespace

std::string jsonToYaml(const std::string& json) {
  Poco::JSON::Parser p;
  Poco::Dynamic::Var v = p.parse(json);
  std::string out;
  yamlValue(v, 0, out);
  // The top level's block starts on the first line, not after a newline.
  return out.empty() || out[0] != '\n' ? out : out.substr(1);
}

namespace {

// The "Key: value" rows of `jobworker status`; a row with nothing to say is left out.
class StatusBlock {
 public:
  void add(const std::string& key, const std::string& value) {
    if (!value.empty()) rows_.push_back({key + ":", value});
  }
  std::string render() const {
    size_t w = 0;
    for (const auto& r : rows_) w = std::max(w, r.key.size());
    std::string out;
    for (const auto& r : rows_)
      out += r.key + std::string(w - r.key.size() + 1, ' ') + r.value + "\n";
    return out;
  }

 private:
  struct Row {
    std::string key, value;
  };
  std::vector<Row> rows_;
};

std::string joinComma(const std::vector<std::string>& parts) {
  std::string joined;
  for (const auto& p : parts) joined += (joined.empty() ? "" : ", ") + p;
  return joined;
}

std::string ownerLine(const Object::Ptr& job) {
  std::string owner = str(job, "owner");
  if (!str(job, "run_as").empty()) owner += " (runs as " + str(job, "run_as") + ")";
  return owner;
}

// "running (pid 42)", "killed, signal 9 (SIGKILL), stopped by alice", "failed: <error>".
std::string stateLine(const Object::Ptr& job) {
  std::string line = str(job, "state");
  double v = 0;
  if (line == "running" && num(job, "pid", &v)) {
    line += " (pid " + std::to_string(clampTo<long>(v)) + ")";
  }
  if (num(job, "exit_code", &v)) line += ", exit code " + std::to_string(clampTo<int>(v));
  if (num(job, "signal", &v)) {
    line +=
        ", signal " + std::to_string(clampTo<int>(v)) + " (" + signalName(clampTo<int>(v)) + ")";
  }
  if (boolean(job, "oom_killed")) line += ", out of memory";
  if (!str(job, "stopped_by").empty()) line += ", stopped by " + str(job, "stopped_by");
  if (!str(job, "error").empty()) line += ": " + terminalSafe(str(job, "error"));
  return line;
}

// Created/Started/Ended with their ages, then how long the job ran (or has been running).
void addTimes(StatusBlock& block, const Object::Ptr& job, const Poco::Timestamp& now) {
  static const std::pair<const char*, const char*> kTimes[] = {
      {"created_at", "Created"}, {"started_at", "Started"}, {"ended_at", "Ended"}};
  for (const auto& [key, label] : kTimes) {
    std::string t = str(job, key);
    if (t.empty()) continue;
    std::string age = formatAge(t, now);
    block.add(label, t + (age.empty() ? "" : " (" + age + ")"));
  }
  Poco::Timestamp started, ended;
  if (parseTime(str(job, "started_at"), &started)) {
    bool done = parseTime(str(job, "ended_at"), &ended);
    double secs = static_cast<double>((done ? ended : now) - started) / 1e6;
    block.add(done ? "Ran for" : "Running for", formatSpan(secs));
  }
}

// "<kind>12 KiB, truncated, 3 KiB dropped (no space left on device at byte 12288)" for the
// stream whose fields start with `prefix` ("output", "stderr").
std::string streamLine(const Object::Ptr& job, const std::string& prefix, const std::string& kind) {
  double bytes = 0, dropped = 0;
  if (!num(job, prefix + "_bytes", &bytes)) return "";
  std::string s = kind + formatBytes(clampTo<uint64_t>(bytes));
  if (boolean(job, prefix + "_truncated")) s += ", truncated";
  if (num(job, prefix + "_dropped_bytes", &dropped) && dropped > 0) {
    s += ", " + formatBytes(clampTo<uint64_t>(dropped)) + " dropped";
  }
  if (std::string error = str(job, prefix + "_error"); !error.empty()) {
    s += " (" + terminalSafe(error) + ")";
  }
  return s;
}

std::string ioLimitPart(const Object::Ptr& e) {
  double v = 0;
  std::string s = "io " + str(e, "device");
  if (num(e, "read_bps", &v)) s += " read " + formatBytes(clampTo<uint64_t>(v)) + "/s";
  if (num(e, "write_bps", &v)) s += " write " + formatBytes(clampTo<uint64_t>(v)) + "/s";
  if (num(e, "read_iops", &v)) s += " read " + std::to_string(clampTo<long>(v)) + " iops";
  if (num(e, "write_iops", &v)) s += " write " + std::to_string(clampTo<long>(v)) + " iops";
  return s;
}

std::string limitsLine(const Object::Ptr& limits) {
  if (!limits) return "";
  std::vector<std::string> parts;
  double v = 0;
  if (num(limits, "cpu", &v)) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "cpu %g", v);
    parts.push_back(buf);
  }
  if (num(limits, "memory", &v)) parts.push_back("memory " + formatBytes(clampTo<uint64_t>(v)));
  if (num(limits, "pids", &v)) parts.push_back("pids " + std::to_string(clampTo<long>(v)));
  auto io = limits->getArray("io");
  for (size_t i = 0; io && i < io->size(); ++i) {
    if (auto e = io->getObject(static_cast<unsigned>(i))) parts.push_back(ioLimitPart(e));
  }
  return joinComma(parts);
}

std::string usageLine(const Object::Ptr& usage) {
  if (!usage) return "";
  std::vector<std::string> parts;
  double v = 0;
  if (num(usage, "cpu_seconds", &v)) parts.push_back("cpu " + formatSpan(v));
  if (num(usage, "memory_peak_bytes", &v)) {
    parts.push_back("memory peak " + formatBytes(clampTo<uint64_t>(v)));
  }
  if (num(usage, "io_read_bytes", &v)) {
    parts.push_back("read " + formatBytes(clampTo<uint64_t>(v)));
  }
  if (num(usage, "io_write_bytes", &v)) {
    parts.push_back("written " + formatBytes(clampTo<uint64_t>(v)));
  }
  if (num(usage, "pids_peak", &v)) {
    parts.push_back("pids peak " + std::to_string(clampTo<long>(v)));
  }
  return joinComma(parts);
}

// "" when the job says nothing about isolation, "none" when it says it has none.
std::string isolationLine(const Poco::JSON::Array::Ptr& iso) {
  if (!iso) return "";
  std::vector<std::string> parts;
  for (size_t i = 0; i < iso->size(); ++i) {
    parts.push_back(iso->get(static_cast<unsigned>(i)).convert<std::string>());
  }
  return parts.empty() ? "none" : joinComma(parts);
}

}  // namespace

// "env=prod, tier=web" (by key); "" without labels.
std::string labelsLine(const Object::Ptr& labels) {
  std::string out;
  if (!labels) return out;
  std::vector<std::string> names;
  labels->getNames(names);
  for (const auto& k : names) out += (out.empty() ? "" : ", ") + k + "=" + str(labels, k);
  return out;
}

std::string formatStatus(const Object::Ptr& job, const Poco::Timestamp& now) {
  StatusBlock block;
  block.add("ID", str(job, "id"));
  block.add("Name", str(job, "name"));
  block.add("Labels", labelsLine(job ? job->getObject("labels") : nullptr));
  block.add("Owner", ownerLine(job));
  block.add("Command", shellQuote(commandOf(job)));
  block.add("State", stateLine(job));
  addTimes(block, job, now);
  std::string out_kind = str(job, "output");
  block.add("Output", streamLine(job, "output", out_kind.empty() ? "" : out_kind + ", "));
  block.add("Stderr", streamLine(job, "stderr", ""));
  block.add("Limits", limitsLine(job ? job->getObject("limits") : nullptr));
  block.add("Usage", usageLine(job ? job->getObject("usage") : nullptr));
  block.add("Isolation", isolationLine(job ? job->getArray("isolation") : nullptr));
  block.add("Network", str(job, "network"));
  return block.render();
}

}  // namespace jw::client
