// Bounded binary writer and reader (see wire.h); runs in both processes.
#include "common/protocol/wire.h"

#include <cstring>

namespace jw::protocol {

void Writer::u8(uint8_t v) { buf_.push_back(static_cast<char>(v)); }

// Each integer is appended in one go: a list reply writes tens of thousands of them.
template <typename T>
static void appendLittleEndian(std::string& buf, T v) {
  char b[sizeof(T)];
  for (size_t i = 0; i < sizeof(T); i++) b[i] = static_cast<char>(v >> (8 * i));
  buf.append(b, sizeof(T));
}

void Writer::u16(uint16_t v) { appendLittleEndian(buf_, v); }

void Writer::u32(uint32_t v) { appendLittleEndian(buf_, v); }

void Writer::u64(uint64_t v) { appendLittleEndian(buf_, v); }

void Writer::str(std::string_view s) {
  u32(static_cast<uint32_t>(s.size()));
  buf_.append(s.data(), s.size());
}

void Writer::strList(const std::vector<std::string>& list) {
  u32(static_cast<uint32_t>(list.size()));
  for (const auto& s : list) str(s);
}

void Writer::raw(const void* data, size_t len) { buf_.append(static_cast<const char*>(data), len); }

void Reader::fail(std::string why) {
  if (!failed_) {
    failed_ = true;
    error_ = std::move(why);
  }
  p_ = end_;
}

bool Reader::need(size_t n, const char* what) {
  if (failed_) return false;
  if (remaining() < n) {
    fail(std::string("truncated ") + what);
    return false;
  }
  return true;
}

uint8_t Reader::u8() {
  if (!need(1, "u8")) return 0;
  return static_cast<uint8_t>(*p_++);
}

uint16_t Reader::u16() {
  if (!need(2, "u16")) return 0;
  uint16_t v = 0;
  for (int i = 0; i < 2; i++) v |= static_cast<uint16_t>(static_cast<uint8_t>(*p_++)) << (8 * i);
  return v;
}

uint32_t Reader::u32() {
  if (!need(4, "u32")) return 0;
  uint32_t v = 0;
  for (int i = 0; i < 4; i++) v |= static_cast<uint32_t>(static_cast<uint8_t>(*p_++)) << (8 * i);
  return v;
}

uint64_t Reader::u64() {
  if (!need(8, "u64")) return 0;
  uint64_t v = 0;
  for (int i = 0; i < 8; i++) v |= static_cast<uint64_t>(static_cast<uint8_t>(*p_++)) << (8 * i);
  return v;
}

bool Reader::boolean() {
  uint8_t v = u8();
  if (v > 1) fail("boolean out of range");
  return v == 1;
}

std::string Reader::str(size_t max_len, const char* field) {
  return std::string(view(max_len, field));
}

std::string_view Reader::view(size_t max_len, const char* field) {
  uint32_t len = u32();
  if (failed_) return {};
  if (len > max_len) {
    fail(std::string(field) + ": length " + std::to_string(len) + " over cap " +
         std::to_string(max_len));
    return {};
  }
  if (!need(len, field)) return {};
  std::string_view s(p_, len);
  p_ += len;
  return s;
}

std::vector<std::string> Reader::strList(size_t max_count, size_t max_each, const char* field) {
  uint32_t n = count(max_count, 4, field);
  std::vector<std::string> out;
  if (failed_) return out;
  out.reserve(n);
  for (uint32_t i = 0; i < n && !failed_; i++) out.push_back(str(max_each, field));
  if (failed_) out.clear();
  return out;
}

uint32_t Reader::count(size_t max_count, size_t min_elem_bytes, const char* field) {
  uint32_t n = u32();
  if (failed_) return 0;
  if (n > max_count) {
    fail(std::string(field) + ": count " + std::to_string(n) + " over cap " +
         std::to_string(max_count));
    return 0;
  }
  if (min_elem_bytes > 0 && n > remaining() / min_elem_bytes) {
    fail(std::string(field) + ": count " + std::to_string(n) + " exceeds the bytes left");
    return 0;
  }
  return n;
}

void Reader::raw(void* out, size_t len) {
  if (!need(len, "raw bytes")) {
    std::memset(out, 0, len);
    return;
  }
  std::memcpy(out, p_, len);
  p_ += len;
}

bool Reader::finish() {
  if (failed_) return false;
  if (p_ != end_) {
    fail(std::to_string(remaining()) + " trailing bytes");
    return false;
  }
  return true;
}

Result<RawFrameHeader> splitFrame(std::string_view frame, const FrameRules& rules,
                                  std::string_view* payload) {
  constexpr size_t kHeaderBytes = 8;
  const std::string link(rules.link);
  if (frame.size() < kHeaderBytes) return Error{link + " shorter than its header"};
  if (frame.size() > rules.max_frame) {
    return Error{link + " of " + std::to_string(frame.size()) + " bytes is over its cap of " +
                 std::to_string(rules.max_frame)};
  }
  Reader r(frame.substr(0, kHeaderBytes));
  RawFrameHeader h;
  h.type = r.u16();
  h.flags = r.u16();
  h.request_id = r.u32();
  if (!rules.known_type(h.type)) return Error{"unknown message type " + std::to_string(h.type)};
  if ((h.flags & ~rules.known_flags) != 0) {
    return Error{"unknown flags " + std::to_string(h.flags) + " on a " + link};
  }
  *payload = frame.substr(kHeaderBytes);
  return h;
}

}  // namespace jw::protocol
