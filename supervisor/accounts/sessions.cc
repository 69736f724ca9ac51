// Session table (see sessions.h); runs in jobworkerd.
#include "supervisor/accounts/sessions.h"

#include <sodium.h>

#include <algorithm>

namespace jw::supervisor {

SessionStore::Hash SessionStore::hashToken(const protocol::Token& token) {
  Hash h{};
  crypto_generichash(h.data(), h.size(), token.bytes.data(), token.bytes.size(), nullptr, 0);
  return h;
}

SessionStore::Minted SessionStore::mint(const std::string& user, int64_t now_ms) {
  if (by_hash_.size() >= kMaxSessions) pruneExpired(now_ms);  // housekeeping prunes the rest
  if (by_hash_.size() >= kMaxSessions) {
    auto soonest = std::min_element(by_hash_.begin(), by_hash_.end(), [](auto& a, auto& b) {
      return a.second.expires_at_ms < b.second.expires_at_ms;
    });
    by_hash_.erase(soonest);
  }
  Minted m{{}, now_ms + static_cast<int64_t>(ttl_ms_)};
  randombytes_buf(m.token.bytes.data(), m.token.bytes.size());
  by_hash_[hashToken(m.token)] = Session{user, m.expires_at_ms, now_ms};
  return m;
}

const SessionStore::Session* SessionStore::find(const protocol::Token& token,
                                                int64_t now_ms) const {
  auto it = by_hash_.find(hashToken(token));
  if (it == by_hash_.end() || it->second.expires_at_ms <= now_ms) return nullptr;
  return &it->second;
}

bool SessionStore::revoke(const protocol::Token& token) {
  return by_hash_.erase(hashToken(token)) != 0;
}

size_t SessionStore::revokeUser(const std::string& user) {
  size_t before = by_hash_.size();
  removeUsersIf([&](const std::string& u) { return u == user; });
  return before - by_hash_.size();
}

std::vector<protocol::ControlSessionInfo> SessionStore::summaries() const {
  std::vector<protocol::ControlSessionInfo> out;
  out.reserve(by_hash_.size());
  for (const auto& [hash, s] : by_hash_) out.push_back({s.user, s.created_at_ms, s.expires_at_ms, ""});
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) {
    return a.created_at_ms != b.created_at_ms ? a.created_at_ms < b.created_at_ms : a.user < b.user;
  });
  return out;
}

void SessionStore::pruneExpired(int64_t now_ms) {
  for (auto it = by_hash_.begin(); it != by_hash_.end();) {
    it = it->second.expires_at_ms <= now_ms ? by_hash_.erase(it) : std::next(it);
  }
}

}  // namespace jw::supervisor
