// LoginThrottle: the supervisor's decision whether a login attempt may cost a password check.
// Pure bookkeeping on an injected monotonic clock (no I/O, no sleeping: a throttled attempt is
// answered at once with "retry after N s"). Runs in jobworkerd, on its event loop.
//
// Three rules, all enforced here because the frontend may be compromised, and none of them a
// lever to lock a user out:
//  1. Failures per (user, address) pair: 3 free, then exponential back-off: the next attempt
//     from that pair waits 1 s, 2 s, 4 s ... capped at 5 min. A typo costs nothing; a guesser at
//     the cap gets 12 guesses an hour.
//  2. Failures per address, any user: 10 free (a NAT or proxy carries several users' typos),
//     then the same back-off. This slows spraying many names from one address.
//  3. A rate ceiling per user name that ignores the address, because the address is only what
//     the frontend asserts (a compromised frontend rotates it at will, and so does an attacker
//     with an IPv6 prefix or a botnet): 30 checks a minute, as 20 open to any address plus 10
//     reserved for addresses this user logged in from successfully in the last 30 days and that
//     are not in back-off. A rotating attacker gets at most 20 guesses a minute (28,800 a day:
//     hopeless against any password argon2id protects) while the real user, from an address they
//     used before, still logs in at once. "No recent failures" alone would not do for the
//     reserve: every fresh address of a rotating attacker has none.
// An admitted check of a pair counts as a failure until its outcome is recorded, so that parallel
// connections cannot multiply rule 1: at most the free failures are in flight at once, and in
// back-off only one guess per step (rule 2's address budget is shared by a NAT's users, whose
// simultaneous logins must not wait for each other, so it counts outcomes only).
// Failure records are forgotten 15 min after their last failure (longer than the 5 min cap, so a
// guesser pacing at the cap never starts over); a success clears its pair's record, never the
// address's (one valid account must not reset guesses against others from that address).
//
// Memory is bounded: each table holds at most kMaxEntries (16,384) entries; when one is full,
// expired entries go first, then the least recently active eighth. Evicting only weakens rules 1
// and 2 for the evicted entries, and flooding a table takes 16,384 checks, which the verifier's
// throughput (one argon2id at a time, tens of ms each) spreads over minutes; rule 3's buckets
// refill within a minute anyway, so an evicted bucket is no gain.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace jw::supervisor {

struct LoginThrottleLimits {
  uint32_t pair_free_failures = 3;
  uint32_t address_free_failures = 10;
  uint64_t backoff_base_ms = 1000;
  uint64_t backoff_cap_ms = 5ULL * 60'000;
  uint64_t failure_memory_ms = 15ULL * 60'000;
  uint32_t user_checks_per_minute = 30;    // the whole ceiling, open + reserved
  uint32_t user_reserved_per_minute = 10;  // of which only trusted addresses may use
  uint64_t trusted_for_ms = 30ULL * 24 * 3600'000;
  uint32_t trusted_addresses_per_user = 4;  // the most recent ones
};

struct LoginDecision {
  bool allowed = true;
  uint64_t retry_after_ms = 0;  // when throttled: the earliest time an attempt can be admitted
  std::string_view reason;      // when throttled: which rule, for logs
  // For Retry-After: whole seconds, rounded up, at least 1 when throttled.
  uint64_t retryAfterSeconds() const;
};

class LoginThrottle {
 public:
  using Clock = std::function<uint64_t()>;  // monotonic milliseconds
  static constexpr size_t kMaxEntries = 16'384;

  explicit LoginThrottle(Clock now, LoginThrottleLimits limits = {});

  // Whether an attempt for `user` from `address` may have its password checked now. An admitted
  // attempt is counted against the user's ceiling (rule 3), whatever its outcome.
  LoginDecision admit(const std::string& user, const std::string& address);
  // The outcome of an admitted attempt's check. Busy or unavailable checks record neither.
  void recordFailure(const std::string& user, const std::string& address);
  void recordSuccess(const std::string& user, const std::string& address);
  // An admitted attempt whose password was never checked (every slot busy, verifier down).
  void recordUnchecked(const std::string& user, const std::string& address);

  // Entries held, for tests of the bounds.
  size_t pairEntries() const { return pairs_.size(); }
  size_t addressEntries() const { return addresses_.size(); }
  size_t userEntries() const { return users_.size(); }

 private:
  struct Failures {
    uint32_t count = 0;
    uint64_t last_ms = 0;
    uint32_t in_flight = 0;  // admitted, outcome not yet recorded (pairs only)
  };
  // GCRA: the theoretical arrival time of the next check; a bucket at or before now is full.
  struct Bucket {
    uint64_t tat_ms = 0;
  };
  struct UserRate {
    Bucket open, reserved;
    uint64_t last_ms = 0;
  };
  struct Trusted {
    std::string address;
    uint64_t at_ms = 0;
  };
  struct TrustedSet {
    std::vector<Trusted> addresses;  // most recent first, at most trusted_addresses_per_user
    uint64_t last_ms = 0;
  };
  using PairKey = std::pair<std::string, std::string>;

  uint64_t backoffUntil(const Failures& f, uint32_t free_failures) const;
  // Rule 3, for an attempt that passed rules 1 and 2.
  LoginDecision admitByRate(const std::string& user, const std::string& address,
                            const Failures& pair, uint64_t now);
  // The pair's check has an outcome now (or none will come): it is no longer in flight.
  void settle(const PairKey& key);
  bool trusted(const std::string& user, const std::string& address, uint64_t now) const;
  // 0 when a check fits in the bucket (and takes it), else ms until one would.
  uint64_t take(Bucket& b, uint32_t per_minute, uint64_t now) const;

  Clock now_;
  LoginThrottleLimits limits_;
  std::map<PairKey, Failures> pairs_;
  std::map<std::string, Failures> addresses_;
  std::map<std::string, UserRate> users_;
  std::map<std::string, TrustedSet> trusted_;
};

}  // namespace jw::supervisor
