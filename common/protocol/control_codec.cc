// Field-by-field encoding of the control socket's payloads (see control_codec.h); runs in
// jobworkerd and jobworker-admin.
#include "common/protocol/control_codec.h"

#include "common/protocol/wire.h"

namespace jw::protocol {

namespace {

void put(Writer&, const Empty&) {}
void get(Reader&, Empty&) {}

void put(Writer& w, const ControlUser& u) { w.str(u.user); }
void get(Reader& r, ControlUser& u) { u.user = r.str(kMaxUserName, "user"); }

void put(Writer& w, const ControlSessionId& s) { w.str(s.id); }
void get(Reader& r, ControlSessionId& s) {
  s.id = r.str(kSessionIdLength, "session id");
  if (!r.failed() && !validSessionId(s.id)) {
    r.fail("session id is not " + std::to_string(kSessionIdLength) + " hex digits");
  }
}

void put(Writer& w, const ControlSessionInfo& s) {
  w.str(s.id);
  w.str(s.user);
  w.u8(static_cast<uint8_t>(s.role));
  w.i64(s.created_at_ms);
  w.i64(s.expires_at_ms);
  w.i64(s.last_used_at_ms);
  w.str(s.remote_addr);
}
void get(Reader& r, ControlSessionInfo& s) {
  s.id = r.str(kSessionIdLength, "session id");
  s.user = r.str(kMaxUserName, "user");
  s.role = getEnum(r, kRoleRange, "role");
  s.created_at_ms = r.i64();
  s.expires_at_ms = r.i64();
  s.last_used_at_ms = r.i64();
  s.remote_addr = r.str(kMaxRemoteAddress, "remote_addr");
}

// The smallest encoded session: three empty strings (u32 lengths), the role and three i64.
constexpr size_t kMinSessionBytes = 4 + 4 + 1 + 8 + 8 + 8 + 4;

void put(Writer& w, const ControlSessionsPart& p) {
  w.u32(static_cast<uint32_t>(p.sessions.size()));
  for (const auto& s : p.sessions) put(w, s);
}
void get(Reader& r, ControlSessionsPart& p) {
  uint32_t n = r.count(kMaxControlSessionsPerFrame, kMinSessionBytes, "sessions");
  p.sessions.resize(n);
  for (auto& s : p.sessions) get(r, s);
}

void put(Writer& w, const ControlTokenRequest& t) {
  w.str(t.user);
  w.u64(t.ttl_ms);
}
void get(Reader& r, ControlTokenRequest& t) {
  t.user = r.str(kMaxUserName, "user");
  t.ttl_ms = r.u64();
}

void put(Writer& w, const ControlTokenReply& t) {
  w.raw(t.token.bytes.data(), t.token.bytes.size());
  w.str(t.id);
  w.i64(t.expires_at_ms);
}
void get(Reader& r, ControlTokenReply& t) {
  r.raw(t.token.bytes.data(), t.token.bytes.size());
  t.id = r.str(kSessionIdLength, "session id");
  t.expires_at_ms = r.i64();
}

void put(Writer& w, const ControlCount& c) { w.u32(c.count); }
void get(Reader& r, ControlCount& c) { c.count = r.u32(); }

void put(Writer& w, const ControlUpgradeRequest& u) { w.str(u.binary); }
void get(Reader& r, ControlUpgradeRequest& u) {
  u.binary = r.str(kMaxBinaryPath, "binary");
  if (!r.failed() && !u.binary.empty() &&
      (u.binary[0] != '/' || u.binary.find('\0') != std::string::npos)) {
    r.fail("binary is not an absolute path");
  }
}

void put(Writer& w, const ControlInfoPayload& i) {
  w.i32(i.pid);
  w.str(i.version);
  w.i64(i.image_started_at_ms);
  w.u32(i.running_jobs);
  w.u32(i.known_jobs);
}
void get(Reader& r, ControlInfoPayload& i) {
  i.pid = r.i32();
  i.version = r.str(kMaxVersionText, "version");
  i.image_started_at_ms = r.i64();
  i.running_jobs = r.u32();
  i.known_jobs = r.u32();
}

void put(Writer& w, const ControlErrorReply& e) {
  w.u16(static_cast<uint16_t>(e.code));
  w.str(e.message);
}
void get(Reader& r, ControlErrorReply& e) {
  e.code = getEnum(r, kErrorCodeRange, "error code");
  e.message = r.str(kMaxMessage, "message");
}

template <typename T>
Result<T> decodeWith(std::string_view bytes, const char* what) {
  Reader r(bytes);
  T out{};
  get(r, out);
  if (!r.finish()) return Error{std::string(what) + ": " + r.error()};
  return out;
}

}  // namespace

#define JW_DEFINE_CONTROL_CODEC(name, num, dir, payload, doc)                       \
  std::string encode##name(uint32_t request_id, const payload& p, uint16_t flags) { \
    Writer w;                                                                       \
    w.u16(num);                                                                     \
    w.u16(flags);                                                                   \
    w.u32(request_id);                                                              \
    put(w, p);                                                                      \
    return w.take();                                                                \
  }                                                                                 \
  Result<payload> decode##name##Payload(std::string_view bytes) {                   \
    return decodeWith<payload>(bytes, #name);                                       \
  }
JW_CONTROL_MESSAGES(JW_DEFINE_CONTROL_CODEC)
#undef JW_DEFINE_CONTROL_CODEC

Result<ControlFrameHeader> decodeControlHeader(std::string_view frame, std::string_view* payload) {
  static constexpr FrameRules kRules{"control frame", kMaxControlFrame, kKnownFlags,
                                     [](uint16_t t) { return controlMsgTypeName(t) != "unknown"; }};
  auto h = splitFrame(frame, kRules, payload);
  if (!h) return h.error();
  return ControlFrameHeader{static_cast<ControlMsgType>(h->type), h->flags, h->request_id};
}

bool validSessionId(std::string_view id) {
  if (id.size() != kSessionIdLength) return false;
  for (char c : id) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

std::string_view controlMsgTypeName(uint16_t type) {
  for (const ControlMessageInfo& m : kControlMessages) {
    if (static_cast<uint16_t>(m.type) == type) return m.name;
  }
  return "unknown";
}

bool isControlPermitted(uint16_t type, ControlDirection dir) {
  for (const ControlMessageInfo& m : kControlMessages) {
    if (static_cast<uint16_t>(m.type) == type) return m.direction == dir;
  }
  return false;
}

}  // namespace jw::protocol
