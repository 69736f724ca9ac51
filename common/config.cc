// Configuration file parser (see config.h); runs in both processes.
#include "common/config.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <limits>
#include <sstream>
#include <vector>

namespace jw::config {

namespace {

std::string trim(const std::string& s) {
  size_t b = s.find_first_not_of(" \t\r");
  if (b == std::string::npos) return "";
  size_t e = s.find_last_not_of(" \t\r");
  return s.substr(b, e - b + 1);
}

Result<uint64_t> parseUnsigned(const std::string& s) {
  if (s.empty() || s.find_first_not_of("0123456789") != std::string::npos) {
    return Error{"expected a non-negative integer, got '" + s + "'"};
  }
  errno = 0;
  unsigned long long v = std::strtoull(s.c_str(), nullptr, 10);
  if (errno == ERANGE) return Error{"number out of range: '" + s + "'"};
  return static_cast<uint64_t>(v);
}

Result<bool> parseBool(const std::string& s) {
  if (s == "true" || s == "yes" || s == "on") return true;
  if (s == "false" || s == "no" || s == "off") return false;
  return Error{"expected true or false, got '" + s + "'"};
}

template <typename T>
Status assign(Result<T> r, T& out) {
  if (!r) return r.error();
  out = r.value();
  return okStatus();
}

template <typename T, typename U>
Status assignOpt(Result<U> r, std::optional<T>& out) {
  if (!r) return r.error();
  if (r.value() > std::numeric_limits<T>::max()) return Error{"value out of range"};
  out = static_cast<T>(r.value());
  return okStatus();
}

Result<uint32_t> parseU32(const std::string& s) {
  auto v = parseUnsigned(s);
  if (!v) return v.error();
  if (v.value() > UINT32_MAX) return Error{"number out of range: '" + s + "'"};
  return static_cast<uint32_t>(v.value());
}

// Keys of a LimitSet: cpu, memory, pids, io_bps, io_iops. `unlimited` is 0 for a default (no
// limit applied) and the type's maximum for a maximum (nothing is over it).
Status setLimit(LimitSet& l, const std::string& key, const std::string& v, bool* known,
                bool is_max) {
  *known = true;
  if (v == "unlimited") {
    if (key == "cpu") {
      l.cpu_millicores = is_max ? UINT32_MAX : 0;
    } else if (key == "memory") {
      l.memory_bytes = is_max ? UINT64_MAX : 0;
    } else if (key == "pids") {
      l.pids = is_max ? UINT32_MAX : 0;
    } else if (key == "io_bps") {
      l.io_bps = is_max ? UINT64_MAX : 0;
    } else if (key == "io_iops") {
      l.io_iops = is_max ? UINT64_MAX : 0;
    } else {
      *known = false;
    }
    return okStatus();
  }
  if (key == "cpu") return assignOpt(parseCpuMillicores(v), l.cpu_millicores);
  if (key == "memory") return assignOpt(parseSize(v), l.memory_bytes);
  if (key == "pids") return assignOpt(parseU32(v), l.pids);
  if (key == "io_bps") return assignOpt(parseSize(v), l.io_bps);
  if (key == "io_iops") return assignOpt(parseUnsigned(v), l.io_iops);
  *known = false;
  return okStatus();
}

// Keys of a Policy: max.total_<cpu|memory|pids>, max.<limit>, network_host, allow_root, seccomp.
Status setPolicy(Policy& p, const std::string& key, const std::string& v, bool* known) {
  if (key.rfind("max.total_", 0) == 0) {
    std::string limit = key.substr(10);
    // IO rates are per device: an aggregate of them means nothing to the kernel.
    if (limit != "cpu" && limit != "memory" && limit != "pids") {
      *known = false;
      return okStatus();
    }
    return setLimit(p.total, limit, v, known, true);
  }
  if (key.rfind("max.", 0) == 0) return setLimit(p.max, key.substr(4), v, known, true);
  *known = true;
  if (key == "network_host") return assignOpt(parseBool(v), p.allow_network_host);
  if (key == "allow_root") return assignOpt(parseBool(v), p.allow_root);
  if (key == "seccomp") return assignOpt(parseBool(v), p.seccomp);
  *known = false;
  return okStatus();
}

// Every top-level key: how it is set, and how its current value reads back (check-config).
struct Key {
  std::function<Status(const std::string&)> set;
  std::function<std::string()> show;
};

std::map<std::string, Key> keyTable(Settings& s) {
  using Setter = Key;
  auto str = [](std::string& f) -> Setter {
    return {[&f](const std::string& x) -> Status {
              if (x.empty()) return Error{"empty value"};
              f = x;
              return okStatus();
            },
            [&f] { return f; }};
  };
  auto u32 = [](uint32_t& f) -> Setter {
    return {[&f](const std::string& x) { return assign(parseU32(x), f); },
            [&f] { return std::to_string(f); }};
  };
  auto size = [](uint64_t& f) -> Setter {
    return {[&f](const std::string& x) { return assign(parseSize(x), f); },
            [&f] { return std::to_string(f); }};
  };
  auto dur = [](uint64_t& f) -> Setter {
    return {[&f](const std::string& x) { return assign(parseDurationMs(x), f); },
            [&f] { return std::to_string(f) + "ms"; }};
  };
  auto boolean = [](bool& f) -> Setter {
    return {[&f](const std::string& x) { return assign(parseBool(x), f); },
            [&f] { return std::string(f ? "true" : "false"); }};
  };
  auto accessLog = [](Settings::AccessLog& f) -> Setter {
    return {[&f](const std::string& x) -> Status {
              if (x == "off") {
                f = Settings::AccessLog::kOff;
              } else if (x == "sampled") {
                f = Settings::AccessLog::kSampled;
              } else if (x == "all") {
                f = Settings::AccessLog::kAll;
              } else {
                return Error{"expected off, sampled or all"};
              }
              return okStatus();
            },
            [&f] {
              return std::string(f == Settings::AccessLog::kOff       ? "off"
                                 : f == Settings::AccessLog::kSampled ? "sampled"
                                                                      : "all");
            }};
  };
  return {
      {"listen", str(s.listen)},
      {"tls_cert", str(s.tls_cert)},
      {"tls_key", str(s.tls_key)},
      {"http_threads", u32(s.http_threads)},
      {"max_connections", u32(s.max_connections)},
      {"max_connections_per_client", u32(s.max_connections_per_client)},
      {"handshake_timeout", dur(s.handshake_timeout_ms)},
      {"idle_timeout", dur(s.idle_timeout_ms)},
      {"header_timeout", dur(s.header_timeout_ms)},
      {"body_timeout", dur(s.body_timeout_ms)},
      {"min_receive_rate", size(s.min_receive_rate)},
      {"send_timeout", dur(s.send_timeout_ms)},
      {"max_request_head", size(s.max_request_head)},
      {"max_request_body", size(s.max_request_body)},
      {"max_buffered_bytes", size(s.max_buffered_bytes)},
      {"max_queued_requests", u32(s.max_queued_requests)},
      {"max_concurrent_password_checks", u32(s.max_concurrent_password_checks)},
      {"access_log", accessLog(s.access_log)},
      {"access_log_rate", u32(s.access_log_rate)},
      {"session_ttl", dur(s.session_ttl_ms)},
      {"login_max_failures", u32(s.login_max_failures)},
      {"login_lockout", dur(s.login_lockout_ms)},
      {"state_dir", str(s.state_dir)},
      {"control_socket", str(s.control_socket)},
      {"users_file", str(s.users_file)},
      {"frontend_user", str(s.frontend_user)},
      {"verifier_user", str(s.verifier_user)},
      {"output_cap", size(s.output_cap_bytes)},
      {"stop_grace", dur(s.stop_grace_ms)},
      {"default_timeout", dur(s.default_timeout_ms)},
      {"max_timeout", dur(s.max_timeout_ms)},
      {"retention_count", u32(s.retention_count)},
      {"retention_age", dur(s.retention_age_ms)},
      {"retention_total", u32(s.retention_total)},
      {"state_reserve", size(s.state_reserve_bytes)},
      {"max_running_jobs_per_user", u32(s.max_running_jobs_per_user)},
      {"metrics_max_users", u32(s.metrics_max_users)},
      {"max_token_ttl", dur(s.max_token_ttl_ms)},
      {"job_path", str(s.job_path)},
      {"job_lang", str(s.job_lang)},
      {"isolation.pid", boolean(s.isolate_pid)},
      {"isolation.mount", boolean(s.isolate_mount)},
      {"isolation.net", boolean(s.isolate_net)},
      {"isolation.uts", boolean(s.isolate_uts)},
      {"isolation.ipc", boolean(s.isolate_ipc)},
      {"isolation.cgroups", boolean(s.use_cgroups)},
      {"isolation.seccomp", boolean(s.job_seccomp)},
      {"job_tmp_size", size(s.job_tmp_size)},
      {"job_core_dumps", boolean(s.job_core_dumps)},
  };
}

Status setKey(Settings& s, const std::string& key, const std::string& v, bool* known) {
  const std::map<std::string, Key> table = keyTable(s);

  if (auto it = table.find(key); it != table.end()) {
    *known = true;
    return it->second.set(v);
  }
  if (key.rfind("default.", 0) == 0) {
    // IO limits name a device, so a job asks for them itself; only maxima exist for them.
    if (key == "default.io_bps" || key == "default.io_iops") {
      *known = true;
      return Error{"IO limits have no default (they name a device); set max.io_bps/max.io_iops"};
    }
    return setLimit(s.default_limits, key.substr(8), v, known, false);
  }
  if (key.rfind("max.", 0) == 0 || key == "network_host" || key == "allow_root") {
    return setPolicy(s.global, key, v, known);
  }
  // role.<name>.<policy key> and user.<name>.<policy key>
  for (const char* prefix : {"role.", "user."}) {
    if (key.rfind(prefix, 0) != 0) continue;
    std::string rest = key.substr(5);
    size_t dot = rest.find('.');
    if (dot == std::string::npos || dot == 0) break;
    std::string name = rest.substr(0, dot);
    auto& map = prefix[0] == 'r' ? s.roles : s.users;
    if (prefix[0] == 'r' && name != "admin" && name != "user" && name != "viewer" &&
        name != "metrics") {
      return Error{"unknown role '" + name + "'"};
    }
    return setPolicy(map[name], rest.substr(dot + 1), v, known);
  }
  *known = false;
  return okStatus();
}

}  // namespace

Result<uint64_t> parseSize(const std::string& in) {
  std::string s = trim(in);
  if (s.empty()) return Error{"empty size"};
  uint64_t mult = 1;
  char last = s.back();
  std::string digits = s;
  if (last == 'B' || last == 'b') digits.pop_back();
  if (!digits.empty()) {
    switch (digits.back()) {
      case 'K':
      case 'k':
        mult = 1ULL << 10;
        break;
      case 'M':
      case 'm':
        mult = 1ULL << 20;
        break;
      case 'G':
      case 'g':
        mult = 1ULL << 30;
        break;
      case 'T':
      case 't':
        mult = 1ULL << 40;
        break;
      default:
        break;
    }
    if (mult != 1) digits.pop_back();
  }
  auto v = parseUnsigned(digits);
  if (!v) return Error{"bad size '" + in + "' (use bytes or K/M/G/T)"};
  if (v.value() > UINT64_MAX / mult) return Error{"size out of range: '" + in + "'"};
  return v.value() * mult;
}

Result<uint64_t> parseDurationMs(const std::string& in) {
  std::string s = trim(in);
  uint64_t mult = 1000;
  std::string digits = s;
  if (s.size() > 2 && s.compare(s.size() - 2, 2, "ms") == 0) {
    mult = 1;
    digits = s.substr(0, s.size() - 2);
  } else if (!s.empty()) {
    switch (s.back()) {
      case 's':
        mult = 1000;
        digits.pop_back();
        break;
      case 'm':
        mult = 60'000;
        digits.pop_back();
        break;
      case 'h':
        mult = 3'600'000;
        digits.pop_back();
        break;
      case 'd':
        mult = 86'400'000;
        digits.pop_back();
        break;
      default:
        break;
    }
  }
  auto v = parseUnsigned(digits);
  if (!v) return Error{"bad duration '" + in + "' (use ms, s, m, h or d)"};
  if (v.value() > UINT64_MAX / mult) return Error{"duration out of range: '" + in + "'"};
  return v.value() * mult;
}

Result<uint32_t> parseCpuMillicores(const std::string& in) {
  std::string s = trim(in);
  if (s.empty() || s.find_first_not_of("0123456789.") != std::string::npos) {
    return Error{"bad cpu value '" + in + "' (cores, fractions allowed)"};
  }
  char* end = nullptr;
  double d = std::strtod(s.c_str(), &end);
  if (end == nullptr || *end != '\0' || !std::isfinite(d) || d <= 0 || d > 4096) {
    return Error{"bad cpu value '" + in + "' (cores, fractions allowed)"};
  }
  uint32_t m = static_cast<uint32_t>(std::llround(d * 1000));
  if (m == 0) return Error{"cpu value too small: '" + in + "' (at least 0.001)"};
  return m;
}

Result<Settings> parse(const std::string& text, const std::string& origin) {
  Settings s;
  std::istringstream in(text);
  std::string line;
  int n = 0;
  while (std::getline(in, line)) {
    n++;
    if (size_t hash = line.find('#'); hash != std::string::npos) line.resize(hash);
    line = trim(line);
    if (line.empty()) continue;
    size_t eq = line.find('=');
    std::string where = origin + ":" + std::to_string(n);
    if (eq == std::string::npos) return Error{where + ": expected 'key = value'"};
    std::string key = trim(line.substr(0, eq));
    std::string value = trim(line.substr(eq + 1));
    bool known = false;
    Status st = setKey(s, key, value, &known);
    if (!st) return Error{where + ": " + key + ": " + st.error().message};
    if (!known) return Error{where + ": unknown key '" + key + "'"};
  }
  return s;
}

namespace {

std::optional<uint64_t> hostMemoryBytes() {
  long pages = sysconf(_SC_PHYS_PAGES);
  long page = sysconf(_SC_PAGESIZE);
  if (pages <= 0 || page <= 0) return std::nullopt;
  return static_cast<uint64_t>(pages) * static_cast<uint64_t>(page);
}

std::optional<uint32_t> hostCpuMillicores() {
  long cores = sysconf(_SC_NPROCESSORS_ONLN);
  if (cores <= 0) return std::nullopt;
  return static_cast<uint32_t>(std::min<long>(cores, 4096)) * 1000;
}

// /proc/sys/kernel/pid_max: how many pids the whole host has.
std::optional<uint32_t> hostPidMax() {
  std::ifstream f("/proc/sys/kernel/pid_max");
  uint64_t v = 0;
  if (!(f >> v) || v == 0 || v > UINT32_MAX) return std::nullopt;
  return static_cast<uint32_t>(v);
}

// 90 %: the rest stays for the daemon, the frontend and whatever else the host runs.
template <typename T>
T ninetyPercent(T v) {
  return v - v / 10;
}

}  // namespace

void applyHostMaxima(Settings& s) {
  auto memory = hostMemoryBytes();
  auto cpu = hostCpuMillicores();
  if (!s.global.max.memory_bytes) s.global.max.memory_bytes = memory;
  if (!s.global.max.cpu_millicores) s.global.max.cpu_millicores = cpu;
  LimitSet& total = s.global.total;
  if (!total.memory_bytes && memory) total.memory_bytes = ninetyPercent(*memory);
  if (!total.pids) {
    if (auto pid_max = hostPidMax()) total.pids = ninetyPercent(*pid_max);
  }
  if (!total.cpu_millicores) total.cpu_millicores = cpu;
}

std::string controlSocketPath(const Settings& s) {
  if (!s.control_socket.empty()) return s.control_socket;
  return s.state_dir + "/control.sock";
}

namespace {

// The limits of a LimitSet that are set, as `<prefix><limit> = value` lines would set them.
void describeLimits(const std::string& prefix, const LimitSet& l,
                    std::vector<std::pair<std::string, std::string>>& out) {
  auto cores = [](uint32_t m) {
    std::string t = std::to_string(m / 1000);
    if (m % 1000 != 0) {
      std::string frac = std::to_string(1000 + m % 1000).substr(1);
      while (frac.back() == '0') frac.pop_back();
      t += "." + frac;
    }
    return t;
  };
  if (l.cpu_millicores) out.emplace_back(prefix + "cpu", cores(*l.cpu_millicores));
  if (l.memory_bytes) out.emplace_back(prefix + "memory", std::to_string(*l.memory_bytes));
  if (l.pids) out.emplace_back(prefix + "pids", std::to_string(*l.pids));
  if (l.io_bps) out.emplace_back(prefix + "io_bps", std::to_string(*l.io_bps));
  if (l.io_iops) out.emplace_back(prefix + "io_iops", std::to_string(*l.io_iops));
}

void describePolicy(const std::string& prefix, const Policy& p,
                    std::vector<std::pair<std::string, std::string>>& out) {
  describeLimits(prefix + "max.", p.max, out);
  describeLimits(prefix + "max.total_",
                 LimitSet{p.total.cpu_millicores, p.total.memory_bytes, p.total.pids, std::nullopt,
                          std::nullopt},
                 out);
  auto flag = [&](const char* key, const std::optional<bool>& v) {
    if (v) out.emplace_back(prefix + key, *v ? "true" : "false");
  };
  flag("network_host", p.allow_network_host);
  flag("allow_root", p.allow_root);
  flag("seccomp", p.seccomp);
}

}  // namespace

std::vector<std::pair<std::string, std::string>> describe(const Settings& settings) {
  Settings s = settings;  // the key table binds to what it may set
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& [key, k] : keyTable(s)) {
    // An unset path that jobworkerd derives (control_socket: in the state dir) shows what it
    // derives; a listing never holds an empty value, which would not parse back.
    std::string value = key == "control_socket" ? controlSocketPath(s) : k.show();
    if (!value.empty()) out.emplace_back(key, std::move(value));
  }
  describeLimits("default.", s.default_limits, out);
  describePolicy("", s.global, out);
  for (const auto& [role, p] : s.roles) describePolicy("role." + role + ".", p, out);
  for (const auto& [user, p] : s.users) describePolicy("user." + user + ".", p, out);
  return out;
}

Result<Settings> load(const std::string& path) {
  std::ifstream f(path);
  if (!f) return sysError("open config " + path);
  std::stringstream ss;
  ss << f.rdbuf();
  return parse(ss.str(), path);
}

}  // namespace jw::config
