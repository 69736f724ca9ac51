// A job's stdin pipe (see stdin_feed.h); runs in jobworkerd's event loop.
#include "supervisor/jobs/stdin_feed.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>

namespace jw::supervisor {

namespace {

// Deep enough that a reading job rarely waits for the next frame; a job that does not read
// pins this much kernel memory, no more.
constexpr int kPipeBytes = 1 << 20;

}  // namespace

Result<StdinFeed> StdinFeed::create(UniqueFd* read_end) {
  int p[2];
  if (pipe2(p, O_CLOEXEC) != 0) return sysError("pipe2 for the job's stdin");
  read_end->reset(p[0]);
  UniqueFd write_end(p[1]);
  int fl = fcntl(write_end.get(), F_GETFL);
  if (fl < 0 || fcntl(write_end.get(), F_SETFL, fl | O_NONBLOCK) != 0) {
    return sysError("make the job's stdin pipe non-blocking");
  }
  (void)fcntl(write_end.get(), F_SETPIPE_SZ, kPipeBytes);  // over pipe-max-size: 64 KiB is fine
  return StdinFeed(std::move(write_end));
}

StdinFeed::Drain StdinFeed::drain(std::vector<uint32_t>* written, int* err) {
  while (!frames_.empty()) {
    Frame& f = frames_.front();
    ssize_t n = ::write(pipe_.get(), f.data.data() + f.written, f.data.size() - f.written);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) return Drain::kBlocked;
    if (n < 0) {
      *err = errno;
      return Drain::kBroken;
    }
    f.written += static_cast<size_t>(n);
    bytes_ += static_cast<uint64_t>(n);
    if (f.written < f.data.size()) continue;
    written->push_back(f.request_id);
    frames_.pop_front();
  }
  return Drain::kDone;
}

std::vector<uint32_t> StdinFeed::close(bool complete) {
  std::vector<uint32_t> unwritten;
  for (const Frame& f : frames_) unwritten.push_back(f.request_id);
  frames_.clear();
  pipe_.reset();
  complete_ = complete && unwritten.empty();
  phase_ = Phase::kClosed;
  return unwritten;
}

}  // namespace jw::supervisor
