// The job's output path inside its shim: pipe -> log file with splice() (no user-space buffer),
// the per-job cap, bytes dropped past it, and a failed append (ENOSPC, EDQUOT, EIO, ...) that
// stops storing at that byte while the pipe keeps being drained. Runs in jobworker-init.
#pragma once

#include <cstdint>

#include "common/protocol/shim_messages.h"

namespace jw::init {

class LogAppender {
 public:
  enum class Drained { kData, kEmpty, kEof };

  // pipe_fd: non-blocking read end; log_fd: the log file, written at explicit offsets from 0;
  // devnull_fd: where bytes that are not stored go.
  LogAppender(int pipe_fd, int log_fd, int devnull_fd, uint64_t cap)
      : pipe_(pipe_fd), log_(log_fd), devnull_(devnull_fd), cap_(cap) {}

  // Moves what the pipe holds now (a bounded number of splices, fair to the other stream).
  Drained drain();

  const shim::StreamSizes& sizes() const { return sizes_; }
  int pipeFd() const { return pipe_; }

 private:
  bool storing() const { return sizes_.error == 0 && sizes_.stored < cap_; }
  long discard();

  int pipe_;
  int log_;
  int devnull_;
  uint64_t cap_;
  shim::StreamSizes sizes_;
};

}  // namespace jw::init
