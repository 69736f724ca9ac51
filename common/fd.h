// UniqueFd, the one owner of a file descriptor, and pipes made of two; used by every process.
// The destructor only calls close(2) and keeps errno, so it is async-signal-safe as well.
#pragma once

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <string>

#include "common/result.h"

namespace jw {

// Move-only; closes its fd exactly once (on destruction, reset() or close()). A negative fd is
// "none". Whoever holds a UniqueFd owns the descriptor; a plain int is always a borrowed one.
class UniqueFd {
 public:
  UniqueFd() noexcept = default;
  explicit UniqueFd(int fd) noexcept : fd_(fd < 0 ? -1 : fd) {}
  UniqueFd(UniqueFd&& o) noexcept : fd_(o.release()) {}
  UniqueFd& operator=(UniqueFd&& o) noexcept {
    reset(o.release());
    return *this;
  }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  ~UniqueFd() { reset(); }

  int get() const noexcept { return fd_; }
  explicit operator bool() const noexcept { return fd_ >= 0; }

  // Gives up ownership without closing: the caller now owns the returned fd.
  [[nodiscard]] int release() noexcept {
    int fd = fd_;
    fd_ = -1;
    return fd;
  }

  // Closes the current fd (if any, and unless it is `fd` itself) and takes `fd`. errno is kept,
  // so an error path may reset() between a failed call and reporting its errno.
  void reset(int fd = -1) noexcept {
    if (fd < 0) fd = -1;
    if (fd == fd_) return;
    if (fd_ >= 0) {
      int saved = errno;
      ::close(fd_);
      errno = saved;
    }
    fd_ = fd;
  }

  // Closes now and returns close(2)'s result (0, or -1 with errno set): for a written file whose
  // last error may only show here. Empty afterwards either way (Linux never keeps the fd).
  int close() noexcept {
    if (fd_ < 0) return 0;
    return ::close(release());
  }

 private:
  int fd_ = -1;
};

// Both ends of a pipe2(2).
struct Pipe {
  UniqueFd read;
  UniqueFd write;
};

// pipe2 with `flags` (O_CLOEXEC, O_NONBLOCK...); `what` opens the error message.
inline Result<Pipe> makePipe(int flags, const std::string& what = "pipe2") {
  int fds[2];
  if (::pipe2(fds, flags) != 0) return sysError(what);
  return Pipe{UniqueFd(fds[0]), UniqueFd(fds[1])};
}

}  // namespace jw
