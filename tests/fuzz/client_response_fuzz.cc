// libFuzzer target for what the CLI decodes from a server it does not trust (client/): the
// chunked body decoder, fed in pieces the input chooses, and the status and list formatters over
// any JSON. A malformed answer is an error the CLI reports (an exception its main catches or a
// decoder failure), never a crash or an out-of-bounds read. Runs in the fuzzer.
#include <Poco/JSON/Parser.h>

#include <cstdint>
#include <cstdlib>
#include <exception>
#include <string_view>

#include "client/chunked_decoder.h"
#include "client/output_format.h"

namespace {

void decodeChunked(std::string_view input) {
  if (input.empty()) return;
  // The first byte picks the piece size, so reads that split a size line are covered too.
  size_t piece = 1 + static_cast<uint8_t>(input[0]) % 17;
  std::string_view body = input.substr(1);
  jw::client::ChunkedDecoder decoder;
  size_t data_bytes = 0;
  for (size_t at = 0; at < body.size() && !decoder.done(); at += piece) {
    bool more = decoder.feed(body.substr(at, piece), [&](std::string_view d) {
      data_bytes += d.size();
      return true;
    });
    if (!more) break;
  }
  if (data_bytes > body.size()) std::abort();  // data can only come from the input
}

void formatJson(std::string_view input) {
  try {
    Poco::JSON::Parser parser;
    Poco::Dynamic::Var v = parser.parse(std::string(input));
    Poco::Timestamp now;
    if (v.type() == typeid(Poco::JSON::Object::Ptr)) {
      const auto& job = v.extract<Poco::JSON::Object::Ptr>();
      (void)jw::client::formatStatus(job, now);
      (void)jw::client::describeOutcome(job);
      (void)jw::client::jobExitStatus(job);
    } else if (v.type() == typeid(Poco::JSON::Array::Ptr)) {
      (void)jw::client::formatJobTable(v.extract<Poco::JSON::Array::Ptr>(), now);
    }
  } catch (const std::exception&) {
    // Poco::Exception derives from std::exception: the CLI's main reports it and exits 1.
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view input(reinterpret_cast<const char*>(data), size);
  decodeChunked(input);
  formatJson(input);
  return 0;
}
