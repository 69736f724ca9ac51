// Strict validation of REST request bodies into protocol requests; runs in jobworker-frontend's
// HTTP worker threads.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "common/protocol/codec.h"
#include "frontend/api/api_error.h"

namespace jw::frontend {

// POST /v1/jobs. `user` is filled in by the caller; whether "network":"host" is allowed depends
// on the caller's role and the config, so the caller checks start.network.
ApiResult<protocol::JobStartRequest> parseJobRequest(std::string_view body);

struct LoginBody {
  std::string username;
  std::string password;
};
ApiResult<LoginBody> parseLoginBody(std::string_view body);

// POST /v1/jobs/{id}/stop: empty body or {"grace_s": N}. nullopt: the configured grace.
ApiResult<std::optional<uint32_t>> parseStopBody(std::string_view body);

}  // namespace jw::frontend
