// libFuzzer target for the supervisor <-> password verifier link's decoder: any byte string must
// decode or fail cleanly, and whatever decodes must re-encode to the same bytes. Runs in the
// fuzzer process.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "common/protocol/verifier_codec.h"

namespace {

using namespace jw::protocol::verifier;

template <typename Decode, typename Encode>
void check(const FrameHeader& h, std::string_view frame, std::string_view payload, Decode decode,
           Encode encode) {
  auto r = decode(payload);
  if (!r.ok()) return;
  std::string again = encode(h.request_id, r.value());
  if (again != frame) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view frame(reinterpret_cast<const char*>(data), size);
  std::string_view payload;
  auto h = decodeHeader(frame, &payload);
  if (!h.ok()) return 0;
  switch (h->type) {
#define JW_VERIFIER_FUZZ_CASE(name, num, dir, payload_type, doc)           \
  case MsgType::k##name:                                                   \
    check(h.value(), frame, payload, decode##name##Payload, encode##name); \
    break;
    JW_VERIFIER_MESSAGES(JW_VERIFIER_FUZZ_CASE)
#undef JW_VERIFIER_FUZZ_CASE
  }
  return 0;
}
