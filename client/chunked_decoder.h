// Incremental HTTP/1.1 chunked transfer decoder (CLI process, log follower). Poco 1.11's chunked
// stream reports a connection cut mid-body as a normal end; this one knows whether the final
// zero-size chunk arrived, which is what tells "job finished" from "reconnect".
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

namespace jw::client {

class ChunkedDecoder {
 public:
  // Called with each piece of body data, in order. Return false to stop decoding.
  using DataFn = std::function<bool(std::string_view)>;

  enum class State { kSize, kExtension, kSizeLf, kData, kDataCr, kDataLf, kTrailer, kDone, kError };

  // Feeds raw bytes from the connection. Returns false on a framing error (see error()) or when
  // `on_data` asked to stop. Bytes after the terminating chunk are ignored.
  bool feed(std::string_view bytes, const DataFn& on_data);

  bool done() const { return state_ == State::kDone; }
  bool failed() const { return state_ == State::kError; }
  const std::string& error() const { return error_; }

 private:
  bool fail(std::string why);
  bool framingByte(char c);
  bool sizeByte(char c);
  bool extensionByte(char c);
  void endSizeLine();
  bool trailerByte(char c);

  State state_ = State::kSize;
  uint64_t remaining_ = 0;  // data bytes left in the current chunk
  unsigned size_digits_ = 0;
  size_t trailer_line_len_ = 0;  // bytes in the current trailer line (an empty line ends it)
  std::string error_;
};

}  // namespace jw::client
