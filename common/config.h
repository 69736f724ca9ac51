// The configuration file (`--config FILE`), parsed the same way by both processes.
//
// Format: one `key = value` per line, `#` starts a comment, blank lines ignored. Sizes take
// K/M/G/T suffixes (powers of 1024), durations ms/s/m/h/d (a bare number is seconds), booleans
// true/false. An unknown key or a bad value is a startup error naming the line: typos fail
// closed instead of silently leaving a limit off. Every key is documented in README.md.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "common/result.h"

namespace jw::config {

// Resource maxima or defaults; nullopt: not set at this level.
struct LimitSet {
  std::optional<uint32_t> cpu_millicores;
  std::optional<uint64_t> memory_bytes;
  std::optional<uint32_t> pids;
  std::optional<uint64_t> io_bps;   // per-device read/write bytes per second
  std::optional<uint64_t> io_iops;  // per-device read/write operations per second
};

// Per-role or per-user policy. A user's entry overrides its role's, which overrides the global.
struct Policy {
  LimitSet max;
  // `max.total_cpu`, `max.total_memory`, `max.total_pids`: the aggregate caps of all the jobs
  // together (io_* unused). Global: the instance's; per user or role: each user's.
  LimitSet total;
  std::optional<bool> allow_network_host;
  std::optional<bool> allow_root;  // run-as root or the frontend's account (users only)
  std::optional<bool> seccomp;     // the default job seccomp profile
};

struct Settings {
  // Network and TLS (frontend)
  std::string listen = "127.0.0.1:8443";
  std::string tls_cert = "/etc/jobworker/server.pem";
  std::string tls_key = "/etc/jobworker/server.key";
  uint32_t http_threads = 32;
  // A waiting connection costs a buffer, not a thread: thousands are cheap (the frontend raises
  // its descriptor limit to fit them).
  uint32_t max_connections = 4096;
  uint32_t max_connections_per_client = 32;  // IPv6 clients counted per /64
  uint64_t handshake_timeout_ms = 10'000;
  uint64_t idle_timeout_ms = 60'000;    // between keep-alive requests
  uint64_t header_timeout_ms = 10'000;  // the whole request head
  uint64_t body_timeout_ms = 60'000;    // the whole request body
  uint64_t min_receive_rate = 1024;     // body bytes per second, after a grace; 0: no minimum
  uint64_t send_timeout_ms = 60'000;    // a response the client does not read
  uint64_t max_request_head = 16 << 10;
  uint64_t max_request_body = 1 << 20;
  uint64_t max_buffered_bytes = 64ULL << 20;  // all connections' request buffers together
  uint32_t max_queued_requests = 256;         // complete requests waiting for a worker
  uint32_t max_concurrent_password_checks = 4;
  // The access log (frontend): one journald entry per request. Sampled logs at most
  // access_log_rate entries per second (journald rate-limits per unit: audit events must never
  // be crowded out).
  enum class AccessLog : uint8_t { kOff, kSampled, kAll };
  AccessLog access_log = AccessLog::kSampled;
  uint32_t access_log_rate = 10;
  // Authentication
  uint64_t session_ttl_ms = 12ULL * 3600'000;
  // jobworkerd's login throttle (supervisor/accounts/login_throttle.h): failures of one
  // (user, address) pair before its back-off starts, and the cap of that exponential back-off.
  uint32_t login_max_failures = 5;
  uint64_t login_lockout_ms = 60'000;
  // Supervisor and jobs
  std::string state_dir = "/var/lib/jobworker";
  // The root-only control socket of jobworker-admin; "" means <state_dir>/control.sock.
  std::string control_socket;
  std::string users_file = "/etc/jobworker/users";
  std::string frontend_user = "jobworker";
  // The password verifier's account (jobworker-verifier --run-as). A job of the same account
  // outside a PID namespace could stop or kill it (logins answer 503 until it is restarted);
  // it is not dumpable, so none can read it.
  std::string verifier_user = "nobody";
  uint64_t output_cap_bytes = 1ULL << 30;
  uint64_t stop_grace_ms = 10'000;
  uint64_t default_timeout_ms = 0;  // 0: none
  uint64_t max_timeout_ms = 0;      // 0: none
  uint32_t retention_count = 1000;  // finished jobs kept per owner
  uint64_t retention_age_ms = 7ULL * 24 * 3600'000;
  uint32_t retention_total =
      10'000;  // finished jobs kept on the host, the largest owner's go first
  // Free space the state filesystem keeps: under it healthz says degraded and starts get 507.
  uint64_t state_reserve_bytes = 64ULL << 20;
  uint32_t max_running_jobs_per_user = 64;
  // Users with their own `user` label in /metrics' job counters; the rest count as "(other)".
  uint32_t metrics_max_users = 100;
  // The longest expiry `jobworker-admin token create --expires` may ask for.
  uint64_t max_token_ttl_ms = 366ULL * 24 * 3600'000;
  std::string job_path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
  std::string job_lang = "C.UTF-8";
  // Limits every job gets unless it asks for others: there is no unlimited job unless the config
  // says `default.<limit> = unlimited` (stored as 0). Global maxima: see applyHostMaxima().
  LimitSet default_limits{1000, 1ULL << 30, 1024, std::nullopt, std::nullopt};
  Policy global;
  std::map<std::string, Policy> roles;  // "admin", "user", "viewer"
  std::map<std::string, Policy> users;
  // Isolation switches (all on by default)
  bool isolate_pid = true, isolate_mount = true, isolate_net = true, isolate_uts = true,
       isolate_ipc = true, use_cgroups = true, job_seccomp = true;
  uint64_t job_tmp_size = 64ULL << 20;
  bool job_core_dumps = false;
};

// Parses FILE; unknown keys and bad values are errors naming the line.
Result<Settings> load(const std::string& path);
// Every effective setting as (key, value) in the file's syntax: each top-level key with its
// value or default (durations in ms, sizes in bytes), then the limits and policies that are set
// (default.*, max.*, max.total_*, role.<r>.*, user.<n>.*). What check-config prints.
std::vector<std::pair<std::string, std::string>> describe(const Settings& settings);
// Where the control socket lives: control_socket if set, else <state_dir>/control.sock. Both
// jobworkerd and jobworker-admin call this, so the two always agree.
std::string controlSocketPath(const Settings& s);
// Parses text (for tests and for load()).
Result<Settings> parse(const std::string& text, const std::string& origin);

// Global maxima the config left unset become the host's: memory = physical RAM, cpu = online
// cores; and the global aggregates (`max.total_*`): 90 % of RAM, 90 % of the kernel's pid_max,
// every online core. Called by the supervisor after load().
void applyHostMaxima(Settings& s);

// `max.<limit> = unlimited` is stored as the type's maximum, `default.<limit> = unlimited` as 0.
Result<uint64_t> parseSize(const std::string& s);           // "256M" -> bytes
Result<uint64_t> parseDurationMs(const std::string& s);     // "10s" -> 10000
Result<uint32_t> parseCpuMillicores(const std::string& s);  // "0.5" -> 500

}  // namespace jw::config
