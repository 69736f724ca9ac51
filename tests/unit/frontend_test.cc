// Unit tests of jobworker-frontend's pieces that need no privileges: request validation, status
// JSON, RFC 3339 times, tokens, ids and paths, throttling, the auth store, the supervisor channel
// (over a real socketpair) and the HTTPS server (over real loopback TLS with a test handler).
#include <Poco/DateTimeFormatter.h>
#include <Poco/Net/AcceptCertificateHandler.h>
#include <Poco/Net/Context.h>
#include <Poco/Net/HTTPRequest.h>
#include <Poco/Net/HTTPResponse.h>
#include <Poco/Net/HTTPSClientSession.h>
#include <Poco/Net/SSLManager.h>
#include <Poco/Net/SecureStreamSocket.h>
#include <Poco/StreamCopier.h>
#include <Poco/Timestamp.h>
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sodium.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <fstream>
#include <future>
#include <mutex>
#include <sstream>
#include <thread>

#include "common/config.h"
#include "common/names.h"
#include "common/policy.h"
#include "common/protocol/channel.h"
#include "common/protocol/codec.h"
#include "frontend/api/access_log.h"
#include "frontend/api/metrics_text.h"
#include "frontend/api/request_json.h"
#include "frontend/api/routes.h"
#include "frontend/api/status_json.h"
#include "frontend/auth.h"
#include "frontend/http/request_target.h"
#include "frontend/http/tls_server.h"
#include "frontend/seccomp_filter.h"
#include "frontend/supervisor_channel.h"
#include "tests/wait_until.h"

namespace jw::frontend {
namespace {

using jw::test::acceptQueueLength;
using jw::test::waitUntil;
using protocol::JobStartRequest;

// --- request bodies ---------------------------------------------------------------------------

ApiError jobError(const std::string& body) {
  auto r = parseJobRequest(body);
  EXPECT_FALSE(r.ok()) << body;
  return r.ok() ? ApiError{} : r.error();
}

TEST(JobRequest, MinimalAndFull) {
  auto r = parseJobRequest(R"({"command":["echo","hi"]})");
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r.value().argv, (std::vector<std::string>{"echo", "hi"}));
  EXPECT_EQ(r.value().output, protocol::OutputMode::kMerged);
  EXPECT_EQ(r.value().network, protocol::Network::kDefault);
  EXPECT_EQ(r.value().timeout_ms, 0u);

  auto f = parseJobRequest(R"({"command":["sh","-c","x"],"env":{"A_1":"v","_b":""},
      "cwd":"/tmp","timeout_s":1.5,"output":"separate","network":"none",
      "limits":{"cpu":0.25,"memory":"256M","pids":64,
                "io":[{"device":"/dev/vda","read_bps":"1M","write_bps":2048,"read_iops":10}]}})");
  ASSERT_TRUE(f.ok()) << f.error().message;
  const JobStartRequest& j = f.value();
  EXPECT_EQ(j.env, (std::vector<std::string>{"A_1=v", "_b="}));
  EXPECT_EQ(j.cwd, "/tmp");
  EXPECT_EQ(j.timeout_ms, 1500u);
  EXPECT_EQ(j.output, protocol::OutputMode::kSeparate);
  EXPECT_EQ(j.network, protocol::Network::kNone);
  EXPECT_EQ(j.limits.cpu_millicores, 250u);
  EXPECT_EQ(j.limits.memory_bytes, 256ull << 20);
  EXPECT_EQ(j.limits.pids, 64u);
  ASSERT_EQ(j.limits.io.size(), 1u);
  EXPECT_EQ(j.limits.io[0].device, "/dev/vda");
  EXPECT_EQ(j.limits.io[0].read_bps, 1u << 20);
  EXPECT_EQ(j.limits.io[0].write_bps, 2048u);
  EXPECT_EQ(j.limits.io[0].read_iops, 10u);
  EXPECT_EQ(j.limits.io[0].write_iops, 0u);
}

TEST(JobRequest, LimitForms) {
  auto a = parseJobRequest(R"({"command":["x"],"limits":{"cpu":"1.5","memory":1048576}})");
  ASSERT_TRUE(a.ok()) << a.error().message;
  EXPECT_EQ(a.value().limits.cpu_millicores, 1500u);
  EXPECT_EQ(a.value().limits.memory_bytes, 1048576u);
  auto b = parseJobRequest(R"({"command":["x"],"limits":{"memory":"2G","cpu":2}})");
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b.value().limits.memory_bytes, 2ull << 30);
  EXPECT_EQ(b.value().limits.cpu_millicores, 2000u);
  EXPECT_EQ(jobError(R"({"command":["x"],"limits":{"memory":"lots"}})").status, 400);
  EXPECT_EQ(jobError(R"({"command":["x"],"limits":{"memory":0}})").status, 400);
  EXPECT_EQ(jobError(R"({"command":["x"],"limits":{"cpu":0}})").status, 400);
  EXPECT_EQ(jobError(R"({"command":["x"],"limits":{"cpu":-1}})").status, 400);
  EXPECT_EQ(jobError(R"({"command":["x"],"limits":{"pids":0}})").status, 400);
  EXPECT_EQ(jobError(R"({"command":["x"],"limits":{"pids":1.5}})").status, 400);
  EXPECT_EQ(jobError(R"({"command":["x"],"limits":{"io":[{"read_bps":1}]}})").message,
            "field limits.io[0].device is required");
}

TEST(JobRequest, UnknownFieldsAreNamed) {
  ApiError e = jobError(R"({"command":["x"],"comand":["y"]})");
  EXPECT_EQ(e.status, 400);
  EXPECT_EQ(e.code, "unknown_field");
  EXPECT_NE(e.message.find("\"comand\""), std::string::npos) << e.message;
  e = jobError(R"({"command":["x"],"limits":{"memroy":"1M"}})");
  EXPECT_EQ(e.code, "unknown_field");
  EXPECT_NE(e.message.find("limits.memroy"), std::string::npos) << e.message;
  e = jobError(R"({"command":["x"],"limits":{"io":[{"device":"/dev/sda","speed":1}]}})");
  EXPECT_EQ(e.code, "unknown_field");
  EXPECT_NE(e.message.find("limits.io[0].speed"), std::string::npos) << e.message;
}

TEST(JobRequest, WrongTypesNameTheField) {
  struct Case {
    const char* body;
    const char* field;
  } cases[] = {
      {R"({"command":"echo hi"})", "command"},
      {R"({"command":[]})", "command"},
      {R"({"command":["echo",1]})", "command[1]"},
      {R"({"command":[""]})", "command[0]"},
      {R"({"command":["x"],"env":["A=b"]})", "env"},
      {R"({"command":["x"],"env":{"A":1}})", "env.A"},
      {R"({"command":["x"],"env":{"1A":"x"}})", "env name"},
      {R"({"command":["x"],"env":{"A-B":"x"}})", "env name"},
      {R"({"command":["x"],"cwd":5})", "cwd"},
      {R"({"command":["x"],"cwd":"relative/dir"})", "cwd"},
      {R"({"command":["x"],"timeout_s":"10"})", "timeout_s"},
      {R"({"command":["x"],"timeout_s":0})", "timeout_s"},
      {R"({"command":["x"],"timeout_s":-3})", "timeout_s"},
      {R"({"command":["x"],"timeout_s":true})", "timeout_s"},
      {R"({"command":["x"],"timeout_s":1e30})", "timeout_s"},
      {R"({"command":["x"],"output":"both"})", "output"},
      {R"({"command":["x"],"network":"bridge"})", "network"},
      {R"({"command":["x"],"limits":[]})", "limits"},
      {R"({"command":["x"],"limits":{"cpu":true}})", "limits.cpu"},
      {R"({"command":["x"],"limits":{"cpu":0.001}})", "limits.cpu must be in 0.01..4096"},
      {R"({"command":["x"],"limits":{"cpu":4097}})", "limits.cpu must be in 0.01..4096"},
      {R"({"command":["x"],"limits":{"pids":1000000000}})", "limits.pids must be in 1..4194304"},
      {R"({"command":["x"],"limits":{"pids":0}})", "limits.pids must be > 0"},
      {R"({"command":["x"],"limits":{"memory":4611686018427387905}})", "limits.memory must be in"},
      {R"({"command":["x"],"limits":{"memory":"8388608T"}})", "limits.memory must be in"},
      // Past 64 bits Poco would wrap these to 0 and 1, or saturate: refused from the raw text.
      {R"({"command":["x"],"limits":{"memory":18446744073709551616}})",
       "number 18446744073709551616 is out of range"},
      {R"({"command":["x"],"limits":{"pids":18446744073709551617}})",
       "number 18446744073709551617 is out of range"},
      {R"({"command":["x"],"timeout_s":-9223372036854775809})",
       "number -9223372036854775809 is out of range"},
  };
  for (const auto& c : cases) {
    ApiError e = jobError(c.body);
    EXPECT_EQ(e.status, 400) << c.body;
    EXPECT_EQ(e.code, "bad_request") << c.body;
    EXPECT_NE(e.message.find(c.field), std::string::npos) << c.body << " -> " << e.message;
  }
}

TEST(JobRequest, LongNumbersInsideStringsAndFractionsAreNotIntegers) {
  auto r = parseJobRequest(
      R"({"command":["echo","123456789012345678901234567890"],"timeout_s":1.123456789012345678901234})");
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r.value().argv[1], "123456789012345678901234567890");
  r = parseJobRequest(R"({"command":["x"],"limits":{"memory":18446744073709551615}})");
  ASSERT_FALSE(r.ok());  // a valid 64-bit number, but over the memory range
  EXPECT_NE(r.error().message.find("limits.memory must be in"), std::string::npos);
  EXPECT_TRUE(parseJobRequest(R"({"command":["x"],"limits":{"pids":4194304}})").ok());
}

TEST(JobRequest, NulBytesAreRefused) {
  EXPECT_EQ(jobError(R"({"command":["x\u0000y"]})").status, 400);
  EXPECT_EQ(jobError(R"({"command":["x"],"env":{"A":"\u0000"}})").status, 400);
}

TEST(JobRequest, NullMeansAbsent) {
  auto r = parseJobRequest(R"({"command":["x"],"cwd":null,"env":null,"limits":null})");
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r.value().cwd, "");
}

TEST(JobRequest, MalformedJsonAndEncoding) {
  EXPECT_EQ(jobError("{\"command\":[\"x\"]").code, "invalid_json");
  EXPECT_EQ(jobError("[\"x\"]").code, "invalid_json");
  EXPECT_EQ(jobError("").code, "invalid_json");
  EXPECT_EQ(jobError("{\"command\":[\"\xff\"]}").code, "invalid_json");
  EXPECT_EQ(jobError("{\"command\":[\"\xc0\xaf\"]}").code, "invalid_json");      // overlong '/'
  EXPECT_EQ(jobError("{\"command\":[\"\xed\xa0\x80\"]}").code, "invalid_json");  // surrogate
  std::string deep =
      "{\"command\":[\"x\"],\"limits\":" + std::string(200, '[') + std::string(200, ']') + "}";
  EXPECT_EQ(jobError(deep).code, "invalid_json");
  // Valid multi-byte text passes.
  EXPECT_TRUE(
      parseJobRequest("{\"command\":[\"echo\",\"h\xc3\xa9llo \xe2\x82\xac \xf0\x9f\x98\x80\"]}")
          .ok());
}

TEST(JobRequest, SpecOverTheCapIsTooLarge) {
  std::string big(protocol::kMaxJobSpecBytes + 10, 'a');
  ApiError e = jobError("{\"command\":[\"echo\",\"" + big + "\"]}");
  EXPECT_EQ(e.status, 413);
  EXPECT_EQ(e.code, "too_large");
}

TEST(LoginBody, Parses) {
  auto b = parseLoginBody(R"({"username":"alice","password":"p:w"})");
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b.value().username, "alice");
  EXPECT_EQ(b.value().password, "p:w");
  EXPECT_EQ(parseLoginBody(R"({"username":"a","password":"b","otp":1})").error().code,
            "unknown_field");
  EXPECT_EQ(parseLoginBody(R"({"username":"a"})").error().status, 400);
  EXPECT_EQ(parseLoginBody(R"({"username":1,"password":"b"})").error().status, 400);
}

TEST(StopBody, Parses) {
  auto empty = parseStopBody("");
  ASSERT_TRUE(empty.ok());
  EXPECT_FALSE(empty.value().has_value());
  auto g = parseStopBody(R"({"grace_s":2.5})");
  ASSERT_TRUE(g.ok());
  EXPECT_EQ(g.value().value(), 2500u);
  auto zero = parseStopBody(R"({"grace_s":0})");
  ASSERT_TRUE(zero.ok());
  EXPECT_EQ(zero.value().value(), 0u);
  EXPECT_FALSE(parseStopBody(R"({"grace_s":-1})").ok());
  EXPECT_EQ(parseStopBody(R"({"grace":1})").error().code, "unknown_field");
}

// --- rendering --------------------------------------------------------------------------------

TEST(Rfc3339, Formats) {
  EXPECT_EQ(rfc3339Ms(0), "1970-01-01T00:00:00.000Z");
  EXPECT_EQ(rfc3339Ms(1709251199999), "2024-02-29T23:59:59.999Z");  // leap day
  EXPECT_EQ(rfc3339Ms(1796006589123), "2026-11-30T02:43:09.123Z");
  EXPECT_EQ(rfc3339Ms(951782400000), "2000-02-29T00:00:00.000Z");
  EXPECT_EQ(rfc3339Ms(4102444800001), "2100-01-01T00:00:00.001Z");
  EXPECT_EQ(rfc3339Ms(1796006589007), "2026-11-30T02:43:09.007Z");  // zero-padded ms
  EXPECT_EQ(rfc3339Ms(-1), "1969-12-31T23:59:59.999Z");             // before the epoch: floors
}

// The hand-written calendar agrees with Poco's from 1970 to 9999, a few times a month.
TEST(Rfc3339, MatchesPocoAcrossTheCalendar) {
  constexpr int64_t kYear10000Ms = 253402300800000;
  for (int64_t ms = 0; ms < kYear10000Ms; ms += int64_t{86399999} * 11 + 12345) {
    ASSERT_EQ(rfc3339Ms(ms),
              Poco::DateTimeFormatter::format(Poco::Timestamp(ms * 1000), "%Y-%m-%dT%H:%M:%S.%iZ"))
        << ms;
  }
  EXPECT_EQ(rfc3339Ms(kYear10000Ms - 1), "9999-12-31T23:59:59.999Z");
}

TEST(Cores, Text) {
  EXPECT_EQ(coresText(500), "0.5");
  EXPECT_EQ(coresText(2000), "2");
  EXPECT_EQ(coresText(1), "0.001");
  EXPECT_EQ(coresText(1250), "1.25");
}

protocol::JobStatus sampleStatus() {
  protocol::JobStatus s;
  s.id = "0b6f3c1e-5d2a-4c8e-9f1a-2b3c4d5e6f70";
  s.owner = "alice";
  s.command = {"sh", "-c", "echo \"hi\"\n"};
  s.state = protocol::JobState::kExited;
  s.pid = 1234;
  s.has_exit_code = true;
  s.exit_code = 3;
  s.created_at_ms = 1796006589123;
  s.started_at_ms = 1796006589200;
  s.ended_at_ms = 0;
  s.output_bytes = 42;
  s.limits.cpu_millicores = 500;
  s.limits.memory_bytes = 1 << 20;
  s.usage.has_cpu = true;
  s.usage.cpu_seconds = 0.25;
  s.usage.has_pids = true;
  s.usage.pids_peak = 3;
  s.isolation = {"pid", "mount"};
  s.run_as = "nobody";
  s.name = "web";
  s.labels = {"app=web", "tier="};
  return s;
}

TEST(StatusJson, RendersEveryField) {
  std::string j = statusJson(sampleStatus());
  EXPECT_EQ(j,
            "{\"id\":\"0b6f3c1e-5d2a-4c8e-9f1a-2b3c4d5e6f70\",\"owner\":\"alice\","
            "\"command\":[\"sh\",\"-c\",\"echo \\\"hi\\\"\\n\"],\"state\":\"exited\","
            "\"pid\":1234,\"exit_code\":3,\"signal\":null,\"stopped_by\":null,\"error\":null,"
            "\"created_at\":\"2026-11-30T02:43:09.123Z\","
            "\"started_at\":\"2026-11-30T02:43:09.200Z\",\"ended_at\":null,"
            "\"output\":\"merged\",\"output_bytes\":42,\"output_truncated\":false,"
            "\"output_dropped_bytes\":0,\"output_error\":null,\"oom_killed\":false,"
            "\"limits\":{\"cpu\":0.5,\"memory\":1048576,\"pids\":null,\"io\":[]},"
            "\"usage\":{\"cpu_seconds\":0.25,\"pids_peak\":3},"
            "\"isolation\":[\"pid\",\"mount\"],\"run_as\":\"nobody\","
            "\"name\":\"web\",\"labels\":{\"app\":\"web\",\"tier\":\"\"},\"stdin\":\"null\"}");
}

TEST(StatusJson, StdinFieldsOfAPipeJob) {
  protocol::JobStatus s = sampleStatus();
  s.stdin_pipe = true;
  s.stdin_bytes = 1ULL << 30;
  std::string j = statusJson(s);
  EXPECT_NE(j.find("\"stdin\":\"pipe\",\"stdin_bytes\":1073741824,\"stdin_complete\":false}"),
            std::string::npos)
      << j;
}

TEST(StatusJson, SeparateKilledAndInvalidUtf8) {
  protocol::JobStatus s = sampleStatus();
  s.output = protocol::OutputMode::kSeparate;
  s.state = protocol::JobState::kKilled;
  s.has_exit_code = false;
  s.signal = 9;
  s.stopped_by = "timeout";
  s.stderr_bytes = 7;
  s.stderr_truncated = true;
  s.stderr_error = "no space left on device at byte 7";
  s.command = {"bad\xff", "\x01"};
  std::string j = statusJson(s);
  EXPECT_NE(j.find("\"exit_code\":null,\"signal\":9,\"stopped_by\":\"timeout\""),
            std::string::npos);
  EXPECT_NE(j.find("\"stderr_bytes\":7,\"stderr_truncated\":true,\"stderr_dropped_bytes\":0,"
                   "\"stderr_error\":\"no space left on device at byte 7\""),
            std::string::npos)
      << j;
  EXPECT_NE(j.find("[\"bad\\ufffd\",\"\\u0001\"]"), std::string::npos) << j;
  EXPECT_TRUE(validUtf8(j));
}

TEST(ErrorJson, Shape) {
  EXPECT_EQ(errorJson({404, "not_found", "no \"such\" job"}),
            "{\"error\":{\"code\":\"not_found\",\"message\":\"no \\\"such\\\" job\"}}");
}

// --- tokens, names, ids, paths ----------------------------------------------------------------

TEST(Tokens, TextFormRoundTrips) {
  protocol::Token t;
  for (size_t i = 0; i < t.bytes.size(); i++) t.bytes[i] = static_cast<uint8_t>(i * 37 + 251);
  std::string a = tokenText(t);
  EXPECT_EQ(a.size(), 46u);
  EXPECT_EQ(a.substr(0, 3), "jw_");
  EXPECT_EQ(a.find_first_of("+/="), std::string::npos);
  auto back = parseToken(a);
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(*back, t);
  EXPECT_FALSE(parseToken(a.substr(0, 45)).has_value());
  EXPECT_FALSE(parseToken("jx_" + a.substr(3)).has_value());
  EXPECT_FALSE(parseToken(a.substr(0, 45) + "=").has_value());
  EXPECT_FALSE(parseToken(a.substr(0, 45) + "+").has_value());
  EXPECT_FALSE(parseToken("").has_value());
}

TEST(Names, UserNames) {
  EXPECT_TRUE(names::validUserName("alice"));
  EXPECT_TRUE(names::validUserName("_svc.a-1"));
  EXPECT_FALSE(names::validUserName("Alice"));
  EXPECT_FALSE(names::validUserName("1abc"));
  EXPECT_FALSE(names::validUserName(""));
  EXPECT_FALSE(names::validUserName(std::string(33, 'a')));
  EXPECT_FALSE(names::validUserName("a b"));
}

TEST(JobIds, Uuid4Only) {
  EXPECT_TRUE(names::validJobId("0b6f3c1e-5d2a-4c8e-9f1a-2b3c4d5e6f70"));
  EXPECT_TRUE(names::validJobId("0b6f3c1e-5d2a-4c8e-af1a-2b3c4d5e6f70"));
  EXPECT_FALSE(names::validJobId("0B6F3C1E-5D2A-4C8E-9F1A-2B3C4D5E6F70"));  // uppercase
  EXPECT_FALSE(names::validJobId("0b6f3c1e-5d2a-1c8e-9f1a-2b3c4d5e6f70"));  // version 1
  EXPECT_FALSE(names::validJobId("0b6f3c1e-5d2a-4c8e-7f1a-2b3c4d5e6f70"));  // variant
  EXPECT_FALSE(names::validJobId("0b6f3c1e5d2a4c8e9f1a2b3c4d5e6f70"));
  EXPECT_FALSE(names::validJobId("0b6f3c1e-5d2a-4c8e-9f1a-2b3c4d5e6f7"));
  EXPECT_FALSE(names::validJobId("../../../../etc/passwd-aaaaaaaaaaaaaa"));
}

TEST(Targets, PathsAndQueries) {
  auto t = parseTarget("/v1/jobs?all=true&state=running");
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t.value().segments, (std::vector<std::string>{"v1", "jobs"}));
  EXPECT_EQ(t.value().query.at("all"), "true");
  EXPECT_EQ(t.value().query.at("state"), "running");
  auto d = parseTarget("/v1/jobs?x=a%20b+c&flag");
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d.value().query.at("x"), "a b c");
  EXPECT_EQ(d.value().query.at("flag"), "");

  EXPECT_EQ(parseTarget("/v1/jobs/../..").error().status, 400);
  EXPECT_EQ(parseTarget("/v1/./jobs").error().status, 400);
  EXPECT_EQ(parseTarget("/v1/jobs%2F..%2F").error().status, 400);
  EXPECT_EQ(parseTarget("/v1/jobs/%2e%2e").error().status, 400);
  EXPECT_EQ(parseTarget("//v1/jobs").error().status, 404);
  EXPECT_EQ(parseTarget("/v1//jobs").error().status, 404);
  EXPECT_EQ(parseTarget("/v1/jobs/").error().status, 404);
  EXPECT_EQ(parseTarget("https://x/v1/jobs").error().status, 400);
  EXPECT_EQ(parseTarget("*").error().status, 400);
  EXPECT_EQ(parseTarget("/v1/jobs?a=1&a=2").error().status, 400);
  EXPECT_EQ(parseTarget("/v1/jobs?a=%zz").error().status, 400);
  EXPECT_EQ(parseTarget("/v1/jobs?a=%2").error().status, 400);
  EXPECT_EQ(parseTarget("/v1/jo bs").error().status, 400);
}

// --- policy helpers ---------------------------------------------------------------------------

TEST(Policy, SupervisorErrorsMapToHttp) {
  using protocol::ErrorCode;
  EXPECT_EQ(fromSupervisor({ErrorCode::kExecFailed, ENOENT, "x"}).code, "program_not_found");
  EXPECT_EQ(fromSupervisor({ErrorCode::kExecFailed, ENOTDIR, "x"}).code, "program_not_found");
  EXPECT_EQ(fromSupervisor({ErrorCode::kExecFailed, EACCES, "x"}).code, "program_not_executable");
  EXPECT_EQ(fromSupervisor({ErrorCode::kExecFailed, ENOEXEC, "x"}).status, 422);
  EXPECT_EQ(fromSupervisor({ErrorCode::kNotFound, 0, "x"}).status, 404);
  EXPECT_EQ(fromSupervisor({ErrorCode::kInsufficientStorage, 0, "x"}).status, 507);
  EXPECT_EQ(fromSupervisor({ErrorCode::kInsufficientStorage, 0, "x"}).code, "insufficient_storage");
  EXPECT_EQ(fromSupervisor({ErrorCode::kConflict, 0, "x"}).status, 409);
  EXPECT_EQ(fromSupervisor({ErrorCode::kTooLarge, 0, "x"}).status, 413);
  EXPECT_EQ(fromSupervisor({ErrorCode::kUnavailable, 0, "x"}).status, 503);
  EXPECT_EQ(fromSupervisor({ErrorCode::kLimitExceeded, 0, "memory over your maximum"}).code,
            "limit_exceeded");
  EXPECT_EQ(fromSupervisor({ErrorCode::kForbidden, 0, "limit in the text, still a role"}).code,
            "forbidden");
  EXPECT_EQ(fromSupervisor({ErrorCode::kForbidden, 0, "role"}).code, "forbidden");
}

TEST(Policy, NetworkHostAndMaxima) {
  using protocol::Role;
  auto cfg = config::parse(
      "role.user.network_host = true\nuser.bob.network_host = false\n"
      "max.memory = 1G\nrole.user.max.memory = 512M\nuser.carol.max.memory = 2G\n"
      "role.user.max.cpu = 1\nmax.io_bps = 10M\n",
      "test");
  ASSERT_TRUE(cfg.ok()) << cfg.error().message;
  const config::Settings& s = cfg.value();
  EXPECT_TRUE(policy::networkHostAllowed(config::Settings{}, "root", Role::kAdmin));
  EXPECT_FALSE(policy::networkHostAllowed(config::Settings{}, "alice", Role::kUser));
  EXPECT_TRUE(policy::networkHostAllowed(s, "alice", Role::kUser));
  EXPECT_FALSE(policy::networkHostAllowed(s, "bob", Role::kUser));

  protocol::Limits l;
  l.memory_bytes = 600ull << 20;
  auto e = checkLimitMaxima(s, "alice", Role::kUser, l);
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->code, "limit_exceeded");
  EXPECT_EQ(e->status, 403);
  EXPECT_FALSE(checkLimitMaxima(s, "carol", Role::kUser, l).has_value());  // user entry wins
  EXPECT_FALSE(checkLimitMaxima(s, "root", Role::kAdmin, l).has_value());  // global 1G
  l.memory_bytes = 0;
  l.cpu_millicores = 1500;
  EXPECT_TRUE(checkLimitMaxima(s, "alice", Role::kUser, l).has_value());
  l.cpu_millicores = 0;
  l.io.push_back({"/dev/vda", 20 << 20, 0, 0, 0});
  EXPECT_TRUE(checkLimitMaxima(s, "root", Role::kAdmin, l).has_value());

  // An explicit limit alone over an aggregate: 403 naming the aggregate's key.
  auto agg = config::parse("max.total_pids = 500\nrole.user.max.total_pids = 50\n", "test");
  ASSERT_TRUE(agg.ok()) << agg.error().message;
  protocol::Limits p;
  p.pids = 51;
  auto over = checkLimitMaxima(agg.value(), "alice", Role::kUser, p);
  ASSERT_TRUE(over.has_value());
  EXPECT_EQ(over->status, 403);
  EXPECT_EQ(over->code, "limit_exceeded");
  EXPECT_NE(over->message.find("max.total_pids"), std::string::npos) << over->message;
  EXPECT_FALSE(checkLimitMaxima(agg.value(), "root", Role::kAdmin, p).has_value());
}

TEST(Seccomp, AllowlistHasNoDangerousCalls) {
  auto calls = seccompAllowedSyscalls();
  EXPECT_GT(calls.size(), 20u);
  for (const char* bad :
       {"execve", "execveat",  "fork",  "vfork",  "ptrace", "mount",   "setuid",  "setresuid",
        "setgid", "setgroups", "open",  "openat", "socket", "connect", "bind",    "listen",
        "kill",   "clone3",    "clone", "chmod",  "unlink", "prctl",   "seccomp", "capset"}) {
    EXPECT_EQ(std::count(calls.begin(), calls.end(), bad), 0) << bad;
  }
}

// --- supervisor channel over a real socketpair ------------------------------------------------

class ChannelTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(protocol::makeChannelPair(fds_).ok()); }
  void TearDown() override {
    channel_.reset();
    ::close(fds_[0]);
    ::close(fds_[1]);
  }
  // The fake supervisor side.
  void send(const std::string& frame) { ASSERT_TRUE(protocol::sendFrame(fds_[0], frame).ok()); }
  protocol::FrameHeader receive(std::string* frame) {
    auto r = protocol::recvFrame(fds_[0], frame);
    EXPECT_TRUE(r.ok() && r.value() == protocol::RecvStatus::kFrame);
    std::string_view payload;
    auto h = protocol::decodeHeader(*frame, &payload);
    EXPECT_TRUE(h.ok());
    return h.ok() ? h.value() : protocol::FrameHeader{};
  }
  static std::string payloadOf(const std::string& frame) {
    return frame.substr(protocol::kHeaderSize);
  }

  int fds_[2] = {-1, -1};
  std::unique_ptr<SupervisorChannel> channel_;
};

protocol::Token token(uint8_t fill) {
  protocol::Token t;
  t.bytes.fill(fill);
  return t;
}

TEST_F(ChannelTest, ReadyIsAllTheStartUpThereIs) {
  channel_ = std::make_unique<SupervisorChannel>(fds_[1]);
  ASSERT_TRUE(channel_->sendReady().ok());
  std::string f;
  auto h = receive(&f);
  EXPECT_EQ(h.type, protocol::MsgType::kReady);
  EXPECT_EQ(h.request_id, 0u);
}

TEST_F(ChannelTest, LoginCarriesThePasswordAndGetsTheToken) {
  channel_ = std::make_unique<SupervisorChannel>(fds_[1]);
  std::promise<std::string> closed;
  channel_->start([&](const std::string& why) { closed.set_value(why); });
  auto reply = std::async(std::launch::async, [&] {
    return channel_->login(protocol::LoginRequest{"alice", "secret", "192.0.2.7"});
  });
  std::string f;
  auto h = receive(&f);
  ASSERT_EQ(h.type, protocol::MsgType::kLogin);
  auto req = protocol::decodeLoginPayload(payloadOf(f));
  ASSERT_TRUE(req.ok());
  EXPECT_EQ(req.value(), (protocol::LoginRequest{"alice", "secret", "192.0.2.7"}));
  send(protocol::encodeLoginReply(h.request_id, {token(9), protocol::Role::kUser, 42}));
  auto r = reply.get();
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r.value().token, token(9));
  EXPECT_EQ(r.value().role, protocol::Role::kUser);
  channel_.reset();  // before `closed` goes out of scope: the reader reports the close to it
}

TEST_F(ChannelTest, UnsolicitedFrameClosesTheChannel) {
  channel_ = std::make_unique<SupervisorChannel>(fds_[1]);
  std::promise<std::string> closed;
  channel_->start([&](const std::string& why) { closed.set_value(why); });
  send(protocol::encodeOk(0, {}));  // request id 0: the supervisor sends nothing unasked
  auto fut = closed.get_future();
  ASSERT_EQ(fut.wait_for(std::chrono::seconds(5)), std::future_status::ready);
  EXPECT_NE(fut.get().find("unsolicited"), std::string::npos);
}

TEST_F(ChannelTest, ConcurrentRequestsGetTheirOwnReplies) {
  channel_ = std::make_unique<SupervisorChannel>(fds_[1]);
  std::promise<std::string> closed;
  channel_->start([&](const std::string& why) { closed.set_value(why); });
  constexpr int kN = 8;
  std::vector<std::future<Reply<protocol::JobStatus>>> replies;
  for (int i = 0; i < kN; i++) {
    replies.push_back(std::async(std::launch::async, [&, i] {
      return channel_->jobGet(protocol::JobRef{token(1), "job-" + std::to_string(i)});
    }));
  }
  // Collect all requests, then answer in reverse order.
  std::vector<std::pair<uint32_t, std::string>> got;
  for (int i = 0; i < kN; i++) {
    std::string f;
    auto h = receive(&f);
    ASSERT_EQ(h.type, protocol::MsgType::kJobGet);
    auto ref = protocol::decodeJobGetPayload(payloadOf(f));
    ASSERT_TRUE(ref.ok());
    got.emplace_back(h.request_id, ref.value().job_id);
  }
  for (auto it = got.rbegin(); it != got.rend(); ++it) {
    if (it->second == "job-3") {
      send(protocol::encodeErrorReply(it->first, {protocol::ErrorCode::kNotFound, 0, "nope", 0}));
      continue;
    }
    protocol::JobStatus s;
    s.id = it->second;
    send(protocol::encodeJobStatus(it->first, s));
  }
  for (int i = 0; i < kN; i++) {
    auto r = replies[i].get();
    if (i == 3) {
      ASSERT_FALSE(r.ok());
      EXPECT_EQ(r.error().code, protocol::ErrorCode::kNotFound);
    } else {
      ASSERT_TRUE(r.ok());
      EXPECT_EQ(r.value().id, "job-" + std::to_string(i));
    }
  }

  // Multi-frame list reply.
  auto list = std::async(std::launch::async, [&] {
    protocol::JobListRequest req;
    req.token = token(1);
    req.all = true;
    return channel_->jobList(req);
  });
  std::string f;
  auto h = receive(&f);
  ASSERT_EQ(h.type, protocol::MsgType::kJobList);
  protocol::JobListReply p1, p2;
  p1.jobs.resize(2);
  p1.jobs[0].id = "a";
  p1.jobs[1].id = "b";
  p2.jobs.resize(1);
  p2.jobs[0].id = "c";
  send(protocol::encodeJobListReply(h.request_id, p1, protocol::kFlagMore));
  send(protocol::encodeJobListReply(h.request_id, p2));
  auto l = list.get();
  ASSERT_TRUE(l.ok());
  ASSERT_EQ(l.value().jobs.size(), 3u);
  EXPECT_EQ(l.value().jobs[2].id, "c");
  EXPECT_FALSE(l.value().more);

  // The supervisor going away reaches on_closed.
  ::shutdown(fds_[0], SHUT_RDWR);
  auto fut = closed.get_future();
  ASSERT_EQ(fut.wait_for(std::chrono::seconds(5)), std::future_status::ready);
  EXPECT_NE(fut.get().find("closed"), std::string::npos);
}

TEST_F(ChannelTest, MalformedFrameClosesTheChannel) {
  channel_ = std::make_unique<SupervisorChannel>(fds_[1]);
  std::promise<std::string> closed;
  channel_->start([&](const std::string& why) { closed.set_value(why); });
  send(std::string("\x01\x00\x00\x00\x05\x00\x00\x00", 8));  // Ready (F->S) sent by S
  auto fut = closed.get_future();
  ASSERT_EQ(fut.wait_for(std::chrono::seconds(5)), std::future_status::ready);
  EXPECT_FALSE(fut.get().empty());
}

// --- the HTTPS server over real loopback TLS --------------------------------------------------

class EchoHandler : public RequestHandler {
 public:
  void handle(const HttpRequest& r, Responder& out) override {
    calls++;
    if (r.target == "/big") {
      // 3 MiB in 64 KiB chunks, as the log route sends it.
      out.startChunked(200, {{"X-Test", "1"}}, "application/octet-stream");
      std::string piece(size_t{64} * 1024, 'x');
      for (int i = 0; i < 48; i++) {
        piece[0] = static_cast<char>('a' + i % 26);
        if (!out.writeChunk(piece)) return;
      }
      out.finishChunked();
      return;
    }
    if (r.target == "/stream") {  // a finite log stream: its worker must leave the pool after
      out.willStream();
      if (!out.startChunked(200, {}, "application/octet-stream")) return;
      out.writeChunk("streamed");
      out.finishChunked();
      return;
    }
    if (r.target == "/endless") {  // a follower that never reads: writes must give up
      out.willStream();
      out.startChunked(200, {}, "application/octet-stream");
      std::string piece(size_t{64} * 1024, 'e');
      while (out.writeChunk(piece)) {
      }
      endless_ended = true;
      return;
    }
    if (r.target == "/block") {  // holds its worker until the test releases it
      std::unique_lock lock(block_mu);
      blocked++;
      block_cv.notify_all();
      block_cv.wait(lock, [&] { return released; });
    }
    // A slow handler is what /slow tests (a worker held busy), not a wait for an event.
    if (r.target == "/slow") std::this_thread::sleep_for(std::chrono::milliseconds(300));
    out.send(200, {}, "text/plain",
             r.method + " " + r.target + " " + std::to_string(r.body.size()) + " " +
                 r.authorization + " " + r.client_addr);
  }
  void release() {
    std::lock_guard lock(block_mu);
    released = true;
    block_cv.notify_all();
  }
  std::atomic<int> calls{0};
  std::atomic<bool> endless_ended{false};
  std::mutex block_mu;
  std::condition_variable block_cv;
  int blocked = 0;
  bool released = false;
};

std::string tempDir() {
  char tmpl[] = "/tmp/jwfrontXXXXXX";
  char* d = mkdtemp(tmpl);
  return d ? d : "";
}

class ServerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    Poco::Net::initializeSSL();
    dir_ = tempDir();
    std::string cmd =
        "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 "
        "-subj /CN=localhost -keyout " +
        dir_ + "/key.pem -out " + dir_ + "/cert.pem >/dev/null 2>&1";
    ASSERT_EQ(std::system(cmd.c_str()), 0);
  }
  static void TearDownTestSuite() {
    std::string cmd = "rm -rf " + dir_;
    if (std::system(cmd.c_str()) != 0) ADD_FAILURE() << cmd;
  }

  void start(ServerLimits limits) {
    listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ASSERT_GE(listen_fd_, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(::bind(listen_fd_, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    ASSERT_EQ(::listen(listen_fd_, 128), 0);
    socklen_t len = sizeof a;
    ASSERT_EQ(getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&a), &len), 0);
    port_ = ntohs(a.sin_port);
    auto ctx = makeTlsContext(dir_ + "/cert.pem", dir_ + "/key.pem");
    ASSERT_TRUE(ctx.ok()) << ctx.error().message;
    server_ = std::make_unique<TlsServer>(listen_fd_, ctx.value(), limits, handler_);
    ASSERT_TRUE(server_->start().ok());
  }
  void TearDown() override {
    handler_.release();
    server_.reset();
    if (listen_fd_ >= 0) ::close(listen_fd_);
  }

  Poco::Net::Context::Ptr clientContext() {
    Poco::Net::Context::Params p;
    p.verificationMode = Poco::Net::Context::VERIFY_NONE;
    return new Poco::Net::Context(Poco::Net::Context::TLS_CLIENT_USE, p);
  }

  // One request on a fresh or given session; returns status and body.
  std::pair<int, std::string> request(Poco::Net::HTTPSClientSession& s, const std::string& method,
                                      const std::string& path, const std::string& body = "") {
    Poco::Net::HTTPRequest req(method, path, Poco::Net::HTTPMessage::HTTP_1_1);
    req.setContentLength(static_cast<std::streamsize>(body.size()));
    s.sendRequest(req) << body;
    Poco::Net::HTTPResponse resp;
    std::istream& in = s.receiveResponse(resp);
    std::string out;
    Poco::StreamCopier::copyToString(in, out);
    last_headers_ = resp;
    return {resp.getStatus(), out};
  }

  int rawConnect() {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(port_));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    return fd;
  }

  // A TLS connection for raw bytes; SSL_read/SSL_write through Poco's socket.
  std::unique_ptr<Poco::Net::SecureStreamSocket> tlsConnect() {
    auto sock = std::make_unique<Poco::Net::SecureStreamSocket>(clientContext());
    sock->connect(Poco::Net::SocketAddress("127.0.0.1", static_cast<Poco::UInt16>(port_)));
    sock->setReceiveTimeout(Poco::Timespan(10, 0));
    return sock;
  }
  struct RawReply {
    std::string bytes;
    bool closed = false;  // the server closed the connection (EOF or reset) within 10 s
  };
  // Reads until the server closes, or `until` appears, or 10 s pass.
  static RawReply readReply(Poco::Net::SecureStreamSocket& sock, const std::string& until = "") {
    RawReply r;
    char buf[4096];
    for (;;) {
      if (!until.empty() && r.bytes.find(until) != std::string::npos) return r;
      int n = 0;
      try {
        n = sock.receiveBytes(buf, sizeof buf);
      } catch (const Poco::TimeoutException&) {
        return r;
      } catch (const Poco::Exception&) {
        n = 0;  // a reset after the answer: closed as well
      }
      if (n < 0) return r;  // Poco 1.11: a TLS receive that timed out
      if (n == 0) {
        r.closed = true;
        return r;
      }
      r.bytes.append(buf, static_cast<size_t>(n));
    }
  }
  RawReply rawTls(const std::string& bytes) {
    auto sock = tlsConnect();
    sock->sendBytes(bytes.data(), static_cast<int>(bytes.size()));
    return readReply(*sock);
  }

  static std::string dir_;
  EchoHandler handler_;
  int listen_fd_ = -1;
  int port_ = 0;
  std::unique_ptr<TlsServer> server_;
  Poco::Net::HTTPResponse last_headers_;
};
std::string ServerTest::dir_;

TEST_F(ServerTest, KeepAliveRequestsAndBodies) {
  start(ServerLimits{});
  Poco::Net::HTTPSClientSession s("127.0.0.1", static_cast<Poco::UInt16>(port_), clientContext());
  s.setKeepAlive(true);
  auto [st, body] = request(s, "GET", "/a?b=c");
  EXPECT_EQ(st, 200);
  EXPECT_EQ(body, "GET /a?b=c 0  127.0.0.1");
  EXPECT_EQ(last_headers_.get("Cache-Control"), "no-store");
  auto [st2, body2] = request(s, "POST", "/p", std::string(5000, 'z'));
  EXPECT_EQ(st2, 200);
  EXPECT_EQ(body2, "POST /p 5000  127.0.0.1");
  EXPECT_EQ(handler_.calls.load(), 2);
}

TEST_F(ServerTest, OversizedBodyIs413BeforeReading) {
  ServerLimits l;
  l.max_request_body = 1000;
  start(l);
  Poco::Net::HTTPSClientSession s("127.0.0.1", static_cast<Poco::UInt16>(port_), clientContext());
  auto [st, body] = request(s, "POST", "/p", std::string(1001, 'z'));
  EXPECT_EQ(st, 413);
  EXPECT_NE(body.find("too_large"), std::string::npos);
  EXPECT_EQ(handler_.calls.load(), 0);
  Poco::Net::HTTPSClientSession s2("127.0.0.1", static_cast<Poco::UInt16>(port_), clientContext());
  EXPECT_EQ(request(s2, "POST", "/p", std::string(1000, 'z')).first, 200);
  // Chunked bodies are cut off too.
  Poco::Net::HTTPSClientSession s3("127.0.0.1", static_cast<Poco::UInt16>(port_), clientContext());
  Poco::Net::HTTPRequest req("POST", "/p", Poco::Net::HTTPMessage::HTTP_1_1);
  req.setChunkedTransferEncoding(true);
  s3.sendRequest(req) << std::string(3000, 'y');
  Poco::Net::HTTPResponse resp;
  s3.receiveResponse(resp);
  EXPECT_EQ(resp.getStatus(), 413);
}

TEST_F(ServerTest, ChunkedStreamArrivesIntact) {
  start(ServerLimits{});
  Poco::Net::HTTPSClientSession s("127.0.0.1", static_cast<Poco::UInt16>(port_), clientContext());
  auto [st, body] = request(s, "GET", "/big");
  EXPECT_EQ(st, 200);
  ASSERT_EQ(body.size(), 48u * 64 * 1024);
  for (int i = 0; i < 48; i++) EXPECT_EQ(body[static_cast<size_t>(i) * 64 * 1024], 'a' + i % 26);
  EXPECT_TRUE(last_headers_.getChunkedTransferEncoding());
  // The connection is reusable after a complete chunked body.
  EXPECT_EQ(request(s, "GET", "/x").first, 200);
}

TEST_F(ServerTest, SilentConnectionsDoNotStarveTheWorkers) {
  ServerLimits l;
  l.threads = 2;  // far fewer workers than silent connections
  l.max_connections_per_client = 100;
  l.handshake_timeout_ms = 20'000;
  start(l);
  std::vector<int> silent;
  for (int i = 0; i < 40; i++) silent.push_back(rawConnect());
  // Measure only once the acceptor has taken all of them off the listening socket.
  ASSERT_TRUE(waitUntil([&] { return acceptQueueLength(port_) == 0; }, std::chrono::seconds(5)))
      << acceptQueueLength(port_) << " connections still in the accept queue";
  auto t0 = std::chrono::steady_clock::now();
  Poco::Net::HTTPSClientSession s("127.0.0.1", static_cast<Poco::UInt16>(port_), clientContext());
  EXPECT_EQ(request(s, "GET", "/ok").first, 200);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(2));
  for (int fd : silent) ::close(fd);
}

TEST_F(ServerTest, PerClientCapEvictsIdleConnections) {
  ServerLimits l;
  l.threads = 2;
  l.max_connections_per_client = 4;
  start(l);
  std::vector<int> silent;
  for (int i = 0; i < 10; i++) silent.push_back(rawConnect());
  // The oldest silent ones were closed to make room: reading them gives EOF.
  char c;
  waitUntil([&] { return ::recv(silent[0], &c, 1, MSG_DONTWAIT) == 0; }, std::chrono::seconds(5));
  EXPECT_EQ(::recv(silent[0], &c, 1, MSG_DONTWAIT), 0);
  Poco::Net::HTTPSClientSession s("127.0.0.1", static_cast<Poco::UInt16>(port_), clientContext());
  EXPECT_EQ(request(s, "GET", "/ok").first, 200);
  for (int fd : silent) ::close(fd);
}

TEST_F(ServerTest, HandshakeTimeoutClosesSilentConnections) {
  ServerLimits l;
  l.handshake_timeout_ms = 300;
  start(l);
  int fd = rawConnect();
  timeval tv{3, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  auto t0 = std::chrono::steady_clock::now();
  char c;
  EXPECT_EQ(::recv(fd, &c, 1, 0), 0);  // closed by the server
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(2));
  ::close(fd);
}

TEST_F(ServerTest, IdleKeepAliveConnectionsDoNotHoldWorkers) {
  ServerLimits l;
  l.threads = 1;
  start(l);
  // Ten clients each make one request and keep their connection open and idle.
  std::vector<std::unique_ptr<Poco::Net::HTTPSClientSession>> idle;
  for (int i = 0; i < 10; i++) {
    idle.push_back(std::make_unique<Poco::Net::HTTPSClientSession>(
        "127.0.0.1", static_cast<Poco::UInt16>(port_), clientContext()));
    idle.back()->setKeepAlive(true);
    ASSERT_EQ(request(*idle.back(), "GET", "/x").first, 200);
  }
  auto t0 = std::chrono::steady_clock::now();
  Poco::Net::HTTPSClientSession s("127.0.0.1", static_cast<Poco::UInt16>(port_), clientContext());
  EXPECT_EQ(request(s, "GET", "/ok").first, 200);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(2));
  // And the idle ones still work.
  EXPECT_EQ(request(*idle[0], "GET", "/again").first, 200);
}

TEST_F(ServerTest, StalledRequestIsDroppedAfterTheHeaderTimeout) {
  ServerLimits l;
  l.threads = 1;
  l.header_timeout_ms = 500;
  start(l);
  Poco::Net::SecureStreamSocket sock(clientContext());
  sock.connect(Poco::Net::SocketAddress("127.0.0.1", static_cast<Poco::UInt16>(port_)));
  std::string half = "GET /x HTTP/1.1\r\nHost: a\r\n";  // never finished
  sock.sendBytes(half.data(), static_cast<int>(half.size()));
  sock.setReceiveTimeout(Poco::Timespan(5, 0));
  auto t0 = std::chrono::steady_clock::now();
  char buf[64];
  int n = -1;
  try {
    n = sock.receiveBytes(buf, sizeof buf);
  } catch (const Poco::Exception&) {
    n = 0;  // reset by the server: dropped too
  }
  // Closed, or answered with a 4xx before closing.
  if (n > 0) {
    EXPECT_EQ(std::string(buf, 10), "HTTP/1.1 4");
  }
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(3));
  // The only worker is free again.
  Poco::Net::HTTPSClientSession s("127.0.0.1", static_cast<Poco::UInt16>(port_), clientContext());
  EXPECT_EQ(request(s, "GET", "/ok").first, 200);
}

TEST_F(ServerTest, MalformedHttpIs400) {
  start(ServerLimits{});
  Poco::Net::SecureStreamSocket sock(clientContext());
  sock.connect(Poco::Net::SocketAddress("127.0.0.1", static_cast<Poco::UInt16>(port_)));
  std::string junk = "GARBAGE\r\n\r\n";
  sock.sendBytes(junk.data(), static_cast<int>(junk.size()));
  char buf[512];
  int n = sock.receiveBytes(buf, sizeof buf);
  ASSERT_GT(n, 0);
  EXPECT_EQ(std::string(buf, static_cast<size_t>(n)).substr(0, 12), "HTTP/1.1 400");
}

// Each rule of strict HTTP/1.1, sent as raw bytes over TLS: a 400 that says it closes, then the
// close, and the handler never ran.
TEST_F(ServerTest, StrictHttpRulesAre400AndClose) {
  start(ServerLimits{});
  const std::string host = "Host: a\r\n";
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"Content-Length with Transfer-Encoding",
       "POST /p HTTP/1.1\r\n" + host +
           "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"},
      {"two Content-Length",
       "POST /p HTTP/1.1\r\n" + host + "Content-Length: 1\r\nContent-Length: 2\r\n\r\nab"},
      {"negative length", "POST /p HTTP/1.1\r\n" + host + "Content-Length: -1\r\n\r\n"},
      {"signed length", "POST /p HTTP/1.1\r\n" + host + "Content-Length: +2\r\n\r\nab"},
      {"Transfer-Encoding gzip", "POST /p HTTP/1.1\r\n" + host + "Transfer-Encoding: gzip\r\n\r\n"},
      {"obs-fold", "GET /x HTTP/1.1\r\n" + host + "X-A: 1\r\n folded\r\n\r\n"},
      {"bare LF", "GET /x HTTP/1.1\n" + host + "\n"},
      {"invalid header name", "GET /x HTTP/1.1\r\n" + host + "X A: 1\r\n\r\n"},
      {"request line", "GET /x  HTTP/1.1\r\n" + host + "\r\n"},
      {"HTTP/1.2", "GET /x HTTP/1.2\r\n" + host + "\r\n"},
      {"no Host", "GET /x HTTP/1.1\r\n\r\n"},
  };
  for (const auto& [what, bytes] : cases) {
    RawReply r = rawTls(bytes);
    EXPECT_EQ(r.bytes.substr(0, 12), "HTTP/1.1 400") << what << ": " << r.bytes;
    EXPECT_NE(r.bytes.find("Connection: Close"), std::string::npos) << what;
    EXPECT_NE(r.bytes.find("\"bad_request\""), std::string::npos) << what;
    EXPECT_TRUE(r.closed) << what;
  }
  EXPECT_EQ(handler_.calls.load(), 0);
  EXPECT_EQ(server_->counters().bad_requests.load(), cases.size());
}

// A request a lenient parser would split into two (CL.TE and TE.CL smuggling): the second is
// never served, whatever the order of the headers.
TEST_F(ServerTest, SmuggledSecondRequestIsNeverServed) {
  start(ServerLimits{});
  for (const std::string& framing :
       {std::string("Content-Length: 6\r\nTransfer-Encoding: chunked\r\n"),
        std::string("Transfer-Encoding: chunked\r\nContent-Length: 6\r\n")}) {
    RawReply r = rawTls("POST /first HTTP/1.1\r\nHost: a\r\n" + framing +
                        "\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n");
    EXPECT_EQ(r.bytes.substr(0, 12), "HTTP/1.1 400") << r.bytes;
    EXPECT_EQ(r.bytes.find("HTTP/1.1", 1), std::string::npos) << "a second answer: " << r.bytes;
    EXPECT_TRUE(r.closed);
  }
  EXPECT_EQ(handler_.calls.load(), 0);
}

TEST_F(ServerTest, HeadAnswersHeadersOnly) {
  start(ServerLimits{});
  auto sock = tlsConnect();
  // HEAD, then a GET pipelined behind it: the GET's answer must start right after the head.
  std::string two = "HEAD /h HTTP/1.1\r\nHost: a\r\n\r\nGET /g HTTP/1.1\r\nHost: a\r\n\r\n";
  sock->sendBytes(two.data(), static_cast<int>(two.size()));
  RawReply r = readReply(*sock, "127.0.0.1");
  size_t second = r.bytes.find("HTTP/1.1 200", 1);
  ASSERT_NE(second, std::string::npos) << r.bytes;
  std::string head = r.bytes.substr(0, second);
  EXPECT_EQ(head.substr(0, 12), "HTTP/1.1 200");
  EXPECT_NE(head.find("Content-Length: 19"), std::string::npos) << head;  // "GET /h 0  127.0.0.1"
  EXPECT_EQ(head.substr(head.size() - 4), "\r\n\r\n");                    // no body after it
  EXPECT_NE(r.bytes.find("GET /g 0  127.0.0.1"), std::string::npos);
  // A stream answered to HEAD is its head only, and the connection stays usable.
  std::string stream =
      "HEAD /stream HTTP/1.1\r\nHost: a\r\n\r\nGET /after HTTP/1.1\r\nHost: a\r\n\r\n";
  sock->sendBytes(stream.data(), static_cast<int>(stream.size()));
  RawReply s = readReply(*sock, "GET /after");
  EXPECT_EQ(s.bytes.find("streamed"), std::string::npos) << s.bytes;
  EXPECT_NE(s.bytes.find("Transfer-Encoding: chunked"), std::string::npos) << s.bytes;
}

TEST_F(ServerTest, ExpectContinueWorksAndOversizedIsRefusedFirst) {
  ServerLimits l;
  l.max_request_body = 100;
  start(l);
  auto sock = tlsConnect();
  std::string head =
      "POST /c HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n";
  sock->sendBytes(head.data(), static_cast<int>(head.size()));
  RawReply interim = readReply(*sock, "\r\n\r\n");
  EXPECT_EQ(interim.bytes, "HTTP/1.1 100 Continue\r\n\r\n");
  sock->sendBytes("hello", 5);
  RawReply r = readReply(*sock, "127.0.0.1");
  EXPECT_EQ(r.bytes.substr(0, 12), "HTTP/1.1 200") << r.bytes;
  EXPECT_NE(r.bytes.find("POST /c 5"), std::string::npos);
  // Too large: 413 at once, no 100 Continue, and the body is never waited for.
  RawReply big =
      rawTls("POST /c HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 101\r\n\r\n");
  EXPECT_EQ(big.bytes.substr(0, 12), "HTTP/1.1 413") << big.bytes;
  EXPECT_TRUE(big.closed);
  // An expectation we do not know: 417.
  RawReply odd =
      rawTls("POST /c HTTP/1.1\r\nHost: a\r\nExpect: magic\r\nContent-Length: 1\r\n\r\nx");
  EXPECT_EQ(odd.bytes.substr(0, 12), "HTTP/1.1 417") << odd.bytes;
}

TEST_F(ServerTest, OversizedHeadIs431) {
  ServerLimits l;
  l.max_request_head = 1024;
  start(l);
  RawReply r =
      rawTls("GET /x HTTP/1.1\r\nHost: a\r\nX-Big: " + std::string(2000, 'b') + "\r\n\r\n");
  EXPECT_EQ(r.bytes.substr(0, 12), "HTTP/1.1 431") << r.bytes;
  EXPECT_TRUE(r.closed);
}

TEST_F(ServerTest, SlowBodyGets408AndCounts) {
  ServerLimits l;
  l.body_timeout_ms = 800;
  start(l);
  auto sock = tlsConnect();
  std::string head = "POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\nabc";
  sock->sendBytes(head.data(), static_cast<int>(head.size()));
  auto t0 = std::chrono::steady_clock::now();
  RawReply r = readReply(*sock);
  EXPECT_EQ(r.bytes.substr(0, 12), "HTTP/1.1 408") << r.bytes;
  EXPECT_NE(r.bytes.find("\"timeout\""), std::string::npos);
  EXPECT_TRUE(r.closed);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(5));
  EXPECT_EQ(server_->counters().body_timeouts.load(), 1u);
  EXPECT_EQ(handler_.calls.load(), 0);
}

TEST_F(ServerTest, BodyUnderTheMinimumRateGets408) {
  ServerLimits l;
  l.min_receive_rate = 1 << 20;  // no client trickling a byte at a time keeps up with this
  start(l);
  auto sock = tlsConnect();
  std::string head = "POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 100000\r\n\r\n";
  sock->sendBytes(head.data(), static_cast<int>(head.size()));
  // A byte every 100 ms until the answer is there to read, from this one thread: a TLS
  // connection must not be written by one thread while another reads it (a second thread did
  // that here once, and under load its reads came back empty).
  for (int i = 0; i < 600; i++) {
    if (sock->poll(Poco::Timespan(0, 100'000), Poco::Net::Socket::SELECT_READ)) break;
    try {
      sock->sendBytes("x", 1);
    } catch (const Poco::Exception&) {
      break;
    }
  }
  RawReply r = readReply(*sock);
  EXPECT_EQ(r.bytes.substr(0, 12), "HTTP/1.1 408") << r.bytes;
  EXPECT_NE(r.bytes.find("minimum rate"), std::string::npos);
  EXPECT_EQ(server_->counters().slow_bodies.load(), 1u);
}

TEST_F(ServerTest, HeaderTimeoutClosesASlowHeadAndCounts) {
  ServerLimits l;
  l.header_timeout_ms = 500;
  start(l);
  auto sock = tlsConnect();
  sock->sendBytes("GET /x HT", 9);
  RawReply r = readReply(*sock);
  EXPECT_TRUE(r.closed);
  EXPECT_TRUE(r.bytes.empty()) << r.bytes;
  EXPECT_TRUE(waitUntil([&] { return server_->counters().header_timeouts.load() == 1; },
                        std::chrono::seconds(5)));
}

// Parses a status line and the Retry-After of an over-cap answer.
void expectOverCapAnswer(const std::string& bytes, int status) {
  std::string line = "HTTP/1.1 " + std::to_string(status);
  EXPECT_EQ(bytes.substr(0, line.size()), line) << bytes;
  EXPECT_NE(bytes.find("Retry-After: "), std::string::npos) << bytes;
  EXPECT_NE(bytes.find("Connection: Close"), std::string::npos) << bytes;
  EXPECT_NE(bytes.find("{\"error\":{\"code\":"), std::string::npos) << bytes;
}

TEST_F(ServerTest, OverPerClientCapIs429WithRetryAfter) {
  ServerLimits l;
  l.max_connections_per_client = 2;
  start(l);
  // Two connections in the middle of a request: never evicted for a newcomer.
  std::vector<std::unique_ptr<Poco::Net::SecureStreamSocket>> busy;
  for (int i = 0; i < 2; i++) {
    busy.push_back(tlsConnect());
    busy.back()->sendBytes("GET /x HTTP/1.1\r\n", 17);
  }
  RawReply r = rawTls("GET /x HTTP/1.1\r\nHost: a\r\n\r\n");
  expectOverCapAnswer(r.bytes, 429);
  EXPECT_TRUE(r.closed);
  EXPECT_GE(server_->counters().over_capacity.load(), 1u);
}

TEST_F(ServerTest, OverTotalCapIs503WithRetryAfter) {
  ServerLimits l;
  l.max_connections = 2;
  start(l);
  std::vector<std::unique_ptr<Poco::Net::SecureStreamSocket>> busy;
  for (int i = 0; i < 2; i++) {
    busy.push_back(tlsConnect());
    busy.back()->sendBytes("GET /x HTTP/1.1\r\n", 17);
  }
  RawReply r = rawTls("GET /x HTTP/1.1\r\nHost: a\r\n\r\n");
  expectOverCapAnswer(r.bytes, 503);
}

TEST_F(ServerTest, FullWorkerQueueIs503WithRetryAfter) {
  ServerLimits l;
  l.threads = 1;
  l.max_queued_requests = 1;
  start(l);
  auto first = tlsConnect();
  std::string block = "GET /block HTTP/1.1\r\nHost: a\r\n\r\n";
  first->sendBytes(block.data(), static_cast<int>(block.size()));
  {
    std::unique_lock lock(handler_.block_mu);
    ASSERT_TRUE(handler_.block_cv.wait_for(lock, std::chrono::seconds(10),
                                           [&] { return handler_.blocked == 1; }));
  }
  // The only worker is held: one request may wait in the queue, the one after it may not.
  auto second = tlsConnect();
  auto third = tlsConnect();
  second->sendBytes(block.data(), static_cast<int>(block.size()));
  third->sendBytes(block.data(), static_cast<int>(block.size()));
  RawReply refused = readReply(*third, "}}");
  RawReply* answer = &refused;
  RawReply other;
  if (refused.bytes.substr(0, 12) != "HTTP/1.1 503") {  // the two raced: the second was refused
    other = readReply(*second, "}}");
    answer = &other;
  }
  expectOverCapAnswer(answer->bytes, 503);
  EXPECT_EQ(server_->counters().queue_full.load(), 1u);
  handler_.release();
}

TEST_F(ServerTest, StreamWorkersLeaveThePoolWhenTheirStreamEnds) {
  ServerLimits l;
  l.threads = 2;
  start(l);
  for (int i = 0; i < 5; i++) {
    Poco::Net::HTTPSClientSession s("127.0.0.1", static_cast<Poco::UInt16>(port_), clientContext());
    EXPECT_EQ(request(s, "GET", "/stream"), std::make_pair(200, std::string("streamed")));
  }
  EXPECT_TRUE(waitUntil([&] { return server_->workerThreads() == 2; }, std::chrono::seconds(10)))
      << server_->workerThreads() << " workers";
}

TEST_F(ServerTest, FollowerThatNeverReadsIsCutAfterTheSendTimeout) {
  ServerLimits l;
  l.threads = 1;
  l.send_timeout_ms = 500;
  start(l);
  auto sock = tlsConnect();
  std::string req = "GET /endless HTTP/1.1\r\nHost: a\r\n\r\n";
  sock->sendBytes(req.data(), static_cast<int>(req.size()));
  // Never read: the socket buffers fill, the write times out, the stream and its worker end.
  EXPECT_TRUE(waitUntil([&] { return handler_.endless_ended.load(); }, std::chrono::seconds(20)));
  EXPECT_TRUE(waitUntil([&] { return server_->workerThreads() == 1; }, std::chrono::seconds(10)));
  Poco::Net::HTTPSClientSession s("127.0.0.1", static_cast<Poco::UInt16>(port_), clientContext());
  EXPECT_EQ(request(s, "GET", "/ok").first, 200);
}

TEST_F(ServerTest, BufferBudgetPausesReadsWithoutLosingRequests) {
  ServerLimits l;
  l.max_buffered_bytes = 4096;
  l.body_timeout_ms = 1500;
  start(l);
  // One upload holds more than the whole budget, then stalls: everyone's reads pause until its
  // body deadline frees the budget; the other request is then served, late but intact.
  auto hog = tlsConnect();
  std::string head =
      "POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 100000\r\n\r\n" + std::string(8000, 'h');
  hog->sendBytes(head.data(), static_cast<int>(head.size()));
  Poco::Net::HTTPSClientSession s("127.0.0.1", static_cast<Poco::UInt16>(port_), clientContext());
  auto [st, body] = request(s, "POST", "/q", std::string(3000, 'q'));
  EXPECT_EQ(st, 200);
  EXPECT_EQ(body, "POST /q 3000  127.0.0.1");
  RawReply r = readReply(*hog);
  EXPECT_EQ(r.bytes.substr(0, 12), "HTTP/1.1 408") << r.bytes;
}

TEST(ClientAddresses, Ipv6CountsPerSlash64) {
  auto v6 = [](const char* text) {
    sockaddr_storage ss{};
    auto& a = reinterpret_cast<sockaddr_in6&>(ss);
    a.sin6_family = AF_INET6;
    EXPECT_EQ(inet_pton(AF_INET6, text, &a.sin6_addr), 1);
    return clientAddress(ss);
  };
  EXPECT_EQ(v6("2001:db8:1:2::5").key, "2001:db8:1:2::/64");
  EXPECT_EQ(v6("2001:db8:1:2:ffff:1:2:3").key, "2001:db8:1:2::/64");
  EXPECT_EQ(v6("2001:db8:1:2:ffff:1:2:3").text, "2001:db8:1:2:ffff:1:2:3");
  EXPECT_NE(v6("2001:db8:1:3::5").key, v6("2001:db8:1:2::5").key);
  EXPECT_EQ(v6("::ffff:192.0.2.7").key, "192.0.2.7");  // IPv4-mapped: the IPv4 address
  sockaddr_storage ss{};
  auto& a4 = reinterpret_cast<sockaddr_in&>(ss);
  a4.sin_family = AF_INET;
  a4.sin_addr.s_addr = htonl(0x7f000002);
  EXPECT_EQ(clientAddress(ss).key, "127.0.0.2");
}

}  // namespace
}  // namespace jw::frontend

namespace jw::frontend {
namespace {

TEST(AccessLog, SampledAdmitsAtMostItsRateAndAllOrOffDoNotCount) {
  AccessLog sampled(config::Settings::AccessLog::kSampled, 5);
  int admitted = 0;
  for (int i = 0; i < 1000; i++) admitted += sampled.admit() ? 1 : 0;
  // One second's worth at once, plus what the bucket refilled while the loop ran.
  EXPECT_GE(admitted, 5);
  EXPECT_LE(admitted, 7);
  AccessLog all(config::Settings::AccessLog::kAll, 1);
  AccessLog off(config::Settings::AccessLog::kOff, 1000);
  for (int i = 0; i < 100; i++) {
    EXPECT_TRUE(all.admit());
    EXPECT_FALSE(off.admit());
  }
}

TEST(MetricsText, EveryFamilyHasHelpAndTypeAndHistogramsAreCumulative) {
  protocol::MetricsReply m;
  m.users = {{"alice", 2, {1, 0, 0, 1}}, {"", 1, {0, 0, 0, 0}}};
  m.start_latency.buckets.assign(std::size(protocol::kStartLatencyBuckets) + 1, 0);
  m.start_latency.buckets[0] = 1;
  m.start_latency.buckets[3] = 2;
  m.start_latency.sum_us = 25'000;
  m.loop_lag.buckets.assign(std::size(protocol::kLoopLagBuckets) + 1, 0);
  RequestMetrics rm(std::array<std::string_view, 2>{"/v1/jobs", "unmatched"});
  rm.record("/v1/jobs", "POST", 201, 1500);
  rm.record("/nowhere", "DELETE", 404, 10);
  FrontendFigures f;
  f.routes = rm.snapshot();
  std::string text = renderMetrics(m, f);
  EXPECT_NE(text.find("jobworker_job_starts_total{user=\"(other)\"} 1\n"), std::string::npos);
  EXPECT_NE(text.find("jobworker_job_ends_total{user=\"alice\",outcome=\"oom\"} 1\n"),
            std::string::npos);
  EXPECT_NE(text.find("jobworker_job_start_latency_seconds_bucket{le=\"0.0025\"} 1\n"),
            std::string::npos);
  EXPECT_NE(text.find("jobworker_job_start_latency_seconds_bucket{le=\"0.01\"} 3\n"),
            std::string::npos);
  EXPECT_NE(text.find("jobworker_job_start_latency_seconds_bucket{le=\"+Inf\"} 3\n"),
            std::string::npos);
  EXPECT_NE(text.find("jobworker_job_start_latency_seconds_sum 0.025\n"), std::string::npos);
  EXPECT_NE(text.find("jobworker_http_requests_total{route=\"/v1/jobs\",method=\"POST\","
                      "status_class=\"2xx\"} 1\n"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("jobworker_http_requests_total{route=\"unmatched\",method=\"other\","
                      "status_class=\"4xx\"} 1\n"),
            std::string::npos)
      << text;
  // No family without its HELP and TYPE lines just before its first sample.
  std::istringstream in(text);
  std::string line, typed;
  while (std::getline(in, line)) {
    if (line.rfind("# TYPE ", 0) == 0) {
      typed = line.substr(7, line.find(' ', 7) - 7);
      continue;
    }
    if (line.rfind("# HELP ", 0) == 0) continue;
    EXPECT_EQ(line.rfind(typed, 0), 0u) << line << " outside its family " << typed;
  }
}

}  // namespace
}  // namespace jw::frontend
