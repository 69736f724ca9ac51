// Integration test of the root-only control socket against the real daemon: its mode, `session
// list` and `session revoke` through jobworker-admin after logins over HTTPS, peers that are not
// root refused by SO_PEERCRED, malformed frames, the connection cap and deadline, and the admin
// tool's errors. Runs in the test process (as root).
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/capability.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "common/fd.h"
#include "common/protocol/channel.h"
#include "common/protocol/codec.h"
#include "common/protocol/control_codec.h"
#include "tests/integration/daemon.h"

namespace jw::test {
namespace {

using Clock = std::chrono::steady_clock;
constexpr uid_t kNobody = 65534;

class Control : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    d_ = Daemon::start().release();
    d_->addUser("alice", "user", "pw-alice-1");
    d_->addUser("bob", "user", "pw-bob-12");
  }
  static void TearDownTestSuite() {
    delete d_;
    d_ = nullptr;
  }
  void SetUp() override { ASSERT_NE(d_, nullptr); }

  static std::string sockPath() { return d_->stateDir() + "/control.sock"; }
  static CmdResult admin(std::vector<std::string> args) {
    args.insert(args.begin(), binary("jobworker-admin"));
    return run(args, "", {}, 30);
  }
  static UniqueFd connectControl() {
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::string p = sockPath();
    std::memcpy(addr.sun_path, p.data(), p.size());
    UniqueFd fd(socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
    EXPECT_TRUE(fd);
    EXPECT_EQ(connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0)
        << std::strerror(errno);
    return fd;
  }
  // Waits at most timeout_ms for a frame; "" when the daemon closed the connection, "timeout"
  // when nothing came.
  static std::string receive(int fd, int timeout_ms = 15000) {
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, timeout_ms) != 1) return "timeout";
    std::string frame;
    auto r = protocol::recvFrame(fd, &frame);
    if (!r || r.value() != protocol::RecvStatus::kFrame) return "";
    return frame;
  }
  // The status of GET /v1/whoami with token, polled until it is `want` or 20 s have passed
  // (the frontend restarts after a revocation; refused connections count as "not yet").
  static int waitWhoami(const std::string& token, int want) {
    int s = 0;
    auto deadline = Clock::now() + std::chrono::seconds(20);
    do {
      s = https(*d_, "GET", "/v1/whoami", "", token).status;
      if (s != want) std::this_thread::sleep_for(std::chrono::milliseconds(50));
    } while (s != want && Clock::now() < deadline);
    return s;
  }
  static bool waitExit(pid_t pid, int timeout_s, int* status) {
    auto deadline = Clock::now() + std::chrono::seconds(timeout_s);
    while (Clock::now() < deadline) {
      if (waitpid(pid, status, WNOHANG) == pid) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return false;
  }

  static Daemon* d_;
};
Daemon* Control::d_ = nullptr;

TEST_F(Control, SocketIsA0600RootSocketInTheStateDir) {
  struct stat st {};
  ASSERT_EQ(lstat(sockPath().c_str(), &st), 0) << std::strerror(errno);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_mode & 07777, 0600u);
  EXPECT_EQ(st.st_uid, 0u);
}

TEST_F(Control, ListShowsALoginAndRevokeEndsEverySessionOfThatUser) {
  std::string a1 = login(*d_, "alice", "pw-alice-1");
  std::string a2 = login(*d_, "alice", "pw-alice-1");
  std::string b = login(*d_, "bob", "pw-bob-12");
  CmdResult list = admin({"session", "list", "--control", sockPath(), "-o", "json"});
  ASSERT_EQ(list.exit_code, 0) << list.err;
  EXPECT_NE(list.out.find("{\"user\":\"alice\",\"created_at\":\"20"), std::string::npos)
      << list.out;
  EXPECT_NE(list.out.find("\"user\":\"bob\""), std::string::npos) << list.out;
  EXPECT_EQ(list.out.find(a1), std::string::npos) << "a token in the list";
  CmdResult table = admin({"session", "list", "--control", sockPath()});
  ASSERT_EQ(table.exit_code, 0) << table.err;
  EXPECT_EQ(table.out.rfind("USER", 0), 0u) << table.out;
  EXPECT_NE(table.out.find("\nalice "), std::string::npos) << table.out;

  CmdResult revoke = admin({"session", "revoke", "alice", "--control", sockPath()});
  ASSERT_EQ(revoke.exit_code, 0) << revoke.err;
  // addUser's own check logged in too: every one of alice's sessions counts.
  size_t listed = 0;
  for (size_t at = 0; (at = list.out.find("\"user\":\"alice\"", at)) != std::string::npos; at++) {
    listed++;
  }
  EXPECT_GE(listed, 2u);
  EXPECT_EQ(revoke.out, "revoked " + std::to_string(listed) + " session(s) of alice\n");
  EXPECT_EQ(waitWhoami(a1, 401), 401);
  EXPECT_EQ(waitWhoami(a2, 401), 401);
  EXPECT_EQ(waitWhoami(b, 200), 200) << "bob's session must survive alice's revocation";
  CmdResult after = admin({"session", "list", "--control", sockPath(), "-o", "json"});
  ASSERT_EQ(after.exit_code, 0) << after.err;
  EXPECT_EQ(after.out.find("\"alice\""), std::string::npos) << after.out;
  EXPECT_NE(after.out.find("\"bob\""), std::string::npos) << after.out;
  // Alice can log in again: the account stays, only its sessions ended.
  std::string a3 = login(*d_, "alice", "pw-alice-1");
  EXPECT_EQ(waitWhoami(a3, 200), 200);
  CmdResult none = admin({"session", "revoke", "nosuchuser", "--control", sockPath()});
  EXPECT_EQ(none.exit_code, 0) << none.err;
  EXPECT_EQ(none.out, "revoked 0 session(s) of nosuchuser\n");
}

TEST_F(Control, RevokeEndsAnOpenFollowStream) {
  std::string t = login(*d_, "bob", "pw-bob-12");
  std::string id = startJob(*d_, t, R"({"command":["sh","-c","echo started; exec sleep 300"]})");
  std::string xdg = makeTempDir("jwctlcli");
  std::string log_path = xdg + "/follow.log";
  pid_t follower = spawnLogged({binary("jobworker"), "logs", "-f", id},
                               {"XDG_CONFIG_HOME=" + xdg, "JOBWORKER_SERVER=" + d_->url(),
                                "JOBWORKER_TOKEN=" + t, "JOBWORKER_CA_FILE=" + d_->caFile()},
                               log_path);
  ASSERT_GT(follower, 0);
  // The stream is open once the first line has arrived through it.
  auto deadline = Clock::now() + std::chrono::seconds(20);
  while (readFile(log_path).find("started") == std::string::npos && Clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ASSERT_NE(readFile(log_path).find("started"), std::string::npos) << readFile(log_path);
  CmdResult revoke = admin({"session", "revoke", "bob", "--control", sockPath()});
  ASSERT_EQ(revoke.exit_code, 0) << revoke.err;
  int status = 0;
  bool ended = waitExit(follower, 30, &status);
  if (!ended) kill(follower, SIGKILL), waitpid(follower, &status, 0);
  EXPECT_TRUE(ended) << "the follow stream outlived the revocation: " << readFile(log_path);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) != 0) << readFile(log_path);
  removeTree(xdg);
  std::string admin_token = login(*d_, "admin", d_->adminPassword());
  https(*d_, "POST", "/v1/jobs/" + id + "/stop", "", admin_token);
}

// A process whose effective uid is nobody but which may still reach the 0600 socket (it keeps
// CAP_DAC_OVERRIDE): only the SO_PEERCRED check stands between it and the verbs.
TEST_F(Control, APeerThatIsNotRootIsRefusedByItsCredentials) {
  pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    if (seteuid(kNobody) != 0) _exit(10);
    cap_t caps = cap_get_proc();
    cap_value_t dac = CAP_DAC_OVERRIDE;
    if (caps == nullptr || cap_set_flag(caps, CAP_EFFECTIVE, 1, &dac, CAP_SET) != 0 ||
        cap_set_proc(caps) != 0) {
      _exit(11);
    }
    UniqueFd fd = connectControl();
    if (!fd || geteuid() != kNobody) _exit(12);
    // The send may fail already (the daemon may have closed it): what counts is no answer.
    (void)protocol::sendFrame(fd.get(), protocol::encodeControlSessionList(1, {}));
    std::string reply = receive(fd.get());
    _exit(reply.empty() ? 0 : reply == "timeout" ? 13 : 14);  // 0: closed without an answer
  }
  int status = 0;
  ASSERT_TRUE(waitExit(child, 30, &status));
  EXPECT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0) << "10-12: setup failed, 13: no close, 14: got an answer";
  EXPECT_NE(d_->log().find("refused a connection from uid 65534"), std::string::npos);
}

TEST_F(Control, TheAdminToolAsNobodyGetsAClearError) {
  // A copy nobody can execute: the checkout may live under a directory only root can enter.
  std::string dir = makeTempDir("jwctladmin");
  ASSERT_EQ(chmod(dir.c_str(), 0755), 0);
  std::string tool = dir + "/jobworker-admin";
  ASSERT_TRUE(std::filesystem::copy_file(binary("jobworker-admin"), tool));
  ASSERT_EQ(chmod(tool.c_str(), 0755), 0);
  CmdResult r = run({"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", tool, "session",
                     "list", "--control", sockPath()},
                    "", {}, 30);
  removeTree(dir);
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  EXPECT_NE(r.err.find("root-only; run jobworker-admin as root"), std::string::npos) << r.err;
}

TEST_F(Control, AMalformedFrameClosesOnlyThatConnection) {
  UniqueFd keep = connectControl();
  std::vector<std::string> bad = {
      "xy",                                             // shorter than a header
      protocol::encodeHealth(1, {}),                    // a frontend message
      protocol::encodeControlSessionList(1, {}) + "x",  // a trailing byte
      protocol::encodeControlSessions(1, {}),           // a reply sent as a request
      protocol::encodeControlSessionList(1, {}) + std::string(100 * 1024, 'x'),  // over the cap
  };
  for (const std::string& frame : bad) {
    UniqueFd fd = connectControl();
    ASSERT_TRUE(protocol::sendFrame(fd.get(), frame).ok());
    EXPECT_EQ(receive(fd.get()), "") << "frame of " << frame.size() << " bytes was answered";
  }
  // The connection opened before still works, and so does the daemon.
  ASSERT_TRUE(protocol::sendFrame(keep.get(), protocol::encodeControlSessionList(9, {})).ok());
  std::string reply = receive(keep.get());
  std::string_view payload;
  auto h = protocol::decodeControlHeader(reply, &payload);
  ASSERT_TRUE(h.ok()) << h.error().message;
  EXPECT_EQ(h->type, protocol::ControlMsgType::kControlSessions);
  EXPECT_EQ(h->request_id, 9u);
  EXPECT_EQ(https(*d_, "GET", "/v1/healthz").status, 200);
  CmdResult list = admin({"session", "list", "--control", sockPath()});
  EXPECT_EQ(list.exit_code, 0) << list.err;
}

TEST_F(Control, ConnectionsAreCappedAndHaveADeadline) {
  std::vector<UniqueFd> open;
  for (int i = 0; i < 8; i++) open.push_back(connectControl());
  // Each of the eight is served (so the daemon has accepted all of them)...
  for (auto& fd : open) {
    ASSERT_TRUE(protocol::sendFrame(fd.get(), protocol::encodeControlSessionList(1, {})).ok());
    ASSERT_NE(receive(fd.get()), "");
  }
  // ...and a ninth is closed at once.
  UniqueFd ninth = connectControl();
  // The send may already fail (the daemon closed it): what counts is that nothing answers.
  (void)protocol::sendFrame(ninth.get(), protocol::encodeControlSessionList(1, {}));
  EXPECT_EQ(receive(ninth.get()), "");
  // An idle connection is closed at its deadline (10 s after accept), not kept forever.
  auto start = Clock::now();
  EXPECT_EQ(receive(open[0].get(), 20000), "");
  EXPECT_LT(Clock::now() - start, std::chrono::seconds(15));
  open.clear();
  CmdResult list = admin({"session", "list", "--control", sockPath()});
  EXPECT_EQ(list.exit_code, 0) << list.err;
}

TEST_F(Control, AdminToolErrorsAndUsage) {
  std::string dir = makeTempDir("jwctl");
  CmdResult gone = admin({"session", "list", "--control", dir + "/control.sock"});
  EXPECT_EQ(gone.exit_code, 1);
  EXPECT_NE(gone.err.find("jobworkerd is not running"), std::string::npos) << gone.err;
  removeTree(dir);
  EXPECT_EQ(admin({"session"}).exit_code, 2);
  EXPECT_EQ(admin({"session", "frobnicate"}).exit_code, 2);
  EXPECT_EQ(admin({"session", "revoke"}).exit_code, 2);
  EXPECT_EQ(admin({"session", "revoke", "bad name!"}).exit_code, 2);
  EXPECT_EQ(admin({"session", "list", "-o", "yaml"}).exit_code, 2);
  EXPECT_EQ(admin({"session", "list", "--control"}).exit_code, 2);
  CmdResult help = admin({"session", "--help"});
  EXPECT_EQ(help.exit_code, 0);
  EXPECT_NE(help.out.find("session revoke USER"), std::string::npos);
}

}  // namespace
}  // namespace jw::test
