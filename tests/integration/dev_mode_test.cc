// Integration tests of dev mode and the `jobworker-admin user` admin command: the real jobworkerd
// binary on temp files and temp state dirs. Runs in the integration suite (as root).
#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "tests/integration/daemon.h"

namespace jw::test {
namespace {

using Clock = std::chrono::steady_clock;

mode_t modeOf(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return 0;
  return st.st_mode & 07777;
}

bool exists(const std::string& path) { return ::access(path.c_str(), F_OK) == 0; }

// The hash field of NAME's line in a users file ("" when absent).
std::string hashOf(const std::string& users_file, const std::string& name) {
  std::ifstream in(users_file);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(name + ":", 0) != 0) continue;
    size_t a = line.find(':');
    size_t b = line.find(':', a + 1);
    return line.substr(a + 1, b - a - 1);
  }
  return "";
}

class UserCommand : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = makeTempDir("jwusers");
    file_ = dir_ + "/users";
  }
  void TearDown() override { removeTree(dir_); }

  // `jobworker-admin user ARGS...` under setsid: no controlling terminal, so a missing
  // --password-stdin can never block on a prompt.
  CmdResult user(const std::vector<std::string>& args, const std::string& stdin_data = "") {
    std::vector<std::string> argv = {"setsid", "-w", binary("jobworker-admin"), "user"};
    argv.insert(argv.end(), args.begin(), args.end());
    return run(argv, stdin_data, {}, 60);
  }
  CmdResult add(const std::string& name, const std::string& role, const std::string& password,
                std::vector<std::string> extra = {}) {
    std::vector<std::string> args = {"add", "--users-file",    file_, name, "--role",
                                     role,  "--password-stdin"};
    args.insert(args.end(), extra.begin(), extra.end());
    return user(args, password + "\n");
  }

  std::string dir_, file_;
};

TEST_F(UserCommand, AddCreatesPrivateFileWithArgon2idHash) {
  CmdResult r = add("alice", "user", "alice-password");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("systemctl reload jobworkerd"), std::string::npos) << r.out;
  EXPECT_EQ(modeOf(file_), 0600u);
  const std::string hash = hashOf(file_, "alice");
  EXPECT_EQ(hash.rfind("$argon2id$", 0), 0u) << readFile(file_);
  EXPECT_NE(readFile(file_).find("alice:" + hash + ":user:nobody\n"), std::string::npos);
  EXPECT_EQ(readFile(file_).find("alice-password"), std::string::npos);

  r = add("bob", "viewer", "bob-password", {"--run-as", "daemon"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(readFile(file_).find(":viewer:daemon\n"), std::string::npos);

  CmdResult list = user({"list", "--users-file", file_});
  ASSERT_EQ(list.exit_code, 0) << list.err;
  EXPECT_NE(list.out.find("alice"), std::string::npos);
  EXPECT_NE(list.out.find("viewer"), std::string::npos);
  EXPECT_NE(list.out.find("daemon"), std::string::npos);
  EXPECT_EQ(list.out.find("argon2"), std::string::npos) << "list must never show hashes";
}

TEST_F(UserCommand, DuplicateAddFailsAndKeepsTheFile) {
  ASSERT_EQ(add("alice", "user", "alice-password").exit_code, 0);
  const std::string before = readFile(file_);
  CmdResult r = add("alice", "admin", "other-password");
  EXPECT_EQ(r.exit_code, 1) << r.out;
  EXPECT_NE(r.err.find("already exists"), std::string::npos) << r.err;
  EXPECT_EQ(readFile(file_), before);
}

TEST_F(UserCommand, UsageErrorsExitTwo) {
  EXPECT_EQ(add("alice", "superuser", "alice-password").exit_code, 2);
  EXPECT_EQ(add("Alice", "user", "alice-password").exit_code, 2);
  EXPECT_EQ(
      user({"add", "--users-file", file_, "alice", "--password-stdin"}, "pw12345678\n").exit_code,
      2);                                                            // no --role
  EXPECT_EQ(user({"add", "alice", "--role", "user"}).exit_code, 2);  // no --users-file
  EXPECT_EQ(user({"frobnicate", "--users-file", file_}).exit_code, 2);
  EXPECT_EQ(user({"del", "--users-file", file_, "alice", "--bogus"}).exit_code, 2);
  EXPECT_EQ(user({"del", "--users-file", file_, "alice", "--role", "user"}).exit_code, 2);
  EXPECT_FALSE(exists(file_)) << "a usage error must not create the file";
  CmdResult help = user({"--help"});
  EXPECT_EQ(help.exit_code, 0);
  EXPECT_NE(help.out.find("--password-stdin"), std::string::npos);
}

TEST_F(UserCommand, RefusesBadPasswordsAndMissingAccounts) {
  EXPECT_EQ(add("alice", "user", "").exit_code, 1);
  EXPECT_EQ(add("alice", "user", "short").exit_code, 1);
  EXPECT_EQ(add("alice", "user", "alice-password", {"--run-as", "no-such-account-xyz"}).exit_code,
            1);
  // No --password-stdin and no terminal: a clear failure, not a hang.
  CmdResult r = user({"add", "--users-file", file_, "alice", "--role", "user"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("--password-stdin"), std::string::npos) << r.err;
  EXPECT_FALSE(exists(file_));
}

TEST_F(UserCommand, RootRunAsNeedsAllowRoot) {
  CmdResult r = add("alice", "admin", "alice-password", {"--run-as", "root"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("--allow-root"), std::string::npos) << r.err;
  r = add("alice", "admin", "alice-password", {"--run-as", "jobworker"});
  EXPECT_EQ(r.exit_code, 1) << "the frontend's own account is refused too";
  r = add("alice", "admin", "alice-password", {"--run-as", "root", "--allow-root"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("allow_root"), std::string::npos) << "warning expected: " << r.err;
}

TEST_F(UserCommand, DelRemovesOnlyThatUser) {
  ASSERT_EQ(add("alice", "user", "alice-password").exit_code, 0);
  ASSERT_EQ(add("bob", "user", "bob-password").exit_code, 0);
  const std::string bob_hash = hashOf(file_, "bob");
  CmdResult r = user({"del", "--users-file", file_, "alice"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(hashOf(file_, "alice"), "");
  EXPECT_EQ(hashOf(file_, "bob"), bob_hash);
  EXPECT_EQ(modeOf(file_), 0600u);
  r = user({"del", "--users-file", file_, "alice"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("no user alice"), std::string::npos) << r.err;
}

TEST_F(UserCommand, PasswdChangesOnlyThatHash) {
  ASSERT_EQ(add("alice", "user", "alice-password").exit_code, 0);
  ASSERT_EQ(add("bob", "user", "bob-password").exit_code, 0);
  const std::string alice_before = hashOf(file_, "alice"), bob_before = hashOf(file_, "bob");
  CmdResult r =
      user({"passwd", "--users-file", file_, "alice", "--password-stdin"}, "a-new-password\n");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string alice_after = hashOf(file_, "alice");
  EXPECT_EQ(alice_after.rfind("$argon2id$", 0), 0u);
  EXPECT_NE(alice_after, alice_before);
  EXPECT_EQ(hashOf(file_, "bob"), bob_before);
  EXPECT_NE(readFile(file_).find("alice:" + alice_after + ":user:nobody"), std::string::npos);
  EXPECT_EQ(user({"passwd", "--users-file", file_, "carol", "--password-stdin"}, "pw-carol-1\n")
                .exit_code,
            1);
}

TEST_F(UserCommand, RefusesAWorldReadableUsersFile) {
  ASSERT_EQ(add("alice", "user", "alice-password").exit_code, 0);
  ASSERT_EQ(::chmod(file_.c_str(), 0644), 0);
  CmdResult r = add("bob", "user", "bob-password");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("chmod 600 " + file_), std::string::npos) << r.err;
}

// ---- jobworkerd --dev ------------------------------------------------------------------------

TEST(DevMode, FirstStartCreatesCaCertificateAndAdmin) {
  auto d = Daemon::start();
  ASSERT_GT(d->pid(), 0);
  const std::string dir = d->stateDir();
  EXPECT_EQ(modeOf(dir), 0700u);
  for (const char* f :
       {"ca.pem", "ca.key", "server.pem", "server.key", "users", "admin-password"}) {
    EXPECT_TRUE(exists(dir + "/" + f)) << f;
  }
  for (const char* f : {"ca.key", "server.key", "users", "admin-password"}) {
    EXPECT_EQ(modeOf(dir + "/" + f), 0600u) << f;
  }
  CmdResult v = run({"openssl", "verify", "-CAfile", d->caFile(), dir + "/server.pem"});
  EXPECT_EQ(v.exit_code, 0) << v.out << v.err;
  EXPECT_NE(v.out.find("server.pem: OK"), std::string::npos) << v.out;
  const std::string password = d->adminPassword();
  EXPECT_EQ(password.size(), 24u);
  EXPECT_NE(readFile(d->usersFile()).find(":admin:nobody"), std::string::npos);
  // The generated password works end to end, over TLS trusting only DIR/ca.pem.
  EXPECT_FALSE(login(*d, "admin", password).empty());
  // The three lines telling the newcomer how to log in.
  EXPECT_NE(d->log().find("jobworker login"), std::string::npos) << d->log();
}

// Runs `jobworkerd --dev` on a state dir the test keeps, so a second start can be compared.
class DevProcess {
 public:
  DevProcess(const std::string& state_dir, int port) : log_(state_dir + ".log") {
    std::vector<std::string> args = {binary("jobworkerd"), "--dev",
                                     "--state-dir",        state_dir,
                                     "--listen",           "127.0.0.1:" + std::to_string(port)};
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    int logfd = ::open(log_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    pid_ = ::fork();
    if (pid_ == 0) {
      ::dup2(logfd, 1);
      ::dup2(logfd, 2);
      ::execv(argv[0], argv.data());
      ::_exit(127);
    }
    ::close(logfd);
  }
  ~DevProcess() {
    stop();
    ::unlink(log_.c_str());
  }
  // True once 127.0.0.1:port accepts TCP connections (the dev files exist by then).
  bool waitListening(int port, int timeout_s) {
    bool ok = false;
    waitUntil(
        [&] {
          int status = 0;
          if (::waitpid(pid_, &status, WNOHANG) == pid_) {
            pid_ = -1;
            return true;  // exited: nothing left to wait for
          }
          int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
          sockaddr_in a{};
          a.sin_family = AF_INET;
          a.sin_port = htons(static_cast<uint16_t>(port));
          a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
          ok = ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
          ::close(fd);
          return ok;
        },
        std::chrono::seconds(timeout_s));
    return ok;
  }
  void stop() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGTERM);
    int status = 0;
    waitUntil([&] { return ::waitpid(pid_, &status, WNOHANG) != 0; }, std::chrono::seconds(20));
    if (::kill(pid_, 0) == 0) {
      ADD_FAILURE() << "jobworkerd ignored SIGTERM for 20 s";
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, &status, 0);
    }
    pid_ = -1;
  }
  std::string log() const { return readFile(log_); }

 private:
  std::string log_;
  pid_t pid_ = -1;
};

TEST(DevMode, SecondStartReusesEverything) {
  const std::string dir = makeTempDir("jwdevreuse");
  const std::vector<std::string> files = {"ca.pem",     "ca.key", "server.pem",
                                          "server.key", "users",  "admin-password"};
  std::vector<std::string> first;
  {
    const int port = freePort();
    DevProcess p(dir, port);
    ASSERT_TRUE(p.waitListening(port, 30)) << p.log();
    for (const auto& f : files) first.push_back(readFile(dir + "/" + f));
  }
  for (size_t i = 0; i < files.size(); ++i) EXPECT_FALSE(first[i].empty()) << files[i];
  {
    const int port = freePort();
    DevProcess p(dir, port);
    ASSERT_TRUE(p.waitListening(port, 30)) << p.log();
    for (size_t i = 0; i < files.size(); ++i) {
      EXPECT_EQ(readFile(dir + "/" + files[i]), first[i]) << files[i] << " was re-created";
    }
  }
  removeTree(dir);
}

TEST(DevMode, WithoutDevMissingFilesAreAClearError) {
  const std::string dir = makeTempDir("jwnodev");
  const std::string conf = dir + "/jobworkerd.conf";
  std::ofstream(conf) << "tls_cert = " << dir << "/missing.pem\ntls_key = " << dir
                      << "/missing.key\nusers_file = " << dir << "/missing-users\n";
  CmdResult r = run({binary("jobworkerd"), "--config", conf, "--state-dir", dir + "/state",
                     "--listen", "127.0.0.1:" + std::to_string(freePort())},
                    "", {}, 30);
  EXPECT_NE(r.exit_code, 0);
  const std::string all = r.out + r.err;
  EXPECT_TRUE(all.find("missing.pem") != std::string::npos ||
              all.find("missing-users") != std::string::npos)
      << "the error must name the missing file: " << all;
  removeTree(dir);
}

}  // namespace
}  // namespace jw::test
