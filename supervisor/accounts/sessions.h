// The session table: the supervisor mints every session token (256 random bits) and keeps only
// its hash, the user and the expiry. Tokens arrive with each request and are hashed here; the
// table never leaves this process, so sessions survive a frontend restart. Runs in jobworkerd.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <string>

#include "common/protocol/codec.h"

namespace jw::supervisor {

class SessionStore {
 public:
  static constexpr size_t kMaxSessions = 10000;
  using Hash = std::array<uint8_t, 32>;  // BLAKE2b-256 of the token's bytes

  struct Session {
    std::string user;
    int64_t expires_at_ms = 0;  // Unix epoch milliseconds
  };

  explicit SessionStore(uint64_t session_ttl_ms) : ttl_ms_(session_ttl_ms) {}

  // A new session for `user` (the caller checked the password), expiring now + ttl. Only the
  // token's hash is stored; the token itself is returned once, for the LoginReply. At the cap,
  // the session expiring soonest is evicted.
  struct Minted {
    protocol::Token token;
    int64_t expires_at_ms;
  };
  Minted mint(const std::string& user, int64_t now_ms);

  // The live session of `token`, or null (unknown, expired or revoked).
  const Session* find(const protocol::Token& token, int64_t now_ms) const;
  // Ends the session of `token`; false if there was none.
  bool revoke(const protocol::Token& token);
  void pruneExpired(int64_t now_ms);
  // Drops the sessions of users that no longer exist (after a users-file reload).
  template <typename Pred>
  size_t removeUsersIf(Pred gone) {  // returns how many sessions ended
    size_t removed = 0;
    for (auto it = by_hash_.begin(); it != by_hash_.end();) {
      if (gone(it->second.user)) {
        it = by_hash_.erase(it);
        removed++;
      } else {
        ++it;
      }
    }
    return removed;
  }

  size_t size() const { return by_hash_.size(); }
  void setTtl(uint64_t ttl_ms) { ttl_ms_ = ttl_ms; }

  static Hash hashToken(const protocol::Token& token);

 private:
  uint64_t ttl_ms_;
  std::map<Hash, Session> by_hash_;
};

}  // namespace jw::supervisor
