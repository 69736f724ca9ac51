// Job and session records on disk (see record_codec.h); runs in jobworkerd.
#include "supervisor/state/record_codec.h"

#include <cstring>

#include "common/names.h"
#include "common/protocol/wire.h"

namespace jw::supervisor {

using protocol::JobState;
using protocol::Reader;
using protocol::Writer;

namespace {

constexpr char kJobMagic[8] = {'J', 'W', 'J', 'O', 'B', 'R', 'E', 'C'};
constexpr char kSessionMagic[8] = {'J', 'W', 'S', 'E', 'S', 'S', 'O', 'N'};
constexpr size_t kMaxCommandArgBytes = protocol::kMaxJobSpecBytes;
constexpr size_t kMaxIsolationLabels = 16, kMaxIsolationLabel = 16;
// 9999-12-31T23:59:59.999Z: no clock of ours reads later, and the frontend's RFC 3339 formatting
// (microseconds in an int64) must never be handed a value that overflows.
constexpr int64_t kLatestTimestampMs = 253'402'300'799'999;

bool validTimestamp(int64_t ms) { return ms >= 0 && ms <= kLatestTimestampMs; }

std::string frame(const char (&magic)[8], const std::string& payload,
                  uint32_t version = kRecordVersion) {
  Writer w;
  w.raw(magic, sizeof magic);
  w.u32(version);
  w.u32(static_cast<uint32_t>(payload.size()));
  w.raw(payload.data(), payload.size());
  return w.take();
}

struct Unframed {
  std::string_view payload;
  uint32_t version = 0;
};

// The payload of a record of a version this jobworkerd reads, after the header's checks.
Result<Unframed, RecordFailure> unframe(const char (&magic)[8], std::string_view bytes) {
  auto corrupt = [](std::string m) { return RecordFailure{RecordError::kCorrupt, std::move(m)}; };
  if (bytes.size() < kRecordHeaderSize) return corrupt("truncated header");
  if (bytes.size() > kMaxRecordBytes) return corrupt("larger than any record");
  if (std::memcmp(bytes.data(), magic, sizeof magic) != 0) return corrupt("bad magic");
  Reader r(bytes.substr(sizeof magic, 8));
  uint32_t version = r.u32();
  uint32_t length = r.u32();
  // Far beyond any version we will write: damage, not a newer jobworkerd.
  if (version > kRecordVersion + 1000) return corrupt("format version out of range");
  if (version > kRecordVersion) {
    return RecordFailure{RecordError::kNewerVersion, "format version " + std::to_string(version) +
                                                         " is newer than this jobworkerd's (" +
                                                         std::to_string(kRecordVersion) + ")"};
  }
  if (version == 0) return corrupt("format version 0");
  if (length != bytes.size() - kRecordHeaderSize) {
    return corrupt("payload of " + std::to_string(bytes.size() - kRecordHeaderSize) +
                   " bytes, header says " + std::to_string(length) + " (truncated?)");
  }
  return Unframed{bytes.substr(kRecordHeaderSize), version};
}

void putLimits(Writer& w, const protocol::Limits& l) {
  w.u32(l.cpu_millicores);
  w.u64(l.memory_bytes);
  w.u32(l.pids);
  w.u32(static_cast<uint32_t>(l.io.size()));
  for (const auto& io : l.io) {
    w.str(io.device);
    w.u64(io.read_bps);
    w.u64(io.write_bps);
    w.u64(io.read_iops);
    w.u64(io.write_iops);
  }
}

void getLimits(Reader& r, protocol::Limits& l) {
  l.cpu_millicores = r.u32();
  l.memory_bytes = r.u64();
  l.pids = r.u32();
  uint32_t n = r.count(protocol::kMaxIoRules, 4 + 32, "io limits");
  l.io.resize(n);
  for (auto& io : l.io) {
    io.device = r.str(protocol::kMaxDevicePath, "io device");
    io.read_bps = r.u64();
    io.write_bps = r.u64();
    io.read_iops = r.u64();
    io.write_iops = r.u64();
  }
}

void putUsage(Writer& w, const protocol::Usage& u) {
  w.boolean(u.has_cpu);
  w.boolean(u.has_memory);
  w.boolean(u.has_io);
  w.boolean(u.has_pids);
  uint64_t cpu_bits = 0;
  static_assert(sizeof cpu_bits == sizeof u.cpu_seconds);
  std::memcpy(&cpu_bits, &u.cpu_seconds, sizeof cpu_bits);
  w.u64(cpu_bits);
  w.u64(u.memory_peak_bytes);
  w.u64(u.io_read_bytes);
  w.u64(u.io_write_bytes);
  w.u64(u.pids_peak);
}

void getUsage(Reader& r, protocol::Usage& u) {
  u.has_cpu = r.boolean();
  u.has_memory = r.boolean();
  u.has_io = r.boolean();
  u.has_pids = r.boolean();
  uint64_t cpu_bits = r.u64();
  std::memcpy(&u.cpu_seconds, &cpu_bits, sizeof cpu_bits);
  // Not a number or negative: no cgroup ever reports it, so the bytes are not ours.
  if (!(u.cpu_seconds >= 0)) r.fail("cpu seconds out of range");
  u.memory_peak_bytes = r.u64();
  u.io_read_bytes = r.u64();
  u.io_write_bytes = r.u64();
  u.pids_peak = r.u64();
}

// What a job record must say to be served as this job's: the fields the decoder cannot check
// one by one.
std::string inconsistency(const protocol::JobStatus& s) {
  if (!names::validJobId(s.id)) return "not a job id";
  if (!names::validUserName(s.owner)) return "owner is not a user name";
  if (s.command.empty()) return "empty command";
  if (!s.run_as.empty() && !names::validAccountName(s.run_as)) return "run_as is not an account";
  if (!s.name.empty() && !names::validJobName(s.name)) return "name is not a job name";
  for (const auto& l : s.labels) {
    if (!names::validLabel(l)) return "a label is not key=value";
  }
  if (s.created_at_ms <= 0) return "no creation time";
  if (!validTimestamp(s.created_at_ms) || !validTimestamp(s.started_at_ms) ||
      !validTimestamp(s.ended_at_ms)) {
    return "a timestamp out of range";
  }
  const bool ended = s.state != JobState::kRunning;
  if (ended && s.ended_at_ms <= 0) return "ended without an end time";
  if (s.state == JobState::kExited && !s.has_exit_code) return "exited without an exit code";
  if (s.state != JobState::kExited && s.has_exit_code) return "an exit code but not exited";
  if (s.exit_code < 0 || s.exit_code > 255) return "exit code out of range";
  if (s.signal < 0 || s.signal > 64) return "signal out of range";
  if (s.state == JobState::kKilled && s.signal == 0) return "killed without a signal";
  if (s.output == protocol::OutputMode::kMerged && (s.stderr_bytes != 0 || s.stderr_dropped_bytes))
    return "stderr counts for a merged job";
  if (s.output_truncated != (s.output_dropped_bytes > 0) ||
      s.stderr_truncated != (s.stderr_dropped_bytes > 0)) {
    return "truncated flags disagree with the dropped counts";
  }
  return "";
}

void putShim(Writer& w, const RunningShim& shim) {
  w.str(shim.identity.boot_id);
  w.i32(shim.identity.shim_pid);
  w.u64(shim.identity.shim_start_time);
  w.str(shim.identity.cgroup_path);
  w.i32(shim.command_pid);
  w.u64(shim.backup_kill_at_ms);
}

void getShim(Reader& r, RunningShim& shim) {
  shim.identity.boot_id = r.str(kMaxBootId, "boot id");
  shim.identity.shim_pid = r.i32();
  shim.identity.shim_start_time = r.u64();
  shim.identity.cgroup_path = r.str(kMaxCgroupPath, "cgroup path");
  shim.command_pid = r.i32();
  shim.backup_kill_at_ms = r.u64();
  if (shim.identity.shim_pid <= 0 || shim.command_pid < 0) r.fail("shim pid out of range");
}

}  // namespace

std::string encodeJobRecord(const protocol::JobStatus& s) { return encodeJobRecord(JobRecord{s}); }

std::string encodeJobRecord(const JobRecord& record) {
  const protocol::JobStatus& s = record.status;
  Writer w;
  w.str(s.id);
  w.str(s.owner);
  w.strList(s.command);
  w.u8(static_cast<uint8_t>(s.state));
  w.i32(s.pid);
  w.boolean(s.has_exit_code);
  w.i32(s.exit_code);
  w.i32(s.signal);
  w.str(s.stopped_by);
  w.str(s.error);
  w.i64(s.created_at_ms);
  w.i64(s.started_at_ms);
  w.i64(s.ended_at_ms);
  w.u8(static_cast<uint8_t>(s.output));
  w.u64(s.output_bytes);
  w.u64(s.output_dropped_bytes);
  w.boolean(s.output_truncated);
  w.str(s.output_error);
  w.u64(s.stderr_bytes);
  w.u64(s.stderr_dropped_bytes);
  w.boolean(s.stderr_truncated);
  w.str(s.stderr_error);
  w.boolean(s.oom_killed);
  putLimits(w, s.limits);
  putUsage(w, s.usage);
  w.strList(s.isolation);
  w.str(s.run_as);
  w.str(s.name);
  w.strList(s.labels);
  // Version 2: the shim of a running job.
  w.boolean(record.shim.has_value());
  if (record.shim) putShim(w, *record.shim);
  return frame(kJobMagic, w.bytes());
}

Result<JobRecord, RecordFailure> decodeJobRecord(std::string_view bytes) {
  auto payload = unframe(kJobMagic, bytes);
  if (!payload) return payload.error();
  Reader r(payload->payload);
  JobRecord record;
  record.version = payload->version;
  protocol::JobStatus& s = record.status;
  s.id = r.str(protocol::kMaxJobId, "id");
  s.owner = r.str(protocol::kMaxUserName, "owner");
  s.command = r.strList(protocol::kMaxArgs, kMaxCommandArgBytes, "command");
  s.state = protocol::getEnum(r, protocol::kJobStateRange, "state");
  s.pid = r.i32();
  s.has_exit_code = r.boolean();
  s.exit_code = r.i32();
  s.signal = r.i32();
  s.stopped_by = r.str(protocol::kMaxUserName, "stopped_by");
  s.error = r.str(protocol::kMaxMessage, "error");
  s.created_at_ms = r.i64();
  s.started_at_ms = r.i64();
  s.ended_at_ms = r.i64();
  s.output = protocol::getEnum(r, protocol::kOutputModeRange, "output");
  s.output_bytes = r.u64();
  s.output_dropped_bytes = r.u64();
  s.output_truncated = r.boolean();
  s.output_error = r.str(protocol::kMaxMessage, "output_error");
  s.stderr_bytes = r.u64();
  s.stderr_dropped_bytes = r.u64();
  s.stderr_truncated = r.boolean();
  s.stderr_error = r.str(protocol::kMaxMessage, "stderr_error");
  s.oom_killed = r.boolean();
  getLimits(r, s.limits);
  getUsage(r, s.usage);
  s.isolation = r.strList(kMaxIsolationLabels, kMaxIsolationLabel, "isolation");
  s.run_as = r.str(protocol::kMaxUserName, "run_as");
  s.name = r.str(names::kMaxJobName, "name");
  s.labels = r.strList(names::kMaxLabels, names::kMaxLabelText, "labels");
  if (record.version >= 2 && r.boolean()) getShim(r, record.shim.emplace());
  if (!r.finish()) return RecordFailure{RecordError::kCorrupt, r.error()};
  if (record.shim && s.state != JobState::kRunning) {
    return RecordFailure{RecordError::kCorrupt, "a shim on an ended job"};
  }
  size_t command_bytes = 0;
  for (const auto& a : s.command) command_bytes += a.size();
  if (command_bytes > kMaxCommandArgBytes) {
    return RecordFailure{RecordError::kCorrupt, "command over its cap"};
  }
  if (std::string why = inconsistency(s); !why.empty()) {
    return RecordFailure{RecordError::kCorrupt, why};
  }
  return record;
}

std::string encodeSessionRecord(const SessionRecord& s) {
  Writer w;
  w.raw(s.hash.data(), s.hash.size());
  w.str(s.session.user);
  w.i64(s.session.created_at_ms);
  w.i64(s.session.expires_at_ms);
  w.i64(s.session.last_used_at_ms);
  w.str(s.session.remote_address);
  w.raw(s.password_tag.data(), s.password_tag.size());
  return frame(kSessionMagic, w.bytes());
}

Result<SessionRecord, RecordFailure> decodeSessionRecord(std::string_view bytes) {
  auto payload = unframe(kSessionMagic, bytes);
  if (!payload) return payload.error();
  Reader r(payload->payload);
  SessionRecord s;
  r.raw(s.hash.data(), s.hash.size());
  s.session.user = r.str(protocol::kMaxUserName, "user");
  s.session.created_at_ms = r.i64();
  s.session.expires_at_ms = r.i64();
  s.session.last_used_at_ms = r.i64();
  s.session.remote_address = r.str(protocol::kMaxRemoteAddress, "remote address");
  r.raw(s.password_tag.data(), s.password_tag.size());
  if (!r.finish()) return RecordFailure{RecordError::kCorrupt, r.error()};
  if (!names::validUserName(s.session.user)) {
    return RecordFailure{RecordError::kCorrupt, "user is not a user name"};
  }
  if (!validTimestamp(s.session.created_at_ms) || !validTimestamp(s.session.expires_at_ms) ||
      !validTimestamp(s.session.last_used_at_ms)) {
    return RecordFailure{RecordError::kCorrupt, "a timestamp out of range"};
  }
  if (s.session.expires_at_ms <= s.session.created_at_ms) {
    return RecordFailure{RecordError::kCorrupt, "expires before it was created"};
  }
  return s;
}

size_t endRecordReserve(size_t start_record_bytes) {
  // error and both output errors at kMaxMessage, stopped_by at kMaxUserName, with their lengths.
  size_t most = start_record_bytes + 3 * (protocol::kMaxMessage + 4) + protocol::kMaxUserName + 4;
  return (most + 4095) / 4096 * 4096;
}

}  // namespace jw::supervisor
