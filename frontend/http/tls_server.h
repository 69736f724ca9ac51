// The HTTPS server of jobworker-frontend: TLS context set-up, an acceptor over the inherited
// listening socket (fd 4), and a fixed set of worker threads running Poco's HTTP request
// parsing over per-connection SecureStreamSockets.
//
// Why not Poco's TCPServer: its dispatcher hands every accepted socket to a pool thread, where
// the TLS handshake blocks; a few silent connections then occupy the whole pool. Here one
// acceptor thread parks connections in poll() until they have bytes to read (with the
// handshake timeout), and parks keep-alive connections again between requests (with the idle
// timeout), so a worker thread is only ever busy with a connection that is talking.
#pragma once

#include <Poco/Net/Context.h>
#include <Poco/Net/HTTPServerParams.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "common/config.h"
#include "common/result.h"

namespace jw::frontend {

// TLS 1.2 minimum; ECDHE with AEAD ciphers only for 1.2; the three standard 1.3 suites; no
// client certificates, renegotiation or compression.
Result<Poco::Net::Context::Ptr> makeTlsContext(const std::string& cert_file,
                                               const std::string& key_file);

// The server's part of the settings. The defaults are config::Settings' own, so they are
// written once (in common/config.h).
struct ServerLimits {
  ServerLimits() : ServerLimits(config::Settings{}) {}
  explicit ServerLimits(const config::Settings& c)
      : threads(c.http_threads),
        max_connections(c.max_connections),
        max_connections_per_client(c.max_connections_per_client),
        handshake_timeout_ms(c.handshake_timeout_ms),
        idle_timeout_ms(c.idle_timeout_ms),
        max_request_body(c.max_request_body) {}

  uint32_t threads;
  uint32_t max_connections;
  uint32_t max_connections_per_client;
  uint64_t handshake_timeout_ms;
  uint64_t idle_timeout_ms;
  uint64_t max_request_body;
};

using Headers = std::vector<std::pair<std::string, std::string>>;

// One request as a handler sees it: the body is already read (and capped).
struct HttpRequest {
  std::string method;
  std::string target;         // raw request-target, e.g. "/v1/jobs?all=true"
  std::string authorization;  // the Authorization header, "" if absent
  std::string body;
  std::string client_addr;  // "127.0.0.1", "::1"
};

// How a handler answers. Exactly one of send() or startChunked() per request.
class Responder {
 public:
  virtual ~Responder() = default;
  virtual void send(int status, const Headers& headers, std::string_view content_type,
                    std::string_view body) = 0;
  // Chunked transfer written straight to the TLS socket: each writeChunk() is one HTTP chunk
  // in one write, so large chunks leave as full 16 KiB TLS records. All return false once
  // the client is gone; the handler then stops.
  virtual bool startChunked(int status, const Headers& headers, std::string_view content_type) = 0;
  virtual bool writeChunk(std::string_view data) = 0;
  virtual bool finishChunked() = 0;
  // True when the client has closed or reset its connection.
  virtual bool clientGone() = 0;
  // The handler is about to hold its worker for long (a follow): the server adds a worker so
  // short requests are not starved.
  virtual void willStream() {}
};

class RequestHandler {
 public:
  virtual ~RequestHandler() = default;
  virtual void handle(const HttpRequest& request, Responder& out) = 0;
};

class TlsServer {
 public:
  TlsServer(int listen_fd, Poco::Net::Context::Ptr context, ServerLimits limits,
            RequestHandler& handler);
  ~TlsServer();
  TlsServer(const TlsServer&) = delete;
  TlsServer& operator=(const TlsServer&) = delete;

  // Creates the wake-up eventfd and the threads. The listening socket must already listen.
  Status start();
  // Stops accepting, closes parked connections and joins the threads (tests; the frontend
  // itself just exits).
  void stop();

  struct Conn;  // one client connection (defined in tls_server.cc)

 private:
  void acceptorLoop();
  void workerLoop();
  void acceptNew(int64_t now_ms);
  void serve(std::unique_ptr<Conn> c);
  void wrapInTls(Conn& c);
  enum class Handshake { kDone, kWaiting, kClosed };
  Handshake handshakeStep(Conn& c);
  bool serveRequest(Conn& c);
  void park(std::unique_ptr<Conn> c);
  void wakeAcceptor();
  enum class Admission { kAdmitted, kClientFull, kServerFull };
  Admission admit(const std::string& addr);
  bool evictParked(const std::string* addr);  // nullptr: any address
  void release(const std::string& addr);

 public:  // called by a worker's exchange when a log stream starts and when it ends
  void streamStarted();
  void streamEnded();

 private:
  int listen_fd_;
  Poco::Net::Context::Ptr context_;
  ServerLimits limits_;
  RequestHandler& handler_;
  Poco::Net::HTTPServerParams::Ptr params_;
  int wake_fd_ = -1;
  std::atomic<bool> stopping_{false};

  std::mutex mu_;
  std::condition_variable work_cv_;
  std::deque<std::unique_ptr<Conn>> work_;      // readable, waiting for a worker
  std::vector<std::unique_ptr<Conn>> to_park_;  // handed back by workers to the acceptor
  std::map<std::string, uint32_t> per_client_;
  uint32_t total_ = 0;
  uint32_t streaming_ = 0;  // workers busy with a log stream

  std::vector<std::unique_ptr<Conn>> parked_;  // acceptor thread only
  std::thread acceptor_;
  std::vector<std::thread> workers_;

  friend struct ConnTicket;
};

}  // namespace jw::frontend
