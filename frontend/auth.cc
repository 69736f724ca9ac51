// Users, sessions, password checks and login throttling (see auth.h); runs in
// jobworker-frontend, called from HTTP worker threads and the channel reader thread.
#include "frontend/auth.h"

#include <sodium.h>

#include <algorithm>
#include <stdexcept>

namespace jw::frontend {

namespace {
constexpr std::string_view kTokenPrefix = "jw_";
constexpr size_t kTokenRandomBytes = 32;
constexpr size_t kTokenLength = 3 + 43;  // prefix + base64url(32 bytes) without padding
constexpr size_t kMaxThrottleRecords = 10'000;
}  // namespace

int64_t systemNowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string newToken() {
  unsigned char raw[kTokenRandomBytes];
  randombytes_buf(raw, sizeof raw);
  char b64[sodium_base64_ENCODED_LEN(kTokenRandomBytes, sodium_base64_VARIANT_URLSAFE_NO_PADDING)];
  sodium_bin2base64(b64, sizeof b64, raw, sizeof raw, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
  sodium_memzero(raw, sizeof raw);
  return std::string(kTokenPrefix) + b64;
}

protocol::TokenHash hashToken(std::string_view token) {
  protocol::TokenHash h{};
  crypto_generichash(h.data(), h.size(), reinterpret_cast<const unsigned char*>(token.data()),
                     token.size(), nullptr, 0);
  return h;
}

bool wellFormedToken(std::string_view token) {
  if (token.size() != kTokenLength || token.substr(0, kTokenPrefix.size()) != kTokenPrefix) {
    return false;
  }
  return std::all_of(token.begin() + kTokenPrefix.size(), token.end(), [](char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_';
  });
}

// --- AuthStore --------------------------------------------------------------------------------

std::vector<protocol::TokenHash> AuthStore::setUsers(const protocol::UserTable& table) {
  std::map<std::string, UserInfo> fresh;
  for (const auto& u : table.users) fresh[u.name] = UserInfo{u.password_hash, u.role};
  std::vector<protocol::TokenHash> dropped;
  std::unique_lock lock(mu_);
  for (auto it = sessions_.begin(); it != sessions_.end();) {
    auto old_user = users_.find(it->second.user);
    auto new_user = fresh.find(it->second.user);
    bool gone = new_user == fresh.end();
    bool repassworded = !gone && old_user != users_.end() &&
                        old_user->second.password_hash != new_user->second.password_hash;
    if (gone || repassworded) {
      dropped.push_back(it->first);
      it = sessions_.erase(it);
    } else {
      ++it;
    }
  }
  users_ = std::move(fresh);
  return dropped;
}

void AuthStore::addSession(const protocol::SessionEntry& s) {
  std::unique_lock lock(mu_);
  sessions_[s.token_hash] = Session{s.token_hash, s.user, s.expires_at_ms};
}

void AuthStore::removeSession(const protocol::TokenHash& h) {
  std::unique_lock lock(mu_);
  sessions_.erase(h);
}

std::optional<Principal> AuthStore::checkToken(std::string_view token) const {
  if (!wellFormedToken(token)) return std::nullopt;
  protocol::TokenHash h = hashToken(token);
  std::shared_lock lock(mu_);
  auto it = sessions_.find(h);
  if (it == sessions_.end()) return std::nullopt;
  // The map lookup compared hashes already; compare again in constant time so the decision
  // never depends on an early-exit comparison of secret-derived bytes.
  if (sodium_memcmp(it->second.hash.data(), h.data(), h.size()) != 0) return std::nullopt;
  if (it->second.expires_at_ms <= now_()) return std::nullopt;
  auto u = users_.find(it->second.user);
  if (u == users_.end()) return std::nullopt;
  return Principal{it->second.user, u->second.role, h};
}

std::optional<AuthStore::UserInfo> AuthStore::user(const std::string& name) const {
  std::shared_lock lock(mu_);
  auto it = users_.find(name);
  if (it == users_.end()) return std::nullopt;
  return it->second;
}

// --- PasswordChecker --------------------------------------------------------------------------

PasswordChecker::PasswordChecker(uint32_t max_concurrent)
    : slots_(std::clamp<std::ptrdiff_t>(max_concurrent, 1, 1024)) {
  unsigned char pw[16];
  randombytes_buf(pw, sizeof pw);
  char hash[crypto_pwhash_STRBYTES];
  if (crypto_pwhash_str(hash, reinterpret_cast<const char*>(pw), sizeof pw,
                        crypto_pwhash_OPSLIMIT_INTERACTIVE,
                        crypto_pwhash_MEMLIMIT_INTERACTIVE) != 0) {
    throw std::runtime_error("crypto_pwhash_str: out of memory computing the dummy hash");
  }
  dummy_hash_ = hash;
}

PasswordChecker::Outcome PasswordChecker::verify(const std::string* hash, std::string_view password,
                                                 std::chrono::milliseconds wait) {
  if (!slots_.try_acquire_for(wait)) return Outcome::kBusy;
  const std::string& h = hash != nullptr ? *hash : dummy_hash_;
  int rc = crypto_pwhash_str_verify(h.c_str(), password.data(), password.size());
  slots_.release();
  return rc == 0 && hash != nullptr ? Outcome::kOk : Outcome::kWrong;
}

// --- LoginThrottle ----------------------------------------------------------------------------

LoginThrottle::LoginThrottle(uint32_t max_failures, uint64_t lockout_ms, Clock now)
    : max_failures_(max_failures),
      lockout_ms_(static_cast<int64_t>(lockout_ms)),
      now_(std::move(now)) {}

uint64_t LoginThrottle::remaining(std::map<std::string, Record>& m, const std::string& key,
                                  int64_t now) {
  auto it = m.find(key);
  if (it == m.end()) return 0;
  if (it->second.locked_until_ms > now) {
    return static_cast<uint64_t>(it->second.locked_until_ms - now);
  }
  if (now - it->second.last_ms >= lockout_ms_) m.erase(it);  // old failures are forgiven
  return 0;
}

uint64_t LoginThrottle::blockedForMs(const std::string& user, const std::string& addr) {
  if (max_failures_ == 0) return 0;
  std::lock_guard lock(mu_);
  int64_t now = now_();
  return std::max(remaining(by_user_, user, now), remaining(by_addr_, addr, now));
}

std::chrono::milliseconds LoginThrottle::fail(std::map<std::string, Record>& m,
                                              const std::string& key, int64_t now, uint32_t limit) {
  if (m.size() >= kMaxThrottleRecords) prune(m, now);
  Record& r = m[key];
  if (r.failures > 0 && now - r.last_ms >= lockout_ms_ && r.locked_until_ms <= now) r = Record{};
  r.failures++;
  r.last_ms = now;
  if (r.failures >= limit) {
    r.locked_until_ms = now + lockout_ms_;
    r.failures = 0;  // after the lockout, the count starts again
    return std::chrono::milliseconds(0);
  }
  int64_t delay = 250LL << std::min<uint32_t>(r.failures - 1, 3);
  return std::chrono::milliseconds(delay);
}

std::chrono::milliseconds LoginThrottle::recordFailure(const std::string& user,
                                                       const std::string& addr) {
  if (max_failures_ == 0) return std::chrono::milliseconds(0);
  std::lock_guard lock(mu_);
  int64_t now = now_();
  return std::max(fail(by_user_, user, now, max_failures_),
                  fail(by_addr_, addr, now, max_failures_ * kAddressFactor));
}

void LoginThrottle::recordSuccess(const std::string& user) {
  std::lock_guard lock(mu_);
  by_user_.erase(user);
}

void LoginThrottle::prune(std::map<std::string, Record>& m, int64_t now) {
  for (auto it = m.begin(); it != m.end();) {
    bool stale = it->second.locked_until_ms <= now && now - it->second.last_ms >= lockout_ms_;
    it = stale ? m.erase(it) : std::next(it);
  }
  // Still full of live records: an address spraying names. Forget the oldest half rather than
  // grow without bound; the per-address record keeps throttling the sprayer.
  while (m.size() >= kMaxThrottleRecords) {
    auto oldest = std::min_element(m.begin(), m.end(), [](const auto& a, const auto& b) {
      return a.second.last_ms < b.second.last_ms;
    });
    m.erase(oldest);
    if (m.size() < kMaxThrottleRecords / 2) break;
  }
}

}  // namespace jw::frontend
