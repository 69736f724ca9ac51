// libFuzzer target: the job shim's spec parser (supervisor/init/spec.cc) and the status channel's
// frame decoders (common/protocol/shim_messages.h) on arbitrary bytes. Any input must be refused
// or parsed within its bounds: never a crash, an overrun or a leak. Runs in the fuzzer process.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "common/protocol/shim_messages.h"
#include "supervisor/init/spec.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size <= jw::shim::kMaxSpecBytes) {
    std::vector<uint8_t> storage(jw::init::specStorageBytes(size));
    jw::init::InitSpec spec;
    if (jw::init::parseSpec(data, size, storage.data(), storage.size(), &spec)) {
      // Everything the shim would use: walk every list to its terminator.
      size_t n = 0;
      for (char** lists : {spec.argv, spec.envp, spec.candidates}) {
        for (char** p = lists; *p != nullptr; p++) n += (*p)[0] == '\0' ? 0 : 1;
      }
      for (size_t i = 0; i < spec.ngroups; i++) n += spec.groups[i] & 1;
      for (uint16_t i = 0; i < spec.seccomp_len; i++) n += spec.seccomp[i].code & 1;
      if (n == SIZE_MAX) return 1;  // keeps the walk from being optimised away
    }
  }
  jw::shim::FrameReader r(data, size);
  jw::shim::Frame type{};
  jw::shim::Exited exited;
  jw::shim::StreamSizes out, err;
  if (r.type(&type)) {
    if (type == jw::shim::Frame::kExited) {
      (void)jw::shim::decodeExited(r, &exited);
    } else if (type == jw::shim::Frame::kProgress) {
      (void)(r.getSizes(&out) && r.getSizes(&err) && r.complete());
    }
  }
  return 0;
}
