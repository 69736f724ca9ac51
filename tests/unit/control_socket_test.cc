// Unit tests for bindControlSocket (supervisor/core/control_socket): the socket's mode, a stale
// socket replaced, and a live socket, a symlink, a file or a loose parent directory refused.
// Runs in the unit suite, no privileges (in a temp dir of the test's own user).
#include "supervisor/core/control_socket.h"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>

#include "common/config.h"
#include "common/fd.h"

namespace jw::supervisor {
namespace {

class ControlSocket : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/jwctlsock-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    path_ = dir_ + "/control.sock";
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  // A socket bound at path_ and closed without unlink: what a crashed daemon leaves behind.
  void leaveStaleSocket() {
    UniqueFd fd(socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::memcpy(addr.sun_path, path_.data(), path_.size());
    ASSERT_EQ(bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  }

  std::string dir_, path_;
};

TEST_F(ControlSocket, IsA0600SocketOfOurs) {
  auto fd = bindControlSocket(path_);
  ASSERT_TRUE(fd.ok()) << fd.error().message;
  struct stat st {};
  ASSERT_EQ(lstat(path_.c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_mode & 07777, 0600u);
  EXPECT_EQ(st.st_uid, geteuid());
}

TEST_F(ControlSocket, AStaleSocketIsReplaced) {
  leaveStaleSocket();
  auto fd = bindControlSocket(path_);
  EXPECT_TRUE(fd.ok()) << fd.error().message;
}

TEST_F(ControlSocket, ALiveSocketIsNotStolen) {
  auto first = bindControlSocket(path_);
  ASSERT_TRUE(first.ok()) << first.error().message;
  auto second = bindControlSocket(path_);
  ASSERT_FALSE(second.ok());
  EXPECT_NE(second.error().message.find("another process is listening"), std::string::npos);
}

TEST_F(ControlSocket, ASymlinkOrAFileIsNeitherFollowedNorRemoved) {
  std::string target = dir_ + "/target";
  std::ofstream(target) << "keep";
  ASSERT_EQ(symlink(target.c_str(), path_.c_str()), 0);
  EXPECT_FALSE(bindControlSocket(path_).ok());
  struct stat st {};
  ASSERT_EQ(lstat(path_.c_str(), &st), 0);
  EXPECT_TRUE(S_ISLNK(st.st_mode));
  ASSERT_EQ(unlink(path_.c_str()), 0);
  ASSERT_EQ(rename(target.c_str(), path_.c_str()), 0);
  EXPECT_FALSE(bindControlSocket(path_).ok());
  ASSERT_EQ(lstat(path_.c_str(), &st), 0);
  EXPECT_TRUE(S_ISREG(st.st_mode));
}

TEST_F(ControlSocket, AParentOthersCanWriteIsRefused) {
  ASSERT_EQ(chmod(dir_.c_str(), 0777), 0);
  auto fd = bindControlSocket(path_);
  ASSERT_FALSE(fd.ok());
  EXPECT_NE(fd.error().message.find("writable by group or others"), std::string::npos);
}

TEST_F(ControlSocket, RelativeAndOverlongPathsAreRefused) {
  EXPECT_FALSE(bindControlSocket("control.sock").ok());
  EXPECT_FALSE(bindControlSocket(dir_ + "/" + std::string(200, 'x')).ok());
}

TEST(ControlSocketPath, DefaultsToTheStateDirAndFollowsTheConfig) {
  config::Settings s;
  EXPECT_EQ(config::controlSocketPath(s), "/var/lib/jobworker/control.sock");
  auto parsed = config::parse("state_dir = /srv/jw\n", "test");
  ASSERT_TRUE(parsed.ok()) << parsed.error().message;
  EXPECT_EQ(config::controlSocketPath(parsed.value()), "/srv/jw/control.sock");
  parsed = config::parse("control_socket = /run/jobworker/control.sock\n", "test");
  ASSERT_TRUE(parsed.ok()) << parsed.error().message;
  EXPECT_EQ(config::controlSocketPath(parsed.value()), "/run/jobworker/control.sock");
}

}  // namespace
}  // namespace jw::supervisor
