// Integration tests of jobworkerd's sd_notify messages as systemd receives them: the test owns
// NOTIFY_SOCKET (a datagram socket in a temp dir) and sets WATCHDOG_USEC, as systemd does for
// Type=notify with WatchdogSec=, then reads READY=1, STATUS=, WATCHDOG=1 and STOPPING=1. Runs in
// the test process against the real daemon.
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "common/fd.h"
#include "tests/integration/daemon.h"

namespace jw::test {
namespace {

using Clock = std::chrono::steady_clock;

class NotifySocket {
 public:
  NotifySocket() : dir_(makeTempDir("jwnotify")), path_(dir_ + "/notify") {
    fd_.reset(socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    sockaddr_un sa{};
    sa.sun_family = AF_UNIX;
    std::strncpy(sa.sun_path, path_.c_str(), sizeof sa.sun_path - 1);
    bound_ = fd_ && bind(fd_.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0;
  }
  ~NotifySocket() { removeTree(dir_); }
  NotifySocket(const NotifySocket&) = delete;
  NotifySocket& operator=(const NotifySocket&) = delete;

  bool bound() const { return bound_; }
  const std::string& path() const { return path_; }

  // Every message received so far, each with its arrival time.
  struct Message {
    std::string text;
    Clock::time_point at;
  };
  const std::vector<Message>& drain() {
    char buf[4096];
    ssize_t n;
    while ((n = recv(fd_.get(), buf, sizeof buf, 0)) > 0) {
      messages_.push_back({std::string(buf, static_cast<size_t>(n)), Clock::now()});
    }
    return messages_;
  }
  bool received(const std::string& text) {
    for (const auto& m : drain()) {
      if (m.text == text) return true;
    }
    return false;
  }
  size_t count(const std::string& text) {
    size_t n = 0;
    for (const auto& m : drain()) n += m.text == text ? 1 : 0;
    return n;
  }

 private:
  std::string dir_, path_;
  UniqueFd fd_;
  bool bound_ = false;
  std::vector<Message> messages_;
};

TEST(Notify, ReadyStatusWatchdogAndStopping) {
  NotifySocket sock;
  ASSERT_TRUE(sock.bound()) << strerror(errno);
  Daemon::Options o;
  // A 4 s watchdog: jobworkerd must ping every 2 s from its event loop.
  o.env = {"NOTIFY_SOCKET=" + sock.path(), "WATCHDOG_USEC=4000000"};
  auto d = Daemon::start(o);
  ASSERT_TRUE(waitUntil([&] { return sock.received("READY=1"); }, std::chrono::seconds(20)));
  EXPECT_TRUE(waitUntil([&] { return sock.received("STATUS=serving; 0 jobs running"); },
                        std::chrono::seconds(10)));

  std::string token = login(*d, "admin", d->adminPassword());
  std::string id = startJob(*d, token, R"({"command":["sleep","1000"]})");
  EXPECT_TRUE(waitUntil([&] { return sock.received("STATUS=serving; 1 job running"); },
                        std::chrono::seconds(10)));
  ASSERT_EQ(https(*d, "POST", "/v1/jobs/" + id + "/stop", R"({"grace_s":1})", token).status, 202);
  waitJob(*d, token, id);
  EXPECT_GE(sock.count("STATUS=serving; 0 jobs running"), 2U);

  // Pings keep coming at about half the interval; count them over a few seconds.
  size_t before = sock.count("WATCHDOG=1");
  auto t0 = Clock::now();
  waitUntil([&] { return sock.count("WATCHDOG=1") >= before + 3; }, std::chrono::seconds(30));
  double secs = std::chrono::duration<double>(Clock::now() - t0).count();
  size_t pings = sock.count("WATCHDOG=1") - before;
  std::printf("watchdog: %zu pings in %.2f s under WATCHDOG_USEC=4000000 (expected every 2 s)\n",
              pings, secs);
  EXPECT_GE(pings, 3U);
  // The largest gap between two pings (as this process saw them) stays under the interval:
  // systemd would not have fired.
  double worst = 0;
  const auto& all = sock.drain();
  Clock::time_point last{};
  for (const auto& m : all) {
    if (m.text != "WATCHDOG=1") continue;
    if (last != Clock::time_point{}) {
      worst = std::max(worst, std::chrono::duration<double>(m.at - last).count());
    }
    last = m.at;
  }
  std::printf("watchdog: largest gap between pings %.3f s\n", worst);
  EXPECT_LT(worst, 4.0);

  EXPECT_EQ(d->stop(), 0);
  EXPECT_TRUE(sock.received("STOPPING=1"));
}

}  // namespace
}  // namespace jw::test
