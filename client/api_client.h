// The jobworker HTTPS client library (CLI process and integration tests): TLS set-up, REST calls,
// log streaming with resume. Poco exceptions stay inside; callers get values.
#pragma once

#include <Poco/Dynamic/Var.h>
#include <Poco/JSON/Object.h>
#include <Poco/Net/Context.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

#include "common/result.h"

namespace jw::client {

// A failure the user must read: `message` is the whole line after "jobworker: " and says what to
// do. `kind` lets callers (the log follower, `run`) decide between retrying and giving up.
struct ClientError {
  enum class Kind {
    kLocal,     // bad input on our side (URL, CA file): never retried
    kConnect,   // TCP connect failed (refused, unreachable)
    kResolve,   // DNS
    kTimeout,   // connect or read timed out
    kTrust,     // certificate verification failed: retrying cannot help
    kTls,       // other TLS handshake failure
    kLost,      // connection dropped after it was established
    kProtocol,  // the server answered something we cannot use
    kHttp,      // an HTTP error status (see http_status, code)
  };
  Kind kind = Kind::kLocal;
  std::string message;
  int http_status = 0;
  std::string code;  // the API's error code for kHttp, e.g. "not_found"

  // Worth reconnecting after (network trouble, a restarting frontend), not a refusal.
  bool transient() const;
};

// Value or ClientError.
template <typename T>
using ClientResult = jw::Result<T, ClientError>;

// "https://host:port" split and normalised. Only https is accepted: the token must never travel
// in clear text.
struct ServerUrl {
  std::string host;  // without brackets for IPv6
  uint16_t port = 443;
  bool host_is_ip = false;
  std::string text;  // normalised "https://host:port" (IPv6 in brackets)
};
ClientResult<ServerUrl> parseServerUrl(const std::string& url);

// One HTTP exchange. `json` is empty unless the body is JSON.
struct Response {
  int status = 0;
  std::map<std::string, std::string> headers;  // names lower-cased
  std::string body;
  Poco::Dynamic::Var json;

  Poco::JSON::Object::Ptr object() const;  // the body's top-level object, or null
  std::string errorCode() const;           // error.code from an API error body, or ""
  std::string errorMessage() const;        // error.message, or the HTTP reason
  std::string header(const std::string& lower_name) const;
};

struct LoginInfo {
  std::string token;
  std::string user;
  std::string role;
  std::string expires_at;
};

// What streamLogs() reads and how.
struct LogRequest {
  std::string job_id;
  uint64_t offset = 0;
  bool follow = false;
  std::string stream;  // "" (the job's default), "stdout" or "stderr"
  // Where the first connection starts instead of `offset` (which must be 0): the N-th last line
  // and/or the first line since a time (RFC 3339 or a duration back from now, as the server
  // reads it). Reconnects resume at the exact byte, whatever the first one started from.
  std::optional<uint32_t> tail_lines;
  std::string since;
  // Each line prefixed with its arrival time (a fixed-width stamp and a space): delivered as
  // the server sends them, while the offset counts log bytes only.
  bool timestamps = false;
  // How long a dropped connection is retried (with back-off) before giving up; the window
  // restarts each time bytes arrive.
  std::chrono::milliseconds retry_budget{30'000};
  // A silent follow connection is re-opened after this long (a half-open TCP connection
  // would otherwise hang forever); re-opening at the current offset loses nothing.
  std::chrono::milliseconds idle_reconnect{60'000};
};

struct LogStreamEnd {
  uint64_t offset = 0;      // next log byte to read: start offset + log bytes delivered
  bool aborted = false;     // the sink returned false
  unsigned reconnects = 0;  // connections re-opened after a drop
};

// Receives output bytes in order, exactly once each. Return false to stop.
using ChunkSink = std::function<bool(std::string_view)>;
// Told about each reconnect (for a progress note on stderr); may be empty.
using RetryObserver = std::function<void(const ClientError&, unsigned attempt)>;

class ApiClient {
 public:
  struct Settings {
    std::string server;   // URL; parsed by create()
    std::string ca_file;  // PEM with the CA(s) to trust; empty: the system store
    std::string token;    // bearer token; empty: none sent
    std::chrono::milliseconds connect_timeout{10'000};
    std::chrono::milliseconds io_timeout{60'000};
    // Where the TLS session ticket of this server is kept between invocations (beside the
    // token, mode 0600), so that the next command resumes instead of a full handshake. Empty:
    // none kept; a ticket is still reused within the process.
    std::string tls_session_file;
  };

  // Validates the URL and the CA file and builds the TLS context (TLS 1.2+, peer verified,
  // host name or IP checked by OpenSSL during the handshake).
  static ClientResult<ApiClient> create(Settings settings);

  const ServerUrl& server() const { return url_; }
  const std::string& caFile() const { return settings_.ca_file; }
  const std::string& token() const { return settings_.token; }
  void setToken(std::string token) { settings_.token = std::move(token); }

  // One request, on a connection kept alive from the previous one when there is one (every
  // copy of this client shares them), else on a new one. HTTP error statuses are returned as a
  // Response (status >= 400), not as a ClientError; only transport failures are errors.
  ClientResult<Response> request(const std::string& method, const std::string& path,
                                 const std::optional<std::string>& json_body = std::nullopt) const;
  ClientResult<Response> request(const std::string& method, const std::string& path,
                                 const Poco::JSON::Object::Ptr& body) const;

  // POST /v1/login; a 401 becomes "login failed: wrong user name or password".
  ClientResult<LoginInfo> login(const std::string& user, const std::string& password) const;

  // PUT `path` with the bytes read from `fd` until its EOF as a chunked body (Expect:
  // 100-continue, so a refusal comes before any byte is sent). The server takes the body as fast
  // as the job reads it: sending may wait for as long as the job does not read.
  ClientResult<Response> upload(const std::string& path, int fd) const;
  // GET `path` and hand its 200 body to `sink` as it arrives (an error status comes back as the
  // Response, its body read whole). `complete`: the body ended as its framing says.
  struct BodyStream {
    Response response;  // status and headers; body only for an error status
    bool complete = false;
  };
  ClientResult<BodyStream> streamBody(const std::string& path, std::chrono::milliseconds idle,
                                      const ChunkSink& sink) const;

  // Streams GET /v1/jobs/{id}/logs into `sink`, reconnecting at the last offset on drops.
  ClientResult<LogStreamEnd> streamLogs(const LogRequest& req, const ChunkSink& sink,
                                        const RetryObserver& on_retry = {}) const;

  // The final status (GET /v1/jobs/{id}/wait's answer) a follow stream of job `id` confirmed its
  // end with, if one did: `run` needs no request of its own for it.
  std::optional<Response> knownFinalStatus(const std::string& job_id) const;

  // Connections this client (and its copies) opened, and how many of their TLS handshakes
  // resumed a stored session instead of a full handshake.
  struct ConnectionStats {
    unsigned opened = 0;
    unsigned resumed = 0;
  };
  ConnectionStats connectionStats() const;

  struct Shared;  // the TLS context, the idle connections and the session ticket

 private:
  ApiClient(Settings s, ServerUrl url, std::shared_ptr<Shared> shared)
      : settings_(std::move(s)), url_(std::move(url)), shared_(std::move(shared)) {}

  ClientResult<Response> requestOnce(const std::string& method, const std::string& path,
                                     const std::optional<std::string>& json_body,
                                     bool* before_send) const;
  struct StreamRound;
  ClientResult<StreamRound> streamOnce(const LogRequest& req, std::optional<uint64_t> offset,
                                       const ChunkSink& sink) const;

  Settings settings_;
  ServerUrl url_;
  std::shared_ptr<Shared> shared_;
};

// The message for an HTTP error status in a context ("job 3f2a1b2c"): 401 says to log in again,
// 404 says not found, 5xx says to retry, others quote the server.
ClientError httpError(const Response& r, const std::string& what, const ServerUrl& server);

// Percent-encodes a path segment or query value: every byte but A-Z a-z 0-9 - _ . ~ (uppercase
// hex).
std::string urlEncode(std::string_view s);

}  // namespace jw::client
