// Unit tests for the frontend<->supervisor codec: round trips of every message, and truncated,
// oversized and garbage frames. Runs in the test process, no privileges.
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
  s.signal = 9;
  s.stopped_by = "bob";
  s.created_at_ms = 1700000000123;
  s.started_at_ms = 1700000000124;
  s.ended_at_ms = 1700000001000;
  s.output = OutputMode::kSeparate;
  s.output_bytes = 10;
  s.output_dropped_bytes = 5;
  s.output_truncated = true;
  s.stderr_bytes = 7;
  s.oom_killed = true;
  s.limits.cpu_millicores = 500;
  s.limits.memory_bytes = 256 << 20;
  s.limits.pids = 64;
  s.limits.io.push_back({"/dev/vda", 1, 2, 3, 4});
  s.usage.has_cpu = true;
  s.usage.cpu_seconds = 1.25;
  s.usage.has_memory = true;
  s.usage.memory_peak_bytes = 12345;
  s.isolation = {"pid", "net"};
  s.run_as = "nobody";
  return s;
}

bool sameStatus(const JobStatus& a, const JobStatus& b) {
  return a.id == b.id && a.owner == b.owner && a.command == b.command && a.state == b.state &&
         a.pid == b.pid && a.has_exit_code == b.has_exit_code && a.exit_code == b.exit_code &&
         a.signal == b.signal && a.stopped_by == b.stopped_by && a.error == b.error &&
         a.created_at_ms == b.created_at_ms && a.started_at_ms == b.started_at_ms &&
         a.ended_at_ms == b.ended_at_ms && a.output == b.output &&
         a.output_bytes == b.output_bytes && a.output_dropped_bytes == b.output_dropped_bytes &&
         a.output_truncated == b.output_truncated && a.stderr_bytes == b.stderr_bytes &&
         a.oom_killed == b.oom_killed && a.limits.cpu_millicores == b.limits.cpu_millicores &&
         a.limits.memory_bytes == b.limits.memory_bytes &&
         a.limits.io.size() == b.limits.io.size() &&
         a.limits.io[0].device == b.limits.io[0].device &&
         a.limits.io[0].write_iops == b.limits.io[0].write_iops &&
         a.usage.cpu_seconds == b.usage.cpu_seconds && a.usage.has_memory == b.usage.has_memory &&
         a.usage.memory_peak_bytes == b.usage.memory_peak_bytes && a.isolation == b.isolation &&
         a.run_as == b.run_as;
}

// Decodes a frame produced by encode<Name>: header first, then the payload.
template <typename F>
auto roundTrip(const std::string& frame, MsgType expect_type, F decode) {
  std::string_view payload;
  auto h = decodeHeader(frame, &payload);
  EXPECT_TRUE(h.ok()) << (h.ok() ? "" : h.error().message);
  EXPECT_EQ(h->type, expect_type);
  EXPECT_EQ(h->request_id, 77u);
  auto p = decode(payload);
  EXPECT_TRUE(p.ok()) << (p.ok() ? "" : p.error().message);
  return p;
}

TEST(Codec, EveryMessageRoundTrips) {
  // Ready, Health, Ok: empty payloads.
  EXPECT_TRUE(roundTrip(encodeReady(77, {}), MsgType::kReady, decodeReadyPayload).ok());
  EXPECT_TRUE(roundTrip(encodeHealth(77, {}), MsgType::kHealth, decodeHealthPayload).ok());
  EXPECT_TRUE(roundTrip(encodeOk(77, {}), MsgType::kOk, decodeOkPayload).ok());

  SessionEntry se;
  se.token_hash.fill(0xab);
  se.user = "alice";
  se.expires_at_ms = 1234567;
  auto se2 = roundTrip(encodeSessionAdd(77, se), MsgType::kSessionAdd, decodeSessionAddPayload);
  EXPECT_EQ(se2->token_hash, se.token_hash);
  EXPECT_EQ(se2->user, "alice");
  EXPECT_EQ(se2->expires_at_ms, 1234567);

  auto th = roundTrip(encodeSessionRevoke(77, se.token_hash), MsgType::kSessionRevoke,
                      decodeSessionRevokePayload);
  EXPECT_EQ(*th, se.token_hash);

  JobStartRequest js;
  js.user = "alice";
  js.argv = {"/bin/echo", "a b", std::string("\xff\x01", 2)};
  js.env = {"A=1", "B="};
  js.cwd = "/tmp";
  js.timeout_ms = 5000;
  js.output = OutputMode::kSeparate;
  js.limits.pids = 3;
  js.network = Network::kHost;
  auto js2 = roundTrip(encodeJobStart(77, js), MsgType::kJobStart, decodeJobStartPayload);
  EXPECT_EQ(js2->argv, js.argv);
  EXPECT_EQ(js2->env, js.env);
  EXPECT_EQ(js2->cwd, "/tmp");
  EXPECT_EQ(js2->timeout_ms, 5000u);
  EXPECT_EQ(js2->output, OutputMode::kSeparate);
  EXPECT_EQ(js2->limits.pids, 3u);
  EXPECT_EQ(js2->network, Network::kHost);

  JobStopRequest st{"alice", "id", true, 1500};
  auto st2 = roundTrip(encodeJobStop(77, st), MsgType::kJobStop, decodeJobStopPayload);
  EXPECT_TRUE(st2->has_grace);
  EXPECT_EQ(st2->grace_ms, 1500u);

  auto jr =
      roundTrip(encodeJobGet(77, JobRef{"bob", "xyz"}), MsgType::kJobGet, decodeJobGetPayload);
  EXPECT_EQ(jr->user, "bob");
  EXPECT_EQ(jr->job_id, "xyz");

  auto jl = roundTrip(encodeJobList(77, JobListRequest{"bob", true, 2}), MsgType::kJobList,
                      decodeJobListPayload);
  EXPECT_TRUE(jl->all);
  EXPECT_EQ(jl->state, 2);

  OutputReadRequest orq{"bob", "xyz", Stream::kStderr, 1ULL << 40, 4096, true};
  auto or2 = roundTrip(encodeOutputRead(77, orq), MsgType::kOutputRead, decodeOutputReadPayload);
  EXPECT_EQ(or2->stream, Stream::kStderr);
  EXPECT_EQ(or2->offset, 1ULL << 40);
  EXPECT_EQ(or2->max_bytes, 4096u);
  EXPECT_TRUE(or2->follow);

  UserTable ut{{{"alice", "$argon2id$v=19$m=65536,t=2,p=1$x$y", Role::kUser},
                {"root_admin", "$argon2id$z", Role::kAdmin}}};
  auto ut2 = roundTrip(encodeUserTable(77, ut), MsgType::kUserTable, decodeUserTablePayload);
  ASSERT_EQ(ut2->users.size(), 2u);
  EXPECT_EQ(ut2->users[1].role, Role::kAdmin);
  EXPECT_EQ(ut2->users[0].password_hash, ut.users[0].password_hash);

  SessionTable stb{{se, se}};
  auto stb2 = roundTrip(encodeSessionTable(77, stb, kFlagMore), MsgType::kSessionTable,
                        decodeSessionTablePayload);
  EXPECT_EQ(stb2->sessions.size(), 2u);

  ErrorReply er{ErrorCode::kExecFailed, 2, "no such file"};
  auto er2 = roundTrip(encodeErrorReply(77, er), MsgType::kErrorReply, decodeErrorReplyPayload);
  EXPECT_EQ(er2->code, ErrorCode::kExecFailed);
  EXPECT_EQ(er2->sys_errno, 2);
  EXPECT_EQ(er2->message, "no such file");

  JobStatus s = sampleStatus();
  auto s2 = roundTrip(encodeJobStatus(77, s), MsgType::kJobStatus, decodeJobStatusPayload);
  EXPECT_TRUE(sameStatus(s, *s2));

  JobListReply lr{{s, s, s}};
  auto lr2 =
      roundTrip(encodeJobListReply(77, lr), MsgType::kJobListReply, decodeJobListReplyPayload);
  ASSERT_EQ(lr2->jobs.size(), 3u);
  EXPECT_TRUE(sameStatus(s, lr2->jobs[2]));

  OutputChunk oc{99, std::string(kMaxChunk, 'x'), true};
  auto oc2 = roundTrip(encodeOutputChunk(77, oc), MsgType::kOutputChunk, decodeOutputChunkPayload);
  EXPECT_EQ(oc2->offset, 99u);
  EXPECT_EQ(oc2->data, oc.data);
  EXPECT_TRUE(oc2->eof);

  HealthReply hr{{"cgroups: v1", "missing controller: io"}};
  auto hr2 = roundTrip(encodeHealthReply(77, hr), MsgType::kHealthReply, decodeHealthReplyPayload);
  EXPECT_EQ(hr2->details, hr.details);
}

TEST(Codec, FlagsSurviveAndUnknownFlagsFail) {
  std::string f = encodeJobListReply(5, {}, kFlagMore);
  std::string_view payload;
  auto h = decodeHeader(f, &payload);
  ASSERT_TRUE(h.ok());
  EXPECT_EQ(h->flags, kFlagMore);
  f[2] = 0x04;  // an undefined flag bit
  EXPECT_FALSE(decodeHeader(f, &payload).ok());
}

TEST(Codec, EveryTruncationOfEveryMessageFails) {
  JobStartRequest js;
  js.user = "alice";
  js.argv = {"echo", "x"};
  js.env = {"A=B"};
  std::vector<std::string> frames = {
      encodeJobStart(1, js),
      encodeJobStatus(1, sampleStatus()),
      encodeOutputChunk(1, OutputChunk{1, "abc", false}),
      encodeUserTable(1, UserTable{{{"a", "h", Role::kViewer}}}),
      encodeErrorReply(1, ErrorReply{ErrorCode::kNotFound, 0, "nope"}),
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
        case MsgType::kUserTable:
          ok = decodeUserTablePayload(p).ok();
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
  Writer w;
  w.u32(0xffffffff);  // user name length
  EXPECT_FALSE(decodeJobGetPayload(w.bytes()).ok());

  Writer w2;
  w2.str("alice");
  w2.u32(4000);  // argv count within cap but far beyond the bytes present
  EXPECT_FALSE(decodeJobStartPayload(w2.bytes()).ok());

  Writer w3;
  w3.str("alice");
  w3.u32(static_cast<uint32_t>(kMaxArgs + 1));
  EXPECT_FALSE(decodeJobStartPayload(w3.bytes()).ok());
}

TEST(Codec, OutOfRangeEnumsFail) {
  Writer w;
  w.str("bob");
  w.boolean(false);
  w.u8(9);  // state filter
  EXPECT_FALSE(decodeJobListPayload(w.bytes()).ok());

  Writer w2;
  w2.str("bob");
  w2.u8(2);  // boolean must be 0 or 1
  w2.u8(0);
  EXPECT_FALSE(decodeJobListPayload(w2.bytes()).ok());

  OutputReadRequest bad{"bob", "x", Stream::kStdout, 0, 0, false};  // max_bytes 0
  std::string f = encodeOutputRead(1, bad);
  EXPECT_FALSE(decodeOutputReadPayload(std::string_view(f).substr(kHeaderSize)).ok());
}

TEST(Codec, JobSpecCapIsEnforced) {
  JobStartRequest js;
  js.user = "alice";
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
      static const uint16_t types[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 64, 65, 66, 67, 68, 69, 70, 71};
      uint16_t t = types[rng() % 17];
      frame[0] = static_cast<char>(t & 0xff);
      frame[1] = static_cast<char>(t >> 8);
    }
    std::string_view payload;
    auto h = decodeHeader(frame, &payload);
    if (!h.ok()) continue;
    (void)decodeJobStartPayload(payload).ok();
    (void)decodeJobStatusPayload(payload).ok();
    (void)decodeUserTablePayload(payload).ok();
    (void)decodeJobListReplyPayload(payload).ok();
  }
  SUCCEED();
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

TEST(Messages, PermittedTableFollowsDirections) {
  EXPECT_TRUE(
      isPermitted(static_cast<uint16_t>(MsgType::kJobStart), Direction::kFrontendToSupervisor));
  EXPECT_FALSE(
      isPermitted(static_cast<uint16_t>(MsgType::kJobStatus), Direction::kFrontendToSupervisor));
  EXPECT_FALSE(
      isPermitted(static_cast<uint16_t>(MsgType::kUserTable), Direction::kFrontendToSupervisor));
  EXPECT_TRUE(
      isPermitted(static_cast<uint16_t>(MsgType::kUserTable), Direction::kSupervisorToFrontend));
  EXPECT_FALSE(isPermitted(999, Direction::kFrontendToSupervisor));
  EXPECT_EQ(msgTypeName(4), "JobStart");
  EXPECT_EQ(msgTypeName(1000), "unknown");
}

}  // namespace
}  // namespace jw::protocol
