// The frontend's privilege drop (see privilege_drop.h); runs in jobworker-frontend, once, before
// any thread exists.
#include "frontend/privilege_drop.h"

#include "frontend/seccomp_filter.h"

namespace jw::frontend {

Status dropPrivileges(const DropTarget& target) {
  return sandbox::dropPrivileges(target, installSeccompFilter);
}

}  // namespace jw::frontend
