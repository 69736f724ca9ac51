// Starting a job: jobworkerd writes the job's spec into a sealed memfd and makes its status
// channel (prepareShim); a clone of jobworker-spawner (JobLauncher), or of the caller in the
// tests (spawnJob), goes into the job's namespaces (and v2 cgroup) and at once execveat()s
// jobworker-init, the job's shim; jobworkerd places it in its cgroup(s), releases it over the
// channel (releaseShim) and reads `Started` or `ExecFailed` (readStartReport). Everything the
// job's own process does before execve runs in the shim (supervisor/init/). Runs in jobworkerd.
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>
#include <vector>

#include "common/fd.h"
#include "common/result.h"
#include "supervisor/cgroup/cgroup.h"
#include "supervisor/launch/job_seccomp.h"
#include "supervisor/launch/namespaces.h"

namespace jw::supervisor {

struct SpawnRequest {
  int init_fd = -1;               // O_PATH fd of jobworker-init, opened at start
  std::string job_id;             // its first 8 characters name the shim: `jw-init 1a2b3c4d`
  std::vector<std::string> argv;  // argv[0] without '/' is searched in `search_path`
  std::vector<std::string> env;   // the complete environment ("KEY=VALUE")
  std::string search_path;        // PATH used to find argv[0]
  std::string cwd;                // explicit working directory; empty: `home`, else "/"
  std::string home;
  bool change_credentials = false;  // root: become uid/gid/groups; non-root dev: unchanged
  uid_t uid = 0;
  gid_t gid = 0;
  std::vector<gid_t> groups;
  bool separate_stderr = false;
  bool core_dumps = false;
  // The command's soft RLIMIT_NOFILE (the one jobworkerd was started with: it raised its own);
  // 0: inherit jobworkerd's.
  uint64_t nofile_soft = 0;
  JobCgroup* cgroup = nullptr;  // the shim is placed in it before it does anything of the job's
  // Namespaces; by default none and no seccomp: the supervisor states what it wants. With
  // isolation.pid the shim is PID 1 of the namespace, else a subreaper parent of the command.
  IsolationSpec isolation{
      .pid = false, .mount = false, .net = false, .uts = false, .ipc = false, .seccomp = false};
  // The job seccomp profile, sent to the shim as ready BPF when isolation.seccomp;
  // isolation.seccomp without a profile is a setup error (fail closed).
  const JobSeccompProfile* seccomp = nullptr;
  int last_cap = 0;  // lastCapability(): for the bounding-set drop of non-root jobs
  // The job's files, which the shim writes: stdout (merged) log, stderr log (separate jobs, else
  // -1), and the exit record. Borrowed: the caller keeps (and may close) its own copies.
  int stdout_log_fd = -1;
  int stderr_log_fd = -1;
  int exit_record_fd = -1;
  // The read end of the job's stdin pipe ("stdin": "pipe"), else -1 (/dev/null). Borrowed too:
  // the caller closes its copy after the spawn, so that only the command holds it.
  int stdin_read_fd = -1;
  uint64_t output_cap = 0;
  uint64_t timeout_ms = 0;     // the shim's deadline from now (CLOCK_BOOTTIME); 0: none
  uint64_t stop_grace_ms = 0;  // the shim's SIGTERM -> SIGKILL grace at its deadline
};

struct SpawnedJob {
  pid_t pid = -1;          // the shim's (host) pid
  UniqueFd pidfd;          // close-on-exec; of the shim
  UniqueFd channel;        // non-blocking, jobworkerd's end of the status channel
  pid_t command_pid = -1;  // as the shim sees it (2 inside a PID namespace)
};

enum class SpawnFailure {
  kNone,
  kExec,         // execve failed: the program is missing or not executable (no job record)
  kCwd,          // the working directory could not be entered (a request error, no job record)
  kUnavailable,  // no jobworker-spawner runs right now (503, no job record; it is restarting)
  kSetup,  // anything else: a supervisor-side or kernel failure (the job is recorded as failed)
};

// What a shim is cloned with besides the job's own files (borrowed in the request).
struct PreparedShim {
  UniqueFd spec;          // the sealed spec memfd
  UniqueFd channel;       // jobworkerd's end of the status channel, non-blocking
  UniqueFd shim_channel;  // the shim's end
  int ns_flags = 0;       // CLONE_NEW*
  int cgroup_dir = -1;    // a v2 cgroup directory (CLONE_INTO_CGROUP), borrowed; -1: none
  std::string short_id;   // the shim's argv[1]
};
Result<PreparedShim> prepareShim(const SpawnRequest& req, SpawnFailure* failure);

// The shim `pid` waits for its release: places it in the request's cgroup(s), then releases it.
Status releaseShim(const SpawnRequest& req, pid_t pid, int channel);

// The shim's first frame, when one is queued (nullopt: none yet): Started gives the command's
// pid (as the shim sees it); ExecFailed an error whose kind `*failure` says.
std::optional<Result<pid_t>> readStartReport(const SpawnRequest& req, int channel,
                                             SpawnFailure* failure);

// The shim reports Started or ExecFailed within milliseconds; this only bounds a wedged kernel
// or spawner. Past it the shim is killed and the start fails.
constexpr int kShimStartTimeoutMs = 30'000;

// Kills a shim that did not start and reaps it through its pidfd.
void killAndReapShim(int pidfd);

// The whole start in the calling process, waiting for the report (the tests' way; jobworkerd
// starts jobs through JobLauncher). On success the command runs; on failure `*failure` says
// which kind and the Error carries the errno (sys_errno) and the failed step.
Result<SpawnedJob> spawnJob(const SpawnRequest& req, SpawnFailure* failure);

// The PATH candidates for argv0 (argv0 itself when it contains '/'). Empty PATH entries (the
// current directory) are skipped on purpose: a job's PATH should not depend on its cwd.
std::vector<std::string> execCandidates(const std::string& argv0, const std::string& path);

// A raw wait status as waitid() would report it: si_code (CLD_EXITED, CLD_KILLED, CLD_DUMPED)
// and si_status (exit code or signal number).
struct WaitOutcome {
  int code = 0;
  int value = 0;
};
WaitOutcome waitOutcome(int raw_wait_status);

}  // namespace jw::supervisor
