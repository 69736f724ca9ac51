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

Result<std::unique_ptr<OutputLog>> OutputLog::create(const std::string& path) {
  UniqueFd fd(open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (!fd) return sysError("create output log " + path);
  return std::unique_ptr<OutputLog>(new OutputLog(std::move(fd), path));
}

Result<std::unique_ptr<OutputLog>> OutputLog::openStored(const std::string& path, uint64_t dropped,
                                                         std::string error) {
  struct stat st {};
  if (lstat(path.c_str(), &st) != 0) return sysError("stat output log " + path);
  if (!S_ISREG(st.st_mode)) return Error{"output log " + path + " is not a regular file"};
  auto size = static_cast<uint64_t>(st.st_size);
  std::unique_ptr<OutputLog> log(new OutputLog(UniqueFd(), path));
  log->size_ = size;
  log->dropped_ = dropped;
  log->error_ = std::move(error);
  log->times_.reset();  // its marks are in the file
  return log;
}

void OutputLog::update(const shim::StreamSizes& s) {
  if (s.stored > size_ && times_) times_->note(s.stored, realtimeMs());
  size_ = std::max(size_, s.stored);
  dropped_ = std::max(dropped_, s.dropped);
  if (s.error != 0 && error_.empty()) {
    // The shim stops storing at its first failed append, so the stored bytes stay an exact
    // prefix of what the job wrote; this says where and why.
    std::string what = std::strerror(s.error);
    if (!what.empty()) {
      what[0] = static_cast<char>(std::tolower(static_cast<unsigned char>(what[0])));
    }
    error_ = what + " at byte " + std::to_string(s.error_offset);
  }
}

void OutputLog::finish() {
  if (!times_) return;
  times_->flush(realtimeMs());
  times_.reset();
}

std::vector<TimeMark> OutputLog::timeMarks() const {
  return times_ ? times_->marks() : TimeIndex::load(path_ + ".times");
}

Result<std::string> OutputLog::read(uint64_t offset, size_t max_bytes) const {
  std::string out;
  if (offset >= size_) return out;
  out.resize(static_cast<size_t>(std::min<uint64_t>(max_bytes, size_ - offset)));
  auto got = readInto(offset, out.data(), out.size());
  if (!got) return got.error();
  out.resize(got.value());
  return out;
}

Result<size_t> OutputLog::readInto(uint64_t offset, char* dst, size_t max_bytes) const {
  if (offset >= size_) return size_t{0};
  size_t want = static_cast<size_t>(std::min<uint64_t>(max_bytes, size_ - offset));
  UniqueFd opened(open(path_.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
  if (!opened) return sysError("open output log " + path_);
  const int fd = opened.get();
  size_t got = 0;
  while (got < want) {
    ssize_t n = pread(fd, dst + got, want - got, static_cast<off_t>(offset + got));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return sysError("read output log " + path_);
    if (n == 0) break;  // the file is shorter than the shim said: never return garbage
    got += static_cast<size_t>(n);
  }
  return got;
}

Status OutputStore::prepare() {
  if (mkdir(jobs_dir_.c_str(), 0700) != 0 && errno != EEXIST) {
    return sysError("mkdir " + jobs_dir_);
  }
  UniqueFd fd(open(jobs_dir_.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!fd) return sysError("open " + jobs_dir_);
  if (fchmod(fd.get(), 0700) != 0) return sysError("chmod 0700 " + jobs_dir_);
  return okStatus();
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
