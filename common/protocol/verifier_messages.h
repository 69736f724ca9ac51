// The ONE list of message types on the supervisor <-> password verifier link (S <-> V), with its
// frame cap and field caps. Codec, logging names, the permitted-message check and the round-trip
// tests are generated from JW_VERIFIER_MESSAGES below, as they are from messages.h for the
// frontend channel.
//
// Why a second list and not more entries in messages.h: a list is the permitted-message table
// of one link. Entries here in JW_MESSAGES would be decodable (and, by direction, permitted) on
// the frontend channel, which must never carry a password hash. Each link has its one list, and
// the numbers of the two lists are disjoint (checked below), so a frame sent down the wrong link
// is an unknown type there, never a valid message.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "common/protocol/messages.h"

namespace jw::protocol::verifier {

enum class Direction : uint8_t { kSupervisorToVerifier, kVerifierToSupervisor };

// X(name, number, direction, payload struct, what it is)
// Checks carry a non-zero request id chosen by the supervisor; the result carries the same id.
#define JW_VERIFIER_MESSAGES(X)                                                                    \
  X(VerifierReady, 192, kVerifierToSupervisor, Empty, "verifier finished its privilege drop")      \
  X(VerifyPassword, 193, kSupervisorToVerifier, VerifyRequest, "password vs hash -> VerifyResult") \
  X(VerifyResult, 194, kVerifierToSupervisor, VerifyResult, "whether the password matched")

enum class MsgType : uint16_t {
#define JW_VERIFIER_ENUM(name, num, dir, payload, doc) k##name = (num),
  JW_VERIFIER_MESSAGES(JW_VERIFIER_ENUM)
#undef JW_VERIFIER_ENUM
};

// Name for logs; "unknown" for a number not in the list.
std::string_view msgTypeName(uint16_t type);
// True when `type` is in the list and flows in direction `dir`.
bool isPermitted(uint16_t type, Direction dir);

// Frames have the frontend channel's header (u16 type | u16 flags | u32 request_id, kHeaderSize)
// and no flags. The largest one is a VerifyPassword at its caps; 4 KiB leaves room.
constexpr size_t kMaxFrame = 4096;
// A password longer than the frontend channel's Login carries never reaches the verifier;
// argon2id itself takes any length, but nobody types a kilobyte.
constexpr size_t kMaxPassword = protocol::kMaxPassword;
// The stored hash: crypto_pwhash_str output is under 128 bytes. Hashes travel on this link only.
constexpr size_t kMaxHash = 256;
static_assert(kHeaderSize + 4 + kMaxPassword + 4 + kMaxHash <= kMaxFrame);

namespace detail {
constexpr uint16_t kFrontendNumbers[] = {
#define JW_NUMBER(name, num, dir, payload, doc) num,
    JW_MESSAGES(JW_NUMBER)
#undef JW_NUMBER
};
constexpr bool usedOnFrontendChannel(uint16_t n) {
  for (uint16_t f : kFrontendNumbers) {
    if (f == n) return true;
  }
  return false;
}
}  // namespace detail

#define JW_VERIFIER_DISJOINT(name, num, dir, payload, doc) \
  static_assert(!detail::usedOnFrontendChannel(num),       \
                "verifier message " #name " reuses a number of messages.h");
JW_VERIFIER_MESSAGES(JW_VERIFIER_DISJOINT)
#undef JW_VERIFIER_DISJOINT

}  // namespace jw::protocol::verifier
