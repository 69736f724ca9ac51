// A session token's text form, the one clients send as `Authorization: Bearer jw_...`: written
// by the frontend (login) and jobworker-admin (scrape tokens), parsed by the frontend. Compiled
// into every binary that shows or reads a token.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "common/protocol/codec.h"

namespace jw::protocol {

// "jw_" + base64url(32 bytes) without padding: 46 characters.
std::string tokenText(const Token& token);
// The token's bytes, if `text` is well formed (checked before anything reaches the supervisor).
std::optional<Token> parseToken(std::string_view text);

}  // namespace jw::protocol
