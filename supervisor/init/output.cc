// splice()-based appending of a job's output (see output.h); runs in jobworker-init.
#include "supervisor/init/output.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

namespace jw::init {

namespace {

constexpr size_t kMaxSplice = size_t{1} << 20;  // the pipe's size: one splice empties it
constexpr int kSplicesPerDrain = 8;

}  // namespace

// Bytes that are not stored still leave the pipe, so the job never blocks on a full one.
long LogAppender::discard() {
  for (;;) {
    ssize_t n = splice(pipe_, nullptr, devnull_, nullptr, kMaxSplice, SPLICE_F_NONBLOCK);
    if (n >= 0 || errno != EINVAL) return n;
    // A /dev/null that cannot splice: read and forget, a small buffer at a time.
    char buf[512];
    n = read(pipe_, buf, sizeof buf);
    return n;
  }
}

LogAppender::Drained LogAppender::drain() {
  Drained result = Drained::kEmpty;
  for (int i = 0; i < kSplicesPerDrain; i++) {
    ssize_t n;
    if (storing()) {
      size_t room = static_cast<size_t>(std::min<uint64_t>(cap_ - sizes_.stored, kMaxSplice));
      loff_t off = static_cast<loff_t>(sizes_.stored);
      n = splice(pipe_, nullptr, log_, &off, room, SPLICE_F_NONBLOCK | SPLICE_F_MOVE);
      if (n > 0) {
        sizes_.stored += static_cast<uint64_t>(n);
        result = Drained::kData;
        continue;
      }
      if (n < 0 && errno != EAGAIN && errno != EINTR) {
        // The file's failure, never the pipe's (it is ours and open): stop storing here, so
        // what is stored stays an exact prefix of what the job wrote.
        sizes_.error = errno;
        sizes_.error_offset = sizes_.stored;
        continue;
      }
    } else {
      n = discard();
      if (n > 0) {
        sizes_.dropped += static_cast<uint64_t>(n);
        result = Drained::kData;
        continue;
      }
    }
    if (n == 0) return Drained::kEof;
    if (errno == EINTR) continue;
    return result;  // EAGAIN: empty for now
  }
  return result;
}

}  // namespace jw::init
