// Starting a job process: everything is prepared before fork, the child runs a fixed list of
// named, async-signal-safe steps up to execve and reports a failed step's errno over a
// close-on-exec pipe. Runs in jobworkerd (the child part in the forked job process).
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include "common/fd.h"
#include "common/result.h"
#include "supervisor/cgroup/cgroup.h"
#include "supervisor/launch/job_seccomp.h"
#include "supervisor/launch/namespaces.h"

namespace jw::supervisor {

struct SpawnRequest {
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
  JobCgroup* cgroup = nullptr;  // the child is moved in before it runs anything of the job's
  // Namespaces; by default none and no seccomp (a plain fork): the supervisor states what it
  // wants. With isolation.pid the first process is the job init (job_init.h), PID 1 of the
  // namespace, and the command is its child (PID 2).
  IsolationSpec isolation{
      .pid = false, .mount = false, .net = false, .uts = false, .ipc = false, .seccomp = false};
  // The job seccomp profile, installed just before execve when isolation.seccomp; must outlive
  // the call. isolation.seccomp without a profile is a setup error (fail closed).
  const JobSeccompProfile* seccomp = nullptr;
  int last_cap = 0;  // lastCapability(): for the bounding-set drop of non-root jobs
};

struct SpawnedJob {
  pid_t pid = -1;   // with isolation.pid: the job init's (host) pid; else the command's
  UniqueFd pidfd;   // close-on-exec; of `pid`
  UniqueFd out_fd;  // non-blocking read end: stdout (and stderr when merged)
  UniqueFd err_fd;  // separate stderr, else empty
  // With isolation.pid: non-blocking read end of the init's status pipe (the command's raw wait
  // status, see readJobStatus), read once the init has exited. Empty without an init.
  UniqueFd status_fd;
};

enum class SpawnFailure {
  kNone,
  kExec,   // execve failed: the program is missing or not executable (no job record)
  kCwd,    // the working directory could not be entered (a request error, no job record)
  kSetup,  // anything else: a supervisor-side or kernel failure (the job is recorded as failed)
};

// Forks and execs the job. On success the process runs the program; on failure `*failure` says
// which kind and the Error carries the errno (sys_errno) and the step that failed.
Result<SpawnedJob> spawnJob(const SpawnRequest& req, SpawnFailure* failure);

// The PATH candidates for argv0 (argv0 itself when it contains '/'). Empty PATH entries (the
// current directory) are skipped on purpose: a job's PATH should not depend on its cwd.
std::vector<std::string> execCandidates(const std::string& argv0, const std::string& path);

}  // namespace jw::supervisor
