// A job's output logs: append-only files under <state-dir>/jobs/<id>/ that the job's shim fills,
// read back with pread at any offset; the state filesystem's free space. Runs in jobworkerd.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/fd.h"
#include "common/protocol/shim_messages.h"
#include "common/result.h"
#include "supervisor/jobs/time_index.h"

namespace jw::supervisor {

// The log file of each stream in a job's directory: [kStdout] (the merged log for merged jobs),
// [kStderr] for separate jobs.
inline constexpr const char* kStreamFile[2] = {"output", "stderr"};

// One stream's log file ("output" or "stderr"). The job's shim appends to it (splice, the cap,
// dropped bytes, a failed append: supervisor/init/output); jobworkerd learns the sizes from the
// shim's Progress and Exited frames and reads the file at any offset, opening it for each read,
// so no job holds an fd of jobworkerd's once its shim has started.
class OutputLog {
 public:
  // Creates the file (O_EXCL, 0600) and keeps it open for the shim's start only.
  static Result<std::unique_ptr<OutputLog>> create(const std::string& path);
  // The sealed log of a job a previous jobworkerd ran (its record gives dropped and error): what
  // the file holds is what was stored.
  static Result<std::unique_ptr<OutputLog>> openStored(const std::string& path, uint64_t dropped,
                                                       std::string error);
  OutputLog(const OutputLog&) = delete;
  OutputLog& operator=(const OutputLog&) = delete;

  // The fd the shim gets (until seal()).
  int writeFd() const { return fd_.get(); }
  // The shim has its copy (or the job never started): jobworkerd holds none.
  void seal() { fd_.reset(); }

  // The shim's latest figures. Sizes only grow (a frame may be dropped, never reordered); the
  // first error stays. New bytes get a mark in the time index: they arrived now.
  void update(const shim::StreamSizes& s);
  // The job has ended: the rest of the time index is written and its memory freed.
  void finish();

  // Up to max_bytes stored bytes starting at offset (empty at or past the end).
  Result<std::string> read(uint64_t offset, size_t max_bytes) const;
  // The same into dst (at most max_bytes): how many bytes it wrote.
  Result<size_t> readInto(uint64_t offset, char* dst, size_t max_bytes) const;

  uint64_t size() const { return size_; }        // bytes stored
  uint64_t dropped() const { return dropped_; }  // bytes drained but not stored (cap or error)
  bool truncated() const { return dropped_ > 0; }
  // Why storing stopped early ("no space left on device at byte 12288"); "" when it did not.
  const std::string& error() const { return error_; }
  const std::string& path() const { return path_; }
  // When the stored bytes arrived (time_index.h): in memory while the log grows, from
  // <path>.times once sealed.
  std::vector<TimeMark> timeMarks() const;

 private:
  OutputLog(UniqueFd fd, std::string path)
      : fd_(std::move(fd)),
        path_(std::move(path)),
        times_(std::make_unique<TimeIndex>(path_ + ".times")) {}

  UniqueFd fd_;
  std::string path_;
  uint64_t size_ = 0;
  uint64_t dropped_ = 0;
  std::string error_;
  std::unique_ptr<TimeIndex> times_;  // null once the job has ended
};

// The <state-dir>/jobs tree.
class OutputStore {
 public:
  explicit OutputStore(std::string state_dir) : jobs_dir_(std::move(state_dir) + "/jobs") {}

  // Creates <state-dir>/jobs (0700). What a previous run left there is its jobs' records and
  // output: StateStore loads them.
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
