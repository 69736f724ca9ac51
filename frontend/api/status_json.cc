// Job status and error objects as REST JSON (fields in docs/api.md); runs in
// jobworker-frontend's HTTP worker threads.
#include "frontend/api/status_json.h"

#include <Poco/DateTime.h>
#include <Poco/DateTimeFormat.h>
#include <Poco/DateTimeFormatter.h>
#include <Poco/DateTimeParser.h>
#include <Poco/Exception.h>
#include <Poco/Timestamp.h>

#include <cstdio>
#include <type_traits>

#include "common/protocol/messages.h"

namespace jw::frontend {

namespace {

// Year, month, day of a count of days since 1970-01-01 (proleptic Gregorian, days >= 0): the
// civil calendar by 400-year eras, each 146097 days long.
void civilFromDays(int64_t days, int64_t* y, unsigned* m, unsigned* d) {
  days += 719468;  // from 0000-03-01, so that a leap day ends the year
  const int64_t era = days / 146097;
  const auto doe = static_cast<unsigned>(days - era * 146097);                 // [0, 146096]
  const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;  // [0, 399]
  const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);                // [0, 365]
  const unsigned mp = (5 * doy + 2) / 153;                                     // March = 0
  *d = doy - (153 * mp + 2) / 5 + 1;
  *m = mp < 10 ? mp + 3 : mp - 9;
  *y = static_cast<int64_t>(yoe) + era * 400 + (*m <= 2 ? 1 : 0);
}

void putDigits(char* at, unsigned v, int n) {
  for (int i = n - 1; i >= 0; i--) {
    at[i] = static_cast<char>('0' + v % 10);
    v /= 10;
  }
}

}  // namespace

std::string rfc3339Ms(int64_t epoch_ms) {
  // Years 1970-9999 by hand (a list formats two per job, thousands of jobs); anything else
  // through Poco, whose %i is the milliseconds, always three digits.
  constexpr int64_t kYear10000Ms = 253402300800000;
  if (epoch_ms < 0 || epoch_ms >= kYear10000Ms) {
    return Poco::DateTimeFormatter::format(Poco::Timestamp(epoch_ms * 1000),
                                           "%Y-%m-%dT%H:%M:%S.%iZ");
  }
  const int64_t secs = epoch_ms / 1000;
  const auto ms = static_cast<unsigned>(epoch_ms % 1000);
  const auto tod = static_cast<unsigned>(secs % 86400);
  int64_t y;
  unsigned m, d;
  civilFromDays(secs / 86400, &y, &m, &d);
  std::string out = "0000-00-00T00:00:00.000Z";
  putDigits(&out[0], static_cast<unsigned>(y), 4);
  putDigits(&out[5], m, 2);
  putDigits(&out[8], d, 2);
  putDigits(&out[11], tod / 3600, 2);
  putDigits(&out[14], tod / 60 % 60, 2);
  putDigits(&out[17], tod % 60, 2);
  putDigits(&out[20], ms, 3);
  return out;
}

std::optional<int64_t> parseRfc3339Ms(const std::string& text) {
  // Poco's parser is lenient; insist on the shape first: a full date, 'T', a time.
  if (text.size() < 20 || text.size() > 40 || text[4] != '-' || text[7] != '-' ||
      (text[10] != 'T' && text[10] != 't')) {
    return std::nullopt;
  }
  Poco::DateTime dt;
  int tzd = 0;
  try {
    if (!Poco::DateTimeParser::tryParse(Poco::DateTimeFormat::ISO8601_FRAC_FORMAT, text, dt, tzd) &&
        !Poco::DateTimeParser::tryParse(Poco::DateTimeFormat::ISO8601_FORMAT, text, dt, tzd)) {
      return std::nullopt;
    }
  } catch (const Poco::Exception&) {
    return std::nullopt;
  }
  dt.makeUTC(tzd);
  return dt.timestamp().epochMicroseconds() / 1000;
}

std::string coresText(uint32_t millicores) {
  std::string s = std::to_string(millicores / 1000);
  uint32_t frac = millicores % 1000;
  if (frac != 0) {
    char buf[8];
    std::snprintf(buf, sizeof buf, ".%03u", frac);
    std::string f(buf);
    while (f.back() == '0') f.pop_back();
    s += f;
  }
  return s;
}

namespace {

void timeOrNull(JsonWriter& w, std::string_view k, int64_t ms) {
  w.key(k);
  if (ms == 0) {
    w.null();
  } else {
    w.str(rfc3339Ms(ms));
  }
}

// Counts and ids where 0 means "none".
template <typename N>
void numberOrNull(JsonWriter& w, std::string_view k, N v) {
  w.key(k);
  if (v == 0) {
    w.null();
  } else if constexpr (std::is_signed_v<N>) {
    w.num(v);
  } else {
    w.unum(v);
  }
}

void textOrNull(JsonWriter& w, std::string_view k, const std::string& v) {
  w.key(k);
  if (v.empty()) {
    w.null();
  } else {
    w.str(v);
  }
}

void writeLimits(JsonWriter& w, const protocol::Limits& l) {
  w.key("limits").beginObject();
  w.key("cpu");
  if (l.cpu_millicores == 0) {
    w.null();
  } else {
    w.raw(coresText(l.cpu_millicores));
  }
  numberOrNull(w, "memory", l.memory_bytes);
  numberOrNull(w, "pids", l.pids);
  w.key("io").beginArray();
  for (const auto& io : l.io) {
    w.beginObject();
    w.key("device").str(io.device);
    w.key("read_bps").unum(io.read_bps);
    w.key("write_bps").unum(io.write_bps);
    w.key("read_iops").unum(io.read_iops);
    w.key("write_iops").unum(io.write_iops);
    w.endObject();
  }
  w.endArray();
  w.endObject();
}

void writeUsage(JsonWriter& w, const protocol::Usage& u) {
  w.key("usage").beginObject();
  if (u.has_cpu) w.key("cpu_seconds").real(u.cpu_seconds);
  if (u.has_memory) w.key("memory_peak_bytes").unum(u.memory_peak_bytes);
  if (u.has_io) {
    w.key("io_read_bytes").unum(u.io_read_bytes);
    w.key("io_write_bytes").unum(u.io_write_bytes);
  }
  if (u.has_pids) w.key("pids_peak").unum(u.pids_peak);
  w.endObject();
}

}  // namespace

void writeStatus(JsonWriter& w, const protocol::JobStatus& s) {
  using protocol::OutputMode;
  w.beginObject();
  w.key("id").str(s.id);
  w.key("owner").str(s.owner);
  w.key("command").beginArray();
  for (const auto& a : s.command) w.str(a);
  w.endArray();
  w.key("state").str(protocol::jobStateName(s.state));
  numberOrNull(w, "pid", s.pid);
  w.key("exit_code");
  if (s.has_exit_code) {
    w.num(s.exit_code);
  } else {
    w.null();
  }
  numberOrNull(w, "signal", s.signal);
  textOrNull(w, "stopped_by", s.stopped_by);
  textOrNull(w, "error", s.error);
  timeOrNull(w, "created_at", s.created_at_ms);
  timeOrNull(w, "started_at", s.started_at_ms);
  timeOrNull(w, "ended_at", s.ended_at_ms);
  w.key("output").str(s.output == OutputMode::kSeparate ? "separate" : "merged");
  w.key("output_bytes").unum(s.output_bytes);
  w.key("output_truncated").boolean(s.output_truncated);
  w.key("output_dropped_bytes").unum(s.output_dropped_bytes);
  textOrNull(w, "output_error", s.output_error);
  if (s.output == OutputMode::kSeparate) {
    w.key("stderr_bytes").unum(s.stderr_bytes);
    w.key("stderr_truncated").boolean(s.stderr_truncated);
    w.key("stderr_dropped_bytes").unum(s.stderr_dropped_bytes);
    textOrNull(w, "stderr_error", s.stderr_error);
  }
  w.key("oom_killed").boolean(s.oom_killed);
  writeLimits(w, s.limits);
  writeUsage(w, s.usage);
  w.key("isolation").beginArray();
  for (const auto& i : s.isolation) w.str(i);
  w.endArray();
  w.key("run_as").str(s.run_as);
  textOrNull(w, "name", s.name);
  w.key("labels").beginObject();
  for (const auto& l : s.labels) {
    size_t eq = l.find('=');
    w.key(std::string_view(l).substr(0, eq)).str(eq == std::string::npos ? "" : l.substr(eq + 1));
  }
  w.endObject();
  w.key("stdin").str(s.stdin_pipe ? "pipe" : "null");
  if (s.stdin_pipe) {
    w.key("stdin_bytes").unum(s.stdin_bytes);
    w.key("stdin_complete").boolean(s.stdin_complete);
  }
  w.endObject();
}

// {"seq":...,"time":...,"type":...,"job":{...},...} (docs/api.md, GET /v1/events)
void writeEvent(JsonWriter& w, const protocol::JobEvent& e) {
  w.beginObject();
  w.key("seq").unum(e.seq);
  timeOrNull(w, "time", e.time_ms);
  // The end of a job is named by its final state: exited, killed or failed.
  w.key("type").str(e.type == protocol::EventType::kEnded ? protocol::jobStateName(e.state)
                                                          : protocol::eventTypeName(e.type));
  w.key("job").beginObject();
  w.key("id").str(e.job_id);
  w.key("owner").str(e.owner);
  textOrNull(w, "name", e.name);
  w.endObject();
  w.key("state").str(protocol::jobStateName(e.state));
  w.key("exit_code");
  if (e.has_exit_code) {
    w.num(e.exit_code);
  } else {
    w.null();
  }
  numberOrNull(w, "signal", e.signal);
  textOrNull(w, "stopped_by", e.stopped_by);
  textOrNull(w, "error", e.error);
  w.endObject();
}

std::string statusJson(const protocol::JobStatus& s) {
  JsonWriter w;
  writeStatus(w, s);
  return w.take();
}

std::string errorJson(const ApiError& e) {
  JsonWriter w;
  w.beginObject().key("error").beginObject();
  w.key("code").str(e.code);
  w.key("message").str(e.message);
  w.endObject().endObject();
  return w.take();
}

}  // namespace jw::frontend
