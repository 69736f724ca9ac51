// libFuzzer target for the supervisor <-> password verifier link's decoder: any byte string must
// decode or fail cleanly, and whatever decodes must re-encode to the same bytes. Runs in the
// fuzzer process.
#include <cstdint>
#include <string_view>

#include "common/protocol/verifier_codec.h"
#include "tests/fuzz/round_trip.h"

using namespace jw::protocol::verifier;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view frame(reinterpret_cast<const char*>(data), size);
  std::string_view payload;
  auto h = decodeHeader(frame, &payload);
  if (!h.ok()) return 0;
  switch (h->type) {
#define JW_VERIFIER_FUZZ_CASE(name, num, dir, payload_type, doc)                               \
  case MsgType::k##name:                                                                       \
    jw::fuzz::requireRoundTrip(frame, payload, decode##name##Payload,                          \
                               [&](const auto& v) { return encode##name(h->request_id, v); }); \
    break;
    JW_VERIFIER_MESSAGES(JW_VERIFIER_FUZZ_CASE)
#undef JW_VERIFIER_FUZZ_CASE
  }
  return 0;
}
