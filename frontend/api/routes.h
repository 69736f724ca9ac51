// The REST API v1 of jobworker-frontend: routing, authentication of each request, role checks,
// and the handlers that turn HTTP requests into supervisor requests (docs/api.md).
#pragma once

#include <string>

#include "common/config.h"
#include "frontend/api/api_error.h"
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

class Api : public RequestHandler {
 public:
  // Every rule about users is jobworkerd's: the API needs no settings, only the channel.
  explicit Api(SupervisorChannel& channel) : channel_(channel) {}

  void handle(const HttpRequest& request, Responder& out) override;

 private:
  ApiResult<Principal> authenticate(const HttpRequest& r);
  // The job if `p` may see it (jobworkerd decides; another user's job is "not found").
  ApiResult<protocol::JobStatus> visibleJob(const Principal& p, const std::string& id);

  void healthz(Responder& out);
  void login(const HttpRequest& r, Responder& out);
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

  SupervisorChannel& channel_;
};

}  // namespace jw::frontend
