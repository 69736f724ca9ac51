// The session table: the supervisor mints every session token (256 random bits) and keeps only
// its hash, the user and the expiry. Tokens arrive with each request and are hashed here; the
// table never leaves this process, so sessions survive a frontend restart; the control socket
// lists and revokes them. Runs in jobworkerd.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "common/protocol/codec.h"

namespace jw::supervisor {

class SessionStore {
 public:
  static constexpr size_t kMaxSessions = 10000;
  using Hash = std::array<uint8_t, 32>;  // BLAKE2b-256 of the token's bytes

  struct Session {
    std::string user;
    int64_t expires_at_ms = 0;  // Unix epoch milliseconds
    int64_t created_at_ms = 0;
    int64_t last_used_at_ms = 0;  // the last request that presented the token; 0: none yet
    std::string remote_address;   // of the login, as the frontend asserted it

    bool operator==(const Session&) const = default;
  };
  // What the control socket shows of a session: a short id (the first bytes of the token's
  // hash, in hex) that names it for `session revoke --id` and is no credential, since only a
  // token works on the channel and the hash cannot be turned back into one.
  struct Listed {
    std::string id;
    Session session;
  };

  explicit SessionStore(uint64_t session_ttl_ms) : ttl_ms_(session_ttl_ms) {}

  // Told of every session that begins (with it) and ends (with null): revoked, expired, evicted,
  // its user gone. The state dir's records follow the table through it. Last uses are not
  // reported: a request does not write to disk.
  using Observer = std::function<void(const Hash&, const Session*)>;
  void setObserver(Observer observer) { observer_ = std::move(observer); }
  // A session of a previous run, from its record (not reported to the observer).
  void restore(const Hash& hash, Session session) { by_hash_[hash] = std::move(session); }

  // A new session for `user` (the caller checked the password), expiring now + ttl. Only the
  // token's hash is stored; the token itself is returned once, for the LoginReply. At the cap,
  // the session expiring soonest is evicted.
  struct Minted {
    protocol::Token token;
    int64_t expires_at_ms;
  };
  Minted mint(const std::string& user, const std::string& remote_address, int64_t now_ms);
  // The same with its own lifetime (a scrape token from the control socket).
  Minted mint(const std::string& user, const std::string& remote_address, int64_t now_ms,
              uint64_t ttl_ms);

  // The live session of `token`, or null (unknown, expired or revoked).
  const Session* find(const protocol::Token& token, int64_t now_ms) const;
  // find(), and records now as the session's last use: for requests made with the token.
  const Session* use(const protocol::Token& token, int64_t now_ms);
  // Ends the session of `token`; false if there was none.
  bool revoke(const protocol::Token& token);
  // Ends every session of `user`; returns how many there were.
  size_t revokeUser(const std::string& user);
  // Ends the session(s) whose id (see Listed) is `id`; returns how many (0 or, as good as
  // always, 1).
  size_t revokeId(std::string_view id);
  // Every live session, oldest first.
  std::vector<Listed> list(int64_t now_ms) const;
  void pruneExpired(int64_t now_ms);
  // Drops the sessions of users that no longer exist (after a users-file reload).
  template <typename Pred>
  size_t removeUsersIf(Pred gone) {  // returns how many sessions ended
    size_t removed = 0;
    for (auto it = by_hash_.begin(); it != by_hash_.end();) {
      if (gone(it->second.user)) {
        ended(it->first);
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
  static std::string idOf(const Hash& hash);

 private:
  void ended(const Hash& hash) const {
    if (observer_) observer_(hash, nullptr);
  }

  uint64_t ttl_ms_;
  std::map<Hash, Session> by_hash_;
  Observer observer_;
};

}  // namespace jw::supervisor
