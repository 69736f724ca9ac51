// The login throttle's bookkeeping (see login_throttle.h for the rules and their numbers); runs
// in jobworkerd.
#include "supervisor/accounts/login_throttle.h"

#include <algorithm>
#include <cstddef>

namespace jw::supervisor {

namespace {

constexpr uint64_t kMinuteMs = 60'000;

// Makes room for one more entry in `m`: expired entries go first, then (if that was not enough)
// the least recently active eighth. Ties at the cut are removed in key order.
template <typename Map, typename Expired, typename LastMs>
void makeRoom(Map& m, Expired expired, LastMs last_ms) {
  if (m.size() < LoginThrottle::kMaxEntries) return;
  std::erase_if(m, [&](const auto& kv) { return expired(kv.second); });
  if (m.size() < LoginThrottle::kMaxEntries) return;
  std::vector<uint64_t> times;
  times.reserve(m.size());
  for (const auto& kv : m) times.push_back(last_ms(kv.second));
  size_t k = std::max<size_t>(1, m.size() / 8);
  std::nth_element(times.begin(), times.begin() + static_cast<std::ptrdiff_t>(k - 1), times.end());
  uint64_t cutoff = times[k - 1];
  size_t removed = 0;
  for (auto it = m.begin(); it != m.end() && removed < k;) {
    if (last_ms(it->second) <= cutoff) {
      it = m.erase(it);
      removed++;
    } else {
      ++it;
    }
  }
}

}  // namespace

uint64_t LoginDecision::retryAfterSeconds() const {
  if (allowed) return 0;
  return std::max<uint64_t>(1, (retry_after_ms + 999) / 1000);
}

LoginThrottle::LoginThrottle(Clock now, LoginThrottleLimits limits)
    : now_(std::move(now)), limits_(limits) {
  limits_.user_reserved_per_minute =
      std::min(limits_.user_reserved_per_minute, limits_.user_checks_per_minute);
}

// The end of the back-off `f` has earned; 0 when it has none (few failures, or forgotten).
uint64_t LoginThrottle::backoffUntil(const Failures& f, uint32_t free_failures) const {
  if (f.count < free_failures) return 0;
  uint64_t delay = limits_.backoff_base_ms;
  for (uint32_t i = free_failures; i < f.count && delay < limits_.backoff_cap_ms; i++) delay *= 2;
  return f.last_ms + std::min(delay, limits_.backoff_cap_ms);
}

bool LoginThrottle::trusted(const std::string& user, const std::string& address,
                            uint64_t now) const {
  auto it = trusted_.find(user);
  if (it == trusted_.end()) return false;
  for (const Trusted& t : it->second.addresses) {
    if (t.address == address) return now - t.at_ms <= limits_.trusted_for_ms;
  }
  return false;
}

uint64_t LoginThrottle::take(Bucket& b, uint32_t per_minute, uint64_t now) const {
  if (per_minute == 0) return kMinuteMs;
  uint64_t interval = kMinuteMs / per_minute;
  uint64_t tolerance = interval * (per_minute - 1);  // a full bucket admits per_minute at once
  uint64_t t = std::max(b.tat_ms, now);
  if (t - now > tolerance) return t - tolerance - now;
  b.tat_ms = t + interval;
  return 0;
}

LoginDecision LoginThrottle::admit(const std::string& user, const std::string& address) {
  uint64_t now = now_();
  auto expired = [&](const Failures& f) {
    return f.in_flight == 0 && now - f.last_ms > limits_.failure_memory_ms;
  };
  Failures pair, addr;
  if (auto it = pairs_.find({user, address}); it != pairs_.end() && !expired(it->second)) {
    pair = it->second;
  }
  if (auto it = addresses_.find(address); it != addresses_.end() && !expired(it->second)) {
    addr = it->second;
  }
  // Checks in flight count as failures; their back-off starts when they end, so meanwhile the
  // pair waits for them (at least the base delay).
  if (pair.in_flight > 0 && pair.count + pair.in_flight >= limits_.pair_free_failures) {
    return LoginDecision{false, limits_.backoff_base_ms, "user+address back-off"};
  }
  uint64_t pair_until = backoffUntil(pair, limits_.pair_free_failures);
  uint64_t addr_until = backoffUntil(addr, limits_.address_free_failures);
  if (pair_until > now || addr_until > now) {
    bool by_pair = pair_until >= addr_until;
    return LoginDecision{false, std::max(pair_until, addr_until) - now,
                         by_pair ? "user+address back-off" : "address back-off"};
  }
  LoginDecision d = admitByRate(user, address, pair, now);
  if (d.allowed) {
    PairKey key{user, address};
    if (pairs_.find(key) == pairs_.end()) {
      makeRoom(pairs_, expired, [](const Failures& f) { return f.last_ms; });
    }
    Failures& f = pairs_[key];
    if (expired(f)) f = Failures{};
    f.in_flight++;
    f.last_ms = std::max(f.last_ms, now);
  }
  return d;
}

LoginDecision LoginThrottle::admitByRate(const std::string& user, const std::string& address,
                                         const Failures& pair, uint64_t now) {
  if (users_.find(user) == users_.end()) {
    makeRoom(
        users_, [&](const UserRate& r) { return r.open.tat_ms <= now && r.reserved.tat_ms <= now; },
        [](const UserRate& r) { return r.last_ms; });
  }
  UserRate& rate = users_[user];
  rate.last_ms = now;
  uint32_t reserved = limits_.user_reserved_per_minute;
  uint32_t open = limits_.user_checks_per_minute - reserved;
  uint64_t wait = UINT64_MAX;
  if (reserved > 0 && pair.count < limits_.pair_free_failures && trusted(user, address, now)) {
    wait = take(rate.reserved, reserved, now);
    if (wait == 0) return LoginDecision{};
  }
  uint64_t open_wait = take(rate.open, open, now);
  if (open_wait == 0) return LoginDecision{};
  return LoginDecision{false, std::min(wait, open_wait), "user rate ceiling"};
}

void LoginThrottle::recordFailure(const std::string& user, const std::string& address) {
  uint64_t now = now_();
  auto expired = [&](const Failures& f) { return now - f.last_ms > limits_.failure_memory_ms; };
  auto last = [](const Failures& f) { return f.last_ms; };
  auto bump = [&](Failures& f) {
    if (expired(f)) f.count = 0;
    f.count++;
    f.last_ms = now;
  };
  PairKey key{user, address};
  settle(key);
  if (pairs_.find(key) == pairs_.end()) makeRoom(pairs_, expired, last);
  bump(pairs_[key]);
  if (addresses_.find(address) == addresses_.end()) makeRoom(addresses_, expired, last);
  bump(addresses_[address]);
}

void LoginThrottle::settle(const PairKey& key) {
  auto it = pairs_.find(key);  // an evicted entry has nothing to settle
  if (it != pairs_.end() && it->second.in_flight > 0) it->second.in_flight--;
}

void LoginThrottle::recordUnchecked(const std::string& user, const std::string& address) {
  settle({user, address});
}

void LoginThrottle::recordSuccess(const std::string& user, const std::string& address) {
  uint64_t now = now_();
  // Other checks of the pair still in flight stay counted: only this one's outcome is known.
  if (auto it = pairs_.find({user, address}); it != pairs_.end() && it->second.in_flight > 1) {
    it->second = Failures{0, it->second.last_ms, it->second.in_flight - 1};
  } else {
    pairs_.erase({user, address});
  }
  if (trusted_.find(user) == trusted_.end()) {
    makeRoom(
        trusted_, [&](const TrustedSet& s) { return now - s.last_ms > limits_.trusted_for_ms; },
        [](const TrustedSet& s) { return s.last_ms; });
  }
  TrustedSet& set = trusted_[user];
  std::erase_if(set.addresses, [&](const Trusted& t) { return t.address == address; });
  set.addresses.insert(set.addresses.begin(), Trusted{address, now});
  if (set.addresses.size() > limits_.trusted_addresses_per_user) {
    set.addresses.resize(limits_.trusted_addresses_per_user);
  }
  set.last_ms = now;
}

}  // namespace jw::supervisor
