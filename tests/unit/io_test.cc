// Unit tests of common/fd.h (UniqueFd, makePipe) and common/io.h (the one copy of each I/O
// loop); runs in the unit suite, unprivileged.
#include "common/io.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cerrno>
#include <string>

#include "common/fd.h"

namespace jw {
namespace {

bool isOpen(int fd) { return ::fcntl(fd, F_GETFD) >= 0; }

TEST(UniqueFd, ClosesOnceAndMovesOwnership) {
  int raw = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  ASSERT_GE(raw, 0);
  {
    UniqueFd a(raw);
    EXPECT_TRUE(a);
    EXPECT_EQ(a.get(), raw);
    UniqueFd b(std::move(a));
    EXPECT_FALSE(a);  // NOLINT(bugprone-use-after-move): moved-from is empty, by contract
    EXPECT_EQ(b.get(), raw);
    UniqueFd c;
    c = std::move(b);
    EXPECT_EQ(c.get(), raw);
    UniqueFd& same = c;
    c = std::move(same);  // self-move keeps the fd
    EXPECT_EQ(c.get(), raw);
    EXPECT_TRUE(isOpen(raw));
  }
  EXPECT_FALSE(isOpen(raw));
}

TEST(UniqueFd, ReleaseGivesUpAndResetKeepsErrno) {
  int raw = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  ASSERT_GE(raw, 0);
  UniqueFd a(raw);
  EXPECT_EQ(a.release(), raw);
  EXPECT_FALSE(a);
  EXPECT_TRUE(isOpen(raw));
  a.reset(raw);
  a.reset(raw);  // the fd it already owns: kept, not closed
  EXPECT_TRUE(isOpen(raw));
  errno = EACCES;
  a.reset();
  EXPECT_EQ(errno, EACCES);  // error paths may reset between a failure and its report
  EXPECT_FALSE(isOpen(raw));
  EXPECT_FALSE(UniqueFd(-5));  // any negative fd is "none"
}

TEST(UniqueFd, CloseReportsCloseResult) {
  UniqueFd a(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  ASSERT_TRUE(a);
  EXPECT_EQ(a.close(), 0);
  EXPECT_FALSE(a);
  EXPECT_EQ(a.close(), 0);  // nothing to close
}

TEST(Io, WriteAllReadAllAndTheCap) {
  auto p = makePipe(O_CLOEXEC);
  ASSERT_TRUE(p.ok()) << p.error().message;
  ASSERT_TRUE(writeAll(p->write.get(), "hello world", "test pipe").ok());
  p->write.reset();
  auto all = readAll(p->read.get(), "test pipe", 64);
  ASSERT_TRUE(all.ok()) << all.error().message;
  EXPECT_EQ(*all, "hello world");

  auto q = makePipe(O_CLOEXEC);
  ASSERT_TRUE(q.ok());
  ASSERT_TRUE(writeAll(q->write.get(), std::string(100, 'x'), "test pipe").ok());
  q->write.reset();
  auto capped = readAll(q->read.get(), "test pipe", 99);
  ASSERT_FALSE(capped.ok());
  EXPECT_EQ(capped.error().message, "test pipe: larger than 99 bytes");

  auto missing = readFile("/nonexistent/jw-io-test", 16);
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().sys_errno, ENOENT);
}

TEST(Io, ReadExactStopsAtEofAndOnAnEmptyNonBlockingPipe) {
  auto p = makePipe(O_CLOEXEC | O_NONBLOCK);
  ASSERT_TRUE(p.ok());
  int value = 0;
  auto none = readExact(p->read.get(), &value, sizeof value, "test pipe");
  ASSERT_TRUE(none.ok()) << none.error().message;
  EXPECT_EQ(none.value(), 0u);  // EAGAIN: nothing buffered

  int sent = 0x12345678;
  ASSERT_TRUE(writeAll(p->write.get(), {reinterpret_cast<char*>(&sent), 2}, "test pipe").ok());
  p->write.reset();
  auto part = readExact(p->read.get(), &value, sizeof value, "test pipe");
  ASSERT_TRUE(part.ok());
  EXPECT_EQ(part.value(), 2u);  // EOF after two bytes

  auto q = makePipe(O_CLOEXEC);
  ASSERT_TRUE(q.ok());
  ASSERT_TRUE(writeAll(q->write.get(), {reinterpret_cast<char*>(&sent), sizeof sent}, "t").ok());
  auto whole = readExact(q->read.get(), &value, sizeof value, "test pipe");
  ASSERT_TRUE(whole.ok());
  EXPECT_EQ(whole.value(), sizeof value);
  EXPECT_EQ(value, sent);
  EXPECT_FALSE(readExact(-1, &value, sizeof value, "fd -1").ok());
}

}  // namespace
}  // namespace jw
