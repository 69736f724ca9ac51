// The decoder targets' one oracle (decoder, verifier_decoder, control_decoder): a payload that
// decodes must re-encode to exactly the frame it came in, since each codec has one encoding per
// value. Header-only, in the fuzzer process.
#pragma once

#include <cstdlib>
#include <string>
#include <string_view>

namespace jw::fuzz {

// decode(payload) -> Result<T>; encode(const T&) -> the whole frame, header included.
template <typename Decode, typename Encode>
void requireRoundTrip(std::string_view frame, std::string_view payload, Decode decode,
                      Encode encode) {
  auto r = decode(payload);
  if (!r.ok()) return;
  if (std::string again = encode(r.value()); again != frame) std::abort();
}

}  // namespace jw::fuzz
