// A job's output logs: append-only files under <state-dir>/jobs/<id>/ filled from the job's
// pipes, with a size cap, read back with pread at any offset. Runs in jobworkerd.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "common/fd.h"
#include "common/result.h"

namespace jw::supervisor {

// One stream's log file ("output" or "stderr"). Bytes past the cap are read from the pipe and
// counted, never stored, so the job never blocks on a full pipe and memory stays flat.
class OutputLog {
 public:
  static Result<std::unique_ptr<OutputLog>> create(const std::string& path, uint64_t cap_bytes);
  OutputLog(const OutputLog&) = delete;
  OutputLog& operator=(const OutputLog&) = delete;

  // Stores what fits under the cap, counts the rest as dropped.
  Status append(const char* data, size_t len);

  enum class Drain { kData, kWouldBlock, kEof };
  // One read() of at most kMaxChunk bytes from a non-blocking pipe, appended to the log.
  Result<Drain> drainOnce(int pipe_fd);

  // Up to max_bytes stored bytes starting at offset (empty at or past the end).
  Result<std::string> read(uint64_t offset, size_t max_bytes) const;

  uint64_t size() const { return size_; }        // bytes stored
  uint64_t dropped() const { return dropped_; }  // bytes read past the cap
  bool truncated() const { return dropped_ > 0; }
  const std::string& path() const { return path_; }

 private:
  OutputLog(UniqueFd fd, std::string path, uint64_t cap)
      : fd_(std::move(fd)), path_(std::move(path)), cap_(cap) {}

  UniqueFd fd_;
  std::string path_;
  uint64_t cap_;
  uint64_t size_ = 0;
  uint64_t dropped_ = 0;
};

// The <state-dir>/jobs tree.
class OutputStore {
 public:
  explicit OutputStore(std::string state_dir) : jobs_dir_(std::move(state_dir) + "/jobs") {}

  // Creates <state-dir>/jobs (0700) and removes what a previous run left there: job records
  // are not persisted, so their output would be unreachable.
  Status prepare();
  // <jobs>/<id>/ (0700).
  Result<std::string> createJobDir(const std::string& job_id);
  // Removes <jobs>/<id>/ and its files; a missing directory is fine.
  Status removeJobDir(const std::string& job_id);

  const std::string& jobsDir() const { return jobs_dir_; }

 private:
  std::string jobs_dir_;
};

}  // namespace jw::supervisor
