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
      return a.second.entry.expires_at_ms < b.second.entry.expires_at_ms;
    });
    by_hash_.erase(soonest);
  }
  Stored& stored = by_hash_[s.token_hash];
  if (stored.created_at_ms == 0) stored.created_at_ms = now_ms;
  stored.entry = s;
  return okStatus();
}

void SessionStore::revoke(const protocol::TokenHash& h) { by_hash_.erase(h); }

size_t SessionStore::revokeUser(const std::string& user) {
  size_t before = by_hash_.size();
  removeUsersIf([&](const std::string& u) { return u == user; });
  return before - by_hash_.size();
}

std::vector<protocol::ControlSessionInfo> SessionStore::summaries() const {
  std::vector<protocol::ControlSessionInfo> out;
  out.reserve(by_hash_.size());
  for (const auto& [hash, s] : by_hash_) {
    // The remote address is not known until logins go through the supervisor ("[authority]").
    out.push_back({s.entry.user, s.created_at_ms, s.entry.expires_at_ms, ""});
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) {
    return a.created_at_ms != b.created_at_ms ? a.created_at_ms < b.created_at_ms : a.user < b.user;
  });
  return out;
}

void SessionStore::pruneExpired(int64_t now_ms) {
  for (auto it = by_hash_.begin(); it != by_hash_.end();) {
    it = it->second.entry.expires_at_ms <= now_ms ? by_hash_.erase(it) : std::next(it);
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
  for (const auto& [hash, stored] : by_hash_) {
    part.sessions.push_back(stored.entry);
    left--;
    if (part.sessions.size() == protocol::kMaxSessionsPerFrame && left > 0) flush(true);
  }
  flush(false);
  return frames;
}

}  // namespace jw::supervisor
