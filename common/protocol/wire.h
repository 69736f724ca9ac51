// Bounded binary writer and reader used by the codec on both ends of the channel.
//
// Every integer is little-endian and fixed-size; every string and array carries a u32 length
// checked against a caller-given cap before anything is allocated. A Reader that hits any
// problem latches into the failed state: later getters return zero values and the first
// error is kept, so decoders can read field by field and check once at the end.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "common/result.h"

namespace jw::protocol {

class Writer {
 public:
  void u8(uint8_t v);
  void u16(uint16_t v);
  void u32(uint32_t v);
  void u64(uint64_t v);
  void i32(int32_t v) { u32(static_cast<uint32_t>(v)); }
  void i64(int64_t v) { u64(static_cast<uint64_t>(v)); }
  void boolean(bool v) { u8(v ? 1 : 0); }
  void str(std::string_view s);                        // u32 length + bytes
  void strList(const std::vector<std::string>& list);  // u32 count + strings
  void raw(const void* data, size_t len);
  // Room for n more bytes at once: a frame holding a secret is never reallocated, so no freed
  // buffer keeps a copy of it.
  void reserve(size_t n) { buf_.reserve(buf_.size() + n); }

  const std::string& bytes() const { return buf_; }
  std::string take() { return std::move(buf_); }
  size_t size() const { return buf_.size(); }
  // Empties the buffer, keeping its storage: a scratch writer reused for many small payloads.
  void clear() { buf_.clear(); }

 private:
  std::string buf_;
};

class Reader {
 public:
  Reader(const char* data, size_t len) : p_(data), end_(data + len) {}
  explicit Reader(std::string_view s) : Reader(s.data(), s.size()) {}

  uint8_t u8();
  uint16_t u16();
  uint32_t u32();
  uint64_t u64();
  int32_t i32() { return static_cast<int32_t>(u32()); }
  int64_t i64() { return static_cast<int64_t>(u64()); }
  bool boolean();  // only 0 or 1 are valid
  std::string str(size_t max_len, const char* field);
  // Like str() but a view into the reader's buffer, valid as long as that buffer: for a secret
  // that must not be copied out of a frame its owner wipes.
  std::string_view view(size_t max_len, const char* field);
  std::vector<std::string> strList(size_t max_count, size_t max_each, const char* field);
  // Reads an element count for an array of structs, bounded by max_count and by the bytes left
  // (each element needs at least min_elem_bytes), so a forged count cannot cause a big reserve().
  uint32_t count(size_t max_count, size_t min_elem_bytes, const char* field);
  void raw(void* out, size_t len);

  void fail(std::string why);
  bool failed() const { return failed_; }
  const std::string& error() const { return error_; }
  size_t remaining() const { return static_cast<size_t>(end_ - p_); }
  // True when every byte was consumed and nothing failed; sets the error otherwise.
  bool finish();

 private:
  bool need(size_t n, const char* what);

  const char* p_;
  const char* end_;
  bool failed_ = false;
  std::string error_;
};

// Reads an enum as its underlying integer and checks it against range.first..range.last (an
// EnumRange of codec.h): the one enum getter of every codec.
template <typename Range>
auto getEnum(Reader& r, Range range, const char* what) {
  using E = std::remove_cv_t<decltype(range.first)>;
  using U = std::underlying_type_t<E>;
  static_assert(sizeof(U) <= 2, "the wire carries enums as u8 or u16");
  U v;
  if constexpr (sizeof(U) == 1) {
    v = r.u8();
  } else {
    v = r.u16();
  }
  if (v < static_cast<U>(range.first) || v > static_cast<U>(range.last)) {
    r.fail(std::string(what) + " out of range");
  }
  return static_cast<E>(v);
}

// The 8-byte header every link's frames start with (u16 type, u16 flags, u32 request id), and the
// rules one link applies to it. splitFrame() is the one header decoder: the frontend channel's,
// the verifier link's and the control socket's codecs each wrap it with their own rules and
// message type.
struct RawFrameHeader {
  uint16_t type = 0;
  uint16_t flags = 0;
  uint32_t request_id = 0;
};
struct FrameRules {
  std::string_view link;         // "frame", "verifier frame", "control frame": for errors
  size_t max_frame = 0;          // the link's cap on a whole frame
  uint16_t known_flags = 0;      // any other bit set is an error
  bool (*known_type)(uint16_t);  // whether the link's message list has this number
};
// Checks the size (header to max_frame), the type and the flags; *payload is what follows the
// header.
Result<RawFrameHeader> splitFrame(std::string_view frame, const FrameRules& rules,
                                  std::string_view* payload);

}  // namespace jw::protocol
