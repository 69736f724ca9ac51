// Error helpers shared by every process.
#include "common/result.h"

#include <cerrno>
#include <cstring>

namespace jw {

Error sysError(const std::string& what, int err) {
  // strerror_r (GNU): frontend threads report errors concurrently; strerror's buffer is shared.
  char buf[256];
  return Error{what + ": " + strerror_r(err, buf, sizeof buf), err};
}

Error sysError(const std::string& what) { return sysError(what, errno); }

}  // namespace jw
