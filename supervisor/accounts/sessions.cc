// Session table (see sessions.h); runs in jobworkerd.
#include "supervisor/accounts/sessions.h"

#include <sodium.h>

#include <algorithm>

#include "common/protocol/control_messages.h"

namespace jw::supervisor {

SessionStore::Hash SessionStore::hashToken(const protocol::Token& token) {
  Hash h{};
  crypto_generichash(h.data(), h.size(), token.bytes.data(), token.bytes.size(), nullptr, 0);
  return h;
}

std::string SessionStore::idOf(const Hash& hash) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string id;
  for (size_t i = 0; id.size() < protocol::kSessionIdLength; i++) {
    id += kHex[hash[i] >> 4];
    id += kHex[hash[i] & 0xf];
  }
  return id;
}

SessionStore::Minted SessionStore::mint(const std::string& user, const std::string& remote_address,
                                        int64_t now_ms) {
  return mint(user, remote_address, now_ms, ttl_ms_);
}

SessionStore::Minted SessionStore::mint(const std::string& user, const std::string& remote_address,
                                        int64_t now_ms, uint64_t ttl_ms) {
  if (by_hash_.size() >= kMaxSessions) pruneExpired(now_ms);  // housekeeping prunes the rest
  if (by_hash_.size() >= kMaxSessions) {
    auto soonest = std::min_element(by_hash_.begin(), by_hash_.end(), [](auto& a, auto& b) {
      return a.second.expires_at_ms < b.second.expires_at_ms;
    });
    ended(soonest->first);
    by_hash_.erase(soonest);
  }
  Minted m{{}, now_ms + static_cast<int64_t>(ttl_ms)};
  randombytes_buf(m.token.bytes.data(), m.token.bytes.size());
  Hash hash = hashToken(m.token);
  const Session& s = by_hash_[hash] = Session{user, m.expires_at_ms, now_ms, 0, remote_address};
  if (observer_) observer_(hash, &s);
  return m;
}

const SessionStore::Session* SessionStore::find(const protocol::Token& token,
                                                int64_t now_ms) const {
  auto it = by_hash_.find(hashToken(token));
  if (it == by_hash_.end() || it->second.expires_at_ms <= now_ms) return nullptr;
  return &it->second;
}

const SessionStore::Session* SessionStore::use(const protocol::Token& token, int64_t now_ms) {
  auto it = by_hash_.find(hashToken(token));
  if (it == by_hash_.end() || it->second.expires_at_ms <= now_ms) return nullptr;
  it->second.last_used_at_ms = now_ms;
  return &it->second;
}

bool SessionStore::revoke(const protocol::Token& token) {
  Hash hash = hashToken(token);
  if (by_hash_.erase(hash) == 0) return false;
  ended(hash);
  return true;
}

size_t SessionStore::revokeUser(const std::string& user) {
  size_t before = by_hash_.size();
  removeUsersIf([&](const std::string& u) { return u == user; });
  return before - by_hash_.size();
}

size_t SessionStore::revokeId(std::string_view id) {
  size_t before = by_hash_.size();
  for (auto it = by_hash_.begin(); it != by_hash_.end();) {
    if (idOf(it->first) == id) {
      ended(it->first);
      it = by_hash_.erase(it);
    } else {
      ++it;
    }
  }
  return before - by_hash_.size();
}

std::vector<SessionStore::Listed> SessionStore::list(int64_t now_ms) const {
  std::vector<Listed> out;
  out.reserve(by_hash_.size());
  for (const auto& [hash, s] : by_hash_) {
    if (s.expires_at_ms > now_ms) out.push_back({idOf(hash), s});
  }
  std::sort(out.begin(), out.end(), [](const Listed& a, const Listed& b) {
    if (a.session.created_at_ms != b.session.created_at_ms) {
      return a.session.created_at_ms < b.session.created_at_ms;
    }
    return a.id < b.id;
  });
  return out;
}

void SessionStore::pruneExpired(int64_t now_ms) {
  for (auto it = by_hash_.begin(); it != by_hash_.end();) {
    if (it->second.expires_at_ms <= now_ms) {
      ended(it->first);
      it = by_hash_.erase(it);
    } else {
      ++it;
    }
  }
}

}  // namespace jw::supervisor
