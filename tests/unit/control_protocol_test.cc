// Unit tests for the control socket's codec: a round trip, every truncation and a trailing byte
// of every message generated from JW_CONTROL_MESSAGES, the caps, and frames of the frontend
// channel refused here (and control frames there). Runs in the unit suite, no privileges.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "common/protocol/codec.h"
#include "common/protocol/control_codec.h"
#include "common/protocol/control_messages.h"
#include "common/protocol/wire.h"

namespace jw::protocol {
namespace {

ControlSessionInfo fullSession(char c) {
  return {std::string(kSessionIdLength, 'f'),
          std::string(kMaxUserName, c),
          Role::kViewer,
          1700000000123,
          1700043200123,
          1700000000999,
          std::string(kMaxRemoteAddress, '1')};
}

template <typename T>
T sample();
template <>
Empty sample<Empty>() {
  return {};
}
template <>
ControlUser sample<ControlUser>() {
  return {"alice"};
}
template <>
ControlSessionId sample<ControlSessionId>() {
  return {"0123456789ab"};
}
template <>
ControlSessionsPart sample<ControlSessionsPart>() {
  return {
      {{"0123456789ab", "alice", Role::kAdmin, 1700000000123, 1700043200123, 1700000000200, "::1"},
       {"ba9876543210", "bob", Role::kUser, 1700000000456, 1700043200456, 0, ""}}};
}
template <>
ControlCount sample<ControlCount>() {
  return {3};
}
template <>
ControlTokenRequest sample<ControlTokenRequest>() {
  return {"prometheus", 90ULL * 24 * 3600 * 1000};
}
template <>
ControlTokenReply sample<ControlTokenReply>() {
  ControlTokenReply t;
  t.token.bytes.fill(0x5a);
  t.id = "0123456789ab";
  t.expires_at_ms = 1707776000123;
  return t;
}
template <>
ControlUpgradeRequest sample<ControlUpgradeRequest>() {
  return {"/usr/sbin/jobworkerd"};
}
template <>
ControlInfoPayload sample<ControlInfoPayload>() {
  return {4242, "0.9.0", 1707776000123, 3, 12};
}
template <>
ControlErrorReply sample<ControlErrorReply>() {
  return {ErrorCode::kBadRequest, "invalid user name"};
}

#define JW_CONTROL_ROUND_TRIP_TEST(name, num, dir, payload, doc)                        \
  TEST(ControlCodec, RoundTrip##name) {                                                 \
    const payload sent = sample<payload>();                                             \
    const std::string frame = encode##name(77, sent, kFlagMore);                        \
    std::string_view bytes;                                                             \
    auto h = decodeControlHeader(frame, &bytes);                                        \
    ASSERT_TRUE(h.ok()) << h.error().message;                                           \
    EXPECT_EQ(h.value(), (ControlFrameHeader{ControlMsgType::k##name, kFlagMore, 77})); \
    auto got = decode##name##Payload(bytes);                                            \
    ASSERT_TRUE(got.ok()) << got.error().message;                                       \
    EXPECT_EQ(got.value(), sent);                                                       \
  }                                                                                     \
  TEST(ControlCodec, Truncated##name) {                                                 \
    const std::string frame = encode##name(1, sample<payload>());                       \
    std::string_view bytes;                                                             \
    ASSERT_TRUE(decodeControlHeader(frame, &bytes).ok());                               \
    for (size_t cut = 0; cut < bytes.size(); cut++) {                                   \
      EXPECT_FALSE(decode##name##Payload(bytes.substr(0, cut)).ok()) << cut;            \
    }                                                                                   \
    std::string longer(bytes);                                                          \
    longer.push_back('\0');                                                             \
    EXPECT_FALSE(decode##name##Payload(longer).ok());                                   \
  }
JW_CONTROL_MESSAGES(JW_CONTROL_ROUND_TRIP_TEST)
#undef JW_CONTROL_ROUND_TRIP_TEST

TEST(ControlCodec, FieldCapsAreEnforced) {
  EXPECT_FALSE(decodeControlSessionRevokeUserPayload(
                   encodeControlSessionRevokeUser(1, {std::string(kMaxUserName + 1, 'a')})
                       .substr(kHeaderSize))
                   .ok());
  ControlSessionsPart long_addr{
      {{"0123456789ab", "alice", Role::kUser, 1, 2, 3, std::string(kMaxRemoteAddress + 1, '1')}}};
  EXPECT_FALSE(
      decodeControlSessionsPayload(encodeControlSessions(1, long_addr).substr(kHeaderSize)).ok());
  ControlSessionsPart too_many;
  too_many.sessions.assign(kMaxControlSessionsPerFrame + 1, fullSession('a'));
  EXPECT_FALSE(
      decodeControlSessionsPayload(encodeControlSessions(1, too_many).substr(kHeaderSize)).ok());
  ControlSessionsPart bad_role{{fullSession('a')}};
  bad_role.sessions[0].role = static_cast<Role>(9);
  EXPECT_FALSE(
      decodeControlSessionsPayload(encodeControlSessions(1, bad_role).substr(kHeaderSize)).ok());
  ControlErrorReply bad_code{static_cast<ErrorCode>(999), "x"};
  EXPECT_FALSE(decodeControlErrorPayload(encodeControlError(1, bad_code).substr(kHeaderSize)).ok());
}

TEST(ControlCodec, AnUpgradesBinaryIsAnAbsolutePathOrNothing) {
  EXPECT_TRUE(decodeControlUpgradePayload(encodeControlUpgrade(1, {""}).substr(kHeaderSize)).ok());
  for (const std::string& bad :
       std::vector<std::string>{"jobworkerd", "./jobworkerd", std::string("/usr/sbin/x\0y", 13),
                                "/" + std::string(kMaxBinaryPath, 'a')}) {
    EXPECT_FALSE(
        decodeControlUpgradePayload(encodeControlUpgrade(1, {bad}).substr(kHeaderSize)).ok())
        << bad;
  }
}

TEST(ControlCodec, SessionIdsAreTwelveLowercaseHexDigits) {
  EXPECT_TRUE(validSessionId("0123456789ab"));
  for (const char* bad : {"", "0123456789a", "0123456789abc", "0123456789AB", "0123456789ag",
                          "01234567 9ab", "../../../etc"}) {
    EXPECT_FALSE(validSessionId(bad)) << bad;
    EXPECT_FALSE(decodeControlSessionRevokeIdPayload(
                     encodeControlSessionRevokeId(1, {bad}).substr(kHeaderSize))
                     .ok())
        << bad;
  }
}

TEST(ControlCodec, ForgedCountFailsWithoutAllocating) {
  Writer w;
  w.u32(0xffffffffU);
  EXPECT_FALSE(decodeControlSessionsPayload(w.bytes()).ok());
  Writer w2;
  w2.u32(200);  // within the cap, but the bytes for 200 sessions are not there
  EXPECT_FALSE(decodeControlSessionsPayload(w2.bytes()).ok());
}

TEST(ControlCodec, AFullSessionsFrameFitsTheFrameCap) {
  ControlSessionsPart full;
  full.sessions.assign(kMaxControlSessionsPerFrame, fullSession('u'));
  const std::string frame = encodeControlSessions(1, full);
  EXPECT_LE(frame.size(), kMaxControlFrame);
  std::string_view bytes;
  ASSERT_TRUE(decodeControlHeader(frame, &bytes).ok());
  auto got = decodeControlSessionsPayload(bytes);
  ASSERT_TRUE(got.ok()) << got.error().message;
  EXPECT_EQ(got.value(), full);
}

TEST(ControlCodec, HeaderRejectsShortOversizedUnknownAndFlags) {
  std::string_view payload;
  EXPECT_FALSE(decodeControlHeader("", &payload).ok());
  EXPECT_FALSE(decodeControlHeader(std::string(kHeaderSize - 1, '\0'), &payload).ok());
  std::string huge = encodeControlSessionList(1, {}) + std::string(kMaxControlFrame, 'x');
  EXPECT_FALSE(decodeControlHeader(huge, &payload).ok());
  std::string flagged = encodeControlSessionList(1, {});
  flagged[2] = 0x04;  // an undefined flag bit
  EXPECT_FALSE(decodeControlHeader(flagged, &payload).ok());
}

TEST(ControlCodec, FrontendFramesAreNotControlFramesAndBackwards) {
  std::string_view payload;
  // Every frontend message number is unknown on the control socket...
  for (const MessageInfo& m : kMessages) {
    Writer w;
    w.u16(static_cast<uint16_t>(m.type));
    w.u16(0);
    w.u32(1);
    EXPECT_FALSE(decodeControlHeader(w.bytes(), &payload).ok()) << m.name;
    EXPECT_FALSE(
        isControlPermitted(static_cast<uint16_t>(m.type), ControlDirection::kAdminToSupervisor));
  }
  // ...and every control message number unknown on the frontend channel.
  for (const ControlMessageInfo& m : kControlMessages) {
    Writer w;
    w.u16(static_cast<uint16_t>(m.type));
    w.u16(0);
    w.u32(1);
    EXPECT_FALSE(decodeHeader(w.bytes(), &payload).ok()) << m.name;
    EXPECT_FALSE(isPermitted(static_cast<uint16_t>(m.type), Direction::kFrontendToSupervisor));
  }
}

TEST(ControlCodec, PermittedTableFollowsDirections) {
  for (const ControlMessageInfo& m : kControlMessages) {
    const auto n = static_cast<uint16_t>(m.type);
    EXPECT_EQ(isControlPermitted(n, ControlDirection::kAdminToSupervisor),
              m.direction == ControlDirection::kAdminToSupervisor)
        << m.name;
    EXPECT_EQ(isControlPermitted(n, ControlDirection::kSupervisorToAdmin),
              m.direction == ControlDirection::kSupervisorToAdmin)
        << m.name;
    EXPECT_EQ(controlMsgTypeName(n), m.name);
  }
  EXPECT_EQ(controlMsgTypeName(0), "unknown");
}

}  // namespace
}  // namespace jw::protocol
