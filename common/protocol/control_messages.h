// The ONE list of message types on the root-only control socket between jobworker-admin (A) and
// jobworkerd (S), with its frame size and caps. Its codec, names, permitted-request table and the
// supervisor's control dispatch table come from JW_CONTROL_MESSAGES. Compiled into jobworkerd
// and jobworker-admin; the frontend never links it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "common/protocol/messages.h"
#include "common/protocol/verifier_messages.h"

namespace jw::protocol {

enum class ControlDirection : uint8_t { kAdminToSupervisor, kSupervisorToAdmin };

// X(name, number, direction, payload struct, what it is)
// Numbers start at 1000 so that no frontend message (messages.h) is ever a valid control message
// and no control message a valid frontend one: a frame sent to the wrong socket is unknown there.
// Adding a verb: one line here (and its reply, if new) plus one Supervisor::control<Name> handler.
#define JW_CONTROL_MESSAGES(X)                                                                    \
  X(ControlSessionList, 1000, kAdminToSupervisor, Empty, "live sessions -> ControlSessions...")   \
  X(ControlSessionRevokeUser, 1001, kAdminToSupervisor, ControlUser,                              \
    "end every session of a user -> ControlRevoked|ControlError")                                 \
  X(ControlSessionRevokeId, 1002, kAdminToSupervisor, ControlSessionId,                           \
    "end the session with this id -> ControlRevoked|ControlError")                                \
  X(ControlTokenCreate, 1003, kAdminToSupervisor, ControlTokenRequest,                            \
    "a scrape token for a role-metrics user -> ControlToken|ControlError")                        \
  X(ControlUpgrade, 1004, kAdminToSupervisor, ControlUpgradeRequest,                              \
    "check the binary's --check-state, exec it in place -> (connection closes)|ControlError")     \
  X(ControlInfo, 1005, kAdminToSupervisor, Empty, "which jobworkerd this is -> ControlInfoReply") \
  X(ControlSessions, 1064, kSupervisorToAdmin, ControlSessionsPart, "sessions (kFlagMore: more)") \
  X(ControlRevoked, 1065, kSupervisorToAdmin, ControlCount, "how many sessions were ended")       \
  X(ControlError, 1066, kSupervisorToAdmin, ControlErrorReply, "request refused or failed")       \
  X(ControlToken, 1067, kSupervisorToAdmin, ControlTokenReply,                                    \
    "new token (shown once), id, expiry")                                                         \
  X(ControlInfoReply, 1068, kSupervisorToAdmin, ControlInfoPayload,                               \
    "pid, version, image start, jobs")

enum class ControlMsgType : uint16_t {
#define JW_CONTROL_ENUM(name, num, dir, payload, doc) k##name = (num),
  JW_CONTROL_MESSAGES(JW_CONTROL_ENUM)
#undef JW_CONTROL_ENUM
};

struct ControlMessageInfo {
  ControlMsgType type;
  ControlDirection direction;
  std::string_view name;
};
inline constexpr ControlMessageInfo kControlMessages[] = {
#define JW_CONTROL_INFO(name, num, dir, payload, doc) \
  {ControlMsgType::k##name, ControlDirection::dir, #name},
    JW_CONTROL_MESSAGES(JW_CONTROL_INFO)
#undef JW_CONTROL_INFO
};

// True when no number of list `a` is also a number of list `b`: a frame sent down the wrong
// link is an unknown type there. Checked against the frontend channel's and the verifier link's
// lists.
template <typename A, typename B>
constexpr bool disjointNumbers(const A& a, const B& b) {
  for (const auto& x : a) {
    for (const auto& y : b) {
      if (static_cast<uint16_t>(x.type) == static_cast<uint16_t>(y.type)) return false;
    }
  }
  return true;
}
static_assert(disjointNumbers(kControlMessages, kMessages),
              "control message numbers must differ from every JW_MESSAGES number");
namespace detail {
struct NumberOnly {
  uint16_t type;
};
inline constexpr NumberOnly kVerifierNumbers[] = {
#define JW_VERIFIER_NUMBER(name, num, dir, payload, doc) {num},
    JW_VERIFIER_MESSAGES(JW_VERIFIER_NUMBER)
#undef JW_VERIFIER_NUMBER
};
}  // namespace detail
static_assert(disjointNumbers(kControlMessages, detail::kVerifierNumbers),
              "control message numbers must differ from every JW_VERIFIER_MESSAGES number");

// Name for logs; "unknown" for a number not in the control list.
std::string_view controlMsgTypeName(uint16_t type);
// The control socket's permitted-request table: true when `type` is a control message flowing
// in direction `dir`. Anything else closes the connection.
bool isControlPermitted(uint16_t type, ControlDirection dir);

// Frames use the channel's header layout (u16 type | u16 flags | u32 request_id | payload),
// with kFlagMore for replies in several frames, one SEQPACKET message per frame.
// Requests are tiny; 64 KiB leaves room for a part of the session list.
constexpr size_t kMaxControlFrame = size_t{64} * 1024;
constexpr size_t kMaxControlSessionsPerFrame = 256;  // ControlSessions continues with kFlagMore
// A session's id on the control socket: this many lowercase hex digits of its token's hash.
// 48 bits: a collision among kMaxSessions live sessions is a one in ~10^7 event, and then
// `revoke --id` ends both.
constexpr size_t kSessionIdLength = 12;
// An upgrade's binary: an absolute path of at most this many bytes ("": the running one's).
constexpr size_t kMaxBinaryPath = 4096;
constexpr size_t kMaxVersionText = 64;
static_assert(kSessionIdLength % 2 == 0 && kSessionIdLength <= 64);

}  // namespace jw::protocol
