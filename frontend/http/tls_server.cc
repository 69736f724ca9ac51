// The HTTPS server (see tls_server.h): one acceptor thread that accepts, parks and times out
// connections with poll(), and worker threads that run TLS handshakes and HTTP requests; runs
// in jobworker-frontend after its privilege drop.
#include "frontend/http/tls_server.h"

#include <Poco/DateTimeFormat.h>
#include <Poco/DateTimeFormatter.h>
#include <Poco/Exception.h>
#include <Poco/Net/HTTPResponse.h>
#include <Poco/Net/HTTPServerParams.h>
#include <Poco/Net/HTTPServerRequestImpl.h>
#include <Poco/Net/HTTPServerResponseImpl.h>
#include <Poco/Net/HTTPServerSession.h>
#include <Poco/Net/NetException.h>
#include <Poco/Net/SecureStreamSocket.h>
#include <Poco/Net/SecureStreamSocketImpl.h>
#include <Poco/Net/StreamSocketImpl.h>
#include <Poco/Timestamp.h>
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <functional>
#include <optional>
#include <sstream>

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

int64_t monotonicMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

std::string addressText(const sockaddr_storage& ss) {
  char buf[INET6_ADDRSTRLEN] = "?";
  if (ss.ss_family == AF_INET) {
    inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in&>(ss).sin_addr, buf, sizeof buf);
  } else if (ss.ss_family == AF_INET6) {
    const auto& a6 = reinterpret_cast<const sockaddr_in6&>(ss).sin6_addr;
    if (IN6_IS_ADDR_V4MAPPED(&a6)) {
      inet_ntop(AF_INET, &a6.s6_addr[12], buf, sizeof buf);  // one client, one key
    } else {
      inet_ntop(AF_INET6, &a6, buf, sizeof buf);
    }
  }
  return buf;
}

// HTTPSession::buffered() is protected: a worker needs it to know whether a pipelined request
// is already read before parking the connection.
class ServerSession : public Poco::Net::HTTPServerSession {
 public:
  using HTTPServerSession::HTTPServerSession;
  int bufferedBytes() const { return buffered(); }
};

// Poco 1.11's TLS socket reports a blocking receive that hit SO_RCVTIMEO as a negative count
// (SSL "want read"), which its HTTP parser then takes for the end of the stream: a request
// stalled mid-header would be handled as if complete. Turn it into the TimeoutException a
// plain socket throws, so a stalled client is dropped instead.
class ServerTlsImpl : public Poco::Net::SecureStreamSocketImpl {
 public:
  ServerTlsImpl(Poco::Net::StreamSocketImpl* plain, const Poco::Net::Context::Ptr& ctx)
      : SecureStreamSocketImpl(plain, ctx) {
    acceptSSL();  // server side: the handshake itself runs later, step by step
  }
  int receiveBytes(void* buffer, int length, int flags = 0) override {
    int n = SecureStreamSocketImpl::receiveBytes(buffer, length, flags);
    if (n < 0 && getBlocking()) throw Poco::TimeoutException("TLS receive timed out");
    return n;
  }
};

class ServerTlsSocket : public Poco::Net::SecureStreamSocket {
 public:
  explicit ServerTlsSocket(Poco::Net::SocketImpl* impl) : SecureStreamSocket(impl) {}
};

Poco::Timespan msSpan(uint64_t ms) {
  return Poco::Timespan(static_cast<Poco::Timespan::TimeDiff>(ms) * 1000);
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

// --- connections ------------------------------------------------------------------------------

struct TlsServer::Conn {
  TlsServer* server = nullptr;
  int fd = -1;  // owned here until `socket` wraps it
  std::string addr;
  std::optional<Poco::Net::SecureStreamSocket> socket;
  bool handshaken = false;
  short wait_events = POLLIN;
  std::unique_ptr<ServerSession> session;
  int64_t accepted_ms = 0;
  int64_t deadline_ms = 0;
  uint64_t requests = 0;

  ~Conn() {
    session.reset();
    if (socket) {
      try {
        socket->close();
      } catch (...) {  // a peer that went away mid-shutdown: nothing left to do
      }
      socket.reset();
    } else if (fd >= 0) {
      ::close(fd);
    }
    if (server != nullptr) server->release(addr);
  }
  int pollFd() const { return socket ? socket->impl()->sockfd() : fd; }
};

TlsServer::TlsServer(int listen_fd, Poco::Net::Context::Ptr context, ServerLimits limits,
                     RequestHandler& handler)
    : listen_fd_(listen_fd),
      context_(std::move(context)),
      limits_(limits),
      handler_(handler),
      params_(new Poco::Net::HTTPServerParams) {
  params_->setTimeout(msSpan(limits_.idle_timeout_ms));
  params_->setKeepAlive(true);
}

TlsServer::~TlsServer() { stop(); }

Status TlsServer::start() {
  int flags = fcntl(listen_fd_, F_GETFL);
  if (flags < 0 || fcntl(listen_fd_, F_SETFL, flags | O_NONBLOCK) != 0) {
    return sysError("fcntl(O_NONBLOCK) on listening fd " + std::to_string(listen_fd_));
  }
  wake_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (wake_fd_ < 0) return sysError("eventfd");
  acceptor_ = std::thread([this] { acceptorLoop(); });
  std::lock_guard lock(mu_);
  for (uint32_t i = 0; i < std::max<uint32_t>(limits_.threads, 1); i++) {
    workers_.emplace_back([this] { workerLoop(); });
  }
  return okStatus();
}

// A log stream (follow) holds its worker for as long as the job runs. So that followers never
// starve short requests, each stream adds a worker while fewer than `threads` are free; the
// total stays bounded by threads + max_connections (every stream is a connection).
void TlsServer::streamStarted() {
  std::lock_guard lock(mu_);
  streaming_++;
  if (stopping_) return;
  size_t wanted = static_cast<size_t>(streaming_) + std::max<uint32_t>(limits_.threads, 1);
  size_t cap = static_cast<size_t>(limits_.threads) + limits_.max_connections;
  if (workers_.size() < wanted && workers_.size() < cap) {
    workers_.emplace_back([this] { workerLoop(); });
  }
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
  std::vector<std::thread> workers;
  {
    std::lock_guard lock(mu_);  // streamStarted() may add a worker until it sees stopping_
    workers.swap(workers_);
  }
  for (auto& w : workers) {
    if (w.joinable()) w.join();
  }
  std::deque<std::unique_ptr<Conn>> work;
  std::vector<std::unique_ptr<Conn>> to_park;
  {
    std::lock_guard lock(mu_);
    work.swap(work_);
    to_park.swap(to_park_);
  }
  work.clear();  // outside the lock: each Conn's destructor releases its slot under mu_
  to_park.clear();
  parked_.clear();
  if (wake_fd_ >= 0) ::close(wake_fd_);
  wake_fd_ = -1;
}

TlsServer::Admission TlsServer::admit(const std::string& addr) {
  std::lock_guard lock(mu_);
  if (total_ >= limits_.max_connections) return Admission::kServerFull;
  uint32_t& n = per_client_[addr];
  if (n >= limits_.max_connections_per_client) return Admission::kClientFull;
  n++;
  total_++;
  return Admission::kAdmitted;
}

bool TlsServer::evictParked(const std::string* addr) {
  // Connections doing nothing make room for a new one: first those that never completed a
  // handshake, then idle keep-alive ones; the oldest first. Busy connections are never cut.
  auto best = parked_.end();
  for (auto it = parked_.begin(); it != parked_.end(); ++it) {
    if (addr != nullptr && (*it)->addr != *addr) continue;
    if (best == parked_.end() || (!(*it)->handshaken && (*best)->handshaken) ||
        ((*it)->handshaken == (*best)->handshaken && (*it)->accepted_ms < (*best)->accepted_ms)) {
      best = it;
    }
  }
  if (best == parked_.end()) return false;
  parked_.erase(best);  // the destructor closes it and releases its slot
  return true;
}

void TlsServer::release(const std::string& addr) {
  std::lock_guard lock(mu_);
  auto it = per_client_.find(addr);
  if (it == per_client_.end()) return;
  if (--it->second == 0) per_client_.erase(it);
  total_--;
}

void TlsServer::acceptNew(int64_t now_ms) {
  for (;;) {
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    int fd = accept4(listen_fd_, reinterpret_cast<sockaddr*>(&ss), &len, SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK) {
        log::warning(sysError("accept4 on fd " + std::to_string(listen_fd_)).message);
      }
      return;
    }
    std::string addr = addressText(ss);
    Admission a = admit(addr);
    for (int tries = 0; a != Admission::kAdmitted && tries < 2; tries++) {
      if (!evictParked(a == Admission::kClientFull ? &addr : nullptr)) break;
      a = admit(addr);
    }
    if (a != Admission::kAdmitted) {
      // Full of busy connections: closing at once costs the client a retry, the server nothing.
      ::close(fd);
      continue;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    auto c = std::make_unique<Conn>();
    c->server = this;
    c->fd = fd;
    c->addr = std::move(addr);
    c->accepted_ms = now_ms;
    c->deadline_ms = now_ms + static_cast<int64_t>(limits_.handshake_timeout_ms);
    parked_.push_back(std::move(c));
  }
}

void TlsServer::acceptorLoop() {
  std::vector<pollfd> fds;
  while (!stopping_) {
    {
      std::lock_guard lock(mu_);
      for (auto& c : to_park_) parked_.push_back(std::move(c));
      to_park_.clear();
    }
    int64_t now = monotonicMs();
    // Expire parked connections: silent before the handshake, or idle between requests.
    int64_t next_deadline = now + 60'000;
    for (auto it = parked_.begin(); it != parked_.end();) {
      if ((*it)->deadline_ms <= now) {
        it = parked_.erase(it);
      } else {
        next_deadline = std::min(next_deadline, (*it)->deadline_ms);
        ++it;
      }
    }
    fds.clear();
    fds.push_back({listen_fd_, POLLIN, 0});
    fds.push_back({wake_fd_, POLLIN, 0});
    for (auto& c : parked_) fds.push_back({c->pollFd(), c->wait_events, 0});
    int timeout = static_cast<int>(std::max<int64_t>(0, next_deadline - now)) + 1;
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
    // Hand readable connections to the workers (from the back, so erasing keeps indexes).
    std::vector<std::unique_ptr<Conn>> ready;
    for (size_t i = parked_.size(); i-- > 0;) {
      if (fds[i + 2].revents != 0) {
        ready.push_back(std::move(parked_[i]));
        parked_.erase(parked_.begin() + static_cast<std::ptrdiff_t>(i));
      }
    }
    if (!ready.empty()) {
      std::lock_guard lock(mu_);
      for (auto& c : ready) work_.push_back(std::move(c));
      work_cv_.notify_all();
    }
    if (fds[0].revents != 0) acceptNew(monotonicMs());  // poll may have slept for a minute
  }
}

void TlsServer::park(std::unique_ptr<Conn> c) {
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

void TlsServer::workerLoop() {
  for (;;) {
    std::unique_ptr<Conn> c;
    {
      std::unique_lock lock(mu_);
      work_cv_.wait(lock, [&] { return stopping_ || !work_.empty(); });
      if (stopping_) return;
      c = std::move(work_.front());
      work_.pop_front();
    }
    serve(std::move(c));
  }
}

// --- one request ------------------------------------------------------------------------------

namespace {

void writeAll(Poco::Net::StreamSocket& s, std::string_view data) {
  while (!data.empty()) {
    int n = s.sendBytes(data.data(), static_cast<int>(std::min<size_t>(data.size(), 1 << 20)));
    if (n <= 0) throw Poco::Net::NetException("connection closed while writing");
    data.remove_prefix(static_cast<size_t>(n));
  }
}

// Implements Responder over one request of a connection.
class Exchange : public Responder {
 public:
  Exchange(Poco::Net::StreamSocket& socket, const std::string& version, bool keep_alive,
           std::function<void()> on_stream_start = {})
      : socket_(socket),
        version_(version),
        keep_alive_(keep_alive),
        on_stream_start_(std::move(on_stream_start)) {}

  void send(int status, const Headers& headers, std::string_view content_type,
            std::string_view body) override {
    if (state_ != State::kIdle) return;
    Poco::Net::HTTPResponse r = head(status, headers, content_type);
    r.setContentLength64(static_cast<Poco::Int64>(body.size()));
    std::ostringstream os;
    r.write(os);
    std::string out = os.str();
    out.append(body);
    state_ = State::kBroken;  // until fully written
    writeAll(socket_, out);
    state_ = State::kDone;
  }

  bool startChunked(int status, const Headers& headers, std::string_view content_type) override {
    if (state_ != State::kIdle) return false;
    Poco::Net::HTTPResponse r = head(status, headers, content_type);
    r.setChunkedTransferEncoding(true);
    std::ostringstream os;
    r.write(os);
    if (!writeThen(os.str(), State::kStreaming)) return false;
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
    std::string out;
    out.reserve(static_cast<size_t>(n) + data.size() + 2);
    out.append(size_line, static_cast<size_t>(n));
    out.append(data);
    out.append("\r\n");
    return writeThen(out, State::kStreaming);
  }

  bool finishChunked() override {
    if (state_ != State::kStreaming) return false;
    return writeThen("0\r\n\r\n", State::kDone);
  }

  bool clientGone() override {
    pollfd p{socket_.impl()->sockfd(), POLLIN | POLLRDHUP, 0};
    if (::poll(&p, 1, 0) <= 0) return false;
    return (p.revents & (POLLRDHUP | POLLHUP | POLLERR)) != 0;
  }

  bool answered() const { return state_ != State::kIdle; }
  bool streamed() const { return streamed_; }
  // The connection can carry another request only after a complete response.
  bool reusable() const { return state_ == State::kDone && keep_alive_; }

 private:
  enum class State { kIdle, kStreaming, kDone, kBroken };

  Poco::Net::HTTPResponse head(int status, const Headers& headers, std::string_view content_type) {
    Poco::Net::HTTPResponse r;
    r.setVersion(version_ == Poco::Net::HTTPMessage::HTTP_1_0 ? version_
                                                              : Poco::Net::HTTPMessage::HTTP_1_1);
    r.setStatusAndReason(static_cast<Poco::Net::HTTPResponse::HTTPStatus>(status));
    r.set("Date",
          Poco::DateTimeFormatter::format(Poco::Timestamp(), Poco::DateTimeFormat::HTTP_FORMAT));
    if (!content_type.empty()) r.setContentType(std::string(content_type));
    r.set("X-Content-Type-Options", "nosniff");
    r.set("Cache-Control", "no-store");
    for (const auto& [k, v] : headers) r.set(k, v);
    r.setKeepAlive(keep_alive_);
    return r;
  }

  // kBroken until all of `data` is written, then `after`; false when the client is gone.
  bool writeThen(std::string_view data, State after) {
    state_ = State::kBroken;
    try {
      writeAll(socket_, data);
    } catch (const Poco::Exception&) {
      return false;
    }
    state_ = after;
    return true;
  }

  Poco::Net::StreamSocket& socket_;
  std::string version_;
  bool keep_alive_;
  std::function<void()> on_stream_start_;
  bool streamed_ = false;
  State state_ = State::kIdle;
};

void sendPlainError(Poco::Net::StreamSocket& s, int status, const std::string& code,
                    const std::string& message) {
  Exchange e(s, Poco::Net::HTTPMessage::HTTP_1_1, false);
  std::string body = "{\"error\":{\"code\":\"" + code + "\",\"message\":\"" + message + "\"}}";
  try {
    e.send(status, {}, "application/json", body);
  } catch (const Poco::Exception&) {
  }
}

enum class BodyRead { kOk, kTooLarge };

// Reads the request body into *out, at most `max` bytes (Content-Length checked before
// reading anything, chunked bodies cut off at max + 1).
BodyRead readBody(Poco::Net::HTTPServerRequestImpl& req, uint64_t max, std::string* out) {
  out->clear();
  bool chunked = req.getChunkedTransferEncoding();
  Poco::Int64 len = req.getContentLength64();
  if (!chunked && len == Poco::Net::HTTPMessage::UNKNOWN_CONTENT_LENGTH) return BodyRead::kOk;
  if (!chunked && static_cast<uint64_t>(len) > max) return BodyRead::kTooLarge;
  if (req.getExpectContinue()) {
    std::string cont = req.getVersion() + " 100 Continue\r\n\r\n";
    writeAll(req.socket(), cont);
  }
  std::istream& in = req.stream();
  char buf[16384];
  while (in) {
    in.read(buf, sizeof buf);
    std::streamsize n = in.gcount();
    if (n <= 0) break;
    out->append(buf, static_cast<size_t>(n));
    if (out->size() > max) return BodyRead::kTooLarge;
  }
  if (!chunked && out->size() != static_cast<uint64_t>(len)) {
    throw Poco::Net::MessageException("request body shorter than its Content-Length");
  }
  return BodyRead::kOk;
}

// Closing a socket with unread input makes the kernel send a reset, which can destroy the 413
// response before the client reads it. Read and discard what the client is still sending, for
// a bounded time and amount, then close.
void lingeringDrain(Poco::Net::SecureStreamSocket& s) {
  constexpr size_t kMaxDrain = 16 << 20;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  try {
    s.setReceiveTimeout(Poco::Timespan(0, 500'000));
    char buf[16384];
    size_t drained = 0;
    while (drained < kMaxDrain && std::chrono::steady_clock::now() < deadline) {
      int n = s.receiveBytes(buf, sizeof buf);
      if (n <= 0) break;
      drained += static_cast<size_t>(n);
    }
  } catch (const Poco::Exception&) {  // timeout or reset: done either way
  }
}

}  // namespace

// The TLS socket over the accepted fd, made on a connection's first turn in a worker.
void TlsServer::wrapInTls(Conn& c) {
  if (c.socket) return;
  Poco::Net::StreamSocket plain(new Poco::Net::StreamSocketImpl(c.fd));
  c.fd = -1;  // the socket owns it now
  plain.setBlocking(false);
  auto* impl = new ServerTlsImpl(static_cast<Poco::Net::StreamSocketImpl*>(plain.impl()), context_);
  c.socket.emplace(ServerTlsSocket(impl));
}

// One non-blocking handshake step: a slow or silent client waits parked, not in a worker, and
// the handshake deadline set at accept time covers the whole handshake.
TlsServer::Handshake TlsServer::handshakeStep(Conn& c) {
  int rc = c.socket->completeHandshake();
  if (rc == Poco::Net::SecureStreamSocket::ERR_SSL_WANT_READ ||
      rc == Poco::Net::SecureStreamSocket::ERR_SSL_WANT_WRITE) {
    c.wait_events = rc == Poco::Net::SecureStreamSocket::ERR_SSL_WANT_READ ? POLLIN : POLLOUT;
    return Handshake::kWaiting;
  }
  if (rc <= 0) return Handshake::kClosed;
  c.handshaken = true;
  c.wait_events = POLLIN;
  c.socket->setBlocking(true);
  c.socket->setReceiveTimeout(msSpan(limits_.idle_timeout_ms));
  c.socket->setSendTimeout(msSpan(limits_.idle_timeout_ms));
  c.session = std::make_unique<ServerSession>(*c.socket, params_);
  return Handshake::kDone;
}

// Reads one request, has the handler answer it; true when the connection may carry another.
bool TlsServer::serveRequest(Conn& c) {
  Poco::Net::HTTPServerResponseImpl response(*c.session);
  std::optional<Poco::Net::HTTPServerRequestImpl> request;
  try {
    request.emplace(response, *c.session, params_.get());
  } catch (const Poco::Net::NoMessageException&) {
    return false;  // the client closed the connection between requests
  } catch (const Poco::Net::MessageException&) {
    sendPlainError(*c.socket, 400, "bad_request", "malformed HTTP request");
    return false;
  }
  c.requests++;
  HttpRequest req;
  req.method = request->getMethod();
  req.target = request->getURI();
  req.authorization = request->get("Authorization", "");
  req.client_addr = c.addr;
  if (readBody(*request, limits_.max_request_body, &req.body) == BodyRead::kTooLarge) {
    sendPlainError(*c.socket, 413, "too_large",
                   "request body over " + std::to_string(limits_.max_request_body) + " bytes");
    lingeringDrain(*c.socket);
    return false;  // the rest of the body is unread: the connection cannot be reused
  }
  Exchange ex(*c.socket, request->getVersion(), request->getKeepAlive(),
              [this] { streamStarted(); });
  struct StreamGuard {  // streamEnded() however handle() leaves
    TlsServer* server;
    Exchange& ex;
    ~StreamGuard() {
      if (ex.streamed()) server->streamEnded();
    }
  } guard{this, ex};
  handler_.handle(req, ex);
  if (!ex.answered()) {
    ex.send(500, {}, "application/json",
            "{\"error\":{\"code\":\"internal\",\"message\":\"no response\"}}");
  }
  return ex.reusable();
}

void TlsServer::serve(std::unique_ptr<Conn> c) {
  try {
    wrapInTls(*c);
    if (!c->handshaken) {
      Handshake h = handshakeStep(*c);
      if (h == Handshake::kWaiting) {
        park(std::move(c));
        return;
      }
      if (h != Handshake::kDone) return;
    }
    while (serveRequest(*c)) {
      // A pipelined request already here is served at once; otherwise wait parked.
      if (c->session->bufferedBytes() > 0 || c->socket->available() > 0) continue;
      c->deadline_ms = monotonicMs() + static_cast<int64_t>(limits_.idle_timeout_ms);
      park(std::move(c));
      return;
    }
  } catch (const Poco::TimeoutException&) {
    // A client that stopped sending mid-request: drop it.
  } catch (const Poco::Exception& e) {
    // Port scanners and clients refusing our certificate fail the handshake: not worth a line.
    if (c->handshaken) log::info("connection from " + c->addr + " dropped: " + e.displayText());
  } catch (const std::exception& e) {
    log::warning("connection from " + c->addr + " dropped: " + e.what());
  }
}

}  // namespace jw::frontend
