// The session token's text form ("jw_" + base64url of its 32 bytes) and the Principal a request
// is made as. The frontend decides nothing about credentials: jobworkerd checks passwords, mints
// tokens and resolves every token to a user and role. Runs in jobworker-frontend.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "common/protocol/codec.h"
#include "common/protocol/token_text.h"

namespace jw::frontend {

int64_t systemNowMs();

using protocol::parseToken;
using protocol::tokenText;

// Who a request is made as: only the client's token (the supervisor says whose it is), and the
// address it came from, which the supervisor's audit events carry as REMOTE_ADDR.
struct Principal {
  protocol::Token token;
  std::string remote_address;
};

}  // namespace jw::frontend
