// The on-disk format of jobworkerd's durable state: one job record per job directory and one
// session record per session, each a versioned, length-checked binary encoding written field by
// field with the channel's bounded Writer/Reader (jobworkerd has no JSON parser, by design), but
// with its own field list: a change of the wire protocol never changes the disk format. Pure
// functions, fuzzed (tests/fuzz/record_fuzz.cc). Runs in jobworkerd (and its --check-state).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "common/protocol/codec.h"
#include "common/result.h"
#include "supervisor/accounts/sessions.h"

namespace jw::supervisor {

// Layout of every record: 8-byte magic | u32 format version | u32 payload length | payload.
// A reader accepts only the versions it knows (kRecordVersion and, after a change, the ones
// before it) and refuses a newer one with RecordError::kNewerVersion, so an older jobworkerd
// never misreads the state a newer one wrote.
inline constexpr uint32_t kRecordVersion = 1;
inline constexpr size_t kRecordHeaderSize = 16;
// No record is larger: a command within kMaxJobSpecBytes, the limits, the error texts.
inline constexpr size_t kMaxRecordBytes = size_t{256} * 1024;

enum class RecordError {
  kCorrupt,       // truncated, bad magic, bad field, trailing bytes
  kNewerVersion,  // written by a newer jobworkerd: not this version's to read
};
struct RecordFailure {
  RecordError kind = RecordError::kCorrupt;
  std::string message;
};

// A job's record is what its status shows, with the state it had when written: "running" for a
// job that was still running then (a record of a daemon that died while the job ran).
std::string encodeJobRecord(const protocol::JobStatus& job);
// Checks every field (the id a job id, the owner a user name, enums in range, the strings
// within their caps, an ended job's exit fields consistent with its state) and that every byte
// was consumed.
Result<protocol::JobStatus, RecordFailure> decodeJobRecord(std::string_view bytes);

struct SessionRecord {
  SessionStore::Hash hash{};
  SessionStore::Session session;
  // BLAKE2b of the user's password hash when the session began: a password changed while
  // jobworkerd was down ends the session at the next start, as a reload does while it runs.
  SessionStore::Hash password_tag{};

  bool operator==(const SessionRecord&) const = default;
};
std::string encodeSessionRecord(const SessionRecord& s);
Result<SessionRecord, RecordFailure> decodeSessionRecord(std::string_view bytes);

// The room the end record of a job whose start record is start_record_bytes long needs at most:
// the fields that grow at its end (error, stopped_by, the output errors) at their caps, rounded
// up to whole 4 KiB blocks. What JobRecords reserves at start.
size_t endRecordReserve(size_t start_record_bytes);

}  // namespace jw::supervisor
