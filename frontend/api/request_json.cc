// Strict validation of REST request bodies (POST /v1/jobs, /v1/login, /v1/jobs/{id}/stop) into
// protocol requests; runs in jobworker-frontend's HTTP worker threads.
#include "frontend/api/request_json.h"

#include <Poco/Dynamic/Var.h>
#include <Poco/Exception.h>
#include <Poco/JSON/Array.h>
#include <Poco/JSON/Object.h>
#include <Poco/JSON/Parser.h>

#include <cmath>
#include <initializer_list>
#include <limits>

#include "common/config.h"
#include "common/names.h"
#include "common/policy.h"
#include "common/protocol/messages.h"
#include "frontend/api/json_writer.h"

namespace jw::frontend {

namespace {

struct JsonMember;

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
  // Not std::pair<std::string, Json>: a pair needs a complete Json, and clang's libstdc++
  // checks that where GCC lets it pass. A vector of an incomplete type is allowed (C++17).
  std::vector<JsonMember> members;

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

struct JsonMember {
  std::string key;
  Json value;
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
      j.members.push_back({it->first, fromVar(it->second)});
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

// Poco's parser wraps integers past 64 bits (18446744073709551616 becomes 0) and saturates
// negative ones, silently. The raw text is checked first: any integer literal outside
// [INT64_MIN, UINT64_MAX] makes the body a 400, never a different number.
std::optional<ApiError> checkIntegerLiterals(std::string_view body) {
  constexpr std::string_view kMaxUnsigned = "18446744073709551615";
  constexpr std::string_view kMaxNegated = "9223372036854775808";
  bool in_string = false;
  for (size_t i = 0; i < body.size(); i++) {
    char c = body[i];
    if (in_string) {
      if (c == '\\') {
        i++;
      } else if (c == '"') {
        in_string = false;
      }
      continue;
    }
    if (c == '"') {
      in_string = true;
      continue;
    }
    bool negative = c == '-';
    if (!negative && (c < '0' || c > '9')) continue;
    size_t start = negative ? i + 1 : i;
    size_t end = start;
    while (end < body.size() && body[end] >= '0' && body[end] <= '9') end++;
    std::string_view digits = body.substr(start, end - start);
    auto fractionOrExponent = [&](size_t k) {
      return k < body.size() && (body[k] == '.' || body[k] == 'e' || body[k] == 'E');
    };
    if (fractionOrExponent(end)) {
      // A double: Poco parses it as one (its range is checked where a field is read). Skip the
      // whole token so its fraction's digits are not taken for an integer.
      while (end < body.size() && (fractionOrExponent(end) || body[end] == '+' ||
                                   body[end] == '-' || (body[end] >= '0' && body[end] <= '9'))) {
        end++;
      }
      i = end - 1;
      continue;
    }
    std::string_view limit = negative ? kMaxNegated : kMaxUnsigned;
    if (digits.size() > limit.size() || (digits.size() == limit.size() && digits > limit)) {
      return ApiError{400, "bad_request",
                      "number " + std::string(negative ? "-" : "") +
                          std::string(digits.substr(0, 40)) + (digits.size() > 40 ? "..." : "") +
                          " is out of range (a 64-bit integer)"};
    }
    i = end > i ? end - 1 : i;
  }
  return std::nullopt;
}

ApiResult<Json> parseJson(std::string_view body) {
  if (!validUtf8(body)) return ApiError{400, "invalid_json", "request body is not valid UTF-8"};
  if (auto e = checkIntegerLiterals(body)) return *e;
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
    if (!names::validEnvName(k)) {
      JsonWriter quoted;
      quoted.str(k);
      return badRequest("env name " + quoted.take() + " must match " +
                        std::string(names::kEnvNamePattern));
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
      // Millicores, rounded; anything that rounds below the minimum is refused below.
      if (!std::isfinite(cores) || cores <= 0 || cores > policy::kMaxCpuMillicores / 1000.0) {
        return badRequest("field limits.cpu must be in 0.01..4096 cores");
      }
      l.cpu_millicores = static_cast<uint32_t>(std::llround(cores * 1000));
    } else {
      return wrongType("limits.cpu", "a number of cores");
    }
    if (l.cpu_millicores == 0) return badRequest("field limits.cpu must be in 0.01..4096 cores");
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
  if (auto range = policy::outOfRange(l)) return badRequest(*range);
  return std::nullopt;
}

// "name": a job name; "labels": an object of strings, kept as "key=value" in the given order.
std::optional<ApiError> parseNameAndLabels(const Json& j, protocol::JobStartRequest& r) {
  if (const Json* name = member(j, "name")) {
    if (name->type != Json::Type::kString || !names::validJobName(name->s)) {
      return wrongType("name", "a string matching " + std::string(names::kJobNamePattern) +
                                   " that is not a job id");
    }
    r.name = name->s;
  }
  if (const Json* labels = member(j, "labels")) {
    if (labels->type != Json::Type::kObject) return wrongType("labels", "an object of strings");
    for (const auto& [k, v] : labels->members) {
      if (v.type != Json::Type::kString) return wrongType("labels values", "strings");
      r.labels.push_back(k + "=" + v.s);
    }
    if (auto problem = names::labelListProblem(r.labels); !problem.empty()) {
      return badRequest("field labels: " + problem);
    }
  }
  return std::nullopt;
}

}  // namespace

ApiResult<protocol::JobStartRequest> parseJobRequest(std::string_view body) {
  auto parsed = parseJson(body);
  if (!parsed.ok()) return parsed.error();
  const Json& j = parsed.value();
  if (auto e = checkKeys(j,
                         {"command", "env", "cwd", "timeout_s", "output", "limits", "network",
                          "name", "labels", "stdin"},
                         "")) {
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
  if (const Json* in = member(j, "stdin")) {
    if (in->type != Json::Type::kString || (in->s != "null" && in->s != "pipe")) {
      return wrongType("stdin", "\"null\" or \"pipe\"");
    }
    r.stdin_pipe = in->s == "pipe";
  }
  if (auto e = parseNameAndLabels(j, r)) return *e;
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
