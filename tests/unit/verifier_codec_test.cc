// Unit tests for the supervisor <-> password verifier link: round trips of every message in
// JW_VERIFIER_MESSAGES, caps, truncations, directions, and the verifier's answer to a frame
// (supervisor/verifier/check.cc, with a real argon2id hash). Runs in the test process, no
// privileges.
#include "common/protocol/verifier_codec.h"

#include <gtest/gtest.h>
#include <sodium.h>

#include <iterator>
#include <optional>
#include <random>
#include <string>

#include "common/protocol/messages.h"
#include "common/protocol/verifier_messages.h"
#include "common/protocol/wire.h"
#include "supervisor/accounts/password_verifier.h"
#include "supervisor/verifier/check.h"

namespace jw::protocol::verifier {
namespace {

constexpr std::string_view kHash =
    "$argon2id$v=19$m=65536,t=2,p=1$AbJa3EGzrO722v1RASDJrQ$4ncl4bJSEBc2NGBRLJe+"
    "lPRNXQj2zATHNWN64YNeQkI";

std::string payloadOf(const std::string& frame) { return frame.substr(kHeaderSize); }

TEST(VerifierCodec, EveryMessageRoundTrips) {
  int seen = 0;
  {
    std::string f = encodeVerifierReady(0, {});
    std::string_view p;
    auto h = decodeHeader(f, &p);
    ASSERT_TRUE(h) << h.error().message;
    EXPECT_EQ(h->type, MsgType::kVerifierReady);
    EXPECT_EQ(h->request_id, 0u);
    EXPECT_TRUE(decodeVerifierReadyPayload(p));
    seen++;
  }
  {
    std::string f = encodeVerifyPassword(7, VerifyRequest{"hunter2", kHash});
    std::string_view p;
    auto h = decodeHeader(f, &p);
    ASSERT_TRUE(h) << h.error().message;
    EXPECT_EQ(h->type, MsgType::kVerifyPassword);
    EXPECT_EQ(h->request_id, 7u);
    auto r = decodeVerifyPasswordPayload(p);
    ASSERT_TRUE(r) << r.error().message;
    EXPECT_EQ(r->password, "hunter2");
    EXPECT_EQ(r->hash, kHash);
    // Decoded views point into the frame itself: the password is never copied out of it.
    EXPECT_GE(r->password.data(), f.data());
    EXPECT_LT(r->password.data(), f.data() + f.size());
    seen++;
  }
  for (bool match : {true, false}) {
    std::string f = encodeVerifyResult(0xfffffffe, VerifyResult{match});
    std::string_view p;
    auto h = decodeHeader(f, &p);
    ASSERT_TRUE(h);
    EXPECT_EQ(h->type, MsgType::kVerifyResult);
    EXPECT_EQ(h->request_id, 0xfffffffeu);
    auto r = decodeVerifyResultPayload(p);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->match, match);
  }
  seen++;
#define JW_COUNT(name, num, dir, payload, doc) 1,
  constexpr int kListed[] = {JW_VERIFIER_MESSAGES(JW_COUNT)};
#undef JW_COUNT
  EXPECT_EQ(seen, static_cast<int>(std::size(kListed)))
      << "a message of the list has no round trip";
}

TEST(VerifierCodec, EncoderReservesTheExactFrame) {
  // No reallocation while the password is appended: capacity is the final size (or the small
  // string buffer), so no freed buffer held a partial copy.
  std::string pw(900, 'p');
  std::string f = encodeVerifyPassword(1, VerifyRequest{pw, kHash});
  EXPECT_EQ(f.size(), kHeaderSize + 4 + pw.size() + 4 + kHash.size());
  EXPECT_LE(f.capacity(), f.size() + 16);
}

TEST(VerifierCodec, EveryTruncationFails) {
  std::string f = encodeVerifyPassword(3, VerifyRequest{"pw", kHash});
  std::string payload = payloadOf(f);
  for (size_t n = 0; n < payload.size(); n++) {
    EXPECT_FALSE(decodeVerifyPasswordPayload(std::string_view(payload).substr(0, n))) << n;
  }
  EXPECT_FALSE(decodeVerifyResultPayload(""));
  // A decoder consumes exactly its bytes: one more is an error too.
  EXPECT_FALSE(decodeVerifyPasswordPayload(payload + "x"));
  EXPECT_FALSE(decodeVerifyResultPayload(std::string("\x01\x00", 2)));
  EXPECT_FALSE(decodeVerifierReadyPayload("x"));
}

TEST(VerifierCodec, CapsAreCheckedBeforeAllocation) {
  Writer w;
  w.u32(0xffffffff);  // a forged password length of 4 GiB, followed by nothing
  auto r = decodeVerifyPasswordPayload(w.bytes());
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("over cap"), std::string::npos) << r.error().message;

  std::string long_pw(kMaxPassword + 1, 'x');
  Writer w2;
  w2.str(long_pw);
  w2.str(kHash);
  EXPECT_FALSE(decodeVerifyPasswordPayload(w2.bytes()));
  Writer w3;
  w3.str("pw");
  w3.str(std::string(kMaxHash + 1, 'h'));
  EXPECT_FALSE(decodeVerifyPasswordPayload(w3.bytes()));
  Writer w4;  // an empty hash is never sent (unknown users get the dummy)
  w4.str("pw");
  w4.str("");
  EXPECT_FALSE(decodeVerifyPasswordPayload(w4.bytes()));
  // At the caps it still fits one frame.
  std::string max_frame = encodeVerifyPassword(
      1, VerifyRequest{std::string(kMaxPassword, 'p'), std::string(kMaxHash, 'h')});
  EXPECT_LE(max_frame.size(), kMaxFrame);
  std::string_view p;
  EXPECT_TRUE(decodeHeader(max_frame, &p));
}

TEST(VerifierCodec, HeaderRejectsShortOversizedUnknownAndFlags) {
  std::string_view p;
  EXPECT_FALSE(decodeHeader("short", &p));
  EXPECT_FALSE(decodeHeader(std::string(kMaxFrame + 1, '\0'), &p));
  Writer w;
  w.u16(static_cast<uint16_t>(protocol::MsgType::kJobStart));  // a frontend-channel type
  w.u16(0);
  w.u32(1);
  EXPECT_FALSE(decodeHeader(w.bytes(), &p));
  std::string f = encodeVerifyResult(1, {true});
  f[2] = 1;  // kFlagMore means nothing on this link
  EXPECT_FALSE(decodeHeader(f, &p));
}

TEST(VerifierCodec, ListsAreDisjointAndDirectionsHold) {
  for (uint16_t t = 0; t < 1024; t++) {
    bool frontend = protocol::msgTypeName(t) != "unknown";
    bool verifier = msgTypeName(t) != "unknown";
    EXPECT_FALSE(frontend && verifier) << t;
  }
  EXPECT_TRUE(isPermitted(static_cast<uint16_t>(MsgType::kVerifyPassword),
                          Direction::kSupervisorToVerifier));
  EXPECT_FALSE(isPermitted(static_cast<uint16_t>(MsgType::kVerifyPassword),
                           Direction::kVerifierToSupervisor));
  EXPECT_TRUE(
      isPermitted(static_cast<uint16_t>(MsgType::kVerifyResult), Direction::kVerifierToSupervisor));
  EXPECT_TRUE(isPermitted(static_cast<uint16_t>(MsgType::kVerifierReady),
                          Direction::kVerifierToSupervisor));
  EXPECT_FALSE(isPermitted(9999, Direction::kVerifierToSupervisor));
}

TEST(VerifierCodec, RandomGarbageNeverCrashes) {
  std::mt19937 rng(42);
  for (int i = 0; i < 20000; i++) {
    std::string s(rng() % 64, '\0');
    for (auto& c : s) c = static_cast<char>(rng());
    (void)decodeVerifyPasswordPayload(s);
    (void)decodeVerifyResultPayload(s);
    std::string_view p;
    (void)decodeHeader(s, &p);
  }
}

// The verifier's own handling of a frame, in-process: a real argon2id check.
class VerifierAnswer : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    ASSERT_GE(sodium_init(), 0);
    char h[crypto_pwhash_STRBYTES];
    ASSERT_EQ(crypto_pwhash_str(h, "right", 5, crypto_pwhash_OPSLIMIT_INTERACTIVE,
                                crypto_pwhash_MEMLIMIT_INTERACTIVE),
              0);
    hash_ = h;
  }
  static std::optional<bool> answer(uint32_t id, std::string_view pw, std::string_view hash) {
    auto reply = jw::verifier::answerFrame(encodeVerifyPassword(id, VerifyRequest{pw, hash}));
    if (!reply) return std::nullopt;
    std::string_view p;
    auto h = decodeHeader(reply.value(), &p);
    if (!h || h->type != MsgType::kVerifyResult || h->request_id != id) return std::nullopt;
    auto r = decodeVerifyResultPayload(p);
    if (!r) return std::nullopt;
    return r->match;
  }
  static std::string hash_;
};
std::string VerifierAnswer::hash_;

TEST_F(VerifierAnswer, RightWrongAndMalformedHash) {
  EXPECT_EQ(answer(1, "right", hash_), std::optional<bool>(true));
  EXPECT_EQ(answer(2, "wrong", hash_), std::optional<bool>(false));
  EXPECT_EQ(answer(3, "", hash_), std::optional<bool>(false));
  EXPECT_EQ(answer(4, "right", "$argon2id$not-a-hash"), std::optional<bool>(false));
  // The supervisor's dummy hash is a real argon2id hash with the users' parameters.
  EXPECT_EQ(answer(5, "right", supervisor::PasswordVerifier::kDummyHash),
            std::optional<bool>(false));
  EXPECT_EQ(crypto_pwhash_str_needs_rehash(
                std::string(supervisor::PasswordVerifier::kDummyHash).c_str(),
                crypto_pwhash_OPSLIMIT_INTERACTIVE, crypto_pwhash_MEMLIMIT_INTERACTIVE),
            0);
}

TEST_F(VerifierAnswer, AnythingButAVerifyPasswordIsRefused) {
  EXPECT_FALSE(jw::verifier::answerFrame(encodeVerifyPassword(0, VerifyRequest{"pw", hash_})))
      << "request id 0";
  EXPECT_FALSE(jw::verifier::answerFrame(encodeVerifyResult(1, {true})));
  EXPECT_FALSE(jw::verifier::answerFrame(encodeVerifierReady(0, {})));
  EXPECT_FALSE(jw::verifier::answerFrame("garbage"));
}

}  // namespace
}  // namespace jw::protocol::verifier
