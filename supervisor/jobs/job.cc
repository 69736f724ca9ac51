// Job record and state machine (see job.h); runs in jobworkerd.
#include "supervisor/jobs/job.h"

#include <sys/random.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <sstream>

#include "common/io.h"
#include "common/names.h"

namespace jw::supervisor {

using protocol::JobState;

Job::Job(JobSpec spec, int64_t created_at_ms)
    : spec_(std::move(spec)), created_at_ms_(created_at_ms) {}

std::unique_ptr<Job> Job::restore(const protocol::JobStatus& r) {
  JobSpec spec{r.id,        r.owner,  r.command, r.output, r.limits,
               r.isolation, r.run_as, r.name,    r.labels};
  auto job = std::make_unique<Job>(std::move(spec), r.created_at_ms);
  job->phase_ = JobPhase::kEnded;
  job->pid_ = r.pid;
  job->started_at_ms_ = r.started_at_ms;
  job->ended_at_ms_ = r.ended_at_ms;
  job->final_state_ = r.state;
  job->has_exit_code_ = r.has_exit_code;
  job->exit_code_ = r.exit_code;
  job->signal_ = r.signal;
  job->stopped_by_ = r.stopped_by;
  job->error_ = r.error;
  job->oom_killed = r.oom_killed;
  job->final_usage = r.usage;
  return job;
}

std::unique_ptr<Job> Job::resume(const JobRecord& record) {
  const protocol::JobStatus& r = record.status;
  JobSpec spec{r.id,        r.owner,  r.command, r.output, r.limits,
               r.isolation, r.run_as, r.name,    r.labels};
  auto job = std::make_unique<Job>(std::move(spec), r.created_at_ms);
  job->phase_ = JobPhase::kRunning;
  job->pid_ = r.pid;
  job->started_at_ms_ = r.started_at_ms;
  job->stopped_by_ = r.stopped_by;
  job->adopted = true;
  if (record.shim) {
    job->identity = record.shim->identity;
    job->command_pid = record.shim->command_pid;
  }
  return job;
}

Status Job::openStoredLogs(const std::string& jobs_dir, const protocol::JobStatus& r) {
  const std::string dir = jobs_dir + "/" + r.id + "/";
  const uint64_t dropped[2] = {r.output_dropped_bytes, r.stderr_dropped_bytes};
  const std::string* errors[2] = {&r.output_error, &r.stderr_error};
  Status first = okStatus();
  for (int s = 0; s < (separate() ? 2 : 1); s++) {
    auto log = OutputLog::openStored(dir + kStreamFile[s], dropped[s], *errors[s]);
    if (!log) {
      if (first) first = log.error();
      continue;
    }
    streams[s].log = std::move(log.value());
  }
  return first;
}

JobRecord Job::record() const {
  JobRecord r{status()};
  if (phase_ == JobPhase::kRunning || phase_ == JobPhase::kDraining) {
    if (identity.shim_pid > 0) r.shim = RunningShim{identity, command_pid, kill_deadline_ms};
  }
  return r;
}

void Job::markStarted(pid_t pid, int64_t now_ms) {
  if (phase_ != JobPhase::kStarting) return;
  pid_ = pid;
  started_at_ms_ = now_ms;
  phase_ = JobPhase::kRunning;
}

void Job::markFailed(std::string error, int64_t now_ms) {
  if (phase_ == JobPhase::kEnded) return;
  final_state_ = JobState::kFailed;
  error_ = std::move(error);
  if (error_.size() > protocol::kMaxMessage) error_.resize(protocol::kMaxMessage);
  ended_at_ms_ = now_ms;
  phase_ = JobPhase::kEnded;
}

bool Job::requestStop(const std::string& by) {
  if (phase_ != JobPhase::kRunning) return false;
  if (stopped_by_.empty()) stopped_by_ = by;
  return true;
}

void Job::recordExit(int wait_code, int wait_value) {
  if (phase_ != JobPhase::kRunning) return;
  if (wait_code == CLD_EXITED) {
    final_state_ = JobState::kExited;
    has_exit_code_ = true;
    exit_code_ = wait_value;
  } else {
    // CLD_KILLED or CLD_DUMPED: died of a signal, whoever sent it.
    final_state_ = JobState::kKilled;
    signal_ = wait_value;
  }
  phase_ = JobPhase::kDraining;
}

void Job::publish(int64_t now_ms) {
  if (phase_ != JobPhase::kDraining) return;
  ended_at_ms_ = now_ms;
  phase_ = JobPhase::kEnded;
}

JobState Job::visibleState() const {
  return phase_ == JobPhase::kEnded ? final_state_ : JobState::kRunning;
}

Job::OutputTotals Job::outputTotals() const {
  OutputTotals t;
  for (const Stream& st : streams) {
    if (!st.log) continue;
    t.stored += st.log->size();
    t.dropped += st.log->dropped();
  }
  return t;
}

namespace {

// One log's figures of a status; zeros when the job has no such log.
void logInto(const OutputLog* log, uint64_t* bytes, uint64_t* dropped, bool* truncated,
             std::string* error) {
  *bytes = log ? log->size() : 0;
  *dropped = log ? log->dropped() : 0;
  *truncated = log && log->truncated();
  if (log) {
    *error = log->error();
  } else {
    error->clear();
  }
}

int64_t monotonicMsNow() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1'000'000;
}

}  // namespace

bool Job::usageStale(int64_t now_ms) const {
  if (!cgroup || phase_ == JobPhase::kEnded) return false;
  return live_usage_read_ms_ == 0 || now_ms - live_usage_read_ms_ >= kUsageSampleMs;
}

void Job::sampleUsage(int64_t now_ms) const {
  if (!cgroup || phase_ == JobPhase::kEnded) return;
  live_usage_ = cgroup->usage();
  live_usage_read_ms_ = now_ms;
}

protocol::JobStatus Job::status(UsageRead how) const {
  protocol::JobStatus s;
  statusInto(s, how);
  return s;
}

void Job::statusInto(protocol::JobStatus& s, UsageRead how) const {
  // Every field is assigned, those that do not apply reset: `s` may hold another job's status,
  // whose strings' storage is reused.
  const bool ended = phase_ == JobPhase::kEnded;
  s.id = spec_.id;
  s.owner = spec_.owner;
  s.command = spec_.command;
  s.state = visibleState();
  s.pid = pid_;
  s.has_exit_code = ended && has_exit_code_;
  s.exit_code = ended ? exit_code_ : 0;
  s.signal = ended ? signal_ : 0;
  if (ended) {
    s.error = error_;
  } else {
    s.error.clear();
  }
  s.ended_at_ms = ended ? ended_at_ms_ : 0;
  s.stopped_by = stopped_by_;
  s.created_at_ms = created_at_ms_;
  s.started_at_ms = started_at_ms_;
  s.output = spec_.output;
  logInto(streams[0].log.get(), &s.output_bytes, &s.output_dropped_bytes, &s.output_truncated,
          &s.output_error);
  logInto(streams[1].log.get(), &s.stderr_bytes, &s.stderr_dropped_bytes, &s.stderr_truncated,
          &s.stderr_error);
  s.oom_killed = oom_killed;
  s.limits = spec_.limits;
  s.usage = final_usage;
  if (cgroup && !ended) {
    // A job never sampled is read even in a list: its first figures exist nowhere else. The
    // sampler takes each job's first sample right after its start, so a list rarely meets one.
    if (live_usage_read_ms_ == 0 || how == UsageRead::kFresh) {
      int64_t now_ms = monotonicMsNow();
      if (usageStale(now_ms)) sampleUsage(now_ms);
    }
    s.usage = live_usage_;
  }
  s.isolation = spec_.isolation;
  s.run_as = spec_.run_as;
  s.name = spec_.name;
  s.labels = spec_.labels;
  s.stdin_pipe = stdin_feed.has_value();
  s.stdin_bytes = stdin_feed ? stdin_feed->bytes() : 0;
  s.stdin_complete = stdin_feed && stdin_feed->complete();
}

std::optional<RequestError> validateJobStart(const protocol::JobStartRequest& r,
                                             uint64_t max_timeout_ms) {
  using protocol::ErrorCode;
  auto bad = [](std::string m) { return RequestError{ErrorCode::kBadRequest, std::move(m)}; };
  if (protocol::jobSpecBytes(r) > protocol::kMaxJobSpecBytes) {
    return RequestError{ErrorCode::kTooLarge, "command, environment and cwd together exceed " +
                                                  std::to_string(protocol::kMaxJobSpecBytes) +
                                                  " bytes"};
  }
  if (r.argv.size() > protocol::kMaxArgs) return bad("too many arguments");
  if (r.env.size() > protocol::kMaxEnv) return bad("too many environment variables");
  if (r.argv.empty()) return bad("command must not be empty");
  if (r.argv[0].empty()) return bad("command[0] (the program) must not be empty");
  for (size_t i = 0; i < r.argv.size(); i++) {
    if (r.argv[i].find('\0') != std::string::npos) {
      return bad("command[" + std::to_string(i) + "] contains a NUL byte");
    }
  }
  std::vector<std::string_view> keys;
  for (const auto& e : r.env) {
    if (e.find('\0') != std::string::npos) return bad("an environment entry contains a NUL byte");
    size_t eq = e.find('=');
    std::string_view key = std::string_view(e).substr(0, eq == std::string::npos ? 0 : eq);
    if (eq == std::string::npos || !names::validEnvName(key)) {
      return bad("environment entries must be KEY=VALUE with KEY matching " +
                 std::string(names::kEnvNamePattern));
    }
    for (auto k : keys) {
      if (k == key) return bad("environment variable " + std::string(key) + " given twice");
    }
    keys.push_back(key);
  }
  if (!r.cwd.empty()) {
    if (r.cwd.find('\0') != std::string::npos) return bad("cwd contains a NUL byte");
    if (r.cwd[0] != '/') return bad("cwd must be an absolute path");
  }
  if (max_timeout_ms > 0 && r.timeout_ms > max_timeout_ms) {
    return bad("timeout over the maximum of " + std::to_string(max_timeout_ms / 1000) + " s");
  }
  if (!r.name.empty() && !names::validJobName(r.name)) {
    return bad("name must match " + std::string(names::kJobNamePattern) + " and not be a job id");
  }
  if (auto problem = names::labelListProblem(r.labels); !problem.empty()) return bad(problem);
  return std::nullopt;
}

std::optional<std::string> envValue(const std::vector<std::string>& env, std::string_view key) {
  for (const auto& e : env) {
    if (e.size() > key.size() && e.compare(0, key.size(), key) == 0 && e[key.size()] == '=') {
      return e.substr(key.size() + 1);
    }
  }
  return std::nullopt;
}

std::vector<std::string> buildJobEnvironment(const std::vector<std::string>& requested,
                                             const EnvDefaults& d) {
  std::vector<std::string> env = requested;
  auto add = [&](std::string_view key, const std::string& value) {
    if (!envValue(requested, key)) env.push_back(std::string(key) + "=" + value);
  };
  add("PATH", d.path);
  add("HOME", d.home);
  add("USER", d.user);
  add("LANG", d.lang);
  return env;
}

Result<std::string> newJobId() {
  uint8_t b[16];
  size_t got = 0;
  while (got < sizeof b) {
    ssize_t n = getrandom(b + got, sizeof b - got, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return sysError("getrandom");
    got += static_cast<size_t>(n);
  }
  b[6] = static_cast<uint8_t>((b[6] & 0x0f) | 0x40);  // version 4
  b[8] = static_cast<uint8_t>((b[8] & 0x3f) | 0x80);  // RFC 4122 variant
  static const char* hex = "0123456789abcdef";
  std::string id;
  for (int i = 0; i < 16; i++) {
    if (i == 4 || i == 6 || i == 8 || i == 10) id.push_back('-');
    id.push_back(hex[b[i] >> 4]);
    id.push_back(hex[b[i] & 15]);
  }
  return id;
}

Result<JobIdentity> readJobIdentity(pid_t shim_pid, const std::string& boot_id) {
  JobIdentity id;
  id.boot_id = boot_id;
  id.shim_pid = shim_pid;
  const std::string proc = "/proc/" + std::to_string(shim_pid);
  auto stat = readFile(proc + "/stat", 4096);
  if (!stat) return stat.error();
  // "PID (comm) S ppid ...": comm may hold spaces and parentheses, so count from the last ')'.
  size_t close = stat->rfind(')');
  if (close == std::string::npos) return Error{"unexpected " + proc + "/stat"};
  std::istringstream fields(stat->substr(close + 2));
  std::string field;
  for (int i = 3; i <= 22 && fields >> field; i++) {
    if (i == 22) id.shim_start_time = std::strtoull(field.c_str(), nullptr, 10);
  }
  if (id.shim_start_time == 0) return Error{"no start time in " + proc + "/stat"};
  auto cgroup = readFile(proc + "/cgroup", 65536);
  if (!cgroup) return cgroup.error();
  id.cgroup_path = cgroup->substr(0, cgroup->find('\n'));
  return id;
}

}  // namespace jw::supervisor
