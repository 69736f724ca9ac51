// Integration tests of the supervisor against a compromised frontend: the real jobworkerd runs
// hostile_frontend (via --frontend), which makes the real frontend's privilege drop and then runs
// the attacks this test names over its control socket. Each attack's exact refusal is asserted.
// Runs in the integration test process (root).
#include <gtest/gtest.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "common/protocol/codec.h"
#include "tests/integration/daemon.h"

namespace jw::test {
namespace {

using namespace jw::protocol;

const std::string kNoSession = "ErrorReply code=2 retry=0 message=unknown or expired session";
const std::string kWrongPassword = "ErrorReply code=2 retry=0 message=wrong user name or password";

std::string hexOf(const std::string& bytes) {
  static const char* kDigits = "0123456789abcdef";
  std::string out;
  for (unsigned char c : bytes) {
    out += kDigits[c >> 4];
    out += kDigits[c & 15];
  }
  return out;
}

// The value of `key=` in a result line (up to the next space).
std::string field(const std::string& line, const std::string& key) {
  size_t at = line.find(key + "=");
  if (at == std::string::npos) return "";
  at += key.size() + 1;
  return line.substr(at, line.find(' ', at) - at);
}

// One jobworkerd whose frontend is hostile_frontend, and the test's end of its control socket.
class HostileDaemon {
 public:
  HostileDaemon() {
    dir_ = makeTempDir("jwhostile");
    chmod(dir_.c_str(), 0755);
    state_dir_ = dir_ + "/state";
    log_path_ = dir_ + "/jobworkerd.log";
    std::string sock = dir_ + "/control.sock";
    listen_fd_ = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::strcpy(a.sun_path, sock.c_str());
    EXPECT_EQ(bind(listen_fd_, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    EXPECT_EQ(listen(listen_fd_, 8), 0);
    pid_ = spawnLogged(
        {binary("jobworkerd"), "--dev", "--state-dir", state_dir_, "--listen",
         "127.0.0.1:" + std::to_string(freePort()), "--frontend", binary("hostile_frontend")},
        {"JW_HOSTILE_SOCKET=" + sock}, log_path_);
    EXPECT_TRUE(acceptFrontend()) << log();
  }
  ~HostileDaemon() {
    if (conn_ >= 0) close(conn_);
    if (pid_ > 0) {
      kill(pid_, SIGTERM);
      if (!waitUntil([&] { return waitpid(pid_, nullptr, WNOHANG) == pid_; },
                     std::chrono::seconds(20))) {
        kill(pid_, SIGKILL);
        waitpid(pid_, nullptr, 0);
      }
    }
    if (listen_fd_ >= 0) close(listen_fd_);
    removeTree(dir_);
  }
  HostileDaemon(const HostileDaemon&) = delete;
  HostileDaemon& operator=(const HostileDaemon&) = delete;

  // The next hostile frontend's connection and its "ready" line (sent after its drop).
  bool acceptFrontend(int timeout_ms = 20'000) {
    if (conn_ >= 0) close(conn_);
    conn_ = -1;
    buf_.clear();
    pollfd p{listen_fd_, POLLIN, 0};
    if (poll(&p, 1, timeout_ms) != 1) return false;
    conn_ = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (conn_ < 0) return false;
    ready_ = readLine(timeout_ms);
    hostile_pid_ = std::atoi(field(ready_, "pid").c_str());
    return ready_.rfind("ready ", 0) == 0;
  }

  // Sends one command; its result line, or "" when the hostile frontend is gone (EOF).
  std::string ask(const std::string& command, int timeout_ms = 120'000) {
    std::string line = command + "\n";
    if (send(conn_, line.data(), line.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(line.size()))
      return "";
    return readLine(timeout_ms);
  }

  // `jobworker-admin user add` (password "password-of-NAME") and SIGHUP; waits for the reload.
  void addUser(const std::string& name, const std::string& role) {
    auto loads = [&] {
      size_t n = 0;
      std::string l = log();
      for (size_t at = l.find(" user(s) from "); at != std::string::npos;
           at = l.find(" user(s) from ", at + 1))
        n++;
      return n;
    };
    size_t before = loads();
    CmdResult r =
        run({binary("jobworker-admin"), "user", "add", "--users-file", state_dir_ + "/users", name,
             "--role", role, "--run-as", "nobody", "--password-stdin"},
            "password-of-" + name + "\n");
    ASSERT_EQ(r.exit_code, 0) << r.err;
    kill(pid_, SIGHUP);
    ASSERT_TRUE(waitUntil([&] { return loads() > before; }, std::chrono::seconds(10)));
  }

  std::string adminPassword() const {
    std::string pw = readFile(state_dir_ + "/admin-password");
    while (!pw.empty() && (pw.back() == '\n' || pw.back() == '\r')) pw.pop_back();
    return pw;
  }
  // A token minted for admin through the hostile frontend (it sees the login in flight).
  std::string adminToken(const std::string& address) {
    std::string r = ask("login admin " + adminPassword() + " " + address);
    EXPECT_EQ(r.rfind("LoginReply ", 0), 0u) << r;
    return field(r, "token");
  }

  // The supervisor is alive (not exited, not a zombie) and answers through a new frontend.
  bool supervisorAlive() const { return pid_ > 0 && waitpid(pid_, nullptr, WNOHANG) == 0; }
  std::string log() const { return readFile(log_path_); }
  pid_t pid() const { return pid_; }
  pid_t hostilePid() const { return hostile_pid_; }
  const std::string& readyLine() const { return ready_; }
  const std::string& stateDir() const { return state_dir_; }

 private:
  std::string readLine(int timeout_ms) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    for (;;) {
      size_t nl = buf_.find('\n');
      if (nl != std::string::npos) {
        std::string line = buf_.substr(0, nl);
        buf_.erase(0, nl + 1);
        return line;
      }
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                      deadline - std::chrono::steady_clock::now())
                      .count();
      pollfd p{conn_, POLLIN, 0};
      if (left <= 0 || poll(&p, 1, static_cast<int>(left)) != 1) {
        ADD_FAILURE() << "no answer from the hostile frontend within " << timeout_ms << " ms";
        return "";
      }
      char chunk[4096];
      ssize_t n = read(conn_, chunk, sizeof chunk);
      if (n <= 0) return "";  // the hostile frontend is gone
      buf_.append(chunk, static_cast<size_t>(n));
    }
  }

  std::string dir_, state_dir_, log_path_, ready_, buf_;
  int listen_fd_ = -1, conn_ = -1;
  pid_t pid_ = -1, hostile_pid_ = -1;
};

class HostileFrontend : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    ASSERT_NE(getpwnam("jobworker"), nullptr) << "the frontend account (scripts/install-deps)";
    d_ = new HostileDaemon();
  }
  static void TearDownTestSuite() {
    delete d_;
    d_ = nullptr;
  }
  static HostileDaemon* d_;
};
HostileDaemon* HostileFrontend::d_ = nullptr;

// What the attacks below run with: the real frontend's drop, checked from outside as root.
TEST_F(HostileFrontend, RunsAfterTheRealFrontendsPrivilegeDrop) {
  pid_t p = d_->hostilePid();
  ASSERT_GT(p, 0) << d_->readyLine();
  std::string uid = std::to_string(getpwnam("jobworker")->pw_uid);
  EXPECT_EQ(field(d_->readyLine(), "uid"), uid);
  EXPECT_EQ(field(d_->readyLine(), "euid"), uid);
  EXPECT_EQ(procStatusField(p, "Uid"), uid + "\t" + uid + "\t" + uid + "\t" + uid);
  EXPECT_EQ(procStatusField(p, "NoNewPrivs"), "1");
  EXPECT_EQ(procStatusField(p, "Seccomp"), "2");  // filter mode
  for (const char* set : {"CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"}) {
    EXPECT_EQ(procStatusField(p, set), "0000000000000000") << set;
  }
  // It holds the channel (3), the listening socket (4) and its control socket; nothing else.
  std::string fds = d_->ask("fds");
  std::printf("hostile frontend: %s; %s\n", d_->readyLine().c_str(), fds.c_str());
  EXPECT_EQ(fds.rfind("fds 0 1 2 3 4 ", 0), 0u) << fds;
  EXPECT_EQ(std::count(fds.begin(), fds.end(), ' '), 6) << fds;
}

TEST_F(HostileFrontend, NoSessionForAdminWithoutItsPassword) {
  // No password, a wrong one, and admin's stored hash itself (what an old frontend received).
  std::string users = readFile(d_->stateDir() + "/users");
  size_t at = users.find("$argon2id$");
  ASSERT_NE(at, std::string::npos);
  std::string stored_hash = users.substr(at, users.find_first_of(" \t:\n", at) - at);
  for (const std::string& pw : {std::string("-"), std::string("admin"), stored_hash}) {
    SCOPED_TRACE(pw);
    EXPECT_EQ(d_->ask("login admin " + pw + " 198.51.100.1"), kWrongPassword);
  }
  // An unknown user gets the very same answer.
  EXPECT_EQ(d_->ask("login mallory - 198.51.100.1"), kWrongPassword);
}

// Every request naming a session: with a token never seen (random), a well-formed one never
// minted (a real one with a bit flipped), and the hash the supervisor stores of a real one.
TEST_F(HostileFrontend, RequestsWithATokenItNeverSawAreRefused) {
  std::string admin = d_->adminToken("198.51.100.2");
  std::string started = d_->ask("jobstart " + admin);
  std::string job = field(started, "id");
  ASSERT_FALSE(job.empty()) << started;
  for (const std::string& spec : {std::string("random"), "flip:" + admin, "hash:" + admin}) {
    SCOPED_TRACE(spec);
    for (std::string verb : {"jobstart", "jobstart-host", "jobstop", "jobget", "joblist", "read",
                             "whoami", "metrics", "logout"}) {
      EXPECT_EQ(d_->ask(verb + " " + spec + " " + job), kNoSession) << verb;
    }
  }
  // The forged stops did nothing: the job still runs, and only admin's own session stops it.
  EXPECT_EQ(field(d_->ask("jobget " + admin + " " + job), "state"), "running");
  EXPECT_EQ(field(d_->ask("jobstop " + admin + " " + job), "id"), job);
  EXPECT_EQ(d_->log().find(d_->adminPassword()), std::string::npos) << "a password in the log";
  EXPECT_EQ(d_->log().find(admin), std::string::npos) << "a token in the log";
}

TEST_F(HostileFrontend, ATokenReplayedAfterLogoutIsRefused) {
  std::string t = d_->adminToken("198.51.100.3");
  std::string job = field(d_->ask("jobstart " + t), "id");
  ASSERT_FALSE(job.empty());
  EXPECT_EQ(d_->ask("whoami " + t), "SessionInfo user=admin");
  EXPECT_EQ(d_->ask("logout " + t), "Ok");
  for (std::string verb :
       {"jobstart", "jobstop", "jobget", "joblist", "read", "whoami", "metrics", "logout"}) {
    EXPECT_EQ(d_->ask(verb + " " + t + " " + job), kNoSession) << verb;
  }
  std::string other = d_->adminToken("198.51.100.3");
  EXPECT_EQ(field(d_->ask("jobstop " + other + " " + job), "id"), job);
}

// 1,000 wrong passwords for one user, the asserted address rotating: the supervisor's per-user
// ceiling (not the per-address counters the hostile side can dodge) throttles them.
TEST_F(HostileFrontend, RotatingAddressBruteForceHitsThePerUserCeiling) {
  d_->addUser("target", "user");
  // The real user logged in from 10.1.1.1 before: an address without failures, for the reserve.
  ASSERT_EQ(d_->ask("login target password-of-target 10.1.1.1").rfind("LoginReply ", 0), 0u);
  std::string r = d_->ask("bruteforce target 1000");
  std::printf("hostile frontend, 1000 rotating-address guesses: %s\n", r.c_str());
  int checked = std::atoi(field(r, "checked").c_str());
  int throttled = std::atoi(field(r, "throttled").c_str());
  EXPECT_LE(checked, 25);  // the ceiling's open share: 20 checks a minute
  EXPECT_GE(checked, 1);   // the checks that did run were real password checks
  EXPECT_GE(throttled, 975);
  EXPECT_EQ(field(r, "other"), "0") << r;
  // The real user, from its own address, still gets in at once.
  auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(d_->ask("login target password-of-target 10.1.1.1").rfind("LoginReply ", 0), 0u);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(2));
  // Other users are unaffected, even from an address the attack used.
  EXPECT_EQ(d_->ask("login admin " + d_->adminPassword() + " 203.0.0.1").rfind("LoginReply ", 0),
            0u);
}

// Files are out of reach after the drop: every open fails with EPERM from the seccomp filter
// (before the kernel's permission checks would refuse most of them anyway).
TEST_F(HostileFrontend, CannotReadOrWriteAnyFile) {
  std::string sup = std::to_string(d_->pid());
  std::string eperm = "EPERM (Operation not permitted)";
  struct Case {
    std::string command, target;
  } cases[] = {
      {"open", d_->stateDir() + "/users"},
      {"open", d_->stateDir() + "/admin-password"},
      {"opendir", d_->stateDir()},
      {"open", "/etc/shadow"},
      {"open", "tls-key"},  // the --tls-key path it was given
      {"open", "/proc/" + sup + "/mem"},
      {"open", "/proc/" + sup + "/environ"},
      {"open", "/proc/self/mem"},
      {"create", "/tmp/jw-hostile-" + sup},
  };
  for (const auto& c : cases) {
    std::string r = d_->ask(c.command + " " + c.target);
    std::printf("hostile frontend: %s\n", r.c_str());
    EXPECT_NE(r.find(": " + eperm), std::string::npos) << r;
    EXPECT_EQ(r.find("opened"), std::string::npos) << r;
  }
  EXPECT_NE(access(("/tmp/jw-hostile-" + sup).c_str(), F_OK), 0);
  // tgkill is allowed (abort() needs it): the kernel's uid check keeps the supervisor safe.
  std::string r = d_->ask("signal " + sup);
  std::printf("hostile frontend: %s\n", r.c_str());
  EXPECT_EQ(r, "SIGKILL " + sup + ": " + eperm);
  EXPECT_TRUE(d_->supervisorAlive());
}

// Calls outside the frontend's allowlist kill it with SIGSYS; the supervisor logs the death and
// starts a new frontend. A daemon of its own: each kill costs a respawn back-off.
TEST(HostileFrontendSeccomp, ForbiddenCallsKillTheFrontendAndItIsRespawned) {
  ASSERT_NE(getpwnam("jobworker"), nullptr);
  HostileDaemon d;
  std::string sup = std::to_string(d.pid());
  for (const std::string& attack :
       std::vector<std::string>{"exec /bin/sh", "setuid 0", "ptrace " + sup, "inet-socket"}) {
    SCOPED_TRACE(attack);
    pid_t victim = d.hostilePid();
    std::string answer = d.ask(attack);
    EXPECT_EQ(answer, "") << "the call returned instead of killing the frontend";
    std::string died = "frontend pid " + std::to_string(victim) + " killed by signal 31";
    ASSERT_TRUE(waitUntil([&] { return d.log().find(died) != std::string::npos; },
                          std::chrono::seconds(10)))
        << d.log();
    std::printf("hostile frontend: %s -> %s (Bad system call)\n", attack.c_str(), died.c_str());
    ASSERT_TRUE(d.acceptFrontend()) << "no new frontend after: " << attack;
    EXPECT_EQ(d.ask("health"), "HealthReply");
  }
  EXPECT_TRUE(d.supervisorAlive());
}

// Frames the supervisor never accepts from a frontend: it must not crash; it kills the frontend
// (protocol violation), starts a new one, and keeps serving.
TEST(HostileFrontendProtocol, ForbiddenFramesGetTheFrontendKilledNotTheSupervisor) {
  ASSERT_NE(getpwnam("jobworker"), nullptr);
  HostileDaemon d;
  std::string token = d.adminToken("198.51.100.4");
  std::string job = field(d.ask("jobstart " + token), "id");
  ASSERT_FALSE(job.empty());
  const std::string kNotPermitted = " is not permitted from the frontend; killing it";
  struct Case {
    const char* what;
    std::string command;
    std::string reason;  // in the supervisor's log line
  } cases[] = {
      {"LoginReply (supervisor to frontend)", "raw " + hexOf(encodeLoginReply(9, LoginReply{})),
       "message type LoginReply" + kNotPermitted},
      {"JobStatus (supervisor to frontend)", "raw " + hexOf(encodeJobStatus(9, JobStatus{})),
       "message type JobStatus" + kNotPermitted},
      {"HealthReply (supervisor to frontend)", "raw " + hexOf(encodeHealthReply(9, {})),
       "message type HealthReply" + kNotPermitted},
      {"unknown type 0", "raw " + hexOf(std::string("\x00\x00\x00\x00\x09\x00\x00\x00", 8)),
       "malformed frame: unknown message type 0; killing it"},
      {"unknown type 0x7fff", "raw " + hexOf(std::string("\xff\x7f\x00\x00\x09\x00\x00\x00", 8)),
       "malformed frame: unknown message type 32767; killing it"},
      {"frame one byte over kMaxFrame", "oversized " + std::to_string(kMaxFrame + 1),
       "frame of " + std::to_string(kMaxFrame + 1) + " bytes over kMaxFrame"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.what);
    pid_t victim = d.hostilePid();
    // "sent N", or nothing when the supervisor's SIGKILL came before the line could be written.
    std::string sent = d.ask(c.command);
    EXPECT_TRUE(sent.empty() || sent.rfind("sent ", 0) == 0) << sent;
    // The supervisor's verdict: SIGKILL for the frontend, a new one, the old sessions intact.
    // Killed before it could read the channel's end: no reply, not even "channel closed".
    std::string after = d.ask("health");
    EXPECT_TRUE(after.empty() || after == "channel closed") << after;
    std::string died = "frontend pid " + std::to_string(victim) + " killed by signal 9";
    ASSERT_TRUE(waitUntil([&] { return d.log().find(died) != std::string::npos; },
                          std::chrono::seconds(10)))
        << d.log();
    EXPECT_NE(d.log().find("protocol violation by the frontend (pid " + std::to_string(victim) +
                           "): " + c.reason),
              std::string::npos)
        << d.log();
    ASSERT_TRUE(d.acceptFrontend()) << "no new frontend after: " << c.what;
    EXPECT_EQ(d.ask("health"), "HealthReply");
    EXPECT_EQ(field(d.ask("jobget " + token + " " + job), "state"), "running");
    std::printf("hostile frontend: %s -> %s, respawned\n", c.what, died.c_str());
  }
  // Far over the socket's buffer: the kernel refuses the send, the supervisor never sees it.
  std::string huge = d.ask("oversized " + std::to_string(4 * 1024 * 1024));
  std::printf("hostile frontend: a 4 MiB frame -> %s\n", huge.c_str());
  EXPECT_EQ(huge, "send refused: EMSGSIZE (Message too long)");
  EXPECT_EQ(d.ask("health"), "HealthReply");
  EXPECT_TRUE(d.supervisorAlive());
  EXPECT_EQ(field(d.ask("jobstop " + token + " " + job), "id"), job);
}

}  // namespace
}  // namespace jw::test
