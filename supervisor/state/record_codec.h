// The on-disk format of jobworkerd's durable state: one job record per job directory and one
// session record per session, each a versioned, length-checked binary encoding written field by
// field with the channel's bounded Writer/Reader (jobworkerd has no JSON parser, by design), but
// with its own field list: a change of the wire protocol never changes the disk format. Pure
// functions, fuzzed (tests/fuzz/record_fuzz.cc). Runs in jobworkerd (and its --check-state).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
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
// Version 1: the status fields. Version 2 (re-adoption) adds a running job's shim (RunningShim);
// version 1 records still load (their running jobs were never adoptable).
inline constexpr uint32_t kRecordVersion = 2;
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

// Who a running job is, so that a later jobworkerd can prove a live process is this job's shim
// before it takes it over (pidfd_open first, then all four must match).
struct JobIdentity {
  std::string boot_id;           // /proc/sys/kernel/random/boot_id
  pid_t shim_pid = 0;            // host pid
  uint64_t shim_start_time = 0;  // /proc/PID/stat field 22, clock ticks since boot
  std::string cgroup_path;       // the shim's /proc/PID/cgroup at start (first line)

  bool operator==(const JobIdentity&) const = default;
};
inline constexpr size_t kMaxBootId = 64;
inline constexpr size_t kMaxCgroupPath = 4096;

// What the record of a running job adds (format version 2): enough to take the job over.
struct RunningShim {
  JobIdentity identity;
  pid_t command_pid = 0;  // as the shim sees it (its group is what a backup kill signals)
  // The backup SIGKILL after a stop's grace: CLOCK_MONOTONIC ms (valid only on the same boot,
  // which the identity proves); 0: no stop requested.
  uint64_t backup_kill_at_ms = 0;

  bool operator==(const RunningShim&) const = default;
};

// A job's record is what its status shows, with the state it had when written: "running" for a
// job that was still running then (a record of a daemon that died while the job ran), and then
// its shim, when known.
struct JobRecord {
  protocol::JobStatus status;
  std::optional<RunningShim> shim;    // only while running
  uint32_t version = kRecordVersion;  // the format it was read in (decode) or is written in

  bool operator==(const JobRecord&) const = default;
};
std::string encodeJobRecord(const JobRecord& job);
std::string encodeJobRecord(const protocol::JobStatus& job);  // no shim
// Checks every field (the id a job id, the owner a user name, enums in range, the strings
// within their caps, an ended job's exit fields consistent with its state, a shim only on a
// running job) and that every byte was consumed. Reads versions 1 and 2.
Result<JobRecord, RecordFailure> decodeJobRecord(std::string_view bytes);

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
