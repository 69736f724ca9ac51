// The REST API v1 of jobworker-frontend: routing, authentication of each request, role checks,
// and the handlers that turn HTTP requests into supervisor requests (docs/api.md).
#pragma once

#include <array>
#include <map>
#include <mutex>
#include <string>

#include "common/config.h"
#include "frontend/api/access_log.h"
#include "frontend/api/api_error.h"
#include "frontend/api/request_metrics.h"
#include "frontend/auth.h"
#include "frontend/http/request_target.h"
#include "frontend/http/tls_server.h"
#include "frontend/supervisor_channel.h"

namespace jw::frontend {

// HTTP status and API error for a supervisor ErrorReply.
ApiError fromSupervisor(const protocol::ErrorReply& e);

// The early check of a job's limits (policy::fitLimits, the rule jobworkerd applies again): the
// first requested limit over the user's configured maximum as a 403 limit_exceeded that names
// it, what was asked and the maximum; nullopt when all are within.
std::optional<ApiError> checkLimitMaxima(const config::Settings& cfg, const std::string& user,
                                         protocol::Role role, const protocol::Limits& limits);

// The route templates of the API: the `route` label of /metrics and ROUTE= of the access log.
// The last one stands for every request no route matched.
inline constexpr std::array<std::string_view, 14> kRouteTemplates = {
    "/v1/healthz",        "/v1/login",          "/v1/logout",          "/v1/whoami",
    "/v1/version",        "/v1/jobs",           "/v1/jobs/{id}",       "/v1/jobs/{id}/stop",
    "/v1/jobs/{id}/logs", "/v1/jobs/{id}/wait", "/v1/jobs/{id}/stdin", "/v1/events",
    "/metrics",           "unmatched"};

struct ApiOptions {
  config::Settings::AccessLog access_log = config::Settings::AccessLog::kOff;
  uint32_t access_log_rate = 10;
  // A stdin upload whose client sends nothing for this long (while it may) is cut short.
  uint64_t upload_idle_timeout_ms = config::Settings{}.body_timeout_ms;
};

// PUT /v1/jobs/{id}/stdin: the one body the API streams instead of buffering.
bool isStdinUpload(std::string_view method, std::string_view target);

class Api : public RequestHandler {
 public:
  // Every rule about users is jobworkerd's: the API needs no settings but its access log's.
  explicit Api(SupervisorChannel& channel, const ApiOptions& options = {})
      : channel_(channel),
        request_metrics_(kRouteTemplates),
        access_log_(options.access_log, options.access_log_rate),
        upload_idle_timeout_ms_(options.upload_idle_timeout_ms) {}

  // The server whose load /metrics reports (set once, before it serves).
  void reportLoadOf(TlsServer* server) { server_ = server; }

  void handle(const HttpRequest& request, Responder& out) override;
  BodyStreamPredicate streamedBodies() const override { return &isStdinUpload; }

 private:
  // What handling a request found out, for its metrics and access log entry.
  struct RequestNote {
    std::string_view route = kRouteTemplates.back();
    std::string job_id;
    std::optional<protocol::Token> token;
    std::string user;  // known without asking jobworkerd (a login's, once it succeeded)
  };
  void route(const HttpRequest& r, Responder& out, RequestNote& note);
  void observe(const HttpRequest& r, const Responder& out, const RequestNote& note,
               uint64_t duration_us);
  // The user of a session for the access log: from a short cache, else asked of jobworkerd;
  // "" when the token has no live session.
  std::string sessionUser(const protocol::Token& token);

  ApiResult<Principal> authenticate(const HttpRequest& r);
  // The job if `p` may see it (jobworkerd decides; another user's job is "not found").
  ApiResult<protocol::JobStatus> visibleJob(const Principal& p, const std::string& id);

  void healthz(const HttpRequest& r, Responder& out);
  void metrics(const Principal& p, Responder& out);
  void login(const HttpRequest& r, Responder& out, RequestNote& note);
  void logout(const Principal& p, Responder& out);
  void whoami(const Principal& p, Responder& out);
  void startJob(const HttpRequest& r, const Principal& p, Responder& out);
  void listJobs(const Target& t, const Principal& p, Responder& out);
  void version(const Principal& p, Responder& out);
  void getJob(const std::string& id, const Principal& p, Responder& out);
  void deleteJob(const std::string& id, const Principal& p, Responder& out);
  void waitJob(const Target& t, const std::string& id, const Principal& p, Responder& out);
  void stopJob(const HttpRequest& r, const std::string& id, const Principal& p, Responder& out);
  void jobLogs(const Target& t, const std::string& id, const Principal& p, Responder& out);
  void streamChunks(protocol::OutputReadRequest& req, protocol::OutputChunk first, Responder& out);
  // stdin_events.cc
  void uploadStdin(const HttpRequest& r, const std::string& id, const Principal& p, Responder& out);
  void events(const Target& t, const Principal& p, Responder& out);

  SupervisorChannel& channel_;
  RequestMetrics request_metrics_;
  AccessLog access_log_;
  uint64_t upload_idle_timeout_ms_;
  TlsServer* server_ = nullptr;
  struct CachedUser {
    std::string user;
    int64_t until_ms;
  };
  std::mutex users_mu_;
  std::map<std::array<uint8_t, 32>, CachedUser> users_;  // by BLAKE2b of the token
};

}  // namespace jw::frontend
