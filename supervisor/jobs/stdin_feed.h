// A job's stdin pipe as jobworkerd feeds it ("stdin": "pipe"): the write end, which jobworkerd
// alone holds (non-blocking: the event loop never waits on a job that does not read), the one
// upload's state, and the StdinWrite frames accepted but not yet written. Runs in jobworkerd.
#pragma once

#include <cstdint>
#include <deque>
#include <string>
#include <vector>

#include "common/fd.h"
#include "common/result.h"
#include "supervisor/core/event_loop.h"

namespace jw::supervisor {

class StdinFeed {
 public:
  // The pipe: the read end for the shim (close-on-exec, moved to shim::kStdinFd by the spawn),
  // the write end non-blocking and 1 MiB deep where the kernel allows.
  static Result<StdinFeed> create(UniqueFd* read_end);

  enum class Phase {
    kWaiting,    // the pipe is open, no upload has begun
    kUploading,  // between StdinOpen and StdinClose
    kClosed,     // the pipe is closed: the upload ended, or the job did
  };
  struct Frame {
    uint32_t request_id;  // answered once all of `data` is in the pipe
    std::string data;
    size_t written = 0;
  };
  enum class Drain { kDone, kBlocked, kBroken };

  Phase phase() const { return phase_; }
  const std::string& uploader() const { return uploader_; }
  uint64_t bytes() const { return bytes_; }
  bool complete() const { return complete_; }
  size_t unwritten() const { return frames_.size(); }
  int fd() const { return pipe_.get(); }

  void begin(const std::string& user) {
    phase_ = Phase::kUploading;
    uploader_ = user;
  }
  void queue(uint32_t request_id, std::string data) {
    frames_.push_back(Frame{request_id, std::move(data), 0});
  }
  // Writes what the pipe takes of the queued frames; the ids of frames now wholly written go to
  // *written. kBroken: the job closed its stdin (EPIPE) or another error (*err).
  Drain drain(std::vector<uint32_t>* written, int* err);
  // Closes the pipe (EOF for the job); returns the ids of the frames never written.
  std::vector<uint32_t> close(bool complete);

  EventLoop::WatchId watch = 0;  // EPOLLOUT while frames wait for room in the pipe

 private:
  explicit StdinFeed(UniqueFd write_end) : pipe_(std::move(write_end)) {}

  UniqueFd pipe_;
  Phase phase_ = Phase::kWaiting;
  std::string uploader_;
  uint64_t bytes_ = 0;
  bool complete_ = false;
  std::deque<Frame> frames_;
};

}  // namespace jw::supervisor
