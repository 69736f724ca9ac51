// The HTTPS server of jobworker-frontend: TLS context set-up, and over the inherited listening
// socket (fd 4) one acceptor thread that owns every waiting connection and a pool of workers that
// only ever see complete requests.
//
// Why this shape: a worker thread must never wait on a client. The acceptor runs the TLS
// handshake and reads requests with non-blocking SSL calls, feeding a strict incremental parser
// (request_intake.h), until a request head and body are complete; only then does it hand the
// connection to a worker, which answers and hands it back. So a silent or slow client costs a
// buffer, never a thread, and deadlines bound each phase. Exactly one thread owns a
// connection's SSL* at a time: the acceptor while it waits, a worker while it answers.
#pragma once

#include <Poco/Net/Context.h>
#include <netinet/in.h>
#include <sys/socket.h>

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
#include "frontend/http/request_intake.h"

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
        header_timeout_ms(c.header_timeout_ms),
        body_timeout_ms(c.body_timeout_ms),
        min_receive_rate(c.min_receive_rate),
        send_timeout_ms(c.send_timeout_ms),
        max_request_head(c.max_request_head),
        max_request_body(c.max_request_body),
        max_buffered_bytes(c.max_buffered_bytes),
        max_queued_requests(c.max_queued_requests) {}

  // Descriptors the server may hold at once: every admitted connection, the few being answered
  // over a cap, and a margin for the process's own (channel, eventfd, stderr, journald).
  uint64_t descriptorsNeeded() const;

  uint32_t threads;
  uint32_t max_connections;
  uint32_t max_connections_per_client;
  uint64_t handshake_timeout_ms;
  uint64_t idle_timeout_ms;
  uint64_t header_timeout_ms;
  uint64_t body_timeout_ms;
  uint64_t min_receive_rate;
  uint64_t send_timeout_ms;
  uint64_t max_request_head;
  uint64_t max_request_body;
  uint64_t max_buffered_bytes;
  uint32_t max_queued_requests;
};

// What the intake refused or cut, since start: what an operator under attack looks at (logged
// every minute while it changes) and what the tests assert.
struct IntakeCounters {
  std::atomic<uint64_t> handshake_timeouts{0};
  std::atomic<uint64_t> header_timeouts{0};  // closed with an incomplete head
  std::atomic<uint64_t> body_timeouts{0};    // 408: body not complete within body_timeout
  std::atomic<uint64_t> slow_bodies{0};      // 408: body under min_receive_rate
  std::atomic<uint64_t> bad_requests{0};     // 4xx from the intake (strict HTTP/1.1, caps)
  std::atomic<uint64_t> over_capacity{0};    // 429/503 after the handshake: connection caps
  std::atomic<uint64_t> queue_full{0};       // 503: every worker busy and the queue full
  std::atomic<uint64_t> dropped{0};          // closed unanswered: too many being answered already
  std::atomic<uint64_t> evicted{0};          // idle connections closed to make room
};

// A client's address as logged, and the key its connections are counted under: the address
// itself for IPv4 (and IPv4-mapped IPv6), its /64 for IPv6 (one host usually holds a whole /64,
// so counting single addresses would give it 2^64 quotas).
struct ClientAddress {
  std::string text;  // "127.0.0.1", "2001:db8::5"
  std::string key;   // "127.0.0.1", "2001:db8::/64"
};
ClientAddress clientAddress(const sockaddr_storage& ss);

using Headers = std::vector<std::pair<std::string, std::string>>;

// One request as a handler sees it: the body is already read (and capped).
struct HttpRequest {
  std::string method;         // a HEAD arrives as GET: the server drops the body of its answer
  std::string target;         // raw request-target, e.g. "/v1/jobs?all=true"
  std::string authorization;  // the Authorization header, "" if absent
  std::string body;           // empty when streamed_body: Responder::readBody() pulls it
  std::string client_addr;    // "127.0.0.1", "::1"
  bool streamed_body = false;
};

// What Responder::readBody() got.
enum class BodyRead {
  kData,     // *out holds more of the body
  kEnd,      // the body is complete (nothing was added)
  kTimeout,  // the client sent nothing for the idle time
  kGone,     // the client closed or reset the connection
  kBad,      // the body's framing is malformed (bodyError() says how)
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
  // A streamed body (HttpRequest::streamed_body), read from the client only when asked: up to
  // `max` decoded bytes appended to *out, waiting at most idle_timeout_ms for the client to send
  // any. An answer sent before the body's end closes the connection afterwards.
  virtual BodyRead readBody(std::string* out, size_t max, uint64_t idle_timeout_ms) {
    (void)out;
    (void)max;
    (void)idle_timeout_ms;
    return BodyRead::kEnd;
  }
  // Why readBody() returned kBad: the status, code and message to answer with.
  virtual IntakeError bodyError() const { return {}; }
  // For the metrics and the access log: the status sent (0: none yet) and the bytes written.
  virtual int statusSent() const { return 0; }
  virtual uint64_t bytesSent() const { return 0; }
};

class RequestHandler {
 public:
  virtual ~RequestHandler() = default;
  virtual void handle(const HttpRequest& request, Responder& out) = 0;
  // Which requests' bodies the handler reads itself, as they arrive (null: none).
  virtual BodyStreamPredicate streamedBodies() const { return nullptr; }
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
  // Stops accepting, closes waiting connections and joins the threads (tests; the frontend
  // itself just exits).
  void stop();

  const IntakeCounters& counters() const { return counters_; }
  // Worker threads alive now (tests: stream workers are released when their stream ends).
  size_t workerThreads();
  // For /metrics: connections admitted and open now, and log streams being served.
  struct Load {
    uint64_t connections = 0;
    uint64_t streams = 0;
  };
  Load load();

  struct Conn;  // one client connection (defined in tls_server.cc)
  struct Work;  // a connection with its complete request, for a worker

 public:  // called by a worker's exchange when a log stream starts and when it ends
  void streamStarted();
  void streamEnded();

 private:
  // Acceptor thread.
  void acceptorLoop();
  void acceptNew(int64_t now_ms);
  void expire(int64_t now_ms);
  enum class Step { kKeep, kClose, kToWorker };
  Step step(Conn& c, int64_t now_ms);
  Step handshake(Conn& c, int64_t now_ms);
  Step readRequest(Conn& c, int64_t now_ms);
  Step flushAnswer(Conn& c, int64_t now_ms);
  Step linger(Conn& c);
  void answerAndClose(Conn& c, int status, const char* code, const std::string& message,
                      int retry_after_s, int64_t now_ms);
  bool dispatch(std::unique_ptr<Conn>& c, int64_t now_ms);
  bool stepAndDispatch(std::unique_ptr<Conn>& c, int64_t now_ms);
  void takeBack();
  void joinExitedWorkers();
  void logCounters(int64_t now_ms);
  bool overBudget() const;
  enum class Admission { kAdmitted, kClientFull, kServerFull };
  Admission admit(const std::string& key);
  bool evictIdle(const std::string* key);  // nullptr: any client
  // Any thread.
  void release(const std::string& key);
  void wakeAcceptor();
  // Worker threads.
  void workerLoop(uint64_t id);
  void spawnWorker();  // with mu_ held
  void serve(Work w);
  void handBack(std::unique_ptr<Conn> c);

  int listen_fd_;
  Poco::Net::Context::Ptr context_;
  ServerLimits limits_;
  RequestHandler& handler_;
  int wake_fd_ = -1;
  std::atomic<bool> stopping_{false};
  IntakeCounters counters_;
  std::atomic<uint64_t> buffered_bytes_{0};  // request bytes held by all connections
  std::atomic<uint32_t> answering_{0};       // over-cap connections being answered

  std::mutex mu_;
  std::condition_variable work_cv_;
  std::deque<Work> work_;                       // complete requests waiting for a worker
  std::vector<std::unique_ptr<Conn>> to_park_;  // handed back by workers to the acceptor
  std::map<std::string, uint32_t> per_client_;
  uint32_t total_ = 0;
  uint32_t streaming_ = 0;    // workers busy with a log stream
  uint64_t next_worker_ = 0;  // ids of worker threads
  size_t live_workers_ = 0;
  std::map<uint64_t, std::thread> workers_;
  std::vector<uint64_t> exited_;  // workers that left the pool, to be joined

  std::vector<std::unique_ptr<Conn>> conns_;  // acceptor thread only: connections it owns
  int64_t counters_logged_ms_ = 0;
  uint64_t counters_logged_sum_ = 0;
  std::thread acceptor_;
};

}  // namespace jw::frontend
