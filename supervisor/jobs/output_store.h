// A job's output logs: append-only files under <state-dir>/jobs/<id>/ filled from the job's
// pipes, with a size cap, read back with pread at any offset; the state filesystem's free space.
// Runs in jobworkerd.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/fd.h"
#include "common/result.h"
#include "supervisor/jobs/time_index.h"

namespace jw::supervisor {

// One stream's log file ("output" or "stderr"). Bytes past the cap are read from the pipe and
// counted, never stored, so the job never blocks on a full pipe and memory stays flat. A failed
// write (disk full, quota, I/O error) is not the job's death either: the log stops storing,
// records why and where, and counts the rest as dropped, so what is stored stays a clean prefix
// of what the job printed. The log holds its fd only while it is written: a sealed log (the
// pipe reached EOF) opens the file for each read, so finished jobs hold no fd.
class OutputLog {
 public:
  static Result<std::unique_ptr<OutputLog>> create(const std::string& path, uint64_t cap_bytes);
  OutputLog(const OutputLog&) = delete;
  OutputLog& operator=(const OutputLog&) = delete;

  // Stores what fits under the cap and the disk, counts the rest as dropped; never fails.
  void append(const char* data, size_t len);

  enum class Drain { kData, kWouldBlock, kEof };
  // One read() of at most kMaxChunk bytes from a non-blocking pipe, appended to the log. An
  // error is the pipe's, never the disk's.
  Result<Drain> drainOnce(int pipe_fd);

  // No more appends: closes the write fd, writes the rest of the time index and frees it.
  void seal();
  bool sealed() const { return !fd_; }

  // Up to max_bytes stored bytes starting at offset (empty at or past the end).
  Result<std::string> read(uint64_t offset, size_t max_bytes) const;

  uint64_t size() const { return size_; }        // bytes stored
  uint64_t dropped() const { return dropped_; }  // bytes read but not stored (cap or error)
  bool truncated() const { return dropped_ > 0; }
  // Why storing stopped early ("no space left on device at byte 12288"); "" when it did not.
  const std::string& error() const { return error_; }
  const std::string& path() const { return path_; }
  // When the stored bytes arrived (time_index.h): in memory while the log grows, from
  // <path>.times once sealed.
  std::vector<TimeMark> timeMarks() const;

 private:
  OutputLog(UniqueFd fd, std::string path, uint64_t cap)
      : fd_(std::move(fd)),
        path_(std::move(path)),
        cap_(cap),
        times_(std::make_unique<TimeIndex>(path_ + ".times")) {}
  void recordWriteError(int err);

  UniqueFd fd_;
  std::string path_;
  uint64_t cap_;
  uint64_t size_ = 0;
  uint64_t dropped_ = 0;
  std::string error_;
  std::unique_ptr<TimeIndex> times_;  // null once sealed
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

  // Bytes an unprivileged writer could still store on the jobs directory's filesystem, and
  // whether it is out of inodes (statvfs). Filesystems that report no inode count are never out.
  struct Space {
    uint64_t available_bytes = 0;
    bool out_of_inodes = false;
  };
  Result<Space> space() const;

  const std::string& jobsDir() const { return jobs_dir_; }

 private:
  std::string jobs_dir_;
};

}  // namespace jw::supervisor
