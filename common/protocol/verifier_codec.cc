// Field-by-field encoding of the verifier link's payloads (see verifier_codec.h); runs in
// jobworkerd and in jobworker-verifier.
#include "common/protocol/verifier_codec.h"

#include "common/protocol/wire.h"

namespace jw::protocol::verifier {

namespace {

void put(Writer& w, const Empty&) { (void)w; }
void get(Reader& r, Empty&) { (void)r; }

size_t payloadSize(const Empty&) { return 0; }

void put(Writer& w, const VerifyRequest& v) {
  w.str(v.password);
  w.str(v.hash);
}
void get(Reader& r, VerifyRequest& v) {
  v.password = r.view(kMaxPassword, "password");
  v.hash = r.view(kMaxHash, "password hash");
  if (!r.failed() && v.hash.empty()) r.fail("password hash: empty");
}
size_t payloadSize(const VerifyRequest& v) { return 4 + v.password.size() + 4 + v.hash.size(); }

void put(Writer& w, const VerifyResult& v) { w.boolean(v.match); }
void get(Reader& r, VerifyResult& v) { v.match = r.boolean(); }
size_t payloadSize(const VerifyResult&) { return 1; }

template <typename T>
Result<T> decodeWith(std::string_view bytes, const char* what) {
  Reader r(bytes);
  T out{};
  get(r, out);
  if (!r.finish()) return Error{std::string(what) + ": " + r.error()};
  return out;
}

}  // namespace

#define JW_VERIFIER_DEFINE_CODEC(name, num, dir, payload, doc)      \
  std::string encode##name(uint32_t request_id, const payload& p) { \
    Writer w;                                                       \
    w.reserve(kHeaderSize + payloadSize(p));                        \
    w.u16(num);                                                     \
    w.u16(0);                                                       \
    w.u32(request_id);                                              \
    put(w, p);                                                      \
    return w.take();                                                \
  }                                                                 \
  Result<payload> decode##name##Payload(std::string_view bytes) {   \
    return decodeWith<payload>(bytes, #name);                       \
  }
JW_VERIFIER_MESSAGES(JW_VERIFIER_DEFINE_CODEC)
#undef JW_VERIFIER_DEFINE_CODEC

Result<FrameHeader> decodeHeader(std::string_view frame, std::string_view* payload) {
  // Verifier frames carry no flags.
  static constexpr FrameRules kRules{"verifier frame", kMaxFrame, 0,
                                     [](uint16_t t) { return msgTypeName(t) != "unknown"; }};
  auto h = splitFrame(frame, kRules, payload);
  if (!h) return h.error();
  return FrameHeader{static_cast<MsgType>(h->type), h->request_id};
}

std::string_view msgTypeName(uint16_t type) {
  switch (type) {
#define JW_VERIFIER_NAME(name, num, dir, payload, doc) \
  case num:                                            \
    return #name;
    JW_VERIFIER_MESSAGES(JW_VERIFIER_NAME)
#undef JW_VERIFIER_NAME
  }
  return "unknown";
}

bool isPermitted(uint16_t type, Direction dir) {
  switch (type) {
#define JW_VERIFIER_PERMIT(name, num, direction, payload, doc) \
  case num:                                                    \
    return dir == Direction::direction;
    JW_VERIFIER_MESSAGES(JW_VERIFIER_PERMIT)
#undef JW_VERIFIER_PERMIT
  }
  return false;
}

}  // namespace jw::protocol::verifier
