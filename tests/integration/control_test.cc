// Integration test of the root-only control socket against the real daemon: its mode, `session
// list` and `session revoke USER|--id ID` through jobworker-admin after logins over HTTPS (the
// revoked tokens refused by the supervisor at once, follow streams ended), peers that are not
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
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "common/fd.h"
#include "common/protocol/channel.h"
#include "common/protocol/codec.h"
#include "common/protocol/control_codec.h"
#include "tests/integration/daemon.h"
#include "tests/wait_until.h"

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
  static int whoami(const std::string& token) {
    return https(*d_, "GET", "/v1/whoami", "", token).status;
  }
  static bool waitExit(pid_t pid, int timeout_s, int* status) {
    return waitUntil([&] { return waitpid(pid, status, WNOHANG) == pid; },
                     std::chrono::seconds(timeout_s));
  }
  // The objects of `session list -o json` (a flat array of flat objects) whose user is `user`.
  static std::vector<std::string> listedOf(const std::string& json, const std::string& user) {
    std::vector<std::string> out;
    size_t at = 0;
    while ((at = json.find('{', at)) != std::string::npos) {
      size_t end = json.find('}', at);
      std::string obj = json.substr(at, end - at + 1);
      if (obj.find("\"user\":\"" + user + "\"") != std::string::npos) out.push_back(obj);
      at = end;
    }
    return out;
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

TEST_F(Control, ListShowsEachLoginWithItsAddressAndNeverAToken) {
  std::string t = login(*d_, "alice", "pw-alice-1");
  ASSERT_EQ(whoami(t), 200);
  CmdResult list = admin({"session", "list", "--control", sockPath(), "-o", "json"});
  ASSERT_EQ(list.exit_code, 0) << list.err;
  std::vector<std::string> alice = listedOf(list.out, "alice");
  ASSERT_FALSE(alice.empty()) << list.out;
  const std::string& mine = alice.back();  // oldest first: the newest login is last
  EXPECT_NE(mine.find("\"role\":\"user\""), std::string::npos) << mine;
  EXPECT_NE(mine.find("\"remote_addr\":\"127.0.0.1\""), std::string::npos) << mine;
  EXPECT_NE(mine.find("\"created_at\":\"20"), std::string::npos) << mine;
  EXPECT_NE(mine.find("\"expires_at\":\"20"), std::string::npos) << mine;
  EXPECT_NE(mine.find("\"last_used_at\":\"20"), std::string::npos) << "whoami used it: " << mine;
  std::string id = jsonField(mine, "id");
  EXPECT_TRUE(protocol::validSessionId(id)) << mine;
  EXPECT_EQ(list.out.find(t), std::string::npos) << "a token in the list";
  EXPECT_FALSE(listedOf(list.out, "bob").empty()) << "addUser's login as bob: " << list.out;
  CmdResult table = admin({"session", "list", "--control", sockPath()});
  ASSERT_EQ(table.exit_code, 0) << table.err;
  EXPECT_EQ(table.out.rfind("ID ", 0), 0u) << table.out;
  EXPECT_NE(table.out.find("\n" + id + "  alice "), std::string::npos) << table.out;
  EXPECT_NE(table.out.find(" 127.0.0.1 "), std::string::npos) << table.out;
  EXPECT_EQ(table.out.find(t), std::string::npos) << "a token in the table";
  // session list USER: that user's sessions only.
  CmdResult only = admin({"session", "list", "alice", "--control", sockPath(), "-o", "json"});
  ASSERT_EQ(only.exit_code, 0) << only.err;
  EXPECT_EQ(listedOf(only.out, "alice").size(), alice.size()) << only.out;
  EXPECT_TRUE(listedOf(only.out, "bob").empty()) << only.out;
  EXPECT_EQ(admin({"session", "list", "Not A User", "--control", sockPath()}).exit_code, 2);
}

TEST_F(Control, RevokeUserEndsEverySessionOfThatUserAtOnceAndNoOtherOne) {
  std::string a1 = login(*d_, "alice", "pw-alice-1");
  std::string a2 = login(*d_, "alice", "pw-alice-1");
  std::string b = login(*d_, "bob", "pw-bob-12");
  CmdResult list = admin({"session", "list", "--control", sockPath(), "-o", "json"});
  ASSERT_EQ(list.exit_code, 0) << list.err;
  size_t listed = listedOf(list.out, "alice").size();  // addUser's own check logged in too
  EXPECT_GE(listed, 2u);

  CmdResult revoke = admin({"session", "revoke", "alice", "--control", sockPath()});
  ASSERT_EQ(revoke.exit_code, 0) << revoke.err;
  EXPECT_EQ(revoke.out, "revoked " + std::to_string(listed) + " session(s) of alice\n");
  // No waiting: the supervisor checks every request's token against its own store.
  EXPECT_EQ(whoami(a1), 401);
  EXPECT_EQ(whoami(a2), 401);
  HttpResponse jobs = https(*d_, "GET", "/v1/jobs", "", a1);
  EXPECT_EQ(jobs.status, 401) << jobs.body;
  EXPECT_NE(jobs.body.find("\"unauthorized\""), std::string::npos) << jobs.body;
  EXPECT_EQ(whoami(b), 200) << "bob's session must survive alice's revocation";
  CmdResult after = admin({"session", "list", "--control", sockPath(), "-o", "json"});
  ASSERT_EQ(after.exit_code, 0) << after.err;
  EXPECT_TRUE(listedOf(after.out, "alice").empty()) << after.out;
  EXPECT_FALSE(listedOf(after.out, "bob").empty()) << after.out;
  EXPECT_NE(d_->log().find("administrator revoked " + std::to_string(listed) +
                           " session(s) of \"alice\""),
            std::string::npos);
  // Alice can log in again: the account stays, only its sessions ended.
  std::string a3 = login(*d_, "alice", "pw-alice-1");
  EXPECT_EQ(whoami(a3), 200);
  CmdResult none = admin({"session", "revoke", "nosuchuser", "--control", sockPath()});
  EXPECT_EQ(none.exit_code, 0) << none.err;
  EXPECT_EQ(none.out, "revoked 0 session(s) of nosuchuser\n");
}

TEST_F(Control, RevokeByIdEndsThatSessionOnly) {
  std::string first = login(*d_, "bob", "pw-bob-12");
  std::string second = login(*d_, "bob", "pw-bob-12");
  CmdResult list = admin({"session", "list", "--control", sockPath(), "-o", "json"});
  ASSERT_EQ(list.exit_code, 0) << list.err;
  std::vector<std::string> bobs = listedOf(list.out, "bob");
  ASSERT_GE(bobs.size(), 2u) << list.out;
  // Oldest first: the last one listed is `second`. Which id is whose is checked by its effect.
  std::string id = jsonField(bobs.back(), "id");
  CmdResult revoke = admin({"session", "revoke", "--id", id, "--control", sockPath()});
  ASSERT_EQ(revoke.exit_code, 0) << revoke.err;
  EXPECT_EQ(revoke.out, "revoked 1 session(s) with id " + id + "\n");
  EXPECT_EQ(whoami(second), 401);
  EXPECT_EQ(whoami(first), 200);
  CmdResult again = admin({"session", "revoke", "--id", id, "--control", sockPath()});
  EXPECT_EQ(again.exit_code, 0) << again.err;
  EXPECT_EQ(again.out, "revoked 0 session(s) with id " + id + "\n");
  CmdResult after = admin({"session", "list", "--control", sockPath(), "-o", "json"});
  EXPECT_EQ(after.out.find("\"id\":\"" + id + "\""), std::string::npos) << after.out;
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
  // The stream is open once the first line has arrived through it; the job then stays silent,
  // so the stream's read is parked in the supervisor.
  ASSERT_TRUE(waitUntil([&] { return readFile(log_path).find("started") != std::string::npos; },
                        std::chrono::seconds(20)))
      << readFile(log_path);
  auto revoked_at = Clock::now();
  CmdResult revoke = admin({"session", "revoke", "bob", "--control", sockPath()});
  ASSERT_EQ(revoke.exit_code, 0) << revoke.err;
  int status = 0;
  // Generous: well past the parked read's 15 s timeout, which would end it even unprompted.
  bool ended = waitExit(follower, 40, &status);
  auto took = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - revoked_at);
  if (!ended) kill(follower, SIGKILL), waitpid(follower, &status, 0);
  ASSERT_TRUE(ended) << "the follow stream outlived the revocation: " << readFile(log_path);
  std::printf("[ measure  ] follow stream ended %lld ms after `session revoke` was started\n",
              static_cast<long long>(took.count()));
  EXPECT_LT(took, std::chrono::seconds(10)) << "parked reads are released at the revocation";
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) != 0) << readFile(log_path);
  EXPECT_NE(readFile(log_path).find("session expired or revoked"), std::string::npos)
      << "the CLI says why the stream ended: " << readFile(log_path);
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
      protocol::encodeControlSessionList(1, {}) +
          std::string(size_t{100} * 1024, 'x'),                             // over the cap
      protocol::encodeControlSessionRevokeId(1, {"../../etc/pa"}),          // not a session id
      protocol::encodeControlSessionRevokeId(1, {std::string(4000, 'a')}),  // over the id's cap
      std::string("\xe9\x03\x00\x00\x01\x00\x00\x00\xff\xff\xff\xff", 12),  // forged length
  };
  for (const std::string& frame : bad) {
    UniqueFd fd = connectControl();
    ASSERT_TRUE(protocol::sendFrame(fd.get(), frame).ok());
    EXPECT_EQ(receive(fd.get()), "") << "frame of " << frame.size() << " bytes was answered";
  }
  // A well-formed request with a bad value is answered with a refusal, not a close.
  {
    UniqueFd fd = connectControl();
    ASSERT_TRUE(
        protocol::sendFrame(fd.get(), protocol::encodeControlSessionRevokeUser(3, {"bad name!"}))
            .ok());
    std::string reply = receive(fd.get());
    std::string_view payload;
    auto h = protocol::decodeControlHeader(reply, &payload);
    ASSERT_TRUE(h.ok()) << h.error().message;
    EXPECT_EQ(h->type, protocol::ControlMsgType::kControlError);
    auto e = protocol::decodeControlErrorPayload(payload);
    ASSERT_TRUE(e.ok());
    EXPECT_EQ(e->code, protocol::ErrorCode::kBadRequest);
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
  EXPECT_EQ(admin({"session", "revoke", "--id", "XYZ"}).exit_code, 2);
  EXPECT_EQ(admin({"session", "revoke", "--id"}).exit_code, 2);
  EXPECT_EQ(admin({"session", "revoke", "alice", "--id", "0123456789ab"}).exit_code, 2);
  EXPECT_EQ(admin({"session", "list", "--id", "0123456789ab"}).exit_code, 2);
  EXPECT_EQ(admin({"session", "list", "-o", "yaml"}).exit_code, 2);
  EXPECT_EQ(admin({"session", "list", "--control"}).exit_code, 2);
  CmdResult help = admin({"session", "--help"});
  EXPECT_EQ(help.exit_code, 0);
  EXPECT_NE(help.out.find("session revoke USER"), std::string::npos);
  EXPECT_NE(help.out.find("session revoke --id ID"), std::string::npos);
}

}  // namespace
}  // namespace jw::test
