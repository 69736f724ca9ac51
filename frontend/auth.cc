// Token text form (see auth.h); runs in jobworker-frontend, called from HTTP worker threads.
#include "frontend/auth.h"

#include <sodium.h>

#include <chrono>

namespace jw::frontend {

namespace {
constexpr std::string_view kTokenPrefix = "jw_";
constexpr size_t kTokenLength = 3 + 43;  // prefix + base64url(32 bytes) without padding
}  // namespace

int64_t systemNowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string tokenText(const protocol::Token& token) {
  char b64[sodium_base64_ENCODED_LEN(protocol::kTokenSize,
                                     sodium_base64_VARIANT_URLSAFE_NO_PADDING)];
  sodium_bin2base64(b64, sizeof b64, token.bytes.data(), token.bytes.size(),
                    sodium_base64_VARIANT_URLSAFE_NO_PADDING);
  std::string text = std::string(kTokenPrefix) + b64;
  sodium_memzero(b64, sizeof b64);
  return text;
}

std::optional<protocol::Token> parseToken(std::string_view text) {
  if (text.size() != kTokenLength || text.substr(0, kTokenPrefix.size()) != kTokenPrefix) {
    return std::nullopt;
  }
  std::string_view b64 = text.substr(kTokenPrefix.size());
  protocol::Token t;
  size_t len = 0;
  const char* end = nullptr;
  if (sodium_base642bin(t.bytes.data(), t.bytes.size(), b64.data(), b64.size(), nullptr, &len, &end,
                        sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0 ||
      len != t.bytes.size() || end != b64.data() + b64.size()) {
    return std::nullopt;
  }
  return t;
}

}  // namespace jw::frontend
