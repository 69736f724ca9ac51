// JSON for the REST API in jobworker-frontend: rendering job status objects (RFC 3339 times),
// error bodies, and strict validation of request bodies into protocol requests.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/protocol/codec.h"
#include "frontend/api/api_error.h"

namespace jw::frontend {

// Compact JSON text built in order; strings are escaped, and bytes that are not valid UTF-8
// (a job's argv comes from a user and need not be) become U+FFFD so the output is always JSON.
class JsonWriter {
 public:
  JsonWriter& beginObject();
  JsonWriter& endObject();
  JsonWriter& beginArray();
  JsonWriter& endArray();
  JsonWriter& key(std::string_view k);
  JsonWriter& str(std::string_view v);
  JsonWriter& num(int64_t v);
  JsonWriter& unum(uint64_t v);
  JsonWriter& real(double v);
  JsonWriter& raw(std::string_view json_number);  // an already formatted JSON number
  JsonWriter& boolean(bool v);
  JsonWriter& null();
  std::string take() { return std::move(out_); }

 private:
  void separate();
  std::string out_;
  std::vector<bool> first_;  // per open container: nothing written in it yet
  bool after_key_ = false;
};

// "2026-11-30T00:33:09.123Z" (UTC, milliseconds).
std::string rfc3339Ms(int64_t epoch_ms);

// Millicores as a JSON number of cores: 500 -> "0.5", 2000 -> "2".
std::string coresText(uint32_t millicores);

// The status object (fields in docs/api.md).
void writeStatus(JsonWriter& w, const protocol::JobStatus& s);
std::string statusJson(const protocol::JobStatus& s);

// {"error":{"code":...,"message":...}}
std::string errorJson(const ApiError& e);

// Strict UTF-8: no overlong forms, no surrogates, nothing above U+10FFFF.
bool validUtf8(std::string_view s);

// --- request bodies ---------------------------------------------------------------------------

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
