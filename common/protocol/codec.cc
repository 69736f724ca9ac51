// Field-by-field encoding of every payload in codec.h; runs in both processes.
#include "common/protocol/codec.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <type_traits>

#include "common/names.h"
#include "common/protocol/wire.h"

namespace jw::protocol {

namespace {

constexpr size_t kMaxArgBytes = kMaxJobSpecBytes;
constexpr size_t kMaxIsolation = 16;
constexpr size_t kMaxShortText = 64;

// --- per-struct field codecs -------------------------------------------------------------------

void put(Writer& w, const Empty&) { (void)w; }
void get(Reader& r, Empty&) { (void)r; }

void put(Writer& w, const Token& t) { w.raw(t.bytes.data(), t.bytes.size()); }
void get(Reader& r, Token& t) { r.raw(t.bytes.data(), t.bytes.size()); }

void put(Writer& w, const SessionRef& s) { put(w, s.token); }
void get(Reader& r, SessionRef& s) { get(r, s.token); }

void put(Writer& w, const SessionEnd& s) {
  put(w, s.token);
  w.str(s.remote_address);
}
void get(Reader& r, SessionEnd& s) {
  get(r, s.token);
  s.remote_address = r.str(kMaxRemoteAddress, "remote address");
}

void put(Writer& w, const LoginRequest& l) {
  w.str(l.user);
  w.str(l.password);
  w.str(l.remote_address);
}
void get(Reader& r, LoginRequest& l) {
  l.user = r.str(kMaxUserName, "user name");
  // Straight from the frame into a heap buffer: no temporary, and never the string's inline
  // buffer, whose bytes a move copies (leaving them behind on the stack) instead of handing over.
  std::string_view password = r.view(kMaxPassword, "password");
  l.password.reserve(std::max<size_t>(password.size(), sizeof(std::string) + 1));
  l.password.assign(password);
  l.remote_address = r.str(kMaxRemoteAddress, "remote address");
}

void put(Writer& w, const LoginReply& l) {
  put(w, l.token);
  w.u8(static_cast<uint8_t>(l.role));
  w.i64(l.expires_at_ms);
}
void get(Reader& r, LoginReply& l) {
  get(r, l.token);
  l.role = getEnum(r, kRoleRange, "role");
  l.expires_at_ms = r.i64();
}

void put(Writer& w, const SessionInfo& i) {
  w.str(i.user);
  w.u8(static_cast<uint8_t>(i.role));
  w.i64(i.expires_at_ms);
}
void get(Reader& r, SessionInfo& i) {
  i.user = r.str(kMaxUserName, "user name");
  i.role = getEnum(r, kRoleRange, "role");
  i.expires_at_ms = r.i64();
}

void put(Writer& w, const Limits& l) {
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
void get(Reader& r, Limits& l) {
  l.cpu_millicores = r.u32();
  l.memory_bytes = r.u64();
  l.pids = r.u32();
  uint32_t n = r.count(kMaxIoRules, 36, "io limits");
  l.io.resize(n);
  for (auto& io : l.io) {
    io.device = r.str(kMaxDevicePath, "io device");
    io.read_bps = r.u64();
    io.write_bps = r.u64();
    io.read_iops = r.u64();
    io.write_iops = r.u64();
  }
}

void put(Writer& w, const JobStartRequest& j) {
  put(w, j.token);
  w.strList(j.argv);
  w.strList(j.env);
  w.str(j.cwd);
  w.u32(j.timeout_ms);
  w.u8(static_cast<uint8_t>(j.output));
  put(w, j.limits);
  w.u8(static_cast<uint8_t>(j.network));
  w.str(j.remote_address);
  w.str(j.name);
  w.strList(j.labels);
  w.boolean(j.stdin_pipe);
}
void get(Reader& r, JobStartRequest& j) {
  get(r, j.token);
  j.argv = r.strList(kMaxArgs, kMaxArgBytes, "argv");
  j.env = r.strList(kMaxEnv, kMaxArgBytes, "env");
  j.cwd = r.str(kMaxArgBytes, "cwd");
  j.timeout_ms = r.u32();
  j.output = getEnum(r, kOutputModeRange, "output mode");
  get(r, j.limits);
  j.network = getEnum(r, kNetworkRange, "network mode");
  j.remote_address = r.str(kMaxRemoteAddress, "remote address");
  j.name = r.str(names::kMaxJobName, "job name");
  j.labels = r.strList(names::kMaxLabels, names::kMaxLabelText, "labels");
  j.stdin_pipe = r.boolean();
  if (!r.failed() && jobSpecBytes(j) > kMaxJobSpecBytes) r.fail("argv + env + cwd over cap");
}

void put(Writer& w, const JobRef& j) {
  put(w, j.token);
  w.str(j.job_id);
}
void get(Reader& r, JobRef& j) {
  get(r, j.token);
  j.job_id = r.str(kMaxJobId, "job id");
}

void put(Writer& w, const JobStopRequest& j) {
  put(w, j.token);
  w.str(j.job_id);
  w.boolean(j.has_grace);
  w.u32(j.grace_ms);
  w.str(j.remote_address);
}
void get(Reader& r, JobStopRequest& j) {
  get(r, j.token);
  j.job_id = r.str(kMaxJobId, "job id");
  j.has_grace = r.boolean();
  j.grace_ms = r.u32();
  j.remote_address = r.str(kMaxRemoteAddress, "remote address");
}

void put(Writer& w, const JobListRequest& j) {
  put(w, j.token);
  w.boolean(j.all);
  w.u8(j.state);
  w.str(j.owner);
  w.str(j.name);
  w.strList(j.labels);
  w.i64(j.since_ms);
  w.u32(j.limit);
  w.i64(j.after_created_ms);
  w.str(j.after_id);
}
void get(Reader& r, JobListRequest& j) {
  get(r, j.token);
  j.all = r.boolean();
  j.state = r.u8();
  if (j.state != 0 && (j.state < static_cast<uint8_t>(kJobStateRange.first) ||
                       j.state > static_cast<uint8_t>(kJobStateRange.last))) {
    r.fail("state filter out of range");
  }
  j.owner = r.str(kMaxUserName, "owner filter");
  j.name = r.str(names::kMaxJobName, "name filter");
  j.labels = r.strList(names::kMaxLabels, names::kMaxLabelText, "label filter");
  j.since_ms = r.i64();
  j.limit = r.u32();
  if (j.limit > kMaxListLimit) r.fail("list limit out of range");
  j.after_created_ms = r.i64();
  j.after_id = r.str(kMaxJobId, "cursor job id");
}

void put(Writer& w, const JobWaitRequest& j) {
  put(w, j.token);
  w.str(j.job_id);
  w.u32(j.wait_ms);
}
void get(Reader& r, JobWaitRequest& j) {
  get(r, j.token);
  j.job_id = r.str(kMaxJobId, "job id");
  j.wait_ms = r.u32();
}

void put(Writer& w, const JobDeleteRequest& j) {
  put(w, j.token);
  w.str(j.job_id);
  w.str(j.remote_address);
}
void get(Reader& r, JobDeleteRequest& j) {
  get(r, j.token);
  j.job_id = r.str(kMaxJobId, "job id");
  j.remote_address = r.str(kMaxRemoteAddress, "remote address");
}

void put(Writer& w, const ServerInfoReply& i) { w.str(i.cgroup_backend); }
void get(Reader& r, ServerInfoReply& i) {
  i.cgroup_backend = r.str(kMaxShortText, "cgroup backend");
}

void put(Writer& w, const OutputReadRequest& o) {
  put(w, o.token);
  w.str(o.job_id);
  w.u8(static_cast<uint8_t>(o.stream));
  w.u64(o.offset);
  w.u32(o.max_bytes);
  w.boolean(o.follow);
  w.boolean(o.tail);
  w.u32(o.tail_lines);
  w.u64(o.since_unix_ms);
  w.boolean(o.timestamps);
}
void get(Reader& r, OutputReadRequest& o) {
  get(r, o.token);
  o.job_id = r.str(kMaxJobId, "job id");
  o.stream = getEnum(r, kStreamRange, "stream");
  o.offset = r.u64();
  o.max_bytes = r.u32();
  if (o.max_bytes == 0 || o.max_bytes > kMaxChunk) r.fail("max_bytes out of range");
  o.follow = r.boolean();
  o.tail = r.boolean();
  o.tail_lines = r.u32();
  if (o.tail_lines > kMaxTailLines) r.fail("tail_lines out of range");
  o.since_unix_ms = r.u64();
  o.timestamps = r.boolean();
}

void put(Writer& w, const OutputChunk& c) {
  w.u64(c.offset);
  w.str(c.data);
  w.u32(c.raw_size);
  w.boolean(c.eof);
}
void get(Reader& r, OutputChunk& c) {
  c.offset = r.u64();
  c.data = r.str(kMaxChunk, "output data");
  c.raw_size = r.u32();
  if (c.raw_size > c.data.size()) r.fail("raw_size above the data size");
  c.eof = r.boolean();
}

void putDouble(Writer& w, double d) {
  uint64_t bits;
  std::memcpy(&bits, &d, sizeof bits);
  w.u64(bits);
}
double getDouble(Reader& r) {
  uint64_t bits = r.u64();
  double d;
  std::memcpy(&d, &bits, sizeof d);
  if (!std::isfinite(d)) r.fail("non-finite number");
  return d;
}

// Usage's has_* flags, one bit each: cpu, memory, io, pids.
constexpr uint8_t kUsageCpu = 1, kUsageMemory = 2, kUsageIo = 4, kUsagePids = 8;
constexpr uint8_t kUsageFlags = kUsageCpu | kUsageMemory | kUsageIo | kUsagePids;

void put(Writer& w, const Usage& u) {
  w.u8(static_cast<uint8_t>((u.has_cpu ? kUsageCpu : 0) | (u.has_memory ? kUsageMemory : 0) |
                            (u.has_io ? kUsageIo : 0) | (u.has_pids ? kUsagePids : 0)));
  putDouble(w, u.cpu_seconds);
  w.u64(u.memory_peak_bytes);
  w.u64(u.io_read_bytes);
  w.u64(u.io_write_bytes);
  w.u64(u.pids_peak);
}
void get(Reader& r, Usage& u) {
  uint8_t bits = r.u8();
  if ((bits & ~kUsageFlags) != 0) r.fail("usage flags out of range");
  u.has_cpu = bits & kUsageCpu;
  u.has_memory = bits & kUsageMemory;
  u.has_io = bits & kUsageIo;
  u.has_pids = bits & kUsagePids;
  u.cpu_seconds = getDouble(r);
  u.memory_peak_bytes = r.u64();
  u.io_read_bytes = r.u64();
  u.io_write_bytes = r.u64();
  u.pids_peak = r.u64();
}

void put(Writer& w, const JobStatus& s) {
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
  w.u64(s.stderr_bytes);
  w.u64(s.stderr_dropped_bytes);
  w.boolean(s.stderr_truncated);
  w.str(s.output_error);
  w.str(s.stderr_error);
  w.boolean(s.oom_killed);
  put(w, s.limits);
  put(w, s.usage);
  w.strList(s.isolation);
  w.str(s.run_as);
  w.str(s.name);
  w.strList(s.labels);
  w.boolean(s.stdin_pipe);
  w.u64(s.stdin_bytes);
  w.boolean(s.stdin_complete);
}
void get(Reader& r, JobStatus& s) {
  s.id = r.str(kMaxJobId, "job id");
  s.owner = r.str(kMaxUserName, "owner");
  s.command = r.strList(kMaxArgs, kMaxArgBytes, "command");
  s.state = getEnum(r, kJobStateRange, "job state");
  s.pid = r.i32();
  s.has_exit_code = r.boolean();
  s.exit_code = r.i32();
  s.signal = r.i32();
  s.stopped_by = r.str(kMaxUserName, "stopped_by");
  s.error = r.str(kMaxMessage, "error");
  s.created_at_ms = r.i64();
  s.started_at_ms = r.i64();
  s.ended_at_ms = r.i64();
  s.output = getEnum(r, kOutputModeRange, "output mode");
  s.output_bytes = r.u64();
  s.output_dropped_bytes = r.u64();
  s.output_truncated = r.boolean();
  s.stderr_bytes = r.u64();
  s.stderr_dropped_bytes = r.u64();
  s.stderr_truncated = r.boolean();
  s.output_error = r.str(kMaxMessage, "output_error");
  s.stderr_error = r.str(kMaxMessage, "stderr_error");
  s.oom_killed = r.boolean();
  get(r, s.limits);
  get(r, s.usage);
  s.isolation = r.strList(kMaxIsolation, kMaxShortText, "isolation");
  s.run_as = r.str(kMaxShortText, "run_as");
  s.name = r.str(names::kMaxJobName, "job name");
  s.labels = r.strList(names::kMaxLabels, names::kMaxLabelText, "labels");
  s.stdin_pipe = r.boolean();
  s.stdin_bytes = r.u64();
  s.stdin_complete = r.boolean();
}

void put(Writer& w, const StdinOpenRequest& s) {
  put(w, s.token);
  w.str(s.job_id);
  w.str(s.remote_address);
}
void get(Reader& r, StdinOpenRequest& s) {
  get(r, s.token);
  s.job_id = r.str(kMaxJobId, "job id");
  s.remote_address = r.str(kMaxRemoteAddress, "remote address");
}

void put(Writer& w, const StdinWriteRequest& s) {
  put(w, s.token);
  w.str(s.job_id);
  w.str(s.data);
}
void get(Reader& r, StdinWriteRequest& s) {
  get(r, s.token);
  s.job_id = r.str(kMaxJobId, "job id");
  s.data = r.str(kMaxStdinChunk, "stdin data");
  if (!r.failed() && s.data.empty()) r.fail("empty stdin data");
}

void put(Writer& w, const StdinCloseRequest& s) {
  put(w, s.token);
  w.str(s.job_id);
  w.boolean(s.complete);
}
void get(Reader& r, StdinCloseRequest& s) {
  get(r, s.token);
  s.job_id = r.str(kMaxJobId, "job id");
  s.complete = r.boolean();
}

void put(Writer& w, const JobEvent& e) {
  w.u64(e.seq);
  w.i64(e.time_ms);
  w.u8(static_cast<uint8_t>(e.type));
  w.str(e.job_id);
  w.str(e.owner);
  w.str(e.name);
  w.u8(static_cast<uint8_t>(e.state));
  w.boolean(e.has_exit_code);
  w.i32(e.exit_code);
  w.i32(e.signal);
  w.str(e.stopped_by);
  w.str(e.error);
}
void get(Reader& r, JobEvent& e) {
  e.seq = r.u64();
  e.time_ms = r.i64();
  e.type = getEnum(r, kEventTypeRange, "event type");
  e.job_id = r.str(kMaxJobId, "job id");
  e.owner = r.str(kMaxUserName, "owner");
  e.name = r.str(names::kMaxJobName, "job name");
  e.state = getEnum(r, kJobStateRange, "job state");
  e.has_exit_code = r.boolean();
  e.exit_code = r.i32();
  e.signal = r.i32();
  e.stopped_by = r.str(kMaxUserName, "stopped_by");
  e.error = r.str(kMaxMessage, "error");
}

void put(Writer& w, const EventsReadRequest& e) {
  put(w, e.token);
  w.boolean(e.has_since);
  w.u64(e.since);
  w.str(e.job_id);
  w.boolean(e.follow);
}
void get(Reader& r, EventsReadRequest& e) {
  get(r, e.token);
  e.has_since = r.boolean();
  e.since = r.u64();
  e.job_id = r.str(kMaxJobId, "job id");
  e.follow = r.boolean();
}

void put(Writer& w, const EventBatch& b) {
  w.u32(static_cast<uint32_t>(b.events.size()));
  for (const auto& e : b.events) put(w, e);
  w.u64(b.next_since);
}
void get(Reader& r, EventBatch& b) {
  b.events.resize(r.count(kMaxEventsPerBatch, 8 + 8 + 1 + 4 * 3 + 1 + 1 + 4 + 4 + 4 * 2, "events"));
  for (auto& e : b.events) get(r, e);
  b.next_since = r.u64();
}

void put(Writer& w, const JobListReply& l) {
  w.u32(static_cast<uint32_t>(l.jobs.size()));
  for (const auto& s : l.jobs) put(w, s);
  w.boolean(l.more);
}
void get(Reader& r, JobListReply& l) {
  uint32_t n = r.count(kMaxListPerFrame, 64, "jobs");
  l.jobs.resize(n);
  for (auto& s : l.jobs) get(r, s);
  l.more = r.boolean();
}

void put(Writer& w, const ErrorReply& e) {
  w.u16(static_cast<uint16_t>(e.code));
  w.i32(e.sys_errno);
  w.str(e.message);
  w.u32(e.retry_after_s);
}
void get(Reader& r, ErrorReply& e) {
  e.code = getEnum(r, kErrorCodeRange, "error code");
  e.sys_errno = r.i32();
  e.message = r.str(kMaxMessage, "error message");
  e.retry_after_s = r.u32();
}

void put(Writer& w, const HealthReply& h) {
  w.boolean(h.degraded);
  w.strList(h.details);
}
void get(Reader& r, HealthReply& h) {
  h.degraded = r.boolean();
  h.details = r.strList(kMaxHealthDetails, kMaxMessage, "health details");
}

void put(Writer& w, const Histogram& h) {
  w.u32(static_cast<uint32_t>(h.buckets.size()));
  for (uint64_t b : h.buckets) w.u64(b);
  w.u64(h.sum_us);
}
void get(Reader& r, Histogram& h) {
  h.buckets.resize(r.count(kMaxHistogramBuckets, 8, "histogram buckets"));
  for (uint64_t& b : h.buckets) b = r.u64();
  h.sum_us = r.u64();
}
// A histogram must have exactly its list's buckets and +Inf, or the renderer would mislabel it.
void getHistogram(Reader& r, Histogram& h, size_t bounds, const char* what) {
  get(r, h);
  if (h.buckets.size() != bounds + 1) r.fail(std::string(what) + " has the wrong bucket count");
}

void put(Writer& w, const UserJobCounts& u) {
  w.str(u.user);
  w.u64(u.starts);
  for (uint64_t e : u.ends) w.u64(e);
  w.u64(u.memory_bytes);
}
void get(Reader& r, UserJobCounts& u) {
  u.user = r.str(kMaxUserName, "user name");
  u.starts = r.u64();
  for (uint64_t& e : u.ends) e = r.u64();
  u.memory_bytes = r.u64();
}

void put(Writer& w, const MetricsReply& m) {
  for (uint64_t n : m.jobs_by_state) w.u64(n);
  w.u32(static_cast<uint32_t>(m.users.size()));
  for (const auto& u : m.users) put(w, u);
  put(w, m.start_latency);
  put(w, m.loop_lag);
  w.u64(m.output_stored_bytes);
  w.u64(m.output_dropped_bytes);
  for (uint64_t n : m.logins) w.u64(n);
  w.u64(m.frontend_restarts);
  w.u64(m.protocol_violations);
  w.boolean(m.has_state_free);
  w.u64(m.state_free_bytes);
  w.boolean(m.has_jobs_memory);
  w.boolean(m.has_jobs_cpu);
  w.boolean(m.has_jobs_pids);
  w.u64(m.jobs_memory_bytes);
  w.u64(m.jobs_cpu_us);
  w.u64(m.jobs_pids);
}
void get(Reader& r, MetricsReply& m) {
  for (uint64_t& n : m.jobs_by_state) n = r.u64();
  m.users.resize(r.count(kMaxMetricsUsers + 1, 4 + 8 * (2 + kJobOutcomes), "metrics users"));
  for (auto& u : m.users) get(r, u);
  getHistogram(r, m.start_latency, std::size(kStartLatencyBuckets), "start latency");
  getHistogram(r, m.loop_lag, std::size(kLoopLagBuckets), "loop lag");
  m.output_stored_bytes = r.u64();
  m.output_dropped_bytes = r.u64();
  for (uint64_t& n : m.logins) n = r.u64();
  m.frontend_restarts = r.u64();
  m.protocol_violations = r.u64();
  m.has_state_free = r.boolean();
  m.state_free_bytes = r.u64();
  m.has_jobs_memory = r.boolean();
  m.has_jobs_cpu = r.boolean();
  m.has_jobs_pids = r.boolean();
  m.jobs_memory_bytes = r.u64();
  m.jobs_cpu_us = r.u64();
  m.jobs_pids = r.u64();
}

void putHeader(Writer& w, MsgType type, uint16_t flags, uint32_t request_id) {
  w.u16(static_cast<uint16_t>(type));
  w.u16(flags);
  w.u32(request_id);
}

// A payload's secrets, wiped when its decoding fails: the caller never gets it to wipe.
template <typename T>
void wipeSecrets(T& /*payload*/) {}
void wipeSecrets(LoginRequest& l) {
  explicit_bzero(l.password.data(), l.password.size());
  l.password.clear();
}

template <typename T>
Result<T> decodeWith(std::string_view bytes, const char* what) {
  Reader r(bytes);
  T out{};
  get(r, out);
  if (!r.finish()) {
    wipeSecrets(out);
    return Error{std::string(what) + ": " + r.error()};
  }
  return out;
}

}  // namespace

#define JW_DEFINE_CODEC(name, num, dir, payload, doc)                               \
  std::string encode##name(uint32_t request_id, const payload& p, uint16_t flags) { \
    Writer w;                                                                       \
    putHeader(w, MsgType::k##name, flags, request_id);                              \
    put(w, p);                                                                      \
    return w.take();                                                                \
  }                                                                                 \
  Result<payload> decode##name##Payload(std::string_view bytes) {                   \
    return decodeWith<payload>(bytes, #name);                                       \
  }
JW_MESSAGES(JW_DEFINE_CODEC)
#undef JW_DEFINE_CODEC

Result<std::string> encodeOutputChunkRead(uint32_t request_id, uint64_t offset, size_t max_bytes,
                                          const std::function<Result<size_t>(char*, size_t)>& read,
                                          const std::function<bool(size_t)>& eof) {
  max_bytes = std::min(max_bytes, kMaxChunk);
  Writer w;
  // Header, offset, data length, data, raw_size, eof: all of it in one allocation.
  w.reserve(kHeaderSize + 8 + 4 + max_bytes + 4 + 1);
  putHeader(w, MsgType::kOutputChunk, 0, request_id);
  w.u64(offset);
  w.u32(0);  // the data length, set once the read says it
  std::string frame = w.take();
  const size_t length_at = frame.size() - 4;
  frame.resize(frame.size() + max_bytes);
  auto got = read(frame.data() + length_at + 4, max_bytes);
  if (!got) return got.error();
  size_t n = std::min(got.value(), max_bytes);
  frame.resize(length_at + 4 + n);
  Writer tail;
  tail.u32(static_cast<uint32_t>(n));  // the length, then raw_size (the same without stamps)
  tail.u32(static_cast<uint32_t>(n));
  tail.boolean(eof(n));
  std::copy_n(tail.bytes().data(), 4, frame.begin() + static_cast<std::ptrdiff_t>(length_at));
  frame.append(tail.bytes(), 4, std::string::npos);
  return frame;
}

Result<FrameHeader> decodeHeader(std::string_view frame, std::string_view* payload) {
  static constexpr FrameRules kRules{"frame", kMaxFrame, kKnownFlags,
                                     [](uint16_t t) { return msgTypeName(t) != "unknown"; }};
  auto h = splitFrame(frame, kRules, payload);
  if (!h) return h.error();
  return FrameHeader{static_cast<MsgType>(h->type), h->flags, h->request_id};
}

size_t jobSpecBytes(const JobStartRequest& r) {
  size_t n = r.cwd.size();
  for (const auto& a : r.argv) n += a.size();
  for (const auto& e : r.env) n += e.size();
  return n;
}

size_t encodedSize(const JobStatus& s) {
  Writer w;
  put(w, s);
  return w.size();
}

JobListPacker::JobListPacker(uint32_t request_id) : request_id_(request_id) { open(); }

void JobListPacker::open() {
  Writer w;
  putHeader(w, MsgType::kJobListReply, 0, request_id_);
  w.u32(0);  // the count, set when the frame is closed
  frame_ = w.take();
  count_ = 0;
}

void JobListPacker::close(uint16_t flags, bool more) {
  Writer patch;
  patch.u16(flags);
  std::copy_n(patch.bytes().data(), 2, frame_.begin() + 2);  // u16 type | u16 flags | ...
  patch.clear();
  patch.u32(count_);
  std::copy_n(patch.bytes().data(), 4, frame_.begin() + static_cast<std::ptrdiff_t>(kHeaderSize));
  frame_.push_back(more ? 1 : 0);
  frames_.push_back(std::move(frame_));
}

void JobListPacker::add(const JobStatus& s) {
  scratch_.clear();
  put(scratch_, s);
  const size_t n = scratch_.size();
  if (count_ > 0 && (count_ >= kMaxListPerFrame || frame_.size() + n + 1 > kMaxFrame)) {
    close(kFlagMore, false);
    open();
  }
  frame_.append(scratch_.bytes());
  count_++;
}

std::vector<std::string> JobListPacker::finish(bool more) {
  close(0, more);
  return std::move(frames_);
}

namespace {

// The list's entry for a wire number, or null: one lookup serves names and permissions.
const MessageInfo* findMessage(uint16_t type) {
  for (const MessageInfo& m : kMessages) {
    if (static_cast<uint16_t>(m.type) == type) return &m;
  }
  return nullptr;
}

}  // namespace

std::string_view msgTypeName(uint16_t type) {
  const MessageInfo* m = findMessage(type);
  return m != nullptr ? m->name : "unknown";
}

bool isPermitted(uint16_t type, Direction dir) {
  const MessageInfo* m = findMessage(type);
  return m != nullptr && m->direction == dir;
}

std::string_view roleName(Role r) {
  switch (r) {
    case Role::kAdmin:
      return "admin";
    case Role::kUser:
      return "user";
    case Role::kViewer:
      return "viewer";
    case Role::kMetrics:
      return "metrics";
  }
  return "unknown";
}

std::optional<Role> roleFromName(std::string_view name) {
  if (name == "admin") return Role::kAdmin;
  if (name == "user") return Role::kUser;
  if (name == "viewer") return Role::kViewer;
  if (name == "metrics") return Role::kMetrics;
  return std::nullopt;
}

std::string_view jobOutcomeName(JobOutcome o) {
  switch (o) {
    case JobOutcome::kExited:
      return "exited";
    case JobOutcome::kKilled:
      return "killed";
    case JobOutcome::kFailed:
      return "failed";
    case JobOutcome::kOom:
      return "oom";
  }
  return "unknown";
}

std::string_view loginResultName(LoginResult r) {
  switch (r) {
    case LoginResult::kOk:
      return "ok";
    case LoginResult::kWrongPassword:
      return "wrong_password";
    case LoginResult::kUnknownUser:
      return "unknown_user";
    case LoginResult::kThrottled:
      return "throttled";
    case LoginResult::kUnavailable:
      return "unavailable";
  }
  return "unknown";
}

std::string_view eventTypeName(EventType t) {
  switch (t) {
    case EventType::kCreated:
      return "created";
    case EventType::kStarted:
      return "started";
    case EventType::kStopRequested:
      return "stop_requested";
    case EventType::kEnded:
      return "ended";
  }
  return "unknown";
}

std::string_view jobStateName(JobState s) {
  switch (s) {
    case JobState::kRunning:
      return "running";
    case JobState::kExited:
      return "exited";
    case JobState::kKilled:
      return "killed";
    case JobState::kFailed:
      return "failed";
  }
  return "unknown";
}

std::optional<JobState> jobStateFromName(std::string_view name) {
  for (auto s : {JobState::kRunning, JobState::kExited, JobState::kKilled, JobState::kFailed}) {
    if (jobStateName(s) == name) return s;
  }
  return std::nullopt;
}

}  // namespace jw::protocol
