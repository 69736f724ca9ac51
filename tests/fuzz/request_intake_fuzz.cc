// libFuzzer target for the HTTPS request intake (frontend/http/request_intake.h): any bytes, cut
// into any reads, must give a complete request or a 4xx, never a crash, never more memory than
// the caps, and the same outcome however they were cut. Complete requests go on to the request
// target parser, as the API routes them. Runs in the fuzzer process.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "frontend/http/request_intake.h"
#include "frontend/http/request_target.h"

namespace {

using jw::frontend::IntakeLimits;
using jw::frontend::RequestIntake;

constexpr IntakeLimits kLimits{2048, 4096};  // small, so the fuzzer reaches the caps
constexpr size_t kMaxRequests = 8;           // pipelined requests followed per input

// Everything that tells one outcome from another.
struct Outcome {
  std::vector<std::string> requests;  // method, target, version, flags, body of each
  int error_status = 0;
  bool operator==(const Outcome&) const = default;
};

Outcome run(std::string_view input, size_t piece) {
  Outcome out;
  RequestIntake in(kLimits);
  std::string carry;  // bytes consumed by no request yet (the next one's start)
  size_t i = 0;
  while (out.requests.size() < kMaxRequests) {
    if (carry.empty() && i < input.size()) {
      carry.assign(input.substr(i, piece));
      i += carry.size();
    }
    if (carry.empty()) break;
    size_t used = in.feed(carry);
    carry.erase(0, used);
    if (in.bufferedBytes() > kLimits.max_head_bytes + kLimits.max_body_bytes + 4096) std::abort();
    if (in.phase() == RequestIntake::Phase::kFailed) {
      int st = in.error().status;
      if (st < 400 || st > 499 || in.error().message.empty()) std::abort();
      out.error_status = st;
      return out;
    }
    if (in.phase() == RequestIntake::Phase::kComplete) {
      auto r = in.take();
      if (r.target.empty() || r.target[0] != '/' || r.body.size() > kLimits.max_body_bytes) {
        std::abort();
      }
      (void)jw::frontend::parseTarget(r.target);  // routing: a Target or a 4xx, never a crash
      out.requests.push_back(r.method + " " + r.target + " " + r.version + " " +
                             (r.keep_alive ? "k" : "c") + (r.expect_continue ? "e" : "") + " " +
                             r.authorization + " " + r.body);
    }
  }
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  // The first byte picks how the rest is cut into reads; the outcome must not depend on it.
  size_t piece = 1 + data[0] % 17;
  std::string_view input(reinterpret_cast<const char*>(data) + 1, size - 1);
  if (!(run(input, piece) == run(input, input.size() + 1))) std::abort();
  return 0;
}
