// libFuzzer target for the frontend's request bodies (frontend/api/request_json): any byte string
// is a validated request or a 4xx, never a crash or a 5xx; a validated job start keeps its limits
// within policy::outOfRange and survives the channel's codec unchanged. Runs in the fuzzer.
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "common/policy.h"
#include "common/protocol/codec.h"
#include "frontend/api/request_json.h"

namespace {

template <typename R>
void expectClientError(const R& r) {
  if (!r.ok() && (r.error().status < 400 || r.error().status > 499)) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace jw;
  std::string_view body(reinterpret_cast<const char*>(data), size);
  expectClientError(frontend::parseLoginBody(body));
  expectClientError(frontend::parseStopBody(body));
  auto job = frontend::parseJobRequest(body);
  expectClientError(job);
  if (!job.ok()) return 0;
  if (job.value().argv.empty() || policy::outOfRange(job.value().limits)) std::abort();
  std::string frame = protocol::encodeJobStart(1, job.value());
  std::string_view payload;
  auto h = protocol::decodeHeader(frame, &payload);
  if (!h.ok()) std::abort();
  auto back = protocol::decodeJobStartPayload(payload);
  if (!back.ok() || !(back.value() == job.value())) std::abort();
  return 0;
}
