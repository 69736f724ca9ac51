// The session requests: Login (throttle, then the password check in jobworker-verifier, then a
// minted token), SessionRevoke, and the session -> user -> role resolution every other request
// starts with. The frontend never sees a hash or the session table. Runs in jobworkerd.
#include <sodium.h>

#include "common/log.h"
#include "common/policy.h"
#include "supervisor/core/supervisor.h"

namespace jw::supervisor {

using protocol::ErrorCode;

namespace {

// What a login without a free check slot, or without a running verifier, is told to wait.
constexpr uint32_t kBusyRetryAfterS = 1;

void wipe(std::string& s) {
  if (!s.empty()) sodium_memzero(s.data(), s.size());
  s.clear();
}

}  // namespace

const UserRecord* Supervisor::authenticate(uint32_t id, const protocol::Token& token,
                                           AuthScope scope) {
  const SessionStore::Session* s = sessions_.use(token, realtimeMs());
  const UserRecord* u = s != nullptr ? findUser(s->user) : nullptr;
  // One answer for unknown, expired, revoked and orphaned sessions: the frontend learns nothing.
  if (u == nullptr) {
    replyError(id, ErrorCode::kUnauthorized, "unknown or expired session");
    return nullptr;
  }
  // The role rule of every request in one place: a scraper's token opens nothing but the
  // figures (and whoami), and the figures need a scraper or an admin.
  if (scope == AuthScope::kApi && !policy::roleMayUseApi(u->role)) {
    replyError(id, ErrorCode::kForbidden, "role metrics can only read /metrics");
    return nullptr;
  }
  if (scope == AuthScope::kScrape && !policy::roleMayScrape(u->role)) {
    replyError(id, ErrorCode::kForbidden,
               "role " + std::string(protocol::roleName(u->role)) + " cannot read /metrics");
    return nullptr;
  }
  return u;
}

void Supervisor::handleLogin(uint32_t id, protocol::LoginRequest& r) {
  LoginDecision d = throttle_.admit(r.user, r.remote_address);
  if (!d.allowed) {
    wipe(r.password);
    metrics_.login(protocol::LoginResult::kThrottled);
    log::event(log::Priority::kNotice, log::ids::kLoginFailed,
               "login for " + log::quote(r.user) + " from " + log::quote(r.remote_address) +
                   " throttled (" + std::string(d.reason) + ")",
               {{"USER", r.user},
                {"REMOTE_ADDR", r.remote_address},
                {"LOGIN_RESULT", "throttled"},
                {"THROTTLE_REASON", std::string(d.reason)}});
    protocol::ErrorReply e{ErrorCode::kThrottled, 0, "too many failed logins; retry later",
                           static_cast<uint32_t>(d.retryAfterSeconds())};
    frontend_->send(protocol::encodeErrorReply(id, e));
    return;
  }
  // Unknown users are checked against the dummy hash: the answer takes as long either way.
  const UserRecord* u = findUser(r.user);
  std::string_view stored = u != nullptr ? std::string_view(u->password_hash) : std::string_view();
  uint64_t generation = frontend_generation_;
  verifier_.check(r.user, r.password, stored,
                  [this, id, generation, user = r.user, addr = r.remote_address](
                      PasswordVerdict v) { finishLogin(id, generation, user, addr, v); });
  wipe(r.password);
}

void Supervisor::finishLogin(uint32_t id, uint64_t generation, const std::string& user,
                             const std::string& address, PasswordVerdict v) {
  // The frontend that asked is gone: the outcome still counts, the reply has nobody to go to
  // (a new frontend would take the request id for one of its own).
  bool asker_alive = generation == frontend_generation_ && frontend_ready_;
  auto reply = [&](std::string frame) {
    if (asker_alive) frontend_->send(std::move(frame));
  };
  const UserRecord* u = findUser(user);  // again: a SIGHUP may have removed it meanwhile
  if (v == PasswordVerdict::kBusy || v == PasswordVerdict::kUnavailable) {
    throttle_.recordUnchecked(user, address);
    metrics_.login(protocol::LoginResult::kUnavailable);
    protocol::ErrorReply e{ErrorCode::kBusy, 0,
                           v == PasswordVerdict::kBusy ? "every password check slot is busy"
                                                       : "the password verifier is restarting",
                           kBusyRetryAfterS};
    reply(protocol::encodeErrorReply(id, e));
    return;
  }
  if (v != PasswordVerdict::kMatch || u == nullptr) {
    throttle_.recordFailure(user, address);
    // Two events for the administrator (a name being guessed vs a password being guessed); one
    // answer for the client, which must not learn which names exist.
    const bool unknown = u == nullptr;
    metrics_.login(unknown ? protocol::LoginResult::kUnknownUser
                           : protocol::LoginResult::kWrongPassword);
    log::event(log::Priority::kNotice,
               unknown ? log::ids::kLoginUnknownUser : log::ids::kLoginFailed,
               "login for " + log::quote(user) + " from " + log::quote(address) +
                   " failed: " + (unknown ? "no such user" : "wrong password"),
               {{"USER", user},
                {"REMOTE_ADDR", address},
                {"LOGIN_RESULT", unknown ? "unknown_user" : "wrong_password"},
                {"THROTTLE_REASON", ""}});
    reply(protocol::encodeErrorReply(
        id, {ErrorCode::kUnauthorized, 0, "wrong user name or password", 0}));
    return;
  }
  throttle_.recordSuccess(user, address);
  metrics_.login(protocol::LoginResult::kOk);
  SessionStore::Minted m = sessions_.mint(user, address, realtimeMs());
  log::event(
      log::Priority::kInfo, log::ids::kLogin,
      "login for " + log::quote(user) + " from " + log::quote(address),
      {{"USER", user}, {"REMOTE_ADDR", address}, {"LOGIN_RESULT", "ok"}, {"THROTTLE_REASON", ""}});
  protocol::LoginReply lr{m.token, u->role, m.expires_at_ms};
  reply(protocol::encodeLoginReply(id, lr));
  sodium_memzero(lr.token.bytes.data(), lr.token.bytes.size());
  sodium_memzero(m.token.bytes.data(), m.token.bytes.size());
}

void Supervisor::handleSessionRevoke(uint32_t id, const protocol::SessionEnd& s) {
  // Logout names the session it ends: only a holder of the token can end it.
  const UserRecord* u = authenticate(id, s.token);
  if (u == nullptr) return;
  sessions_.revoke(s.token);
  log::event(log::Priority::kInfo, log::ids::kLogout,
             "logout of " + u->name + " from " + log::quote(s.remote_address),
             {{"USER", u->name}, {"REMOTE_ADDR", s.remote_address}});
  frontend_->send(protocol::encodeOk(id, {}));
}

void Supervisor::handleSessionGet(uint32_t id, const protocol::SessionRef& s) {
  const SessionStore::Session* session = sessions_.find(s.token, realtimeMs());
  const UserRecord* u = authenticate(id, s.token, AuthScope::kIdentity);
  if (u == nullptr || session == nullptr) return;
  frontend_->send(protocol::encodeSessionInfo(id, {u->name, u->role, session->expires_at_ms}));
}

}  // namespace jw::supervisor
