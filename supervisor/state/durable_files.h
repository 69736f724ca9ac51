// Writing jobworkerd's state files: replace a file atomically (write a temporary, rename it over
// the old one), fill a preallocated reserve and rename it into place (no free block needed), and
// the one thread that makes all of it durable with fsync, off the event loop. Runs in jobworkerd.
#pragma once

#include <condition_variable>
#include <mutex>
#include <set>
#include <string>
#include <string_view>
#include <thread>

#include "common/fd.h"
#include "common/result.h"

namespace jw::supervisor {

// Writes `bytes` to dir_fd/<name>.tmp (0600, O_NOFOLLOW) and renames it to dir_fd/<name>: a
// reader sees the old file or the new one, never a mix. No fsync here (SyncQueue does it).
Status replaceFileAt(int dir_fd, const std::string& name, std::string_view bytes);

// Creates dir_fd/<name> with `bytes` of allocated blocks (fallocate; posix_fallocate's
// write-zeroes fallback where the filesystem has no fallocate). ENOSPC: the disk cannot take it.
Status createReserveAt(int dir_fd, const std::string& name, size_t bytes);

// Writes `bytes` into the reserve file dir_fd/<reserve> (in place, over its allocated blocks, so
// a full disk does not stop it while the bytes fit), cuts it to their length and renames it to
// dir_fd/<name>. Fails (and leaves both files alone) when the reserve is missing or too small.
Status fillReserveAt(int dir_fd, const std::string& reserve, const std::string& name,
                     std::string_view bytes);

// fsync batched on a thread of its own: the event loop hands over the paths it changed
// (files it wrote, directories it renamed in or removed from), the thread coalesces what arrives
// within kBatchMs and fsyncs each once. A path gone by then is skipped (a later change removed
// it, and queued its directory). The loop never waits for a disk; a daemon crash loses nothing
// (the page cache has it all); a power cut loses at most the last batch's changes.
class SyncQueue {
 public:
  static constexpr int kBatchMs = 50;
  SyncQueue();
  ~SyncQueue();  // syncs what is queued, then joins
  SyncQueue(const SyncQueue&) = delete;
  SyncQueue& operator=(const SyncQueue&) = delete;

  void push(std::string path);
  // Blocks until everything pushed so far is synced (tests, shutdown).
  void flush();

 private:
  void run();

  std::mutex mu_;
  std::condition_variable wake_, done_;
  std::set<std::string> pending_;
  uint64_t pushed_ = 0, synced_ = 0;
  bool stopping_ = false;
  std::thread thread_;  // last: started once the rest exists
};

}  // namespace jw::supervisor
