// Integration tests of the frontend's HTTPS intake under attack, against the real jobworkerd +
// jobworker-frontend with their shipped defaults: idle TCP connections, slowloris heads and
// slow-body uploads from many loopback source addresses, while a good client logs in, starts a
// job and reads its logs; plus strict framing and over-cap answers end to end. Runs in the test
// process (OpenSSL clients; bounded in count and time).
#include <Poco/Net/HTTPRequest.h>
#include <Poco/Net/HTTPResponse.h>
#include <Poco/Net/HTTPSClientSession.h>
#include <Poco/StreamCopier.h>
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "common/fd.h"
#include "common/sanitizer.h"
#include "tests/integration/daemon.h"

namespace jw::test {
namespace {

using Clock = std::chrono::steady_clock;

// The scenario of the issue in the normal build; reduced under the sanitizers, which make both
// the daemon and these clients several times slower (there: correctness only, no time bound).
struct AttackSize {
  int addresses;  // source addresses 127.0.0.2 ... per kind of attacker
  int idle;       // TCP connections that never start TLS
  int slow;       // TLS connections trickling a byte a second
  int seconds;    // how long the attack is held
};
constexpr AttackSize kSize = JW_ASAN ? AttackSize{10, 100, 40, 12} : AttackSize{50, 500, 200, 30};
constexpr int kRounds = 20;
constexpr auto kStepBound = std::chrono::seconds(1);
constexpr int kClientTimeoutS = 10;  // what the good client waits before counting a failure

void raiseDescriptorLimit() {
  rlimit rl{};
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &rl), 0);
  rl.rlim_cur = rl.rlim_max;
  ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &rl), 0);
  ASSERT_GE(rl.rlim_cur, static_cast<rlim_t>(kSize.idle + kSize.slow + 64));
}

// A TCP connection to the daemon from `source` (bound before connect); none on failure.
UniqueFd connectFrom(const std::string& source, int port) {
  UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) return fd;
  sockaddr_in src{};
  src.sin_family = AF_INET;
  inet_pton(AF_INET, source.c_str(), &src.sin_addr);
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&src), sizeof src) != 0) return UniqueFd();
  sockaddr_in dst{};
  dst.sin_family = AF_INET;
  dst.sin_port = htons(static_cast<uint16_t>(port));
  dst.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  timeval tv{5, 0};
  setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&dst), sizeof dst) != 0) return UniqueFd();
  return fd;
}

struct SslFree {
  void operator()(SSL* s) const { SSL_free(s); }
};
struct SslCtxFree {
  void operator()(SSL_CTX* c) const { SSL_CTX_free(c); }
};

// Attack clients do not verify the certificate: they attack, they trust nothing.
SSL_CTX* attackContext() {
  static std::unique_ptr<SSL_CTX, SslCtxFree> ctx(SSL_CTX_new(TLS_client_method()));
  return ctx.get();
}

// One raw TLS connection (blocking, 5 s timeouts) for bytes the test writes itself.
struct RawTls {
  UniqueFd fd;
  std::unique_ptr<SSL, SslFree> ssl;

  bool open(const std::string& source, int port) {
    fd = connectFrom(source, port);
    if (!fd) return false;
    ssl.reset(SSL_new(attackContext()));
    SSL_set_fd(ssl.get(), fd.get());
    ERR_clear_error();
    return SSL_connect(ssl.get()) == 1;
  }
  bool send(std::string_view bytes) {
    ERR_clear_error();
    return SSL_write(ssl.get(), bytes.data(), static_cast<int>(bytes.size())) ==
           static_cast<int>(bytes.size());
  }
  // Whatever the server sent until it closed (or 10 s passed); *closed tells which.
  std::string readAll(bool* closed) {
    std::string out;
    char buf[4096];
    auto deadline = Clock::now() + std::chrono::seconds(10);
    *closed = false;
    while (Clock::now() < deadline) {
      ERR_clear_error();
      int n = SSL_read(ssl.get(), buf, sizeof buf);
      if (n > 0) {
        out.append(buf, static_cast<size_t>(n));
        continue;
      }
      int e = SSL_get_error(ssl.get(), n);
      if (e == SSL_ERROR_WANT_READ && errno == EAGAIN) continue;  // SO_RCVTIMEO: keep waiting
      *closed = true;
      break;
    }
    return out;
  }
  // Without blocking: is there an answer or an EOF to read?
  bool readable() {
    if (SSL_pending(ssl.get()) > 0) return true;
    pollfd p{fd.get(), POLLIN, 0};
    return ::poll(&p, 1, 0) > 0;
  }
};

// A well-formed answer: a status line, a head ending in an empty line.
bool wellFormed(const std::string& answer) {
  return answer.size() >= 16 && answer.compare(0, 9, "HTTP/1.1 ") == 0 &&
         std::isdigit(static_cast<unsigned char>(answer[9])) != 0 &&
         answer.find("\r\n\r\n") != std::string::npos;
}

std::string sourceAddress(int i, int addresses, int first) {
  return "127.0.0." + std::to_string(first + i % addresses);
}

// The attackers: one thread keeping `count` connections of one kind open, each acting once a
// second, and reopening those the server closed. Stops by itself after `seconds`.
class Attack {
 public:
  enum class Kind { kIdleTcp, kSlowHead, kSlowBody };

  Attack(Kind kind, int port, int count, int first_address, int seconds)
      : kind_(kind), port_(port), count_(count), first_(first_address), seconds_(seconds) {}
  ~Attack() { join(); }

  void start() {
    thread_ = std::thread([this] { run(); });
  }
  void join() {
    if (thread_.joinable()) thread_.join();
  }
  bool done() const { return done_; }
  int opened() const { return opened_; }
  int reopened() const { return reopened_; }
  int answers() const { return answers_; }
  int malformed() const { return malformed_; }

 private:
  struct Slot {
    RawTls tls;  // for kIdleTcp only its fd is used
    bool open = false;
  };

  bool openSlot(Slot& s, int i) {
    std::string src = sourceAddress(i, kSize.addresses, first_);
    if (kind_ == Kind::kIdleTcp) {
      s.tls.fd = connectFrom(src, port_);
      s.open = static_cast<bool>(s.tls.fd);
      return s.open;
    }
    s.open = s.tls.open(src, port_);
    if (s.open && kind_ == Kind::kSlowBody) {
      s.open = s.tls.send("POST /v1/login HTTP/1.1\r\nHost: a\r\nContent-Length: 1000000\r\n\r\n");
    } else if (s.open) {
      s.open = s.tls.send("GET /v1/healthz HTTP/1.1\r\n");
    }
    return s.open;
  }

  // One second's action of a slot; false when the server has closed it.
  bool act(Slot& s) {
    if (kind_ == Kind::kIdleTcp) {
      pollfd p{s.tls.fd.get(), POLLIN, 0};
      return ::poll(&p, 1, 0) == 0;  // readable: the server closed it (it says nothing first)
    }
    if (s.tls.readable()) {
      bool closed = false;
      std::string answer = s.tls.readAll(&closed);
      if (!answer.empty()) {
        answers_++;
        if (!wellFormed(answer)) malformed_++;
      }
      return false;
    }
    return s.tls.send(kind_ == Kind::kSlowBody ? "x" : "a");  // a header line that never ends
  }

  void run() {
    std::vector<Slot> slots(static_cast<size_t>(count_));
    for (int i = 0; i < count_; i++) opened_ += openSlot(slots[static_cast<size_t>(i)], i) ? 1 : 0;
    auto end = Clock::now() + std::chrono::seconds(seconds_);
    auto tick = Clock::now();
    while (Clock::now() < end) {
      tick += std::chrono::seconds(1);
      std::this_thread::sleep_until(tick);  // the attack's pace: a byte a second, by design
      for (int i = 0; i < count_; i++) {
        Slot& s = slots[static_cast<size_t>(i)];
        if (s.open && act(s)) continue;
        s = Slot{};
        if (openSlot(s, i)) reopened_++;
      }
    }
    done_ = true;
  }

  Kind kind_;
  int port_, count_, first_, seconds_;
  std::thread thread_;
  std::atomic<bool> done_{false};
  std::atomic<int> opened_{0}, reopened_{0}, answers_{0}, malformed_{0};
};

// The well-behaved client: a fresh HTTPS connection per step, as a script would make, with a
// 10 s timeout; a step that fails or times out counts as 10 s.
struct GoodClient {
  const Daemon& d;
  Poco::Net::Context::Ptr ctx =
      new Poco::Net::Context(Poco::Net::Context::TLS_CLIENT_USE, "", "", d.caFile(),
                             Poco::Net::Context::VERIFY_RELAXED, 9, false);

  std::pair<int, std::string> call(const std::string& method, const std::string& path,
                                   const std::string& body, const std::string& token) {
    try {
      Poco::Net::HTTPSClientSession s("127.0.0.1", static_cast<Poco::UInt16>(d.port()), ctx);
      s.setTimeout(Poco::Timespan(kClientTimeoutS, 0));
      Poco::Net::HTTPRequest req(method, path, Poco::Net::HTTPMessage::HTTP_1_1);
      if (!token.empty()) req.set("Authorization", "Bearer " + token);
      if (method == "POST") {
        req.setContentType("application/json");
        req.setContentLength(static_cast<std::streamsize>(body.size()));
      }
      s.sendRequest(req) << body;
      Poco::Net::HTTPResponse resp;
      std::istream& in = s.receiveResponse(resp);
      std::string out;
      Poco::StreamCopier::copyToString(in, out);
      return {resp.getStatus(), out};
    } catch (const Poco::Exception& e) {
      return {0, e.displayText()};
    }
  }
};

double ms(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

double percentile(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  auto i = std::min(v.size() - 1,
                    static_cast<size_t>(std::lround(p * static_cast<double>(v.size() - 1))));
  return v[i];
}

// Runs kRounds rounds of login / start / logs, spread over the attack; returns each step's ms.
struct Rounds {
  std::vector<double> login, start, logs;
  int failures = 0;
};
// `until`: stop early when it is done (nullptr: run every round back to back).
Rounds goodClientRounds(const Daemon& d, const Attack* until, int rounds = kRounds) {
  GoodClient c{d};
  Rounds r;
  auto t0 = Clock::now();
  auto spacing = std::chrono::milliseconds(kSize.seconds * 1000 / (kRounds + 2));
  for (int i = 0; i < rounds && (until == nullptr || !until->done()); i++) {
    if (until != nullptr) std::this_thread::sleep_until(t0 + spacing * (i + 1));  // pacing
    auto a = Clock::now();
    auto [ls, lb] =
        c.call("POST", "/v1/login",
               "{\"username\":\"admin\",\"password\":\"" + d.adminPassword() + "\"}", "");
    auto b = Clock::now();
    std::string token = jsonField(lb, "token");
    auto [ss, sb] = c.call("POST", "/v1/jobs", "{\"command\":[\"echo\",\"round\"]}", token);
    auto e = Clock::now();
    std::string id = jsonField(sb, "id");
    auto [gs, gb] = c.call("GET", "/v1/jobs/" + id + "/logs?follow=true", "", token);
    auto f = Clock::now();
    bool ok = ls == 201 && ss == 201 && gs == 200 && gb == "round\n";
    if (!ok) {
      r.failures++;
      std::printf("round %d failed: login %d, start %d, logs %d %s\n", i, ls, ss, gs, gb.c_str());
    }
    r.login.push_back(ls == 201 ? ms(b - a) : kClientTimeoutS * 1000.0);
    r.start.push_back(ss == 201 ? ms(e - b) : kClientTimeoutS * 1000.0);
    r.logs.push_back(gs == 200 ? ms(f - e) : kClientTimeoutS * 1000.0);
  }
  return r;
}

void report(const char* scenario, const Rounds& r) {
  for (auto [name, v] : {std::pair{"login", &r.login}, {"start", &r.start}, {"logs", &r.logs}}) {
    if (v->empty()) continue;
    std::printf("[intake] %s: %-5s p50 %7.1f ms  p99 %7.1f ms  max %7.1f ms  (%zu rounds)\n",
                scenario, name, percentile(*v, 0.5), percentile(*v, 0.99),
                *std::max_element(v->begin(), v->end()), v->size());
  }
  std::fflush(stdout);
}

class IntakeAttack : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root";
    raiseDescriptorLimit();
    daemon_ = Daemon::start();  // the shipped defaults: the test must hold with them
    ASSERT_TRUE(daemon_);
    frontend_ = daemon_->frontendPid();
  }

  // Idle TCP connections plus `second` attackers, held for the scenario's time, while the good
  // client runs its rounds.
  void runScenario(const char* name, Attack::Kind second) {
    // The same steps without an attack first: on a loaded machine (CI, parallel builds) a login
    // (argon2id) alone may take a good part of the bound, so the bound grows with it.
    Rounds quiet = goodClientRounds(*daemon_, nullptr, 5);
    report("no attack", quiet);
    ASSERT_EQ(quiet.failures, 0);
    int port = daemon_->port();
    Attack idle(Attack::Kind::kIdleTcp, port, kSize.idle, 2, kSize.seconds);
    Attack slow(second, port, kSize.slow, 2 + kSize.addresses, kSize.seconds);
    idle.start();
    slow.start();
    Rounds r = goodClientRounds(*daemon_, &slow);
    idle.join();
    slow.join();
    std::printf(
        "[intake] %s: %d idle + %d slow connections from %d + %d addresses for %d s; "
        "opened %d + %d, reopened %d + %d after the server closed them, %d answers\n",
        name, kSize.idle, kSize.slow, kSize.addresses, kSize.addresses, kSize.seconds,
        idle.opened(), slow.opened(), idle.reopened(), slow.reopened(), slow.answers());
    report(name, r);
    EXPECT_EQ(r.failures, 0);
    EXPECT_EQ(static_cast<int>(r.login.size()), kRounds);
    EXPECT_EQ(slow.malformed(), 0) << "answers to attackers must be well-formed HTTP";
    EXPECT_EQ(idle.opened(), kSize.idle);
    EXPECT_EQ(slow.opened(), kSize.slow);
    if (!JW_ASAN) {
      for (auto [v, q] :
           {std::pair{&r.login, &quiet.login}, {&r.start, &quiet.start}, {&r.logs, &quiet.logs}}) {
        double bound = std::max(ms(kStepBound), 4 * percentile(*q, 0.5));
        EXPECT_LT(*std::max_element(v->begin(), v->end()), bound) << name;
      }
    }
    EXPECT_EQ(daemon_->frontendPid(), frontend_) << "the frontend crashed and was respawned";
    EXPECT_EQ(https(*daemon_, "GET", "/v1/healthz").status, 200);
  }

  std::unique_ptr<Daemon> daemon_;
  pid_t frontend_ = -1;
};

TEST_F(IntakeAttack, SlowlorisHeadsDoNotTakeTheApiDown) {
  runScenario("slow heads", Attack::Kind::kSlowHead);
}

TEST_F(IntakeAttack, SlowBodyUploadsDoNotTakeTheApiDown) {
  runScenario("slow bodies", Attack::Kind::kSlowBody);
}

// End to end with the real API: a request smuggled behind CL + TE would start a job; it must
// not, and the connection is answered 400 and closed.
TEST_F(IntakeAttack, SmuggledJobStartNeverRuns) {
  std::string token = login(*daemon_, "admin", daemon_->adminPassword());
  std::string job = "{\"command\":[\"echo\",\"smuggled\"]}";
  std::string smuggled =
      "POST /v1/jobs HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer " + token +
      "\r\nContent-Type: application/json\r\nContent-Length: " + std::to_string(job.size()) +
      "\r\n\r\n" + job;
  for (const std::string framing : {"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
                                    "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n"}) {
    RawTls t;
    ASSERT_TRUE(t.open("127.0.0.1", daemon_->port()));
    ASSERT_TRUE(
        t.send("POST /v1/whoami HTTP/1.1\r\nHost: a\r\n" + framing + "\r\n0\r\n\r\n" + smuggled));
    bool closed = false;
    std::string answer = t.readAll(&closed);
    EXPECT_EQ(answer.substr(0, 12), "HTTP/1.1 400") << answer;
    EXPECT_EQ(answer.find("HTTP/1.1", 1), std::string::npos) << answer;
    EXPECT_TRUE(closed);
  }
  HttpResponse list = https(*daemon_, "GET", "/v1/jobs", "", token);
  EXPECT_EQ(list.status, 200);
  EXPECT_EQ(list.body.find("smuggled"), std::string::npos) << list.body;
  EXPECT_EQ(list.body.find("\"id\""), std::string::npos) << "a job ran: " << list.body;
}

// Over max_connections_per_client: a parseable 429 with Retry-After, after the handshake.
TEST_F(IntakeAttack, OverThePerClientCapIs429WithRetryAfter) {
  std::vector<std::unique_ptr<RawTls>> held;
  for (int i = 0; i < 32; i++) {  // the shipped max_connections_per_client, all mid-request
    held.push_back(std::make_unique<RawTls>());
    ASSERT_TRUE(held.back()->open("127.0.0.9", daemon_->port()));
    ASSERT_TRUE(held.back()->send("GET /v1/healthz HTTP/1.1\r\n"));
  }
  RawTls extra;
  ASSERT_TRUE(extra.open("127.0.0.9", daemon_->port()));
  extra.send("GET /v1/healthz HTTP/1.1\r\nHost: a\r\n\r\n");
  bool closed = false;
  std::string answer = extra.readAll(&closed);
  EXPECT_EQ(answer.substr(0, 12), "HTTP/1.1 429") << answer;
  EXPECT_NE(answer.find("Retry-After: "), std::string::npos) << answer;
  EXPECT_NE(answer.find("\"too_many_connections\""), std::string::npos) << answer;
  EXPECT_TRUE(closed);
  // Another address is unaffected.
  RawTls other;
  ASSERT_TRUE(other.open("127.0.0.10", daemon_->port()));
  other.send("GET /v1/healthz HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
  EXPECT_EQ(other.readAll(&closed).substr(0, 12), "HTTP/1.1 200");
}

}  // namespace
}  // namespace jw::test
