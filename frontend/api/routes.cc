// REST API v1 routing and handlers (see routes.h); runs in jobworker-frontend's HTTP worker
// threads, one request at a time per thread.
#include "frontend/api/routes.h"

#include <sodium.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <deque>
#include <thread>

#include "common/config.h"
#include "common/log.h"
#include "common/names.h"
#include "common/policy.h"
#include "common/protocol/messages.h"
#include "frontend/api/metrics_text.h"
#include "frontend/api/request_json.h"
#include "frontend/api/status_json.h"
#include "jw_build_config.h"

namespace jw::frontend {

using protocol::ErrorCode;
using protocol::Role;

namespace {

// What this build of the API offers beyond the first v1 (GET /v1/version).
constexpr const char* kApiFeatures[] = {"wait",       "names",  "labels", "list_filters",
                                        "pagination", "delete", "stdin",  "events"};
constexpr uint64_t kDefaultWaitMs = 60'000;
constexpr uint64_t kMaxWaitMs = 3'600'000;

// In the order of kRouteTemplates (routes.h), which names each one.
enum class Endpoint {
  kHealthz,
  kLogin,
  kLogout,
  kWhoami,
  kVersion,
  kJobs,
  kJob,
  kJobStop,
  kJobLogs,
  kJobWait,
  kJobStdin,
  kEvents,
  kMetrics
};
static_assert(static_cast<size_t>(Endpoint::kMetrics) + 2 == kRouteTemplates.size());

std::string_view routeTemplate(Endpoint e) { return kRouteTemplates.at(static_cast<size_t>(e)); }

struct Route {
  Endpoint endpoint;
  std::string job_id;  // for /v1/jobs/{id}...
};

std::optional<Route> match(const std::vector<std::string>& s) {
  // Prometheus' default metrics_path: outside /v1, as scrapers expect it.
  if (s.size() == 1 && s[0] == "metrics") return Route{Endpoint::kMetrics, ""};
  if (s.size() < 2 || s[0] != "v1") return std::nullopt;
  if (s.size() == 2) {
    if (s[1] == "healthz") return Route{Endpoint::kHealthz, ""};
    if (s[1] == "login") return Route{Endpoint::kLogin, ""};
    if (s[1] == "logout") return Route{Endpoint::kLogout, ""};
    if (s[1] == "whoami") return Route{Endpoint::kWhoami, ""};
    if (s[1] == "version") return Route{Endpoint::kVersion, ""};
    if (s[1] == "jobs") return Route{Endpoint::kJobs, ""};
    if (s[1] == "events") return Route{Endpoint::kEvents, ""};
    return std::nullopt;
  }
  if (s[1] != "jobs") return std::nullopt;
  if (s.size() == 3) return Route{Endpoint::kJob, s[2]};
  if (s.size() == 4 && s[3] == "stop") return Route{Endpoint::kJobStop, s[2]};
  if (s.size() == 4 && s[3] == "logs") return Route{Endpoint::kJobLogs, s[2]};
  if (s.size() == 4 && s[3] == "wait") return Route{Endpoint::kJobWait, s[2]};
  if (s.size() == 4 && s[3] == "stdin") return Route{Endpoint::kJobStdin, s[2]};
  return std::nullopt;
}

const char* allowedMethods(Endpoint e) {
  switch (e) {
    case Endpoint::kHealthz:
    case Endpoint::kWhoami:
    case Endpoint::kVersion:
    case Endpoint::kJobLogs:
    case Endpoint::kJobWait:
    case Endpoint::kEvents:
    case Endpoint::kMetrics:
      return "GET";
    case Endpoint::kJobStdin:
      return "PUT";
    case Endpoint::kJob:
      return "GET, DELETE";
    case Endpoint::kLogin:
    case Endpoint::kLogout:
    case Endpoint::kJobStop:
      return "POST";
    case Endpoint::kJobs:
      return "GET, POST";
  }
  return "";
}

bool methodAllowed(Endpoint e, const std::string& method) {
  if (e == Endpoint::kJobs) return method == "GET" || method == "POST";
  if (e == Endpoint::kJob) return method == "GET" || method == "DELETE";
  return method == allowedMethods(e);
}

std::vector<std::string> allowedParams(Endpoint e, const std::string& method) {
  if (e == Endpoint::kJobs && method == "GET") {
    return {"all", "state", "owner", "name", "label", "since", "limit", "after"};
  }
  if (e == Endpoint::kJobLogs) {
    return {"offset", "follow", "stream", "tail_lines", "since", "timestamps"};
  }
  if (e == Endpoint::kJobWait) return {"timeout_s"};
  if (e == Endpoint::kEvents) return {"follow", "job", "since"};
  return {};
}

void sendJson(Responder& out, int status, const std::string& body, const Headers& headers = {}) {
  out.send(status, headers, "application/json", body);
}

void sendError(Responder& out, const ApiError& e, Headers headers = {}) {
  if (e.status == 401) headers.emplace_back("WWW-Authenticate", "Bearer realm=\"jobworker\"");
  if (e.retry_after_s > 0) headers.emplace_back("Retry-After", std::to_string(e.retry_after_s));
  sendJson(out, e.status, errorJson(e), headers);
}

ApiError unauthorized(std::string message) { return {401, "unauthorized", std::move(message)}; }

ApiResult<bool> boolParam(const Target& t, const std::string& name) {
  auto it = t.query.find(name);
  if (it == t.query.end()) return false;
  if (it->second == "true") return true;
  if (it->second == "false") return false;
  return badRequest("query parameter " + name + " must be true or false");
}

// timeout_s of a wait: seconds from 0 to an hour, fractions allowed.
ApiResult<uint64_t> waitSecondsMs(const std::string& v) {
  char* end = nullptr;
  errno = 0;
  double d = v.empty() || v.find_first_not_of("0123456789.") != std::string::npos
                 ? -1
                 : std::strtod(v.c_str(), &end);
  if (errno != 0 || end == nullptr || *end != '\0' || !std::isfinite(d) || d < 0 ||
      d * 1000 > static_cast<double>(kMaxWaitMs)) {
    return badRequest("timeout_s must be a number of seconds from 0 to " +
                      std::to_string(kMaxWaitMs / 1000));
  }
  return static_cast<uint64_t>(std::ceil(d * 1000));
}

}  // namespace

ApiError fromSupervisor(const protocol::ErrorReply& e) {
  switch (e.code) {
    case ErrorCode::kBadRequest:
      return {400, "bad_request", e.message};
    case ErrorCode::kUnauthorized:
      return {401, "unauthorized", e.message};
    case ErrorCode::kForbidden:
      return {403, "forbidden", e.message};
    case ErrorCode::kLimitExceeded:
      return {403, "limit_exceeded", e.message};
    case ErrorCode::kNotFound:
      return {404, "not_found", e.message};
    case ErrorCode::kConflict:
      return {409, "conflict", e.message};
    case ErrorCode::kTooLarge:
      return {413, "too_large", e.message};
    case ErrorCode::kExecFailed:
      if (e.sys_errno == ENOENT || e.sys_errno == ENOTDIR) {
        return {422, "program_not_found", e.message};
      }
      return {422, "program_not_executable", e.message};
    case ErrorCode::kUnavailable:
      return {503, "unavailable", e.message, 1};
    case ErrorCode::kInternal:
      return {500, "internal", e.message};
    case ErrorCode::kThrottled:
      return {429, "too_many_requests", e.message, static_cast<int>(std::max(e.retry_after_s, 1U))};
    case ErrorCode::kBusy:
      return {503, "unavailable", e.message, static_cast<int>(std::max(e.retry_after_s, 1U))};
    case ErrorCode::kInsufficientStorage:
      return {507, "insufficient_storage", e.message};
    case ErrorCode::kGone:
      return {410, "gone", e.message};
  }
  return {500, "internal", e.message};
}

std::optional<ApiError> checkLimitMaxima(const config::Settings& cfg, const std::string& user,
                                         Role role, const protocol::Limits& l) {
  using Limit = policy::LimitRefusal::Limit;
  auto fit = policy::fitLimits(l, cfg.default_limits, policy::maxima(cfg, user, role),
                               policy::totals(cfg, user, role));
  if (!fit.refused) return std::nullopt;
  const policy::LimitRefusal& r = *fit.refused;
  std::string what = policy::limitField(r.limit);
  if (r.limit == Limit::kIoBps) what += " bytes per second";
  if (r.limit == Limit::kIoIops) what += " operations per second";
  auto text = [&](uint64_t v) {
    return r.limit == Limit::kCpu ? coresText(static_cast<uint32_t>(v)) : std::to_string(v);
  };
  if (r.aggregate) {
    return ApiError{403, "limit_exceeded",
                    what + " " + text(r.asked) + " is over " + text(r.maximum) +
                        ", the aggregate of all your jobs together (" + policy::totalKey(r.limit) +
                        ")"};
  }
  return ApiError{403, "limit_exceeded",
                  what + " " + text(r.asked) + " is over your maximum " + text(r.maximum)};
}

// --- dispatch ---------------------------------------------------------------------------------

void Api::handle(const HttpRequest& r, Responder& out) {
  const auto started = std::chrono::steady_clock::now();
  RequestNote note;
  // Recorded however route() leaves, a follow stream once when it ends.
  struct Observed {
    Api& api;
    const HttpRequest& r;
    Responder& out;
    RequestNote& note;
    std::chrono::steady_clock::time_point started;
    ~Observed() {
      auto us = std::chrono::duration_cast<std::chrono::microseconds>(
          std::chrono::steady_clock::now() - started);
      api.observe(r, out, note, static_cast<uint64_t>(us.count()));
    }
  } observed{*this, r, out, note, started};
  route(r, out, note);
}

void Api::route(const HttpRequest& r, Responder& out, RequestNote& note) {
  auto target = parseTarget(r.target);
  if (!target.ok()) return sendError(out, target.error());
  auto route = match(target.value().segments);
  if (!route) return sendError(out, notFound("no such resource"));
  note.route = routeTemplate(route->endpoint);
  // Only a well-formed id reaches the log: the path is the client's text.
  if (names::validJobId(route->job_id)) note.job_id = route->job_id;
  if (!methodAllowed(route->endpoint, r.method)) {
    return sendError(out,
                     ApiError{405, "bad_request",
                              "method " + log::quote(r.method) + " not allowed; use " +
                                  allowedMethods(route->endpoint)},
                     {{"Allow", allowedMethods(route->endpoint)}});
  }
  auto params = allowedParams(route->endpoint, r.method);
  for (const auto& [k, v] : target.value().query) {
    if (std::find(params.begin(), params.end(), k) == params.end()) {
      return sendError(out, badRequest("unknown query parameter " + log::quote(k)));
    }
  }
  if (route->endpoint == Endpoint::kHealthz) return healthz(r, out);
  if (route->endpoint == Endpoint::kLogin) return login(r, out, note);

  auto principal = authenticate(r);
  if (!principal.ok()) return sendError(out, principal.error());
  const Principal& p = principal.value();
  note.token = p.token;
  if (!route->job_id.empty() && !names::validJobId(route->job_id)) {
    return sendError(out, badRequest("malformed job id (expected a lowercase UUIDv4)"));
  }
  switch (route->endpoint) {
    case Endpoint::kLogout:
      return logout(p, out);
    case Endpoint::kWhoami:
      return whoami(p, out);
    case Endpoint::kVersion:
      return version(p, out);
    case Endpoint::kJobs:
      if (r.method == "POST") return startJob(r, p, out);
      return listJobs(target.value(), p, out);
    case Endpoint::kJob:
      if (r.method == "DELETE") return deleteJob(route->job_id, p, out);
      return getJob(route->job_id, p, out);
    case Endpoint::kJobWait:
      return waitJob(target.value(), route->job_id, p, out);
    case Endpoint::kJobStop:
      return stopJob(r, route->job_id, p, out);
    case Endpoint::kJobLogs:
      return jobLogs(target.value(), route->job_id, p, out);
    case Endpoint::kJobStdin:
      return uploadStdin(r, route->job_id, p, out);
    case Endpoint::kEvents:
      return events(target.value(), p, out);
    case Endpoint::kMetrics:
      return metrics(p, out);
    case Endpoint::kHealthz:
    case Endpoint::kLogin:
      break;
  }
}

// --- authentication ---------------------------------------------------------------------------

namespace {

// "Basic base64(user:password)" -> {user, password}.
std::optional<std::pair<std::string, std::string>> decodeBasic(std::string_view b64) {
  std::string bin(b64.size(), '\0');
  size_t len = 0;
  if (sodium_base642bin(reinterpret_cast<unsigned char*>(bin.data()), bin.size(), b64.data(),
                        b64.size(), nullptr, &len, nullptr, sodium_base64_VARIANT_ORIGINAL) != 0) {
    sodium_memzero(bin.data(), bin.size());
    return std::nullopt;
  }
  bin.resize(len);
  size_t colon = bin.find(':');
  std::optional<std::pair<std::string, std::string>> creds;
  if (colon != std::string::npos) creds = {bin.substr(0, colon), bin.substr(colon + 1)};
  sodium_memzero(bin.data(), bin.size());
  return creds;
}

bool startsWithNoCase(std::string_view s, std::string_view prefix) {
  if (s.size() < prefix.size()) return false;
  for (size_t i = 0; i < prefix.size(); i++) {
    if (std::tolower(static_cast<unsigned char>(s[i])) !=
        std::tolower(static_cast<unsigned char>(prefix[i]))) {
      return false;
    }
  }
  return true;
}

void wipe(std::string& s) {
  if (!s.empty()) sodium_memzero(s.data(), s.size());
  s.clear();
}

// The client's address as the supervisor's audit events record it (capped like the codec).
std::string remoteAddress(const HttpRequest& r) {
  return r.client_addr.substr(0, protocol::kMaxRemoteAddress);
}

}  // namespace

ApiResult<Principal> Api::authenticate(const HttpRequest& r) {
  std::string_view h = r.authorization;
  if (h.empty()) return unauthorized("missing credentials (Authorization: Bearer <token>)");
  if (startsWithNoCase(h, "Bearer ")) {
    // Only the form is checked here; whether the session exists is jobworkerd's answer.
    auto token = parseToken(h.substr(7));
    if (!token) return unauthorized("invalid, expired or revoked token");
    return Principal{*token, remoteAddress(r)};
  }
  if (startsWithNoCase(h, "Basic ")) {
    // A password check per request would cost an argon2id run each time and a session that
    // lives for one request; log in once instead (docs/api.md).
    return unauthorized(
        "HTTP Basic credentials are accepted only by POST /v1/login; log in there and send "
        "Authorization: Bearer <token>");
  }
  return unauthorized("unsupported authorization scheme");
}

ApiResult<protocol::JobStatus> Api::visibleJob(const Principal& p, const std::string& id) {
  auto job = channel_.jobGet(protocol::JobRef{p.token, id});
  if (!job.ok()) return fromSupervisor(job.error());
  return std::move(job.value());
}

// --- handlers ---------------------------------------------------------------------------------

void Api::healthz(const HttpRequest& r, Responder& out) {
  auto h = channel_.health(std::chrono::milliseconds(2000));
  // Anonymous callers learn the state alone; the details (cgroup paths, reasons) need a live
  // session, whichever its role. A missing or dead token is not an error here.
  bool details = false;
  if (auto p = authenticate(r); p.ok()) {
    details = channel_.sessionGet(protocol::SessionRef{p.value().token}).ok();
  }
  JsonWriter w;
  w.beginObject();
  if (h.ok()) {
    // Degraded still answers 200: the daemon serves status and output, it refuses new jobs.
    w.key("status").str(h.value().degraded ? "degraded" : "ok");
    if (details) {
      w.key("details").beginArray();
      for (const auto& d : h.value().details) w.str(d);
      w.endArray();
    }
    w.endObject();
    return sendJson(out, 200, w.take());
  }
  w.key("status").str("unavailable");
  if (details) w.key("details").beginArray().str(h.error().message).endArray();
  w.endObject();
  sendJson(out, 503, w.take(), {{"Retry-After", "1"}});
}

void Api::metrics(const Principal& p, Responder& out) {
  auto m = channel_.metricsGet(protocol::SessionRef{p.token});
  if (!m.ok()) return sendError(out, fromSupervisor(m.error()));
  FrontendFigures f;
  f.routes = request_metrics_.snapshot();
  if (server_ != nullptr) {
    TlsServer::Load load = server_->load();
    f.open_connections = load.connections;
    f.log_followers = load.streams;
    const IntakeCounters& c = server_->counters();
    f.intake_refusals = {{"handshake_timeout", c.handshake_timeouts.load()},
                         {"header_timeout", c.header_timeouts.load()},
                         {"body_timeout", c.body_timeouts.load()},
                         {"slow_body", c.slow_bodies.load()},
                         {"bad_request", c.bad_requests.load()},
                         {"over_capacity", c.over_capacity.load()},
                         {"queue_full", c.queue_full.load()},
                         {"dropped", c.dropped.load()},
                         {"evicted", c.evicted.load()}};
  }
  out.send(200, {}, kMetricsContentType, renderMetrics(m.value(), f));
}

void Api::observe(const HttpRequest& r, const Responder& out, const RequestNote& note,
                  uint64_t duration_us) {
  // No status sent: the server answers 500 itself, or the client is gone.
  const int status = out.statusSent() != 0 ? out.statusSent() : 500;
  request_metrics_.record(note.route, r.method, status, duration_us);
  if (!access_log_.admit()) return;
  std::string user = note.user;
  // A refused token names nobody: only a session that still works is looked up.
  if (user.empty() && note.token && status != 401) user = sessionUser(*note.token);
  access_log_.write({r.client_addr, user, r.method, note.route, note.job_id, status,
                     duration_us / 1000, out.bytesSent()});
}

std::string Api::sessionUser(const protocol::Token& token) {
  // Long enough to spare jobworkerd a lookup per logged request, short enough that a user name
  // outliving its session's revocation is rare; bounded so that tokens cannot grow it.
  constexpr int64_t kCacheMs = 30'000;
  constexpr size_t kCacheEntries = 1024;
  std::array<uint8_t, 32> key{};
  crypto_generichash(key.data(), key.size(), token.bytes.data(), token.bytes.size(), nullptr, 0);
  const int64_t now = std::chrono::duration_cast<std::chrono::milliseconds>(
                          std::chrono::steady_clock::now().time_since_epoch())
                          .count();
  {
    std::lock_guard lock(users_mu_);
    if (auto it = users_.find(key); it != users_.end() && it->second.until_ms > now) {
      return it->second.user;
    }
  }
  auto info = channel_.sessionGet(protocol::SessionRef{token});
  if (!info.ok()) return "";
  std::lock_guard lock(users_mu_);
  if (users_.size() >= kCacheEntries) users_.clear();
  users_[key] = CachedUser{info.value().user, now + kCacheMs};
  return info.value().user;
}

void Api::login(const HttpRequest& r, Responder& out, RequestNote& note) {
  protocol::LoginRequest req;
  if (startsWithNoCase(r.authorization, "Basic ")) {
    auto creds = decodeBasic(std::string_view(r.authorization).substr(6));
    if (!creds) return sendError(out, unauthorized("malformed Basic credentials"));
    req.user = std::move(creds->first);
    req.password = std::move(creds->second);
  } else if (r.body.find_first_not_of(" \t\r\n") != std::string::npos) {
    auto body = parseLoginBody(r.body);
    if (!body.ok()) return sendError(out, body.error());
    req.user = std::move(body.value().username);
    req.password = std::move(body.value().password);
  } else {
    return sendError(out, unauthorized("credentials required (HTTP Basic or JSON body)"));
  }
  // Early, friendly refusals of what jobworkerd would refuse anyway; never a password check.
  if (!names::validUserName(req.user) || req.password.size() > protocol::kMaxPassword) {
    wipe(req.password);
    return sendError(out, unauthorized("invalid user name or password"));
  }
  req.remote_address = remoteAddress(r);
  auto reply = channel_.login(req);
  wipe(req.password);
  if (!reply.ok()) {
    const protocol::ErrorReply& e = reply.error();
    if (e.code == ErrorCode::kUnauthorized) {
      return sendError(out, unauthorized("invalid user name or password"));
    }
    return sendError(out, fromSupervisor(e));
  }
  std::string token = tokenText(reply.value().token);
  sodium_memzero(reply.value().token.bytes.data(), reply.value().token.bytes.size());
  JsonWriter w;
  w.beginObject();
  w.key("token").str(token);
  w.key("expires_at").str(rfc3339Ms(reply.value().expires_at_ms));
  w.key("user").str(req.user);
  w.key("role").str(protocol::roleName(reply.value().role));
  w.endObject();
  wipe(token);
  std::string body = w.take();
  sendJson(out, 201, body);
  wipe(body);
  note.user = req.user;  // a name jobworkerd just confirmed
}

void Api::logout(const Principal& p, Responder& out) {
  auto r = channel_.sessionRevoke(protocol::SessionEnd{p.token, p.remote_address});
  if (!r.ok()) return sendError(out, fromSupervisor(r.error()));
  out.send(204, {}, "", "");
}

void Api::whoami(const Principal& p, Responder& out) {
  auto info = channel_.sessionGet(protocol::SessionRef{p.token});
  if (!info.ok()) return sendError(out, fromSupervisor(info.error()));
  JsonWriter w;
  w.beginObject()
      .key("user")
      .str(info.value().user)
      .key("role")
      .str(protocol::roleName(info.value().role))
      .endObject();
  sendJson(out, 200, w.take());
}

// Role, network and limit rules are jobworkerd's (it knows whose token this is); its refusals
// come back as 403s naming the rule.
void Api::startJob(const HttpRequest& r, const Principal& p, Responder& out) {
  auto req = parseJobRequest(r.body);
  if (!req.ok()) {
    // Role before body: a viewer (or a dead session) learns nothing from a bad body. Asked of
    // jobworkerd only on this error path.
    auto info = channel_.sessionGet(protocol::SessionRef{p.token});
    if (!info.ok()) return sendError(out, fromSupervisor(info.error()));
    if (info.value().role == Role::kViewer || !policy::roleMayUseApi(info.value().role)) {
      return sendError(out, forbidden("role " + std::string(protocol::roleName(info.value().role)) +
                                      " cannot start jobs"));
    }
    return sendError(out, req.error());
  }
  protocol::JobStartRequest& start = req.value();
  start.token = p.token;
  start.remote_address = p.remote_address;
  auto status = channel_.jobStart(start);
  if (!status.ok()) return sendError(out, fromSupervisor(status.error()));
  sendJson(out, 201, statusJson(status.value()), {{"Location", "/v1/jobs/" + status.value().id}});
}

namespace {

// "label=k=v,k2=v2": each must be on the job.
ApiResult<std::vector<std::string>> labelSelector(const std::string& v) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= v.size()) {
    size_t comma = v.find(',', start);
    if (comma == std::string::npos) comma = v.size();
    std::string one = v.substr(start, comma - start);
    if (!names::validLabel(one) || out.size() >= names::kMaxLabels) {
      return badRequest("label must be KEY=VALUE[,KEY=VALUE...] (at most " +
                        std::to_string(names::kMaxLabels) + "), each " +
                        std::string(names::kLabelPattern));
    }
    out.push_back(std::move(one));
    start = comma + 1;
  }
  return out;
}

// "since": an RFC 3339 time or a duration back from now ("10m", "2h", "1d").
ApiResult<int64_t> sinceMs(const std::string& v) {
  if (auto d = config::parseDurationMs(v)) {
    auto now = std::chrono::duration_cast<std::chrono::milliseconds>(
                   std::chrono::system_clock::now().time_since_epoch())
                   .count();
    return now - static_cast<int64_t>(std::min<uint64_t>(d.value(), uint64_t{1} << 50));
  }
  if (auto t = parseRfc3339Ms(v)) return *t;
  return badRequest("since must be an RFC 3339 time (2026-12-01T10:00:00Z) or a duration (10m)");
}

// The cursor of a page's last job: "<created_at ms>.<id>", opaque to clients.
std::string cursorOf(const protocol::JobStatus& s) {
  return std::to_string(s.created_at_ms) + "." + s.id;
}

ApiResult<bool> parseCursor(const std::string& v, protocol::JobListRequest& req) {
  size_t dot = v.find('.');
  std::string ms = v.substr(0, dot);
  if (dot == std::string::npos || ms.empty() || ms.size() > 18 ||
      ms.find_first_not_of("0123456789") != std::string::npos ||
      !names::validJobId(v.substr(dot + 1))) {
    return badRequest("after must be the next cursor of a previous page");
  }
  req.after_created_ms = std::stoll(ms);
  req.after_id = v.substr(dot + 1);
  return true;
}

ApiResult<uint32_t> limitParam(const std::string& v) {
  if (v.empty() || v.size() > 4 || v.find_first_not_of("0123456789") != std::string::npos ||
      std::stoul(v) == 0 || std::stoul(v) > protocol::kMaxListLimit) {
    return badRequest("limit must be an integer from 1 to " +
                      std::to_string(protocol::kMaxListLimit));
  }
  return static_cast<uint32_t>(std::stoul(v));
}

// The filters and page of GET /v1/jobs (docs/api.md); the role rules are jobworkerd's.
ApiResult<protocol::JobListRequest> listRequest(const Target& t, const Principal& p) {
  protocol::JobListRequest req;
  req.token = p.token;
  auto all = boolParam(t, "all");
  if (!all.ok()) return all.error();
  req.all = all.value();
  auto q = [&](const char* k) -> const std::string* {
    auto it = t.query.find(k);
    return it == t.query.end() ? nullptr : &it->second;
  };
  if (const std::string* v = q("state")) {
    auto s = protocol::jobStateFromName(*v);
    if (!s) return badRequest("state must be running, exited, killed or failed");
    req.state = static_cast<uint8_t>(*s);
  }
  if (const std::string* v = q("owner")) {
    if (!names::validUserName(*v)) return badRequest("owner must be a user name");
    req.owner = *v;
  }
  if (const std::string* v = q("name")) {
    if (!names::validJobName(*v)) return badRequest("name must be a job name");
    req.name = *v;
  }
  if (const std::string* v = q("label")) {
    auto labels = labelSelector(*v);
    if (!labels.ok()) return labels.error();
    req.labels = std::move(labels.value());
  }
  if (const std::string* v = q("since")) {
    auto since = sinceMs(*v);
    if (!since.ok()) return since.error();
    req.since_ms = since.value();
  }
  if (const std::string* v = q("limit")) {
    auto limit = limitParam(*v);
    if (!limit.ok()) return limit.error();
    req.limit = limit.value();
  }
  if (const std::string* v = q("after")) {
    auto cursor = parseCursor(*v, req);
    if (!cursor.ok()) return cursor.error();
  }
  return req;
}

}  // namespace

void Api::listJobs(const Target& t, const Principal& p, Responder& out) {
  auto req = listRequest(t, p);
  if (!req.ok()) return sendError(out, req.error());
  if (req.value().all) {
    // jobworkerd answers role user's ?all=true with its own jobs; the API says no instead.
    auto info = channel_.sessionGet(protocol::SessionRef{p.token});
    if (!info.ok()) return sendError(out, fromSupervisor(info.error()));
    if (info.value().role == Role::kUser) {
      return sendError(out, forbidden("role user sees only its own jobs"));
    }
  }
  auto page = channel_.jobList(req.value());
  if (!page.ok()) return sendError(out, fromSupervisor(page.error()));
  JsonWriter w;
  w.reserve(page.value().jobs.size() * 768 + 64);  // a running job's status is ~700 bytes
  w.beginObject().key("jobs").beginArray();
  for (const auto& j : page.value().jobs) writeStatus(w, j);
  w.endArray();
  w.key("next");
  if (page.value().more && !page.value().jobs.empty()) {
    w.str(cursorOf(page.value().jobs.back()));
  } else {
    w.null();
  }
  w.endObject();
  sendJson(out, 200, w.take());
}

void Api::version(const Principal& p, Responder& out) {
  auto info = channel_.serverInfo(protocol::SessionRef{p.token});
  if (!info.ok()) return sendError(out, fromSupervisor(info.error()));
  JsonWriter w;
  w.beginObject();
  w.key("version").str(JW_VERSION);
  w.key("api_version").str("v1");
  w.key("cgroup_backend").str(info.value().cgroup_backend);
  w.key("features").beginArray();
  for (const char* f : kApiFeatures) w.str(f);
  w.endArray().endObject();
  sendJson(out, 200, w.take());
}

void Api::deleteJob(const std::string& id, const Principal& p, Responder& out) {
  auto r = channel_.jobDelete(protocol::JobDeleteRequest{p.token, id, p.remote_address});
  if (!r.ok()) return sendError(out, fromSupervisor(r.error()));
  out.send(204, {}, "", "");
}

// The long poll: jobworkerd parks each JobWait for at most its parked-read time and answers
// with the status then, so the loop here asks again until the job ended or timeout_s passed,
// and notices a client that went away in between. The worker is a stream worker meanwhile.
void Api::waitJob(const Target& t, const std::string& id, const Principal& p, Responder& out) {
  uint64_t timeout_ms = kDefaultWaitMs;
  if (auto it = t.query.find("timeout_s"); it != t.query.end()) {
    auto ms = waitSecondsMs(it->second);
    if (!ms.ok()) return sendError(out, ms.error());
    timeout_ms = ms.value();
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  if (timeout_ms > 0) out.willStream();
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    uint32_t wait_ms = static_cast<uint32_t>(std::max<int64_t>(left.count(), 0));
    auto status = channel_.jobWait(protocol::JobWaitRequest{p.token, id, wait_ms});
    if (!status.ok()) return sendError(out, fromSupervisor(status.error()));
    if (status.value().state != protocol::JobState::kRunning || wait_ms == 0 ||
        std::chrono::steady_clock::now() >= deadline) {
      return sendJson(out, 200, statusJson(status.value()));
    }
    if (out.clientGone()) return;
  }
}

bool isStdinUpload(std::string_view method, std::string_view target) {
  if (method != "PUT") return false;
  auto t = parseTarget(std::string(target));
  if (!t.ok()) return false;
  auto route = match(t.value().segments);
  return route && route->endpoint == Endpoint::kJobStdin;
}

namespace {

// Why an upload was cut short, as the client is answered (when it is still there).
struct UploadCut {
  ApiError error;
  bool client_gone = false;
};

UploadCut cutBy(BodyRead got, const Responder& out, uint64_t idle_ms) {
  switch (got) {
    case BodyRead::kTimeout:
      return {ApiError{
          408, "timeout",
          "no stdin bytes for " + std::to_string(idle_ms / 1000) + " s: the upload was cut short"}};
    case BodyRead::kBad: {
      IntakeError e = out.bodyError();
      return {ApiError{e.status, e.code, e.message}};
    }
    case BodyRead::kGone:
    case BodyRead::kData:
    case BodyRead::kEnd:
      break;
  }
  return {ApiError{400, "bad_request", "the client went away"}, true};
}

}  // namespace

// PUT /v1/jobs/{id}/stdin: the body moves to the job's pipe as fast as the job reads it and no
// faster. The client is read only while fewer than kStdinWindow frames are unanswered, and
// jobworkerd answers each once its bytes are in the pipe: neither process holds more than the
// window, whatever the body's size.
void Api::uploadStdin(const HttpRequest& r, const std::string& id, const Principal& p,
                      Responder& out) {
  out.willStream();  // held for as long as the job takes to read its input
  auto opened = channel_.stdinOpen(protocol::StdinOpenRequest{p.token, id, p.remote_address});
  if (!opened.ok()) return sendError(out, fromSupervisor(opened.error()));
  std::deque<uint32_t> unanswered;
  std::optional<UploadCut> cut;
  bool body_ended = false;
  std::string send_error;
  std::string small_body = r.streamed_body ? std::string() : r.body;  // a body of length 0
  while (!cut) {
    while (!cut && !body_ended && unanswered.size() < protocol::kStdinWindow) {
      protocol::StdinWriteRequest frame{p.token, id, {}};
      BodyRead got = BodyRead::kEnd;
      if (r.streamed_body) {
        got = out.readBody(&frame.data, protocol::kMaxStdinChunk, upload_idle_timeout_ms_);
      } else if (!small_body.empty()) {
        frame.data = std::move(small_body);
        small_body.clear();
        got = BodyRead::kData;
      }
      if (got == BodyRead::kEnd) {
        body_ended = true;
      } else if (got != BodyRead::kData) {
        cut = cutBy(got, out, upload_idle_timeout_ms_);
      } else if (uint32_t sent = channel_.stdinWriteSend(frame, &send_error); sent != 0) {
        unanswered.push_back(sent);
      } else {
        cut = UploadCut{ApiError{503, "unavailable", "supervisor unavailable: " + send_error, 1}};
      }
    }
    if (cut || unanswered.empty()) break;
    auto answer =
        channel_.stdinWriteWait(unanswered.front(), std::chrono::milliseconds(1000), send_error);
    if (!answer) {
      // The job is not reading: the client waits with us, unless it has gone.
      if (out.clientGone()) cut = UploadCut{ApiError{400, "bad_request", "client gone"}, true};
      continue;
    }
    unanswered.pop_front();
    if (!answer->ok()) cut = UploadCut{fromSupervisor(answer->error())};
  }
  for (uint32_t frame : unanswered) channel_.forget(frame);
  auto status = channel_.stdinClose(protocol::StdinCloseRequest{p.token, id, !cut});
  if (cut && cut->client_gone) return;
  if (cut) return sendError(out, cut->error);
  if (!status.ok()) return sendError(out, fromSupervisor(status.error()));
  sendJson(out, 200, statusJson(status.value()));
}

// GET /v1/events: JSON lines, one event each, in sequence order; with follow=true the stream
// stays open for the next ones. A `since` the ring no longer covers is a 410 before the stream;
// during it the stream just ends, and the client's resume learns the 410 then.
void Api::events(const Target& t, const Principal& p, Responder& out) {
  protocol::EventsReadRequest req;
  req.token = p.token;
  auto follow = boolParam(t, "follow");
  if (!follow.ok()) return sendError(out, follow.error());
  req.follow = follow.value();
  if (auto it = t.query.find("job"); it != t.query.end()) {
    if (!names::validJobId(it->second)) {
      return sendError(out, badRequest("job must be a job id (a lowercase UUIDv4)"));
    }
    req.job_id = it->second;
  }
  if (auto it = t.query.find("since"); it != t.query.end()) {
    const std::string& v = it->second;
    if (v.empty() || v.size() > 19 || v.find_first_not_of("0123456789") != std::string::npos) {
      return sendError(out, badRequest("since must be the seq of an event"));
    }
    req.has_since = true;
    req.since = std::stoull(v);
  }
  if (req.follow) out.willStream();
  auto batch = channel_.eventsRead(req);
  if (!batch.ok()) return sendError(out, fromSupervisor(batch.error()));
  if (!out.startChunked(200, {}, "application/x-ndjson")) return;
  for (;;) {
    const protocol::EventBatch& b = batch.value();
    std::string lines;
    for (const auto& e : b.events) {
      JsonWriter w;
      writeEvent(w, e);
      lines += w.take();
      lines += '\n';
    }
    if (!lines.empty() && !out.writeChunk(lines)) return;
    // A batch under the maximum reached the newest event.
    if (!req.follow && b.events.size() < protocol::kMaxEventsPerBatch) {
      out.finishChunked();
      return;
    }
    if (b.events.empty() && out.clientGone()) return;
    req.has_since = true;
    req.since = b.next_since;
    batch = channel_.eventsRead(req);
    if (!batch.ok()) {
      out.finishChunked();
      return;
    }
  }
}

void Api::getJob(const std::string& id, const Principal& p, Responder& out) {
  auto job = visibleJob(p, id);
  if (!job.ok()) return sendError(out, job.error());
  sendJson(out, 200, statusJson(job.value()));
}

void Api::stopJob(const HttpRequest& r, const std::string& id, const Principal& p, Responder& out) {
  auto grace = parseStopBody(r.body);
  if (!grace.ok()) return sendError(out, grace.error());
  // Role, visibility and "already ended" (409) are jobworkerd's answers, in that order.
  protocol::JobStopRequest req{p.token, id, grace.value().has_value(), grace.value().value_or(0),
                               p.remote_address};
  auto status = channel_.jobStop(req);
  if (!status.ok()) return sendError(out, fromSupervisor(status.error()));
  sendJson(out, 202, statusJson(status.value()));
}

namespace {

// The query of GET /v1/jobs/{id}/logs: offset, follow, stream.
// The log bytes asked per chunk: with its size line ("1fff7\r\n") and closing CRLF a full chunk
// is exactly 8 TLS records of 16 KiB (one SSL_write), never full records plus a runt.
constexpr size_t kTlsRecordBytes = 16384;
constexpr size_t kLogChunkBytes = protocol::kMaxChunk - 7 - 2;
static_assert((kLogChunkBytes + 7 + 2) % kTlsRecordBytes == 0 && kLogChunkBytes > 0xffff &&
              kLogChunkBytes <= 0xfffff);  // five hex digits

ApiResult<protocol::OutputReadRequest> logsRequest(const Target& t, const protocol::Token& token,
                                                   const std::string& id) {
  protocol::OutputReadRequest req;
  req.token = token;
  req.job_id = id;
  if (auto it = t.query.find("offset"); it != t.query.end()) {
    const std::string& v = it->second;
    if (v.empty() || v.size() > 19 || v.find_first_not_of("0123456789") != std::string::npos) {
      return badRequest("offset must be a non-negative integer");
    }
    req.offset = std::stoull(v);
  }
  auto follow = boolParam(t, "follow");
  if (!follow.ok()) return follow.error();
  req.follow = follow.value();
  if (auto it = t.query.find("stream"); it != t.query.end()) {
    if (it->second == "stderr") {
      req.stream = protocol::Stream::kStderr;
    } else if (it->second != "stdout") {
      return badRequest("stream must be stdout or stderr");
    }
  }
  if (auto it = t.query.find("tail_lines"); it != t.query.end()) {
    const std::string& v = it->second;
    if (v.empty() || v.size() > 6 || v.find_first_not_of("0123456789") != std::string::npos ||
        std::stoul(v) > protocol::kMaxTailLines) {
      return badRequest("tail_lines must be an integer from 0 to " +
                        std::to_string(protocol::kMaxTailLines));
    }
    req.tail = true;
    req.tail_lines = static_cast<uint32_t>(std::stoul(v));
  }
  if (auto it = t.query.find("since"); it != t.query.end()) {
    auto since = sinceMs(it->second);
    if (!since.ok()) return since.error();
    req.since_unix_ms = static_cast<uint64_t>(std::max<int64_t>(since.value(), 1));
  }
  if ((req.tail || req.since_unix_ms > 0) && t.query.count("offset") != 0) {
    return badRequest("offset cannot be combined with tail_lines or since");
  }
  auto timestamps = boolParam(t, "timestamps");
  if (!timestamps.ok()) return timestamps.error();
  req.timestamps = timestamps.value();
  req.max_bytes = static_cast<uint32_t>(kLogChunkBytes);
  return req;
}

}  // namespace

void Api::jobLogs(const Target& t, const std::string& id, const Principal& p, Responder& out) {
  auto req = logsRequest(t, p.token, id);
  if (!req.ok()) return sendError(out, req.error());
  auto job = visibleJob(p, id);
  if (!job.ok()) return sendError(out, job.error());
  if (req.value().stream == protocol::Stream::kStderr &&
      job.value().output != protocol::OutputMode::kSeparate) {
    return sendError(out, badRequest("job output is merged: read stream=stdout (the default)"));
  }
  if (req.value().follow) out.willStream();  // may wait for the job's whole life
  // The first read decides the status code; after the head is sent, a failure can only cut
  // the chunked body short, which the client sees as an incomplete response.
  auto chunk = channel_.outputRead(req.value());
  if (!chunk.ok()) return sendError(out, fromSupervisor(chunk.error()));
  // Where the stream starts: the request's offset, or where tail_lines/since put it.
  if (!out.startChunked(200, {{"X-Jobworker-Offset", std::to_string(chunk.value().offset)}},
                        "application/octet-stream")) {
    return;
  }
  streamChunks(req.value(), std::move(chunk.value()), out);
}

// Writes `chunk` and the ones after it as the chunked body, until the end of the output (or,
// following, of the job), or until the client goes away.
void Api::streamChunks(protocol::OutputReadRequest& req, protocol::OutputChunk first,
                       Responder& out) {
  // While a chunk goes out to the client, the next one is already being read by the supervisor.
  uint32_t next = 0;
  std::string send_error;
  protocol::OutputChunk c = std::move(first);
  for (;;) {
    // The next read asks from the log byte after this chunk's (with timestamps its data is
    // longer than the log bytes it carries); the start is settled.
    req.offset = c.offset + c.raw_size;
    req.tail = false;
    req.since_unix_ms = 0;
    bool more = !c.eof && !(c.data.empty() && !req.follow);
    if (more && !c.data.empty()) next = channel_.outputReadSend(req, &send_error);
    if (!c.data.empty() && !out.writeChunk(c.data)) break;
    if (!more) {
      out.finishChunked();
      return;
    }
    if (c.data.empty() && out.clientGone()) return;  // an idle follow: is anyone listening?
    if (next == 0) next = channel_.outputReadSend(req, &send_error);
    auto chunk = channel_.outputReadWait(next, req.follow, send_error);
    next = 0;
    if (!chunk.ok() && chunk.error().code == ErrorCode::kUnauthorized) {
      // The session expired or was revoked: end cleanly after the last whole chunk. The client
      // asks for the job's status next and learns why from its 401.
      log::info("log stream of job " + req.job_id + " ended: " + chunk.error().message);
      out.finishChunked();
      return;
    }
    if (!chunk.ok()) {
      log::warning("log stream of job " + req.job_id + " cut: " + chunk.error().message);
      return;
    }
    c = std::move(chunk.value());
  }
  if (next != 0) channel_.forget(next);  // the client is gone: drop the prefetched chunk
}

}  // namespace jw::frontend
