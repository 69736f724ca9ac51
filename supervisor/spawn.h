// Starting a job process: everything is prepared before fork, the child runs a fixed list of
// named, async-signal-safe steps up to execve and reports a failed step's errno over a
// close-on-exec pipe. Runs in jobworkerd (the child part in the forked job process).
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include "cgroup.h"
#include "result.h"

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
  JobCgroup* cgroup = nullptr;  // the child is moved in before it runs anything of the job's
};

struct SpawnedJob {
  pid_t pid = -1;
  int pidfd = -1;   // close-on-exec
  int out_fd = -1;  // non-blocking read end: stdout (and stderr when merged)
  int err_fd = -1;  // separate stderr, else -1
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
