// Payload structs of every message in messages.h and their field-by-field encoding.
// Used by both processes; decoding never throws and never trusts a length.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "common/protocol/messages.h"
#include "common/protocol/wire.h"
#include "common/result.h"

namespace jw::protocol {

// The first and last value of an enum whose values are contiguous: the decoder's range check.
// Each range sits next to its enum, so a new last value moves the check with it.
template <typename E>
struct EnumRange {
  E first;
  E last;
};

// kMetrics: a Prometheus scraper's account; its sessions open GET /metrics (and whoami), nothing
// else (policy::roleMayScrape, the supervisor's authenticate()).
enum class Role : uint8_t { kAdmin = 1, kUser = 2, kViewer = 3, kMetrics = 4 };
inline constexpr EnumRange<Role> kRoleRange{Role::kAdmin, Role::kMetrics};
std::string_view roleName(Role r);
std::optional<Role> roleFromName(std::string_view name);

enum class JobState : uint8_t { kRunning = 1, kExited = 2, kKilled = 3, kFailed = 4 };
inline constexpr EnumRange<JobState> kJobStateRange{JobState::kRunning, JobState::kFailed};
std::string_view jobStateName(JobState s);
std::optional<JobState> jobStateFromName(std::string_view name);

enum class OutputMode : uint8_t { kMerged = 0, kSeparate = 1 };
inline constexpr EnumRange<OutputMode> kOutputModeRange{OutputMode::kMerged, OutputMode::kSeparate};
enum class Stream : uint8_t { kStdout = 0, kStderr = 1 };  // kStdout is the merged log too
inline constexpr EnumRange<Stream> kStreamRange{Stream::kStdout, Stream::kStderr};
enum class Network : uint8_t { kDefault = 0, kNone = 1, kHost = 2 };
inline constexpr EnumRange<Network> kNetworkRange{Network::kDefault, Network::kHost};

// Error codes a reply can carry; the frontend maps them to HTTP statuses.
enum class ErrorCode : uint16_t {
  kBadRequest = 1,      // 400: malformed or invalid fields
  kUnauthorized = 2,    // 401: unknown user / session
  kForbidden = 3,       // 403: role does not allow it, or a limit over the user's maximum
  kNotFound = 4,        // 404: no such job, or not visible to this user
  kConflict = 5,        // 409: e.g. stopping a finished job
  kTooLarge = 6,        // 413: argv+env+cwd over kMaxJobSpecBytes
  kExecFailed = 7,      // 422: the program could not be executed; sys_errno says why
  kUnavailable = 8,     // 503: e.g. a requested cgroup controller is missing
  kInternal = 9,        // 500
  kLimitExceeded = 10,  // 403: a resource limit over the user's maximum, or too many jobs
  kThrottled = 11,      // 429 + Retry-After: too many failed logins (the supervisor's throttle)
  kBusy = 12,           // 503 + Retry-After: every password check slot is taken
  kInsufficientStorage = 13,  // 507: the state filesystem is under its reserve (state_reserve)
  kGone = 14,                 // 410: events asked for after a sequence number the ring lost
};
inline constexpr EnumRange<ErrorCode> kErrorCodeRange{ErrorCode::kBadRequest, ErrorCode::kGone};

struct Empty {
  bool operator==(const Empty&) const = default;
};

// A session token's 256 random bits. Its own type, so that nothing else (a stored hash above
// all) can be passed where the channel expects the credential itself.
struct Token {
  // Not an aggregate: a string literal (a user name, say) must not brace-initialise the bytes.
  Token() = default;
  explicit Token(const std::array<uint8_t, kTokenSize>& b) : bytes(b) {}

  std::array<uint8_t, kTokenSize> bytes{};

  bool operator==(const Token&) const = default;
};

// What every request names: the session it is made in.
struct SessionRef {
  Token token;

  bool operator==(const SessionRef&) const = default;
};

// Logout: the session to end, and the client's address for the audit event.
struct SessionEnd {
  Token token;
  std::string remote_address;  // as the frontend saw it; asserted, logged as REMOTE_ADDR

  bool operator==(const SessionEnd&) const = default;
};

struct LoginRequest {
  std::string user;
  std::string password;        // lives only in this message; both sides wipe it after use
  std::string remote_address;  // as the frontend saw it; asserted, so only a throttle key

  bool operator==(const LoginRequest&) const = default;
};

struct LoginReply {
  Token token;
  Role role = Role::kViewer;
  int64_t expires_at_ms = 0;  // Unix epoch milliseconds

  bool operator==(const LoginReply&) const = default;
};

struct SessionInfo {
  std::string user;
  Role role = Role::kViewer;
  int64_t expires_at_ms = 0;

  bool operator==(const SessionInfo&) const = default;
};

struct IoLimit {
  std::string device;                                                   // e.g. "/dev/vda"
  uint64_t read_bps = 0, write_bps = 0, read_iops = 0, write_iops = 0;  // 0: not limited

  bool operator==(const IoLimit&) const = default;
};
// 0 means "not asked for": the supervisor applies the configured default.
struct Limits {
  uint32_t cpu_millicores = 0;  // 500 = half a core
  uint64_t memory_bytes = 0;
  uint32_t pids = 0;
  std::vector<IoLimit> io;

  bool operator==(const Limits&) const = default;
};

struct JobStartRequest {
  Token token;  // the session; S derives user, role and run-as account itself
  std::vector<std::string> argv;
  std::vector<std::string> env;  // "KEY=VALUE"
  std::string cwd;               // empty: the run-as account's home, else "/"
  uint32_t timeout_ms = 0;       // 0: none (or the configured default)
  OutputMode output = OutputMode::kMerged;
  Limits limits;
  Network network = Network::kDefault;
  std::string remote_address;  // the client's, as the frontend saw it: audit only (REMOTE_ADDR)
  std::string name;            // "": none (names::validJobName)
  std::vector<std::string> labels;  // "key=value" (names::validLabel)
  bool stdin_pipe = false;          // fd 0 a pipe fed by PUT .../stdin, else /dev/null

  bool operator==(const JobStartRequest&) const = default;
};

struct JobRef {
  Token token;
  std::string job_id;

  bool operator==(const JobRef&) const = default;
};

struct JobStopRequest {
  Token token;
  std::string job_id;
  bool has_grace = false;
  uint32_t grace_ms = 0;
  std::string remote_address;  // the client's, as the frontend saw it: audit only (REMOTE_ADDR)

  bool operator==(const JobStopRequest&) const = default;
};

// Every filter given must match. Order: newest first by (created_at, id); a page starts after
// the job (after_created_ms, after_id) when after_id is set.
struct JobListRequest {
  Token token;
  bool all = false;
  uint8_t state = 0;                // 0: any, else a JobState
  std::string owner;                // "": any the caller may see
  std::string name;                 // "": any
  std::vector<std::string> labels;  // "key=value", each must be on the job
  int64_t since_ms = 0;             // created at or after; 0: any
  uint32_t limit = 0;               // 0: every match, else at most kMaxListLimit
  int64_t after_created_ms = 0;
  std::string after_id;  // "": from the newest

  bool operator==(const JobListRequest&) const = default;
};

// Answered with the job's status once it has ended, or after wait_ms with its status then.
struct JobWaitRequest {
  Token token;
  std::string job_id;
  uint32_t wait_ms = 0;  // 0: at once; jobworkerd answers within its parked-read time anyway

  bool operator==(const JobWaitRequest&) const = default;
};

struct JobDeleteRequest {
  Token token;
  std::string job_id;
  std::string remote_address;  // the client's, as the frontend saw it: audit only (REMOTE_ADDR)

  bool operator==(const JobDeleteRequest&) const = default;
};

struct ServerInfoReply {
  std::string cgroup_backend;  // "v1", "v2" or "none"

  bool operator==(const ServerInfoReply&) const = default;
};

struct OutputReadRequest {
  Token token;
  std::string job_id;
  Stream stream = Stream::kStdout;
  uint64_t offset = 0;
  uint32_t max_bytes = kMaxChunk;
  bool follow = false;  // wait for bytes past offset (or the job's end) before answering
  // Where the first read starts instead of `offset` (which must then be 0): the later of the
  // start of the tail_lines-th last line and the first line whose bytes arrived at or after
  // since_unix_ms (0: no such bound).
  bool tail = false;
  uint32_t tail_lines = 0;
  uint64_t since_unix_ms = 0;
  // Each line prefixed with the RFC 3339 time its first byte arrived and a space.
  bool timestamps = false;

  bool operator==(const OutputReadRequest&) const = default;
};

struct OutputChunk {
  uint64_t offset = 0;    // where the log bytes this chunk carries start
  std::string data;       // at most kMaxChunk bytes
  uint32_t raw_size = 0;  // log bytes it carries: data.size(), or less with timestamps
  bool eof = false;       // the job has ended and offset+raw_size is the end of the log

  bool operator==(const OutputChunk&) const = default;
};

// An OutputChunk frame whose data is read in place: read(dst, max) writes at most `max` log
// bytes at dst (the supervisor's pread, straight into the frame) and returns how many; eof(n)
// says whether those n bytes end the log. One allocation per frame, no copy of the data.
// Encodes exactly what encodeOutputChunk would for {offset, data, data.size(), eof}.
Result<std::string> encodeOutputChunkRead(uint32_t request_id, uint64_t offset, size_t max_bytes,
                                          const std::function<Result<size_t>(char*, size_t)>& read,
                                          const std::function<bool(size_t)>& eof);

struct Usage {
  bool has_cpu = false, has_memory = false, has_io = false, has_pids = false;
  double cpu_seconds = 0;
  uint64_t memory_peak_bytes = 0, io_read_bytes = 0, io_write_bytes = 0, pids_peak = 0;

  bool operator==(const Usage&) const = default;
};

struct JobStatus {
  std::string id;
  std::string owner;
  std::vector<std::string> command;
  JobState state = JobState::kRunning;
  int32_t pid = 0;
  bool has_exit_code = false;
  int32_t exit_code = 0;
  int32_t signal = 0;      // 0: none
  std::string stopped_by;  // "" (null), a user name, "timeout" or "shutdown"
  std::string error;       // "" (null) unless state is kFailed
  int64_t created_at_ms = 0, started_at_ms = 0, ended_at_ms = 0;  // 0: null
  OutputMode output = OutputMode::kMerged;
  uint64_t output_bytes = 0, output_dropped_bytes = 0;
  bool output_truncated = false;
  uint64_t stderr_bytes = 0, stderr_dropped_bytes = 0;
  bool stderr_truncated = false;
  // Why a log stopped storing before its cap ("no space left on device at byte 12288"); "": it
  // did not.
  std::string output_error, stderr_error;
  bool oom_killed = false;
  Limits limits;  // what was applied
  Usage usage;
  std::vector<std::string> isolation;  // e.g. "pid", "mount", "net", "uts", "ipc", "cgroup"
  std::string run_as;                  // the Unix account the job runs as
  std::string name;                    // "": none
  std::vector<std::string> labels;     // "key=value"
  bool stdin_pipe = false;             // started with "stdin": "pipe"
  uint64_t stdin_bytes = 0;            // written into the job's stdin pipe so far
  bool stdin_complete = false;         // the upload ended with the whole body (EOF after it)

  bool operator==(const JobStatus&) const = default;
};

struct JobListReply {
  std::vector<JobStatus> jobs;  // newest first; the supervisor packs frames by size
  bool more = false;            // last frame: the page is full and more jobs match after it

  bool operator==(const JobListReply&) const = default;
};

struct ErrorReply {
  ErrorCode code = ErrorCode::kInternal;
  int32_t sys_errno = 0;
  std::string message;
  uint32_t retry_after_s = 0;  // kThrottled, kBusy: the Retry-After to send; else 0

  bool operator==(const ErrorReply&) const = default;
};

// PUT /v1/jobs/{id}/stdin: the upload begins (StdinOpen), moves in StdinWrite frames (each
// answered Ok once its bytes are in the job's pipe, at most kStdinWindow unanswered) and ends
// with StdinClose (the pipe is closed: EOF for the job).
struct StdinOpenRequest {
  Token token;
  std::string job_id;
  std::string remote_address;  // the client's, as the frontend saw it: audit only
  bool operator==(const StdinOpenRequest&) const = default;
};
struct StdinWriteRequest {
  Token token;
  std::string job_id;
  std::string data;  // 1 to kMaxStdinChunk bytes
  bool operator==(const StdinWriteRequest&) const = default;
};
struct StdinCloseRequest {
  Token token;
  std::string job_id;
  bool complete = false;  // the client sent the whole body; false: cut short (gone, timeout)
  bool operator==(const StdinCloseRequest&) const = default;
};

// One change in a job's life, as GET /v1/events streams it.
enum class EventType : uint8_t {
  kCreated = 1,        // the job's record exists
  kStarted = 2,        // its command runs
  kStopRequested = 3,  // a stop (a user, "timeout", "shutdown": stopped_by) was asked for
  kEnded = 4,          // final: state exited, killed or failed, with its status
};
inline constexpr EnumRange<EventType> kEventTypeRange{EventType::kCreated, EventType::kEnded};
std::string_view eventTypeName(EventType t);
struct JobEvent {
  uint64_t seq = 0;  // monotonic, from the supervisor's ring
  int64_t time_ms = 0;
  EventType type = EventType::kCreated;
  std::string job_id, owner, name;
  JobState state = JobState::kRunning;
  bool has_exit_code = false;
  int32_t exit_code = 0;
  int32_t signal = 0;
  std::string stopped_by;
  std::string error;
  bool operator==(const JobEvent&) const = default;
};
struct EventsReadRequest {
  Token token;
  bool has_since = false;  // false: from now on (follow), or every event the ring holds
  uint64_t since = 0;      // events with a larger seq
  std::string job_id;      // "": every job the caller may see
  bool follow = false;     // none yet: wait (at most the parked-read time) for the next
  bool operator==(const EventsReadRequest&) const = default;
};
struct EventBatch {
  std::vector<JobEvent> events;  // at most kMaxEventsPerBatch, in seq order
  uint64_t next_since = 0;       // ask again with this since (past events filtered out too)
  bool operator==(const EventBatch&) const = default;
};

struct HealthReply {
  bool degraded = false;             // serving, but new jobs are refused (e.g. disk under reserve)
  std::vector<std::string> details;  // e.g. "cgroup backend: v1", "missing controller: io"

  bool operator==(const HealthReply&) const = default;
};

// --- /metrics: the supervisor's figures (the frontend renders them with its own) ---------------

// How a job ended, for the counters: kOom whenever the kernel's OOM killer hit its cgroup.
enum class JobOutcome : uint8_t { kExited = 0, kKilled = 1, kFailed = 2, kOom = 3 };
inline constexpr size_t kJobOutcomes = 4;
std::string_view jobOutcomeName(JobOutcome o);
// A login's result as /metrics counts it: never a user name or an address.
enum class LoginResult : uint8_t {
  kOk = 0,
  kWrongPassword = 1,
  kUnknownUser = 2,
  kThrottled = 3,
  kUnavailable = 4  // every check slot busy, or the verifier restarting
};
inline constexpr size_t kLoginResults = 5;
std::string_view loginResultName(LoginResult r);

// Upper bounds (seconds) of histogram buckets, one list per histogram, shared by the process
// that observes and the one that renders; the last bucket (+Inf) is implied.
inline constexpr double kStartLatencyBuckets[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                                  0.1,   0.25,   0.5,   1,    2.5,   5};
inline constexpr double kLoopLagBuckets[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                             0.05,   0.1,   0.25,   0.5,   1,    5};
inline constexpr size_t kMaxHistogramBuckets = 32;

// Counts per bucket (not cumulative; the last is +Inf) and the sum of the observed values.
struct Histogram {
  std::vector<uint64_t> buckets;
  uint64_t sum_us = 0;

  bool operator==(const Histogram&) const = default;
};

struct UserJobCounts {
  std::string user;  // "" for every user past the cap together (rendered as "(other)")
  uint64_t starts = 0;
  std::array<uint64_t, kJobOutcomes> ends{};  // by JobOutcome
  uint64_t memory_bytes = 0;                  // of the user's running jobs' cgroups, now

  bool operator==(const UserJobCounts&) const = default;
};

struct MetricsReply {
  std::array<uint64_t, 4> jobs_by_state{};  // JobState - 1: running, exited, killed, failed
  std::vector<UserJobCounts> users;         // at most kMaxMetricsUsers + 1
  Histogram start_latency;                  // kStartLatencyBuckets: request to running
  Histogram loop_lag;                       // kLoopLagBuckets: how late the loop's probe ran
  uint64_t output_stored_bytes = 0, output_dropped_bytes = 0;
  std::array<uint64_t, kLoginResults> logins{};  // by LoginResult
  uint64_t frontend_restarts = 0, protocol_violations = 0;
  bool has_state_free = false;
  uint64_t state_free_bytes = 0;  // available to jobworkerd on the state filesystem
  // What every job's cgroup holds together now (the jobs' parent cgroup).
  bool has_jobs_memory = false, has_jobs_cpu = false, has_jobs_pids = false;
  uint64_t jobs_memory_bytes = 0, jobs_cpu_us = 0, jobs_pids = 0;

  bool operator==(const MetricsReply&) const = default;
};

struct FrameHeader {
  MsgType type;
  uint16_t flags = 0;
  uint32_t request_id = 0;

  bool operator==(const FrameHeader&) const = default;
};

// Encoders append the header and payload into one frame.
#define JW_DECLARE_CODEC(name, num, dir, payload, doc)                                 \
  std::string encode##name(uint32_t request_id, const payload& p, uint16_t flags = 0); \
  Result<payload> decode##name##Payload(std::string_view payload_bytes);
JW_MESSAGES(JW_DECLARE_CODEC)
#undef JW_DECLARE_CODEC

// Splits a received frame into header and payload view; checks size, type and flags.
// The payload still has to be decoded with the decode<Name>Payload matching header.type.
Result<FrameHeader> decodeHeader(std::string_view frame, std::string_view* payload);

// Size in bytes of argv + env + cwd as the kMaxJobSpecBytes cap counts it.
size_t jobSpecBytes(const JobStartRequest& r);

// Encoded size of one JobStatus payload.
size_t encodedSize(const JobStatus& s);

// The frames of one JobListReply, packed as the statuses come: each status is encoded once,
// straight into its frame, which holds at most kMaxListPerFrame statuses and kMaxFrame bytes.
// Every frame but the last carries kFlagMore and more=false; the bytes of each frame are exactly
// encodeJobListReply's for the statuses it holds.
class JobListPacker {
 public:
  explicit JobListPacker(uint32_t request_id);
  void add(const JobStatus& s);
  // The frames, the last one with `more` (the page is full and more jobs match).
  std::vector<std::string> finish(bool more);

 private:
  void open();
  void close(uint16_t flags, bool more);

  uint32_t request_id_;
  std::string frame_;
  uint32_t count_ = 0;
  Writer scratch_;
  std::vector<std::string> frames_;
};

}  // namespace jw::protocol
