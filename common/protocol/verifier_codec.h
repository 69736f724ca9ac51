// Payload structs of every message in verifier_messages.h and their field-by-field encoding.
// Used by jobworkerd and jobworker-verifier; decoding never throws and never trusts a length.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "common/protocol/codec.h"
#include "common/protocol/verifier_messages.h"
#include "common/result.h"

namespace jw::protocol::verifier {

using protocol::Empty;

// Views, never copies: to encode, into the caller's strings; decoded, into the received frame.
// The password is secret and lives only in its owner's buffer and in the frame, which their
// owners wipe after use (sodium_memzero); the encoder reserves the frame's exact size, so no
// reallocation leaves a stray copy behind.
struct VerifyRequest {
  std::string_view password;  // at most kMaxPassword bytes
  std::string_view hash;      // crypto_pwhash_str (argon2id) string, 1..kMaxHash bytes
};

struct VerifyResult {
  bool match = false;
};

struct FrameHeader {
  MsgType type;
  uint32_t request_id = 0;
};

// Encoders return the header and payload as one frame.
#define JW_VERIFIER_DECLARE_CODEC(name, num, dir, payload, doc)    \
  std::string encode##name(uint32_t request_id, const payload& p); \
  Result<payload> decode##name##Payload(std::string_view payload_bytes);
JW_VERIFIER_MESSAGES(JW_VERIFIER_DECLARE_CODEC)
#undef JW_VERIFIER_DECLARE_CODEC

// Splits a received frame into header and payload view; checks the size cap, that the type is in
// the list and that no flag is set. The payload still has to be decoded with the
// decode<Name>Payload matching header.type.
Result<FrameHeader> decodeHeader(std::string_view frame, std::string_view* payload);

}  // namespace jw::protocol::verifier
