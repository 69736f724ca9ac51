// The frontend's clock for token expiries (see auth.h); runs in jobworker-frontend.
#include "frontend/auth.h"

#include <chrono>

namespace jw::frontend {

int64_t systemNowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace jw::frontend
