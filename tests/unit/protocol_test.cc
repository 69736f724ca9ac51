// Unit tests for the frontend<->supervisor codec: a round trip of every message generated from
// JW_MESSAGES, enum ranges, and truncated, oversized and garbage frames. Runs in the unit suite,
// no privileges.
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <random>

#include "common/protocol/channel.h"
#include "common/protocol/codec.h"
#include "common/protocol/messages.h"
#include "common/protocol/wire.h"

namespace jw::protocol {
namespace {

JobStatus sampleStatus() {
  JobStatus s;
  s.id = "3f2a1b4c-5d6e-4f70-8a9b-0c1d2e3f4a5b";
  s.owner = "alice";
  s.command = {"sh", "-c", "echo hi"};
  s.state = JobState::kKilled;
  s.pid = 4242;
  s.has_exit_code = false;
  s.exit_code = 3;  // the codec carries it whatever has_exit_code says
  s.signal = 9;
  s.stopped_by = "bob";
  s.error = "not really failed";
  s.created_at_ms = 1700000000123;
  s.started_at_ms = 1700000000124;
  s.ended_at_ms = 1700000001000;
  s.output = OutputMode::kSeparate;
  s.output_bytes = 10;
  s.output_dropped_bytes = 5;
  s.output_truncated = true;
  s.stderr_bytes = 7;
  s.stderr_dropped_bytes = 6;
  s.stderr_truncated = true;
  s.output_error = "no space left on device at byte 12288";
  s.stderr_error = "input/output error at byte 7";
  s.oom_killed = true;
  s.limits.cpu_millicores = 500;
  s.limits.memory_bytes = 256 << 20;
  s.limits.pids = 64;
  s.limits.io.push_back({"/dev/vda", 1, 2, 3, 4});
  s.usage.has_cpu = true;
  s.usage.cpu_seconds = 1.25;
  s.usage.has_memory = true;
  s.usage.memory_peak_bytes = 12345;
  s.usage.has_io = true;
  s.usage.io_read_bytes = 111;
  s.usage.io_write_bytes = 222;
  s.usage.has_pids = true;
  s.usage.pids_peak = 17;
  s.isolation = {"pid", "net"};
  s.run_as = "nobody";
  s.name = "web";
  s.labels = {"app=web", "env=prod"};
  s.stdin_pipe = true;
  s.stdin_bytes = 1ULL << 33;
  s.stdin_complete = true;
  return s;
}

// One sample value per payload type of JW_MESSAGES, fields away from their defaults where the
// type allows: the round trips below compare whole messages, so a field the codec drops shows.
// A payload type without a sample does not compile.
template <typename T>
T sample();
template <>
Empty sample<Empty>() {
  return {};
}
Token sampleToken(uint8_t fill) {
  Token t;
  t.bytes.fill(fill);
  t.bytes[31] = 0x01;
  return t;
}
template <>
SessionRef sample<SessionRef>() {
  return {sampleToken(0xab)};
}
template <>
SessionEnd sample<SessionEnd>() {
  return {sampleToken(0xac), "192.0.2.7"};
}
template <>
LoginRequest sample<LoginRequest>() {
  return {"alice", std::string("p\0ss word", 9), "2001:db8::1"};
}
template <>
LoginReply sample<LoginReply>() {
  return {sampleToken(0xcd), Role::kUser, 1234567};
}
template <>
SessionInfo sample<SessionInfo>() {
  return {"alice", Role::kAdmin, 7654321};
}
template <>
JobStartRequest sample<JobStartRequest>() {
  JobStartRequest js;
  js.token = sampleToken(0x11);
  js.argv = {"/bin/echo", "a b", std::string("\xff\x01", 2)};
  js.env = {"A=1", "B="};
  js.cwd = "/tmp";
  js.timeout_ms = 5000;
  js.output = OutputMode::kSeparate;
  js.limits = {250, 1 << 30, 3, {{"/dev/vda", 1, 2, 3, 4}, {"/dev/vdb", 5, 0, 0, 6}}};
  js.network = Network::kHost;
  js.remote_address = "2001:db8::2";
  js.name = "nightly";
  js.labels = {"team=infra", "tier="};
  js.stdin_pipe = true;
  return js;
}
template <>
JobStopRequest sample<JobStopRequest>() {
  return {sampleToken(0x22), "id", true, 1500, "198.51.100.3"};
}
template <>
JobRef sample<JobRef>() {
  return {sampleToken(0x33), "xyz"};
}
template <>
JobListRequest sample<JobListRequest>() {
  return {
      sampleToken(0x44), true,          2,   "bob",         "nightly",
      {"team=infra"},    1733000000000, 250, 1733000000123, "00000000-0000-4000-8000-000000000000"};
}
template <>
JobWaitRequest sample<JobWaitRequest>() {
  return {sampleToken(0x66), "xyz", 15000};
}
template <>
JobDeleteRequest sample<JobDeleteRequest>() {
  return {sampleToken(0x77), "xyz", "192.0.2.9"};
}
template <>
ServerInfoReply sample<ServerInfoReply>() {
  return {"v2"};
}
template <>
OutputReadRequest sample<OutputReadRequest>() {
  return {sampleToken(0x55), "xyz", Stream::kStderr, 1ULL << 40, 4096, true, true, 25,
          1796180000000,     true};
}
template <>
ErrorReply sample<ErrorReply>() {
  return {ErrorCode::kThrottled, 2, "no such file", 17};
}
template <>
JobStatus sample<JobStatus>() {
  return sampleStatus();
}
template <>
JobListReply sample<JobListReply>() {
  JobStatus other = sampleStatus();
  other.id = "00000000-0000-4000-8000-000000000000";
  other.state = JobState::kExited;
  return {{sampleStatus(), other, sampleStatus()}, true};
}
template <>
OutputChunk sample<OutputChunk>() {
  return {99, std::string(kMaxChunk, 'x'), static_cast<uint32_t>(kMaxChunk) - 5, true};
}
template <>
HealthReply sample<HealthReply>() {
  return {true, {"cgroups: v1", "missing controller: io"}};
}
template <>
StdinOpenRequest sample<StdinOpenRequest>() {
  return {sampleToken(0x88), "xyz", "192.0.2.10"};
}
template <>
StdinWriteRequest sample<StdinWriteRequest>() {
  return {sampleToken(0x99), "xyz", std::string(kMaxStdinChunk, '\0')};
}
template <>
StdinCloseRequest sample<StdinCloseRequest>() {
  return {sampleToken(0xaa), "xyz", true};
}
template <>
EventsReadRequest sample<EventsReadRequest>() {
  return {sampleToken(0xbb), true, 1ULL << 50, "xyz", true};
}
template <>
EventBatch sample<EventBatch>() {
  JobEvent e{
      7,     1700000000123, EventType::kEnded, "id", "alice", "web", JobState::kExited, true, 3, 0,
      "bob", "oops"};
  JobEvent f = e;
  f.seq = 9;
  f.type = EventType::kStopRequested;
  return {{e, f}, 12};
}
template <>
MetricsReply sample<MetricsReply>() {
  MetricsReply m;
  m.jobs_by_state = {1, 2, 3, 4};
  m.users = {{"alice", 5, {1, 2, 3, 4}, 1 << 20}, {"", 6, {0, 0, 7, 0}, 0}};
  m.start_latency.buckets.assign(std::size(kStartLatencyBuckets) + 1, 0);
  m.start_latency.buckets[2] = 9;
  m.start_latency.sum_us = 12345;
  m.loop_lag.buckets.assign(std::size(kLoopLagBuckets) + 1, 1);
  m.loop_lag.sum_us = 77;
  m.output_stored_bytes = 1 << 20;
  m.output_dropped_bytes = 3;
  m.logins = {10, 11, 12, 13, 14};
  m.frontend_restarts = 2;
  m.protocol_violations = 1;
  m.has_state_free = true;
  m.state_free_bytes = 5ULL << 30;
  m.has_jobs_memory = m.has_jobs_pids = true;
  m.jobs_memory_bytes = 4096;
  m.jobs_pids = 17;
  m.jobs_cpu_us = 99;
  return m;
}

// One round-trip test per message of JW_MESSAGES: encode the sample of its payload type, then
// the header and the whole payload must come back as sent.
#define JW_ROUND_TRIP_TEST(name, num, dir, payload, doc)          \
  TEST(CodecRoundTrip, name) {                                    \
    const payload sent = sample<payload>();                       \
    const std::string frame = encode##name(77, sent);             \
    std::string_view bytes;                                       \
    auto h = decodeHeader(frame, &bytes);                         \
    ASSERT_TRUE(h.ok()) << h.error().message;                     \
    EXPECT_EQ(h.value(), (FrameHeader{MsgType::k##name, 0, 77})); \
    auto got = decode##name##Payload(bytes);                      \
    ASSERT_TRUE(got.ok()) << got.error().message;                 \
    EXPECT_EQ(got.value(), sent);                                 \
  }
JW_MESSAGES(JW_ROUND_TRIP_TEST)
#undef JW_ROUND_TRIP_TEST

TEST(Codec, FlagsSurviveAndUnknownFlagsFail) {
  std::string f = encodeJobListReply(5, {}, kFlagMore);
  std::string_view payload;
  auto h = decodeHeader(f, &payload);
  ASSERT_TRUE(h.ok());
  EXPECT_EQ(h->flags, kFlagMore);
  f[2] = 0x04;  // an undefined flag bit
  EXPECT_FALSE(decodeHeader(f, &payload).ok());
}

// The list packer splits by count and by size, and each frame is byte for byte what
// encodeJobListReply makes of the statuses it holds.
TEST(Codec, JobListPackerMatchesEncodeJobListReply) {
  std::vector<JobStatus> all;
  for (size_t i = 0; i < 2 * kMaxListPerFrame + 7; i++) all.push_back(sampleStatus());
  JobStatus big = sampleStatus();
  big.command = {std::string(kMaxFrame / 3, 'a')};  // three of these cannot share a frame
  for (int i = 0; i < 5; i++) all.push_back(big);
  JobListPacker packer(77);
  for (const auto& s : all) packer.add(s);
  std::vector<std::string> frames = packer.finish(true);
  size_t next = 0;
  for (size_t f = 0; f < frames.size(); f++) {
    std::string_view payload;
    auto h = decodeHeader(frames[f], &payload);
    ASSERT_TRUE(h.ok()) << h.error().message;
    EXPECT_EQ(h->request_id, 77u);
    const bool last = f + 1 == frames.size();
    EXPECT_EQ(h->flags, last ? 0 : kFlagMore);
    auto part = decodeJobListReplyPayload(payload);
    ASSERT_TRUE(part.ok()) << part.error().message;
    EXPECT_EQ(part->more, last);
    ASSERT_LE(next + part->jobs.size(), all.size());
    JobListReply expect{{all.begin() + static_cast<std::ptrdiff_t>(next),
                         all.begin() + static_cast<std::ptrdiff_t>(next + part->jobs.size())},
                        last};
    EXPECT_EQ(frames[f], encodeJobListReply(77, expect, last ? 0 : kFlagMore));
    EXPECT_LE(frames[f].size(), kMaxFrame);
    next += part->jobs.size();
  }
  EXPECT_EQ(next, all.size());
  EXPECT_EQ(frames.size(), 5u);  // 64, 64, 7 + 2 big, 2 big, 1 big
}

TEST(Codec, JobListPackerOfNothingIsOneEmptyFrame) {
  std::vector<std::string> frames = JobListPacker(3).finish(false);
  ASSERT_EQ(frames.size(), 1u);
  EXPECT_EQ(frames[0], encodeJobListReply(3, {}, 0));
}

TEST(Codec, EveryTruncationOfEveryMessageFails) {
  JobStartRequest js;
  js.token = sampleToken(0x66);
  js.argv = {"echo", "x"};
  js.env = {"A=B"};
  std::vector<std::string> frames = {
      encodeJobStart(1, js),
      encodeJobStatus(1, sampleStatus()),
      encodeOutputChunk(1, OutputChunk{1, "abc", 3, false}),
      encodeLogin(1, LoginRequest{"a", "pw", "127.0.0.1"}),
      encodeLoginReply(1, sample<LoginReply>()),
      encodeErrorReply(1, ErrorReply{ErrorCode::kNotFound, 0, "nope", 0}),
  };
  for (const auto& frame : frames) {
    std::string_view payload;
    auto h = decodeHeader(frame, &payload);
    ASSERT_TRUE(h.ok());
    for (size_t cut = 0; cut < payload.size(); cut++) {
      std::string_view p = payload.substr(0, cut);
      bool ok = true;
      switch (h->type) {
        case MsgType::kJobStart:
          ok = decodeJobStartPayload(p).ok();
          break;
        case MsgType::kJobStatus:
          ok = decodeJobStatusPayload(p).ok();
          break;
        case MsgType::kOutputChunk:
          ok = decodeOutputChunkPayload(p).ok();
          break;
        case MsgType::kLogin:
          ok = decodeLoginPayload(p).ok();
          break;
        case MsgType::kLoginReply:
          ok = decodeLoginReplyPayload(p).ok();
          break;
        case MsgType::kErrorReply:
          ok = decodeErrorReplyPayload(p).ok();
          break;
        default:
          break;
      }
      EXPECT_FALSE(ok) << msgTypeName(static_cast<uint16_t>(h->type)) << " cut at " << cut;
    }
    // One trailing byte is as wrong as one missing byte.
    std::string longer(payload);
    longer.push_back('\0');
    if (h->type == MsgType::kJobStart) {
      EXPECT_FALSE(decodeJobStartPayload(longer).ok());
    }
    if (h->type == MsgType::kJobStatus) {
      EXPECT_FALSE(decodeJobStatusPayload(longer).ok());
    }
  }
}

TEST(Codec, HeaderRejectsShortOversizedAndUnknown) {
  std::string_view payload;
  EXPECT_FALSE(decodeHeader("", &payload).ok());
  EXPECT_FALSE(decodeHeader(std::string(7, '\0'), &payload).ok());
  std::string unknown = encodeOk(1, {});
  unknown[0] = 0x7f;
  unknown[1] = 0x7f;
  EXPECT_FALSE(decodeHeader(unknown, &payload).ok());
  std::string huge = encodeOk(1, {}) + std::string(kMaxFrame, 'x');
  EXPECT_FALSE(decodeHeader(huge, &payload).ok());
}

TEST(Codec, ForgedLengthsAndCountsFailWithoutAllocating) {
  const Token t = sampleToken(0x88);
  Writer w;
  w.raw(t.bytes.data(), t.bytes.size());
  w.u32(0xffffffff);  // job id length
  EXPECT_FALSE(decodeJobGetPayload(w.bytes()).ok());

  Writer w2;
  w2.raw(t.bytes.data(), t.bytes.size());
  w2.u32(4000);  // argv count within cap but far beyond the bytes present
  EXPECT_FALSE(decodeJobStartPayload(w2.bytes()).ok());

  Writer w3;
  w3.raw(t.bytes.data(), t.bytes.size());
  w3.u32(static_cast<uint32_t>(kMaxArgs + 1));
  EXPECT_FALSE(decodeJobStartPayload(w3.bytes()).ok());
}

TEST(Codec, OutOfRangeEnumsFail) {
  const Token t = sampleToken(0x99);
  Writer w;
  w.raw(t.bytes.data(), t.bytes.size());
  w.boolean(false);
  w.u8(9);  // state filter
  EXPECT_FALSE(decodeJobListPayload(w.bytes()).ok());

  Writer w2;
  w2.raw(t.bytes.data(), t.bytes.size());
  w2.u8(2);  // boolean must be 0 or 1
  w2.u8(0);
  EXPECT_FALSE(decodeJobListPayload(w2.bytes()).ok());

  OutputReadRequest bad{sampleToken(0x77), "x", Stream::kStdout, 0, 0, false};  // max_bytes 0
  std::string f = encodeOutputRead(1, bad);
  EXPECT_FALSE(decodeOutputReadPayload(std::string_view(f).substr(kHeaderSize)).ok());
}

// The decoder's range checks come from the EnumRange next to each enum: its last value decodes,
// one past it does not.
TEST(Codec, EnumRangesBoundTheDecoder) {
  auto payloadOf = [](const std::string& frame) {
    return std::string_view(frame).substr(kHeaderSize);
  };
  auto past = [](auto range) {
    return static_cast<decltype(range.last)>(static_cast<int>(range.last) + 1);
  };
  LoginReply lr = sample<LoginReply>();
  lr.role = kRoleRange.last;
  std::string f = encodeLoginReply(1, lr);
  EXPECT_TRUE(decodeLoginReplyPayload(payloadOf(f)).ok());
  lr.role = past(kRoleRange);
  f = encodeLoginReply(1, lr);
  EXPECT_FALSE(decodeLoginReplyPayload(payloadOf(f)).ok());

  JobStatus js = sampleStatus();
  js.state = kJobStateRange.last;
  f = encodeJobStatus(1, js);
  EXPECT_TRUE(decodeJobStatusPayload(payloadOf(f)).ok());
  js.state = past(kJobStateRange);
  f = encodeJobStatus(1, js);
  EXPECT_FALSE(decodeJobStatusPayload(payloadOf(f)).ok());

  ErrorReply er = sample<ErrorReply>();
  er.code = kErrorCodeRange.last;
  f = encodeErrorReply(1, er);
  EXPECT_TRUE(decodeErrorReplyPayload(payloadOf(f)).ok());
  er.code = past(kErrorCodeRange);
  f = encodeErrorReply(1, er);
  EXPECT_FALSE(decodeErrorReplyPayload(payloadOf(f)).ok());

  JobStartRequest start = sample<JobStartRequest>();
  start.network = past(kNetworkRange);
  f = encodeJobStart(1, start);
  EXPECT_FALSE(decodeJobStartPayload(payloadOf(f)).ok());
  start = sample<JobStartRequest>();
  start.output = past(kOutputModeRange);
  f = encodeJobStart(1, start);
  EXPECT_FALSE(decodeJobStartPayload(payloadOf(f)).ok());

  OutputReadRequest read = sample<OutputReadRequest>();
  read.stream = past(kStreamRange);
  f = encodeOutputRead(1, read);
  EXPECT_FALSE(decodeOutputReadPayload(payloadOf(f)).ok());

  JobListRequest list = sample<JobListRequest>();
  list.state = static_cast<uint8_t>(kJobStateRange.last);
  f = encodeJobList(1, list);
  EXPECT_TRUE(decodeJobListPayload(payloadOf(f)).ok());
  list.state = static_cast<uint8_t>(past(kJobStateRange));
  f = encodeJobList(1, list);
  EXPECT_FALSE(decodeJobListPayload(payloadOf(f)).ok());
}

TEST(Codec, JobSpecCapIsEnforced) {
  JobStartRequest js;
  js.argv = {"echo", std::string(kMaxJobSpecBytes, 'a')};  // over by 4 bytes ("echo")
  std::string f = encodeJobStart(1, js);
  EXPECT_FALSE(decodeJobStartPayload(std::string_view(f).substr(kHeaderSize)).ok());
  js.argv = {"echo", std::string(kMaxJobSpecBytes - 4, 'a')};
  f = encodeJobStart(1, js);
  EXPECT_TRUE(decodeJobStartPayload(std::string_view(f).substr(kHeaderSize)).ok());
  EXPECT_LE(f.size(), kMaxFrame);
}

TEST(Codec, RandomGarbageNeverCrashes) {
  std::mt19937 rng(12345);
  for (int i = 0; i < 20000; i++) {
    std::string frame(rng() % 300, '\0');
    for (auto& c : frame) c = static_cast<char>(rng());
    if (frame.size() >= 2 && i % 2 == 0) {  // aim at real types half the time
      auto t = static_cast<uint16_t>(kMessages[rng() % std::size(kMessages)].type);
      frame[0] = static_cast<char>(t & 0xff);
      frame[1] = static_cast<char>(t >> 8);
    }
    std::string_view payload;
    auto h = decodeHeader(frame, &payload);
    if (!h.ok()) continue;
    (void)decodeJobStartPayload(payload).ok();
    (void)decodeJobStatusPayload(payload).ok();
    (void)decodeLoginPayload(payload).ok();
    (void)decodeJobListReplyPayload(payload).ok();
  }
  SUCCEED();
}

// The supervisor's in-place chunk (pread straight into the frame) is byte for byte what the
// general encoder makes of the same chunk, short reads and the eof flag included.
TEST(Codec, OutputChunkReadInPlaceEncodesLikeOutputChunk) {
  std::string log(kMaxChunk + 1000, '\0');
  for (size_t i = 0; i < log.size(); i++) log[i] = static_cast<char>('a' + i % 26);
  for (size_t asked : {size_t{1}, size_t{4096}, kMaxChunk - 9, kMaxChunk, kMaxChunk + 50}) {
    for (size_t available : {size_t{0}, size_t{10}, asked, log.size()}) {
      auto frame = encodeOutputChunkRead(
          42, 7, asked,
          [&](char* dst, size_t max) -> Result<size_t> {
            size_t n = std::min(max, available);
            std::copy_n(log.data(), n, dst);
            return n;
          },
          [&](size_t n) { return n == available; });
      ASSERT_TRUE(frame.ok());
      size_t n = std::min({asked, available, kMaxChunk});
      OutputChunk expected{7, log.substr(0, n), static_cast<uint32_t>(n), n == available};
      EXPECT_EQ(frame.value(), encodeOutputChunk(42, expected)) << asked << " " << available;
    }
  }
  auto failed = encodeOutputChunkRead(
      1, 0, 10, [](char*, size_t) -> Result<size_t> { return Error{"read failed"}; },
      [](size_t) { return false; });
  EXPECT_FALSE(failed.ok());
}

TEST(Channel, MaxFrameFitsADefaultSeqpacketBuffer) {
  int fds[2];
  ASSERT_TRUE(makeChannelPair(fds).ok());
  std::string frame = encodeOk(1, {}) + std::string(kMaxFrame - kHeaderSize, 'z');
  ASSERT_EQ(frame.size(), kMaxFrame);
  Status s = sendFrame(fds[1], frame);
  ASSERT_TRUE(s.ok()) << s.error().message;
  std::string got;
  auto r = recvFrame(fds[0], &got);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(*r, RecvStatus::kFrame);
  EXPECT_EQ(got, frame);
  EXPECT_FALSE(sendFrame(fds[1], frame + "x").ok());
  close(fds[1]);
  r = recvFrame(fds[0], &got);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(*r, RecvStatus::kClosed);
  close(fds[0]);
}

TEST(Channel, OversizedPeerMessageIsAnErrorNotATruncation) {
  int fds[2];
  ASSERT_TRUE(makeChannelPair(fds).ok());
  std::string big(kMaxFrame + 100, 'q');
  ASSERT_EQ(send(fds[1], big.data(), big.size(), 0), static_cast<ssize_t>(big.size()));
  std::string got;
  EXPECT_FALSE(recvFrame(fds[0], &got).ok());
  close(fds[0]);
  close(fds[1]);
}

// The supervisor's read path keeps no credential after a frame is handled: a Login's password
// is gone from the buffer once the next frame arrives, when wiped, and a refused oversized
// message is not left behind either. The storage is reused, so the old bytes can be inspected.
TEST(Channel, ReceiveBufferWipesEveryFrameItHeld) {
  int fds[2];
  ASSERT_TRUE(makeChannelPair(fds).ok());
  const std::string password = "correct horse battery staple, long enough to see";
  std::string login = encodeLogin(7, LoginRequest{"alice", password, "192.0.2.1"});
  ReceiveBuffer buffer;
  ASSERT_TRUE(sendFrame(fds[1], login).ok());
  ASSERT_EQ(buffer.receive(fds[0]).value(), RecvStatus::kFrame);
  ASSERT_EQ(buffer.frame(), login);
  const char* storage = buffer.frame().data();
  const std::string_view held(storage, login.size());
  ASSERT_NE(held.find(password), std::string_view::npos);

  // A shorter frame: the Login's tail, where the password sat, is zero, not left over.
  std::string health = encodeHealth(8, {});
  ASSERT_LT(health.size(), login.size());
  ASSERT_TRUE(sendFrame(fds[1], health).ok());
  ASSERT_EQ(buffer.receive(fds[0]).value(), RecvStatus::kFrame);
  ASSERT_EQ(buffer.frame().data(), storage) << "the buffer must reuse its storage";
  EXPECT_EQ(held.find(password), std::string_view::npos);
  EXPECT_EQ(held.substr(health.size()).find_first_not_of('\0'), std::string_view::npos);

  // wipe() zeroes the frame it holds.
  ASSERT_TRUE(sendFrame(fds[1], login).ok());
  ASSERT_EQ(buffer.receive(fds[0]).value(), RecvStatus::kFrame);
  buffer.wipe();
  EXPECT_TRUE(buffer.frame().empty());
  EXPECT_EQ(held.find_first_not_of('\0'), std::string_view::npos);

  // A message over kMaxFrame is refused, and what recv wrote of it is wiped as well.
  std::string big = login + std::string(kMaxFrame, 'q');
  ASSERT_EQ(send(fds[1], big.data(), big.size(), 0), static_cast<ssize_t>(big.size()));
  EXPECT_FALSE(buffer.receive(fds[0]).ok());
  const std::string_view refused(storage, kMaxFrame + 1);
  EXPECT_EQ(refused.find_first_not_of('\0'), std::string_view::npos);
  close(fds[0]);
  close(fds[1]);
}

TEST(Messages, PermittedTableFollowsDirections) {
  EXPECT_TRUE(
      isPermitted(static_cast<uint16_t>(MsgType::kJobStart), Direction::kFrontendToSupervisor));
  EXPECT_FALSE(
      isPermitted(static_cast<uint16_t>(MsgType::kJobStatus), Direction::kFrontendToSupervisor));
  EXPECT_FALSE(
      isPermitted(static_cast<uint16_t>(MsgType::kLoginReply), Direction::kFrontendToSupervisor));
  EXPECT_TRUE(
      isPermitted(static_cast<uint16_t>(MsgType::kLoginReply), Direction::kSupervisorToFrontend));
  EXPECT_TRUE(
      isPermitted(static_cast<uint16_t>(MsgType::kLogin), Direction::kFrontendToSupervisor));
  EXPECT_FALSE(isPermitted(64, Direction::kSupervisorToFrontend));  // UserTable is gone
  EXPECT_FALSE(isPermitted(999, Direction::kFrontendToSupervisor));
  EXPECT_EQ(msgTypeName(4), "JobStart");
  EXPECT_EQ(msgTypeName(1000), "unknown");
}

}  // namespace
}  // namespace jw::protocol
