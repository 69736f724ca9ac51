// libFuzzer target for the configuration parser and the one parser of each size, duration and
// cpu string (common/config): any text parses or fails with an error, never a crash; a parsed
// size, duration or cpu value re-parses from its canonical form to itself. Runs in the fuzzer.
#include <cstdint>
#include <cstdlib>
#include <string>

#include "common/config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace jw::config;
  std::string text(reinterpret_cast<const char*>(data), size);
  auto settings = parse(text, "fuzz.conf");
  if (!settings.ok() && settings.error().message.empty()) std::abort();
  if (auto bytes = parseSize(text); bytes.ok()) {
    auto again = parseSize(std::to_string(bytes.value()));
    if (!again.ok() || again.value() != bytes.value()) std::abort();
  }
  if (auto ms = parseDurationMs(text); ms.ok()) {
    auto again = parseDurationMs(std::to_string(ms.value()) + "ms");
    if (!again.ok() || again.value() != ms.value()) std::abort();
  }
  if (auto mc = parseCpuMillicores(text); mc.ok()) {
    std::string cores = std::to_string(mc.value() / 1000) + "." +
                        std::to_string(1000 + mc.value() % 1000).substr(1);
    auto again = parseCpuMillicores(cores);
    if (!again.ok() || again.value() != mc.value()) std::abort();
  }
  return 0;
}
