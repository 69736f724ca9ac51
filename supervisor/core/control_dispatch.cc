// The control socket's dispatch table, generated from JW_CONTROL_MESSAGES (one entry per
// admin-to-supervisor message, checked at compile time), and the control verbs' handlers. Runs
// in jobworkerd, after ControlServer's peer and permitted-request checks.
#include <sodium.h>

#include <string>

#include "common/log.h"
#include "common/names.h"
#include "supervisor/core/supervisor.h"

namespace jw::supervisor {

namespace {

using protocol::ControlDirection;

template <auto kDecode, auto kHandler>
Status decodeAndHandle(Supervisor& s, ControlServer::ConnId c, uint32_t id,
                       std::string_view payload) {
  auto p = kDecode(payload);
  if (!p) return p.error();
  (s.*kHandler)(c, id, p.value());
  return okStatus();
}

template <typename Table>
constexpr bool oneHandlerPerControlRequest(const Table& table) {
  size_t requests = 0;
  for (const protocol::ControlMessageInfo& m : protocol::kControlMessages) {
    size_t entries = 0;
    for (const auto& e : table) entries += e.type == m.type ? 1 : 0;
    const bool is_request = m.direction == ControlDirection::kAdminToSupervisor;
    if (entries != (is_request ? 1U : 0U)) return false;
    requests += is_request ? 1 : 0;
  }
  return std::size(table) == requests;
}

}  // namespace

#define JW_CONTROL_ENTRY_kAdminToSupervisor(name) \
  ControlEntry{protocol::ControlMsgType::k##name, \
               &decodeAndHandle<&protocol::decode##name##Payload, &Supervisor::handle##name>},
#define JW_CONTROL_ENTRY_kSupervisorToAdmin(name)
#define JW_CONTROL_ENTRY(name, num, dir, payload, doc) JW_CONTROL_ENTRY_##dir(name)

std::span<const Supervisor::ControlEntry> Supervisor::controlTable() {
  static constexpr ControlEntry kTable[] = {JW_CONTROL_MESSAGES(JW_CONTROL_ENTRY)};
  static_assert(oneHandlerPerControlRequest(kTable),
                "every admin-to-supervisor message in JW_CONTROL_MESSAGES needs one handler");
  return kTable;
}

#undef JW_CONTROL_ENTRY
#undef JW_CONTROL_ENTRY_kSupervisorToAdmin
#undef JW_CONTROL_ENTRY_kAdminToSupervisor

Status Supervisor::onControlRequest(ControlServer::ConnId c, const protocol::ControlFrameHeader& h,
                                    std::string_view payload) {
  for (const ControlEntry& e : controlTable()) {
    if (e.type == h.type) return e.run(*this, c, h.request_id, payload);
  }
  return Error{"no handler for control message " +
               std::string(protocol::controlMsgTypeName(static_cast<uint16_t>(h.type)))};
}

void Supervisor::handleControlSessionList(ControlServer::ConnId c, uint32_t id,
                                          const protocol::Empty&) {
  std::vector<protocol::ControlSessionInfo> all;
  for (const SessionStore::Listed& l : sessions_.list(realtimeMs())) {
    // A session whose user is gone is refused on its next request and pruned at the next
    // reload; it is no live session to show.
    const UserRecord* u = findUser(l.session.user);
    if (u == nullptr) continue;
    all.push_back({l.id, l.session.user, u->role, l.session.created_at_ms, l.session.expires_at_ms,
                   l.session.last_used_at_ms, l.session.remote_address});
  }
  protocol::ControlSessionsPart part;
  size_t i = 0;
  do {
    part.sessions.clear();
    for (; i < all.size() && part.sessions.size() < protocol::kMaxControlSessionsPerFrame; i++) {
      part.sessions.push_back(all[i]);
    }
    uint16_t flags = i < all.size() ? protocol::kFlagMore : 0;
    control_->send(c, protocol::encodeControlSessions(id, part, flags));
  } while (i < all.size());
}

void Supervisor::handleControlSessionRevokeUser(ControlServer::ConnId c, uint32_t id,
                                                const protocol::ControlUser& u) {
  if (!names::validUserName(u.user)) {
    control_->send(c, protocol::encodeControlError(
                          id, {protocol::ErrorCode::kBadRequest, "invalid user name"}));
    return;
  }
  size_t n = sessions_.revokeUser(u.user);
  log::event(log::Priority::kNotice, log::ids::kSessionsRevoked,
             "administrator revoked " + std::to_string(n) + " session(s) of " + log::quote(u.user),
             {{"USER", u.user}, {"SESSIONS", std::to_string(n)}});
  finishRevocation(c, id, n);
}

void Supervisor::handleControlSessionRevokeId(ControlServer::ConnId c, uint32_t id,
                                              const protocol::ControlSessionId& s) {
  // The decoder checked the id's form (validSessionId).
  size_t n = sessions_.revokeId(s.id);
  log::event(log::Priority::kNotice, log::ids::kSessionsRevoked,
             "administrator revoked " + std::to_string(n) + " session(s) with id " + s.id,
             {{"SESSION_ID", s.id}, {"SESSIONS", std::to_string(n)}});
  finishRevocation(c, id, n);
}

void Supervisor::handleControlTokenCreate(ControlServer::ConnId c, uint32_t id,
                                          const protocol::ControlTokenRequest& t) {
  auto refuse = [&](const std::string& why) {
    control_->send(c, protocol::encodeControlError(id, {protocol::ErrorCode::kBadRequest, why}));
  };
  const UserRecord* u = names::validUserName(t.user) ? findUser(t.user) : nullptr;
  if (u == nullptr) return refuse("no user " + log::quote(t.user) + " in the users file");
  // A scraper's token opens nothing but /metrics only because its account has role metrics.
  if (u->role != protocol::Role::kMetrics) {
    return refuse("user " + t.user + " has role " + std::string(protocol::roleName(u->role)) +
                  "; scrape tokens are for role metrics");
  }
  if (t.ttl_ms == 0 || t.ttl_ms > settings_.max_token_ttl_ms) {
    return refuse("the expiry must be between 1 ms and max_token_ttl (" +
                  std::to_string(settings_.max_token_ttl_ms / (uint64_t{24} * 3600'000)) +
                  " days)");
  }
  SessionStore::Minted m = sessions_.mint(t.user, "", realtimeMs(), t.ttl_ms);
  protocol::ControlTokenReply reply{m.token, SessionStore::idOf(SessionStore::hashToken(m.token)),
                                    m.expires_at_ms};
  log::event(log::Priority::kNotice, log::ids::kTokenCreated,
             "administrator created scrape token " + reply.id + " for " + t.user,
             {{"USER", t.user},
              {"SESSION_ID", reply.id},
              {"EXPIRES_AT_MS", std::to_string(m.expires_at_ms)}});
  std::string frame = protocol::encodeControlToken(id, reply);
  control_->send(c, std::move(frame));
  sodium_memzero(reply.token.bytes.data(), reply.token.bytes.size());
  sodium_memzero(m.token.bytes.data(), m.token.bytes.size());
}

// Every request checks its token against the store, so the revocation holds from here on; the
// follow reads parked with a now dead token are answered at once, so their streams end now
// rather than at the next parked-read timeout.
void Supervisor::finishRevocation(ControlServer::ConnId c, uint32_t id, size_t revoked) {
  if (revoked > 0) releaseParkedWithoutSession();
  control_->send(c, protocol::encodeControlRevoked(id, {static_cast<uint32_t>(revoked)}));
}

}  // namespace jw::supervisor
