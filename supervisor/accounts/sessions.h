// The session table (token hashes, never tokens): the supervisor keeps it so sessions survive a
// frontend restart, and lists and revokes them for the control socket. Runs in jobworkerd.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "common/protocol/codec.h"
#include "common/protocol/control_codec.h"
#include "common/result.h"

namespace jw::supervisor {

class SessionStore {
 public:
  static constexpr size_t kMaxSessions = 10000;
  // Clock skew and request latency between the frontend's "now" and ours.
  static constexpr int64_t kExpirySlackMs = 60'000;

  explicit SessionStore(uint64_t session_ttl_ms) : ttl_ms_(session_ttl_ms) {}

  // The caller has checked that the user exists. Refuses an expiry in the past or beyond
  // now + ttl + slack. At the cap, the session expiring soonest is evicted.
  Status add(const protocol::SessionEntry& s, int64_t now_ms);
  void revoke(const protocol::TokenHash& h);
  // Ends every session of `user`; returns how many there were.
  size_t revokeUser(const std::string& user);
  // What the control socket shows of each live session (no token hash), oldest first.
  std::vector<protocol::ControlSessionInfo> summaries() const;
  void pruneExpired(int64_t now_ms);
  // Drops the sessions of users that no longer exist (after a users-file reload).
  template <typename Pred>
  void removeUsersIf(Pred gone) {
    for (auto it = by_hash_.begin(); it != by_hash_.end();) {
      it = gone(it->second.entry.user) ? by_hash_.erase(it) : std::next(it);
    }
  }

  // Frames for a new frontend: SessionTable with request id 0, kFlagMore on all but the last,
  // at most kMaxSessionsPerFrame each; an empty table is one frame.
  std::vector<std::string> encodeTable() const;

  size_t size() const { return by_hash_.size(); }
  void setTtl(uint64_t ttl_ms) { ttl_ms_ = ttl_ms; }

 private:
  struct Stored {
    protocol::SessionEntry entry;
    int64_t created_at_ms = 0;  // when add() first saw it
  };

  uint64_t ttl_ms_;
  std::map<protocol::TokenHash, Stored> by_hash_;
};

}  // namespace jw::supervisor
