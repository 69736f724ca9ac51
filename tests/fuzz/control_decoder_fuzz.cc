// libFuzzer target for the root-only control socket's decoder (what jobworkerd runs on every
// frame a control peer sends): any byte string must decode or fail cleanly, and whatever decodes
// must re-encode to the same bytes. Runs in the fuzzer process.
#include <cstdint>
#include <string_view>

#include "common/protocol/control_codec.h"
#include "tests/fuzz/round_trip.h"

using namespace jw::protocol;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view frame(reinterpret_cast<const char*>(data), size);
  std::string_view payload;
  auto h = decodeControlHeader(frame, &payload);
  if (!h.ok()) return 0;
  // A header that decodes names a control message, so exactly one case below runs.
  switch (h->type) {
#define JW_CONTROL_FUZZ_CASE(name, num, dir, payload_type, doc)                            \
  case ControlMsgType::k##name:                                                            \
    jw::fuzz::requireRoundTrip(frame, payload, decode##name##Payload, [&](const auto& v) { \
      return encode##name(h->request_id, v, h->flags);                                     \
    });                                                                                    \
    break;
    JW_CONTROL_MESSAGES(JW_CONTROL_FUZZ_CASE)
#undef JW_CONTROL_FUZZ_CASE
  }
  return 0;
}
