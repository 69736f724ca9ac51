// JSON rendering of job statuses and strict validation of request bodies; runs in
// jobworker-frontend's HTTP worker threads.
#include "frontend/api/json_status.h"

#include <Poco/Dynamic/Var.h>
#include <Poco/Exception.h>
#include <Poco/JSON/Array.h>
#include <Poco/JSON/Object.h>
#include <Poco/JSON/Parser.h>

#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <initializer_list>
#include <limits>

#include "common/config.h"
#include "common/protocol/messages.h"

namespace jw::frontend {

// --- JsonWriter -------------------------------------------------------------------------------

void JsonWriter::separate() {
  if (after_key_) {
    after_key_ = false;
    return;
  }
  if (!first_.empty()) {
    if (!first_.back()) out_.push_back(',');
    first_.back() = false;
  }
}

JsonWriter& JsonWriter::beginObject() {
  separate();
  out_.push_back('{');
  first_.push_back(true);
  return *this;
}

JsonWriter& JsonWriter::endObject() {
  out_.push_back('}');
  first_.pop_back();
  return *this;
}

JsonWriter& JsonWriter::beginArray() {
  separate();
  out_.push_back('[');
  first_.push_back(true);
  return *this;
}

JsonWriter& JsonWriter::endArray() {
  out_.push_back(']');
  first_.pop_back();
  return *this;
}

JsonWriter& JsonWriter::key(std::string_view k) {
  str(k);
  out_.push_back(':');
  after_key_ = true;
  return *this;
}

namespace {

// Length of the valid UTF-8 sequence at s[i], or 0 when it is not one.
size_t utf8SequenceLength(std::string_view s, size_t i) {
  auto byte = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  unsigned char c = byte(i);
  if (c < 0x80) return 1;
  size_t len;
  uint32_t cp;
  if (c >= 0xc2 && c <= 0xdf) {
    len = 2;
    cp = c & 0x1f;
  } else if (c >= 0xe0 && c <= 0xef) {
    len = 3;
    cp = c & 0x0f;
  } else if (c >= 0xf0 && c <= 0xf4) {
    len = 4;
    cp = c & 0x07;
  } else {
    return 0;
  }
  if (i + len > s.size()) return 0;
  for (size_t k = 1; k < len; k++) {
    unsigned char cc = byte(i + k);
    if ((cc & 0xc0) != 0x80) return 0;
    cp = (cp << 6) | (cc & 0x3f);
  }
  if (len == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) return 0;
  if (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) return 0;
  return len;
}

}  // namespace

JsonWriter& JsonWriter::str(std::string_view v) {
  separate();
  static const char* hex = "0123456789abcdef";
  out_.push_back('"');
  for (size_t i = 0; i < v.size();) {
    unsigned char c = static_cast<unsigned char>(v[i]);
    if (c >= 0x80) {
      size_t n = utf8SequenceLength(v, i);
      if (n == 0) {
        out_ += "\\ufffd";
        i++;
      } else {
        out_.append(v.substr(i, n));
        i += n;
      }
      continue;
    }
    switch (c) {
      case '"':
        out_ += "\\\"";
        break;
      case '\\':
        out_ += "\\\\";
        break;
      case '\n':
        out_ += "\\n";
        break;
      case '\r':
        out_ += "\\r";
        break;
      case '\t':
        out_ += "\\t";
        break;
      default:
        if (c < 0x20 || c == 0x7f) {
          out_ += "\\u00";
          out_.push_back(hex[c >> 4]);
          out_.push_back(hex[c & 15]);
        } else {
          out_.push_back(static_cast<char>(c));
        }
    }
    i++;
  }
  out_.push_back('"');
  return *this;
}

JsonWriter& JsonWriter::num(int64_t v) { return raw(std::to_string(v)); }
JsonWriter& JsonWriter::unum(uint64_t v) { return raw(std::to_string(v)); }

JsonWriter& JsonWriter::real(double v) {
  if (!std::isfinite(v)) return null();
  char buf[64];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
  if (ec != std::errc()) return null();
  return raw(std::string_view(buf, static_cast<size_t>(end - buf)));
}

JsonWriter& JsonWriter::raw(std::string_view json_number) {
  separate();
  out_.append(json_number);
  return *this;
}

JsonWriter& JsonWriter::boolean(bool v) { return raw(v ? "true" : "false"); }
JsonWriter& JsonWriter::null() { return raw("null"); }

// --- rendering --------------------------------------------------------------------------------

std::string rfc3339Ms(int64_t epoch_ms) {
  using namespace std::chrono;
  sys_time<milliseconds> t{milliseconds{epoch_ms}};
  sys_days day = floor<days>(t);
  year_month_day ymd{day};
  hh_mm_ss<milliseconds> tod{t - day};
  char buf[48];
  std::snprintf(buf, sizeof buf, "%04d-%02u-%02uT%02d:%02d:%02dZ", static_cast<int>(ymd.year()),
                static_cast<unsigned>(ymd.month()), static_cast<unsigned>(ymd.day()),
                static_cast<int>(tod.hours().count()), static_cast<int>(tod.minutes().count()),
                static_cast<int>(tod.seconds().count()));
  std::string s(buf);
  char ms[8];
  std::snprintf(ms, sizeof ms, ".%03d", static_cast<int>(tod.subseconds().count()));
  s.insert(s.size() - 1, ms);
  return s;
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
  w.key("memory");
  if (l.memory_bytes == 0) {
    w.null();
  } else {
    w.unum(l.memory_bytes);
  }
  w.key("pids");
  if (l.pids == 0) {
    w.null();
  } else {
    w.unum(l.pids);
  }
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
  w.key("pid");
  if (s.pid == 0) {
    w.null();
  } else {
    w.num(s.pid);
  }
  w.key("exit_code");
  if (s.has_exit_code) {
    w.num(s.exit_code);
  } else {
    w.null();
  }
  w.key("signal");
  if (s.signal == 0) {
    w.null();
  } else {
    w.num(s.signal);
  }
  textOrNull(w, "stopped_by", s.stopped_by);
  textOrNull(w, "error", s.error);
  timeOrNull(w, "created_at", s.created_at_ms);
  timeOrNull(w, "started_at", s.started_at_ms);
  timeOrNull(w, "ended_at", s.ended_at_ms);
  w.key("output").str(s.output == OutputMode::kSeparate ? "separate" : "merged");
  w.key("output_bytes").unum(s.output_bytes);
  w.key("output_truncated").boolean(s.output_truncated);
  w.key("output_dropped_bytes").unum(s.output_dropped_bytes);
  if (s.output == OutputMode::kSeparate) {
    w.key("stderr_bytes").unum(s.stderr_bytes);
    w.key("stderr_truncated").boolean(s.stderr_truncated);
    w.key("stderr_dropped_bytes").unum(s.stderr_dropped_bytes);
  }
  w.key("oom_killed").boolean(s.oom_killed);
  writeLimits(w, s.limits);
  writeUsage(w, s.usage);
  w.key("isolation").beginArray();
  for (const auto& i : s.isolation) w.str(i);
  w.endArray();
  w.key("run_as").str(s.run_as);
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

bool validUtf8(std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    size_t n = utf8SequenceLength(s, i);
    if (n == 0) return false;
    i += n;
  }
  return true;
}

// --- request parsing --------------------------------------------------------------------------

namespace {

// A parsed JSON value, detached from Poco so the validators below read plainly.
struct Json {
  enum class Type { kNull, kBool, kInt, kUint, kDouble, kString, kArray, kObject };
  Type type = Type::kNull;
  bool b = false;
  int64_t i = 0;
  uint64_t u = 0;
  double d = 0;
  std::string s;
  std::vector<Json> items;
  std::vector<std::pair<std::string, Json>> members;

  bool isNumber() const {
    return type == Type::kInt || type == Type::kUint || type == Type::kDouble;
  }
  bool isInteger() const { return type == Type::kInt || type == Type::kUint; }
  double asDouble() const {
    if (type == Type::kInt) return static_cast<double>(i);
    if (type == Type::kUint) return static_cast<double>(u);
    return d;
  }
};

// Request bodies nest at most 4 deep ({"limits":{"io":[{...}]}}); anything deeper is refused
// before Poco builds it.
constexpr size_t kMaxDepth = 8;

Json fromVar(const Poco::Dynamic::Var& v) {
  Json j;
  if (v.isEmpty()) return j;
  if (v.type() == typeid(Poco::JSON::Object::Ptr)) {
    j.type = Json::Type::kObject;
    auto obj = v.extract<Poco::JSON::Object::Ptr>();
    for (auto it = obj->begin(); it != obj->end(); ++it) {
      j.members.emplace_back(it->first, fromVar(it->second));
    }
  } else if (v.type() == typeid(Poco::JSON::Array::Ptr)) {
    j.type = Json::Type::kArray;
    auto arr = v.extract<Poco::JSON::Array::Ptr>();
    for (auto it = arr->begin(); it != arr->end(); ++it) j.items.push_back(fromVar(*it));
  } else if (v.isBoolean()) {
    j.type = Json::Type::kBool;
    j.b = v.convert<bool>();
  } else if (v.isString()) {
    j.type = Json::Type::kString;
    j.s = v.convert<std::string>();
  } else if (v.isInteger()) {
    if (v.isSigned()) {
      j.type = Json::Type::kInt;
      j.i = v.convert<Poco::Int64>();
    } else {
      j.type = Json::Type::kUint;
      j.u = v.convert<Poco::UInt64>();
    }
  } else {
    j.type = Json::Type::kDouble;
    j.d = v.convert<double>();
  }
  return j;
}

ApiResult<Json> parseJson(std::string_view body) {
  if (!validUtf8(body)) return ApiError{400, "invalid_json", "request body is not valid UTF-8"};
  try {
    Poco::JSON::Parser parser;
    parser.setDepth(kMaxDepth);
    parser.setAllowComments(false);
    parser.setAllowNullByte(false);
    Poco::Dynamic::Var v = parser.parse(std::string(body));
    Json j = fromVar(v);
    if (j.type != Json::Type::kObject) {
      return ApiError{400, "invalid_json", "request body must be a JSON object"};
    }
    return j;
  } catch (const Poco::Exception& e) {
    return ApiError{400, "invalid_json", "malformed JSON: " + e.message()};
  } catch (const std::exception& e) {
    return ApiError{400, "invalid_json", std::string("malformed JSON: ") + e.what()};
  }
}

std::string join(const std::string& prefix, const std::string& name) {
  return prefix.empty() ? name : prefix + "." + name;
}

// Every key of `obj` must be one of `allowed`; the first other key is named in the error.
std::optional<ApiError> checkKeys(const Json& obj, std::initializer_list<std::string_view> allowed,
                                  const std::string& prefix) {
  for (const auto& [k, v] : obj.members) {
    bool known = false;
    for (auto a : allowed) known = known || k == a;
    if (!known) {
      // The key itself may be anything a client sent: keep the message printable.
      JsonWriter quoted;
      quoted.str(join(prefix, k));
      return ApiError{400, "unknown_field", "unknown field " + quoted.take()};
    }
  }
  return std::nullopt;
}

// The member `name`, or nullptr when absent or null (null means "not given").
const Json* member(const Json& obj, std::string_view name) {
  for (const auto& [k, v] : obj.members) {
    if (k == name) return v.type == Json::Type::kNull ? nullptr : &v;
  }
  return nullptr;
}

ApiError wrongType(const std::string& field, std::string_view expected) {
  return badRequest("field " + field + " must be " + std::string(expected));
}

// A string without NUL bytes and valid UTF-8 (escapes like \u0000 or lone surrogates can
// still produce either after decoding).
std::optional<ApiError> checkText(const Json& j, const std::string& field) {
  if (j.type != Json::Type::kString) return wrongType(field, "a string");
  if (j.s.find('\0') != std::string::npos)
    return badRequest("field " + field + " contains a NUL byte");
  if (!validUtf8(j.s)) return badRequest("field " + field + " is not valid UTF-8");
  return std::nullopt;
}

ApiResult<uint64_t> unsignedInteger(const Json& j, const std::string& field, uint64_t max) {
  uint64_t v;
  if (j.type == Json::Type::kUint) {
    v = j.u;
  } else if (j.type == Json::Type::kInt && j.i >= 0) {
    v = static_cast<uint64_t>(j.i);
  } else if (j.type == Json::Type::kDouble && j.d >= 0 && j.d == std::floor(j.d) && j.d < 1e19) {
    v = static_cast<uint64_t>(j.d);  // e.g. 1e6 is an integer written as a float
  } else {
    return wrongType(field, "a non-negative integer");
  }
  if (v > max)
    return badRequest("field " + field + " is too large (at most " + std::to_string(max) + ")");
  return v;
}

// An integer of bytes, or a size string such as "256M".
ApiResult<uint64_t> sizeValue(const Json& j, const std::string& field) {
  if (j.type == Json::Type::kString) {
    auto r = config::parseSize(j.s);
    if (!r) return badRequest("field " + field + ": " + r.error().message);
    return r.value();
  }
  return unsignedInteger(j, field, std::numeric_limits<uint64_t>::max());
}

// Seconds as a JSON number, to milliseconds rounded up (0.0001 s is 1 ms, not "none").
ApiResult<uint32_t> secondsToMs(const Json& j, const std::string& field, bool allow_zero) {
  if (!j.isNumber()) return wrongType(field, "a number of seconds");
  double s = j.asDouble();
  if (!std::isfinite(s) || s < 0 || (!allow_zero && s == 0)) {
    return badRequest("field " + field + (allow_zero ? " must be >= 0" : " must be > 0"));
  }
  double ms = std::ceil(s * 1000.0);
  if (ms > static_cast<double>(std::numeric_limits<uint32_t>::max())) {
    return badRequest("field " + field + " is too large");
  }
  return static_cast<uint32_t>(ms);
}

bool validEnvName(std::string_view k) {
  if (k.empty()) return false;
  auto alpha = [](char c) { return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_'; };
  if (!alpha(k[0])) return false;
  for (char c : k) {
    if (!alpha(c) && !(c >= '0' && c <= '9')) return false;
  }
  return true;
}

std::optional<ApiError> parseCommand(const Json& j, protocol::JobStartRequest& r) {
  if (j.type != Json::Type::kArray) return wrongType("command", "an array of strings");
  if (j.items.empty()) return badRequest("field command must not be empty");
  if (j.items.size() > protocol::kMaxArgs) {
    return tooLarge("command has more than " + std::to_string(protocol::kMaxArgs) + " arguments");
  }
  for (size_t i = 0; i < j.items.size(); i++) {
    std::string field = "command[" + std::to_string(i) + "]";
    if (auto e = checkText(j.items[i], field)) return e;
    r.argv.push_back(j.items[i].s);
  }
  if (r.argv[0].empty()) return badRequest("field command[0] must not be empty");
  return std::nullopt;
}

std::optional<ApiError> parseEnv(const Json& j, protocol::JobStartRequest& r) {
  if (j.type != Json::Type::kObject) return wrongType("env", "an object of strings");
  if (j.members.size() > protocol::kMaxEnv) {
    return tooLarge("env has more than " + std::to_string(protocol::kMaxEnv) + " variables");
  }
  for (const auto& [k, v] : j.members) {
    if (!validEnvName(k)) {
      JsonWriter quoted;
      quoted.str(k);
      return badRequest("env name " + quoted.take() + " must match [A-Za-z_][A-Za-z0-9_]*");
    }
    if (auto e = checkText(v, "env." + k)) return e;
    r.env.push_back(k + "=" + v.s);
  }
  return std::nullopt;
}

std::optional<ApiError> parseIo(const Json& j, protocol::Limits& l) {
  if (j.type != Json::Type::kArray) return wrongType("limits.io", "an array of objects");
  if (j.items.size() > protocol::kMaxIoRules) {
    return badRequest("limits.io has more than " + std::to_string(protocol::kMaxIoRules) +
                      " rules");
  }
  for (size_t i = 0; i < j.items.size(); i++) {
    const Json& o = j.items[i];
    std::string p = "limits.io[" + std::to_string(i) + "]";
    if (o.type != Json::Type::kObject) return wrongType(p, "an object");
    if (auto e = checkKeys(o, {"device", "read_bps", "write_bps", "read_iops", "write_iops"}, p)) {
      return e;
    }
    protocol::IoLimit io;
    const Json* dev = member(o, "device");
    if (dev == nullptr) return badRequest("field " + p + ".device is required");
    if (auto e = checkText(*dev, p + ".device")) return e;
    // The supervisor only looks under /dev (it stats the path as root); say so here already.
    if (dev->s.rfind("/dev/", 0) != 0 || dev->s.size() > protocol::kMaxDevicePath) {
      return badRequest("field " + p + ".device must be a block device path under /dev/");
    }
    io.device = dev->s;
    struct Rate {
      const char* name;
      uint64_t* out;
      bool size;
    } rates[] = {{"read_bps", &io.read_bps, true},
                 {"write_bps", &io.write_bps, true},
                 {"read_iops", &io.read_iops, false},
                 {"write_iops", &io.write_iops, false}};
    for (auto& rate : rates) {
      const Json* v = member(o, rate.name);
      if (v == nullptr) continue;
      std::string f = p + "." + rate.name;
      auto n = rate.size ? sizeValue(*v, f)
                         : unsignedInteger(*v, f, std::numeric_limits<uint64_t>::max());
      if (!n.ok()) return n.error();
      *rate.out = n.value();
    }
    // A rule that limits nothing would still show in the job's "limits" as if it applied.
    if (io.read_bps == 0 && io.write_bps == 0 && io.read_iops == 0 && io.write_iops == 0) {
      return badRequest("field " + p +
                        " sets no rate (read_bps, write_bps, read_iops, write_iops)");
    }
    l.io.push_back(std::move(io));
  }
  return std::nullopt;
}

std::optional<ApiError> parseLimits(const Json& j, protocol::Limits& l) {
  if (j.type != Json::Type::kObject) return wrongType("limits", "an object");
  if (auto e = checkKeys(j, {"cpu", "memory", "pids", "io"}, "limits")) return e;
  if (const Json* cpu = member(j, "cpu")) {
    if (cpu->type == Json::Type::kString) {
      auto m = config::parseCpuMillicores(cpu->s);
      if (!m) return badRequest("field limits.cpu: " + m.error().message);
      l.cpu_millicores = m.value();
    } else if (cpu->isNumber()) {
      double cores = cpu->asDouble();
      if (!std::isfinite(cores) || cores <= 0 || cores > 4096) {
        return badRequest("field limits.cpu must be a number of cores in (0, 4096]");
      }
      l.cpu_millicores = static_cast<uint32_t>(std::llround(cores * 1000));
    } else {
      return wrongType("limits.cpu", "a number of cores");
    }
    // The kernel's smallest CFS quota is 1 ms per 100 ms period (v1 and v2 alike): a smaller
    // value is the client's mistake, better said here than as a failed cgroup write.
    if (l.cpu_millicores < 10) return badRequest("field limits.cpu is too small (at least 0.01)");
  }
  if (const Json* mem = member(j, "memory")) {
    auto m = sizeValue(*mem, "limits.memory");
    if (!m.ok()) return m.error();
    if (m.value() == 0) return badRequest("field limits.memory must be > 0");
    l.memory_bytes = m.value();
  }
  if (const Json* pids = member(j, "pids")) {
    auto p = unsignedInteger(*pids, "limits.pids", std::numeric_limits<uint32_t>::max());
    if (!p.ok()) return p.error();
    if (p.value() == 0) return badRequest("field limits.pids must be > 0");
    l.pids = static_cast<uint32_t>(p.value());
  }
  if (const Json* io = member(j, "io")) {
    if (auto e = parseIo(*io, l)) return e;
  }
  return std::nullopt;
}

}  // namespace

ApiResult<protocol::JobStartRequest> parseJobRequest(std::string_view body) {
  auto parsed = parseJson(body);
  if (!parsed.ok()) return parsed.error();
  const Json& j = parsed.value();
  if (auto e =
          checkKeys(j, {"command", "env", "cwd", "timeout_s", "output", "limits", "network"}, "")) {
    return *e;
  }
  protocol::JobStartRequest r;
  const Json* command = member(j, "command");
  if (command == nullptr) return badRequest("field command is required");
  if (auto e = parseCommand(*command, r)) return *e;
  if (const Json* env = member(j, "env")) {
    if (auto e = parseEnv(*env, r)) return *e;
  }
  if (const Json* cwd = member(j, "cwd")) {
    if (auto e = checkText(*cwd, "cwd")) return *e;
    if (!cwd->s.empty() && cwd->s[0] != '/')
      return badRequest("field cwd must be an absolute path");
    r.cwd = cwd->s;
  }
  if (const Json* t = member(j, "timeout_s")) {
    auto ms = secondsToMs(*t, "timeout_s", false);
    if (!ms.ok()) return ms.error();
    r.timeout_ms = ms.value();
  }
  if (const Json* out = member(j, "output")) {
    if (out->type != Json::Type::kString || (out->s != "merged" && out->s != "separate")) {
      return wrongType("output", "\"merged\" or \"separate\"");
    }
    r.output =
        out->s == "separate" ? protocol::OutputMode::kSeparate : protocol::OutputMode::kMerged;
  }
  if (const Json* limits = member(j, "limits")) {
    if (auto e = parseLimits(*limits, r.limits)) return *e;
  }
  if (const Json* net = member(j, "network")) {
    if (net->type != Json::Type::kString || (net->s != "none" && net->s != "host")) {
      return wrongType("network", "\"none\" or \"host\"");
    }
    r.network = net->s == "host" ? protocol::Network::kHost : protocol::Network::kNone;
  }
  if (protocol::jobSpecBytes(r) > protocol::kMaxJobSpecBytes) {
    return tooLarge("command, env and cwd together exceed " +
                    std::to_string(protocol::kMaxJobSpecBytes) + " bytes");
  }
  return r;
}

ApiResult<LoginBody> parseLoginBody(std::string_view body) {
  auto parsed = parseJson(body);
  if (!parsed.ok()) return parsed.error();
  const Json& j = parsed.value();
  if (auto e = checkKeys(j, {"username", "password"}, "")) return *e;
  LoginBody b;
  const Json* user = member(j, "username");
  const Json* pass = member(j, "password");
  if (user == nullptr) return badRequest("field username is required");
  if (pass == nullptr) return badRequest("field password is required");
  if (auto e = checkText(*user, "username")) return *e;
  if (auto e = checkText(*pass, "password")) return *e;
  b.username = user->s;
  b.password = pass->s;
  return b;
}

ApiResult<std::optional<uint32_t>> parseStopBody(std::string_view body) {
  bool blank = body.find_first_not_of(" \t\r\n") == std::string_view::npos;
  if (blank) return std::optional<uint32_t>();
  auto parsed = parseJson(body);
  if (!parsed.ok()) return parsed.error();
  const Json& j = parsed.value();
  if (auto e = checkKeys(j, {"grace_s"}, "")) return *e;
  const Json* g = member(j, "grace_s");
  if (g == nullptr) return std::optional<uint32_t>();
  auto ms = secondsToMs(*g, "grace_s", true);
  if (!ms.ok()) return ms.error();
  return std::optional<uint32_t>(ms.value());
}

}  // namespace jw::frontend
