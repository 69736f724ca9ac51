// Request-target parsing and job-id validation (see request_target.h); runs in
// jobworker-frontend's HTTP worker threads.
#include "frontend/http/request_target.h"

namespace jw::frontend {

namespace {

bool unreserved(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '.' || c == '_' || c == '~';
}

int hexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Percent-decoding for query components ('+' is a space, as HTML forms send it).
bool decode(std::string_view in, std::string* out) {
  out->clear();
  for (size_t i = 0; i < in.size(); i++) {
    char c = in[i];
    if (c == '%') {
      if (i + 2 >= in.size()) return false;
      int hi = hexValue(in[i + 1]);
      int lo = hexValue(in[i + 2]);
      if (hi < 0 || lo < 0) return false;
      out->push_back(static_cast<char>(hi * 16 + lo));
      i += 2;
    } else if (c == '+') {
      out->push_back(' ');
    } else {
      out->push_back(c);
    }
  }
  return true;
}

}  // namespace

ApiResult<Target> parseTarget(std::string_view raw) {
  if (raw.empty() || raw[0] != '/') return badRequest("request target must be an absolute path");
  size_t q = raw.find('?');
  std::string_view path = raw.substr(0, q);
  std::string_view query = q == std::string_view::npos ? std::string_view() : raw.substr(q + 1);
  if (raw.find('#') != std::string_view::npos) return badRequest("request target has a fragment");

  Target t;
  bool empty_segment = false;
  size_t pos = 1;
  for (;;) {
    size_t slash = path.find('/', pos);
    std::string_view seg =
        path.substr(pos, slash == std::string_view::npos ? path.npos : slash - pos);
    for (char c : seg) {
      if (!unreserved(c)) return badRequest("malformed path");
    }
    if (seg == "." || seg == "..") return badRequest("malformed path: dot segment");
    if (seg.empty()) empty_segment = true;
    t.segments.emplace_back(seg);
    if (slash == std::string_view::npos) break;
    pos = slash + 1;
  }
  if (empty_segment) return notFound("no such resource");

  size_t start = 0;
  while (start <= query.size() && !query.empty()) {
    size_t amp = query.find('&', start);
    std::string_view part =
        query.substr(start, amp == std::string_view::npos ? query.npos : amp - start);
    if (!part.empty()) {
      size_t eq = part.find('=');
      std::string key, value;
      if (!decode(part.substr(0, eq), &key) ||
          (eq != std::string_view::npos && !decode(part.substr(eq + 1), &value))) {
        return badRequest("malformed query string");
      }
      if (t.query.count(key) != 0) return badRequest("query parameter '" + key + "' repeated");
      t.query.emplace(std::move(key), std::move(value));
    }
    if (amp == std::string_view::npos) break;
    start = amp + 1;
  }
  return t;
}

}  // namespace jw::frontend
