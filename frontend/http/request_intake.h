// The strict, incremental HTTP/1.1 request intake (RFC 9112) of jobworker-frontend: bytes in,
// a complete request (head and body) or a 4xx out. Runs on the HTTPS acceptor thread, which
// feeds it whatever non-blocking TLS reads return; it holds no socket and allocates no more than
// the head and body caps, so slow clients cost a buffer and the fuzzer can drive it alone.
//
// Why our own parser instead of Poco's HTTPServerRequestImpl: Poco parses only from a blocking
// session (a slow client would hold a thread), and it normalises what it reads (bare LF, obs-fold,
// duplicated or signed Content-Length), so a pre-validation of its result could no longer see
// what a proxy in front of us might read differently.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace jw::frontend {

// One request as the intake delivers it to a worker.
struct IntakeRequest {
  std::string method;         // as sent; HEAD is reported here, the worker answers it as a GET
  std::string target;         // origin-form request-target, e.g. "/v1/jobs?all=true"
  std::string version;        // "HTTP/1.1" or "HTTP/1.0"
  std::string authorization;  // "" when absent
  std::string body;           // empty for a streamed body
  bool keep_alive = true;
  bool expect_continue = false;
  // The body is left to the worker, which pulls it from the connection as it can pass it on
  // (RequestIntake::feedStreamed); no cap applies to its length.
  bool streamed_body = false;
};

// True for the requests whose body the worker streams (given the method and the target).
using BodyStreamPredicate = bool (*)(std::string_view method, std::string_view target);

struct IntakeLimits {
  size_t max_head_bytes = size_t{16} * 1024;  // request line + header fields (and chunked trailers)
  uint64_t max_body_bytes = 1 << 20;
  // Which requests' bodies are streamed to their handler instead of buffered (null: none).
  BodyStreamPredicate streams_body = nullptr;
};

// Why a request was refused: the status, the API error code and a message for the client.
struct IntakeError {
  int status = 400;
  const char* code = "bad_request";
  std::string message;
};

class RequestIntake {
 public:
  enum class Phase {
    kIdle,      // nothing of a request yet (a keep-alive connection between requests)
    kHead,      // part of a request head
    kBody,      // the head is complete, its body is not
    kComplete,  // request() holds a whole request
    kFailed,    // error() says why; the connection must be answered and closed
  };

  explicit RequestIntake(IntakeLimits limits) : limits_(limits) {}

  // Consumes bytes of the request in progress and returns how many it took: fewer than given
  // once the request is complete (the rest is the next, pipelined request) or has failed.
  size_t feed(std::string_view bytes);

  Phase phase() const { return phase_; }
  const IntakeError& error() const { return error_; }
  // Valid once the head is complete (kBody and kComplete).
  const IntakeRequest& request() const { return request_; }
  // Takes the complete request and starts over for the next one on the connection. For a
  // streamed body, the intake then stays in kBody until feedStreamed() has decoded all of it.
  IntakeRequest take();
  // A streamed body's bytes as they arrive: appends the decoded body bytes of `bytes` to *out
  // and returns how many of `bytes` it consumed (fewer once the body is complete, kComplete,
  // or the framing is refused, kFailed).
  size_t feedStreamed(std::string_view bytes, std::string* out);
  // Head and body bytes held for the request in progress.
  size_t bufferedBytes() const { return head_.size() + line_.size() + request_.body.size(); }
  // Body bytes received so far for the request in progress (what the minimum rate measures).
  uint64_t bodyBytesReceived() const { return body_received_; }

 private:
  size_t feedHead(std::string_view bytes);
  size_t feedBody(std::string_view bytes);
  size_t feedChunked(std::string_view bytes);
  bool parseHead();
  bool checkFraming();
  bool parseRequestLine(std::string_view line);
  bool parseField(std::string_view line);
  bool chunkSizeLine(std::string_view line);
  bool trailerLine(std::string_view line);
  bool fail(int status, const char* code, std::string message);
  void finish() { phase_ = Phase::kComplete; }
  std::string& body() { return sink_ != nullptr ? *sink_ : request_.body; }

  IntakeLimits limits_;
  Phase phase_ = Phase::kIdle;
  IntakeError error_;
  IntakeRequest request_;
  std::string head_;        // the head as received, until its empty line
  size_t fields_ = 0;       // header fields seen
  size_t empty_lines_ = 0;  // CRLFs before the request line (RFC 9112 2.2 tolerates a few)
  bool has_host_ = false;
  bool has_transfer_encoding_ = false;
  bool connection_close_ = false;
  bool connection_keep_alive_ = false;
  bool has_length_ = false;
  bool chunked_ = false;
  uint64_t content_length_ = 0;
  uint64_t body_received_ = 0;
  bool streaming_ = false;       // the body goes to feedStreamed()'s caller, uncapped
  std::string* sink_ = nullptr;  // where feedStreamed() puts body bytes

  // Chunked body state: a framing line (size or trailer) being collected, or chunk data.
  enum class Chunk { kSizeLine, kData, kDataEnd, kTrailer };
  Chunk chunk_ = Chunk::kSizeLine;
  std::string line_;          // the framing line so far (without its CRLF)
  uint64_t chunk_left_ = 0;   // data bytes left in the current chunk
  size_t trailer_bytes_ = 0;  // trailer bytes so far, counted against the head cap
};

}  // namespace jw::frontend
