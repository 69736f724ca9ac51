// Output log files and the jobs directory (see output_store.h); runs in jobworkerd.
#include "supervisor/jobs/output_store.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <string>

#include "common/protocol/messages.h"

namespace jw::supervisor {

namespace {

// One buffer for every pipe read: the loop is single-threaded and a read is appended before the
// next one starts, so the supervisor's memory does not grow with the number of jobs.
char g_pipe_buffer[protocol::kMaxChunk];

// Removes dir_fd/name recursively without following symlinks.
Status removeTreeAt(int dir_fd, const char* name) {
  if (unlinkat(dir_fd, name, 0) == 0) return okStatus();
  if (errno == ENOENT) return okStatus();
  if (errno != EISDIR) return sysError(std::string("unlink ") + name);
  UniqueFd fd(openat(dir_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!fd) return sysError(std::string("open directory ") + name);
  DIR* d = fdopendir(fd.get());
  if (d == nullptr) return sysError(std::string("fdopendir ") + name);
  (void)fd.release();  // closedir closes it now
  Status result = okStatus();
  while (dirent* e = readdir(d)) {
    if (std::strcmp(e->d_name, ".") == 0 || std::strcmp(e->d_name, "..") == 0) continue;
    Status st = removeTreeAt(dirfd(d), e->d_name);
    if (!st && result) result = st;
  }
  closedir(d);
  if (unlinkat(dir_fd, name, AT_REMOVEDIR) != 0 && errno != ENOENT && result) {
    result = sysError(std::string("rmdir ") + name);
  }
  return result;
}

}  // namespace

Result<std::unique_ptr<OutputLog>> OutputLog::create(const std::string& path, uint64_t cap_bytes) {
  UniqueFd fd(open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (!fd) return sysError("create output log " + path);
  return std::unique_ptr<OutputLog>(new OutputLog(std::move(fd), path, cap_bytes));
}

void OutputLog::append(const char* data, size_t len) {
  uint64_t room = size_ < cap_ && fd_ ? cap_ - size_ : 0;
  size_t store = static_cast<size_t>(std::min<uint64_t>(room, len));
  size_t done = 0;
  while (done < store) {
    ssize_t n = pwrite(fd_.get(), data + done, store - done, static_cast<off_t>(size_ + done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      size_ += done;
      recordWriteError(n < 0 ? errno : ENOSPC);
      dropped_ += len - done;
      if (done > 0 && times_) times_->note(size_, realtimeMs());
      return;
    }
    done += static_cast<size_t>(n);
  }
  size_ += store;
  dropped_ += len - store;
  if (store > 0 && times_) times_->note(size_, realtimeMs());
}

void OutputLog::seal() {
  fd_.reset();
  if (!times_) return;
  times_->flush(realtimeMs());
  times_.reset();
}

std::vector<TimeMark> OutputLog::timeMarks() const {
  return times_ ? times_->marks() : TimeIndex::load(path_ + ".times");
}

// Storing stops at the first failure: later bytes written after a gap would read as if they
// followed what was lost. The pipe keeps being drained, so the job never sees EPIPE.
void OutputLog::recordWriteError(int err) {
  std::string what = std::strerror(err);
  if (!what.empty()) what[0] = static_cast<char>(std::tolower(static_cast<unsigned char>(what[0])));
  error_ = what + " at byte " + std::to_string(size_);
  cap_ = size_;
}

Result<OutputLog::Drain> OutputLog::drainOnce(int pipe_fd) {
  for (;;) {
    ssize_t n = ::read(pipe_fd, g_pipe_buffer, sizeof g_pipe_buffer);
    if (n > 0) {
      append(g_pipe_buffer, static_cast<size_t>(n));
      return Drain::kData;
    }
    if (n == 0) return Drain::kEof;
    if (errno == EINTR) continue;
    if (errno == EAGAIN) return Drain::kWouldBlock;
    return sysError("read job pipe for " + path_);
  }
}

Result<std::string> OutputLog::read(uint64_t offset, size_t max_bytes) const {
  std::string out;
  if (offset >= size_) return out;
  size_t want = static_cast<size_t>(std::min<uint64_t>(max_bytes, size_ - offset));
  UniqueFd opened;
  int fd = fd_.get();
  if (!fd_) {
    opened.reset(open(path_.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
    if (!opened) return sysError("open output log " + path_);
    fd = opened.get();
  }
  out.resize(want);
  size_t got = 0;
  while (got < want) {
    ssize_t n = pread(fd, out.data() + got, want - got, static_cast<off_t>(offset + got));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return sysError("read output log " + path_);
    if (n == 0) break;  // cannot happen while we are the only writer; never return garbage
    got += static_cast<size_t>(n);
  }
  out.resize(got);
  return out;
}

Status OutputStore::prepare() {
  if (mkdir(jobs_dir_.c_str(), 0700) != 0 && errno != EEXIST) {
    return sysError("mkdir " + jobs_dir_);
  }
  UniqueFd fd(open(jobs_dir_.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!fd) return sysError("open " + jobs_dir_);
  if (fchmod(fd.get(), 0700) != 0) return sysError("chmod 0700 " + jobs_dir_);
  DIR* d = fdopendir(fd.get());
  if (d == nullptr) return sysError("fdopendir " + jobs_dir_);
  (void)fd.release();  // closedir closes it now
  Status result = okStatus();
  while (dirent* e = readdir(d)) {
    if (std::strcmp(e->d_name, ".") == 0 || std::strcmp(e->d_name, "..") == 0) continue;
    Status st = removeTreeAt(dirfd(d), e->d_name);
    if (!st && result) result = Error{"clean " + jobs_dir_ + ": " + st.error().message};
  }
  closedir(d);
  return result;
}

Result<std::string> OutputStore::createJobDir(const std::string& job_id) {
  std::string dir = jobs_dir_ + "/" + job_id;
  if (mkdir(dir.c_str(), 0700) != 0) return sysError("mkdir " + dir);
  return dir;
}

Result<OutputStore::Space> OutputStore::space() const {
  struct statvfs vfs {};
  if (statvfs(jobs_dir_.c_str(), &vfs) != 0) return sysError("statvfs " + jobs_dir_);
  Space sp;
  sp.available_bytes = static_cast<uint64_t>(vfs.f_bavail) * vfs.f_frsize;
  sp.out_of_inodes = vfs.f_files > 0 && vfs.f_favail == 0;
  return sp;
}

Status OutputStore::removeJobDir(const std::string& job_id) {
  UniqueFd fd(open(jobs_dir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd) return sysError("open " + jobs_dir_);
  return removeTreeAt(fd.get(), job_id.c_str());
}

}  // namespace jw::supervisor
