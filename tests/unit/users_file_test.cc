// Unit tests (no privileges) for the accounts room and the admin tool: the users file, account
// lookup, the dev-mode CA/certificate/admin bootstrap and the listening socket. Runs in the unit
// suite.
#include "supervisor/accounts/users_file.h"

#include <dirent.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sodium.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "supervisor/accounts/accounts.h"
#include "supervisor/frontend_link/listen_socket.h"
#include "tools/dev_bootstrap.h"

namespace jw::supervisor {
namespace {

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/jw-users-test-XXXXXX";
    char* p = ::mkdtemp(tmpl);
    EXPECT_NE(p, nullptr);
    path_ = p != nullptr ? p : "/tmp";
  }
  ~TempDir() {
    std::string cmd = "rm -rf '" + path_ + "'";
    if (std::system(cmd.c_str()) != 0) ADD_FAILURE() << "cannot remove " << path_;
  }
  std::string operator/(const std::string& name) const { return path_ + "/" + name; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

void writeFile(const std::string& path, const std::string& content, mode_t mode = 0600) {
  ::unlink(path.c_str());
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
  ASSERT_GE(fd, 0) << path;
  ASSERT_EQ(::write(fd, content.data(), content.size()), static_cast<ssize_t>(content.size()));
  ASSERT_EQ(::fchmod(fd, mode), 0);
  ::close(fd);
}

std::string readFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

mode_t modeOf(const std::string& path) {
  struct stat st {};
  EXPECT_EQ(::stat(path.c_str(), &st), 0) << path;
  return st.st_mode & 07777;
}

std::vector<std::string> listDir(const std::string& dir) {
  std::vector<std::string> names;
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) return names;
  while (dirent* e = ::readdir(d)) {
    std::string n = e->d_name;
    if (n != "." && n != "..") names.push_back(n);
  }
  ::closedir(d);
  return names;
}

// Runs argv (no shell) with stdout/stderr discarded; returns the exit status or -1.
int runQuiet(const std::vector<std::string>& argv) {
  pid_t pid = ::fork();
  if (pid == 0) {
    int null = ::open("/dev/null", O_WRONLY);
    ::dup2(null, 1);
    ::dup2(null, 2);
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    ::execvp(args[0], args.data());
    ::_exit(127);
  }
  int status = 0;
  if (pid < 0 || ::waitpid(pid, &status, 0) != pid) return -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

// A real hash, computed once (argon2id costs ~100 ms).
const std::string& sampleHash() {
  static const std::string hash = hashPassword("correct horse battery").value();
  return hash;
}

// ---- users file ------------------------------------------------------------------------------

TEST(UsersFile, ParsesGoodFileWithCommentsAndBlankLines) {
  TempDir dir;
  const std::string& h = sampleHash();
  writeFile(dir / "users", "# jobworker users\n\n  # indented comment\nalice:" + h +
                               ":admin:nobody\n\t\nbob:" + h + ":user:www-data\ncarol_1.x-y:" + h +
                               ":viewer:first.last\n");
  auto users = loadUsersFile(dir / "users");
  ASSERT_TRUE(users.ok()) << users.error().message;
  ASSERT_EQ(users->size(), 3u);
  EXPECT_EQ((*users)[0].name, "alice");
  EXPECT_EQ((*users)[0].password_hash, h);
  EXPECT_EQ((*users)[0].role, protocol::Role::kAdmin);
  EXPECT_EQ((*users)[0].run_as, "nobody");
  EXPECT_EQ((*users)[1].role, protocol::Role::kUser);
  EXPECT_EQ((*users)[1].run_as, "www-data");
  EXPECT_EQ((*users)[2].name, "carol_1.x-y");
  EXPECT_EQ((*users)[2].role, protocol::Role::kViewer);
  EXPECT_EQ((*users)[2].run_as, "first.last");
}

TEST(UsersFile, EmptyFileHasNoUsers) {
  TempDir dir;
  writeFile(dir / "users", "");
  auto users = loadUsersFile(dir / "users");
  ASSERT_TRUE(users.ok()) << users.error().message;
  EXPECT_TRUE(users->empty());
}

TEST(UsersFile, LastLineWithoutNewlineIsRead) {
  TempDir dir;
  writeFile(dir / "users", "alice:" + sampleHash() + ":user:nobody");
  auto users = loadUsersFile(dir / "users");
  ASSERT_TRUE(users.ok()) << users.error().message;
  EXPECT_EQ(users->size(), 1u);
}

TEST(UsersFile, EachBadLineFailsTheLoadNamingFileAndLine) {
  const std::string& h = sampleHash();
  struct Case {
    std::string line;
    std::string expect;  // substring of the error after "FILE:3: "
  };
  const std::vector<Case> cases = {
      {"bob:" + h + ":user", "4 fields"},
      {"bob:" + h + ":user:nobody:extra", "4 fields"},
      {"just-a-name", "4 fields"},
      {"Bob:" + h + ":user:nobody", "invalid user name"},
      {":" + h + ":user:nobody", "invalid user name"},
      {"9bob:" + h + ":user:nobody", "invalid user name"},
      {"bob:secret:user:nobody", "argon2id"},
      {"bob::user:nobody", "argon2id"},
      {"bob:$argon2i$v=19$m=4096,t=3,p=1$c2FsdA$aGFzaA:user:nobody", "argon2id"},
      {"bob:" + h + ":root:nobody", "unknown role"},
      {"bob:" + h + ":Admin:nobody", "unknown role"},
      {"bob:" + h + "::nobody", "unknown role"},
      {"bob:" + h + ":user:", "run-as"},
      {"bob:" + h + ":user:no body", "run-as"},
      {"bob:" + h + ":user:-rf", "run-as"},
      {"alice:" + h + ":viewer:nobody", "duplicate user alice (first defined on line 2)"},
      {"bob:" + h + ":user:nobody ", "whitespace"},
      {" bob:" + h + ":user:nobody", "whitespace"},
      {"bob:" + h + ":user:nobody\r", "carriage return"},
  };
  TempDir dir;
  const std::string path = dir / "users";
  for (const auto& c : cases) {
    writeFile(path, "# header\nalice:" + h + ":user:nobody\n" + c.line + "\ncarol:" + h +
                        ":user:nobody\n");
    auto users = loadUsersFile(path);
    ASSERT_FALSE(users.ok()) << "accepted: " << c.line;
    const std::string& msg = users.error().message;
    EXPECT_EQ(msg.rfind(path + ":3: ", 0), 0u) << msg;
    EXPECT_NE(msg.find(c.expect), std::string::npos) << "line " << c.line << " -> " << msg;
  }
}

TEST(UsersFile, RefusesGroupOrOtherPermissionBits) {
  TempDir dir;
  const std::string path = dir / "users";
  for (mode_t mode : {0640, 0604, 0660, 0644, 0610}) {
    writeFile(path, "alice:" + sampleHash() + ":user:nobody\n", mode);
    auto users = loadUsersFile(path);
    ASSERT_FALSE(users.ok()) << std::oct << mode;
    EXPECT_NE(users.error().message.find("chmod 600 " + path), std::string::npos)
        << users.error().message;
  }
  for (mode_t mode : {0600, 0400}) {
    writeFile(path, "alice:" + sampleHash() + ":user:nobody\n", mode);
    EXPECT_TRUE(loadUsersFile(path).ok()) << std::oct << mode;
  }
}

TEST(UsersFile, MissingFileAndSymlinkAreErrors) {
  TempDir dir;
  auto missing = loadUsersFile(dir / "nope");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().sys_errno, ENOENT);
  EXPECT_NE(missing.error().message.find("jobworker-admin user add"), std::string::npos);

  writeFile(dir / "real", "alice:" + sampleHash() + ":user:nobody\n");
  ASSERT_EQ(::symlink((dir / "real").c_str(), (dir / "link").c_str()), 0);
  EXPECT_FALSE(loadUsersFile(dir / "link").ok());
  EXPECT_FALSE(loadUsersFile(dir.path()).ok());  // a directory
}

TEST(UsersFile, SaveLoadRoundTripIsAtomicAndPrivate) {
  TempDir dir;
  const std::string path = dir / "users";
  std::vector<UserRecord> users = {
      {"alice", sampleHash(), protocol::Role::kAdmin, "nobody"},
      {"bob", sampleHash(), protocol::Role::kUser, "daemon"},
      {"viewer.one", sampleHash(), protocol::Role::kViewer, "nobody"},
  };
  mode_t old_umask = ::umask(0);  // the file must still be 0600
  Status saved = saveUsersFile(path, users);
  ::umask(old_umask);
  ASSERT_TRUE(saved.ok()) << saved.error().message;
  EXPECT_EQ(modeOf(path), 0600u);
  EXPECT_EQ(listDir(dir.path()), std::vector<std::string>{"users"});  // no temp file left

  auto loaded = loadUsersFile(path);
  ASSERT_TRUE(loaded.ok()) << loaded.error().message;
  ASSERT_EQ(loaded->size(), users.size());
  for (size_t i = 0; i < users.size(); ++i) {
    EXPECT_EQ((*loaded)[i].name, users[i].name);
    EXPECT_EQ((*loaded)[i].password_hash, users[i].password_hash);
    EXPECT_EQ((*loaded)[i].role, users[i].role);
    EXPECT_EQ((*loaded)[i].run_as, users[i].run_as);
  }

  // Rewriting replaces the file (new inode) and keeps it loadable.
  struct stat before {};
  struct stat after {};
  ASSERT_EQ(::stat(path.c_str(), &before), 0);
  users.pop_back();
  ASSERT_TRUE(saveUsersFile(path, users).ok());
  ASSERT_EQ(::stat(path.c_str(), &after), 0);
  EXPECT_NE(before.st_ino, after.st_ino);
  EXPECT_EQ(loadUsersFile(path)->size(), 2u);
}

TEST(UsersFile, SaveRefusesRecordsTheLoaderWouldRejectAndKeepsOldFile) {
  TempDir dir;
  const std::string path = dir / "users";
  std::vector<UserRecord> good = {{"alice", sampleHash(), protocol::Role::kUser, "nobody"}};
  ASSERT_TRUE(saveUsersFile(path, good).ok());
  const std::string before = readFile(path);
  const std::vector<std::vector<UserRecord>> bad = {
      {{"a:b", sampleHash(), protocol::Role::kUser, "nobody"}},
      {{"bob", "plaintext", protocol::Role::kUser, "nobody"}},
      {{"bob", sampleHash(), protocol::Role::kUser, "no:body"}},
      {{"bob", sampleHash(), protocol::Role::kUser, "nobody\nroot"}},
      {good[0], good[0]},
  };
  for (const auto& users : bad) {
    EXPECT_FALSE(saveUsersFile(path, users).ok()) << users[0].name;
  }
  EXPECT_EQ(readFile(path), before);
  EXPECT_EQ(listDir(dir.path()), std::vector<std::string>{"users"});
}

TEST(UsersFile, SaveIntoMissingDirectoryFails) {
  TempDir dir;
  EXPECT_FALSE(saveUsersFile(dir / "no/such/users", {}).ok());
}

TEST(UsersFile, HashPasswordIsArgon2idAndVerifies) {
  auto h1 = hashPassword("s3cret password");
  auto h2 = hashPassword("s3cret password");
  ASSERT_TRUE(h1.ok() && h2.ok());
  EXPECT_EQ(h1->rfind("$argon2id$", 0), 0u) << *h1;
  // OPSLIMIT_INTERACTIVE = 2 passes, MEMLIMIT_INTERACTIVE = 64 MiB.
  EXPECT_NE(h1->find("m=65536,t=2,"), std::string::npos) << *h1;
  EXPECT_NE(*h1, *h2);  // random salt
  ASSERT_GE(sodium_init(), 0);
  const std::string right = "s3cret password", wrong = "s3cret passwore";
  EXPECT_EQ(crypto_pwhash_str_verify(h1->c_str(), right.data(), right.size()), 0);
  EXPECT_NE(crypto_pwhash_str_verify(h1->c_str(), wrong.data(), wrong.size()), 0);
  EXPECT_EQ(crypto_pwhash_str_verify(h2->c_str(), right.data(), right.size()), 0);
}

// ---- accounts --------------------------------------------------------------------------------

TEST(Accounts, LooksUpRealAccounts) {
  auto root = lookupAccount("root");
  ASSERT_TRUE(root.ok()) << root.error().message;
  EXPECT_EQ(root->uid, 0u);
  EXPECT_EQ(root->gid, 0u);
  EXPECT_EQ(root->home, "/root");
  ASSERT_FALSE(root->groups.empty());
  EXPECT_EQ(root->groups[0], 0u);

  auto nobody = lookupAccount("nobody");
  ASSERT_TRUE(nobody.ok()) << nobody.error().message;
  EXPECT_EQ(nobody->uid, 65534u);

  auto none = lookupAccount("no-such-account-xyz");
  ASSERT_FALSE(none.ok());
  EXPECT_NE(none.error().message.find("no-such-account-xyz"), std::string::npos);

  auto me = currentAccount();
  ASSERT_TRUE(me.ok()) << me.error().message;
  EXPECT_EQ(me->uid, ::geteuid());
}

// ---- dev bootstrap ---------------------------------------------------------------------------

TEST(DevBootstrap, CreatesVerifiableCertificatesAndAdmin) {
  TempDir top;
  const std::string dir = top / "state/dev";  // parents are created too
  auto files = admin::ensureDevFiles(dir);
  ASSERT_TRUE(files.ok()) << files.error().message;
  EXPECT_EQ(files->ca_cert, dir + "/ca.pem");
  EXPECT_EQ(files->server_cert, dir + "/server.pem");
  EXPECT_EQ(files->server_key, dir + "/server.key");
  EXPECT_EQ(files->users_file, dir + "/users");
  EXPECT_EQ(files->admin_password, dir + "/admin-password");
  EXPECT_EQ(modeOf(dir), 0700u);
  for (const char* secret : {"ca.key", "server.key", "users", "admin-password"}) {
    EXPECT_EQ(modeOf(dir + "/" + secret), 0600u) << secret;
  }

  // What a TLS client checks, with the openssl tool rather than our own code.
  EXPECT_EQ(runQuiet({"openssl", "verify", "-CAfile", files->ca_cert, "-purpose", "sslserver",
                      "-verify_hostname", "localhost", files->server_cert}),
            0);
  EXPECT_EQ(runQuiet({"openssl", "verify", "-CAfile", files->ca_cert, "-verify_ip", "::1",
                      files->server_cert}),
            0);
  EXPECT_EQ(runQuiet({"openssl", "verify", "-CAfile", files->ca_cert, "-verify_ip", "127.0.0.1",
                      files->server_cert}),
            0);
  EXPECT_NE(runQuiet({"openssl", "verify", "-CAfile", files->ca_cert, "-verify_hostname",
                      "example.com", files->server_cert}),
            0);

  const std::string password = readFile(files->admin_password);
  EXPECT_EQ(password.size(), 24u);
  EXPECT_EQ(password.find_first_not_of(
                "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"),
            std::string::npos);
  auto users = loadUsersFile(files->users_file);
  ASSERT_TRUE(users.ok()) << users.error().message;
  ASSERT_EQ(users->size(), 1u);
  EXPECT_EQ((*users)[0].name, "admin");
  EXPECT_EQ((*users)[0].role, protocol::Role::kAdmin);
  EXPECT_EQ((*users)[0].run_as, "nobody");
  ASSERT_GE(sodium_init(), 0);
  EXPECT_EQ(
      crypto_pwhash_str_verify((*users)[0].password_hash.c_str(), password.data(), password.size()),
      0);
}

TEST(DevBootstrap, ReusesWhatExists) {
  TempDir top;
  const std::string& dir = top.path();
  ASSERT_TRUE(admin::ensureDevFiles(dir).ok());
  const std::vector<std::string> names = {"ca.pem",     "ca.key", "server.pem",
                                          "server.key", "users",  "admin-password"};
  std::vector<std::string> before;
  for (const auto& n : names) before.push_back(readFile(dir + "/" + n));

  auto again = admin::ensureDevFiles(dir + "/");  // trailing slash: same directory
  ASSERT_TRUE(again.ok()) << again.error().message;
  for (size_t i = 0; i < names.size(); ++i) EXPECT_EQ(readFile(dir + "/" + names[i]), before[i]);

  // Password file gone but users present: both left alone.
  ASSERT_EQ(::unlink((dir + "/admin-password").c_str()), 0);
  ASSERT_TRUE(admin::ensureDevFiles(dir).ok());
  EXPECT_NE(::access((dir + "/admin-password").c_str(), F_OK), 0);
  EXPECT_EQ(readFile(dir + "/users"), before[4]);

  // Users file gone: a new admin and a new password.
  ASSERT_EQ(::unlink((dir + "/users").c_str()), 0);
  ASSERT_TRUE(admin::ensureDevFiles(dir).ok());
  EXPECT_NE(readFile(dir + "/admin-password"), before[5]);
  EXPECT_NE(readFile(dir + "/users"), before[4]);

  // Server certificate gone: a new one from the same CA.
  ASSERT_EQ(::unlink((dir + "/server.pem").c_str()), 0);
  ASSERT_TRUE(admin::ensureDevFiles(dir).ok());
  EXPECT_EQ(readFile(dir + "/ca.pem"), before[0]);
  EXPECT_NE(readFile(dir + "/server.pem"), before[2]);
  EXPECT_NE(readFile(dir + "/server.key"), before[3]);
  EXPECT_EQ(runQuiet({"openssl", "verify", "-CAfile", dir + "/ca.pem", dir + "/server.pem"}), 0);
}

TEST(DevBootstrap, RefusesInconsistentFiles) {
  TempDir a, b;
  ASSERT_TRUE(admin::ensureDevFiles(a.path()).ok());
  ASSERT_TRUE(admin::ensureDevFiles(b.path()).ok());
  // A server certificate from another CA is someone's mistake, not something to paper over.
  writeFile(a / "server.pem", readFile(b / "server.pem"), 0644);
  writeFile(a / "server.key", readFile(b / "server.key"), 0600);
  auto mixed = admin::ensureDevFiles(a.path());
  ASSERT_FALSE(mixed.ok());
  EXPECT_NE(mixed.error().message.find("server.pem"), std::string::npos) << mixed.error().message;

  // A world-readable private key is refused.
  TempDir c;
  ASSERT_TRUE(admin::ensureDevFiles(c.path()).ok());
  ASSERT_EQ(::chmod((c / "ca.key").c_str(), 0644), 0);
  auto open_key = admin::ensureDevFiles(c.path());
  ASSERT_FALSE(open_key.ok());
  EXPECT_NE(open_key.error().message.find("chmod 600"), std::string::npos);

  // A CA certificate without its key.
  TempDir d;
  ASSERT_TRUE(admin::ensureDevFiles(d.path()).ok());
  ASSERT_EQ(::unlink((d / "ca.key").c_str()), 0);
  EXPECT_FALSE(admin::ensureDevFiles(d.path()).ok());
}

// ---- listen socket ---------------------------------------------------------------------------

TEST(ListenSocket, ParsesAddresses) {
  auto v4 = parseListenAddress("127.0.0.1:8443");
  ASSERT_TRUE(v4.ok());
  EXPECT_EQ(v4->host, "127.0.0.1");
  EXPECT_EQ(v4->port, 8443);
  auto v6 = parseListenAddress("[::1]:0");
  ASSERT_TRUE(v6.ok());
  EXPECT_EQ(v6->host, "::1");
  EXPECT_EQ(v6->port, 0);
  auto local = parseListenAddress("localhost:65535");
  ASSERT_TRUE(local.ok());
  EXPECT_EQ(local->host, "127.0.0.1");
  EXPECT_EQ(local->port, 65535);
  for (const char* bad : {"", "8443", ":8443", "127.0.0.1", "127.0.0.1:", "127.0.0.1:65536",
                          "127.0.0.1:-1", "127.0.0.1:84a3", "::1:8443", "[::1]8443", "[::1",
                          "[127.0.0.1]:80", "example.com:443", "256.0.0.1:80", "[::1]:123456"}) {
    EXPECT_FALSE(parseListenAddress(bad).ok()) << bad;
  }
}

TEST(ListenSocket, BindsWithoutReusePortAndNamesTheAddressOnConflict) {
  auto fd = openListenSocket("127.0.0.1:0");
  ASSERT_TRUE(fd.ok()) << fd.error().message;
  auto port = boundPort(fd->get());
  ASSERT_TRUE(port.ok());
  EXPECT_GT(*port, 0);

  int value = -1;
  socklen_t len = sizeof value;
  ASSERT_EQ(::getsockopt(fd->get(), SOL_SOCKET, SO_REUSEPORT, &value, &len), 0);
  EXPECT_EQ(value, 0);
  ASSERT_EQ(::getsockopt(fd->get(), SOL_SOCKET, SO_ACCEPTCONN, &value, &len), 0);
  EXPECT_EQ(value, 1);
  EXPECT_TRUE(::fcntl(fd->get(), F_GETFD) & FD_CLOEXEC);

  const std::string addr = "127.0.0.1:" + std::to_string(*port);
  auto second = openListenSocket(addr);
  ASSERT_FALSE(second.ok());
  EXPECT_NE(second.error().message.find(addr + ": Address already in use"), std::string::npos)
      << second.error().message;
  EXPECT_EQ(second.error().sys_errno, EADDRINUSE);
  fd->reset();

  auto v6 = openListenSocket("[::1]:0");
  if (v6.ok()) {  // hosts without IPv6 loopback skip this half
    EXPECT_GT(boundPort(v6->get()).value(), 0);
    v6->reset();
  }
}

// Systemd's protocol: fd 3 plus LISTEN_PID/LISTEN_FDS naming this process.
TEST(ListenSocket, AdoptsSocketActivationFd) {
  int saved3 = ::fcntl(3, F_DUPFD_CLOEXEC, 10);  // whatever the test runner has at fd 3
  auto listener = openListenSocket("127.0.0.1:0");
  ASSERT_TRUE(listener.ok());
  const int port = boundPort(listener->get()).value();
  if (listener->get() != 3) {  // when fd 3 was free, the listener may already sit there
    ASSERT_EQ(::dup2(listener->get(), 3), 3);
    listener->reset();
  } else {
    (void)listener->release();  // fd 3 now stands for systemd's socket
  }
  ::setenv("LISTEN_PID", std::to_string(::getpid()).c_str(), 1);
  ::setenv("LISTEN_FDS", "1", 1);
  auto fd = openListenSocket("127.0.0.1:1");  // ignored: systemd's socket wins
  ASSERT_TRUE(fd.ok()) << fd.error().message;
  EXPECT_EQ(fd->get(), 3);
  EXPECT_EQ(boundPort(3).value(), port);
  EXPECT_EQ(std::getenv("LISTEN_PID"), nullptr);
  EXPECT_EQ(std::getenv("LISTEN_FDS"), nullptr);
  EXPECT_TRUE(::fcntl(3, F_GETFD) & FD_CLOEXEC);
  (void)fd->release();  // fd 3 stays the test's to juggle (and to restore at the end)

  // Another process's variables are not ours: bind normally.
  ::setenv("LISTEN_PID", "1", 1);
  ::setenv("LISTEN_FDS", "1", 1);
  auto own = openListenSocket("127.0.0.1:0");
  ASSERT_TRUE(own.ok());
  EXPECT_NE(own->get(), 3);
  own->reset();
  ::unsetenv("LISTEN_PID");
  ::unsetenv("LISTEN_FDS");

  // A socket that is not listening is refused.
  int udp = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(udp, 0);
  ASSERT_NE(udp, 3);  // fd 3 is still the listener here
  ASSERT_EQ(::dup2(udp, 3), 3);
  ::close(udp);
  ::setenv("LISTEN_PID", std::to_string(::getpid()).c_str(), 1);
  ::setenv("LISTEN_FDS", "1", 1);
  EXPECT_FALSE(openListenSocket("127.0.0.1:0").ok());
  ::unsetenv("LISTEN_PID");
  ::unsetenv("LISTEN_FDS");

  ::close(3);
  if (saved3 >= 0) {
    ::dup2(saved3, 3);
    ::close(saved3);
  }
}

}  // namespace
}  // namespace jw::supervisor
