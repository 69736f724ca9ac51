// The file-descriptor budget (see fd_budget.h); runs in jobworkerd.
#include "supervisor/jobs/fd_budget.h"

#include <dirent.h>
#include <sys/resource.h>

#include <cstring>
#include <string>

namespace jw::supervisor {

Result<FdLimits> raiseFdLimit() {
  rlimit lim{};
  if (getrlimit(RLIMIT_NOFILE, &lim) != 0) return sysError("getrlimit RLIMIT_NOFILE");
  FdLimits out;
  out.original_soft = lim.rlim_cur;
  if (lim.rlim_cur != lim.rlim_max) {
    rlimit raised{lim.rlim_max, lim.rlim_max};
    if (setrlimit(RLIMIT_NOFILE, &raised) != 0) {
      return sysError("setrlimit RLIMIT_NOFILE to the hard limit " + std::to_string(lim.rlim_max));
    }
  }
  out.soft = lim.rlim_max;
  return out;
}

Result<size_t> countOpenFds() {
  DIR* d = opendir("/proc/self/fd");
  if (d == nullptr) return sysError("open /proc/self/fd");
  size_t n = 0;
  while (dirent* e = readdir(d)) {
    if (e->d_name[0] != '.') n++;
  }
  closedir(d);
  return n > 0 ? n - 1 : 0;  // the directory's own fd
}

std::optional<RequestError> checkFdHeadroom(size_t open_fds, uint64_t soft_limit) {
  if (open_fds + kFdsKeptFree <= soft_limit) return std::nullopt;
  return RequestError{protocol::ErrorCode::kUnavailable,
                      "jobworkerd has " + std::to_string(open_fds) + " of its " +
                          std::to_string(soft_limit) +
                          " file descriptors open (RLIMIT_NOFILE); retry when running jobs end"};
}

}  // namespace jw::supervisor
