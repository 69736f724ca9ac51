// jobworkerd's file-descriptor budget: the RLIMIT_NOFILE soft limit raised to the hard limit at
// start (jobs get the original back), and the headroom a job start must leave. Runs in
// jobworkerd.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>

#include "common/result.h"
#include "supervisor/jobs/job.h"

namespace jw::supervisor {

// A start needs about a dozen fds at once (pipes, pidfd, logs, cgroup), and the loop needs a
// few for reads, the frontend and the verifier: refuse a start while fewer than this are free,
// so running jobs, reads and logins never meet EMFILE.
inline constexpr size_t kFdsKeptFree = 64;

struct FdLimits {
  uint64_t original_soft = 0;  // what the daemon was started with: what jobs get back
  uint64_t soft = 0;           // the daemon's own, raised to the hard limit
};

// Raises this process's soft RLIMIT_NOFILE to its hard limit. Jobs run with original_soft:
// programs that select() or loop up to the limit expect the usual 1024.
Result<FdLimits> raiseFdLimit();

// Open fds of this process (/proc/self/fd).
Result<size_t> countOpenFds();

// 503 while open + kFdsKeptFree would pass the soft limit.
std::optional<RequestError> checkFdHeadroom(size_t open_fds, uint64_t soft_limit);

}  // namespace jw::supervisor
