// The jobworker HTTPS client library (CLI process and integration tests): TLS context, requests,
// Poco exception mapping, and the resuming log follower.
#include "client/api_client.h"

#include <Poco/Exception.h>
#include <Poco/JSON/Parser.h>
#include <Poco/Net/HTTPRequest.h>
#include <Poco/Net/HTTPResponse.h>
#include <Poco/Net/HTTPSClientSession.h>
#include <Poco/Net/IPAddress.h>
#include <Poco/Net/NetException.h>
#include <Poco/Net/SSLException.h>
#include <Poco/Net/SSLManager.h>
#include <Poco/Net/SecureStreamSocket.h>
#include <Poco/NumberParser.h>
#include <Poco/URI.h>
#include <fcntl.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <map>
#include <memory>
#include <mutex>
#include <sstream>
#include <thread>
#include <vector>

#include "client/chunked_decoder.h"
#include "jw_build_config.h"

namespace jw::client {
namespace {

using Clock = std::chrono::steady_clock;

constexpr size_t kMaxResponseBody = 64u << 20;  // a full job list is far below this
constexpr size_t kReadSize = 64u << 10;
// Forward-secret AEAD suites only for TLS 1.2; TLS 1.3 suites are all acceptable.
constexpr const char* kCipherList = "ECDHE+AESGCM:ECDHE+CHACHA20";

// The first X509 error of the handshake running on this thread, recorded by our verify callback
// so a failure can say *why* the certificate was refused instead of "certificate verify failed".
thread_local int tl_verify_error = X509_V_OK;

int recordVerifyError(int preverify_ok, X509_STORE_CTX* store) {
  if (!preverify_ok && tl_verify_error == X509_V_OK) {
    tl_verify_error = X509_STORE_CTX_get_error(store);
  }
  return preverify_ok;
}

void initializeSslOnce() {
  static std::once_flag once;
  std::call_once(once, [] { Poco::Net::initializeSSL(); });
}

std::string lowerFirst(std::string s) {
  if (!s.empty() && s[0] >= 'A' && s[0] <= 'Z' && (s.size() < 2 || !(s[1] >= 'A' && s[1] <= 'Z'))) {
    s[0] = static_cast<char>(s[0] - 'A' + 'a');
  }
  return s;
}

std::string toLower(std::string s) {
  for (char& c : s) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return s;
}

// The part of a Poco exception worth showing: its message without the class prefix.
std::string pocoReason(const Poco::Exception& e) {
  std::string m = e.message();
  if (m.empty()) m = e.what();
  return lowerFirst(m);
}

// Where in an exchange an exception happened: it decides between "cannot reach" and "lost".
enum class Phase { kConnect, kResponse, kBody };

ClientError trustError(int verify_error, const ServerUrl& url, const std::string& ca_file) {
  ClientError e{ClientError::Kind::kTrust, "", 0, ""};
  const std::string detail = X509_verify_cert_error_string(verify_error);
  switch (verify_error) {
    case X509_V_ERR_HOSTNAME_MISMATCH:
    case X509_V_ERR_IP_ADDRESS_MISMATCH:
      e.message = "certificate of " + url.text + " is not valid for '" + url.host +
                  "': use the host name or address the certificate was issued for in --server";
      break;
    case X509_V_ERR_CERT_HAS_EXPIRED:
    case X509_V_ERR_CERT_NOT_YET_VALID:
      e.message = "certificate of " + url.text + " is not valid now (" + detail +
                  "): check the clock, or renew the server certificate";
      break;
    default:
      if (ca_file.empty()) {
        e.message = "certificate not trusted (" + detail +
                    "): pass --ca-file with the server's CA certificate (dev mode: "
                    "STATE_DIR/ca.pem)";
      } else {
        e.message = "certificate not trusted (" + detail + "): " + ca_file + " is not the CA of " +
                    url.text + "; pass the right --ca-file";
      }
  }
  return e;
}

// An SSLException: OpenSSL's reason string is all there is to tell a refused certificate, a
// server that went away mid-handshake and a port that does not speak TLS apart.
ClientError mapTlsFailure(const Poco::Exception& ex, const ServerUrl& url,
                          const std::string& ca_file) {
  using K = ClientError::Kind;
  if (tl_verify_error != X509_V_OK) return trustError(tl_verify_error, url, ca_file);
  std::string reason = pocoReason(ex);
  if (reason.find("certificate verify failed") != std::string::npos) {
    return trustError(X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY, url, ca_file);
  }
  if (reason.find("unexpected eof") != std::string::npos ||
      reason.find("connection reset") != std::string::npos) {
    // A frontend restarting under us: the kernel accepted, nobody completed the handshake.
    return {K::kLost, "lost the connection to " + url.text + " (closed during TLS): retry", 0, ""};
  }
  if (reason.find("wrong version number") != std::string::npos ||
      reason.find("packet length too long") != std::string::npos) {
    return {K::kTls,
            "cannot reach " + url.text + ": it does not speak TLS: check the port in --server", 0,
            ""};
  }
  return {
      K::kTls,
      "TLS handshake with " + url.text + " failed (" + reason + "): check --server and --ca-file",
      0, ""};
}

ClientError mapException(const Poco::Exception& ex, Phase phase, const ServerUrl& url,
                         const std::string& ca_file) {
  using K = ClientError::Kind;
  const std::string reach = "cannot reach " + url.text + ": ";
  const std::string lost = "lost the connection to " + url.text + " (";
  if (dynamic_cast<const Poco::Net::ConnectionRefusedException*>(&ex)) {
    return {
        K::kConnect,
        reach + "connection refused: check that jobworkerd is running and that --server is right",
        0, ""};
  }
  if (dynamic_cast<const Poco::Net::DNSException*>(&ex)) {
    return {K::kResolve, reach + "host '" + url.host + "' not found: check --server", 0, ""};
  }
  if (dynamic_cast<const Poco::TimeoutException*>(&ex)) {
    if (phase == Phase::kConnect) {
      return {K::kTimeout, reach + "timed out: check --server and the network", 0, ""};
    }
    return {K::kTimeout, url.text + " did not answer in time: retry later", 0, ""};
  }
  if (dynamic_cast<const Poco::Net::SSLConnectionUnexpectedlyClosedException*>(&ex)) {
    return {K::kLost,
            lost + "closed during TLS): retry; if it persists, check that " + url.text +
                " is a jobworker server",
            0, ""};
  }
  if (dynamic_cast<const Poco::Net::SSLException*>(&ex)) return mapTlsFailure(ex, url, ca_file);
  if (dynamic_cast<const Poco::Net::NoMessageException*>(&ex)) {
    return {K::kLost, url.text + " closed the connection without answering: retry", 0, ""};
  }
  if (dynamic_cast<const Poco::Net::MessageException*>(&ex)) {
    return {K::kProtocol,
            url.text + " sent a malformed HTTP response (" + pocoReason(ex) +
                "): check that --server points at jobworker",
            0, ""};
  }
  if (dynamic_cast<const Poco::Net::ConnectionResetException*>(&ex) ||
      dynamic_cast<const Poco::Net::ConnectionAbortedException*>(&ex)) {
    // kLost either way: a reset during the handshake is what a restarting frontend looks like.
    if (phase == Phase::kConnect) return {K::kLost, reach + pocoReason(ex) + ": retry", 0, ""};
    return {K::kLost, lost + pocoReason(ex) + "): retry", 0, ""};
  }
  if (dynamic_cast<const Poco::Net::NetException*>(&ex) ||
      dynamic_cast<const Poco::IOException*>(&ex)) {
    if (phase == Phase::kConnect) {
      return {K::kConnect, reach + pocoReason(ex) + ": check --server and the network", 0, ""};
    }
    return {K::kLost, lost + pocoReason(ex) + "): retry", 0, ""};
  }
  return {K::kProtocol, "request to " + url.text + " failed (" + pocoReason(ex) + ")", 0, ""};
}

// HTTPSClientSession with two protected members made usable: connecting (TCP and TLS handshake)
// before the request is written, and the raw read (body bytes buffered with the headers first,
// then straight from the socket in large reads).
class Session : public Poco::Net::HTTPSClientSession {
 public:
  using HTTPSClientSession::HTTPSClientSession;
  void open() { connect(Poco::Net::SocketAddress(getHost(), getPort())); }
  int readSome(char* buf, std::streamsize n) { return read(buf, n); }
  // Straight to the socket, past the request stream's small buffer (which then has nothing to
  // flush but the chunked body's end).
  void writeAll(std::string_view data) {
    while (!data.empty()) {
      int n = write(data.data(), static_cast<std::streamsize>(data.size()));
      if (n <= 0) throw Poco::IOException("connection closed while sending");
      data.remove_prefix(static_cast<size_t>(n));
    }
  }
};

// A stored TLS session handed to Poco, which frees it with the connection (its constructor is
// protected: Poco only makes these from its own sockets).
class ResumableSession : public Poco::Net::Session {
 public:
  explicit ResumableSession(SSL_SESSION* owned) : Poco::Net::Session(owned) {}
};

// A connection is reused only this soon after its last answer: well inside any server's
// keep-alive timeout (the frontend's idle_timeout, 60 s by default), so a command's requests,
// which follow each other at once, share one connection and never meet a server-side close.
constexpr auto kReuseWindow = std::chrono::seconds(2);
constexpr size_t kMaxIdleConnections = 4;
// Groups the client offers, X25519 first: the server's list (frontend/http/tls_server.cc) has
// no X448, and a key share it cannot use costs a HelloRetryRequest round trip.
constexpr const char* kGroups = "X25519:P-256:P-384";
constexpr const char* kTicketMagic = "jobworker tls session 1";

Poco::Timespan timespan(std::chrono::milliseconds ms) {
  return Poco::Timespan(static_cast<long>(ms.count() / 1000),
                        static_cast<long>(ms.count() % 1000) * 1000);
}

// Reads a whole response body; false when it grows past kMaxResponseBody.
bool readBoundedBody(std::istream& is, std::string* body) {
  std::vector<char> buf(kReadSize);
  while (is && body->size() <= kMaxResponseBody) {
    is.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    body->append(buf.data(), static_cast<size_t>(is.gcount()));
  }
  return body->size() <= kMaxResponseBody;
}

// How reading a log body ended.
enum class BodyEnd {
  kComplete,    // the framing says every byte arrived (or, close-delimited, the server closed)
  kCut,         // the connection ended first
  kStopped,     // the sink asked to stop
  kBadFraming,  // the chunked framing was broken
};
using DeliverFn = std::function<bool(std::string_view)>;

BodyEnd readChunkedBody(Session& session, const DeliverFn& deliver, std::string* framing_error) {
  std::vector<char> buf(kReadSize);
  ChunkedDecoder decoder;
  bool stopped = false;
  const ChunkedDecoder::DataFn pass_on = [&](std::string_view piece) {
    if (deliver(piece)) return true;
    stopped = true;
    return false;
  };
  while (!decoder.done()) {
    int n = session.readSome(buf.data(), static_cast<std::streamsize>(buf.size()));
    if (n <= 0) break;
    if (!decoder.feed(std::string_view(buf.data(), static_cast<size_t>(n)), pass_on)) {
      if (stopped) return BodyEnd::kStopped;
      *framing_error = decoder.error();
      return BodyEnd::kBadFraming;
    }
  }
  return decoder.done() ? BodyEnd::kComplete : BodyEnd::kCut;
}

BodyEnd readSizedBody(Session& session, uint64_t left, const DeliverFn& deliver) {
  std::vector<char> buf(kReadSize);
  while (left > 0) {
    auto want = static_cast<std::streamsize>(std::min<uint64_t>(left, buf.size()));
    int n = session.readSome(buf.data(), want);
    if (n <= 0) break;
    left -= static_cast<uint64_t>(n);
    if (!deliver(std::string_view(buf.data(), static_cast<size_t>(n)))) return BodyEnd::kStopped;
  }
  return left == 0 ? BodyEnd::kComplete : BodyEnd::kCut;
}

// Close-delimited: the end cannot be told from a cut; streamLogs() checks the job's status.
BodyEnd readUntilClose(Session& session, const DeliverFn& deliver) {
  std::vector<char> buf(kReadSize);
  while (true) {
    int n = session.readSome(buf.data(), static_cast<std::streamsize>(buf.size()));
    if (n <= 0) return BodyEnd::kComplete;
    if (!deliver(std::string_view(buf.data(), static_cast<size_t>(n)))) return BodyEnd::kStopped;
  }
}

BodyEnd readLogBody(Session& session, Poco::Net::HTTPResponse& resp, const DeliverFn& deliver,
                    std::string* framing_error) {
  if (resp.getChunkedTransferEncoding()) return readChunkedBody(session, deliver, framing_error);
  if (resp.hasContentLength()) {
    return readSizedBody(session, static_cast<uint64_t>(resp.getContentLength64()), deliver);
  }
  return readUntilClose(session, deliver);
}

// What a round that read the body this way has to report; nothing when it ended as it should.
std::optional<ClientError> bodyEndError(BodyEnd end, const std::string& framing_error,
                                        const ServerUrl& url) {
  switch (end) {
    case BodyEnd::kComplete:
    case BodyEnd::kStopped:
      return std::nullopt;
    case BodyEnd::kBadFraming:
      return ClientError{ClientError::Kind::kLost,
                         "bad chunked framing from " + url.text + " (" + framing_error + ")", 0,
                         ""};
    case BodyEnd::kCut:
      break;
  }
  return ClientError{ClientError::Kind::kLost,
                     "lost the connection to " + url.text + " (closed mid-stream)", 0, ""};
}

// Resuming anywhere but at `offset` would lose or repeat bytes.
std::optional<ClientError> resumedElsewhere(const Poco::Net::HTTPResponse& resp,
                                            const std::string& job_id, uint64_t offset) {
  std::string echoed = resp.get("X-Jobworker-Offset", "");
  if (echoed.empty() || echoed == std::to_string(offset)) return std::nullopt;
  return ClientError{ClientError::Kind::kProtocol,
                     "the server resumed job " + job_id + "'s output at byte " + echoed +
                         " instead of " + std::to_string(offset),
                     0, ""};
}

// The first connection of a tail/since request has no offset yet: the server picks the start.
std::string logsPath(const LogRequest& lr, std::optional<uint64_t> offset) {
  std::string path = "/v1/jobs/" + urlEncode(lr.job_id) + "/logs?";
  if (offset) {
    path += "offset=" + std::to_string(*offset);
  } else {
    if (lr.tail_lines) path += "tail_lines=" + std::to_string(*lr.tail_lines) + "&";
    if (!lr.since.empty()) path += "since=" + urlEncode(lr.since) + "&";
    path.pop_back();
  }
  if (lr.follow) path += "&follow=true";
  if (lr.timestamps) path += "&timestamps=true";
  if (!lr.stream.empty()) path += "&stream=" + urlEncode(lr.stream);
  return path;
}

// A timestamps=true body: every line starts with a kStampWidth-byte stamp ("2026-12-02T03:31:
// 07.123Z "), the rest is the log's bytes. Forwards stamps only whole (a stamp cut by a dropped
// connection is sent again whole by the next one) and counts the log bytes, which is what a
// reconnect's offset needs.
class StampedStream {
 public:
  static constexpr size_t kStampWidth = 25;
  bool feed(std::string_view piece, const ChunkSink& sink) {
    size_t i = 0;
    while (i < piece.size()) {
      if (line_start_) {
        size_t take = std::min(kStampWidth - held_.size(), piece.size() - i);
        held_.append(piece.substr(i, take));
        i += take;
        if (held_.size() < kStampWidth) return true;
        if (!sink(held_)) return false;
        held_.clear();
        line_start_ = false;
        continue;
      }
      size_t nl = piece.find('\n', i);
      size_t end = nl == std::string_view::npos ? piece.size() : nl + 1;
      log_bytes_ += end - i;
      if (!sink(piece.substr(i, end - i))) return false;
      line_start_ = nl != std::string_view::npos;
      i = end;
    }
    return true;
  }
  void reconnected() { held_.clear(); }
  uint64_t logBytes() const { return log_bytes_; }

 private:
  bool line_start_ = true;  // every request starts at a line (tail/since, 0, or after a '\n')
  std::string held_;
  uint64_t log_bytes_ = 0;
};

void prepareRequest(Poco::Net::HTTPRequest& req, const std::string& token) {
  req.set("User-Agent", std::string("jobworker/") + JW_VERSION);
  req.set("Accept", "application/json");
  if (!token.empty()) req.set("Authorization", "Bearer " + token);
  req.setKeepAlive(true);
}

Response collectResponse(Poco::Net::HTTPResponse& resp, std::string body) {
  Response r;
  r.status = static_cast<int>(resp.getStatus());
  for (const auto& [name, value] : resp) r.headers[toLower(name)] = value;
  r.body = std::move(body);
  if (r.status == Poco::Net::HTTPResponse::HTTP_UNAUTHORIZED ||
      resp.getContentType().find("json") != std::string::npos) {
    if (!r.body.empty()) {
      try {
        Poco::JSON::Parser parser;
        r.json = parser.parse(r.body);
      } catch (const Poco::Exception&) {
        r.json.clear();  // callers that need JSON report a protocol error
      }
    }
  }
  return r;
}

bool isFinalState(const std::string& s) { return s == "exited" || s == "killed" || s == "failed"; }

// The server ends a follow stream when the job has ended, or when the session has expired or
// was revoked. Confirm the first, and that every byte the server stored has arrived, before
// telling the caller "done"; a 401 is the second. Any other status that cannot be read counts
// as confirmed: the stream itself ended properly.
// Asked with the wait long poll, for at most a second: the final status is there at once when
// the job has ended (or within moments, while jobworkerd publishes it), and a stream that ended
// early is resumed soon. `final_status` gets the answer when it is final.
enum class FollowEnd { kEnded, kEarly, kSessionEnded };
FollowEnd followEnd(const ApiClient& api, const LogRequest& lr, uint64_t offset,
                    std::optional<Response>* final_status) {
  auto st = api.request("GET", "/v1/jobs/" + urlEncode(lr.job_id) + "/wait?timeout_s=1");
  if (st && st->status == 401) return FollowEnd::kSessionEnded;
  if (!st || st->status != 200 || !st->object()) return FollowEnd::kEnded;
  auto o = st->object();
  std::string state = o->optValue<std::string>("state", "");
  const char* count_field = lr.stream == "stderr" ? "stderr_bytes" : "output_bytes";
  uint64_t stored = o->has(count_field) && o->get(count_field).isNumeric()
                        ? o->get(count_field).convert<uint64_t>()
                        : 0;
  if (!isFinalState(state) || offset < stored) return FollowEnd::kEarly;
  *final_status = std::move(st.value());
  return FollowEnd::kEnded;
}

int ticketIndex() {
  static const int index = SSL_CTX_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
  return index;
}

// The ticket file's first lines: whose ticket it is. A ticket is only offered to the server
// (and with the CA file) it came from.
std::string ticketHeader(const ServerUrl& url, const std::string& ca_file) {
  return std::string(kTicketMagic) + "\nserver " + url.text + "\nca " + ca_file + "\n";
}

// The stored ticket when it belongs to this server and CA, is ours alone and still valid.
SSL_SESSION* loadTicket(const std::string& path, const std::string& header) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) return nullptr;
  struct stat st {};
  std::string text;
  if (fstat(fd, &st) == 0 && st.st_uid == geteuid() && (st.st_mode & 077) == 0 &&
      st.st_size < (64 << 10)) {
    text.resize(static_cast<size_t>(st.st_size));
    ssize_t n = ::read(fd, text.data(), text.size());
    text.resize(n > 0 ? static_cast<size_t>(n) : 0);
  }
  close(fd);
  if (text.compare(0, header.size(), header) != 0) return nullptr;
  BIO* bio =
      BIO_new_mem_buf(text.data() + header.size(), static_cast<int>(text.size() - header.size()));
  if (bio == nullptr) return nullptr;
  SSL_SESSION* session = PEM_read_bio_SSL_SESSION(bio, nullptr, nullptr, nullptr);
  BIO_free(bio);
  if (session == nullptr) return nullptr;
  bool valid = SSL_SESSION_is_resumable(session) == 1 &&
               SSL_SESSION_get_time(session) + SSL_SESSION_get_timeout(session) > time(nullptr);
  if (!valid) {
    SSL_SESSION_free(session);
    return nullptr;
  }
  return session;
}

// Written beside the token with the token's care: a new 0600 file renamed over the old one.
void saveTicket(const std::string& path, const std::string& header, SSL_SESSION* session) {
  BIO* bio = BIO_new(BIO_s_mem());
  if (bio == nullptr) return;
  std::string text = header;
  char* data = nullptr;
  if (PEM_write_bio_SSL_SESSION(bio, session) == 1) {
    long n = BIO_get_mem_data(bio, &data);
    if (n > 0) text.append(data, static_cast<size_t>(n));
  }
  BIO_free(bio);
  if (text.size() == header.size()) return;
  std::string tmp = path + ".tmp." + std::to_string(getpid());
  int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) return;  // no directory yet (the first login): the next command stores one
  bool ok = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
  ok = close(fd) == 0 && ok;
  if (!ok || rename(tmp.c_str(), path.c_str()) != 0) unlink(tmp.c_str());
}

}  // namespace

// What every copy of one ApiClient shares: the TLS context, the connections kept alive between
// requests, the newest session ticket and the final statuses follow streams ended with.
struct ApiClient::Shared {
  Shared(Poco::Net::Context::Ptr ctx, std::string file, std::string header)
      : context(std::move(ctx)), ticket_file(std::move(file)), ticket_header(std::move(header)) {}
  ~Shared() {
    idle.clear();
    SSL_CTX_set_cert_verify_callback(context->sslContext(), nullptr, nullptr);
    SSL_CTX_set_ex_data(context->sslContext(), ticketIndex(), nullptr);
    if (ticket != nullptr) SSL_SESSION_free(ticket);
  }
  Shared(const Shared&) = delete;
  Shared& operator=(const Shared&) = delete;

  // A kept-alive connection (reused: true), else a new one that resumes the stored session.
  std::unique_ptr<Session> take(const ServerUrl& url, bool* reused) {
    std::lock_guard<std::mutex> lock(mutex);
    *reused = false;
    while (!idle.empty()) {
      Idle i = std::move(idle.back());
      idle.pop_back();
      if (Clock::now() - i.since < kReuseWindow && i.session->connected()) {
        *reused = true;
        return std::move(i.session);
      }
    }
    Poco::Net::Session::Ptr resume;
    if (ticket != nullptr && SSL_SESSION_up_ref(ticket) == 1) resume = new ResumableSession(ticket);
    auto s = std::make_unique<Session>(url.host, url.port, context, resume);
    s->setKeepAlive(true);
    // Staleness is decided here (kReuseWindow), not by Poco's own timer, which would reconnect
    // silently without the ticket.
    s->setKeepAliveTimeout(Poco::Timespan(3600, 0));
    return s;
  }
  // Counts a connection just made (its handshake done).
  void opened(Session& s) {
    stats.opened++;
    if (Poco::Net::SecureStreamSocket(s.socket()).sessionWasReused()) stats.resumed++;
  }
  // After a complete answer the server keeps open.
  void giveBack(std::unique_ptr<Session> s) {
    std::lock_guard<std::mutex> lock(mutex);
    if (s->connected() && idle.size() < kMaxIdleConnections) {
      idle.push_back({std::move(s), Clock::now()});
    }
  }
  void keepTicket(SSL_SESSION* session) {
    std::lock_guard<std::mutex> lock(mutex);
    if (ticket != nullptr) SSL_SESSION_free(ticket);
    ticket = session;
    if (!ticket_file.empty()) saveTicket(ticket_file, ticket_header, session);
  }

  struct Idle {
    std::unique_ptr<Session> session;
    Clock::time_point since;
  };
  Poco::Net::Context::Ptr context;
  const std::string ticket_file;
  const std::string ticket_header;
  std::mutex mutex;
  std::vector<Idle> idle;
  SSL_SESSION* ticket = nullptr;  // owned
  std::map<std::string, Response> final_statuses;
  std::once_flag system_store_loaded;  // see verifyWithSystemStore
  struct {
    std::atomic<unsigned> opened{0};
    std::atomic<unsigned> resumed{0};
  } stats;
};

namespace {

// OpenSSL hands over each session ticket the server sends (TLS 1.3 sends them after the
// handshake); returning 1 keeps its reference.
int onNewTicket(SSL* ssl, SSL_SESSION* session) {
  auto* shared =
      static_cast<ApiClient::Shared*>(SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), ticketIndex()));
  if (shared == nullptr || SSL_SESSION_is_resumable(session) != 1) return 0;
  shared->keepTicket(session);
  return 1;
}

// Certificate verification against the system's trust store, loaded by the first handshake
// that has a certificate to verify: reading Debian's bundle (about 140 certificates) costs
// 30-55 ms, more than the rest of a command, and a resumed handshake (every command after the
// first within the ticket's lifetime) never needs it. An explicit --ca-file is one or two
// certificates and stays loaded up front, where a bad file is reported before any connection.
int verifyWithSystemStore(X509_STORE_CTX* store_ctx, void* arg) {
  auto* shared = static_cast<ApiClient::Shared*>(arg);
  X509_STORE* store = X509_STORE_CTX_get0_store(store_ctx);
  // A failure leaves the store empty: the chain then fails as untrusted, which says --ca-file.
  std::call_once(shared->system_store_loaded, [store] { X509_STORE_set_default_paths(store); });
  return X509_verify_cert(store_ctx);
}

}  // namespace

bool ClientError::transient() const {
  switch (kind) {
    case Kind::kConnect:
    case Kind::kResolve:
    case Kind::kTimeout:
    case Kind::kLost:
      return true;
    case Kind::kHttp:
      return http_status == 502 || http_status == 503 || http_status == 504;
    default:
      return false;
  }
}

ClientResult<ServerUrl> parseServerUrl(const std::string& input) {
  auto bad = [&](const std::string& why) {
    return ClientError{ClientError::Kind::kLocal,
                       "bad server URL '" + input + "' (" + why + "): use https://HOST:PORT", 0,
                       ""};
  };
  if (input.empty()) return bad("empty");
  std::string text = input;
  if (text.find("://") == std::string::npos) text = "https://" + text;
  Poco::URI uri;
  try {
    uri = Poco::URI(text);
  } catch (const Poco::Exception& e) {
    return bad(pocoReason(e));
  }
  if (toLower(uri.getScheme()) != "https") {
    return bad("only https is supported: the session token must not travel in clear text");
  }
  if (uri.getHost().empty()) return bad("no host");
  if (!uri.getUserInfo().empty() || !uri.getQuery().empty() || !uri.getFragment().empty() ||
      (uri.getPath() != "" && uri.getPath() != "/")) {
    return bad("give only scheme, host and port");
  }
  ServerUrl url;
  url.host = uri.getHost();
  url.port = uri.getPort();
  if (url.port == 0) return bad("port 0");
  Poco::Net::IPAddress ip;
  url.host_is_ip = Poco::Net::IPAddress::tryParse(url.host, ip);
  bool v6 = url.host_is_ip && ip.family() == Poco::Net::IPAddress::IPv6;
  url.text = "https://" + (v6 ? "[" + url.host + "]" : url.host) + ":" + std::to_string(url.port);
  return url;
}

Poco::JSON::Object::Ptr Response::object() const {
  if (json.type() == typeid(Poco::JSON::Object::Ptr))
    return json.extract<Poco::JSON::Object::Ptr>();
  return nullptr;
}

std::string Response::errorCode() const {
  auto o = object();
  if (!o) return "";
  auto err = o->getObject("error");
  if (!err || !err->has("code") || !err->get("code").isString()) return "";
  return err->getValue<std::string>("code");
}

std::string Response::errorMessage() const {
  auto o = object();
  if (o) {
    auto err = o->getObject("error");
    if (err && err->has("message") && err->get("message").isString()) {
      return err->getValue<std::string>("message");
    }
  }
  return "HTTP " + std::to_string(status) + " " +
         Poco::Net::HTTPResponse::getReasonForStatus(
             static_cast<Poco::Net::HTTPResponse::HTTPStatus>(status));
}

std::string Response::header(const std::string& lower_name) const {
  auto it = headers.find(lower_name);
  return it == headers.end() ? "" : it->second;
}

ClientError httpError(const Response& r, const std::string& what, const ServerUrl& server) {
  ClientError e{ClientError::Kind::kHttp, "", r.status, r.errorCode()};
  const std::string msg = r.errorMessage();
  switch (r.status) {
    case 401:
      e.message = "session expired or revoked: run 'jobworker login --server " + server.text + "'";
      break;
    case 403:
      e.message = "permission denied (" + msg + "): ask an administrator for a role that allows it";
      break;
    case 404:
      e.message = what.empty() ? "not found (" + msg + ")"
                               : what + " not found: list jobs with 'jobworker list'";
      break;
    case 429: {
      std::string after = r.header("retry-after");
      e.message = "too many requests (" + msg + "): retry " +
                  (after.empty() ? "later" : "in " + after + " s");
      break;
    }
    case 502:
    case 503:
    case 504:
      e.message = "server " + server.text + " unavailable (" + msg + "): retry later";
      break;
    default:
      e.message =
          (what.empty() ? "" : what + ": ") + "the server refused the request (" + msg + ")";
  }
  return e;
}

std::string urlEncode(std::string_view s) {
  // RFC 3986's whole reserved set: Poco's encode() leaves "&=+/:;?@#" alone by default, which in
  // a query value would start a new parameter or change the path. Only unreserved bytes
  // (A-Z a-z 0-9 - _ . ~) stay as they are.
  static const std::string kReserved = ":/?#[]@!$&'()*+,;=";
  std::string out;
  Poco::URI::encode(std::string(s), kReserved, out);
  return out;
}

ClientResult<ApiClient> ApiClient::create(Settings settings) {
  initializeSslOnce();
  auto url = parseServerUrl(settings.server);
  if (!url) return url.error();
  using K = ClientError::Kind;
  if (!settings.ca_file.empty()) {
    // Checked here so the user reads "No such file" rather than an OpenSSL error stack.
    int fd = open(settings.ca_file.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      return ClientError{K::kLocal,
                         "cannot read CA file " + settings.ca_file + ": " + std::strerror(errno) +
                             ": check --ca-file",
                         0, ""};
    }
    close(fd);
  }
  Poco::Net::Context::Params p;
  p.caLocation = settings.ca_file;
  p.loadDefaultCAs = false;  // the system store is loaded when needed: verifyWithSystemStore
  p.verificationMode = Poco::Net::Context::VERIFY_STRICT;
  p.verificationDepth = 9;
  p.cipherList = kCipherList;
  Poco::Net::Context::Ptr ctx;
  try {
    ctx = new Poco::Net::Context(Poco::Net::Context::TLS_CLIENT_USE, p);
    ctx->requireMinimumProtocol(Poco::Net::Context::PROTO_TLSV1_2);
  } catch (const Poco::Exception& e) {
    return ClientError{K::kLocal,
                       "cannot use CA file " + settings.ca_file + " (" + pocoReason(e) +
                           "): pass a PEM file with the server's CA certificate",
                       0, ""};
  }
  // Host checking by OpenSSL during the handshake (X509_check_host / X509_check_ip rules: SANs,
  // IP SANs for addresses). Poco's own post-handshake check is off: for an IP it resolves the
  // certificate's DNS names and compares addresses, and it skips "localhost" in relaxed mode.
  ctx->enableExtendedCertificateVerification(false);
  SSL_CTX* ssl_ctx = ctx->sslContext();
  X509_VERIFY_PARAM* vp = SSL_CTX_get0_param(ssl_ctx);
  X509_VERIFY_PARAM_set_hostflags(vp, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
  int set_ok = url->host_is_ip ? X509_VERIFY_PARAM_set1_ip_asc(vp, url->host.c_str())
                               : X509_VERIFY_PARAM_set1_host(vp, url->host.c_str(), 0);
  if (set_ok != 1) {
    return ClientError{K::kLocal, "cannot check certificates for host '" + url->host + "'", 0, ""};
  }
  // Replaces Poco's callback, which routes failures through the global SSLManager's handlers.
  SSL_CTX_set_verify(ssl_ctx, SSL_VERIFY_PEER, &recordVerifyError);
  if (SSL_CTX_set1_groups_list(ssl_ctx, kGroups) != 1) {
    return ClientError{K::kLocal, "cannot set the TLS key exchange groups", 0, ""};
  }
  // Session tickets: OpenSSL hands each one to onNewTicket (no internal cache: a CLI process
  // is short-lived); Poco offers the one passed to a new connection only with a cache mode on.
  SSL_CTX_set_session_cache_mode(ssl_ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
  SSL_CTX_sess_set_new_cb(ssl_ctx, &onNewTicket);
  std::string header = ticketHeader(url.value(), settings.ca_file);
  auto shared = std::make_shared<Shared>(ctx, settings.tls_session_file, header);
  SSL_CTX_set_ex_data(ssl_ctx, ticketIndex(), shared.get());
  if (settings.ca_file.empty()) {
    SSL_CTX_set_cert_verify_callback(ssl_ctx, &verifyWithSystemStore, shared.get());
  }
  if (!settings.tls_session_file.empty()) {
    shared->ticket = loadTicket(settings.tls_session_file, header);
  }
  return ApiClient(std::move(settings), std::move(url.value()), std::move(shared));
}

ApiClient::ConnectionStats ApiClient::connectionStats() const {
  return {shared_->stats.opened.load(), shared_->stats.resumed.load()};
}

std::optional<Response> ApiClient::knownFinalStatus(const std::string& job_id) const {
  std::lock_guard<std::mutex> lock(shared_->mutex);
  auto it = shared_->final_statuses.find(job_id);
  if (it == shared_->final_statuses.end()) return std::nullopt;
  return it->second;
}

ClientResult<Response> ApiClient::request(const std::string& method, const std::string& path,
                                          const std::optional<std::string>& json_body) const {
  // A connection cut before the request went out (a frontend being restarted, which the
  // supervisor does within a second or two) is retried; so is any cut of a GET, which is
  // idempotent. Other failures are reported at once.
  constexpr int kAttempts = 4;
  for (int attempt = 1;; ++attempt) {
    bool before_send = false;
    auto r = requestOnce(method, path, json_body, &before_send);
    if (r || attempt == kAttempts || r.error().kind != ClientError::Kind::kLost ||
        !(before_send || method == "GET")) {
      return r;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(250 * attempt));
  }
}

ClientResult<Response> ApiClient::requestOnce(const std::string& method, const std::string& path,
                                              const std::optional<std::string>& json_body,
                                              bool* before_send) const {
  Phase phase = Phase::kConnect;
  tl_verify_error = X509_V_OK;
  *before_send = true;
  try {
    bool reused = false;
    std::unique_ptr<Session> kept = shared_->take(url_, &reused);
    Session& session = *kept;
    session.setTimeout(timespan(settings_.connect_timeout), timespan(settings_.io_timeout),
                       timespan(settings_.io_timeout));
    Poco::Net::HTTPRequest req(method, path, Poco::Net::HTTPMessage::HTTP_1_1);
    prepareRequest(req, settings_.token);
    if (json_body) {
      req.setContentType("application/json");
      req.setContentLength(static_cast<std::streamsize>(json_body->size()));
    } else if (method == "POST" || method == "PUT") {
      req.setContentLength(0);
    }
    // Connects and completes the TLS handshake first, so that a failure up to here means the
    // server has seen nothing of the request.
    if (!reused) {
      session.open();
      shared_->opened(session);
    }
    *before_send = false;
    std::ostream& os = session.sendRequest(req);
    if (json_body) os << *json_body;
    os.flush();
    phase = Phase::kResponse;
    Poco::Net::HTTPResponse resp;
    std::istream& is = session.receiveResponse(resp);
    phase = Phase::kBody;
    std::string body;
    if (!readBoundedBody(is, &body)) {
      return ClientError{ClientError::Kind::kProtocol,
                         url_.text + " sent an oversized response to " + method + " " + path, 0,
                         ""};
    }
    if (resp.getKeepAlive()) shared_->giveBack(std::move(kept));
    return collectResponse(resp, std::move(body));
  } catch (const Poco::Exception& e) {
    return mapException(e, phase, url_, settings_.ca_file);
  } catch (const std::exception& e) {
    return ClientError{ClientError::Kind::kProtocol,
                       "request to " + url_.text + " failed (" + e.what() + ")", 0, ""};
  }
}

ClientResult<Response> ApiClient::request(const std::string& method, const std::string& path,
                                          const Poco::JSON::Object::Ptr& body) const {
  if (!body) return request(method, path, std::optional<std::string>());
  std::ostringstream os;
  body->stringify(os);
  return request(method, path, std::optional<std::string>(os.str()));
}

ClientResult<LoginInfo> ApiClient::login(const std::string& user,
                                         const std::string& password) const {
  Poco::JSON::Object::Ptr body = new Poco::JSON::Object;
  body->set("username", user);
  body->set("password", password);
  auto r = request("POST", "/v1/login", body);
  if (!r) return r.error();
  using K = ClientError::Kind;
  if (r->status == 401 || r->status == 403) {
    return ClientError{K::kHttp, "login failed: wrong user name or password", r->status,
                       r->errorCode()};
  }
  if (r->status == 429) {
    std::string after = r->header("retry-after");
    return ClientError{K::kHttp,
                       "login failed: too many failed attempts: wait " +
                           (after.empty() ? std::string("a minute") : after + " s") +
                           " and try again",
                       429, r->errorCode()};
  }
  if (r->status != 200 && r->status != 201) return httpError(r.value(), "login", url_);
  auto o = r->object();
  if (!o || !o->has("token") || !o->get("token").isString()) {
    return ClientError{K::kProtocol,
                       url_.text +
                           " answered the login without a token: check that "
                           "--server points at jobworker",
                       0, ""};
  }
  LoginInfo info;
  info.token = o->getValue<std::string>("token");
  info.user = o->optValue<std::string>("user", user);
  info.role = o->optValue<std::string>("role", "");
  info.expires_at = o->optValue<std::string>("expires_at", "");
  return info;
}

namespace {

// A job that does not read holds its upload this long at most before we give up on it.
constexpr std::chrono::milliseconds kUploadWait{24LL * 3600 * 1000};
constexpr size_t kUploadChunk = size_t{256} * 1024;

// True when the server has sent something (an early answer: the job closed its stdin) while we
// send: we stop and read it, since writing on until it closes would lose it.
bool serverAnswered(Session& session) {
  pollfd p{session.socket().impl()->sockfd(), POLLIN, 0};
  return ::poll(&p, 1, 0) > 0;
}

// Sends `fd`'s bytes as HTTP chunks until its EOF (or an early answer); false when reading it
// failed (*err).
bool sendChunks(Session& session, int fd, int* err) {
  std::vector<char> buf(kUploadChunk);
  for (;;) {
    if (serverAnswered(session)) return true;
    ssize_t n = ::read(fd, buf.data(), buf.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      *err = errno;
      return false;
    }
    if (n == 0) return true;
    char size_line[24];
    int len = std::snprintf(size_line, sizeof size_line, "%zx\r\n", static_cast<size_t>(n));
    session.writeAll(std::string_view(size_line, static_cast<size_t>(len)));
    session.writeAll(std::string_view(buf.data(), static_cast<size_t>(n)));
    session.writeAll("\r\n");
  }
}

}  // namespace

ClientResult<Response> ApiClient::upload(const std::string& path, int fd) const {
  Phase phase = Phase::kConnect;
  tl_verify_error = X509_V_OK;
  try {
    Session session(url_.host, url_.port, shared_->context);
    session.setTimeout(timespan(settings_.connect_timeout), timespan(kUploadWait),
                       timespan(kUploadWait));
    Poco::Net::HTTPRequest req("PUT", path, Poco::Net::HTTPMessage::HTTP_1_1);
    prepareRequest(req, settings_.token);
    req.setContentType("application/octet-stream");
    req.setChunkedTransferEncoding(true);
    req.set("Expect", "100-continue");
    session.open();
    session.sendRequest(req);
    phase = Phase::kResponse;
    Poco::Net::HTTPResponse resp;
    if (session.peekResponse(resp)) {
      int err = 0;
      try {
        if (!sendChunks(session, fd, &err)) {
          return ClientError{ClientError::Kind::kLocal,
                             std::string("reading the input to send: ") + std::strerror(err), 0,
                             ""};
        }
      } catch (const Poco::Exception&) {
        // The server answered and closed before the end (the job closed its stdin): its answer
        // says why, if it is still there to read.
      }
    }
    std::istream& is = session.receiveResponse(resp);  // ends the chunked body first
    phase = Phase::kBody;
    std::string body;
    readBoundedBody(is, &body);
    return collectResponse(resp, std::move(body));
  } catch (const Poco::Exception& e) {
    return mapException(e, phase, url_, settings_.ca_file);
  } catch (const std::exception& e) {
    return ClientError{ClientError::Kind::kLost,
                       "upload to " + url_.text + " failed (" + e.what() + ")", 0, ""};
  }
}

ClientResult<ApiClient::BodyStream> ApiClient::streamBody(const std::string& path,
                                                          std::chrono::milliseconds idle,
                                                          const ChunkSink& sink) const {
  Phase phase = Phase::kConnect;
  tl_verify_error = X509_V_OK;
  try {
    Session session(url_.host, url_.port, shared_->context);
    session.setTimeout(timespan(settings_.connect_timeout), timespan(settings_.io_timeout),
                       timespan(idle));
    Poco::Net::HTTPRequest req("GET", path, Poco::Net::HTTPMessage::HTTP_1_1);
    prepareRequest(req, settings_.token);
    session.sendRequest(req).flush();
    phase = Phase::kResponse;
    Poco::Net::HTTPResponse resp;
    std::istream& is = session.receiveResponse(resp);
    phase = Phase::kBody;
    BodyStream out;
    if (resp.getStatus() != Poco::Net::HTTPResponse::HTTP_OK) {
      std::string body;
      readBoundedBody(is, &body);
      out.response = collectResponse(resp, std::move(body));
      return out;
    }
    out.response = collectResponse(resp, "");
    std::string framing_error;
    BodyEnd end = readLogBody(session, resp, sink, &framing_error);
    if (auto e = bodyEndError(end, framing_error, url_)) return *e;
    out.complete = end == BodyEnd::kComplete;
    return out;
  } catch (const Poco::Exception& e) {
    return mapException(e, phase, url_, settings_.ca_file);
  } catch (const std::exception& e) {
    return ClientError{ClientError::Kind::kLost,
                       "lost the connection to " + url_.text + " (" + e.what() + ")", 0, ""};
  }
}

struct ApiClient::StreamRound {
  uint64_t bytes = 0;             // delivered to the sink in this round
  std::optional<uint64_t> start;  // where the server started (tail/since: X-Jobworker-Offset)
  bool complete = false;          // the body ended properly (terminating chunk, full length)
  bool aborted = false;           // the sink asked to stop
  bool idle_timeout = false;      // the connection was quiet for idle_reconnect
  bool responded = false;         // the server answered 200 (the stream worked at least once)
  std::optional<ClientError> error;
};

ClientResult<ApiClient::StreamRound> ApiClient::streamOnce(const LogRequest& lr,
                                                           std::optional<uint64_t> offset,
                                                           const ChunkSink& sink) const {
  StreamRound round;
  Phase phase = Phase::kConnect;
  tl_verify_error = X509_V_OK;
  auto deliver = [&](std::string_view piece) {
    if (piece.empty()) return true;
    round.bytes += piece.size();
    if (!sink(piece)) {
      round.aborted = true;
      return false;
    }
    return true;
  };
  try {
    bool reused = false;
    std::unique_ptr<Session> kept = shared_->take(url_, &reused);
    Session& session = *kept;
    auto conn = timespan(settings_.connect_timeout);
    session.setTimeout(conn, conn, timespan(lr.follow ? lr.idle_reconnect : settings_.io_timeout));
    Poco::Net::HTTPRequest req("GET", logsPath(lr, offset), Poco::Net::HTTPMessage::HTTP_1_1);
    prepareRequest(req, settings_.token);
    req.set("Accept", "application/octet-stream");
    session.sendRequest(req).flush();
    if (!reused) shared_->opened(session);
    phase = Phase::kResponse;
    Poco::Net::HTTPResponse resp;
    std::istream& is = session.receiveResponse(resp);
    phase = Phase::kBody;
    if (resp.getStatus() != Poco::Net::HTTPResponse::HTTP_OK) {
      std::string body;
      readBoundedBody(is, &body);  // an error reply cut at the cap still says something
      round.error = httpError(collectResponse(resp, std::move(body)), "job " + lr.job_id, url_);
      return round;
    }
    round.responded = true;
    if (!offset) {
      std::string start = resp.get("X-Jobworker-Offset", "");
      if (start.empty() || start.size() > 19 ||
          start.find_first_not_of("0123456789") != std::string::npos) {
        return ClientError{ClientError::Kind::kProtocol,
                           url_.text + " did not say where job " + lr.job_id + "'s output starts",
                           0, ""};
      }
      round.start = std::stoull(start);
    } else if (auto moved = resumedElsewhere(resp, lr.job_id, *offset)) {
      return *moved;
    }
    std::string framing_error;
    BodyEnd end = readLogBody(session, resp, deliver, &framing_error);
    round.complete = end == BodyEnd::kComplete;
    round.error = bodyEndError(end, framing_error, url_);
    // A framed body read to its end leaves the connection ready for the next request.
    bool framed = resp.getChunkedTransferEncoding() || resp.hasContentLength();
    if (round.complete && framed && resp.getKeepAlive()) shared_->giveBack(std::move(kept));
    return round;
  } catch (const Poco::Exception& e) {
    ClientError err = mapException(e, phase, url_, settings_.ca_file);
    if (phase == Phase::kBody && err.kind == ClientError::Kind::kTimeout) round.idle_timeout = true;
    round.error = err;
    return round;
  } catch (const std::exception& e) {
    round.error = ClientError{ClientError::Kind::kLost,
                              "lost the connection to " + url_.text + " (" + e.what() + ")", 0, ""};
    return round;
  }
}

ClientResult<LogStreamEnd> ApiClient::streamLogs(const LogRequest& lr, const ChunkSink& sink,
                                                 const RetryObserver& on_retry) const {
  LogStreamEnd end;
  end.offset = lr.offset;
  // Until a tail/since connection has told its start, the server picks it.
  bool started = !lr.tail_lines && lr.since.empty();
  StampedStream stamped;
  ChunkSink stamped_sink = [&](std::string_view piece) { return stamped.feed(piece, sink); };
  auto window_start = Clock::now();
  auto backoff = std::chrono::milliseconds(100);
  unsigned attempt = 0;
  bool connected_once = false;
  while (true) {
    uint64_t log_bytes_before = stamped.logBytes();
    stamped.reconnected();
    auto r = streamOnce(lr, started ? std::optional<uint64_t>(end.offset) : std::nullopt,
                        lr.timestamps ? stamped_sink : sink);
    if (!r) return r.error();
    StreamRound& round = r.value();
    if (round.start) {
      end.offset = *round.start;
      started = true;
    }
    end.offset += lr.timestamps ? stamped.logBytes() - log_bytes_before : round.bytes;
    if (round.aborted) {
      end.aborted = true;
      return end;
    }
    connected_once = connected_once || round.responded;
    if (round.bytes > 0 || round.idle_timeout) {
      window_start = Clock::now();
      backoff = std::chrono::milliseconds(100);
      attempt = 0;
    }
    ClientError why;
    if (!round.error) {
      std::optional<Response> final_status;
      FollowEnd how =
          lr.follow ? followEnd(*this, lr, end.offset, &final_status) : FollowEnd::kEnded;
      if (final_status) {
        std::lock_guard<std::mutex> lock(shared_->mutex);
        shared_->final_statuses[lr.job_id] = std::move(*final_status);
      }
      if (how == FollowEnd::kEnded) return end;
      if (how == FollowEnd::kSessionEnded) {
        return ClientError{ClientError::Kind::kHttp,
                           "log stream of job " + lr.job_id + " ended at byte " +
                               std::to_string(end.offset) +
                               ": session expired or revoked: run 'jobworker login --server " +
                               server().text + "'",
                           401, "unauthorized"};
      }
      why = ClientError{ClientError::Kind::kLost,
                        "the server ended the log stream of job " + lr.job_id + " early", 0, ""};
    } else {
      // Once a stream has worked, a failed handshake is a restarting server rather than a
      // misconfiguration (certificate trust failures stay fatal).
      bool retry = round.error->transient() ||
                   (connected_once && round.error->kind == ClientError::Kind::kTls);
      if (!retry) return *round.error;
      why = *round.error;
    }
    if (Clock::now() - window_start > lr.retry_budget) {
      why.message = why.message + "; gave up after " +
                    std::to_string(lr.retry_budget.count() / 1000) + " s of retries at byte " +
                    std::to_string(end.offset);
      return why;
    }
    ++attempt;
    ++end.reconnects;
    if (on_retry && !round.idle_timeout) on_retry(why, attempt);
    if (!round.idle_timeout) {
      std::this_thread::sleep_for(backoff);
      backoff = std::min(backoff * 2, std::chrono::milliseconds(2000));
    }
  }
}

}  // namespace jw::client
