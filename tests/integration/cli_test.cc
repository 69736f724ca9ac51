// Integration tests of the `jobworker` CLI binary against the real daemon over real HTTPS: login,
// start/status/list/stop/logs, run's exit statuses, live follow, resume across a frontend kill,
// JSON output, and the error lines and exit statuses users see. Runs in the test process.
#include <Poco/JSON/Array.h>
#include <Poco/JSON/Object.h>
#include <Poco/JSON/Parser.h>
#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "client/api_client.h"
#include "tests/integration/daemon.h"

namespace jw::test {
namespace {

using Clock = std::chrono::steady_clock;

Poco::JSON::Object::Ptr parseObject(const std::string& text) {
  Poco::JSON::Parser p;
  auto v = p.parse(text);
  return v.extract<Poco::JSON::Object::Ptr>();
}

// The lines "line 0\n" ... "line N-1\n" a test job prints.
std::string numberedLines(int n) {
  std::string s;
  for (int i = 0; i < n; ++i) s += "line " + std::to_string(i) + "\n";
  return s;
}

// A shell loop printing numberedLines(n), sleeping `pause` seconds between lines.
std::vector<std::string> slowPrinter(int n, const std::string& pause) {
  return {"sh", "-c",
          "i=0; while [ $i -lt " + std::to_string(n) +
              " ]; do echo \"line $i\"; i=$((i+1)); sleep " + pause + "; done"};
}

bool isUuid(const std::string& s) {
  if (s.size() != 36) return false;
  for (size_t i = 0; i < s.size(); ++i) {
    bool dash = i == 8 || i == 13 || i == 18 || i == 23;
    if (dash ? s[i] != '-' : !std::isxdigit(static_cast<unsigned char>(s[i]))) return false;
  }
  return true;
}

size_t lineCount(const std::string& s) {
  return static_cast<size_t>(std::count(s.begin(), s.end(), '\n'));
}

class CliTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    daemon_ = Daemon::start().release();
    if (daemon_ != nullptr) daemon_->addUser("bob", "user", "bob-password-1");
  }
  static void TearDownTestSuite() {
    delete daemon_;
    daemon_ = nullptr;
  }

  void SetUp() override {
    ASSERT_NE(daemon_, nullptr) << "the daemon did not start";
    for (const char* v : {"JOBWORKER_SERVER", "JOBWORKER_TOKEN", "JOBWORKER_CA_FILE"}) unsetenv(v);
    xdg_ = makeTempDir("jwcli");
  }
  void TearDown() override { removeTree(xdg_); }

  const Daemon& d() const { return *daemon_; }

  // The jobworker binary with this test's private config directory.
  CmdResult cli(std::vector<std::string> args, const std::string& in = "",
                std::vector<std::string> env = {}, int timeout_s = 120) {
    args.insert(args.begin(), binary("jobworker"));
    env.push_back("XDG_CONFIG_HOME=" + xdg_);
    return run(args, in, env, timeout_s);
  }

  void loginAdmin() {
    CmdResult r = cli({"login", "--server", d().url(), "--ca-file", d().caFile(), "--user", "admin",
                       "--password-stdin"},
                      d().adminPassword() + "\n");
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }

  // `jobworker start` of slowPrinter(n, "0.1"): the job's id, or "" (a failure is reported).
  std::string startSlowPrinter(int n) {
    std::vector<std::string> args = {"start", "--"};
    for (const auto& a : slowPrinter(n, "0.1")) args.push_back(a);
    CmdResult start = cli(args);
    EXPECT_EQ(start.exit_code, 0) << start.err;
    return start.exit_code == 0 ? start.out.substr(0, 36) : "";
  }

  std::string configFile() const { return xdg_ + "/jobworker/contexts/default.json"; }

  // Polls `status --output json` until the job is no longer running.
  Poco::JSON::Object::Ptr waitEnded(const std::string& id) {
    Poco::JSON::Object::Ptr o;
    CmdResult r;
    bool ended = waitUntil(
        [&] {
          r = cli({"status", "--output", "json", id});
          if (r.exit_code != 0) return true;
          o = parseObject(r.out);
          return o->getValue<std::string>("state") != "running";
        },
        std::chrono::seconds(60));
    if (r.exit_code != 0) {
      ADD_FAILURE() << r.err;
      return nullptr;
    }
    if (!ended) {
      ADD_FAILURE() << "job " << id << " did not end";
      return nullptr;
    }
    return o;
  }

  static Daemon* daemon_;
  std::string xdg_;
};

Daemon* CliTest::daemon_ = nullptr;

// ---- login, whoami, logout --------------------------------------------------------------------

TEST_F(CliTest, LoginStoresAPrivateConfigAndWhoamiReadsIt) {
  loginAdmin();
  struct stat st {};
  ASSERT_EQ(stat(configFile().c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  ASSERT_EQ(stat((xdg_ + "/jobworker").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  auto cfg = parseObject(readFile(configFile()));
  EXPECT_EQ(cfg->getValue<std::string>("server"), d().url());
  EXPECT_EQ(cfg->getValue<std::string>("ca_file"), d().caFile());
  EXPECT_EQ(cfg->getValue<std::string>("token").rfind("jw_", 0), 0u);

  CmdResult who = cli({"whoami"});
  ASSERT_EQ(who.exit_code, 0) << who.err;
  EXPECT_NE(who.out.find("user:   admin"), std::string::npos) << who.out;
  EXPECT_NE(who.out.find("role:   admin"), std::string::npos) << who.out;
  CmdResult json = cli({"whoami", "--output", "json"});
  ASSERT_EQ(json.exit_code, 0) << json.err;
  EXPECT_EQ(parseObject(json.out)->getValue<std::string>("role"), "admin");
}

TEST_F(CliTest, ConfigReadableByOthersIsRefused) {
  loginAdmin();
  ASSERT_EQ(chmod(configFile().c_str(), 0644), 0);
  CmdResult r = cli({"whoami"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("accessible by group or others (mode 0644): run 'chmod 600 " + configFile()),
            std::string::npos)
      << r.err;
  EXPECT_EQ(lineCount(r.err), 1u) << r.err;
  EXPECT_EQ(r.out, "");
}

TEST_F(CliTest, LogoutRevokesTheToken) {
  loginAdmin();
  std::string token = parseObject(readFile(configFile()))->getValue<std::string>("token");
  CmdResult out = cli({"logout"});
  ASSERT_EQ(out.exit_code, 0) << out.err;
  EXPECT_FALSE(parseObject(readFile(configFile()))->has("token"));
  CmdResult who = cli({"whoami"});
  EXPECT_EQ(who.exit_code, 1);
  EXPECT_NE(who.err.find("not logged in: run 'jobworker login --server " + d().url() + "'"),
            std::string::npos)
      << who.err;
  // The server forgot it too: the same token from the environment is refused.
  CmdResult old = cli({"whoami"}, "", {"JOBWORKER_TOKEN=" + token});
  EXPECT_EQ(old.exit_code, 1);
  EXPECT_NE(old.err.find("session expired or revoked"), std::string::npos) << old.err;
}

TEST_F(CliTest, EnvironmentOverridesWithoutAConfigFile) {
  std::string token = login(d(), "admin", d().adminPassword());
  CmdResult r = cli({"run", "--", "sh", "-c", "echo from-env"}, "",
                    {"JOBWORKER_SERVER=" + d().url(), "JOBWORKER_TOKEN=" + token,
                     "JOBWORKER_CA_FILE=" + d().caFile()});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "from-env\n");
}

// ---- run ----------------------------------------------------------------------------------------

TEST_F(CliTest, RunPassesTheJobsExitStatusThrough) {
  loginAdmin();
  CmdResult three = cli({"run", "--", "sh", "-c", "echo hi; exit 3"});
  EXPECT_EQ(three.exit_code, 3) << three.err;
  EXPECT_EQ(three.out, "hi\n");
  EXPECT_EQ(three.err, "");
  CmdResult zero = cli({"run", "--", "true"});
  EXPECT_EQ(zero.exit_code, 0) << zero.err;
  CmdResult killed = cli({"run", "--", "sh", "-c", "kill -9 $$"});
  EXPECT_EQ(killed.exit_code, 128 + 9) << killed.err;
  CmdResult not_found = cli({"run", "--", "/nonexistent/program"});
  EXPECT_EQ(not_found.exit_code, 127) << not_found.err;
  EXPECT_EQ(not_found.err.rfind("jobworker: cannot run '/nonexistent/program': ", 0), 0u)
      << not_found.err;
  CmdResult not_exec = cli({"run", "--", "/etc/passwd"});
  EXPECT_EQ(not_exec.exit_code, 126) << not_exec.err;
}

TEST_F(CliTest, RunSeparatesStderrOnRequest) {
  loginAdmin();
  CmdResult r =
      cli({"run", "--separate-stderr", "--", "sh", "-c", "echo out; echo err >&2; exit 4"});
  EXPECT_EQ(r.exit_code, 4) << r.err;
  EXPECT_EQ(r.out, "out\n");
  EXPECT_EQ(r.err, "err\n");
}

// One `run` is one TCP connection, kept alive from the start of the job through its output to
// its final status, and leaves the TLS session ticket beside its token (0600).
TEST_F(CliTest, RunUsesOneConnectionAndKeepsTheTlsTicketPrivate) {
  loginAdmin();
  std::string trace = xdg_ + "/connects";
  CmdResult r = run({"/usr/bin/strace", "-f", "-qq", "-e", "trace=connect", "-o", trace,
                     binary("jobworker"), "run", "--", "sh", "-c", "echo hi; exit 3"},
                    "", {"XDG_CONFIG_HOME=" + xdg_});
  EXPECT_EQ(r.exit_code, 3) << r.err;
  EXPECT_EQ(r.out, "hi\n");
  std::string connects = readFile(trace);
  const std::string to_daemon = "sin_port=htons(" + std::to_string(d().port()) + ")";
  size_t n = 0;
  for (size_t p = connects.find(to_daemon); p != std::string::npos;
       p = connects.find(to_daemon, p + 1)) {
    n++;
  }
  EXPECT_EQ(n, 1u) << connects;
  struct stat st {};
  ASSERT_EQ(stat((xdg_ + "/jobworker/contexts/default.tls-session").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
}

// A stored ticket makes the next client's handshake a resumption, and is offered only to the
// server and CA file it came from.
TEST_F(CliTest, TlsTicketResumesTheNextClientOfTheSameServerAndCaOnly) {
  client::ApiClient::Settings s;
  s.server = d().url();
  s.ca_file = d().caFile();
  s.tls_session_file = xdg_ + "/ticket";
  auto first = client::ApiClient::create(s);
  ASSERT_TRUE(first) << first.error().message;
  auto info = first->login("admin", d().adminPassword());
  ASSERT_TRUE(info) << info.error().message;
  first->setToken(info->token);
  auto who = first->request("GET", "/v1/whoami");
  ASSERT_TRUE(who);
  EXPECT_EQ(who->status, 200);
  EXPECT_EQ(first->connectionStats().opened, 1u) << "login and whoami share one connection";
  EXPECT_EQ(first->connectionStats().resumed, 0u);

  s.token = info->token;
  auto second = client::ApiClient::create(s);
  ASSERT_TRUE(second);
  who = second->request("GET", "/v1/whoami");
  ASSERT_TRUE(who);
  EXPECT_EQ(who->status, 200);
  EXPECT_EQ(second->connectionStats().opened, 1u);
  EXPECT_EQ(second->connectionStats().resumed, 1u);

  // The same CA under another path: the ticket's header names the old one, so it is not used.
  s.ca_file = xdg_ + "/ca-copy.pem";
  { std::ofstream(s.ca_file) << readFile(d().caFile()); }
  auto third = client::ApiClient::create(s);
  ASSERT_TRUE(third);
  who = third->request("GET", "/v1/whoami");
  ASSERT_TRUE(who);
  EXPECT_EQ(who->status, 200);
  EXPECT_EQ(third->connectionStats().resumed, 0u);
}

// Without --ca-file the system store is read only by a handshake that verifies a certificate:
// a resumed one succeeds even when the store could not trust the server. SSL_CERT_FILE stands
// in for the system bundle (OpenSSL reads it when the store is loaded).
TEST_F(CliTest, SystemTrustStoreIsReadOnlyByAFullHandshake) {
  client::ApiClient::Settings s;
  s.server = d().url();
  s.tls_session_file = xdg_ + "/system-store-ticket";
  setenv("SSL_CERT_FILE", d().caFile().c_str(), 1);
  auto first = client::ApiClient::create(s);
  ASSERT_TRUE(first) << first.error().message;
  auto who = first->request("GET", "/v1/whoami");
  ASSERT_TRUE(who) << who.error().message;
  EXPECT_EQ(first->connectionStats().resumed, 0u);

  setenv("SSL_CERT_FILE", (xdg_ + "/no-such-bundle.pem").c_str(), 1);
  auto resumed = client::ApiClient::create(s);
  ASSERT_TRUE(resumed);
  who = resumed->request("GET", "/v1/whoami");
  ASSERT_TRUE(who) << who.error().message;
  EXPECT_EQ(resumed->connectionStats().resumed, 1u);

  // A full handshake reads the store then, not when the client was made: the bundle that
  // would have trusted the server is gone by the time it connects.
  s.tls_session_file.clear();
  setenv("SSL_CERT_FILE", d().caFile().c_str(), 1);
  auto full = client::ApiClient::create(s);
  ASSERT_TRUE(full);
  setenv("SSL_CERT_FILE", (xdg_ + "/no-such-bundle.pem").c_str(), 1);
  who = full->request("GET", "/v1/whoami");
  unsetenv("SSL_CERT_FILE");
  ASSERT_FALSE(who);
  EXPECT_EQ(who.error().kind, client::ClientError::Kind::kTrust) << who.error().message;
}

TEST_F(CliTest, RunIsBinarySafe) {
  loginAdmin();
  // Every byte value, several times over, through printf's octal escapes.
  std::string script =
      "i=0; while [ $i -lt 4 ]; do j=0; while [ $j -lt 256 ]; do "
      "printf \"\\\\$(printf %03o $j)\"; j=$((j+1)); done; i=$((i+1)); done";
  CmdResult r = cli({"run", "--", "sh", "-c", script});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::string expected;
  for (int i = 0; i < 4; ++i) {
    for (int b = 0; b < 256; ++b) expected += static_cast<char>(b);
  }
  EXPECT_EQ(r.out, expected);
}

// Spawns the CLI with its stdout on a pipe, for tests that must signal it while it runs.
struct Spawned {
  pid_t pid = -1;
  int out = -1;
  int err = -1;
};

Spawned spawnCli(const std::vector<std::string>& args, const std::string& xdg) {
  Spawned s;
  int out[2], err[2];
  if (pipe2(out, O_CLOEXEC) != 0 || pipe2(err, O_CLOEXEC) != 0) return s;
  std::vector<std::string> argv = {binary("jobworker")};
  argv.insert(argv.end(), args.begin(), args.end());
  std::string env_xdg = "XDG_CONFIG_HOME=" + xdg;
  s.pid = fork();
  if (s.pid == 0) {
    dup2(out[1], 1);
    dup2(err[1], 2);
    int devnull = open("/dev/null", O_RDONLY);
    dup2(devnull, 0);
    signal(SIGINT, SIG_DFL);
    putenv(env_xdg.data());
    std::vector<char*> cargv;
    for (auto& a : argv) cargv.push_back(a.data());
    cargv.push_back(nullptr);
    execv(cargv[0], cargv.data());
    _exit(127);
  }
  close(out[1]);
  close(err[1]);
  s.out = out[0];
  s.err = err[0];
  return s;
}

// Reads fd until `needle` appears (or EOF / timeout); returns what was read.
std::string readUntil(int fd, const std::string& needle, int timeout_ms) {
  std::string got;
  auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
  char buf[4096];
  while (got.find(needle) == std::string::npos && Clock::now() < deadline) {
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, 100) <= 0) continue;
    ssize_t n = read(fd, buf, sizeof buf);
    if (n <= 0) break;
    got.append(buf, static_cast<size_t>(n));
  }
  return got;
}

int waitExit(pid_t pid, int timeout_s) {
  int status = 0;
  if (waitUntil([&] { return waitpid(pid, &status, WNOHANG) == pid; },
                std::chrono::seconds(timeout_s))) {
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }
  kill(pid, SIGKILL);
  waitpid(pid, nullptr, 0);
  return -1;
}

TEST_F(CliTest, CtrlCStopsTheJobAndKeepsStreaming) {
  loginAdmin();
  Spawned s =
      spawnCli({"run", "--", "sh", "-c",
                "trap 'echo got TERM; exit 5' TERM; echo ready; while :; do sleep 0.1; done"},
               xdg_);
  ASSERT_GT(s.pid, 0);
  std::string out = readUntil(s.out, "ready\n", 20000);
  ASSERT_EQ(out, "ready\n");
  kill(s.pid, SIGINT);
  // The job's own reaction to SIGTERM still arrives, and its status becomes ours.
  out += readUntil(s.out, "got TERM\n", 20000);
  // (sh may also report its `sleep` child being terminated: the whole job gets SIGTERM.)
  EXPECT_EQ(out.rfind("ready\n", 0), 0u) << out;
  EXPECT_GE(out.size(), 9u);
  EXPECT_EQ(out.substr(out.size() - 9), "got TERM\n") << out;
  EXPECT_EQ(waitExit(s.pid, 30), 5);
  std::string err = readUntil(s.err, "\n\n", 100);
  EXPECT_NE(err.find("stopping job"), std::string::npos) << err;
  close(s.out);
  close(s.err);
}

TEST_F(CliTest, SecondCtrlCDetaches) {
  loginAdmin();
  Spawned s = spawnCli(
      {"run", "--", "sh", "-c", "trap '' TERM; echo ready; while :; do sleep 0.1; done"}, xdg_);
  ASSERT_GT(s.pid, 0);
  ASSERT_EQ(readUntil(s.out, "ready\n", 20000), "ready\n");
  kill(s.pid, SIGINT);
  std::string err = readUntil(s.err, "detach)\n", 10000);
  kill(s.pid, SIGINT);
  err += readUntil(s.err, "logs -f ", 10000);
  err += readUntil(s.err, "\n", 2000);
  EXPECT_EQ(waitExit(s.pid, 10), 130);
  size_t at = err.find("detached; reattach with: jobworker logs -f ");
  ASSERT_NE(at, std::string::npos) << err;
  std::string id = err.substr(at + std::strlen("detached; reattach with: jobworker logs -f "), 36);
  EXPECT_TRUE(isUuid(id)) << id;
  // The job ignores SIGTERM: the server's grace period ends it with SIGKILL.
  auto st = waitEnded(id);
  ASSERT_TRUE(st);
  EXPECT_EQ(st->getValue<int>("signal"), 9);
  close(s.out);
  close(s.err);
}

// ---- start, status, list, stop, logs ------------------------------------------------------------

TEST_F(CliTest, StartStatusListStopLogs) {
  loginAdmin();
  CmdResult start = cli({"start", "--", "sh", "-c", "echo started; exec sleep 60"});
  ASSERT_EQ(start.exit_code, 0) << start.err;
  ASSERT_EQ(start.out.size(), 37u) << start.out;  // the id and a newline, nothing else
  std::string id = start.out.substr(0, 36);
  ASSERT_TRUE(isUuid(id)) << id;
  std::string short_id = id.substr(0, 8);

  CmdResult status = cli({"status", short_id});
  ASSERT_EQ(status.exit_code, 0) << status.err;
  EXPECT_NE(status.out.find("ID:"), std::string::npos);
  EXPECT_NE(status.out.find(id), std::string::npos) << status.out;
  EXPECT_NE(status.out.find("running"), std::string::npos) << status.out;

  CmdResult list = cli({"list"});
  ASSERT_EQ(list.exit_code, 0) << list.err;
  EXPECT_EQ(list.out.rfind("ID ", 0), 0u) << list.out;
  EXPECT_NE(list.out.find(short_id + "   admin   running"), std::string::npos) << list.out;
  CmdResult running = cli({"list", "--all", "--state", "running", "--quiet"});
  ASSERT_EQ(running.exit_code, 0) << running.err;
  EXPECT_NE(running.out.find(id + "\n"), std::string::npos) << running.out;

  // Wait for the first line so `logs` has something to show.
  auto deadline = Clock::now() + std::chrono::seconds(20);
  CmdResult logs;
  do {
    logs = cli({"logs", id.substr(0, 12)});
  } while (logs.out.empty() && Clock::now() < deadline);
  EXPECT_EQ(logs.exit_code, 0) << logs.err;
  EXPECT_EQ(logs.out, "started\n");

  CmdResult stop = cli({"stop", "--grace", "2s", short_id});
  ASSERT_EQ(stop.exit_code, 0) << stop.err;
  EXPECT_EQ(stop.out, id + "\n");
  auto st = waitEnded(id);
  ASSERT_TRUE(st);
  EXPECT_EQ(st->getValue<std::string>("state"), "killed");
  EXPECT_EQ(st->getValue<int>("signal"), 15);
  CmdResult again = cli({"stop", id});
  EXPECT_EQ(again.exit_code, 1);
  EXPECT_NE(again.err.find("has already finished"), std::string::npos) << again.err;
  CmdResult stopped = cli({"list", "--state", "killed", "-q"});
  EXPECT_NE(stopped.out.find(id), std::string::npos);
}

TEST_F(CliTest, OutputJsonParses) {
  loginAdmin();
  CmdResult start = cli(
      {"start", "--output", "json", "--env", "GREETING=hello", "--", "sh", "-c", "echo $GREETING"});
  ASSERT_EQ(start.exit_code, 0) << start.err;
  auto job = parseObject(start.out);
  std::string id = job->getValue<std::string>("id");
  EXPECT_TRUE(isUuid(id));
  EXPECT_EQ(job->getArray("command")->size(), 3u);
  auto st = waitEnded(id);
  ASSERT_TRUE(st);
  EXPECT_EQ(st->getValue<int>("exit_code"), 0);
  CmdResult list = cli({"-o", "json", "list"});
  ASSERT_EQ(list.exit_code, 0) << list.err;
  auto jobs = parseObject(list.out)->getArray("jobs");
  ASSERT_TRUE(jobs);
  bool found = false;
  for (size_t i = 0; i < jobs->size(); ++i) {
    found |= jobs->getObject(static_cast<unsigned>(i))->getValue<std::string>("id") == id;
  }
  EXPECT_TRUE(found) << list.out;
  EXPECT_EQ(cli({"logs", id}).out, "hello\n");
}

TEST_F(CliTest, FollowReceivesASlowJobsOutputInOrder) {
  loginAdmin();
  std::string id = startSlowPrinter(30);
  ASSERT_FALSE(id.empty());
  auto t0 = Clock::now();
  CmdResult follow = cli({"logs", "-f", id.substr(0, 8)});
  EXPECT_EQ(follow.exit_code, 0) << follow.err;
  EXPECT_EQ(follow.out, numberedLines(30));
  // It really waited for the job rather than returning what existed at the start.
  EXPECT_GE(Clock::now() - t0, std::chrono::seconds(2));
}

TEST_F(CliTest, FollowResumesExactlyAfterTheFrontendIsKilled) {
  loginAdmin();
  std::string id = startSlowPrinter(60);
  ASSERT_FALSE(id.empty());
  pid_t old_frontend = d().frontendPid();
  ASSERT_GT(old_frontend, 0);

  // The follower writes to files so that the test sees how far it got.
  const std::string out_path = xdg_ + "/follow.out", err_path = xdg_ + "/follow.err";
  pid_t follower = spawnLogged({binary("jobworker"), "logs", "-f", id}, {"XDG_CONFIG_HOME=" + xdg_},
                               out_path, err_path);
  ASSERT_GT(follower, 0);
  // Kill mid-stream: once the follower has printed a part, not all, of the 60 lines.
  bool streaming =
      waitUntil([&] { return readFile(out_path).find("line 10\n") != std::string::npos; },
                std::chrono::seconds(10));
  EXPECT_TRUE(streaming) << "the follower printed: " << readFile(out_path) << readFile(err_path);
  ASSERT_EQ(kill(old_frontend, SIGKILL), 0);
  CmdResult follow;
  follow.exit_code = waitExit(follower, 60);
  follow.out = readFile(out_path);
  follow.err = readFile(err_path);

  EXPECT_EQ(follow.exit_code, 0) << follow.err;
  EXPECT_EQ(follow.out, numberedLines(60));
  // The drop really happened mid-stream and was resumed.
  EXPECT_NE(follow.err.find("interrupted; reconnecting"), std::string::npos) << follow.err;
  EXPECT_NE(d().frontendPid(), old_frontend);
  EXPECT_EQ(cli({"logs", id}).out, numberedLines(60));
}

// "2026-12-02T03:31:07.123Z line 7" -> "line 7"; empty when the line has no such stamp.
std::string unstamped(const std::string& text) {
  std::string out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    bool stamped = line.size() >= 25 && line[4] == '-' && line[10] == 'T' && line[23] == 'Z' &&
                   line[24] == ' ';
    if (!stamped) return "";
    out += line.substr(25) + "\n";
  }
  return out;
}

TEST_F(CliTest, LogsTailSinceAndTimestamps) {
  loginAdmin();
  CmdResult start =
      cli({"start", "--", "sh", "-c", "echo one; echo two; sleep 1.5; echo three; echo four"});
  ASSERT_EQ(start.exit_code, 0) << start.err;
  std::string id = start.out.substr(0, 36);
  waitEnded(id);
  EXPECT_EQ(cli({"logs", "--tail", "2", id}).out, "three\nfour\n");
  EXPECT_EQ(cli({"logs", "-n", "0", id}).out, "");
  EXPECT_EQ(cli({"logs", "--tail", "99", id}).out, "one\ntwo\nthree\nfour\n");
  // The issue's case: the last 3 of 1,000 lines, exactly.
  CmdResult thousand = cli({"start", "--", "seq", "1000"});
  ASSERT_EQ(thousand.exit_code, 0) << thousand.err;
  std::string seq_id = thousand.out.substr(0, 36);
  waitEnded(seq_id);
  EXPECT_EQ(cli({"logs", "--tail", "3", seq_id}).out, "998\n999\n1000\n");
  CmdResult stamped = cli({"logs", "--timestamps", id});
  ASSERT_EQ(unstamped(stamped.out), "one\ntwo\nthree\nfour\n") << stamped.out;
  // --since the stamp of "three" (1.5 s after "two"): the lines from there.
  std::string three_at = stamped.out.substr(stamped.out.find("three") - 25, 24);
  EXPECT_EQ(cli({"logs", "--since", three_at, id}).out, "three\nfour\n") << three_at;
  EXPECT_EQ(cli({"logs", "--since", "1h", id}).out, "one\ntwo\nthree\nfour\n");
  EXPECT_EQ(cli({"logs", "--since", "2030-01-01T00:00:00Z", id}).out, "");
  CmdResult both = cli({"logs", "-t", "--tail", "1", id});
  EXPECT_EQ(unstamped(both.out), "four\n") << both.out;
  // Bad values: a usage error from the CLI, a 400 from the API.
  EXPECT_EQ(cli({"logs", "--tail", "x", id}).exit_code, 2);
  CmdResult bad_since = cli({"logs", "--since", "yesterday", id});
  EXPECT_NE(bad_since.exit_code, 0);
  EXPECT_NE(bad_since.err.find("since"), std::string::npos) << bad_since.err;
  HttpResponse mixed = https(d(), "GET", "/v1/jobs/" + id + "/logs?offset=3&tail_lines=1", "",
                             parseObject(readFile(configFile()))->getValue<std::string>("token"));
  EXPECT_EQ(mixed.status, 400) << mixed.body;
}

TEST_F(CliTest, TimestampedFollowResumesAtTheRightByteAfterTheFrontendIsKilled) {
  loginAdmin();
  std::string id = startSlowPrinter(60);
  ASSERT_FALSE(id.empty());
  pid_t old_frontend = d().frontendPid();
  const std::string out_path = xdg_ + "/stamped.out", err_path = xdg_ + "/stamped.err";
  pid_t follower =
      spawnLogged({binary("jobworker"), "logs", "-f", "--timestamps", "--tail", "1000", id},
                  {"XDG_CONFIG_HOME=" + xdg_}, out_path, err_path);
  ASSERT_TRUE(waitUntil([&] { return readFile(out_path).find(" line 10\n") != std::string::npos; },
                        std::chrono::seconds(10)))
      << readFile(out_path) << readFile(err_path);
  ASSERT_EQ(kill(old_frontend, SIGKILL), 0);
  EXPECT_EQ(waitExit(follower, 60), 0) << readFile(err_path);
  std::string out = readFile(out_path);
  EXPECT_EQ(unstamped(out), numberedLines(60)) << out;
  EXPECT_NE(readFile(err_path).find("interrupted; reconnecting"), std::string::npos);
}

TEST_F(CliTest, FollowSaysWhyWhenItsSessionIsRevoked) {
  loginAdmin();
  std::string token = parseObject(readFile(configFile()))->getValue<std::string>("token");
  std::string id = startSlowPrinter(200);
  ASSERT_FALSE(id.empty());
  const std::string out_path = xdg_ + "/follow.out", err_path = xdg_ + "/follow.err";
  pid_t follower = spawnLogged({binary("jobworker"), "logs", "-f", id}, {"XDG_CONFIG_HOME=" + xdg_},
                               out_path, err_path);
  ASSERT_GT(follower, 0);
  ASSERT_TRUE(waitUntil([&] { return readFile(out_path).find("line 5\n") != std::string::npos; },
                        std::chrono::seconds(10)));
  // The session ends under the stream (as a logout elsewhere, or an administrator, would do).
  EXPECT_EQ(https(d(), "POST", "/v1/logout", "", token).status, 204);
  int code = waitExit(follower, 30);
  std::string out = readFile(out_path), err = readFile(err_path);
  EXPECT_NE(code, 0);
  EXPECT_NE(err.find("session expired or revoked"), std::string::npos) << err;
  EXPECT_NE(err.find("jobworker login --server " + d().url()), std::string::npos) << err;
  // Whole lines only, and fewer than the job will print: it ended early, cleanly.
  ASSERT_FALSE(out.empty());
  EXPECT_EQ(out.back(), '\n');
  EXPECT_LT(out.size(), numberedLines(200).size());
  EXPECT_EQ(numberedLines(200).rfind(out, 0), 0u);
  std::string admin = login(d(), "admin", d().adminPassword());
  https(d(), "POST", "/v1/jobs/" + id + "/stop", "{}", admin);
}

TEST_F(CliTest, AmbiguousPrefixIsReported) {
  std::string token = login(d(), "admin", d().adminPassword());
  // 17 jobs: two of them must share their first hex digit.
  for (int i = 0; i < 17; ++i) startJob(d(), token, R"({"command":["true"]})");
  loginAdmin();
  CmdResult list = cli({"list", "--all", "-q"});
  ASSERT_EQ(list.exit_code, 0);
  std::map<char, int> first;
  for (size_t at = 0; at < list.out.size(); at = list.out.find('\n', at) + 1) first[list.out[at]]++;
  char shared = 0;
  for (const auto& [c, n] : first) {
    if (n > 1) shared = c;
  }
  ASSERT_NE(shared, 0);
  CmdResult r = cli({"status", std::string(1, shared)});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("job prefix '" + std::string(1, shared) + "' is ambiguous"),
            std::string::npos)
      << r.err;
}

// ---- errors -------------------------------------------------------------------------------------

TEST_F(CliTest, NoServerIsConnectionRefused) {
  std::string url = "https://127.0.0.1:" + std::to_string(freePort());
  CmdResult r = cli(
      {"login", "--server", url, "--ca-file", d().caFile(), "--user", "admin", "--password-stdin"},
      "x\n");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.err.rfind("jobworker: cannot reach " + url + ": connection refused", 0), 0u) << r.err;
  EXPECT_EQ(lineCount(r.err), 1u) << r.err;
  CmdResult run =
      cli({"run", "--", "true"}, "", {"JOBWORKER_SERVER=" + url, "JOBWORKER_TOKEN=jw_x"});
  EXPECT_EQ(run.exit_code, 125);
  EXPECT_NE(run.err.find("connection refused"), std::string::npos) << run.err;
}

TEST_F(CliTest, WrongPassword) {
  CmdResult r = cli({"login", "--server", d().url(), "--ca-file", d().caFile(), "--user", "bob",
                     "--password-stdin"},
                    "not-bobs-password\n");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.err, "jobworker: login failed: wrong user name or password\n");
  EXPECT_EQ(access(configFile().c_str(), F_OK), -1);  // nothing stored
  CmdResult ok = cli({"login", "--server", d().url(), "--ca-file", d().caFile(), "--user", "bob",
                      "--password-stdin"},
                     "bob-password-1\n");
  EXPECT_EQ(ok.exit_code, 0) << ok.err;
  EXPECT_NE(cli({"whoami"}).out.find("role:   user"), std::string::npos);
}

TEST_F(CliTest, UntrustedCertificate) {
  CmdResult r = cli({"login", "--server", d().url(), "--user", "admin", "--password-stdin"},
                    d().adminPassword() + "\n");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.err.rfind("jobworker: certificate not trusted", 0), 0u) << r.err;
  EXPECT_NE(r.err.find("pass --ca-file"), std::string::npos) << r.err;
  EXPECT_EQ(lineCount(r.err), 1u) << r.err;
  EXPECT_EQ(access(configFile().c_str(), F_OK), -1);
}

// A TLS server (openssl s_server) whose certificate, signed by a test CA, names `san`.
class TlsServer {
 public:
  explicit TlsServer(const std::string& san) {
    dir_ = makeTempDir("jwtls");
    auto sh = [&](const std::string& cmd) {
      CmdResult r = run({"sh", "-c", "cd " + dir_ + " && " + cmd});
      EXPECT_EQ(r.exit_code, 0) << cmd << ": " << r.err;
    };
    const std::string ec = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
    sh("openssl req -x509 " + ec + " -keyout ca.key -out ca.pem -days 2 -subj /CN=jw-test-ca");
    sh("openssl req " + ec + " -keyout leaf.key -out leaf.csr -subj /CN=jw-test-leaf");
    sh("printf 'subjectAltName=" + san +
       "\\nbasicConstraints=CA:FALSE\\n' > ext && "
       "openssl x509 -req -in leaf.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 "
       "-extfile ext -out leaf.pem");
    port_ = freePort();
    pid_ = fork();
    if (pid_ == 0) {
      int devnull = open("/dev/null", O_RDWR);
      dup2(devnull, 0);
      dup2(devnull, 1);
      dup2(devnull, 2);
      std::string accept = "127.0.0.1:" + std::to_string(port_);
      std::string cert = dir_ + "/leaf.pem", key = dir_ + "/leaf.key";
      execlp("openssl", "openssl", "s_server", "-accept", accept.c_str(), "-cert", cert.c_str(),
             "-key", key.c_str(), "-www", "-quiet", static_cast<char*>(nullptr));
      _exit(127);
    }
    // Ready when it accepts connections.
    waitUntil([&] { return accepting(); }, std::chrono::seconds(10));
  }
  ~TlsServer() {
    if (pid_ > 0) {
      kill(pid_, SIGTERM);
      waitpid(pid_, nullptr, 0);
    }
    removeTree(dir_);
  }
  std::string url() const { return "https://127.0.0.1:" + std::to_string(port_); }
  std::string caFile() const { return dir_ + "/ca.pem"; }

 private:
  bool accepting() const {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(static_cast<uint16_t>(port_));
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bool ok = fd >= 0 && connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0;
    if (fd >= 0) close(fd);
    return ok;
  }

  std::string dir_;
  int port_ = 0;
  pid_t pid_ = -1;
};

TEST_F(CliTest, CertificateMustNameTheServerAddress) {
  // s_server -www answers GET requests only: whoami is one.
  auto whoami = [&](const TlsServer& server) {
    return cli({"whoami"}, "",
               {"JOBWORKER_SERVER=" + server.url(), "JOBWORKER_TOKEN=jw_x",
                "JOBWORKER_CA_FILE=" + server.caFile()},
               60);
  };
  // Signed by the CA we pass, but issued for another name: refused during the handshake.
  TlsServer wrong_name("DNS:otherhost.example");
  CmdResult r = whoami(wrong_name);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(
      r.err.rfind("jobworker: certificate of " + wrong_name.url() + " is not valid for '127.0.0.1'",
                  0),
      0u)
      << r.err;
  // The same set-up with an IP SAN for 127.0.0.1 passes TLS (and then finds no jobworker API).
  TlsServer right_ip("IP:127.0.0.1");
  CmdResult ok = whoami(right_ip);
  EXPECT_EQ(ok.exit_code, 1);
  EXPECT_NE(ok.err.find("sent an unexpected answer"), std::string::npos) << ok.err;
  EXPECT_EQ(lineCount(ok.err), 1u) << ok.err;
}

TEST_F(CliTest, UnknownJob) {
  loginAdmin();
  CmdResult full = cli({"status", "00000000-0000-4000-8000-000000000000"});
  EXPECT_EQ(full.exit_code, 1);
  EXPECT_EQ(full.err.rfind("jobworker: job 00000000-0000-4000-8000-000000000000 not found", 0), 0u)
      << full.err;
  CmdResult logs = cli({"logs", "-f", "00000000-0000-4000-8000-000000000000"});
  EXPECT_EQ(logs.exit_code, 1);
  EXPECT_NE(logs.err.find("not found"), std::string::npos) << logs.err;
  CmdResult stop = cli({"stop", "zzzz"});
  EXPECT_EQ(stop.exit_code, 1);
  EXPECT_NE(stop.err.find("not found"), std::string::npos) << stop.err;
}

TEST_F(CliTest, UsageErrors) {
  loginAdmin();
  CmdResult start = cli({"start", "sh", "-c", "true"});
  EXPECT_EQ(start.exit_code, 2);
  EXPECT_EQ(start.err,
            "jobworker: missing '--' before the program 'sh': use 'jobworker start [FLAGS] -- PROG "
            "[ARGS...]'\n");
  CmdResult run = cli({"run", "sh", "-c", "true"});
  EXPECT_EQ(run.exit_code, 125);
  EXPECT_NE(run.err.find("missing '--'"), std::string::npos);
  CmdResult id = cli({"logs", "-f"});
  EXPECT_EQ(id.exit_code, 2);
  EXPECT_NE(id.err.find("missing job ID"), std::string::npos);
  CmdResult flag = cli({"list", "--colour"});
  EXPECT_EQ(flag.exit_code, 2);
  EXPECT_NE(flag.err.find("unknown flag '--colour'"), std::string::npos);
  // Nothing was started by the refused commands.
  EXPECT_EQ(cli({"list", "-q", "--state", "running"}).exit_code, 0);
}

TEST_F(CliTest, NotLoggedIn) {
  CmdResult r = cli({"list"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.err, "jobworker: not logged in: run 'jobworker login --server https://HOST:PORT'\n");
  CmdResult run = cli({"run", "--", "true"});
  EXPECT_EQ(run.exit_code, 125);
}

TEST_F(CliTest, HelpEverywhere) {
  for (const char* cmd :
       {"login", "logout", "whoami", "start", "run", "stop", "status", "list", "logs"}) {
    CmdResult r = cli({cmd, "--help"});
    EXPECT_EQ(r.exit_code, 0) << cmd;
    EXPECT_EQ(r.out.rfind(std::string("Usage: jobworker ") + cmd, 0), 0u) << r.out;
  }
  CmdResult top = cli({"--help"});
  EXPECT_EQ(top.exit_code, 0);
  EXPECT_NE(top.out.find("JOBWORKER_TOKEN"), std::string::npos);
  CmdResult v = cli({"--version"});
  EXPECT_EQ(v.out.rfind("jobworker ", 0), 0u);
}

}  // namespace
}  // namespace jw::test
