// Incremental HTTP/1.1 chunked transfer decoder (CLI process, log follower).
#include "client/chunked_decoder.h"

#include <algorithm>

namespace jw::client {
namespace {

constexpr unsigned kMaxSizeDigits = 15;  // < 2^60: no overflow, far above any real chunk
constexpr size_t kMaxLineBytes = 4096;   // chunk extensions and trailer lines

int hexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

bool ChunkedDecoder::fail(std::string why) {
  state_ = State::kError;
  error_ = std::move(why);
  return false;
}

bool ChunkedDecoder::trailerByte(char c) {
  if (c == '\r') return true;
  if (c == '\n') {
    if (trailer_line_len_ == 0) state_ = State::kDone;
    trailer_line_len_ = 0;
    return true;
  }
  if (++trailer_line_len_ > kMaxLineBytes) return fail("chunked trailer line too long");
  return true;
}

// After the CR LF ending a size line: a zero size begins the trailer, any other its data.
void ChunkedDecoder::endSizeLine() {
  size_digits_ = 0;
  trailer_line_len_ = 0;  // the extension's bytes counted here must not start the trailer line
  state_ = remaining_ == 0 ? State::kTrailer : State::kData;
}

bool ChunkedDecoder::sizeByte(char c) {
  int v = hexValue(c);
  if (v < 0 && size_digits_ == 0) return fail("bad chunk size line");  // a size comes first
  if (v >= 0) {
    if (++size_digits_ > kMaxSizeDigits) return fail("chunk size too large");
    remaining_ = remaining_ * 16 + static_cast<uint64_t>(v);
  } else if (c == ';' || c == ' ' || c == '\t') {
    state_ = State::kExtension;
    trailer_line_len_ = 0;
  } else if (c == '\r') {
    state_ = State::kSizeLf;
  } else if (c == '\n') {
    endSizeLine();
  } else {
    return fail("bad chunk size line");
  }
  return true;
}

bool ChunkedDecoder::extensionByte(char c) {
  if (c == '\r') {
    state_ = State::kSizeLf;
  } else if (c == '\n') {
    endSizeLine();
  } else if (++trailer_line_len_ > kMaxLineBytes) {
    return fail("chunk extension too long");
  }
  return true;
}

// One byte of framing (anything but chunk data); false on a framing error.
bool ChunkedDecoder::framingByte(char c) {
  switch (state_) {
    case State::kSize:
      return sizeByte(c);
    case State::kExtension:
      return extensionByte(c);
    case State::kSizeLf:
      if (c != '\n') return fail("bad chunk size line");
      endSizeLine();
      return true;
    case State::kDataCr:
      if (c == '\n') {
        state_ = State::kSize;
      } else if (c == '\r') {
        state_ = State::kDataLf;
      } else {
        return fail("missing CRLF after chunk data");
      }
      return true;
    case State::kDataLf:
      if (c != '\n') return fail("missing CRLF after chunk data");
      state_ = State::kSize;
      return true;
    case State::kTrailer:
      return trailerByte(c);
    case State::kData:
    case State::kDone:
    case State::kError:
      return true;  // handled by feed()
  }
  return true;
}

bool ChunkedDecoder::feed(std::string_view bytes, const DataFn& on_data) {
  size_t i = 0;
  while (i < bytes.size()) {
    if (state_ == State::kDone) return true;
    if (state_ == State::kError) return false;
    if (state_ == State::kData) {
      // The hot path: hand over as much of the chunk as this read holds, without copying.
      size_t n = static_cast<size_t>(std::min<uint64_t>(remaining_, bytes.size() - i));
      remaining_ -= n;
      if (remaining_ == 0) state_ = State::kDataCr;
      if (!on_data(bytes.substr(i, n))) return false;
      i += n;
      continue;
    }
    if (!framingByte(bytes[i++])) return false;
  }
  return state_ != State::kError;
}

}  // namespace jw::client
