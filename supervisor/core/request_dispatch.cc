// The request dispatch: a handler table generated from JW_MESSAGES, one entry per
// frontend-to-supervisor message, each decoding its own payload type and calling its handler
// (OpenSSH's mon_dispatch). Runs in jobworkerd, after FrontendProcess's permitted-request check.
#include <string>
#include <type_traits>

#include "supervisor/core/supervisor.h"

namespace jw::supervisor {

namespace {

using protocol::Direction;

// Decodes the payload as the message's own type and hands it to the handler. A payload that
// does not decode is a protocol violation (the frontend encoded it, users cannot), and so is a
// handler's error return; a void handler has replied itself.
template <auto kDecode, auto kHandler>
Status decodeAndHandle(Supervisor& s, uint32_t id, std::string_view payload) {
  auto p = kDecode(payload);
  if (!p) return p.error();
  if constexpr (std::is_void_v<decltype((s.*kHandler)(id, p.value()))>) {
    (s.*kHandler)(id, p.value());
    return okStatus();
  } else {
    return (s.*kHandler)(id, p.value());
  }
}

// True when every frontend-to-supervisor message has exactly one entry and no other message has
// any: checked at compile time below.
template <typename Table>
constexpr bool oneHandlerPerRequest(const Table& table) {
  size_t requests = 0;
  for (const protocol::MessageInfo& m : protocol::kMessages) {
    size_t entries = 0;
    for (const auto& e : table) entries += e.type == m.type ? 1 : 0;
    const bool is_request = m.direction == Direction::kFrontendToSupervisor;
    if (entries != (is_request ? 1U : 0U)) return false;
    requests += is_request ? 1 : 0;
  }
  return std::size(table) == requests;  // and nothing outside the list
}

}  // namespace

// The direction token of each JW_MESSAGES line picks the macro: requests get an entry calling
// handle<Name>, supervisor-to-frontend messages none.
#define JW_REQUEST_ENTRY_kFrontendToSupervisor(name) \
  RequestEntry{protocol::MsgType::k##name,           \
               &decodeAndHandle<&protocol::decode##name##Payload, &Supervisor::handle##name>},
#define JW_REQUEST_ENTRY_kSupervisorToFrontend(name)
#define JW_REQUEST_ENTRY(name, num, dir, payload, doc) JW_REQUEST_ENTRY_##dir(name)

std::span<const Supervisor::RequestEntry> Supervisor::requestTable() {
  static constexpr RequestEntry kTable[] = {JW_MESSAGES(JW_REQUEST_ENTRY)};
  static_assert(oneHandlerPerRequest(kTable),
                "every frontend-to-supervisor message in JW_MESSAGES needs exactly one handler");
  return kTable;
}

#undef JW_REQUEST_ENTRY
#undef JW_REQUEST_ENTRY_kSupervisorToFrontend
#undef JW_REQUEST_ENTRY_kFrontendToSupervisor

Status Supervisor::onRequest(const protocol::FrameHeader& h, std::string_view payload) {
  // FrontendProcess let only permitted request types through; look the type up again anyway
  // (the privileged side re-checks): a type without an entry is a violation, never ignored.
  for (const RequestEntry& e : requestTable()) {
    if (e.type == h.type) return e.run(*this, h.request_id, payload);
  }
  return Error{"no handler for message type " +
               std::string(protocol::msgTypeName(static_cast<uint16_t>(h.type)))};
}

}  // namespace jw::supervisor
