// libFuzzer target for the state dir's record format (supervisor/state/record_codec): the first
// byte picks a job record or a session record, the rest is the file. Any bytes decode or fail,
// never crash; whatever decodes in the current format version re-encodes to exactly the same
// bytes (the format is canonical, so a loaded record is what the daemon would have written; an
// older version's record is rewritten in the current one) and passes the checks the daemon
// relies on. Runs in the fuzzer.
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "common/names.h"
#include "supervisor/state/record_codec.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace jw;
  if (size == 0) return 0;
  std::string_view bytes(reinterpret_cast<const char*>(data) + 1, size - 1);
  // Only a record that decoded can be here, so the header is whole: its version is byte 8.
  auto current = [&] { return static_cast<uint8_t>(bytes[8]) == supervisor::kRecordVersion; };
  if ((data[0] & 1) == 0) {
    auto record = supervisor::decodeJobRecord(bytes);
    if (!record.ok()) return 0;
    const protocol::JobStatus& job = record->status;
    if (!names::validJobId(job.id) || !names::validUserName(job.owner)) std::abort();
    if (job.command.empty()) std::abort();
    // The frontend formats these as RFC 3339 in int64 microseconds: never past year 9999.
    for (int64_t t : {job.created_at_ms, job.started_at_ms, job.ended_at_ms}) {
      if (t < 0 || t > 253'402'300'799'999) std::abort();
    }
    // Only a running job names a shim to take over, and never pid 0 (or a negative: a group).
    if (record->shim &&
        (job.state != protocol::JobState::kRunning || record->shim->identity.shim_pid <= 0)) {
      std::abort();
    }
    if (current() && supervisor::encodeJobRecord(record.value()) != bytes) std::abort();
  } else {
    auto session = supervisor::decodeSessionRecord(bytes);
    if (!session.ok()) return 0;
    if (!names::validUserName(session->session.user)) std::abort();
    if (current() && supervisor::encodeSessionRecord(session.value()) != bytes) std::abort();
  }
  return 0;
}
