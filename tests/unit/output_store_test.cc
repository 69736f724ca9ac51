// Unit tests of the output path: the shim's splice appender (offsets, the cap and dropped count,
// draining a real pipe, a failed append) with jobworkerd's reading side (reads anywhere, sizes
// from the shim, identical bytes for every reader, no fd held, flat memory). Runs in the unit
// test process.
#include "supervisor/jobs/output_store.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <thread>

#include "common/fd.h"
#include "supervisor/init/output.h"

namespace jw::supervisor {
namespace {

class TempDir {
 public:
  TempDir() {
    std::string t = "/tmp/jw-output-test-XXXXXX";
    EXPECT_NE(mkdtemp(t.data()), nullptr);
    path_ = t;
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

std::string pattern(size_t n, uint32_t seed = 1) {
  std::mt19937 rng(seed);
  std::string s(n, '\0');
  for (auto& c : s) c = static_cast<char>(rng());
  return s;
}

// Blocks until fd has data or its writer closed it: how the shim's loop waits, too.
void waitReadable(int fd) {
  pollfd pfd{fd, POLLIN, 0};
  while (::poll(&pfd, 1, -1) < 0 && errno == EINTR) {
  }
}

// One log as the job sees it: the shim's side (init::LogAppender splicing a pipe into the file,
// with the cap) and jobworkerd's (OutputLog, which learns the sizes as a Progress frame would
// tell it and reads the file back).
class LogPair {
 public:
  LogPair(const std::string& path, uint64_t cap) {
    auto log = OutputLog::create(path);
    EXPECT_TRUE(log.ok()) << (log.ok() ? "" : log.error().message);
    if (!log.ok()) return;
    log_ = std::move(log.value());
    int p[2];
    EXPECT_EQ(pipe2(p, O_CLOEXEC), 0);
    read_.reset(p[0]);
    write_.reset(p[1]);
    fcntl(p[0], F_SETFL, O_NONBLOCK);
    devnull_.reset(open("/dev/null", O_WRONLY | O_CLOEXEC));
    appender_.emplace(read_.get(), log_->writeFd(), devnull_.get(), cap);
  }
  explicit operator bool() const { return log_ != nullptr; }
  OutputLog& log() { return *log_; }
  int writeEnd() const { return write_.get(); }

  // The job writes `data` (a thread, so any amount fits through the pipe), optionally closes its
  // end; the shim drains until the pipe is empty (or at EOF); jobworkerd learns the sizes.
  void jobWrites(const std::string& data, bool then_close = false) {
    std::thread writer([&] {
      size_t off = 0;
      while (off < data.size()) {
        ssize_t n = ::write(write_.get(), data.data() + off, data.size() - off);
        if (n <= 0) break;
        off += static_cast<size_t>(n);
      }
      if (then_close) write_.reset();
    });
    uint64_t want = seen() + data.size();
    while (seen() < want || then_close) {
      if (appender_->drain() == init::LogAppender::Drained::kEof) break;
      if (seen() < want || then_close) waitReadable(read_.get());
    }
    writer.join();
    log_->update(appender_->sizes());
  }
  const shim::StreamSizes& sizes() const { return appender_->sizes(); }

 private:
  uint64_t seen() const { return appender_->sizes().stored + appender_->sizes().dropped; }
  std::unique_ptr<OutputLog> log_;
  UniqueFd read_, write_, devnull_;
  std::optional<init::LogAppender> appender_;
};

TEST(OutputLog, AppendsAndReadsBackAtOffsets) {
  TempDir dir;
  LogPair pair(dir.path() + "/output", 1 << 20);
  ASSERT_TRUE(pair);
  OutputLog& log = pair.log();
  pair.jobWrites("hello");
  pair.jobWrites(" world");
  EXPECT_EQ(log.size(), 11u);
  EXPECT_EQ(log.read(0, 5).value(), "hello");
  EXPECT_EQ(log.read(6, 100).value(), "world");
  EXPECT_EQ(log.read(11, 10).value(), "");
  EXPECT_EQ(log.read(1000, 10).value(), "");
  EXPECT_FALSE(log.truncated());
  EXPECT_EQ(log.dropped(), 0u);
  // The bytes are in the file, not only in memory.
  std::ifstream f(dir.path() + "/output", std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  EXPECT_EQ(ss.str(), "hello world");
  struct stat st {};
  ASSERT_EQ(stat((dir.path() + "/output").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0600u);
}

TEST(OutputLog, ReadsAtArbitraryOffsets) {
  TempDir dir;
  LogPair pair(dir.path() + "/output", 1 << 30);
  ASSERT_TRUE(pair);
  std::string data = pattern(3 << 20);
  pair.jobWrites(data);
  OutputLog& log = pair.log();
  ASSERT_EQ(log.size(), data.size());
  std::mt19937_64 rng(7);
  for (int i = 0; i < 500; i++) {
    uint64_t off = rng() % (data.size() + 10);
    size_t max = 1 + rng() % 65536;
    auto got = log.read(off, max);
    ASSERT_TRUE(got.ok());
    std::string want = off < data.size() ? data.substr(off, max) : "";
    ASSERT_EQ(got.value(), want) << "offset " << off << " max " << max;
  }
}

TEST(OutputLog, CapStoresPrefixAndCountsDroppedBytes) {
  TempDir dir;
  LogPair pair(dir.path() + "/output", 10);
  ASSERT_TRUE(pair);
  pair.jobWrites("0123456");
  pair.jobWrites("789abcdef");
  pair.jobWrites("XYZ");
  OutputLog& log = pair.log();
  EXPECT_EQ(log.size(), 10u);
  EXPECT_EQ(log.dropped(), 9u);
  EXPECT_TRUE(log.truncated());
  EXPECT_EQ(log.read(0, 100).value(), "0123456789");
  EXPECT_EQ(std::filesystem::file_size(dir.path() + "/output"), 10u);
}

TEST(OutputLog, DrainsAPipeToEofPastTheCap) {
  TempDir dir;
  LogPair pair(dir.path() + "/output", 100'000);
  ASSERT_TRUE(pair);
  // A writer that would block forever if the shim stopped draining at the cap.
  std::string data = pattern(1 << 20, 3);
  pair.jobWrites(data, true);
  OutputLog& log = pair.log();
  EXPECT_EQ(log.size(), 100'000u);
  EXPECT_EQ(log.dropped(), data.size() - 100'000);
  EXPECT_EQ(log.read(0, 65536).value(), data.substr(0, 65536));
  EXPECT_EQ(log.read(65536, 65536).value(), data.substr(65536, 100'000 - 65536));
}

TEST(OutputLog, ConcurrentReadersGetIdenticalBytes) {
  TempDir dir;
  LogPair pair(dir.path() + "/output", 1 << 30);
  ASSERT_TRUE(pair);
  std::string data = pattern(2 << 20, 5);
  // Three readers with different chunk sizes interleaved with the writer, as followers would.
  const size_t chunk[3] = {4096, 65536, 12345};
  std::string got[3];
  size_t written = 0;
  std::mt19937 rng(11);
  while (written < data.size() || got[0].size() < data.size() || got[1].size() < data.size() ||
         got[2].size() < data.size()) {
    if (written < data.size()) {
      size_t n = std::min<size_t>(1 + rng() % 80'000, data.size() - written);
      pair.jobWrites(data.substr(written, n));
      written += n;
    }
    for (int r = 0; r < 3; r++) {
      auto part = pair.log().read(got[r].size(), chunk[r]);
      ASSERT_TRUE(part.ok());
      got[r] += part.value();
    }
  }
  for (int r = 0; r < 3; r++) EXPECT_TRUE(got[r] == data) << "reader " << r;
}

// A write the filesystem refuses (here EFBIG from RLIMIT_FSIZE, as ENOSPC would be on a full
// disk) stops storing at that byte, says so, and keeps draining: the job never sees EPIPE.
// In a child process: the limit must not reach the rest of the suite.
void appendPastFileSizeLimit() {
  signal(SIGXFSZ, SIG_IGN);
  rlimit fsize{12288, 12288};
  if (setrlimit(RLIMIT_FSIZE, &fsize) != 0) _exit(10);
  TempDir dir;
  LogPair pair(dir.path() + "/output", 1 << 20);
  if (!pair) _exit(11);
  OutputLog& l = pair.log();
  std::string block(10000, 'a');
  pair.jobWrites(block);
  pair.jobWrites(block);  // crosses the limit at 12288
  if (l.size() != 12288 || l.dropped() != 20000 - 12288) _exit(12);
  if (l.error() != "file too large at byte 12288") _exit(13);
  pair.jobWrites("more");  // still drained
  if (l.size() != 12288 || l.dropped() != 20000 - 12288 + 4) _exit(17);
  if (l.read(12280, 100).value() != std::string(8, 'a')) _exit(18);
  _exit(0);
}

TEST(OutputLog, AFailedWriteStopsStoringAndKeepsDraining) {
  EXPECT_EXIT(appendPastFileSizeLimit(), testing::ExitedWithCode(0), "");
}

size_t openFds() {
  size_t n = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator("/proc/self/fd")) n++;
  return n;
}

TEST(OutputLog, ASealedLogHoldsNoFdAndStillReads) {
  TempDir dir;
  size_t before = openFds();
  auto created = OutputLog::create(dir.path() + "/output");
  ASSERT_TRUE(created.ok());
  OutputLog& log = *created.value();
  EXPECT_EQ(openFds(), before + 1);
  ASSERT_EQ(pwrite(log.writeFd(), "sealed bytes", 12, 0), 12);  // as the shim would
  log.seal();
  EXPECT_EQ(log.writeFd(), -1);
  EXPECT_EQ(openFds(), before);
  log.update({12, 0, 0, 0});
  EXPECT_EQ(log.read(7, 100).value(), "bytes");
  EXPECT_EQ(openFds(), before);  // opened for the read, closed after it
  // Frames may be dropped, never reordered: sizes only grow, the first error stays.
  log.update({5, 0, 0, 0});
  EXPECT_EQ(log.size(), 12u);
  log.update({12, 3, ENOSPC, 12});
  log.update({12, 9, EIO, 20});
  EXPECT_EQ(log.dropped(), 9u);
  EXPECT_EQ(log.error(), "no space left on device at byte 12");
}

long vmHwmKiB() {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind("VmHWM:", 0) == 0) return std::strtol(line.c_str() + 6, nullptr, 10);
  }
  return -1;
}

TEST(OutputLog, MemoryStaysFlatWhileStoringMuchOutput) {
  TempDir dir;
  LogPair pair(dir.path() + "/output", 1ULL << 30);
  ASSERT_TRUE(pair);
  const size_t total = 128u << 20;
  long before = vmHwmKiB();
  std::string block(4u << 20, 'x');
  for (size_t done = 0; done < total; done += block.size()) pair.jobWrites(block);
  EXPECT_EQ(pair.log().size(), total);
  long growth = vmHwmKiB() - before;
  // The test's own 4 MiB block and its writer thread aside, splice moves pages, never copies.
  EXPECT_LT(growth, 16 * 1024) << "peak RSS grew by " << growth << " KiB for 128 MiB of output";
}

// A previous run's job directories are its jobs' records and output: StateStore loads them (or
// sets them aside), prepare() leaves them alone.
TEST(OutputStore, PrepareKeepsThePreviousRunsJobsAndJobDirsArePrivate) {
  TempDir dir;
  std::filesystem::create_directories(dir.path() + "/jobs/old-job");
  std::ofstream(dir.path() + "/jobs/old-job/output") << "kept";
  OutputStore store(dir.path());
  ASSERT_TRUE(store.prepare().ok());
  EXPECT_TRUE(std::filesystem::exists(dir.path() + "/jobs/old-job/output"));
  auto job_dir = store.createJobDir("abc");
  ASSERT_TRUE(job_dir.ok());
  struct stat st {};
  ASSERT_EQ(stat(job_dir.value().c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0700u);
  ASSERT_EQ(stat((dir.path() + "/jobs").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0700u);
  ASSERT_TRUE(OutputLog::create(job_dir.value() + "/output").ok());
  EXPECT_FALSE(OutputStore(dir.path()).createJobDir("abc").ok());  // exists already
  ASSERT_TRUE(store.removeJobDir("abc").ok());
  EXPECT_FALSE(std::filesystem::exists(job_dir.value()));
  EXPECT_TRUE(store.removeJobDir("abc").ok());  // gone already is fine
}

}  // namespace
}  // namespace jw::supervisor
