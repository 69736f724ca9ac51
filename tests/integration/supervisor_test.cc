// Integration tests of jobworkerd driven directly through the protocol: the real daemon spawns
// relay_frontend (via --frontend), which relays frames to a SOCK_SEQPACKET socket this test
// listens on. Runs in the integration test process (root).
#include <fcntl.h>
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
#include <deque>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <sstream>
#include <thread>

#include "common/protocol/codec.h"
#include "common/protocol/control_codec.h"
#include "common/protocol/messages.h"
#include "common/sanitizer.h"
#include "tests/integration/daemon.h"

namespace jw::test {
namespace {

using namespace jw::protocol;
using Clock = std::chrono::steady_clock;

struct Frame {
  FrameHeader h;
  std::string payload;
};

// `jobworker` must exist for a root jobworkerd; install-deps creates it, a bare machine may not.
void ensureFrontendAccount() {
  if (getpwnam("jobworker") != nullptr) return;
  CmdResult r = run({"/usr/sbin/useradd", "--system", "--no-create-home", "--shell",
                     "/usr/sbin/nologin", "jobworker"});
  ASSERT_EQ(r.exit_code, 0) << "useradd jobworker: " << r.err;
}

// One jobworkerd whose frontend is the relay, and the test's end of the relay.
class RelayDaemon {
 public:
  // prefix: e.g. setpriv to run jobworkerd as another user, who then runs staged copies of the
  // binaries (the build tree may be out of that user's reach).
  explicit RelayDaemon(const std::string& config_text = "",
                       const std::vector<std::string>& prefix = {}) {
    if (!prefix.empty()) staged_ = std::make_unique<StagedBinaries>();
    auto bin = [&](const std::string& name) {
      return staged_ ? staged_->path(name) : binary(name);
    };
    dir_ = makeTempDir("jwsup");
    chmod(dir_.c_str(), prefix.empty() ? 0755 : 0777);
    state_dir_ = dir_ + "/state";
    sock_path_ = dir_ + "/relay.sock";
    log_path_ = dir_ + "/jobworkerd.log";
    listen_fd_ = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::strcpy(a.sun_path, sock_path_.c_str());
    EXPECT_EQ(bind(listen_fd_, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    EXPECT_EQ(listen(listen_fd_, 8), 0);
    chmod(sock_path_.c_str(), 0666);
    std::vector<std::string> argv = prefix;
    argv.insert(argv.end(),
                {bin("jobworkerd"), "--dev", "--state-dir", state_dir_, "--listen",
                 "127.0.0.1:" + std::to_string(freePort()), "--frontend", bin("relay_frontend")});
    if (!config_text.empty()) {
      std::ofstream(dir_ + "/jobworkerd.conf") << config_text;
      argv.insert(argv.end(), {"--config", dir_ + "/jobworkerd.conf"});
    }
    pid_ = spawnDaemon(argv);
    EXPECT_TRUE(acceptFrontend()) << log();
  }

  ~RelayDaemon() {
    if (pid_ > 0) {
      kill(pid_, SIGTERM);
      if (waitExit(20'000) < 0) {
        kill(pid_, SIGKILL);
        waitpid(pid_, nullptr, 0);
      }
    }
    if (conn_ >= 0) close(conn_);
    if (listen_fd_ >= 0) close(listen_fd_);
    removeTree(dir_);
  }

  pid_t spawnDaemon(const std::vector<std::string>& argv) {
    return spawnLogged(argv, {"JW_RELAY_SOCKET=" + sock_path_}, log_path_);
  }

  // Accepts the relay's connection and answers Ready. The supervisor sends nothing first: no
  // user table, no session table (they stay in the supervisor).
  bool acceptFrontend(int timeout_ms = 15'000) {
    if (conn_ >= 0) close(conn_);
    conn_ = -1;
    pollfd p{listen_fd_, POLLIN, 0};
    if (poll(&p, 1, timeout_ms) != 1) return false;
    conn_ = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (conn_ < 0) return false;
    stash_.clear();
    sendRaw(encodeReady(0, {}));
    return true;
  }

  // The password jobworkerd --dev gave admin, or the one addUser() set.
  std::string passwordOf(const std::string& user) const {
    if (user != "admin") return "password-of-" + user;
    std::string pw = readFile(state_dir_ + "/admin-password");
    while (!pw.empty() && (pw.back() == '\n' || pw.back() == '\r')) pw.pop_back();
    return pw;
  }

  Frame login(const std::string& user, const std::string& password,
              const std::string& address = "127.0.0.1") {
    return call([&](uint32_t id) {
      return encodeLogin(id, LoginRequest{user, password, address});
    });
  }

  // The session token of `user`, logging in once with its password. A user that cannot log in
  // (unknown, say) gets a token the supervisor never minted, which it must refuse.
  Token tokenFor(const std::string& user) {
    if (auto it = tokens_.find(user); it != tokens_.end()) return it->second;
    Frame f = login(user, passwordOf(user));
    Token t;
    if (f.h.type == MsgType::kLoginReply) {
      auto r = decodeLoginReplyPayload(f.payload);
      EXPECT_TRUE(r.ok());
      if (r) t = r->token;
    } else {
      for (size_t i = 0; i < t.bytes.size(); i++)
        t.bytes[i] = static_cast<uint8_t>(user.size() + i);
    }
    tokens_[user] = t;
    return t;
  }
  void forgetToken(const std::string& user) { tokens_.erase(user); }

  void sendRaw(const std::string& frame) {
    ssize_t n = send(conn_, frame.data(), frame.size(), MSG_NOSIGNAL);
    EXPECT_EQ(n, static_cast<ssize_t>(frame.size())) << std::strerror(errno);
  }

  // The next frame from the supervisor (stashed ones first), nullopt on timeout or EOF.
  std::optional<Frame> recvAny(int timeout_ms) {
    std::string buf(kMaxFrame + 1, '\0');
    pollfd p{conn_, POLLIN, 0};
    if (poll(&p, 1, timeout_ms) != 1) return std::nullopt;
    ssize_t n = recv(conn_, buf.data(), buf.size(), 0);
    if (n <= 0) {
      closed_ = true;
      return std::nullopt;
    }
    buf.resize(static_cast<size_t>(n));
    std::string_view payload;
    auto h = decodeHeader(buf, &payload);
    EXPECT_TRUE(h.ok()) << "supervisor sent a malformed frame";
    if (!h) return std::nullopt;
    return Frame{h.value(), std::string(payload)};
  }

  // Every frame of the reply to `id` (until one without kFlagMore).
  std::vector<Frame> await(uint32_t id, int timeout_ms = 20'000) {
    std::vector<Frame> out;
    auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
    for (;;) {
      auto& q = stash_[id];
      while (!q.empty()) {
        out.push_back(std::move(q.front()));
        q.pop_front();
        if (!(out.back().h.flags & kFlagMore)) return out;
      }
      int left = static_cast<int>(
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count());
      if (left <= 0) break;
      auto f = recvAny(left);
      if (!f) break;
      stash_[f->h.request_id].push_back(std::move(*f));
    }
    ADD_FAILURE() << "no complete reply to request " << id;
    return out;
  }

  Frame call(const std::function<std::string(uint32_t)>& encode) {
    uint32_t id = next_id_++;
    sendRaw(encode(id));
    auto frames = await(id);
    if (frames.size() != 1) {
      ADD_FAILURE() << "expected one reply frame, got " << frames.size();
      return Frame{{MsgType::kOk, 0, 0}, ""};
    }
    return frames[0];
  }
  uint32_t nextId() { return next_id_++; }

  // --- typed helpers ---
  Frame start(const std::string& user, std::vector<std::string> argv,
              std::vector<std::string> env = {}, const std::string& cwd = "",
              OutputMode output = OutputMode::kMerged, uint32_t timeout_ms = 0) {
    JobStartRequest r;
    r.token = tokenFor(user);
    r.argv = std::move(argv);
    r.env = std::move(env);
    r.cwd = cwd;
    r.output = output;
    r.timeout_ms = timeout_ms;
    return call([&](uint32_t id) { return encodeJobStart(id, r); });
  }
  // Starts a job that must start; returns its status.
  JobStatus mustStart(const std::string& user, std::vector<std::string> argv,
                      std::vector<std::string> env = {}, OutputMode output = OutputMode::kMerged,
                      uint32_t timeout_ms = 0) {
    return status(start(user, std::move(argv), std::move(env), "", output, timeout_ms));
  }
  Frame get(const std::string& user, const std::string& job_id) {
    JobRef r{tokenFor(user), job_id};
    return call([&](uint32_t id) { return encodeJobGet(id, r); });
  }
  Frame stop(const std::string& user, const std::string& job_id,
             std::optional<uint32_t> grace_ms = std::nullopt) {
    JobStopRequest r{tokenFor(user), job_id, grace_ms.has_value(), grace_ms.value_or(0)};
    return call([&](uint32_t id) { return encodeJobStop(id, r); });
  }
  Frame read(const std::string& user, const std::string& job_id, uint64_t offset, bool follow,
             Stream stream = Stream::kStdout, uint32_t max = kMaxChunk) {
    OutputReadRequest r{tokenFor(user), job_id, stream, offset, max, follow};
    return call([&](uint32_t id) { return encodeOutputRead(id, r); });
  }
  std::vector<JobStatus> list(const std::string& user, bool all, uint8_t state = 0,
                              size_t* frames_out = nullptr) {
    JobListRequest r{tokenFor(user), all, state};
    uint32_t id = nextId();
    sendRaw(encodeJobList(id, r));
    auto frames = await(id);
    std::vector<JobStatus> jobs;
    for (const auto& f : frames) {
      EXPECT_EQ(f.h.type, MsgType::kJobListReply);
      auto l = decodeJobListReplyPayload(f.payload);
      EXPECT_TRUE(l.ok());
      if (l) jobs.insert(jobs.end(), l->jobs.begin(), l->jobs.end());
    }
    if (frames_out) *frames_out = frames.size();
    return jobs;
  }

  static JobStatus status(const Frame& f) {
    if (f.h.type != MsgType::kJobStatus) {
      auto e = decodeErrorReplyPayload(f.payload);
      ADD_FAILURE() << "expected JobStatus, got " << msgTypeName(static_cast<uint16_t>(f.h.type))
                    << (e ? ": " + e->message : "");
      return {};
    }
    auto s = decodeJobStatusPayload(f.payload);
    EXPECT_TRUE(s.ok());
    return s ? s.value() : JobStatus{};
  }
  static ErrorReply error(const Frame& f) {
    if (f.h.type != MsgType::kErrorReply) {
      ADD_FAILURE() << "expected ErrorReply, got " << msgTypeName(static_cast<uint16_t>(f.h.type));
      return {};
    }
    auto e = decodeErrorReplyPayload(f.payload);
    EXPECT_TRUE(e.ok());
    return e ? e.value() : ErrorReply{};
  }
  static OutputChunk chunk(const Frame& f) {
    EXPECT_EQ(f.h.type, MsgType::kOutputChunk);
    auto c = decodeOutputChunkPayload(f.payload);
    EXPECT_TRUE(c.ok());
    return c ? c.value() : OutputChunk{};
  }

  // Polls until the job's final state is published.
  JobStatus waitEnded(const std::string& user, const std::string& job_id, int timeout_ms = 20'000) {
    JobStatus s;
    bool ended = waitUntil(
        [&] {
          s = status(get(user, job_id));
          return s.state != JobState::kRunning;
        },
        std::chrono::milliseconds(timeout_ms));
    if (!ended) ADD_FAILURE() << "job " << job_id << " still running after " << timeout_ms << " ms";
    return s;
  }

  // Follows a job's log from 0 to eof.
  std::string readAll(const std::string& user, const std::string& job_id,
                      Stream stream = Stream::kStdout) {
    std::string out;
    for (;;) {
      Frame f = read(user, job_id, out.size(), true, stream);
      if (f.h.type != MsgType::kOutputChunk) {
        ADD_FAILURE() << "reading " << job_id << ": " << error(f).message;
        return out;
      }
      OutputChunk c = chunk(f);
      EXPECT_EQ(c.offset, out.size());
      out += c.data;
      if (c.eof) return out;
    }
  }

  // `jobworker-admin user add` then SIGHUP; waits for the reload's log line.
  void addUser(const std::string& name, const std::string& role) {
    size_t loads = countLoads();
    CmdResult r =
        run({binary("jobworker-admin"), "user", "add", "--users-file", state_dir_ + "/users", name,
             "--role", role, "--run-as", "nobody", "--password-stdin"},
            "password-of-" + name + "\n");
    ASSERT_EQ(r.exit_code, 0) << r.err;
    kill(pid_, SIGHUP);
    ASSERT_TRUE(waitLoads(loads + 1)) << "no reload after SIGHUP";
    forgetToken(name);
  }

  // How many times the users file was loaded, from the log.
  size_t countLoads() const {
    std::string l = log();
    size_t n = 0;
    for (size_t at = l.find(" user(s) from "); at != std::string::npos;
         at = l.find(" user(s) from ", at + 1)) {
      n++;
    }
    return n;
  }
  bool waitLoads(size_t n, int timeout_ms = 10'000) {
    return waitUntil([&] { return countLoads() >= n; }, std::chrono::milliseconds(timeout_ms));
  }

  // The relay's connection ends (the supervisor killed it) within timeout.
  bool waitConnectionClosed(int timeout_ms) {
    auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
    while (Clock::now() < deadline) {
      closed_ = false;
      auto f = recvAny(100);
      if (closed_) return true;
      if (f) stash_[f->h.request_id].push_back(std::move(*f));
    }
    return false;
  }

  int waitExit(int timeout_ms) {
    int st = 0;
    if (!waitUntil([&] { return waitpid(pid_, &st, WNOHANG) == pid_; },
                   std::chrono::milliseconds(timeout_ms))) {
      return -1;
    }
    pid_ = -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  }

  long vmHwmKiB() const {
    std::string kib = procStatusField(pid_, "VmHWM");  // "1234 kB"
    return kib.empty() ? -1 : std::strtol(kib.c_str(), nullptr, 10);
  }

  std::string log() const { return readFile(log_path_); }
  size_t stashed(uint32_t id) {
    auto it = stash_.find(id);
    return it == stash_.end() ? 0 : it->second.size();
  }
  pid_t pid() const { return pid_; }
  const std::string& stateDir() const { return state_dir_; }
  const std::string& dir() const { return dir_; }

 private:
  std::unique_ptr<StagedBinaries> staged_;  // set when jobworkerd runs as another user
  std::string dir_, state_dir_, sock_path_, log_path_;
  int listen_fd_ = -1;
  int conn_ = -1;
  bool closed_ = false;
  pid_t pid_ = -1;
  uint32_t next_id_ = 1;
  std::map<std::string, Token> tokens_;
  std::map<uint32_t, std::deque<Frame>> stash_;
};

class SupervisorTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    ensureFrontendAccount();
    d_ = new RelayDaemon("stop_grace = 3s\nmax_timeout = 1h\n");
  }
  static void TearDownTestSuite() {
    delete d_;
    d_ = nullptr;
  }
  void TearDown() override {
    if (HasFailure()) std::fprintf(stderr, "--- jobworkerd log ---\n%s\n", d_->log().c_str());
  }
  static RelayDaemon* d_;
};
RelayDaemon* SupervisorTest::d_ = nullptr;

TEST_F(SupervisorTest, FrontendGetsItsCommandLineAndFds) {
  std::string log = d_->log();
  const std::string& state = d_->stateDir();
  EXPECT_NE(log.find("relay_frontend: argv: --channel-fd 3 --listen-fd 4 --tls-cert " + state +
                     "/server.pem --tls-key " + state + "/server.key --config " + d_->dir() +
                     "/jobworkerd.conf --run-as jobworker --dev (fd 4: listening socket)"),
            std::string::npos)
      << log;
  EXPECT_NE(log.find("jobworker login --server https://127.0.0.1:"), std::string::npos);
  EXPECT_NE(log.find("--ca-file " + state + "/ca.pem --user admin --password-stdin < " + state +
                     "/admin-password"),
            std::string::npos);
}

TEST_F(SupervisorTest, StartSequenceSendsNothingAndTheAdminCanLogIn) {
  // acceptFrontend() answered Ready without receiving anything: no hashes, no sessions.
  EXPECT_EQ(d_->stashed(0), 0u);
  Frame f = d_->login("admin", d_->passwordOf("admin"));
  ASSERT_EQ(f.h.type, MsgType::kLoginReply);
  auto lr = decodeLoginReplyPayload(f.payload);
  ASSERT_TRUE(lr.ok());
  EXPECT_EQ(lr->role, Role::kAdmin);
  Frame who = d_->call([&](uint32_t id) { return encodeSessionGet(id, SessionRef{lr->token}); });
  ASSERT_EQ(who.h.type, MsgType::kSessionInfo);
  auto info = decodeSessionInfoPayload(who.payload);
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->user, "admin");
  EXPECT_EQ(info->role, Role::kAdmin);
  Frame h = d_->call([](uint32_t id) { return encodeHealth(id, {}); });
  ASSERT_EQ(h.h.type, MsgType::kHealthReply);
  auto details = decodeHealthReplyPayload(h.payload);
  ASSERT_TRUE(details.ok());
  ASSERT_FALSE(details->details.empty());
  EXPECT_EQ(details->details[0].rfind("cgroups: ", 0), 0u);
}

TEST_F(SupervisorTest, ExecFailureIsAnErrorNotAJob) {
  size_t before = d_->list("admin", true).size();
  ErrorReply e = RelayDaemon::error(d_->start("admin", {"/nonexistent/program"}));
  EXPECT_EQ(e.code, ErrorCode::kExecFailed);
  EXPECT_EQ(e.sys_errno, ENOENT);
  e = RelayDaemon::error(d_->start("admin", {"jw-no-such-program-anywhere"}));
  EXPECT_EQ(e.code, ErrorCode::kExecFailed);
  EXPECT_EQ(e.sys_errno, ENOENT);
  // Outside /tmp: jobs get a private /tmp and would not see the file at all.
  std::string dir = "/var/tmp/jwsup-exec-XXXXXX";
  ASSERT_NE(mkdtemp(dir.data()), nullptr);
  chmod(dir.c_str(), 0755);
  std::string file = dir + "/not-executable.sh";
  std::ofstream(file) << "#!/bin/sh\necho should not run\n";
  chmod(file.c_str(), 0644);
  e = RelayDaemon::error(d_->start("admin", {file}));
  unlink(file.c_str());
  rmdir(dir.c_str());
  EXPECT_EQ(e.code, ErrorCode::kExecFailed);
  EXPECT_EQ(e.sys_errno, EACCES);
  EXPECT_NE(e.message.find("not-executable.sh"), std::string::npos) << e.message;
  EXPECT_EQ(d_->list("admin", true).size(), before) << "a failed exec left a job record";
}

TEST_F(SupervisorTest, BadRequestsAreRefusedWithReasons) {
  EXPECT_EQ(RelayDaemon::error(d_->start("admin", {})).code, ErrorCode::kBadRequest);
  EXPECT_EQ(RelayDaemon::error(d_->start("admin", {"/bin/true"}, {"BAD KEY=1"})).code,
            ErrorCode::kBadRequest);
  EXPECT_EQ(RelayDaemon::error(d_->start("admin", {"/bin/true"}, {}, "relative/dir")).code,
            ErrorCode::kBadRequest);
  ErrorReply e = RelayDaemon::error(d_->start("admin", {"/bin/true"}, {}, "/nonexistent-dir"));
  EXPECT_EQ(e.code, ErrorCode::kBadRequest);
  EXPECT_EQ(e.sys_errno, ENOENT);
  e = RelayDaemon::error(
      d_->start("admin", {"/bin/true"}, {}, "", OutputMode::kMerged, 2 * 3600 * 1000));
  EXPECT_EQ(e.code, ErrorCode::kBadRequest);
  EXPECT_NE(e.message.find("timeout"), std::string::npos);
  EXPECT_EQ(RelayDaemon::error(d_->start("mallory", {"/bin/true"})).code, ErrorCode::kUnauthorized);
  EXPECT_EQ(RelayDaemon::error(d_->get("admin", "00000000-0000-4000-8000-000000000000")).code,
            ErrorCode::kNotFound);
}

TEST_F(SupervisorTest, ExitCodesAndOutput) {
  JobStatus s = d_->mustStart("admin", {"/bin/sh", "-c", "echo hello; echo oops >&2; exit 3"});
  EXPECT_EQ(s.state, JobState::kRunning);
  EXPECT_EQ(s.owner, "admin");
  EXPECT_EQ(s.run_as, "nobody");
  EXPECT_GT(s.pid, 0);
  EXPECT_GT(s.created_at_ms, 0);
  JobStatus end = d_->waitEnded("admin", s.id);
  EXPECT_EQ(end.state, JobState::kExited);
  EXPECT_TRUE(end.has_exit_code);
  EXPECT_EQ(end.exit_code, 3);
  EXPECT_GE(end.ended_at_ms, end.started_at_ms);
  EXPECT_EQ(d_->readAll("admin", s.id), "hello\noops\n");
  EXPECT_EQ(end.output_bytes, 11u);

  JobStatus ok = d_->mustStart("admin", {"true"});
  JobStatus ok_end = d_->waitEnded("admin", ok.id);
  EXPECT_EQ(ok_end.state, JobState::kExited);
  EXPECT_EQ(ok_end.exit_code, 0);
  // Output is a file in the state directory.
  EXPECT_TRUE(std::filesystem::exists(d_->stateDir() + "/jobs/" + s.id + "/output"));
}

TEST_F(SupervisorTest, SeparateStreamsAndReadsAtOffsets) {
  JobStatus s = d_->mustStart("admin", {"/bin/sh", "-c", "echo out1; echo err1 >&2; echo out2"}, {},
                              OutputMode::kSeparate);
  d_->waitEnded("admin", s.id);
  EXPECT_EQ(d_->readAll("admin", s.id, Stream::kStdout), "out1\nout2\n");
  EXPECT_EQ(d_->readAll("admin", s.id, Stream::kStderr), "err1\n");
  OutputChunk c = RelayDaemon::chunk(d_->read("admin", s.id, 3, false, Stream::kStdout, 4));
  EXPECT_EQ(c.offset, 3u);
  EXPECT_EQ(c.data, "1\nou");
  EXPECT_FALSE(c.eof);
  c = RelayDaemon::chunk(d_->read("admin", s.id, 100, false));
  EXPECT_EQ(c.data, "");
  EXPECT_TRUE(c.eof);
  JobStatus end = RelayDaemon::status(d_->get("admin", s.id));
  EXPECT_EQ(end.output_bytes, 10u);
  EXPECT_EQ(end.stderr_bytes, 5u);
  // A merged job has no stderr log.
  JobStatus m = d_->mustStart("admin", {"true"});
  EXPECT_EQ(RelayDaemon::error(d_->read("admin", m.id, 0, false, Stream::kStderr)).code,
            ErrorCode::kBadRequest);
}

TEST_F(SupervisorTest, EnvironmentIsOnlyWhatWasAskedPlusDefaults) {
  JobStatus s = d_->mustStart("admin", {"env"}, {"FOO=bar baz"});
  d_->waitEnded("admin", s.id);
  std::string out = d_->readAll("admin", s.id);
  std::set<std::string> lines;
  std::istringstream in(out);
  for (std::string l; std::getline(in, l);) lines.insert(l.substr(0, l.find('=')));
  EXPECT_EQ(lines, (std::set<std::string>{"FOO", "PATH", "HOME", "USER", "LANG"})) << out;
  EXPECT_NE(out.find("FOO=bar baz\n"), std::string::npos);
  EXPECT_NE(out.find("USER=nobody\n"), std::string::npos);
  EXPECT_EQ(out.find("JW_RELAY_SOCKET"), std::string::npos);
}

TEST_F(SupervisorTest, JobsRunAsTheRunAsAccount) {
  JobStatus s = d_->mustStart("admin", {"/bin/sh", "-c", "id -u; id -g; id -G; pwd; umask"});
  d_->waitEnded("admin", s.id);
  std::string out = d_->readAll("admin", s.id);
  struct passwd* pw = getpwnam("nobody");
  ASSERT_NE(pw, nullptr);
  std::string uid = std::to_string(pw->pw_uid), gid = std::to_string(pw->pw_gid);
  EXPECT_EQ(out, uid + "\n" + gid + "\n" + gid + "\n/\n0022\n");
}

TEST_F(SupervisorTest, DeathBySignalIsKilled) {
  JobStatus s = d_->mustStart("admin", {"/bin/sh", "-c", "kill -9 $$"});
  JobStatus end = d_->waitEnded("admin", s.id);
  EXPECT_EQ(end.state, JobState::kKilled);
  EXPECT_EQ(end.signal, 9);
  EXPECT_FALSE(end.has_exit_code);
  EXPECT_EQ(end.stopped_by, "");
}

TEST_F(SupervisorTest, StopSendsSigtermAndRecordsWhoAsked) {
  JobStatus s = d_->mustStart("admin", {"sleep", "60"});
  JobStatus st = RelayDaemon::status(d_->stop("admin", s.id));
  EXPECT_EQ(st.stopped_by, "admin");
  JobStatus end = d_->waitEnded("admin", s.id, 5000);
  EXPECT_EQ(end.state, JobState::kKilled);
  EXPECT_EQ(end.signal, SIGTERM);
  EXPECT_EQ(end.stopped_by, "admin");
  ErrorReply e = RelayDaemon::error(d_->stop("admin", s.id));
  EXPECT_EQ(e.code, ErrorCode::kConflict);
}

TEST_F(SupervisorTest, JobIgnoringSigtermIsKilledAfterTheGrace) {
  JobStatus s = d_->mustStart("admin", {"/bin/sh", "-c", "trap '' TERM; echo ready; sleep 60"});
  // Wait until the trap is set, or SIGTERM could arrive before it.
  OutputChunk c = RelayDaemon::chunk(d_->read("admin", s.id, 0, true));
  ASSERT_EQ(c.data, "ready\n");
  auto t0 = Clock::now();
  RelayDaemon::status(d_->stop("admin", s.id, 500));
  JobStatus end = d_->waitEnded("admin", s.id, 5000);
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0).count();
  EXPECT_EQ(end.state, JobState::kKilled);
  EXPECT_EQ(end.signal, SIGKILL);
  EXPECT_EQ(end.stopped_by, "admin");
  EXPECT_GE(ms, 450);
  EXPECT_LT(ms, 3000);
}

TEST_F(SupervisorTest, TimeoutStopsTheJob) {
  JobStatus s = d_->mustStart("admin", {"sleep", "60"}, {}, OutputMode::kMerged, 300);
  JobStatus end = d_->waitEnded("admin", s.id, 5000);
  EXPECT_EQ(end.state, JobState::kKilled);
  EXPECT_EQ(end.signal, SIGTERM);
  EXPECT_EQ(end.stopped_by, "timeout");
}

TEST_F(SupervisorTest, BackgroundChildDoesNotHangTheJob) {
  auto t0 = Clock::now();
  JobStatus s = d_->mustStart("admin", {"/bin/sh", "-c", "echo before; sleep 100 & echo after"});
  std::string out = d_->readAll("admin", s.id);  // a follower must see eof promptly
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0).count();
  EXPECT_EQ(out, "before\nafter\n");
  EXPECT_LT(ms, 1500) << "the job's end waited for its background child";
  JobStatus end = RelayDaemon::status(d_->get("admin", s.id));
  EXPECT_EQ(end.state, JobState::kExited);
  EXPECT_EQ(end.exit_code, 0);
}

uint64_t fnv1a(uint64_t h, const std::string& data) {
  for (unsigned char c : data) {
    h ^= c;
    h *= 1099511628211ULL;
  }
  return h;
}

TEST_F(SupervisorTest, TwoHundredMiBStoredByteExactWithFlatMemory) {
  const uint64_t size = 200ULL << 20;
  const std::string gen = "yes 0123456789abcdef | head -c " + std::to_string(size);
  // Expected hash: the same generator, run here.
  uint64_t want = 14695981039346656037ULL;
  uint64_t want_size = 0;
  {
    FILE* p = popen(gen.c_str(), "r");
    ASSERT_NE(p, nullptr);
    std::string buf(1 << 16, '\0');
    size_t n;
    while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) {
      want = fnv1a(want, buf.substr(0, n));
      want_size += n;
    }
    pclose(p);
  }
  ASSERT_EQ(want_size, size);
  // Reset the peak-RSS counter: dev mode's start-up (argon2id hashing of the admin password
  // takes 64 MiB) must not count, only what the job's output costs.
  std::ofstream("/proc/" + std::to_string(d_->pid()) + "/clear_refs") << "5";
  long hwm_before = d_->vmHwmKiB();
  JobStatus s = d_->mustStart("admin", {"/bin/sh", "-c", gen});
  uint64_t got = 14695981039346656037ULL;
  uint64_t offset = 0;
  for (;;) {
    OutputChunk c = RelayDaemon::chunk(d_->read("admin", s.id, offset, true));
    ASSERT_EQ(c.offset, offset);
    got = fnv1a(got, c.data);
    offset += c.data.size();
    if (c.eof) break;
  }
  EXPECT_EQ(offset, size);
  EXPECT_EQ(got, want) << "stored output differs from the generator's";
  JobStatus end = RelayDaemon::status(d_->get("admin", s.id));
  EXPECT_EQ(end.state, JobState::kExited);
  EXPECT_EQ(end.output_bytes, size);
  EXPECT_FALSE(end.output_truncated);
  EXPECT_EQ(std::filesystem::file_size(d_->stateDir() + "/jobs/" + s.id + "/output"), size);
  long hwm = d_->vmHwmKiB();
  std::fprintf(stderr, "jobworkerd VmHWM before: %ld KiB, after 200 MiB of output: %ld KiB\n",
               hwm_before, hwm);
  EXPECT_GT(hwm, 0);
#if JW_ASAN
  // ASan keeps freed blocks in a quarantine of up to 256 MiB: RSS says nothing there.
  std::fprintf(stderr, "AddressSanitizer build: peak RSS not checked\n");
#else
  EXPECT_LT(hwm, 64 * 1024) << "supervisor peak RSS grew with the job's output";
  EXPECT_LT(hwm - hwm_before, 8 * 1024) << "supervisor peak RSS grew with the job's output";
#endif
}

// tail_lines, since and timestamps, answered from the log's time index: a job writes a line,
// waits 1.5 s, writes two more.
TEST_F(SupervisorTest, TailSinceAndTimestampsReadsStartAtLinesAndStampTheirArrival) {
  JobStatus s = d_->mustStart("admin", {"/bin/sh", "-c", "echo a; sleep 1.5; echo b; echo c"});
  JobStatus end = d_->waitEnded("admin", s.id);
  ASSERT_EQ(end.state, JobState::kExited);
  auto ask = [&](OutputReadRequest r) {
    r.token = d_->tokenFor("admin");
    r.job_id = s.id;
    return d_->call([&](uint32_t id) { return encodeOutputRead(id, r); });
  };
  OutputReadRequest tail;
  tail.tail = true;
  tail.tail_lines = 2;
  OutputChunk t = RelayDaemon::chunk(ask(tail));
  EXPECT_EQ(t.offset, 2u);
  EXPECT_EQ(t.data, "b\nc\n");
  EXPECT_TRUE(t.eof);
  tail.tail_lines = 0;  // nothing but what comes next: the end
  EXPECT_EQ(RelayDaemon::chunk(ask(tail)).offset, 6u);

  OutputReadRequest stamped;
  stamped.timestamps = true;
  OutputChunk all = RelayDaemon::chunk(ask(stamped));
  EXPECT_EQ(all.raw_size, 6u);
  EXPECT_TRUE(all.eof);
  // "YYYY-MM-DDTHH:MM:SS.mmmZ line\n" three times; b's time is ~1.5 s after a's.
  std::vector<std::string> lines;
  for (size_t p = 0; p < all.data.size();) {
    size_t nl = all.data.find('\n', p);
    ASSERT_NE(nl, std::string::npos);
    lines.push_back(all.data.substr(p, nl - p));
    p = nl + 1;
  }
  ASSERT_EQ(lines.size(), 3u) << all.data;
  auto ms = [](const std::string& line) {  // milliseconds within the day
    return ((std::stoi(line.substr(11, 2)) * 60 + std::stoi(line.substr(14, 2))) * 60 +
            std::stoi(line.substr(17, 2))) *
               1000 +
           std::stoi(line.substr(20, 3));
  };
  for (size_t i = 0; i < 3; i++) {
    EXPECT_EQ(lines[i].size(), 26u);
    EXPECT_EQ(lines[i].substr(23, 2), "Z ");
    EXPECT_EQ(lines[i].back(), "abc"[i]);
  }
  int gap = (ms(lines[1]) - ms(lines[0]) + 86'400'000) % 86'400'000;
  EXPECT_GE(gap, 1400);
  EXPECT_LE(gap, 5000);
  // A read from the middle of a line carries no prefix for that line's rest.
  stamped.offset = 1;
  OutputChunk mid = RelayDaemon::chunk(ask(stamped));
  EXPECT_EQ(mid.raw_size, 5u);
  EXPECT_EQ(mid.data.substr(0, 1), "\n");
  EXPECT_EQ(mid.data.substr(1), lines[1] + "\n" + lines[2] + "\n");

  // since: the first line whose bytes arrived at or after that time.
  std::tm day{};
  time_t now = time(nullptr);
  gmtime_r(&now, &day);
  day.tm_hour = day.tm_min = day.tm_sec = 0;
  int64_t midnight_ms = static_cast<int64_t>(timegm(&day)) * 1000;
  int64_t b_ms = midnight_ms + ms(lines[1]);
  if (b_ms > static_cast<int64_t>(now) * 1000 + 60'000) b_ms -= 86'400'000;  // b was yesterday
  OutputReadRequest since;
  since.since_unix_ms = static_cast<uint64_t>(b_ms - 500);
  OutputChunk from_b = RelayDaemon::chunk(ask(since));
  EXPECT_EQ(from_b.offset, 2u);
  EXPECT_EQ(from_b.data, "b\nc\n");
  since.since_unix_ms = static_cast<uint64_t>(b_ms + 10'000);
  EXPECT_EQ(RelayDaemon::chunk(ask(since)).offset, 6u);
  // With an offset: refused.
  since.offset = 3;
  EXPECT_EQ(RelayDaemon::error(ask(since)).code, ErrorCode::kBadRequest);
  // The index beside the log, finished with the job.
  EXPECT_TRUE(std::filesystem::exists(d_->stateDir() + "/jobs/" + s.id + "/output.times"));
}

TEST_F(SupervisorTest, ThreeConcurrentFollowersGetIdenticalBytes) {
  JobStatus s = d_->mustStart("admin", {"/bin/sh", "-c",
                                        "i=0; while [ $i -lt 300 ]; do i=$((i+1)); echo line $i; "
                                        "[ $((i % 20)) -eq 0 ] && sleep 0.05; done"});
  std::string expected;
  for (int i = 1; i <= 300; i++) expected += "line " + std::to_string(i) + "\n";
  struct Follower {
    std::string data;
    bool done = false;
    int empty_replies = 0;
  };
  Follower f[3];
  std::map<uint32_t, int> pending;  // request id -> follower
  Token admin = d_->tokenFor("admin");
  auto ask = [&](int i) {
    uint32_t id = d_->nextId();
    pending[id] = i;
    d_->sendRaw(encodeOutputRead(
        id, OutputReadRequest{admin, s.id, Stream::kStdout, f[i].data.size(), 7, true}));
  };
  for (int i = 0; i < 3; i++) ask(i);  // small max_bytes: many parked, interleaved reads
  auto deadline = Clock::now() + std::chrono::seconds(30);
  while ((!f[0].done || !f[1].done || !f[2].done) && Clock::now() < deadline) {
    auto fr = d_->recvAny(1000);
    if (!fr) continue;
    auto it = pending.find(fr->h.request_id);
    ASSERT_NE(it, pending.end()) << "reply to an unknown request";
    int i = it->second;
    pending.erase(it);
    OutputChunk c = RelayDaemon::chunk(*fr);
    ASSERT_EQ(c.offset, f[i].data.size());
    f[i].data += c.data;
    if (c.data.empty() && !c.eof) f[i].empty_replies++;
    if (c.eof) {
      f[i].done = true;
    } else {
      ask(i);
    }
  }
  for (int i = 0; i < 3; i++) {
    EXPECT_TRUE(f[i].done) << "follower " << i;
    EXPECT_EQ(f[i].data, expected) << "follower " << i;
    EXPECT_EQ(f[i].empty_replies, 0) << "parked reads answered empty before 15 s";
  }
}

TEST_F(SupervisorTest, JobListIsNewestFirstAndPackedIntoFrames) {
  std::vector<std::string> ids;
  for (int i = 0; i < 70; i++) ids.push_back(d_->mustStart("admin", {"true"}).id);
  size_t frames = 0;
  std::vector<JobStatus> jobs;
  // `true` exits at once, but a start returns while it runs: wait until all 70 have exited.
  waitUntil(
      [&] {
        jobs = d_->list("admin", true, static_cast<uint8_t>(JobState::kExited), &frames);
        return jobs.size() >= 70u;
      },
      std::chrono::seconds(30));
  ASSERT_GE(jobs.size(), 70u);
  EXPECT_GE(frames, 2u) << "70+ statuses need more than one frame of at most 64";
  // Newest first: our ids appear in reverse start order (others may be interleaved later).
  std::vector<std::string> ours;
  for (const auto& j : jobs) {
    if (std::find(ids.begin(), ids.end(), j.id) != ids.end()) ours.push_back(j.id);
    EXPECT_EQ(j.state, JobState::kExited);
  }
  // A few may still be finishing (state filter): the order of the rest is what matters.
  std::vector<std::string> want;
  for (auto it = ids.rbegin(); it != ids.rend(); ++it) {
    if (std::find(ours.begin(), ours.end(), *it) != ours.end()) want.push_back(*it);
  }
  EXPECT_EQ(ours, want);
  EXPECT_GE(ours.size(), 60u);
}

TEST_F(SupervisorTest, RolesAndOwnership) {
  d_->addUser("alice", "user");
  d_->addUser("bob", "user");
  d_->addUser("vera", "viewer");
  JobStatus a = d_->mustStart("alice", {"sleep", "30"});
  EXPECT_EQ(a.owner, "alice");
  EXPECT_EQ(a.run_as, "nobody");
  // Another user: the job does not exist for bob, whatever he tries.
  EXPECT_EQ(RelayDaemon::error(d_->get("bob", a.id)).code, ErrorCode::kNotFound);
  EXPECT_EQ(RelayDaemon::error(d_->stop("bob", a.id)).code, ErrorCode::kNotFound);
  EXPECT_EQ(RelayDaemon::error(d_->read("bob", a.id, 0, false)).code, ErrorCode::kNotFound);
  for (const auto& j : d_->list("bob", true)) EXPECT_NE(j.id, a.id);
  // The owner sees it; `all` for role user is its own jobs only.
  EXPECT_EQ(RelayDaemon::status(d_->get("alice", a.id)).id, a.id);
  auto alice_all = d_->list("alice", true);
  ASSERT_FALSE(alice_all.empty());
  for (const auto& j : alice_all) EXPECT_EQ(j.owner, "alice");
  // A viewer reads everything and changes nothing.
  EXPECT_EQ(RelayDaemon::status(d_->get("vera", a.id)).id, a.id);
  EXPECT_EQ(RelayDaemon::chunk(d_->read("vera", a.id, 0, false)).data, "");
  bool vera_sees = false;
  for (const auto& j : d_->list("vera", true)) vera_sees |= j.id == a.id;
  EXPECT_TRUE(vera_sees);
  EXPECT_TRUE(d_->list("vera", false).empty());  // her own jobs: none
  EXPECT_EQ(RelayDaemon::error(d_->stop("vera", a.id)).code, ErrorCode::kForbidden);
  EXPECT_EQ(RelayDaemon::error(d_->start("vera", {"true"})).code, ErrorCode::kForbidden);
  // Admin stops anyone's job and is recorded.
  EXPECT_EQ(RelayDaemon::status(d_->stop("admin", a.id, 0)).stopped_by, "admin");
  EXPECT_EQ(d_->waitEnded("alice", a.id, 5000).stopped_by, "admin");
  // The owner stops her own.
  JobStatus a2 = d_->mustStart("alice", {"sleep", "30"});
  EXPECT_EQ(RelayDaemon::status(d_->stop("alice", a2.id)).stopped_by, "alice");
  EXPECT_EQ(d_->waitEnded("alice", a2.id, 5000).state, JobState::kKilled);
}

TEST_F(SupervisorTest, SessionsAreCheckedAndSurviveAFrontendRestart) {
  Token admin = d_->tokenFor("admin");
  Frame bad = d_->login("admin", "not-the-password", "192.0.2.50");
  EXPECT_EQ(RelayDaemon::error(bad).code, ErrorCode::kUnauthorized);
  Frame ghost = d_->login("nobody-here", "whatever", "192.0.2.50");
  EXPECT_EQ(RelayDaemon::error(ghost).code, ErrorCode::kUnauthorized);  // the same answer
  EXPECT_EQ(RelayDaemon::error(bad).message, RelayDaemon::error(ghost).message);
  // Logout names the session in use; the token is refused afterwards.
  Frame second = d_->login("admin", d_->passwordOf("admin"));
  ASSERT_EQ(second.h.type, MsgType::kLoginReply);
  Token revoked = decodeLoginReplyPayload(second.payload)->token;
  EXPECT_EQ(d_->call([&](uint32_t id) {
                return encodeSessionRevoke(id, SessionEnd{revoked, ""});
              }).h.type,
            MsgType::kOk);
  JobListRequest replay{revoked, true, 0};
  EXPECT_EQ(
      RelayDaemon::error(d_->call([&](uint32_t id) { return encodeJobList(id, replay); })).code,
      ErrorCode::kUnauthorized);
  // Kill the relay: the supervisor respawns it; the sessions stayed with the supervisor.
  JobStatus job = d_->mustStart("admin", {"sleep", "30"});
  d_->sendRaw("garbage");
  ASSERT_TRUE(d_->waitConnectionClosed(5000));
  ASSERT_TRUE(d_->acceptFrontend()) << "no new frontend after the old one was killed";
  EXPECT_EQ(d_->tokenFor("admin"), admin);
  // The old token works with the new frontend; jobs are unaffected by the frontend's death.
  EXPECT_EQ(RelayDaemon::status(d_->get("admin", job.id)).state, JobState::kRunning);
  RelayDaemon::status(d_->stop("admin", job.id, 0));
  EXPECT_EQ(
      RelayDaemon::error(d_->call([&](uint32_t id) { return encodeJobList(id, replay); })).code,
      ErrorCode::kUnauthorized);
}

// What a compromised frontend tries after the real privilege drop (sessions it never saw minted,
// replays after logout, rotating-address brute force, files, forbidden calls and frames) is in
// hostile_frontend_test.cc.

TEST_F(SupervisorTest, OneAddressBruteForceIsThrottledWhileASecondAddressLogsIn) {
  d_->addUser("single", "user");
  int checked = 0, throttled = 0;
  for (int i = 0; i < 1000; i++) {
    ErrorReply e = RelayDaemon::error(d_->login("single", "wrong", "192.0.2.99"));
    checked += e.code == ErrorCode::kUnauthorized ? 1 : 0;
    throttled += e.code == ErrorCode::kThrottled ? 1 : 0;
  }
  std::printf("1000 one-address guesses: %d checked, %d throttled\n", checked, throttled);
  EXPECT_LE(checked, 6);  // 3 free, then back-off from 1 s
  EXPECT_GE(throttled, 994);
  auto l0 = Clock::now();
  EXPECT_EQ(d_->login("single", "password-of-single", "192.0.2.100").h.type, MsgType::kLoginReply);
  EXPECT_LT(Clock::now() - l0, std::chrono::seconds(2));
}

// The relay process that jobworkerd runs now, or -1.
pid_t relayPid(pid_t daemon) { return childWithComm(daemon, {"relay_frontend"}); }

TEST_F(SupervisorTest, DeadFrontendIsRespawnedAndLogged) {
  pid_t relay = relayPid(d_->pid());
  ASSERT_GT(relay, 0);
  ASSERT_EQ(kill(relay, SIGKILL), 0);
  ASSERT_TRUE(d_->waitConnectionClosed(5000));
  ASSERT_TRUE(d_->acceptFrontend()) << "no new frontend after SIGKILL";
  EXPECT_NE(relayPid(d_->pid()), relay);
  std::string log = d_->log();
  EXPECT_NE(log.find("frontend pid " + std::to_string(relay) + " killed by signal 9"),
            std::string::npos)
      << log;
}

TEST_F(SupervisorTest, BrokenUsersFileOnSighupKeepsTheOldTable) {
  std::string users = d_->stateDir() + "/users";
  std::string good = readFile(users);
  ASSERT_FALSE(good.empty());
  std::ofstream(users, std::ios::app) << "this is not a users line\n";
  kill(d_->pid(), SIGHUP);
  waitUntil([&] { return d_->log().find("keeping the previous users") != std::string::npos; },
            std::chrono::seconds(5));
  EXPECT_NE(d_->log().find("keeping the previous users"), std::string::npos);
  // The old table still holds: admin works, and its session too.
  JobStatus s = d_->mustStart("admin", {"true"});
  EXPECT_EQ(s.owner, "admin");
  EXPECT_EQ(d_->stashed(0), 0u) << "a reload sent the frontend something";
  size_t loads = d_->countLoads();
  std::ofstream(users, std::ios::trunc) << good;
  kill(d_->pid(), SIGHUP);
  EXPECT_TRUE(d_->waitLoads(loads + 1));
  EXPECT_EQ(d_->mustStart("admin", {"true"}).owner, "admin");
}

TEST_F(SupervisorTest, ProtocolViolationsKillAndRespawnTheFrontend) {
  struct Case {
    const char* what;
    std::string frame;
  };
  std::string oversized = encodeJobGet(1, JobRef{Token{}, "x"});
  oversized.resize(kMaxFrame + 100, 'x');
  std::vector<Case> cases = {
      {"short garbage", std::string("\x01\x02\x03", 3)},
      {"unknown type", std::string("\xff\x7f\x00\x00\x01\x00\x00\x00", 8)},
      {"supervisor-only type", encodeLoginReply(5, LoginReply{})},
      {"a removed type (SessionAdd's old number is Login's now; UserTable's 64 is gone)",
       std::string("\x40\x00\x00\x00\x05\x00\x00\x00", 8)},
      {"request id 0", encodeJobGet(0, JobRef{Token{}, "x"})},
      {"flags on a request", encodeHealth(6, {}, kFlagMore)},
      {"payload that does not decode", encodeHealth(7, {}) + "trailing"},
      {"oversized frame", oversized},
      {"a second Ready", encodeReady(0, {})},  // acceptFrontend() sent the first
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.what);
    d_->sendRaw(c.frame);
    ASSERT_TRUE(d_->waitConnectionClosed(5000)) << "the frontend survived: " << c.what;
    ASSERT_TRUE(d_->acceptFrontend()) << "no respawn after: " << c.what;
    Frame h = d_->call([](uint32_t id) { return encodeHealth(id, {}); });
    EXPECT_EQ(h.h.type, MsgType::kHealthReply);
  }
  std::string log = d_->log();
  EXPECT_NE(log.find("protocol violation"), std::string::npos);
  EXPECT_NE(log.find("restarting in"), std::string::npos);
}

// The control socket's verbs are for root on its own socket: on the frontend channel their
// numbers are unknown, so a frontend sending one is killed as any violator, and nothing is done.
TEST_F(SupervisorTest, ControlMessagesOnTheFrontendChannelAreViolationsAndDoNothing) {
  Token admin = d_->tokenFor("admin");
  const std::string before = d_->log();
  std::vector<std::string> frames = {
      encodeControlSessionRevokeUser(11, ControlUser{"admin"}),
      encodeControlSessionRevokeId(12, ControlSessionId{"0123456789ab"}),
  };
  for (const std::string& frame : frames) {
    d_->sendRaw(frame);
    ASSERT_TRUE(d_->waitConnectionClosed(5000)) << "the frontend survived a control message";
    ASSERT_TRUE(d_->acceptFrontend()) << "no respawn after a control message";
  }
  // admin's session was not revoked by the frontend's "ControlSessionRevokeUser".
  Frame info = d_->call([&](uint32_t id) { return encodeSessionGet(id, SessionRef{admin}); });
  EXPECT_EQ(info.h.type, MsgType::kSessionInfo);
  std::string log = d_->log().substr(before.size());
  EXPECT_NE(log.find("unknown message type 1001"), std::string::npos) << log;
  EXPECT_EQ(log.find("administrator revoked"), std::string::npos) << log;
}

// Daemons of their own: shutdown, retention.

TEST(SupervisorLifecycle, SigtermStopsJobsAndExits) {
  ensureFrontendAccount();
  RelayDaemon d("stop_grace = 1s\n");
  JobStatus stubborn =
      d.mustStart("admin", {"/bin/sh", "-c", "trap '' TERM; echo ready; sleep 60"});
  ASSERT_EQ(RelayDaemon::chunk(d.read("admin", stubborn.id, 0, true)).data, "ready\n");
  JobStatus plain = d.mustStart("admin", {"sleep", "60"});
  auto t0 = Clock::now();
  kill(d.pid(), SIGTERM);
  EXPECT_EQ(d.waitExit(10'000), 0) << d.log();
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0).count();
  EXPECT_LT(ms, 5000);
  for (pid_t p : {stubborn.pid, plain.pid}) {
    EXPECT_NE(kill(p, 0), 0) << "job pid " << p << " survived the shutdown";
  }
  std::string log = d.log();
  EXPECT_NE(log.find("JOB_STOPPED_BY=\"shutdown\""), std::string::npos) << log;
}

TEST(SupervisorLifecycle, RetentionEvictsOldFinishedJobsAndTheirOutput) {
  ensureFrontendAccount();
  RelayDaemon d("retention_count = 2\n");
  std::vector<std::string> ids;
  for (int i = 0; i < 4; i++) {
    ids.push_back(d.mustStart("admin", {"echo", std::to_string(i)}).id);
    d.waitEnded("admin", ids.back());
  }
  auto jobs = d.list("admin", true);
  ASSERT_EQ(jobs.size(), 2u);
  EXPECT_EQ(jobs[0].id, ids[3]);
  EXPECT_EQ(jobs[1].id, ids[2]);
  EXPECT_EQ(RelayDaemon::error(d.get("admin", ids[0])).code, ErrorCode::kNotFound);
  EXPECT_FALSE(std::filesystem::exists(d.stateDir() + "/jobs/" + ids[0]));
  EXPECT_TRUE(std::filesystem::exists(d.stateDir() + "/jobs/" + ids[3] + "/output"));
}

TEST(SupervisorLifecycle, NonRootNeedsDevModeAndSaysWhatIsOff) {
  ensureFrontendAccount();
  if (access("/usr/bin/setpriv", X_OK) != 0) GTEST_SKIP() << "setpriv not installed";
  std::string dir = makeTempDir("jwnonroot");
  chmod(dir.c_str(), 0777);
  StagedBinaries staged;  // nobody may not reach the build tree
  auto asNobody = [&](std::vector<std::string> args) {
    std::vector<std::string> argv = {"/usr/bin/setpriv", "--reuid=nobody", "--regid=nogroup",
                                     "--clear-groups", staged.path("jobworkerd")};
    argv.insert(argv.end(), args.begin(), args.end());
    return run(argv, "", {}, 30);
  };
  CmdResult r = asNobody({"--state-dir", dir + "/state"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("must run as root"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("--dev"), std::string::npos) << r.err;
  removeTree(dir);

  // With --dev it runs, says loudly what is off, and jobs run as the invoking user.
  RelayDaemon d("", {"/usr/bin/setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"});
  std::string log = d.log();
  EXPECT_NE(log.find("DEV MODE WITHOUT ROOT"), std::string::npos) << log;
  EXPECT_NE(log.find("no cgroups"), std::string::npos) << log;
  EXPECT_NE(log.find("no namespaces"), std::string::npos) << log;
  EXPECT_NE(log.find("--no-setuid --dev"), std::string::npos) << log;
  EXPECT_EQ(log.find("--run-as"), std::string::npos) << log;
  Frame h = d.call([](uint32_t id) { return encodeHealth(id, {}); });
  auto details = decodeHealthReplyPayload(h.payload);
  ASSERT_TRUE(details.ok());
  EXPECT_EQ(details->details.at(0), "cgroups: none");
  JobStatus s = d.mustStart("admin", {"id", "-u"});
  d.waitEnded("admin", s.id);
  EXPECT_EQ(d.readAll("admin", s.id), std::to_string(getpwnam("nobody")->pw_uid) + "\n");
  EXPECT_EQ(s.run_as, "nobody");
}

}  // namespace
}  // namespace jw::test
