// The HTTPS server (see tls_server.h): one acceptor thread that accepts connections, runs their
// TLS handshakes and reads their requests without blocking, and worker threads that answer
// complete requests; runs in jobworker-frontend after its privilege drop.
#include "frontend/http/tls_server.h"

#include <Poco/DateTimeFormat.h>
#include <Poco/DateTimeFormatter.h>
#include <Poco/Exception.h>
#include <Poco/Net/HTTPResponse.h>
#include <Poco/Timestamp.h>
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <functional>
#include <optional>
#include <sstream>

#include "common/fd.h"
#include "common/log.h"

namespace jw::frontend {

namespace {

constexpr const char* kTls12Ciphers =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";
constexpr const char* kTls13Suites =
    "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256";
constexpr const char* kGroups = "X25519:P-256:P-384";

// Connections over a cap are answered (429/503) by the acceptor after their handshake; past this
// many at once, further ones are closed unanswered (a handshake flood costs us nothing more).
constexpr uint32_t kMaxAnswering = 64;
// An answered error waits this long for the client to read it and close, discarding its input,
// so that closing with unread bytes (a TCP reset) does not destroy the answer.
constexpr int64_t kLingerMs = 2'000;
// The minimum receive rate is measured only after this long in the body.
constexpr int64_t kReceiveRateGraceMs = 5'000;
// The acceptor looks at every deadline at least this often (minimum rates need no exact time).
constexpr int64_t kTickMs = 1'000;
constexpr int kMaxAcceptsPerTurn = 256;
constexpr uint64_t kCountersLogEveryMs = 60'000;
constexpr size_t kReadChunk = size_t{16} * 1024;  // one TLS record

int64_t monotonicMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

struct SslFree {
  void operator()(SSL* s) const { SSL_free(s); }
};
using SslPtr = std::unique_ptr<SSL, SslFree>;

// The head of a response, formatted by Poco (reason phrases, the Date format).
std::string responseHead(int status, const std::string& version, const Headers& headers,
                         std::string_view content_type, const std::optional<uint64_t>& length,
                         bool keep_alive) {
  Poco::Net::HTTPResponse r;
  r.setVersion(version == Poco::Net::HTTPMessage::HTTP_1_0 ? version
                                                           : Poco::Net::HTTPMessage::HTTP_1_1);
  r.setStatusAndReason(static_cast<Poco::Net::HTTPResponse::HTTPStatus>(status));
  r.set("Date",
        Poco::DateTimeFormatter::format(Poco::Timestamp(), Poco::DateTimeFormat::HTTP_FORMAT));
  if (!content_type.empty()) r.setContentType(std::string(content_type));
  r.set("X-Content-Type-Options", "nosniff");
  r.set("Cache-Control", "no-store");
  for (const auto& [k, v] : headers) r.set(k, v);
  if (length) {
    r.setContentLength64(static_cast<Poco::Int64>(*length));
  } else {
    r.setChunkedTransferEncoding(true);
  }
  r.setKeepAlive(keep_alive);
  std::ostringstream os;
  r.write(os);
  return os.str();
}

std::string jsonText(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (c == '"' || c == '\\') out.push_back('\\');
    if (static_cast<unsigned char>(c) < 0x20) continue;  // our own messages: never controls
    out.push_back(c);
  }
  return out;
}

// A complete error answer that closes the connection: {"error":{"code","message"}}.
std::string errorAnswer(int status, const char* code, const std::string& message,
                        int retry_after_s) {
  std::string body = "{\"error\":{\"code\":\"" + std::string(code) + "\",\"message\":\"" +
                     jsonText(message) + "\"}}";
  Headers h;
  if (retry_after_s > 0) h.emplace_back("Retry-After", std::to_string(retry_after_s));
  return responseHead(status, Poco::Net::HTTPMessage::HTTP_1_1, h, "application/json", body.size(),
                      false) +
         body;
}

}  // namespace

Result<Poco::Net::Context::Ptr> makeTlsContext(const std::string& cert_file,
                                               const std::string& key_file) {
  using Poco::Net::Context;
  std::string what = "TLS set-up (certificate " + cert_file + ", key " + key_file + ")";
  try {
    Context::Params p;
    p.certificateFile = cert_file;
    p.privateKeyFile = key_file;
    p.verificationMode = Context::VERIFY_NONE;  // clients authenticate with passwords/tokens
    p.loadDefaultCAs = false;
    p.cipherList = kTls12Ciphers;
    Context::Ptr ctx = new Context(Context::TLS_SERVER_USE, p);
    ctx->requireMinimumProtocol(Context::PROTO_TLSV1_2);
    ctx->preferServerCiphers();
    SSL_CTX* s = ctx->sslContext();
    // Poco 1.11 has no API for TLS 1.3 suites; its cipherList only covers TLS <= 1.2.
    if (SSL_CTX_set_ciphersuites(s, kTls13Suites) != 1)
      return Error{what + ": TLS 1.3 suites refused"};
    if (SSL_CTX_set1_groups_list(s, kGroups) != 1)
      return Error{what + ": key exchange groups refused"};
    SSL_CTX_set_options(s, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
    if (SSL_CTX_check_private_key(s) != 1)
      return Error{what + ": the key does not match the certificate"};
    return ctx;
  } catch (const Poco::Exception& e) {
    return Error{what + ": " + e.displayText()};
  }
}

ClientAddress clientAddress(const sockaddr_storage& ss) {
  char buf[INET6_ADDRSTRLEN] = "?";
  if (ss.ss_family == AF_INET) {
    inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in&>(ss).sin_addr, buf, sizeof buf);
    return {buf, buf};
  }
  if (ss.ss_family != AF_INET6) return {buf, buf};
  in6_addr a6 = reinterpret_cast<const sockaddr_in6&>(ss).sin6_addr;
  if (IN6_IS_ADDR_V4MAPPED(&a6)) {
    inet_ntop(AF_INET, &a6.s6_addr[12], buf, sizeof buf);  // one client, one key
    return {buf, buf};
  }
  inet_ntop(AF_INET6, &a6, buf, sizeof buf);
  ClientAddress out{buf, ""};
  std::memset(&a6.s6_addr[8], 0, 8);
  inet_ntop(AF_INET6, &a6, buf, sizeof buf);
  out.key = std::string(buf) + "/64";
  return out;
}

uint64_t ServerLimits::descriptorsNeeded() const {
  return static_cast<uint64_t>(max_connections) + kMaxAnswering + 64;
}

// --- connections ------------------------------------------------------------------------------

// One client connection. Owned by the acceptor (conns_) while it waits for bytes, by one worker
// while its request is answered; whoever owns it alone touches its SSL*.
struct TlsServer::Conn {
  enum class Stage {
    kHandshake,  // TLS handshake under way
    kReading,    // reading a request (or waiting for the next one on a kept-alive connection)
    kAnswering,  // the acceptor is writing an error answer, then closes
    kLingering,  // answered: discarding the client's input until it closes or time runs out
  };

  Conn(TlsServer& s, UniqueFd f, ClientAddress a, bool counted_in_caps, IntakeLimits limits)
      : server(s), fd(std::move(f)), addr(std::move(a)), counted(counted_in_caps), intake(limits) {}
  ~Conn() {
    setBuffered(0);
    if (ssl && stage != Stage::kHandshake) {
      ERR_clear_error();
      SSL_shutdown(ssl.get());  // close_notify, without waiting for the client's
    }
    ssl.reset();
    fd.reset();
    if (counted) {
      server.release(addr.key);
    } else {
      server.answering_--;
    }
  }
  Conn(const Conn&) = delete;
  Conn& operator=(const Conn&) = delete;

  // Keeps the server-wide buffered byte count in step with this connection's buffers.
  void setBuffered(size_t n) {
    if (n >= accounted) {
      server.buffered_bytes_ += n - accounted;
    } else {
      server.buffered_bytes_ -= accounted - n;
    }
    accounted = n;
  }
  size_t buffered() const { return intake.bufferedBytes() + pending.size(); }
  // A connection between requests (or before its first one): evictable, never mid-request.
  bool idle() const {
    return stage == Stage::kHandshake ||
           (stage == Stage::kReading && intake.phase() == RequestIntake::Phase::kIdle &&
            pending.empty() && requests > 0);
  }

  TlsServer& server;
  UniqueFd fd;
  SslPtr ssl;
  ClientAddress addr;
  bool counted;  // holds a slot of max_connections / max_connections_per_client
  Stage stage = Stage::kHandshake;
  short events = POLLIN;
  RequestIntake intake;
  std::string pending;      // bytes read beyond the request in progress (a pipelined next one)
  std::string out;          // what the acceptor still has to write (100 Continue, an error answer)
  int over_cap_status = 0;  // 429/503: answer that after the handshake
  int64_t accepted_ms = 0;
  int64_t deadline_ms = 0;
  int64_t body_started_ms = 0;
  uint64_t requests = 0;
  size_t accounted = 0;
};

// A connection with the complete request a worker is to answer.
struct TlsServer::Work {
  std::unique_ptr<Conn> conn;
  IntakeRequest request;
};

TlsServer::TlsServer(int listen_fd, Poco::Net::Context::Ptr context, ServerLimits limits,
                     RequestHandler& handler)
    : listen_fd_(listen_fd), context_(std::move(context)), limits_(limits), handler_(handler) {}

TlsServer::~TlsServer() { stop(); }

Status TlsServer::start() {
  int flags = fcntl(listen_fd_, F_GETFL);
  if (flags < 0 || fcntl(listen_fd_, F_SETFL, flags | O_NONBLOCK) != 0) {
    return sysError("fcntl(O_NONBLOCK) on listening fd " + std::to_string(listen_fd_));
  }
  // OpenSSL's socket BIO writes with write(2), not send(MSG_NOSIGNAL): a client that resets
  // mid-answer must cost an EPIPE, not the process.
  std::signal(SIGPIPE, SIG_IGN);
  wake_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (wake_fd_ < 0) return sysError("eventfd");
  acceptor_ = std::thread([this] { acceptorLoop(); });
  std::lock_guard lock(mu_);
  for (uint32_t i = 0; i < std::max<uint32_t>(limits_.threads, 1); i++) spawnWorker();
  return okStatus();
}

void TlsServer::spawnWorker() {
  uint64_t id = next_worker_++;
  live_workers_++;
  workers_.emplace(id, std::thread([this, id] { workerLoop(id); }));
}

size_t TlsServer::workerThreads() {
  std::lock_guard lock(mu_);
  return live_workers_;
}

TlsServer::Load TlsServer::load() {
  std::lock_guard lock(mu_);
  return Load{total_, streaming_};
}

// A log stream (follow) holds its worker for as long as the job runs. So that followers never
// starve short requests, each stream adds a worker while fewer than `threads` are free; the
// total stays bounded by threads + max_connections (every stream is a connection). When a
// stream ends, its worker leaves the pool again if the pool is above what it needs.
void TlsServer::streamStarted() {
  std::lock_guard lock(mu_);
  streaming_++;
  if (stopping_) return;
  size_t wanted = static_cast<size_t>(streaming_) + std::max<uint32_t>(limits_.threads, 1);
  size_t cap = static_cast<size_t>(limits_.threads) + limits_.max_connections;
  if (live_workers_ < wanted && live_workers_ < cap) spawnWorker();
}

void TlsServer::streamEnded() {
  std::lock_guard lock(mu_);
  streaming_--;
}

void TlsServer::stop() {
  if (stopping_.exchange(true)) return;
  if (wake_fd_ >= 0) wakeAcceptor();
  work_cv_.notify_all();
  if (acceptor_.joinable()) acceptor_.join();
  std::map<uint64_t, std::thread> workers;
  {
    std::lock_guard lock(mu_);  // streamStarted() may add a worker until it sees stopping_
    workers.swap(workers_);
  }
  for (auto& [id, w] : workers) {
    if (w.joinable()) w.join();
  }
  std::deque<Work> work;
  std::vector<std::unique_ptr<Conn>> to_park;
  {
    std::lock_guard lock(mu_);
    work.swap(work_);
    to_park.swap(to_park_);
  }
  work.clear();  // outside the lock: each Conn's destructor releases its slot under mu_
  to_park.clear();
  conns_.clear();
  if (wake_fd_ >= 0) ::close(wake_fd_);
  wake_fd_ = -1;
}

// --- admission --------------------------------------------------------------------------------

TlsServer::Admission TlsServer::admit(const std::string& key) {
  std::lock_guard lock(mu_);
  if (total_ >= limits_.max_connections) return Admission::kServerFull;
  uint32_t& n = per_client_[key];
  if (n >= limits_.max_connections_per_client) {
    if (n == 0) per_client_.erase(key);
    return Admission::kClientFull;
  }
  n++;
  total_++;
  return Admission::kAdmitted;
}

void TlsServer::release(const std::string& key) {
  std::lock_guard lock(mu_);
  auto it = per_client_.find(key);
  if (it == per_client_.end()) return;
  if (--it->second == 0) per_client_.erase(it);
  total_--;
}

bool TlsServer::evictIdle(const std::string* key) {
  // Connections doing nothing make room for a new one: first those still in their handshake,
  // then idle keep-alive ones; the oldest first. A connection in the middle of a request (however
  // slow) is never cut for another: it has its own deadlines.
  auto best = conns_.end();
  for (auto it = conns_.begin(); it != conns_.end(); ++it) {
    const Conn& c = **it;
    if (!c.counted || !c.idle() || (key != nullptr && c.addr.key != *key)) continue;
    if (best == conns_.end()) {
      best = it;
      continue;
    }
    const Conn& b = **best;
    bool c_hs = c.stage == Conn::Stage::kHandshake, b_hs = b.stage == Conn::Stage::kHandshake;
    if ((c_hs && !b_hs) || (c_hs == b_hs && c.accepted_ms < b.accepted_ms)) best = it;
  }
  if (best == conns_.end()) return false;
  conns_.erase(best);  // the destructor closes it and releases its slot
  counters_.evicted++;
  return true;
}

void TlsServer::acceptNew(int64_t now_ms) {
  for (int accepted = 0; accepted < kMaxAcceptsPerTurn; accepted++) {
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    UniqueFd fd(
        accept4(listen_fd_, reinterpret_cast<sockaddr*>(&ss), &len, SOCK_CLOEXEC | SOCK_NONBLOCK));
    if (!fd) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK) {
        log::warning(sysError("accept4 on fd " + std::to_string(listen_fd_)).message);
      }
      return;
    }
    ClientAddress addr = clientAddress(ss);
    Admission a = admit(addr.key);
    for (int tries = 0; a != Admission::kAdmitted && tries < 2; tries++) {
      if (!evictIdle(a == Admission::kClientFull ? &addr.key : nullptr)) break;
      a = admit(addr.key);
    }
    bool counted = a == Admission::kAdmitted;
    if (!counted && answering_.load() >= kMaxAnswering) {
      counters_.dropped++;  // fd closes here: a flood of them gets no handshake from us
      continue;
    }
    if (!counted) answering_++;
    int one = 1;
    setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    IntakeLimits il{static_cast<size_t>(limits_.max_request_head), limits_.max_request_body,
                    handler_.streamedBodies()};
    auto c = std::make_unique<Conn>(*this, std::move(fd), std::move(addr), counted, il);
    c->ssl.reset(SSL_new(context_->sslContext()));
    if (!c->ssl || SSL_set_fd(c->ssl.get(), c->fd.get()) != 1) {
      log::warning("TLS: cannot set up a connection (out of memory?)");
      continue;
    }
    SSL_set_accept_state(c->ssl.get());
    // Partial writes and moving buffers: a non-blocking write may go out in pieces; released
    // buffers: an idle connection holds no 16 KiB record buffers.
    SSL_set_mode(c->ssl.get(), SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                                   SSL_MODE_RELEASE_BUFFERS);
    if (!counted) c->over_cap_status = a == Admission::kClientFull ? 429 : 503;
    c->accepted_ms = now_ms;
    c->deadline_ms = now_ms + static_cast<int64_t>(limits_.handshake_timeout_ms);
    conns_.push_back(std::move(c));
  }
}

// --- the acceptor: handshakes, reading requests, deadlines --------------------------------------

bool TlsServer::overBudget() const { return buffered_bytes_.load() >= limits_.max_buffered_bytes; }

// Answers with an error the acceptor writes itself, then closes (after lingering).
void TlsServer::answerAndClose(Conn& c, int status, const char* code, const std::string& message,
                               int retry_after_s, int64_t now_ms) {
  c.out = errorAnswer(status, code, message, retry_after_s);
  c.pending.clear();
  c.stage = Conn::Stage::kAnswering;
  c.deadline_ms = now_ms + static_cast<int64_t>(limits_.send_timeout_ms);
  c.setBuffered(0);
}

TlsServer::Step TlsServer::step(Conn& c, int64_t now_ms) {
  switch (c.stage) {
    case Conn::Stage::kHandshake:
      return handshake(c, now_ms);
    case Conn::Stage::kReading:
      return readRequest(c, now_ms);
    case Conn::Stage::kAnswering:
      return flushAnswer(c, now_ms);
    case Conn::Stage::kLingering:
      return linger(c);
  }
  return Step::kClose;
}

TlsServer::Step TlsServer::handshake(Conn& c, int64_t now_ms) {
  ERR_clear_error();
  int rc = SSL_do_handshake(c.ssl.get());
  if (rc != 1) {
    int e = SSL_get_error(c.ssl.get(), rc);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
      c.events = e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT;
      return Step::kKeep;
    }
    return Step::kClose;  // scanners, clients refusing our certificate: not worth a line
  }
  if (c.over_cap_status != 0) {
    counters_.over_capacity++;
    bool per_client = c.over_cap_status == 429;
    answerAndClose(c, c.over_cap_status, per_client ? "too_many_connections" : "unavailable",
                   per_client ? "too many connections from your address" : "server at capacity", 2,
                   now_ms);
    return flushAnswer(c, now_ms);
  }
  c.stage = Conn::Stage::kReading;
  c.deadline_ms = now_ms + static_cast<int64_t>(limits_.header_timeout_ms);
  return readRequest(c, now_ms);
}

// Writes c.out without blocking; once it is all out, an answering connection starts lingering.
TlsServer::Step TlsServer::flushAnswer(Conn& c, int64_t now_ms) {
  while (!c.out.empty()) {
    ERR_clear_error();
    int n = SSL_write(c.ssl.get(), c.out.data(), static_cast<int>(c.out.size()));
    if (n > 0) {
      c.out.erase(0, static_cast<size_t>(n));
      continue;
    }
    int e = SSL_get_error(c.ssl.get(), n);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
      c.events = e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT;
      return Step::kKeep;
    }
    return Step::kClose;
  }
  if (c.stage != Conn::Stage::kAnswering) return Step::kKeep;
  ERR_clear_error();
  SSL_shutdown(c.ssl.get());
  ::shutdown(c.fd.get(), SHUT_WR);
  c.stage = Conn::Stage::kLingering;
  c.events = POLLIN;
  c.deadline_ms = now_ms + kLingerMs;
  return linger(c);
}

TlsServer::Step TlsServer::linger(Conn& c) {
  char buf[kReadChunk];
  for (;;) {
    ERR_clear_error();
    int n = SSL_read(c.ssl.get(), buf, sizeof buf);
    if (n > 0) continue;
    int e = SSL_get_error(c.ssl.get(), n);
    if (e == SSL_ERROR_WANT_READ) return Step::kKeep;
    return Step::kClose;  // the client closed (or broke) its side: done
  }
}

// Reads what the client sent, feeding the intake, until it would block, the request is
// complete (to a worker) or refused (answered), or the buffer budget is spent (paused).
TlsServer::Step TlsServer::readRequest(Conn& c, int64_t now_ms) {
  if (!c.out.empty()) {  // a 100 Continue still going out
    if (Step s = flushAnswer(c, now_ms); s != Step::kKeep || !c.out.empty()) return s;
  }
  char buf[kReadChunk];
  for (;;) {
    RequestIntake::Phase before = c.intake.phase();
    if (!c.pending.empty()) {
      size_t used = c.intake.feed(c.pending);
      c.pending.erase(0, used);
    }
    RequestIntake::Phase after = c.intake.phase();
    c.setBuffered(c.buffered());
    if (after == RequestIntake::Phase::kFailed) {
      const IntakeError& e = c.intake.error();
      counters_.bad_requests++;
      answerAndClose(c, e.status, e.code, e.message, 0, now_ms);
      return flushAnswer(c, now_ms);
    }
    if (after == RequestIntake::Phase::kComplete) return Step::kToWorker;
    if (before == RequestIntake::Phase::kIdle && after != RequestIntake::Phase::kIdle &&
        c.requests > 0) {
      // The first byte of a request on a kept-alive connection: its head has header_timeout.
      c.deadline_ms = now_ms + static_cast<int64_t>(limits_.header_timeout_ms);
    }
    if (before != RequestIntake::Phase::kBody && after == RequestIntake::Phase::kBody) {
      c.body_started_ms = now_ms;
      c.deadline_ms = now_ms + static_cast<int64_t>(limits_.body_timeout_ms);
      if (c.intake.request().expect_continue) {
        c.out = c.intake.request().version + " 100 Continue\r\n\r\n";
        if (Step s = flushAnswer(c, now_ms); s != Step::kKeep || !c.out.empty()) return s;
      }
    }
    if (overBudget()) return Step::kKeep;  // paused: polled again once the budget has room
    ERR_clear_error();
    int n = SSL_read(c.ssl.get(), buf, sizeof buf);
    if (n > 0) {
      c.pending.append(buf, static_cast<size_t>(n));
      continue;
    }
    int e = SSL_get_error(c.ssl.get(), n);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
      c.events = e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT;
      return Step::kKeep;
    }
    return Step::kClose;  // the client closed or reset: whatever it sent is dropped with it
  }
}

// Deadlines: a silent handshake or idle keep-alive closes quietly; an incomplete head is closed;
// a body that is late or under the minimum rate gets 408.
void TlsServer::expire(int64_t now_ms) {
  for (auto it = conns_.begin(); it != conns_.end();) {
    Conn& c = **it;
    bool in_body =
        c.stage == Conn::Stage::kReading && c.intake.phase() == RequestIntake::Phase::kBody;
    bool too_slow = false;
    if (in_body && limits_.min_receive_rate > 0 &&
        now_ms - c.body_started_ms >= kReceiveRateGraceMs) {
      auto elapsed = static_cast<uint64_t>(now_ms - c.body_started_ms);
      too_slow = c.intake.bodyBytesReceived() * 1000 < limits_.min_receive_rate * elapsed;
    }
    if (c.deadline_ms > now_ms && !too_slow) {
      ++it;
      continue;
    }
    if (in_body) {
      (too_slow ? counters_.slow_bodies : counters_.body_timeouts)++;
      answerAndClose(c, 408, "timeout",
                     too_slow ? "request body arriving slower than the minimum rate"
                              : "request body not complete in time",
                     0, now_ms);
      if (flushAnswer(c, now_ms) != Step::kClose) {
        ++it;
        continue;
      }
    } else if (c.stage == Conn::Stage::kHandshake) {
      counters_.handshake_timeouts++;
    } else if (c.stage == Conn::Stage::kReading &&
               (c.intake.phase() != RequestIntake::Phase::kIdle || c.requests == 0)) {
      counters_.header_timeouts++;
    }
    it = conns_.erase(it);
  }
}

// Hands a complete request to the workers (true: `c` is theirs now), or answers 503 when their
// queue is full.
bool TlsServer::dispatch(std::unique_ptr<Conn>& c, int64_t now_ms) {
  std::unique_lock lock(mu_);
  if (work_.size() >= limits_.max_queued_requests) {
    lock.unlock();
    counters_.queue_full++;
    answerAndClose(*c, 503, "unavailable", "every worker is busy", 1, now_ms);
    return false;
  }
  IntakeRequest r = c->intake.take();
  c->requests++;
  work_.push_back(Work{std::move(c), std::move(r)});
  work_cv_.notify_one();
  return true;
}

// One step of a connection; true when the acceptor is done with it (closed, or a worker's now).
bool TlsServer::stepAndDispatch(std::unique_ptr<Conn>& c, int64_t now_ms) {
  Step s = step(*c, now_ms);
  if (s == Step::kToWorker) {
    if (dispatch(c, now_ms)) return true;
    s = flushAnswer(*c, now_ms);  // the 503
  }
  return s == Step::kClose;
}

void TlsServer::takeBack() {
  std::vector<std::unique_ptr<Conn>> back;
  {
    std::lock_guard lock(mu_);
    back.swap(to_park_);
  }
  int64_t now = monotonicMs();
  for (auto& c : back) {
    // Lingering: answered before its streamed body ended, discarding the rest for a while.
    const bool lingering = c->stage == Conn::Stage::kLingering;
    c->deadline_ms = now + (lingering ? kLingerMs : static_cast<int64_t>(limits_.idle_timeout_ms));
    c->events = POLLIN;
    conns_.push_back(std::move(c));
  }
}

void TlsServer::joinExitedWorkers() {
  std::vector<std::thread> done;
  {
    std::lock_guard lock(mu_);
    for (uint64_t id : exited_) {
      auto it = workers_.find(id);
      if (it == workers_.end()) continue;
      done.push_back(std::move(it->second));
      workers_.erase(it);
    }
    exited_.clear();
  }
  for (auto& t : done) t.join();
}

void TlsServer::logCounters(int64_t now_ms) {
  if (now_ms - counters_logged_ms_ < static_cast<int64_t>(kCountersLogEveryMs)) return;
  const IntakeCounters& k = counters_;
  uint64_t sum = k.handshake_timeouts + k.header_timeouts + k.body_timeouts + k.slow_bodies +
                 k.bad_requests + k.over_capacity + k.queue_full + k.dropped + k.evicted;
  counters_logged_ms_ = now_ms;
  if (sum == counters_logged_sum_) return;
  counters_logged_sum_ = sum;
  log::notice("HTTPS intake since start: " + std::to_string(k.handshake_timeouts) +
              " handshake timeouts, " + std::to_string(k.header_timeouts) + " header timeouts, " +
              std::to_string(k.body_timeouts) + " body timeouts, " + std::to_string(k.slow_bodies) +
              " slow bodies, " + std::to_string(k.bad_requests) + " refused requests, " +
              std::to_string(k.over_capacity) + " over a connection cap, " +
              std::to_string(k.queue_full) + " queue full, " + std::to_string(k.dropped) +
              " dropped unanswered, " + std::to_string(k.evicted) + " idle evicted");
}

void TlsServer::acceptorLoop() {
  std::vector<pollfd> fds;
  std::vector<Conn*> polled;
  while (!stopping_) {
    takeBack();
    joinExitedWorkers();
    int64_t now = monotonicMs();
    expire(now);
    logCounters(now);
    // Step every connection that has work without waiting: handed back with a pipelined
    // request, TLS bytes already decrypted, or reads paused by the budget now lifted.
    bool paused = overBudget();
    int64_t next = now + kTickMs;
    fds.clear();
    polled.clear();
    fds.push_back({listen_fd_, POLLIN, 0});
    fds.push_back({wake_fd_, POLLIN, 0});
    for (size_t i = 0; i < conns_.size();) {
      Conn& c = *conns_[i];
      bool reading = c.stage == Conn::Stage::kReading;
      if (reading && !paused && (!c.pending.empty() || SSL_pending(c.ssl.get()) > 0)) {
        if (stepAndDispatch(conns_[i], now)) {
          conns_.erase(conns_.begin() + static_cast<std::ptrdiff_t>(i));
          continue;
        }
      }
      next = std::min(next, c.deadline_ms);
      if (!(paused && c.stage == Conn::Stage::kReading && c.out.empty())) {
        fds.push_back({c.fd.get(), c.events, 0});
        polled.push_back(&c);
      }
      i++;
    }
    int timeout = static_cast<int>(std::clamp<int64_t>(next - now, 0, kTickMs));
    int n = ::poll(fds.data(), fds.size(), timeout);
    if (n < 0) {
      if (errno == EINTR) continue;
      log::err(sysError("poll in the HTTPS acceptor").message);
      return;
    }
    if (fds[1].revents != 0) {
      uint64_t v;
      ssize_t r = ::read(wake_fd_, &v, sizeof v);
      (void)r;
    }
    now = monotonicMs();
    std::vector<Conn*> ready;
    for (size_t i = 2; i < fds.size(); i++) {
      if (fds[i].revents != 0) ready.push_back(polled[i - 2]);
    }
    if (!ready.empty()) {
      std::sort(ready.begin(), ready.end());
      for (size_t i = 0; i < conns_.size();) {
        if (!std::binary_search(ready.begin(), ready.end(), conns_[i].get())) {
          i++;
          continue;
        }
        if (stepAndDispatch(conns_[i], now)) {
          conns_.erase(conns_.begin() + static_cast<std::ptrdiff_t>(i));
          continue;
        }
        i++;
      }
    }
    if (fds[0].revents != 0) acceptNew(now);
  }
}

void TlsServer::handBack(std::unique_ptr<Conn> c) {
  {
    std::lock_guard lock(mu_);
    to_park_.push_back(std::move(c));
  }
  wakeAcceptor();
}

// The eventfd is non-blocking and only counts: a failed write means it is already non-zero, and
// the acceptor wakes either way.
void TlsServer::wakeAcceptor() {
  uint64_t one = 1;
  ssize_t n = ::write(wake_fd_, &one, sizeof one);
  (void)n;
}

void TlsServer::workerLoop(uint64_t id) {
  for (;;) {
    Work w;
    {
      std::unique_lock lock(mu_);
      work_cv_.wait(lock, [&] { return stopping_ || !work_.empty(); });
      if (stopping_) return;
      w = std::move(work_.front());
      work_.pop_front();
    }
    serve(std::move(w));
    std::lock_guard lock(mu_);
    // A worker added for a stream that has ended leaves; the acceptor joins it.
    if (live_workers_ > static_cast<size_t>(streaming_) + std::max<uint32_t>(limits_.threads, 1)) {
      live_workers_--;
      exited_.push_back(id);
      wakeAcceptor();
      return;
    }
  }
}

// --- answering one request (worker threads) -----------------------------------------------------

namespace {

// Writes all of `data` over a non-blocking TLS connection, waiting at most `timeout_ms` for the
// client to make room each time; false once the client is gone or has stopped reading.
bool sslWriteAll(SSL* ssl, int fd, std::string_view data, uint64_t timeout_ms) {
  while (!data.empty()) {
    ERR_clear_error();
    int n = SSL_write(ssl, data.data(), static_cast<int>(std::min<size_t>(data.size(), 1 << 20)));
    if (n > 0) {
      data.remove_prefix(static_cast<size_t>(n));
      continue;
    }
    int e = SSL_get_error(ssl, n);
    if (e != SSL_ERROR_WANT_WRITE && e != SSL_ERROR_WANT_READ) return false;
    pollfd p{fd, static_cast<short>(e == SSL_ERROR_WANT_WRITE ? POLLOUT : POLLIN), 0};
    int r;
    do {
      r = ::poll(&p, 1, static_cast<int>(std::min<uint64_t>(timeout_ms, INT32_MAX)));
    } while (r < 0 && errno == EINTR);
    if (r <= 0) return false;  // a client that does not read costs a socket buffer, no more
    if ((p.revents & (POLLERR | POLLNVAL)) != 0) return false;
  }
  return true;
}

// Implements Responder over one request of a connection. For a HEAD request every answer
// carries its head only (with the Content-Length the GET would have had).
class Exchange : public Responder {
 public:
  Exchange(TlsServer::Conn& conn, const IntakeRequest& r, uint64_t send_timeout_ms,
           std::function<void()> on_stream_start)
      : conn_(conn),
        ssl_(conn.ssl.get()),
        fd_(conn.fd.get()),
        version_(r.version),
        keep_alive_(r.keep_alive),
        head_only_(r.method == "HEAD"),
        streamed_body_(r.streamed_body),
        continue_pending_(r.streamed_body && r.expect_continue),
        send_timeout_ms_(send_timeout_ms),
        on_stream_start_(std::move(on_stream_start)) {}

  BodyRead readBody(std::string* out, size_t max, uint64_t idle_timeout_ms) override;
  IntakeError bodyError() const override { return conn_.intake.error(); }
  // A streamed body the handler did not read to its end: the connection cannot carry another
  // request.
  bool bodyLeft() const { return streamed_body_ && !body_done_; }

  void send(int status, const Headers& headers, std::string_view content_type,
            std::string_view body) override {
    if (state_ != State::kIdle) return;
    if (bodyLeft()) keep_alive_ = false;
    status_ = status;
    std::string out =
        responseHead(status, version_, headers, content_type, body.size(), keep_alive_);
    if (head_only_) {
      writeThen(out, State::kDone);
      return;
    }
    // A large body (a list of thousands of jobs) is not copied behind the head: the head takes
    // the body's first bytes up to one full TLS record, and the rest is written in place.
    constexpr size_t kTlsRecord = 16384;
    constexpr size_t kCopyUpTo = 4 * kTlsRecord;
    size_t first = body.size();
    if (body.size() > kCopyUpTo) first = out.size() < kTlsRecord ? kTlsRecord - out.size() : 0;
    out.append(body.substr(0, first));
    if (!writeThen(out, first == body.size() ? State::kDone : State::kIdle)) return;
    if (first < body.size()) writeThen(body.substr(first), State::kDone);
  }

  bool startChunked(int status, const Headers& headers, std::string_view content_type) override {
    if (state_ != State::kIdle) return false;
    if (bodyLeft()) keep_alive_ = false;
    status_ = status;
    std::string head =
        responseHead(status, version_, headers, content_type, std::nullopt, keep_alive_);
    if (head_only_) {
      writeThen(head, State::kDone);
      return false;  // nothing more to send: the handler stops
    }
    if (!writeThen(head, State::kStreaming)) return false;
    willStream();
    return true;
  }

  void willStream() override {
    if (!streamed_ && on_stream_start_) on_stream_start_();
    streamed_ = true;
  }

  bool writeChunk(std::string_view data) override {
    if (state_ != State::kStreaming) return false;
    if (data.empty()) return true;  // an empty chunk would end the body
    char size_line[24];
    int n = std::snprintf(size_line, sizeof size_line, "%zx\r\n", data.size());
    // One buffer for the whole stream (its capacity stays), one SSL_write per chunk.
    chunk_.clear();
    chunk_.append(size_line, static_cast<size_t>(n));
    chunk_.append(data);
    chunk_.append("\r\n");
    return writeThen(chunk_, State::kStreaming);
  }

  bool finishChunked() override {
    if (state_ != State::kStreaming) return false;
    return writeThen("0\r\n\r\n", State::kDone);
  }

  bool clientGone() override {
    pollfd p{fd_, POLLIN | POLLRDHUP, 0};
    if (::poll(&p, 1, 0) <= 0) return false;
    return (p.revents & (POLLRDHUP | POLLHUP | POLLERR)) != 0;
  }

  int statusSent() const override { return status_; }
  uint64_t bytesSent() const override { return bytes_sent_; }

  bool answered() const { return state_ != State::kIdle; }
  bool streamed() const { return streamed_; }
  // The connection can carry another request only after a complete response.
  bool reusable() const { return state_ == State::kDone && keep_alive_; }

 private:
  enum class State { kIdle, kStreaming, kDone, kBroken };

  // kBroken until all of `data` is written, then `after`; false when the client is gone.
  bool writeThen(std::string_view data, State after) {
    state_ = State::kBroken;
    if (!sslWriteAll(ssl_, fd_, data, send_timeout_ms_)) return false;
    bytes_sent_ += data.size();
    state_ = after;
    return true;
  }

  TlsServer::Conn& conn_;
  SSL* ssl_;
  int fd_;
  std::string version_;
  bool keep_alive_;
  bool head_only_;
  bool streamed_body_;
  bool continue_pending_;  // Expect: 100-continue, sent when the handler first reads the body
  bool body_done_ = false;
  uint64_t send_timeout_ms_;
  std::function<void()> on_stream_start_;
  bool streamed_ = false;
  State state_ = State::kIdle;
  int status_ = 0;
  uint64_t bytes_sent_ = 0;
  std::string chunk_;  // writeChunk's framing buffer
};

BodyRead Exchange::readBody(std::string* out, size_t max, uint64_t idle_timeout_ms) {
  if (!streamed_body_ || body_done_) return BodyRead::kEnd;
  if (continue_pending_) {
    // Only now: a request refused before its body is read never makes the client send it.
    continue_pending_ = false;
    if (!sslWriteAll(ssl_, fd_, version_ + " 100 Continue\r\n\r\n", send_timeout_ms_)) {
      return BodyRead::kGone;
    }
  }
  const size_t start = out->size();
  RequestIntake& intake = conn_.intake;
  char buf[kReadChunk];
  for (;;) {
    if (!conn_.pending.empty()) {
      // Never more than `max` decoded bytes: the rest of what was read waits in `pending`.
      size_t room = max - (out->size() - start);
      size_t used = intake.feedStreamed(std::string_view(conn_.pending).substr(0, room), out);
      conn_.pending.erase(0, used);
    }
    if (intake.phase() == RequestIntake::Phase::kFailed) return BodyRead::kBad;
    if (intake.phase() == RequestIntake::Phase::kComplete) {
      body_done_ = true;
      (void)intake.take();  // ready for the next request on the connection
      return out->size() > start ? BodyRead::kData : BodyRead::kEnd;
    }
    if (out->size() - start >= max) return BodyRead::kData;
    ERR_clear_error();
    int n = SSL_read(ssl_, buf, sizeof buf);
    if (n > 0) {
      conn_.pending.append(buf, static_cast<size_t>(n));
      continue;
    }
    int e = SSL_get_error(ssl_, n);
    if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) return BodyRead::kGone;
    if (out->size() > start) return BodyRead::kData;  // pass on what came; read more later
    pollfd p{fd_, static_cast<short>(e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT), 0};
    int r;
    do {
      r = ::poll(&p, 1, static_cast<int>(std::min<uint64_t>(idle_timeout_ms, INT32_MAX)));
    } while (r < 0 && errno == EINTR);
    if (r == 0) return BodyRead::kTimeout;
    if (r < 0 || (p.revents & POLLNVAL) != 0) return BodyRead::kGone;
  }
}

}  // namespace

void TlsServer::serve(Work w) {
  Conn& c = *w.conn;
  // The request has left the intake: it counts against the pool's size, no more the budget.
  c.setBuffered(c.buffered());
  HttpRequest req;
  req.method = w.request.method == "HEAD" ? "GET" : w.request.method;
  req.target = std::move(w.request.target);
  req.authorization = std::move(w.request.authorization);
  req.body = std::move(w.request.body);
  req.client_addr = c.addr.text;
  req.streamed_body = w.request.streamed_body;
  Exchange ex(c, w.request, limits_.send_timeout_ms, [this] { streamStarted(); });
  struct StreamGuard {  // streamEnded() however handle() leaves
    TlsServer* server;
    Exchange& ex;
    ~StreamGuard() {
      if (ex.streamed()) server->streamEnded();
    }
  } guard{this, ex};
  try {
    handler_.handle(req, ex);
    if (!ex.answered()) {
      ex.send(500, {}, "application/json",
              "{\"error\":{\"code\":\"internal\",\"message\":\"no response\"}}");
    }
  } catch (const std::exception& e) {
    log::warning("request from " + c.addr.text + " failed: " + e.what());
    return;
  }
  if (ex.bodyLeft() && ex.answered() && !stopping_) {
    // Answered before the client finished its body: close after discarding what it still
    // sends for a while, so that a reset does not destroy the answer.
    ERR_clear_error();
    SSL_shutdown(c.ssl.get());
    ::shutdown(c.fd.get(), SHUT_WR);
    c.pending.clear();
    c.stage = Conn::Stage::kLingering;
    handBack(std::move(w.conn));
    return;
  }
  if (ex.reusable() && !stopping_) handBack(std::move(w.conn));
}

}  // namespace jw::frontend
