// Payload structs of the control socket's messages (control_messages.h) and their field-by-field
// encoding. Used by jobworkerd and jobworker-admin; decoding never throws and never trusts a
// length, and consumes exactly the bytes it was given.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/protocol/codec.h"
#include "common/protocol/control_messages.h"
#include "common/result.h"

namespace jw::protocol {

struct ControlUser {
  std::string user;

  bool operator==(const ControlUser&) const = default;
};

// Names one session for ControlSessionRevokeId: kSessionIdLength lowercase hex digits.
struct ControlSessionId {
  std::string id;

  bool operator==(const ControlSessionId&) const = default;
};
// The one rule for a session id's form; jobworker-admin and jobworkerd both check it.
bool validSessionId(std::string_view id);

// What an administrator may see of a session: never its token, and of the token's hash only
// the kSessionIdLength hex digits of its id.
struct ControlSessionInfo {
  std::string id;
  std::string user;
  Role role = Role::kViewer;  // the user's role now
  int64_t created_at_ms = 0;  // Unix epoch milliseconds
  int64_t expires_at_ms = 0;
  int64_t last_used_at_ms = 0;  // 0: no request since the login
  std::string remote_addr;      // of the login, as the frontend asserted it; "" when not known

  bool operator==(const ControlSessionInfo&) const = default;
};
struct ControlSessionsPart {
  std::vector<ControlSessionInfo> sessions;

  bool operator==(const ControlSessionsPart&) const = default;
};

struct ControlCount {
  uint32_t count = 0;

  bool operator==(const ControlCount&) const = default;
};

// A scrape token: a session of a users-file account of role metrics with the expiry the
// administrator chose (mandatory, at most max_token_ttl), stored hashed like every session.
struct ControlTokenRequest {
  std::string user;
  uint64_t ttl_ms = 0;

  bool operator==(const ControlTokenRequest&) const = default;
};
// The one time the token itself crosses a socket: jobworker-admin prints it and wipes it.
struct ControlTokenReply {
  Token token;
  std::string id;  // the session id `session list` shows and `token revoke` takes
  int64_t expires_at_ms = 0;

  bool operator==(const ControlTokenReply&) const = default;
};

// `jobworker-admin upgrade [--binary PATH]`: the jobworkerd binary to exec in place.
struct ControlUpgradeRequest {
  std::string binary;  // absolute; "" for the path jobworkerd was started from

  bool operator==(const ControlUpgradeRequest&) const = default;
};

// Which jobworkerd answers: an upgrade keeps the pid and changes the image's start time.
struct ControlInfoPayload {
  int32_t pid = 0;
  std::string version;
  int64_t image_started_at_ms = 0;  // when this binary began running in that pid (Unix ms)
  uint32_t running_jobs = 0;
  uint32_t known_jobs = 0;

  bool operator==(const ControlInfoPayload&) const = default;
};

struct ControlErrorReply {
  ErrorCode code = ErrorCode::kInternal;
  std::string message;

  bool operator==(const ControlErrorReply&) const = default;
};

struct ControlFrameHeader {
  ControlMsgType type;
  uint16_t flags = 0;
  uint32_t request_id = 0;

  bool operator==(const ControlFrameHeader&) const = default;
};

#define JW_DECLARE_CONTROL_CODEC(name, num, dir, payload, doc)                         \
  std::string encode##name(uint32_t request_id, const payload& p, uint16_t flags = 0); \
  Result<payload> decode##name##Payload(std::string_view payload_bytes);
JW_CONTROL_MESSAGES(JW_DECLARE_CONTROL_CODEC)
#undef JW_DECLARE_CONTROL_CODEC

// Splits a control frame into header and payload; checks the size (kMaxControlFrame), that the
// type is a control message and that the flags are known.
Result<ControlFrameHeader> decodeControlHeader(std::string_view frame, std::string_view* payload);

}  // namespace jw::protocol
