// Compact JSON output for jobworker-frontend's REST responses; runs in its HTTP worker threads.
//
// Why our own writer rather than Poco::JSON's Stringifier: a job's argv, env and error text come
// from users and need not be UTF-8, and Poco passes invalid bytes through (the response would
// not be JSON); this writer replaces each invalid byte with U+FFFD.
#include "frontend/api/json_writer.h"

#include <charconv>
#include <cmath>

namespace jw::frontend {

void JsonWriter::separate() {
  if (after_key_) {
    after_key_ = false;
    return;
  }
  if (!first_.empty()) {
    if (!first_.back()) out_.push_back(',');
    first_.back() = false;
  }
}

JsonWriter& JsonWriter::open(char bracket) {
  separate();
  out_.push_back(bracket);
  first_.push_back(true);
  return *this;
}

JsonWriter& JsonWriter::close(char bracket) {
  out_.push_back(bracket);
  first_.pop_back();
  return *this;
}

JsonWriter& JsonWriter::beginObject() { return open('{'); }
JsonWriter& JsonWriter::endObject() { return close('}'); }
JsonWriter& JsonWriter::beginArray() { return open('['); }
JsonWriter& JsonWriter::endArray() { return close(']'); }

JsonWriter& JsonWriter::key(std::string_view k) {
  str(k);
  out_.push_back(':');
  after_key_ = true;
  return *this;
}

namespace {

// Length of the valid UTF-8 sequence at s[i], or 0 when it is not one.
size_t utf8SequenceLength(std::string_view s, size_t i) {
  auto byte = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  unsigned char c = byte(i);
  if (c < 0x80) return 1;
  size_t len;
  uint32_t cp;
  if (c >= 0xc2 && c <= 0xdf) {
    len = 2;
    cp = c & 0x1f;
  } else if (c >= 0xe0 && c <= 0xef) {
    len = 3;
    cp = c & 0x0f;
  } else if (c >= 0xf0 && c <= 0xf4) {
    len = 4;
    cp = c & 0x07;
  } else {
    return 0;
  }
  if (i + len > s.size()) return 0;
  for (size_t k = 1; k < len; k++) {
    unsigned char cc = byte(i + k);
    if ((cc & 0xc0) != 0x80) return 0;
    cp = (cp << 6) | (cc & 0x3f);
  }
  if (len == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) return 0;
  if (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) return 0;
  return len;
}

}  // namespace

JsonWriter& JsonWriter::str(std::string_view v) {
  separate();
  static const char* hex = "0123456789abcdef";
  out_.push_back('"');
  for (size_t i = 0; i < v.size();) {
    // The common case, printable ASCII with nothing to escape, is appended a run at a time.
    size_t run = i;
    while (run < v.size()) {
      unsigned char r = static_cast<unsigned char>(v[run]);
      if (r < 0x20 || r >= 0x7f || r == '"' || r == '\\') break;
      run++;
    }
    if (run > i) {
      out_.append(v.data() + i, run - i);
      i = run;
      continue;
    }
    unsigned char c = static_cast<unsigned char>(v[i]);
    if (c >= 0x80) {
      size_t n = utf8SequenceLength(v, i);
      if (n == 0) {
        out_ += "\\ufffd";
        i++;
      } else {
        out_.append(v.substr(i, n));
        i += n;
      }
      continue;
    }
    switch (c) {
      case '"':
        out_ += "\\\"";
        break;
      case '\\':
        out_ += "\\\\";
        break;
      case '\n':
        out_ += "\\n";
        break;
      case '\r':
        out_ += "\\r";
        break;
      case '\t':
        out_ += "\\t";
        break;
      default:
        if (c < 0x20 || c == 0x7f) {
          out_ += "\\u00";
          out_.push_back(hex[c >> 4]);
          out_.push_back(hex[c & 15]);
        } else {
          out_.push_back(static_cast<char>(c));
        }
    }
    i++;
  }
  out_.push_back('"');
  return *this;
}

JsonWriter& JsonWriter::num(int64_t v) { return raw(std::to_string(v)); }
JsonWriter& JsonWriter::unum(uint64_t v) { return raw(std::to_string(v)); }

JsonWriter& JsonWriter::real(double v) {
  if (!std::isfinite(v)) return null();
  char buf[64];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
  if (ec != std::errc()) return null();
  return raw(std::string_view(buf, static_cast<size_t>(end - buf)));
}

JsonWriter& JsonWriter::raw(std::string_view json_number) {
  separate();
  out_.append(json_number);
  return *this;
}

JsonWriter& JsonWriter::boolean(bool v) { return raw(v ? "true" : "false"); }
JsonWriter& JsonWriter::null() { return raw("null"); }

bool validUtf8(std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    size_t n = utf8SequenceLength(s, i);
    if (n == 0) return false;
    i += n;
  }
  return true;
}

}  // namespace jw::frontend
