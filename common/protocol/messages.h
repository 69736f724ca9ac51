// The ONE list of message types between the frontend (F) and the supervisor (S), with the frame
// header and every cap. Codec, logging names, the permitted-request table, the supervisor's
// dispatch table and the round-trip tests are all generated from JW_MESSAGES below. Compiled
// into both processes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace jw::protocol {

enum class Direction : uint8_t { kFrontendToSupervisor, kSupervisorToFrontend };

// X(name, number, direction, payload struct, what it is)
// Requests (F→S) carry a non-zero request id; every reply carries the id of its request.
// Every request but Ready, Login and Health carries the client's session token (never a user
// name): the supervisor alone hashes it and resolves session -> user -> role. Nothing secret
// flows S→F but a freshly minted token in LoginReply.
#define JW_MESSAGES(X)                                                                             \
  X(Ready, 1, kFrontendToSupervisor, Empty, "frontend finished its privilege drop, serving")       \
  X(Login, 2, kFrontendToSupervisor, LoginRequest, "check a password -> LoginReply|Error")         \
  X(SessionRevoke, 3, kFrontendToSupervisor, SessionEnd, "log out this session -> Ok|Error")       \
  X(JobStart, 4, kFrontendToSupervisor, JobStartRequest, "start a job -> JobStatus|Error")         \
  X(JobStop, 5, kFrontendToSupervisor, JobStopRequest, "stop a job -> JobStatus|Error")            \
  X(JobGet, 6, kFrontendToSupervisor, JobRef, "one job's status -> JobStatus|Error")               \
  X(JobList, 7, kFrontendToSupervisor, JobListRequest, "jobs -> JobListReply...|Error")            \
  X(OutputRead, 8, kFrontendToSupervisor, OutputReadRequest, "pull output -> OutputChunk|Error")   \
  X(Health, 9, kFrontendToSupervisor, Empty, "liveness -> HealthReply")                            \
  X(SessionGet, 10, kFrontendToSupervisor, SessionRef, "whose session -> SessionInfo|Error")       \
  X(JobWait, 11, kFrontendToSupervisor, JobWaitRequest,                                            \
    "status at end/timeout -> JobStatus|Error")                                                    \
  X(JobDelete, 12, kFrontendToSupervisor, JobDeleteRequest, "remove an ended job -> Ok|Error")     \
  X(ServerInfo, 13, kFrontendToSupervisor, SessionRef, "version facts -> ServerInfoReply|Error")   \
  X(MetricsGet, 14, kFrontendToSupervisor, SessionRef,                                             \
    "the supervisor's figures -> Metrics|Error")                                                   \
  X(LoginReply, 65, kSupervisorToFrontend, LoginReply, "a new session: token, role, expiry")       \
  X(Ok, 66, kSupervisorToFrontend, Empty, "request done, nothing to return")                       \
  X(ErrorReply, 67, kSupervisorToFrontend, ErrorReply, "request refused or failed")                \
  X(JobStatus, 68, kSupervisorToFrontend, JobStatus, "one job's status")                           \
  X(JobListReply, 69, kSupervisorToFrontend, JobListReply, "part of a list (kFlagMore: more)")     \
  X(OutputChunk, 70, kSupervisorToFrontend, OutputChunk, "bytes of a job's log")                   \
  X(HealthReply, 71, kSupervisorToFrontend, HealthReply, "supervisor health details")              \
  X(SessionInfo, 72, kSupervisorToFrontend, SessionInfo, "a session's user, role and expiry")      \
  X(ServerInfoReply, 73, kSupervisorToFrontend, ServerInfoReply, "cgroup backend and features")    \
  X(Metrics, 74, kSupervisorToFrontend, MetricsReply, "job, login and loop figures for /metrics")  \
  X(StdinOpen, 15, kFrontendToSupervisor, StdinOpenRequest,                                        \
    "begin a job's stdin upload -> Ok|Error")                                                      \
  X(StdinWrite, 16, kFrontendToSupervisor, StdinWriteRequest,                                      \
    "bytes for the job's stdin -> Ok once in its pipe|Error")                                      \
  X(StdinClose, 17, kFrontendToSupervisor, StdinCloseRequest, "end the upload -> JobStatus|Error") \
  X(EventsRead, 18, kFrontendToSupervisor, EventsReadRequest, "job events -> EventBatch|Error")    \
  X(EventBatch, 75, kSupervisorToFrontend, EventBatch, "job events after a sequence number")

enum class MsgType : uint16_t {
#define JW_ENUM(name, num, dir, payload, doc) k##name = (num),
  JW_MESSAGES(JW_ENUM)
#undef JW_ENUM
};

// Every message of the list with its direction, for compile-time checks (e.g. that the
// supervisor's dispatch table has exactly one handler per frontend-to-supervisor message).
struct MessageInfo {
  MsgType type;
  Direction direction;
  std::string_view name;
};
inline constexpr MessageInfo kMessages[] = {
#define JW_INFO(name, num, dir, payload, doc) {MsgType::k##name, Direction::dir, #name},
    JW_MESSAGES(JW_INFO)
#undef JW_INFO
};

// Name for logs; "unknown" for a number not in the list.
std::string_view msgTypeName(uint16_t type);
// True when `type` is in the list and flows in direction `dir`. The supervisor drops (and kills)
// a frontend that sends anything else: this is the permitted-request table.
bool isPermitted(uint16_t type, Direction dir);

// Frame: header then payload, one SOCK_SEQPACKET message per frame.
//   u16 type | u16 flags | u32 request_id | payload...
constexpr size_t kHeaderSize = 8;
constexpr uint16_t kFlagMore = 1;  // reply continues in another frame with the same request id
constexpr uint16_t kKnownFlags = kFlagMore;

// One SEQPACKET message is bounded by the socket send buffer (~208 KiB with Linux's default
// 212992-byte wmem_default). 192 KiB leaves headroom for skb overhead on every host.
constexpr size_t kMaxFrame = size_t{192} * 1024;

// Caps enforced by the decoder (and again by the supervisor's own validation).
constexpr size_t kMaxJobSpecBytes = size_t{128} * 1024;  // argv + env + cwd bytes of one job
constexpr size_t kMaxArgs = 4096;
constexpr size_t kMaxEnv = 1024;
constexpr size_t kMaxUserName = 64;
constexpr size_t kMaxPassword = 1024;     // the frontend refuses longer ones before asking
constexpr size_t kMaxRemoteAddress = 64;  // an IPv6 address with scope, as text
constexpr size_t kMaxJobId = 36;          // UUIDv4 text form
constexpr size_t kMaxMessage = 1024;      // error and detail text
constexpr size_t kMaxIoRules = 16;
constexpr size_t kMaxDevicePath = 256;
// Output moves in pulled chunks of at most this: 8 TLS records' worth, under kMaxFrame with
// room for the OutputChunk fields.
constexpr size_t kMaxChunk = size_t{128} * 1024;
constexpr uint32_t kMaxTailLines = 100000;  // GET .../logs?tail_lines= at most this
constexpr size_t kMaxListPerFrame = 64;     // statuses per JobListReply frame
constexpr uint32_t kMaxListLimit = 1000;    // statuses per page of GET /v1/jobs
constexpr size_t kMaxFeatures = 32;         // ServerInfoReply.features
constexpr size_t kMaxHealthDetails = 64;
constexpr size_t kTokenSize = 32;  // 256 random bits, minted by the supervisor
// A stdin upload moves in StdinWrite frames of at most this many bytes, and at most
// kStdinWindow of them are unanswered at once (the supervisor answers each once its bytes are in
// the job's pipe): what the supervisor holds of one upload is bounded by their product.
constexpr size_t kMaxStdinChunk = size_t{128} * 1024;
constexpr size_t kStdinWindow = 2;
// EventBatch.events: 64 events of at most ~1.3 KiB each stay far below kMaxFrame.
constexpr size_t kMaxEventsPerBatch = 64;
// Users with their own label in the job counters of /metrics (config metrics_max_users, capped
// here), plus one entry for all the others: the label's cardinality and the frame stay bounded.
constexpr size_t kMaxMetricsUsers = 1000;

}  // namespace jw::protocol
