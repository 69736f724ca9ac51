// One job: its record (what the status shows) and its state machine, plus the live resources the
// supervisor attaches to it (pidfd, pipes, logs, cgroup, timers). Runs in jobworkerd.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/fd.h"
#include "common/protocol/codec.h"
#include "common/protocol/shim_messages.h"
#include "common/result.h"
#include "supervisor/cgroup/cgroup.h"
#include "supervisor/core/event_loop.h"
#include "supervisor/jobs/output_store.h"
#include "supervisor/jobs/stdin_feed.h"
#include "supervisor/state/record_codec.h"

namespace jw::supervisor {

// running -> draining (main process gone, pipes still open) -> ended (final state published).
// failed jumps straight to ended. Outside, a draining job still shows `running`: the final state
// is published only after the output is complete.
enum class JobPhase { kStarting, kRunning, kDraining, kEnded };

// Reads the identity of a shim that has just started (its /proc entries).
Result<JobIdentity> readJobIdentity(pid_t shim_pid, const std::string& boot_id);

struct JobSpec {
  std::string id;
  std::string owner;
  std::vector<std::string> command;
  protocol::OutputMode output = protocol::OutputMode::kMerged;
  protocol::Limits limits;
  std::vector<std::string> isolation;
  std::string run_as;
  std::string name;                 // "": none; unique per owner among running jobs
  std::vector<std::string> labels;  // "key=value", distinct keys
};

class Job {
 public:
  Job(JobSpec spec, int64_t created_at_ms);
  Job(const Job&) = delete;
  Job& operator=(const Job&) = delete;
  // A job of a previous jobworkerd from its record, which must be an ended job's (the caller
  // settles the record of one that was still running first). Its logs are the caller's to
  // attach.
  static std::unique_ptr<Job> restore(const protocol::JobStatus& record);
  // A job of a previous jobworkerd (a crash, an upgrade) whose shim still runs: running, as
  // its record says; the caller takes the shim over (pidfd, channel, logs, cgroup).
  static std::unique_ptr<Job> resume(const JobRecord& record);
  // Opens the job's stored logs in jobs_dir/<id>/ with the record's dropped counts and errors;
  // the first that cannot be opened is the error.
  Status openStoredLogs(const std::string& jobs_dir, const protocol::JobStatus& record);
  // The record to store now: the status, and the shim while the job runs.
  JobRecord record() const;

  // --- state machine ---------------------------------------------------------------------------
  void markStarted(pid_t pid, int64_t now_ms);
  // Setup failed after the record was created: ends the job at once with `error`.
  void markFailed(std::string error, int64_t now_ms);
  // First stop wins (a later "shutdown" does not overwrite the user who asked). False when the
  // main process is already gone.
  bool requestStop(const std::string& by);
  // The main process's wait status, as waitid() reports it (si_code CLD_EXITED/KILLED/DUMPED).
  void recordExit(int wait_code, int wait_value);
  // Output complete: the final state becomes visible.
  void publish(int64_t now_ms);

  JobPhase phase() const { return phase_; }
  bool ended() const { return phase_ == JobPhase::kEnded; }
  bool mainExited() const { return phase_ == JobPhase::kDraining || phase_ == JobPhase::kEnded; }
  bool stopRequested() const { return !stopped_by_.empty(); }

  const std::string& id() const { return spec_.id; }
  const std::string& owner() const { return spec_.owner; }
  const JobSpec& spec() const { return spec_; }
  pid_t pid() const { return pid_; }
  int64_t createdAtMs() const { return created_at_ms_; }
  int64_t endedAtMs() const { return ended_at_ms_; }
  // The state a client sees (running until published).
  protocol::JobState visibleState() const;

  // Snapshot for replies: live log sizes, and usage from the cgroup when there is one. kFresh
  // (one job's status) reads the cgroup when the last sample is a second old. kLastSample (a
  // list) reads nothing once the job has a sample: thousands of running jobs times several
  // cgroup files would block the event loop for tens of milliseconds; a list queues the stale
  // ones for the UsageSampler instead (usageStale()).
  enum class UsageRead { kFresh, kLastSample };
  protocol::JobStatus status(UsageRead how = UsageRead::kFresh) const;
  // The same into `s`, reusing its storage (a list fills one status per job).
  void statusInto(protocol::JobStatus& s, UsageRead how) const;
  // The running job's usage sample is a second old or missing: what a list refreshes afterwards.
  bool usageStale(int64_t now_monotonic_ms) const;
  // Reads the cgroup's usage now (no-op for an ended job or one without a cgroup).
  void sampleUsage(int64_t now_monotonic_ms) const;
  static constexpr int64_t kUsageSampleMs = 1000;
  // Bytes stored and dropped over both logs, without status()'s cgroup reads (for /metrics).
  struct OutputTotals {
    uint64_t stored = 0, dropped = 0;
  };
  OutputTotals outputTotals() const;

  // --- live resources, managed by the supervisor -----------------------------------------------
  struct Stream {
    std::unique_ptr<OutputLog> log;
  };
  Stream streams[2];  // [kStdout] (the merged log for merged jobs), [kStderr] for separate jobs
  // Every job has a shim (jobworker-init): the main process, PID 1 of the job's PID namespace
  // or a subreaper parent of the command. pidfd is the shim's; `channel` its status channel
  // (Started, Progress, DeadlinePassed, Exited up; Stop down), open until the shim is reaped.
  UniqueFd pidfd;
  EventLoop::WatchId pidfd_watch = 0;
  UniqueFd channel;
  EventLoop::WatchId channel_watch = 0;
  pid_t command_pid = 0;                      // as the shim sees it (2 inside a PID namespace)
  std::optional<shim::Exited> reported_exit;  // the shim's Exited frame, once received
  UniqueFd exit_record;  // <job>/exit, space reserved; handed to the shim, then closed
  JobIdentity identity;
  // Taken over from a previous jobworkerd: after a crash the shim is not our child (its exit
  // comes only from its channel or <job>/exit); after an upgrade it still is.
  bool adopted = false;
  std::unique_ptr<JobCgroup> cgroup;
  EventLoop::TimerId kill_timer = 0;    // the backup SIGKILL, after the shim's own grace
  EventLoop::TimerId cgroup_timer = 0;  // retry removing the cgroup
  uint64_t kill_deadline_ms = 0;        // monotonic; 0: no SIGKILL scheduled
  protocol::Usage final_usage;          // captured when the job ended
  bool oom_killed = false;
  std::optional<StdinFeed> stdin_feed;  // "stdin": "pipe"; kept (closed) after the upload

  bool separate() const { return spec_.output == protocol::OutputMode::kSeparate; }

 private:
  JobSpec spec_;
  JobPhase phase_ = JobPhase::kStarting;
  int64_t created_at_ms_;
  int64_t started_at_ms_ = 0;
  int64_t ended_at_ms_ = 0;
  pid_t pid_ = 0;
  protocol::JobState final_state_ = protocol::JobState::kRunning;
  bool has_exit_code_ = false;
  int exit_code_ = 0;
  int signal_ = 0;
  std::string stopped_by_;
  std::string error_;
  mutable protocol::Usage live_usage_;      // the cgroup's figures as status() last read them
  mutable int64_t live_usage_read_ms_ = 0;  // when (CLOCK_MONOTONIC); 0: never
};

// A refused request: the code the frontend maps to an HTTP status, and a message for the user.
struct RequestError {
  protocol::ErrorCode code;
  std::string message;
  int sys_errno = 0;  // the errno behind it, when there is one (exec: ENOENT vs EACCES)
};

// Re-validates a JobStart the frontend already checked (it may be compromised): sizes, argv
// non-empty, no NUL anywhere, env entries KEY=VALUE with a valid and unique key, cwd absolute,
// timeout within max_timeout_ms (0: no maximum), name and labels well-formed.
std::optional<RequestError> validateJobStart(const protocol::JobStartRequest& r,
                                             uint64_t max_timeout_ms);

struct EnvDefaults {
  std::string path, home, user, lang;
};
// The job's whole environment: what the request gives, plus PATH, HOME, USER and LANG where it
// gives none. Never anything of the supervisor's own environment.
std::vector<std::string> buildJobEnvironment(const std::vector<std::string>& requested,
                                             const EnvDefaults& defaults);
// The value of KEY in a KEY=VALUE list, or nullopt.
std::optional<std::string> envValue(const std::vector<std::string>& env, std::string_view key);

// Random UUIDv4 (getrandom), lowercase text form.
Result<std::string> newJobId();

}  // namespace jw::supervisor
