// Integration tests of issue 18 ("[streams]") against the real jobworkerd over real HTTPS: a
// job's stdin fed by PUT /v1/jobs/{id}/stdin with flow control end to end (1 GiB counted and
// hashed in the job, a job that does not read, an upload cut short, the refusals), and the job
// event stream of GET /v1/events (order, resume across a frontend restart, visibility, 410).
// Runs in the test process.
#include <Poco/JSON/Object.h>
#include <Poco/JSON/Parser.h>
#include <Poco/Net/Context.h>
#include <Poco/Net/HTTPRequest.h>
#include <Poco/Net/HTTPResponse.h>
#include <Poco/Net/HTTPSClientSession.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sodium.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "client/api_client.h"
#include "client/event_stream.h"
#include "tests/integration/daemon.h"

namespace jw::test {
namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

constexpr uint64_t kGiB = uint64_t{1} << 30;

Poco::JSON::Object::Ptr parseObject(const std::string& text) {
  Poco::JSON::Parser p;
  return p.parse(text).extract<Poco::JSON::Object::Ptr>();
}

std::string errorCode(const HttpResponse& r) {
  return jsonField(jsonField(r.body, "error"), "code");
}

// Kilobytes of resident memory of a process (VmRSS), 0 when it is gone.
uint64_t rssKb(pid_t pid) {
  std::string v = procStatusField(pid, "VmRSS");
  return v.empty() ? 0 : std::stoull(v);
}

// Writes `total` pseudo-random bytes into a pipe (the upload's input) from its own thread,
// hashing them as it goes; `produced` says how far it got (it blocks when the upload waits).
class Generator {
 public:
  explicit Generator(uint64_t total) : total_(total) {
    int p[2];
    EXPECT_EQ(pipe2(p, O_CLOEXEC), 0);
    read_fd_ = p[0];
    write_fd_ = p[1];
    crypto_hash_sha256_init(&hash_);
    thread_ = std::thread([this] { run(); });
  }
  ~Generator() {
    stop_ = true;
    if (read_fd_ >= 0) close(read_fd_);  // unblocks a write
    thread_.join();
  }
  int fd() const { return read_fd_; }
  uint64_t produced() const { return produced_; }
  int64_t lastProgressMs() const { return last_progress_ms_; }
  // Hex SHA-256 of everything written, once done.
  std::string hex() {
    thread_.join();
    thread_ = std::thread([] {});
    unsigned char out[crypto_hash_sha256_BYTES];
    crypto_hash_sha256_final(&hash_, out);
    char hex[2 * sizeof out + 1];
    sodium_bin2hex(hex, sizeof hex, out, sizeof out);
    return hex;
  }
  static int64_t nowMs() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now().time_since_epoch())
        .count();
  }

 private:
  void run() {
    std::vector<unsigned char> buf(size_t{256} * 1024);
    uint64_t state = 0x9e3779b97f4a7c15ULL;
    while (produced_ < total_ && !stop_) {
      size_t n = static_cast<size_t>(std::min<uint64_t>(buf.size(), total_ - produced_));
      for (size_t i = 0; i + 8 <= n; i += 8) {  // xorshift: cheap, and no run of zeros
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        std::memcpy(&buf[i], &state, 8);
      }
      crypto_hash_sha256_update(&hash_, buf.data(), n);
      size_t off = 0;
      while (off < n) {
        ssize_t w = write(write_fd_, buf.data() + off, n - off);
        if (w <= 0) {
          close(write_fd_);
          return;
        }
        off += static_cast<size_t>(w);
        produced_ += static_cast<uint64_t>(w);
        last_progress_ms_ = nowMs();
      }
    }
    close(write_fd_);
  }

  uint64_t total_;
  int read_fd_ = -1, write_fd_ = -1;
  crypto_hash_sha256_state hash_{};
  std::atomic<uint64_t> produced_{0};
  std::atomic<int64_t> last_progress_ms_{nowMs()};
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

class Streams : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    daemon_ = Daemon::start().release();
    if (daemon_ == nullptr) return;
    daemon_->addUser("alice", "user", "alice-password-1");
    daemon_->addUser("bob", "user", "bob-password-1");
    daemon_->addUser("vera", "viewer", "vera-password-1");
    admin_ = login(*daemon_, "admin", daemon_->adminPassword());
    alice_ = login(*daemon_, "alice", "alice-password-1");
    bob_ = login(*daemon_, "bob", "bob-password-1");
    vera_ = login(*daemon_, "vera", "vera-password-1");
  }
  static void TearDownTestSuite() {
    delete daemon_;
    daemon_ = nullptr;
  }
  void SetUp() override { ASSERT_NE(daemon_, nullptr); }

  static client::ApiClient api(const std::string& token) {
    client::ApiClient::Settings s;
    s.server = daemon_->url();
    s.ca_file = daemon_->caFile();
    s.token = token;
    auto c = client::ApiClient::create(s);
    EXPECT_TRUE(c.ok());
    return std::move(c.value());
  }
  static std::string startPiped(const std::string& token, const std::string& script) {
    return startJob(*daemon_, token,
                    R"({"command":["sh","-c",)" + jsonString(script) + R"(],"stdin":"pipe"})");
  }
  static std::string output(const std::string& token, const std::string& id) {
    return https(*daemon_, "GET", "/v1/jobs/" + id + "/logs", "", token).body;
  }

  static Daemon* daemon_;
  static std::string admin_, alice_, bob_, vera_;
};
Daemon* Streams::daemon_ = nullptr;
std::string Streams::admin_, Streams::alice_, Streams::bob_, Streams::vera_;

// --- stdin ------------------------------------------------------------------------------------

TEST_F(Streams, GigabyteOfStdinIsCountedAndHashedExactlyInTheJob) {
  // Count and hash in one pass over the same bytes: tee into a FIFO that sha256sum reads.
  std::string id =
      startPiped(alice_,
                 "mkfifo /tmp/h && (sha256sum < /tmp/h > /tmp/sum &) && tee /tmp/h | wc -c && "
                 "while [ ! -s /tmp/sum ]; do sleep 0.05; done && cat /tmp/sum");
  Generator gen(kGiB);
  const pid_t frontend = daemon_->frontendPid();
  uint64_t peak_super = 0, peak_front = 0;
  std::atomic<bool> done{false};
  std::thread sampler([&] {
    while (!done) {
      peak_super = std::max(peak_super, rssKb(daemon_->pid()));
      peak_front = std::max(peak_front, rssKb(frontend));
      std::this_thread::sleep_for(20ms);
    }
  });
  auto started = Clock::now();
  auto r = api(alice_).upload("/v1/jobs/" + id + "/stdin", gen.fd());
  double secs = std::chrono::duration<double>(Clock::now() - started).count();
  done = true;
  sampler.join();
  ASSERT_TRUE(r.ok()) << r.error().message;
  ASSERT_EQ(r->status, 200) << r->body;
  auto st = parseObject(r->body);
  EXPECT_EQ(st->getValue<uint64_t>("stdin_bytes"), kGiB);
  EXPECT_TRUE(st->getValue<bool>("stdin_complete"));
  std::string hash = gen.hex();
  std::string final_status = waitJob(*daemon_, alice_, id, 120);
  EXPECT_EQ(jsonField(final_status, "exit_code"), "0") << final_status;
  std::string out = output(alice_, id);
  EXPECT_NE(out.find(std::to_string(kGiB) + "\n"), std::string::npos) << out;
  EXPECT_NE(out.find(hash + "  -"), std::string::npos) << out << " vs " << hash;
  std::printf(
      "[ measurement ] 1 GiB of stdin in %.2f s (%.0f MiB/s); peak RSS jobworkerd %llu "
      "KiB, frontend %llu KiB\n",
      secs, 1024.0 / secs, static_cast<unsigned long long>(peak_super),
      static_cast<unsigned long long>(peak_front));
}

TEST_F(Streams, AJobThatDoesNotReadHoldsTheUploadWithoutMemoryGrowth) {
  std::string id = startPiped(alice_, "sleep 300");
  const pid_t frontend = daemon_->frontendPid();
  const uint64_t super_before = rssKb(daemon_->pid()), front_before = rssKb(frontend);
  Generator gen(kGiB);
  client::ClientResult<client::Response> result = client::ClientError{};
  std::thread uploader([&] { result = api(alice_).upload("/v1/jobs/" + id + "/stdin", gen.fd()); });
  // The upload stalls once the pipe, the window and the socket buffers are full: the generator
  // stops making progress.
  ASSERT_TRUE(waitUntil(
      [&] { return gen.produced() > 0 && Generator::nowMs() - gen.lastProgressMs() > 2000; }, 60s));
  const uint64_t held = gen.produced();
  const uint64_t super_after = rssKb(daemon_->pid()), front_after = rssKb(frontend);
  std::printf(
      "[ measurement ] a job that does not read holds the upload after %llu KiB; RSS "
      "jobworkerd %llu -> %llu KiB, frontend %llu -> %llu KiB\n",
      static_cast<unsigned long long>(held / 1024), static_cast<unsigned long long>(super_before),
      static_cast<unsigned long long>(super_after), static_cast<unsigned long long>(front_before),
      static_cast<unsigned long long>(front_after));
  // Pipe (1 MiB), window (2 x 128 KiB), one TLS read, and the kernel's socket buffers: far
  // below what the generator had to give.
  EXPECT_LT(held, uint64_t{64} << 20);
  EXPECT_LT(super_after, super_before + uint64_t{16} * 1024);
  EXPECT_LT(front_after, front_before + uint64_t{16} * 1024);
  auto mid = parseObject(https(*daemon_, "GET", "/v1/jobs/" + id, "", alice_).body);
  EXPECT_GT(mid->getValue<uint64_t>("stdin_bytes"), 0U);
  EXPECT_FALSE(mid->getValue<bool>("stdin_complete"));
  // Stopping the job ends the upload: its pipe is closed, the client told why.
  ASSERT_EQ(https(*daemon_, "POST", "/v1/jobs/" + id + "/stop", "", alice_).status, 202);
  uploader.join();
  ASSERT_TRUE(result.ok()) << result.error().message;
  EXPECT_EQ(result->status, 409) << result->body;
  auto st = parseObject(waitJob(*daemon_, alice_, id));
  EXPECT_FALSE(st->getValue<bool>("stdin_complete"));
}

TEST_F(Streams, AnUploadCutShortGivesTheJobEofAndIsRecordedIncomplete) {
  std::string id = startPiped(alice_, "wc -c");
  {
    // A raw chunked upload that sends 1000 bytes and then drops the connection.
    Poco::Net::Context::Ptr ctx =
        new Poco::Net::Context(Poco::Net::Context::TLS_CLIENT_USE, "", "", daemon_->caFile(),
                               Poco::Net::Context::VERIFY_RELAXED);
    Poco::Net::HTTPSClientSession s("127.0.0.1", static_cast<Poco::UInt16>(daemon_->port()), ctx);
    Poco::Net::HTTPRequest req("PUT", "/v1/jobs/" + id + "/stdin",
                               Poco::Net::HTTPMessage::HTTP_1_1);
    req.set("Authorization", "Bearer " + alice_);
    req.setChunkedTransferEncoding(true);
    std::ostream& os = s.sendRequest(req);
    os << std::string(1000, 'x');
    os.flush();
    ASSERT_TRUE(waitUntil(
        [&] {
          auto st = parseObject(https(*daemon_, "GET", "/v1/jobs/" + id, "", alice_).body);
          return st->getValue<uint64_t>("stdin_bytes") == 1000;
        },
        30s));
    s.abort();
  }
  auto st = parseObject(waitJob(*daemon_, alice_, id));
  EXPECT_EQ(st->getValue<uint64_t>("stdin_bytes"), 1000U);
  EXPECT_FALSE(st->getValue<bool>("stdin_complete"));
  EXPECT_EQ(st->getValue<int>("exit_code"), 0);
  EXPECT_EQ(output(alice_, id), "1000\n");
}

TEST_F(Streams, OneUploadPerJobOnlyByItsOwnerAndOnlyIntoAPipe) {
  std::string id = startPiped(alice_, "cat");
  // Another user (and a viewer) cannot; the owner's first upload can, the second cannot.
  EXPECT_EQ(https(*daemon_, "PUT", "/v1/jobs/" + id + "/stdin", "x", bob_).status, 404);
  EXPECT_EQ(https(*daemon_, "PUT", "/v1/jobs/" + id + "/stdin", "x", vera_).status, 403);
  auto first = https(*daemon_, "PUT", "/v1/jobs/" + id + "/stdin", "hello\n", alice_);
  ASSERT_EQ(first.status, 200) << first.body;
  EXPECT_EQ(jsonField(first.body, "stdin_bytes"), "6");
  auto second = https(*daemon_, "PUT", "/v1/jobs/" + id + "/stdin", "again\n", alice_);
  EXPECT_EQ(second.status, 409) << second.body;
  EXPECT_EQ(errorCode(second), "conflict");
  waitJob(*daemon_, alice_, id);
  EXPECT_EQ(output(alice_, id), "hello\n");
  // An admin may feed anyone's job; a job without "stdin": "pipe" reads /dev/null.
  std::string other = startPiped(bob_, "cat");
  EXPECT_EQ(https(*daemon_, "PUT", "/v1/jobs/" + other + "/stdin", "by admin", admin_).status, 200);
  waitJob(*daemon_, bob_, other);
  EXPECT_EQ(output(bob_, other), "by admin");
  std::string plain = startJob(*daemon_, alice_, R"({"command":["sleep","30"]})");
  auto refused = https(*daemon_, "PUT", "/v1/jobs/" + plain + "/stdin", "x", alice_);
  EXPECT_EQ(refused.status, 409) << refused.body;
  EXPECT_EQ(jsonField(https(*daemon_, "GET", "/v1/jobs/" + plain, "", alice_).body, "stdin"),
            "null");
  https(*daemon_, "POST", "/v1/jobs/" + plain + "/stop", "", alice_);
}

TEST_F(Streams, TheCliSendsStdinWithDashI) {
  std::vector<std::string> env = {"JOBWORKER_SERVER=" + daemon_->url(),
                                  "JOBWORKER_CA_FILE=" + daemon_->caFile(),
                                  "XDG_CONFIG_HOME=" + makeTempDir("jwcli")};
  auto in = run({binary("jobworker"), "login", "-u", "alice", "--password-stdin"},
                "alice-password-1\n", env);
  ASSERT_EQ(in.exit_code, 0) << in.err;
  auto r = run({binary("jobworker"), "run", "-i", "--", "wc", "-l"}, "a\nb\nc\n", env);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "3\n");
  auto s = run({binary("jobworker"), "start", "-i", "--", "cat"}, "from start\n", env);
  ASSERT_EQ(s.exit_code, 0) << s.err;
  std::string id = s.out.substr(0, s.out.find('\n'));
  waitJob(*daemon_, alice_, id);
  EXPECT_EQ(output(alice_, id), "from start\n");
}

// --- events -----------------------------------------------------------------------------------

// Every event line of a non-follow read after `since`.
std::vector<Poco::JSON::Object::Ptr> eventsAfter(const Daemon& d, const std::string& token,
                                                 uint64_t since, const std::string& job = "") {
  std::string path = "/v1/events?since=" + std::to_string(since);
  if (!job.empty()) path += "&job=" + job;
  auto r = https(d, "GET", path, "", token);
  EXPECT_EQ(r.status, 200) << r.body;
  std::vector<Poco::JSON::Object::Ptr> out;
  size_t start = 0;
  for (size_t nl; (nl = r.body.find('\n', start)) != std::string::npos; start = nl + 1) {
    out.push_back(parseObject(r.body.substr(start, nl - start)));
  }
  return out;
}

// The seq of the newest event the token can see so far (from a non-follow read of the ring).
uint64_t newestSeq(const Daemon& d, const std::string& token) {
  auto r = https(d, "GET", "/v1/events", "", token);
  EXPECT_EQ(r.status, 200);
  size_t end = r.body.rfind("\"seq\":");
  if (end == std::string::npos) return 0;
  return std::stoull(r.body.substr(end + 6));
}

TEST_F(Streams, EventsArriveInOrderForStartStopAndExit) {
  uint64_t since = newestSeq(*daemon_, admin_);
  std::string id = startJob(*daemon_, alice_, R"({"command":["sleep","30"],"name":"napper"})");
  ASSERT_EQ(https(*daemon_, "POST", "/v1/jobs/" + id + "/stop", "", alice_).status, 202);
  waitJob(*daemon_, alice_, id);
  std::string quick = startJob(*daemon_, alice_, R"({"command":["sh","-c","exit 3"]})");
  waitJob(*daemon_, alice_, quick);
  std::vector<std::string> types;
  ASSERT_TRUE(waitUntil(
      [&] {
        types.clear();
        for (const auto& e : eventsAfter(*daemon_, alice_, since, id)) {
          types.push_back(e->getValue<std::string>("type"));
        }
        return types.size() >= 4;
      },
      30s));
  EXPECT_EQ(types, (std::vector<std::string>{"created", "started", "stop_requested", "killed"}));
  auto evs = eventsAfter(*daemon_, alice_, since, id);
  EXPECT_EQ(evs[2]->getValue<std::string>("stopped_by"), "alice");
  EXPECT_EQ(evs[3]->getValue<int>("signal"), SIGTERM);
  EXPECT_EQ(evs[0]->getObject("job")->getValue<std::string>("name"), "napper");
  uint64_t prev = since;
  for (const auto& e : eventsAfter(*daemon_, alice_, since)) {
    EXPECT_GT(e->getValue<uint64_t>("seq"), prev);
    prev = e->getValue<uint64_t>("seq");
  }
  auto q = eventsAfter(*daemon_, alice_, since, quick);
  ASSERT_EQ(q.size(), 3U);
  EXPECT_EQ(q[2]->getValue<std::string>("type"), "exited");
  EXPECT_EQ(q[2]->getValue<int>("exit_code"), 3);
}

TEST_F(Streams, AFollowedStreamSurvivesAFrontendRestartWithoutGapOrDuplicate) {
  const uint64_t since = newestSeq(*daemon_, alice_);
  std::mutex mu;
  std::vector<uint64_t> seen;
  std::atomic<bool> stop{false};
  client::EventStreamRequest req;
  req.since = since;
  req.retry_budget = 60s;
  auto follower = api(alice_);
  std::thread t([&] {
    auto r = client::followEvents(follower, req, [&](std::string_view, uint64_t seq) {
      std::lock_guard lock(mu);
      seen.push_back(seq);
      return !stop;
    });
    EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.error().message);
  });
  auto count = [&] {
    std::lock_guard lock(mu);
    return seen.size();
  };
  std::string a = startJob(*daemon_, alice_, R"({"command":["sleep","2"]})");
  ASSERT_TRUE(waitUntil([&] { return count() >= 2; }, 30s));
  // The frontend dies mid-stream; `a` ends while it is gone or restarting.
  pid_t old_frontend = daemon_->frontendPid();
  ASSERT_GT(old_frontend, 0);
  ASSERT_EQ(kill(old_frontend, SIGKILL), 0);
  ASSERT_TRUE(daemon_->waitHealthy(30));
  waitJob(*daemon_, alice_, a);
  std::string b = startJob(*daemon_, alice_, R"({"command":["true"]})");
  waitJob(*daemon_, alice_, b);
  std::vector<uint64_t> expected;
  for (const auto& e : eventsAfter(*daemon_, alice_, since)) {
    expected.push_back(e->getValue<uint64_t>("seq"));
  }
  ASSERT_GE(expected.size(), 6U);
  ASSERT_TRUE(waitUntil([&] { return count() >= expected.size(); }, 60s));
  stop = true;
  // One more event lets the follower see `stop`.
  waitJob(*daemon_, alice_, startJob(*daemon_, alice_, R"({"command":["true"]})"));
  t.join();
  std::lock_guard lock(mu);
  seen.resize(std::min(seen.size(), expected.size()));
  EXPECT_EQ(seen, expected);
}

TEST_F(Streams, AnotherUsersEventsAreInvisibleAndAnOldSinceIsGone) {
  uint64_t since = newestSeq(*daemon_, admin_);
  std::string mine = startJob(*daemon_, alice_, R"({"command":["true"]})");
  std::string theirs = startJob(*daemon_, bob_, R"({"command":["true"]})");
  waitJob(*daemon_, alice_, mine);
  waitJob(*daemon_, bob_, theirs);
  auto ids = [&](const std::string& token) {
    std::set<std::string> out;
    for (const auto& e : eventsAfter(*daemon_, token, since)) {
      out.insert(e->getObject("job")->getValue<std::string>("id"));
    }
    return out;
  };
  EXPECT_EQ(ids(alice_), (std::set<std::string>{mine}));
  EXPECT_EQ(ids(bob_), (std::set<std::string>{theirs}));
  EXPECT_EQ(ids(vera_), (std::set<std::string>{mine, theirs}));
  EXPECT_EQ(ids(admin_), (std::set<std::string>{mine, theirs}));
  // Another user's job as a filter shows nothing of it.
  EXPECT_TRUE(eventsAfter(*daemon_, bob_, since, mine).empty());
  auto gone = https(*daemon_, "GET", "/v1/events?since=1", "", alice_);
  EXPECT_EQ(gone.status, 410) << gone.body;
  EXPECT_EQ(errorCode(gone), "gone");
  EXPECT_EQ(https(*daemon_, "GET", "/v1/events?since=x", "", alice_).status, 400);
}

}  // namespace
}  // namespace jw::test
