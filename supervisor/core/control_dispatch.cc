// The control socket's dispatch table, generated from JW_CONTROL_MESSAGES (one entry per
// admin-to-supervisor message, checked at compile time), and the control verbs' handlers. Runs
// in jobworkerd, after ControlServer's peer and permitted-request checks.
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
  sessions_.pruneExpired(realtimeMs());
  std::vector<protocol::ControlSessionInfo> all = sessions_.summaries();
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

void Supervisor::handleControlSessionRevoke(ControlServer::ConnId c, uint32_t id,
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
  // Until requests carry their token to the supervisor ("[authority]"), the frontend checks
  // tokens against its own copy of the session table, which it receives only when it starts: a
  // fresh frontend is what makes the revocation take effect, and it ends open follow streams.
  if (n > 0 && frontend_) frontend_->restart("sessions of " + log::quote(u.user) + " revoked");
  control_->send(c, protocol::encodeControlRevoked(id, {static_cast<uint32_t>(n)}));
}

}  // namespace jw::supervisor
