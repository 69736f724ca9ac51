// Session table (see sessions.h); runs in jobworkerd.
#include "supervisor/accounts/sessions.h"

#include <algorithm>

namespace jw::supervisor {

Status SessionStore::add(const protocol::SessionEntry& s, int64_t now_ms) {
  if (s.expires_at_ms <= now_ms) return Error{"session already expired"};
  if (s.expires_at_ms > now_ms + static_cast<int64_t>(ttl_ms_) + kExpirySlackMs) {
    return Error{"session expiry beyond the configured session_ttl"};
  }
  if (by_hash_.size() >= kMaxSessions) pruneExpired(now_ms);  // housekeeping prunes the rest
  if (by_hash_.size() >= kMaxSessions && by_hash_.find(s.token_hash) == by_hash_.end()) {
    auto soonest = std::min_element(by_hash_.begin(), by_hash_.end(), [](auto& a, auto& b) {
      return a.second.expires_at_ms < b.second.expires_at_ms;
    });
    by_hash_.erase(soonest);
  }
  by_hash_[s.token_hash] = s;
  return okStatus();
}

void SessionStore::revoke(const protocol::TokenHash& h) { by_hash_.erase(h); }

void SessionStore::pruneExpired(int64_t now_ms) {
  for (auto it = by_hash_.begin(); it != by_hash_.end();) {
    it = it->second.expires_at_ms <= now_ms ? by_hash_.erase(it) : std::next(it);
  }
}

std::vector<std::string> SessionStore::encodeTable() const {
  std::vector<std::string> frames;
  protocol::SessionTable part;
  auto flush = [&](bool more) {
    frames.push_back(protocol::encodeSessionTable(0, part, more ? protocol::kFlagMore : 0));
    part.sessions.clear();
  };
  size_t left = by_hash_.size();
  for (const auto& [hash, entry] : by_hash_) {
    part.sessions.push_back(entry);
    left--;
    if (part.sessions.size() == protocol::kMaxSessionsPerFrame && left > 0) flush(true);
  }
  flush(false);
  return frames;
}

}  // namespace jw::supervisor
