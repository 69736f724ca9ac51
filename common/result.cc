// Error helpers shared by every process.
#include "common/result.h"

#include <cerrno>
#include <cstring>

namespace jw {

Error sysError(const std::string& what, int err) {
  return Error{what + ": " + std::strerror(err), err};
}

Error sysError(const std::string& what) { return sysError(what, errno); }

}  // namespace jw
