// State file writes and the fsync thread (see durable_files.h); runs in jobworkerd.
#include "supervisor/state/durable_files.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <vector>

#include "common/io.h"
#include "common/log.h"

namespace jw::supervisor {

Status replaceFileAt(int dir_fd, const std::string& name, std::string_view bytes) {
  const std::string tmp = name + ".tmp";
  UniqueFd fd(
      openat(dir_fd, tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600));
  if (!fd) return sysError("create " + tmp);
  Status st = writeAll(fd.get(), bytes, tmp);
  if (st && close(fd.release()) != 0) st = sysError("close " + tmp);
  if (st && renameat(dir_fd, tmp.c_str(), dir_fd, name.c_str()) != 0) {
    st = sysError("rename " + tmp + " to " + name);
  }
  if (!st) (void)unlinkat(dir_fd, tmp.c_str(), 0);
  return st;
}

Status createReserveAt(int dir_fd, const std::string& name, size_t bytes) {
  UniqueFd fd(
      openat(dir_fd, name.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600));
  if (!fd) return sysError("create " + name);
  int err = posix_fallocate(fd.get(), 0, static_cast<off_t>(bytes));
  if (err != 0) {
    (void)unlinkat(dir_fd, name.c_str(), 0);
    return sysError("reserve " + std::to_string(bytes) + " bytes for " + name, err);
  }
  return okStatus();
}

Status fillReserveAt(int dir_fd, const std::string& reserve, const std::string& name,
                     std::string_view bytes) {
  // No O_TRUNC: truncating would give the reserved blocks back before we use them.
  UniqueFd fd(openat(dir_fd, reserve.c_str(), O_WRONLY | O_NOFOLLOW | O_CLOEXEC));
  if (!fd) return sysError("open " + reserve);
  struct stat st {};
  if (fstat(fd.get(), &st) != 0) return sysError("stat " + reserve);
  if (static_cast<uint64_t>(st.st_size) < bytes.size()) {
    return Error{reserve + " holds " + std::to_string(st.st_size) + " bytes, the record needs " +
                 std::to_string(bytes.size())};
  }
  size_t done = 0;
  while (done < bytes.size()) {
    ssize_t n =
        pwrite(fd.get(), bytes.data() + done, bytes.size() - done, static_cast<off_t>(done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return sysError("write " + reserve);
    done += static_cast<size_t>(n);
  }
  if (ftruncate(fd.get(), static_cast<off_t>(bytes.size())) != 0) {
    return sysError("truncate " + reserve);
  }
  if (close(fd.release()) != 0) return sysError("close " + reserve);
  if (renameat(dir_fd, reserve.c_str(), dir_fd, name.c_str()) != 0) {
    return sysError("rename " + reserve + " to " + name);
  }
  return okStatus();
}

SyncQueue::SyncQueue() : thread_([this] { run(); }) {}

SyncQueue::~SyncQueue() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  wake_.notify_one();
  thread_.join();
}

void SyncQueue::push(std::string path) {
  {
    std::lock_guard lock(mu_);
    pending_.insert(std::move(path));
    pushed_++;
  }
  wake_.notify_one();
}

void SyncQueue::flush() {
  std::unique_lock lock(mu_);
  uint64_t target = pushed_;
  wake_.notify_one();
  done_.wait(lock, [&] { return synced_ >= target; });
}

void SyncQueue::run() {
  std::unique_lock lock(mu_);
  for (;;) {
    wake_.wait(lock, [&] { return stopping_ || !pending_.empty(); });
    if (pending_.empty() && stopping_) return;
    // Let a burst of changes (a start, a stop, the end) arrive: one fsync each covers them all.
    wake_.wait_for(lock, std::chrono::milliseconds(kBatchMs), [&] { return stopping_; });
    std::set<std::string> batch;
    batch.swap(pending_);
    uint64_t upto = pushed_;
    lock.unlock();
    for (const auto& path : batch) {
      UniqueFd fd(open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
      if (!fd) {
        if (errno != ENOENT) log::warning(sysError("sync: open " + path).message);
        continue;
      }
      if (fsync(fd.get()) != 0) log::warning(sysError("fsync " + path).message);
    }
    lock.lock();
    synced_ = upto;
    done_.notify_all();
  }
}

}  // namespace jw::supervisor
