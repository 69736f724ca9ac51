// The strict, incremental HTTP/1.1 request intake (see request_intake.h); runs on the HTTPS
// acceptor thread of jobworker-frontend, and alone in the request intake fuzzer.
#include "frontend/http/request_intake.h"

#include <algorithm>
#include <cctype>
#include <utility>

namespace jw::frontend {

namespace {

constexpr size_t kMaxFields = 100;            // header fields (and trailer fields) per request
constexpr size_t kMaxEmptyLines = 4;          // CRLFs tolerated before a request line
constexpr size_t kMaxChunkLineBytes = 4096;   // a chunk size line with its extensions
constexpr unsigned kMaxChunkSizeDigits = 15;  // < 2^60: no overflow
constexpr size_t kMaxLengthDigits = 18;       // < 10^18: no overflow
constexpr size_t kMaxMethodBytes = 32;

// RFC 9110 5.6.2 token characters.
bool isTchar(unsigned char c) {
  if (std::isalnum(c) != 0) return true;
  return std::string_view("!#$%&'*+-.^_`|~").find(static_cast<char>(c)) != std::string_view::npos;
}

bool isToken(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(),
                                   [](char c) { return isTchar(static_cast<unsigned char>(c)); });
}

// RFC 9110 5.5 field-value characters: visible, space, tab and obs-text; never a control.
bool isFieldValue(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char ch) {
    auto c = static_cast<unsigned char>(ch);
    return c == '\t' || c == ' ' || (c >= 0x21 && c != 0x7f);
  });
}

bool isWhitespace(char c) { return c == ' ' || c == '\t'; }

std::string_view trimOws(std::string_view s) {
  while (!s.empty() && isWhitespace(s.front())) s.remove_prefix(1);
  while (!s.empty() && isWhitespace(s.back())) s.remove_suffix(1);
  return s;
}

bool equalsIgnoreCase(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}

int hexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// A name: value line, checked alike in the head and in chunked trailers.
bool splitField(std::string_view line, std::string_view* name, std::string_view* value) {
  size_t colon = line.find(':');
  if (colon == std::string_view::npos) return false;
  *name = line.substr(0, colon);
  *value = trimOws(line.substr(colon + 1));
  return isToken(*name) && isFieldValue(*value);
}

}  // namespace

bool RequestIntake::fail(int status, const char* code, std::string message) {
  phase_ = Phase::kFailed;
  error_ = IntakeError{status, code, std::move(message)};
  return false;
}

size_t RequestIntake::feed(std::string_view bytes) {
  size_t used = 0;
  while (used < bytes.size()) {
    if (phase_ == Phase::kIdle || phase_ == Phase::kHead) {
      used += feedHead(bytes.substr(used));
    } else if (phase_ == Phase::kBody) {
      used += chunked_ ? feedChunked(bytes.substr(used)) : feedBody(bytes.substr(used));
    } else {
      break;  // complete or failed: the rest belongs to the next request, or to nobody
    }
  }
  return used;
}

IntakeRequest RequestIntake::take() {
  IntakeRequest r = std::move(request_);
  RequestIntake next(limits_);
  if (r.streamed_body) {
    // The body's framing stays: the worker decodes it through feedStreamed().
    next.phase_ = Phase::kBody;
    next.streaming_ = true;
    next.chunked_ = chunked_;
    next.content_length_ = content_length_;
  }
  *this = std::move(next);
  return r;
}

size_t RequestIntake::feedStreamed(std::string_view bytes, std::string* out) {
  if (!streaming_ || phase_ != Phase::kBody) return 0;
  sink_ = out;
  size_t used = chunked_ ? feedChunked(bytes) : feedBody(bytes);
  sink_ = nullptr;
  return used;
}

// Collects the head up to its empty line, rejecting a bare LF or CR as soon as it is seen.
size_t RequestIntake::feedHead(std::string_view bytes) {
  phase_ = Phase::kHead;
  for (size_t i = 0; i < bytes.size();) {
    char c = bytes[i++];
    if (head_.size() >= limits_.max_head_bytes) {
      fail(431, "headers_too_large",
           "request head over " + std::to_string(limits_.max_head_bytes) + " bytes");
      return i;
    }
    bool after_cr = !head_.empty() && head_.back() == '\r';
    head_.push_back(c);
    if (c != '\n') {
      if (after_cr) {
        fail(400, "bad_request", "CR not followed by LF in the request head");
        return i;
      }
      continue;
    }
    if (!after_cr) {
      fail(400, "bad_request", "bare LF line ending in the request head (CRLF required)");
      return i;
    }
    if (head_ == "\r\n") {  // an empty line before the request line
      head_.clear();
      if (++empty_lines_ > kMaxEmptyLines) {
        fail(400, "bad_request", "empty lines instead of a request line");
        return i;
      }
      continue;
    }
    if (head_.size() >= 4 && head_.compare(head_.size() - 4, 4, "\r\n\r\n") == 0) {
      parseHead();
      return i;  // feed() goes on with the body, if any
    }
  }
  return bytes.size();
}

bool RequestIntake::parseHead() {
  std::string_view rest(head_);
  rest.remove_suffix(2);  // the empty line's CRLF
  bool first = true;
  while (!rest.empty()) {
    size_t end = rest.find("\r\n");
    std::string_view line = rest.substr(0, end);
    rest.remove_prefix(end + 2);
    if (first ? !parseRequestLine(line) : !parseField(line)) return false;
    first = false;
  }
  head_.clear();
  head_.shrink_to_fit();
  return checkFraming();
}

// method SP request-target SP HTTP-version, nothing else (RFC 9112 3).
bool RequestIntake::parseRequestLine(std::string_view line) {
  size_t sp1 = line.find(' ');
  size_t sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
  if (sp2 == std::string_view::npos || line.find(' ', sp2 + 1) != std::string_view::npos) {
    return fail(400, "bad_request", "the request line is not METHOD SP target SP HTTP/1.1");
  }
  std::string_view method = line.substr(0, sp1);
  std::string_view target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  std::string_view version = line.substr(sp2 + 1);
  if (!isToken(method) || method.size() > kMaxMethodBytes) {
    return fail(400, "bad_request", "malformed request method");
  }
  bool visible = std::all_of(target.begin(), target.end(), [](char c) {
    return static_cast<unsigned char>(c) >= 0x21 && static_cast<unsigned char>(c) < 0x7f;
  });
  if (target.empty() || target.front() != '/' || !visible) {
    return fail(400, "bad_request", "the request target must be a path (origin-form)");
  }
  if (version != "HTTP/1.1" && version != "HTTP/1.0") {
    return fail(400, "bad_request", "only HTTP/1.1 and HTTP/1.0 are served");
  }
  request_.method = method;
  request_.target = target;
  request_.version = version;
  return true;
}

bool RequestIntake::parseField(std::string_view line) {
  if (isWhitespace(line.front())) {
    return fail(400, "bad_request", "obsolete line folding in a header field");
  }
  std::string_view name, value;
  if (!splitField(line, &name, &value)) {
    return fail(400, "bad_request", "malformed header field");
  }
  if (++fields_ > kMaxFields) {
    return fail(431, "headers_too_large",
                "more than " + std::to_string(kMaxFields) + " header fields");
  }
  if (equalsIgnoreCase(name, "content-length")) {
    if (has_length_) return fail(400, "bad_request", "more than one Content-Length");
    bool decimal =
        !value.empty() && value.size() <= kMaxLengthDigits &&
        std::all_of(value.begin(), value.end(), [](char c) { return c >= '0' && c <= '9'; });
    if (!decimal) return fail(400, "bad_request", "Content-Length is not a decimal number");
    has_length_ = true;
    content_length_ = std::stoull(std::string(value));
  } else if (equalsIgnoreCase(name, "transfer-encoding")) {
    if (has_transfer_encoding_ || !equalsIgnoreCase(value, "chunked")) {
      return fail(400, "bad_request", "the only Transfer-Encoding served is one 'chunked'");
    }
    has_transfer_encoding_ = true;
    chunked_ = true;
  } else if (equalsIgnoreCase(name, "host")) {
    if (has_host_) return fail(400, "bad_request", "more than one Host");
    has_host_ = true;
  } else if (equalsIgnoreCase(name, "authorization")) {
    if (!request_.authorization.empty() || value.empty()) {
      return fail(400, "bad_request", "one non-empty Authorization at most");
    }
    request_.authorization = value;
  } else if (equalsIgnoreCase(name, "connection")) {
    while (!value.empty()) {
      size_t comma = value.find(',');
      std::string_view option = trimOws(value.substr(0, comma));
      if (equalsIgnoreCase(option, "close")) connection_close_ = true;
      if (equalsIgnoreCase(option, "keep-alive")) connection_keep_alive_ = true;
      value.remove_prefix(comma == std::string_view::npos ? value.size() : comma + 1);
    }
  } else if (equalsIgnoreCase(name, "expect")) {
    if (!equalsIgnoreCase(value, "100-continue")) {
      return fail(417, "expectation_failed", "the only expectation served is 100-continue");
    }
    request_.expect_continue = true;
  }
  return true;
}

// What the head says about the body, checked as a whole (RFC 9112 6).
bool RequestIntake::checkFraming() {
  bool http10 = request_.version == "HTTP/1.0";
  if (has_length_ && has_transfer_encoding_) {
    return fail(400, "bad_request", "Content-Length together with Transfer-Encoding");
  }
  if (http10 && has_transfer_encoding_) {
    return fail(400, "bad_request", "Transfer-Encoding in an HTTP/1.0 request");
  }
  if (!http10 && !has_host_) return fail(400, "bad_request", "an HTTP/1.1 request needs a Host");
  request_.keep_alive = !connection_close_ && (!http10 || connection_keep_alive_);
  bool has_body = chunked_ || content_length_ > 0;
  if (has_body && limits_.streams_body != nullptr &&
      limits_.streams_body(request_.method, request_.target)) {
    // Complete as far as the acceptor is concerned: the worker reads the body (take()).
    request_.streamed_body = true;
    if (http10) request_.expect_continue = false;
    finish();
    return true;
  }
  if (has_length_ && content_length_ > limits_.max_body_bytes) {
    return fail(413, "too_large",
                "request body over " + std::to_string(limits_.max_body_bytes) + " bytes");
  }
  // Nothing to continue with, or a 1.0 client, which must never get a 1xx (RFC 9110 15.2).
  if (!has_body || http10) request_.expect_continue = false;
  if (has_body) {
    phase_ = Phase::kBody;
  } else {
    finish();
  }
  return true;
}

size_t RequestIntake::feedBody(std::string_view bytes) {
  uint64_t left = content_length_ - body_received_;
  size_t n = static_cast<size_t>(std::min<uint64_t>(left, bytes.size()));
  body().append(bytes.substr(0, n));
  body_received_ += n;
  if (body_received_ == content_length_) finish();
  return n;
}

size_t RequestIntake::feedChunked(std::string_view bytes) {
  size_t i = 0;
  while (i < bytes.size() && phase_ == Phase::kBody) {
    if (chunk_ == Chunk::kData) {
      size_t n = static_cast<size_t>(std::min<uint64_t>(chunk_left_, bytes.size() - i));
      body().append(bytes.substr(i, n));
      body_received_ += n;
      chunk_left_ -= n;
      i += n;
      if (chunk_left_ == 0) chunk_ = Chunk::kDataEnd;
      continue;
    }
    // A framing line: size line, the CRLF after data, or a trailer line; CRLF only.
    char c = bytes[i++];
    bool after_cr = !line_.empty() && line_.back() == '\r';
    if (c != '\n') {
      if (after_cr) {
        fail(400, "bad_request", "CR not followed by LF in chunked framing");
        return i;
      }
      line_.push_back(c);
      size_t cap = chunk_ == Chunk::kTrailer ? limits_.max_head_bytes : kMaxChunkLineBytes;
      if (line_.size() + trailer_bytes_ > cap) {
        fail(chunk_ == Chunk::kTrailer ? 431 : 400,
             chunk_ == Chunk::kTrailer ? "headers_too_large" : "bad_request",
             "chunked framing line too long");
        return i;
      }
      continue;
    }
    if (!after_cr) {
      fail(400, "bad_request", "bare LF line ending in chunked framing (CRLF required)");
      return i;
    }
    line_.pop_back();
    std::string line = std::move(line_);
    line_.clear();
    bool ok = true;
    if (chunk_ == Chunk::kSizeLine) {
      ok = chunkSizeLine(line);
    } else if (chunk_ == Chunk::kDataEnd) {
      ok = line.empty() || fail(400, "bad_request", "chunk data longer than its size");
      chunk_ = Chunk::kSizeLine;
    } else {
      ok = trailerLine(line);
    }
    if (!ok) return i;
  }
  return i;
}

// chunk-size [ BWS ";" chunk-ext ] (RFC 9112 7.1); extensions are ignored, but must be text.
bool RequestIntake::chunkSizeLine(std::string_view line) {
  uint64_t size = 0;
  size_t digits = 0;
  while (digits < line.size() && hexValue(line[digits]) >= 0) {
    if (digits == kMaxChunkSizeDigits) return fail(413, "too_large", "chunk size too large");
    size = size * 16 + static_cast<uint64_t>(hexValue(line[digits]));
    digits++;
  }
  std::string_view ext = trimOws(line.substr(digits));
  if (digits == 0 || (!ext.empty() && (ext.front() != ';' || !isFieldValue(ext)))) {
    return fail(400, "bad_request", "malformed chunk size line");
  }
  if (!streaming_ && size > limits_.max_body_bytes - body_received_) {
    return fail(413, "too_large",
                "request body over " + std::to_string(limits_.max_body_bytes) + " bytes");
  }
  chunk_left_ = size;
  chunk_ = size == 0 ? Chunk::kTrailer : Chunk::kData;
  return true;
}

// Trailer fields are checked like header fields and dropped: nothing here reads them.
bool RequestIntake::trailerLine(std::string_view line) {
  if (line.empty()) {
    finish();
    return true;
  }
  std::string_view name, value;
  if (isWhitespace(line.front()) || !splitField(line, &name, &value)) {
    return fail(400, "bad_request", "malformed trailer field");
  }
  trailer_bytes_ += line.size() + 2;
  if (++fields_ > kMaxFields) {
    return fail(431, "headers_too_large",
                "more than " + std::to_string(kMaxFields) + " header fields");
  }
  return true;
}

}  // namespace jw::frontend
