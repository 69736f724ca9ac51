// Authentication state of jobworker-frontend: the user table copy, sessions (token hashes only),
// password checks capped in number, and throttling of failed logins. Shared by the HTTP worker
// threads and the supervisor channel's reader thread; every class here is thread-safe.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <semaphore>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <vector>

#include "common/protocol/codec.h"

namespace jw::frontend {

using Clock = std::function<int64_t()>;  // Unix epoch milliseconds
int64_t systemNowMs();

// Tokens are "jw_" + base64url(32 random bytes), 46 characters; only their BLAKE2b-256 hash is
// kept or sent to the supervisor.
std::string newToken();
protocol::TokenHash hashToken(std::string_view token);
bool wellFormedToken(std::string_view token);

struct Principal {
  std::string user;
  protocol::Role role = protocol::Role::kViewer;
  std::optional<protocol::TokenHash> token;  // set when authenticated by a bearer token
};

class AuthStore {
 public:
  explicit AuthStore(Clock now = systemNowMs) : now_(std::move(now)) {}

  // Replaces the user table. Sessions of users that disappeared or whose password hash changed
  // are dropped; their hashes are returned so the supervisor can forget them too.
  std::vector<protocol::TokenHash> setUsers(const protocol::UserTable& table);
  void addSession(const protocol::SessionEntry& s);
  void removeSession(const protocol::TokenHash& h);

  // The session's user and current role, if the token is known, unexpired and its user exists.
  std::optional<Principal> checkToken(std::string_view token) const;

  struct UserInfo {
    std::string password_hash;
    protocol::Role role;
  };
  std::optional<UserInfo> user(const std::string& name) const;

 private:
  struct Session {
    protocol::TokenHash hash;
    std::string user;
    int64_t expires_at_ms;
  };
  Clock now_;
  mutable std::shared_mutex mu_;
  std::map<std::string, UserInfo> users_;
  std::map<protocol::TokenHash, Session> sessions_;
};

// argon2id checks cost ~64 MiB and tens of milliseconds each: at most `max_concurrent` run at
// once, and a caller that cannot get a slot within `wait` is told to come back (503).
class PasswordChecker {
 public:
  explicit PasswordChecker(uint32_t max_concurrent);
  enum class Outcome { kOk, kWrong, kBusy };
  // A null hash (unknown user) is checked against a dummy hash so the answer takes as long.
  Outcome verify(const std::string* hash, std::string_view password,
                 std::chrono::milliseconds wait);

 private:
  std::counting_semaphore<1024> slots_;
  std::string dummy_hash_;
};

// Failed logins per user name and per client address. Each failure delays its own answer a
// little more (0.25 s, 0.5 s, 1 s, then 2 s); `max_failures` failures of one name within
// `lockout_ms` of each other lock that name for `lockout_ms`, answered with 429 and Retry-After.
// An address is locked the same way after kAddressFactor times as many failures: many users
// can share one address (NAT, proxies), and spraying many names still hits that limit.
class LoginThrottle {
 public:
  static constexpr uint32_t kAddressFactor = 4;
  LoginThrottle(uint32_t max_failures, uint64_t lockout_ms, Clock now = systemNowMs);
  // 0 when an attempt may proceed, else milliseconds until it may.
  uint64_t blockedForMs(const std::string& user, const std::string& addr);
  // Records a failure; returns how long to delay the failed answer.
  std::chrono::milliseconds recordFailure(const std::string& user, const std::string& addr);
  // A success clears the user's record (not the address's: one valid account must not reset
  // the count of guesses against others from the same address).
  void recordSuccess(const std::string& user);

 private:
  struct Record {
    uint32_t failures = 0;
    int64_t last_ms = 0;
    int64_t locked_until_ms = 0;
  };
  uint64_t remaining(std::map<std::string, Record>& m, const std::string& key, int64_t now);
  std::chrono::milliseconds fail(std::map<std::string, Record>& m, const std::string& key,
                                 int64_t now, uint32_t limit);
  void prune(std::map<std::string, Record>& m, int64_t now);

  uint32_t max_failures_;
  int64_t lockout_ms_;
  Clock now_;
  std::mutex mu_;
  std::map<std::string, Record> by_user_;
  std::map<std::string, Record> by_addr_;
};

}  // namespace jw::frontend
