// Unit tests for the supervisor's LoginThrottle on a fake clock: back-off per (user, address) and
// per address, the per-user ceiling with its reserve for trusted addresses, expiry and the
// bounded tables. Runs in the test process, no privileges.
#include "supervisor/accounts/login_throttle.h"

#include <gtest/gtest.h>

#include <string>

namespace jw::supervisor {
namespace {

class Throttle : public ::testing::Test {
 protected:
  uint64_t now_ = 1'000'000;
  LoginThrottle t_{[this] { return now_; }};

  // One attempt that fails if admitted; returns whether it was admitted.
  bool failOnce(const std::string& user, const std::string& addr) {
    if (!t_.admit(user, addr).allowed) return false;
    t_.recordFailure(user, addr);
    return true;
  }
};

TEST_F(Throttle, TyposAreFreeThenBackOffDoublesToTheCap) {
  for (int i = 0; i < 3; i++) ASSERT_TRUE(failOnce("alice", "10.0.0.1")) << i;
  // Three failures: the next attempt from the pair waits 1 s, then 2 s, 4 s ...
  uint64_t expected = 1000;
  for (int i = 0; i < 12; i++) {
    LoginDecision d = t_.admit("alice", "10.0.0.1");
    ASSERT_FALSE(d.allowed) << i;
    EXPECT_EQ(d.reason, "user+address back-off");
    EXPECT_EQ(d.retry_after_ms, std::min<uint64_t>(expected, 300'000)) << i;
    EXPECT_EQ(d.retryAfterSeconds(), (d.retry_after_ms + 999) / 1000);
    now_ += d.retry_after_ms - 1;
    EXPECT_FALSE(t_.admit("alice", "10.0.0.1").allowed) << "1 ms early, attempt " << i;
    now_ += 1;
    ASSERT_TRUE(failOnce("alice", "10.0.0.1")) << "on time, attempt " << i;
    expected *= 2;
  }
}

// Parallel connections: checks in flight count as failures, so four at once get the three free
// ones, and in back-off one guess per step whatever the concurrency.
TEST_F(Throttle, ChecksInFlightCountAsFailures) {
  for (int i = 0; i < 3; i++) ASSERT_TRUE(t_.admit("alice", "10.0.0.1").allowed) << i;
  LoginDecision d = t_.admit("alice", "10.0.0.1");
  EXPECT_FALSE(d.allowed);
  EXPECT_EQ(d.reason, "user+address back-off");
  EXPECT_TRUE(t_.admit("alice", "10.0.0.2").allowed);  // another pair is untouched
  for (int i = 0; i < 3; i++) t_.recordFailure("alice", "10.0.0.1");
  EXPECT_FALSE(t_.admit("alice", "10.0.0.1").allowed);
  now_ += 1000;  // the back-off's first step: one guess, not one per connection
  EXPECT_TRUE(t_.admit("alice", "10.0.0.1").allowed);
  EXPECT_FALSE(t_.admit("alice", "10.0.0.1").allowed);
  now_ += 5000;
  EXPECT_FALSE(t_.admit("alice", "10.0.0.1").allowed) << "still in flight";
  // A check that never ran (every slot busy) frees its place without counting as a failure.
  t_.recordUnchecked("alice", "10.0.0.1");
  EXPECT_TRUE(t_.admit("alice", "10.0.0.1").allowed);
  t_.recordSuccess("alice", "10.0.0.1");
  for (int i = 0; i < 3; i++) EXPECT_TRUE(failOnce("alice", "10.0.0.1")) << "cleared " << i;
}

// The address rule counts outcomes only: a NAT's users logging in at the same moment do not wait
// for each other.
TEST_F(Throttle, SimultaneousLoginsOfManyUsersFromOneAddressAreAdmitted) {
  for (int i = 0; i < 40; i++) {
    EXPECT_TRUE(t_.admit("user" + std::to_string(i), "192.0.2.1").allowed) << i;
  }
}

TEST_F(Throttle, BackOffIsPerPairNotALockout) {
  for (int i = 0; i < 8; i++) {
    failOnce("alice", "10.0.0.1");
    now_ += 100;
  }
  EXPECT_FALSE(t_.admit("alice", "10.0.0.1").allowed);
  // The same user from another address, and another user from the same address, go on.
  EXPECT_TRUE(t_.admit("alice", "10.0.0.2").allowed);
  EXPECT_TRUE(t_.admit("bob", "10.0.0.1").allowed);
}

TEST_F(Throttle, SuccessClearsThePairButNotTheAddress) {
  for (int i = 0; i < 3; i++) failOnce("alice", "10.0.0.1");
  now_ += 1000;
  ASSERT_TRUE(t_.admit("alice", "10.0.0.1").allowed);
  t_.recordSuccess("alice", "10.0.0.1");
  for (int i = 0; i < 3; i++) EXPECT_TRUE(failOnce("alice", "10.0.0.1")) << "fresh record " << i;

  // Spraying names from one address: 10 failures free, then the address backs off, whoever
  // logs in successfully from it meanwhile.
  LoginThrottle t([this] { return now_; });
  for (int i = 0; i < 10; i++) {
    std::string user = "u" + std::to_string(i);
    ASSERT_TRUE(t.admit(user, "10.9.9.9").allowed);
    t.recordFailure(user, "10.9.9.9");
  }
  t.recordSuccess("real", "10.9.9.9");
  LoginDecision d = t.admit("u99", "10.9.9.9");
  EXPECT_FALSE(d.allowed);
  EXPECT_EQ(d.reason, "address back-off");
  EXPECT_EQ(d.retry_after_ms, 1000u);
  EXPECT_TRUE(t.admit("u99", "10.9.9.8").allowed);
}

TEST_F(Throttle, FailuresAreForgottenAfterFifteenMinutes) {
  auto guessAtTheCap = [&](const std::string& addr) {
    for (int failures = 0; failures < 12;) {  // the 12th failure earns the 5 min cap
      if (failOnce("alice", addr)) {
        failures++;
      } else {
        now_ += t_.admit("alice", addr).retry_after_ms;
      }
    }
  };
  // 15 minutes after its last failure a record is still remembered: one more failure brings
  // back the 5 min cap at once (a guesser pacing at the cap never starts over).
  guessAtTheCap("10.0.0.1");
  now_ += 15ULL * 60'000;
  ASSERT_TRUE(failOnce("alice", "10.0.0.1"));
  EXPECT_EQ(t_.admit("alice", "10.0.0.1").retry_after_ms, 300'000u);
  // 1 ms later it is gone: the count starts over, with 3 free failures.
  guessAtTheCap("10.0.0.2");
  now_ += 15 * 60'000 + 1;
  for (int i = 0; i < 3; i++) EXPECT_TRUE(failOnce("alice", "10.0.0.2")) << i;
  EXPECT_EQ(t_.admit("alice", "10.0.0.2").retry_after_ms, 1000u);
}

TEST_F(Throttle, RotatingAddressesHitTheUserCeiling) {
  // A fresh address for every guess: rules 1 and 2 never trigger; the ceiling admits 20 (the
  // open share) at once, then one every 3 s.
  int admitted = 0;
  LoginDecision last;
  for (int i = 0; i < 1000; i++) {
    std::string addr = "2001:db8::" + std::to_string(i);
    last = t_.admit("alice", addr);
    if (last.allowed) {
      admitted++;
      t_.recordFailure("alice", addr);
    }
  }
  EXPECT_EQ(admitted, 20);
  EXPECT_EQ(last.reason, "user rate ceiling");
  EXPECT_EQ(last.retry_after_ms, 3000u);
  EXPECT_EQ(last.retryAfterSeconds(), 3u);
  // Over ten minutes of rotation at full speed: 20 + 10 * 20 guesses, never more.
  for (int s = 0; s < 600; s++) {
    now_ += 1000;
    std::string addr = "2001:db8:1::" + std::to_string(s);
    if (t_.admit("alice", addr).allowed) admitted++;
  }
  EXPECT_EQ(admitted, 20 + 200);
  // Another user is unaffected.
  EXPECT_TRUE(t_.admit("bob", "2001:db8::1").allowed);
}

TEST_F(Throttle, TheRealUserFromAKnownAddressGetsTheReserve) {
  ASSERT_TRUE(t_.admit("alice", "192.0.2.7").allowed);
  t_.recordSuccess("alice", "192.0.2.7");
  now_ += 3600'000;
  // The attacker drains the open share from rotating addresses.
  for (int i = 0; i < 100; i++) {
    std::string addr = "2001:db8::" + std::to_string(i);
    if (t_.admit("alice", addr).allowed) t_.recordFailure("alice", addr);
  }
  EXPECT_FALSE(t_.admit("alice", "2001:db8::ffff").allowed);
  // The real user's known address still logs in at once, up to 10 times a minute.
  for (int i = 0; i < 10; i++) {
    LoginDecision d = t_.admit("alice", "192.0.2.7");
    EXPECT_TRUE(d.allowed) << i << ": " << d.reason;
    if (d.allowed) t_.recordSuccess("alice", "192.0.2.7");
  }
  // A new address of the real user shares the attacker's fate (documented limit).
  EXPECT_FALSE(t_.admit("alice", "198.51.100.1").allowed);
  // Trust lasts 30 days.
  now_ += 31ULL * 24 * 3600'000;
  for (int i = 0; i < 100; i++) t_.admit("alice", "2001:db8:2::" + std::to_string(i));
  EXPECT_FALSE(t_.admit("alice", "192.0.2.7").allowed);
}

TEST_F(Throttle, AKnownAddressInBackOffLosesTheReserve) {
  t_.recordSuccess("alice", "192.0.2.7");
  for (int i = 0; i < 3; i++) failOnce("alice", "192.0.2.7");
  now_ += 1000;  // the pair's 1 s back-off is over, but it failed 3 times
  for (int i = 0; i < 20; i++) t_.admit("alice", "2001:db8::" + std::to_string(i));
  EXPECT_FALSE(t_.admit("alice", "192.0.2.7").allowed);
}

TEST_F(Throttle, TablesStayBounded) {
  for (size_t i = 0; i < LoginThrottle::kMaxEntries * 2; i++) {
    std::string user = "user" + std::to_string(i);
    std::string addr = "10." + std::to_string(i / 65536) + "." + std::to_string(i / 256 % 256) +
                       "." + std::to_string(i % 256);
    if (t_.admit(user, addr).allowed) t_.recordFailure(user, addr);
    t_.recordSuccess(user + "x", addr);
    if (i % 64 == 0) now_ += 1;
  }
  EXPECT_LE(t_.pairEntries(), LoginThrottle::kMaxEntries);
  EXPECT_LE(t_.addressEntries(), LoginThrottle::kMaxEntries);
  EXPECT_LE(t_.userEntries(), LoginThrottle::kMaxEntries);
  // The newest entries survived the eviction of the oldest.
  std::string last = "user" + std::to_string(LoginThrottle::kMaxEntries * 2 - 1);
  for (int i = 0; i < 2; i++) t_.recordFailure(last, "10.0.127.255");
  EXPECT_FALSE(t_.admit(last, "10.0.127.255").allowed);
}

TEST_F(Throttle, ExpiredBucketsAreReclaimedFirst) {
  for (size_t i = 0; i < LoginThrottle::kMaxEntries; i++) t_.admit("u" + std::to_string(i), "a");
  EXPECT_EQ(t_.userEntries(), LoginThrottle::kMaxEntries);
  now_ += 60'000;  // every bucket has refilled
  t_.admit("new", "a");
  EXPECT_EQ(t_.userEntries(), 1u);
}

}  // namespace
}  // namespace jw::supervisor
