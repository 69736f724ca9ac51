// A token's text form (see token_text.h); runs wherever a token is shown or read.
#include "common/protocol/token_text.h"

#include <sodium.h>

namespace jw::protocol {

namespace {
constexpr std::string_view kTokenPrefix = "jw_";
constexpr size_t kTokenLength = 3 + 43;  // prefix + base64url(32 bytes) without padding
}  // namespace

std::string tokenText(const Token& token) {
  char b64[sodium_base64_ENCODED_LEN(kTokenSize, sodium_base64_VARIANT_URLSAFE_NO_PADDING)];
  sodium_bin2base64(b64, sizeof b64, token.bytes.data(), token.bytes.size(),
                    sodium_base64_VARIANT_URLSAFE_NO_PADDING);
  std::string text = std::string(kTokenPrefix) + b64;
  sodium_memzero(b64, sizeof b64);
  return text;
}

std::optional<Token> parseToken(std::string_view text) {
  if (text.size() != kTokenLength || text.substr(0, kTokenPrefix.size()) != kTokenPrefix) {
    return std::nullopt;
  }
  std::string_view b64 = text.substr(kTokenPrefix.size());
  Token t;
  size_t len = 0;
  const char* end = nullptr;
  if (sodium_base642bin(t.bytes.data(), t.bytes.size(), b64.data(), b64.size(), nullptr, &len, &end,
                        sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0 ||
      len != t.bytes.size() || end != b64.data() + b64.size()) {
    return std::nullopt;
  }
  return t;
}

}  // namespace jw::protocol
