// Unit tests of the strict HTTP/1.1 request intake (frontend/http/request_intake.h): framing,
// every strictness rule, caps, and that any split of the bytes gives the same result.
#include "frontend/http/request_intake.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace jw::frontend {
namespace {

using Phase = RequestIntake::Phase;

struct Fed {
  Phase phase;
  IntakeRequest request;
  IntakeError error;
  std::string rest;  // bytes not consumed (the next request)
};

// Feeds `wire` in pieces of `step` bytes, as non-blocking reads would deliver it.
Fed feedAll(const std::string& wire, size_t step = 1 << 20, IntakeLimits limits = {}) {
  RequestIntake in(limits);
  size_t i = 0;
  while (i < wire.size()) {
    std::string_view piece = std::string_view(wire).substr(i, step);
    size_t used = in.feed(piece);
    i += used;
    if (used < piece.size()) break;
  }
  Fed f{in.phase(), {}, in.error(), wire.substr(i)};
  if (f.phase == Phase::kComplete) f.request = in.take();
  return f;
}

TEST(RequestIntake, SimpleGetInAnySplit) {
  std::string wire = "GET /v1/jobs?all=true HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer x\r\n\r\n";
  for (size_t step : {1u, 2u, 5u, 1000u}) {
    Fed f = feedAll(wire, step);
    ASSERT_EQ(f.phase, Phase::kComplete) << step << " " << f.error.message;
    EXPECT_EQ(f.request.method, "GET");
    EXPECT_EQ(f.request.target, "/v1/jobs?all=true");
    EXPECT_EQ(f.request.authorization, "Bearer x");
    EXPECT_TRUE(f.request.keep_alive);
    EXPECT_TRUE(f.request.body.empty());
  }
}

TEST(RequestIntake, ContentLengthBodyAndPipelinedRest) {
  std::string wire =
      "POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhelloGET /n HTTP/1.1\r\n";
  for (size_t step : {1u, 3u, 1000u}) {
    Fed f = feedAll(wire, step);
    ASSERT_EQ(f.phase, Phase::kComplete) << f.error.message;
    EXPECT_EQ(f.request.body, "hello");
    EXPECT_EQ(f.rest, "GET /n HTTP/1.1\r\n");
  }
}

TEST(RequestIntake, ChunkedBodyWithExtensionsAndTrailers) {
  std::string wire =
      "POST /p HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\n"
      "5;name=value\r\nhello\r\n6 ; x\r\n world\r\n0\r\nX-Trailer: 1\r\n\r\nNEXT";
  for (size_t step : {1u, 4u, 1000u}) {
    Fed f = feedAll(wire, step);
    ASSERT_EQ(f.phase, Phase::kComplete) << f.error.message;
    EXPECT_EQ(f.request.body, "hello world");
    EXPECT_EQ(f.rest, "NEXT");
  }
}

TEST(RequestIntake, ConnectionAndVersions) {
  EXPECT_FALSE(
      feedAll("GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n").request.keep_alive);
  EXPECT_FALSE(feedAll("GET / HTTP/1.0\r\n\r\n").request.keep_alive);
  EXPECT_TRUE(feedAll("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").request.keep_alive);
  Fed e =
      feedAll("POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n");
  EXPECT_EQ(e.phase, Phase::kBody);
  RequestIntake in10(IntakeLimits{});
  in10.feed("POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n");
  EXPECT_EQ(in10.phase(), Phase::kBody);
  EXPECT_FALSE(in10.request().expect_continue);  // a 1.0 client never gets a 100
  RequestIntake in11(IntakeLimits{});
  in11.feed("POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-Continue\r\nContent-Length: 1\r\n\r\n");
  EXPECT_TRUE(in11.request().expect_continue);
  Fed g = feedAll("GET / HTTP/1.1\r\n\r\n");
  EXPECT_EQ(g.phase, Phase::kFailed);  // HTTP/1.1 needs a Host
}

// Every rule of RFC 9112 the intake enforces: a 400 (or the named status) and nothing served.
TEST(RequestIntake, StrictnessRules) {
  struct Case {
    const char* what;
    std::string wire;
    int status;
  };
  const std::string ok = "GET / HTTP/1.1\r\nHost: a\r\n";
  std::vector<Case> cases = {
      {"CL with TE",
       "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
       400},
      {"TE with CL",
       "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
       400},
      {"two CL", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc",
       400},
      {"CL list", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3, 3\r\n\r\nabc", 400},
      {"CL negative", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", 400},
      {"CL plus", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +3\r\n\r\nabc", 400},
      {"CL hex", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x3\r\n\r\nabc", 400},
      {"CL empty", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length:\r\n\r\n", 400},
      {"CL huge", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999\r\n\r\n",
       400},
      {"TE gzip", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", 400},
      {"TE gzip, chunked", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
       400},
      {"two TE",
       "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: "
       "chunked\r\n\r\n",
       400},
      {"TE in 1.0", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400},
      {"obs-fold", ok + "X-A: 1\r\n  continued\r\n\r\n", 400},
      {"obs-fold tab", ok + "X-A: 1\r\n\tcontinued\r\n\r\n", 400},
      {"bare LF in head", "GET / HTTP/1.1\nHost: a\n\n", 400},
      {"bare LF at end", ok + "\n", 400},
      {"bare CR", "GET / HTTP/1.1\rHost: a\r\n\r\n", 400},
      {"space before colon", ok + "X-A : 1\r\n\r\n", 400},
      {"bad name char", ok + "X(A): 1\r\n\r\n", 400},
      {"empty name", ok + ": 1\r\n\r\n", 400},
      {"no colon", ok + "XA\r\n\r\n", 400},
      {"NUL in value", ok + std::string("X-A: a\0b\r\n\r\n", 12), 400},
      {"two Host", ok + "Host: b\r\n\r\n", 400},
      {"version 1.2", "GET / HTTP/1.2\r\nHost: a\r\n\r\n", 400},
      {"version 2", "GET / HTTP/2.0\r\nHost: a\r\n\r\n", 400},
      {"lower-case version", "GET / http/1.1\r\nHost: a\r\n\r\n", 400},
      {"no version", "GET /\r\nHost: a\r\n\r\n", 400},
      {"two spaces", "GET  / HTTP/1.1\r\nHost: a\r\n\r\n", 400},
      {"trailing space", "GET / HTTP/1.1 \r\nHost: a\r\n\r\n", 400},
      {"tab separator", "GET\t/ HTTP/1.1\r\nHost: a\r\n\r\n", 400},
      {"absolute-form", "GET http://a/ HTTP/1.1\r\nHost: a\r\n\r\n", 400},
      {"bad method", "G(T / HTTP/1.1\r\nHost: a\r\n\r\n", 400},
      {"chunk bare LF",
       "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0;ext\n\r\n", 400},
      {"chunk size junk", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
       400},
      {"chunk signed", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n-1\r\n",
       400},
      {"chunk data too long",
       "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nab\r\n", 400},
      {"Expect other", "POST / HTTP/1.1\r\nHost: a\r\nExpect: 200-ok\r\nContent-Length: 1\r\n\r\nx",
       417},
  };
  for (const Case& c : cases) {
    for (size_t step : {1u, 1000u}) {
      Fed f = feedAll(c.wire, step);
      EXPECT_EQ(f.phase, Phase::kFailed) << c.what << " (step " << step << ")";
      EXPECT_EQ(f.error.status, c.status) << c.what << ": " << f.error.message;
      EXPECT_FALSE(f.error.message.empty()) << c.what;
    }
  }
}

TEST(RequestIntake, HeadAndBodyCaps) {
  IntakeLimits small{200, 10};
  Fed head = feedAll("GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + std::string(300, 'x') + "\r\n\r\n", 7,
                     small);
  EXPECT_EQ(head.phase, Phase::kFailed);
  EXPECT_EQ(head.error.status, 431);
  Fed cl = feedAll("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\n", 1, small);
  EXPECT_EQ(cl.error.status, 413);  // refused from the head, before any body byte
  Fed chunked = feedAll(
      "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n8\r\n12345678\r\n8\r\n", 1,
      small);
  EXPECT_EQ(chunked.error.status, 413);
  std::string many = "GET / HTTP/1.1\r\nHost: a\r\n";
  for (int i = 0; i < 120; i++) many += "X-" + std::to_string(i) + ": 1\r\n";
  EXPECT_EQ(feedAll(many + "\r\n").error.status, 431);
  Fed exact =
      feedAll("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n0123456789", 3, small);
  EXPECT_EQ(exact.phase, Phase::kComplete);
}

TEST(RequestIntake, SmugglingAttemptsNeverYieldASecondRequest) {
  // What a lenient parser would read as two requests is one refused request here.
  std::string smuggled =
      "POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"
      "0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n";
  Fed f = feedAll(smuggled, 1);
  EXPECT_EQ(f.phase, Phase::kFailed);
  EXPECT_EQ(f.error.status, 400);
}

TEST(RequestIntake, LeadingEmptyLinesAreToleratedAFew) {
  EXPECT_EQ(feedAll("\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n").phase, Phase::kComplete);
  EXPECT_EQ(feedAll("\r\n\r\n\r\n\r\n\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n").phase,
            Phase::kFailed);
}

TEST(RequestIntake, TakeStartsOver) {
  RequestIntake in(IntakeLimits{});
  std::string two = "GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\n";
  size_t used = in.feed(two);
  ASSERT_EQ(in.phase(), Phase::kComplete);
  EXPECT_EQ(in.take().target, "/1");
  EXPECT_EQ(in.phase(), Phase::kIdle);
  EXPECT_EQ(in.bufferedBytes(), 0u);
  in.feed(std::string_view(two).substr(used));
  ASSERT_EQ(in.phase(), Phase::kComplete);
  EXPECT_EQ(in.take().target, "/2");
}

}  // namespace
}  // namespace jw::frontend

namespace jw::frontend {
namespace {

bool streamsPut(std::string_view method, std::string_view target) {
  return method == "PUT" && target == "/upload";
}

// A streamed body: the head completes alone, the body (uncapped) comes out of feedStreamed in
// whatever pieces, and the next pipelined request is left over.
TEST(RequestIntake, StreamedChunkedBodyIsDecodedPieceByPieceWithoutTheCap) {
  IntakeLimits limits;
  limits.max_body_bytes = 4;  // the cap of buffered bodies: a streamed one ignores it
  limits.streams_body = &streamsPut;
  std::string body = "hello, streamed world";
  std::string wire = "PUT /upload HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n" +
                     body.substr(0, 5) + "\r\n10\r\n" + body.substr(5) + "\r\n0\r\n\r\nGET /";
  for (size_t step : {1u, 3u, 1000u}) {
    RequestIntake in(limits);
    size_t used = in.feed(wire);
    ASSERT_EQ(in.phase(), Phase::kComplete);
    IntakeRequest r = in.take();
    EXPECT_TRUE(r.streamed_body);
    EXPECT_TRUE(r.body.empty());
    std::string out;
    while (in.phase() == Phase::kBody && used < wire.size()) {
      used += in.feedStreamed(std::string_view(wire).substr(used, step), &out);
    }
    EXPECT_EQ(in.phase(), Phase::kComplete);
    EXPECT_EQ(out, body);
    EXPECT_EQ(wire.substr(used), "GET /");
  }
}

TEST(RequestIntake, StreamedBodyWithALengthAndBrokenFramingAreTold) {
  IntakeLimits limits;
  limits.max_body_bytes = 1;
  limits.streams_body = &streamsPut;
  RequestIntake in(limits);
  std::string wire = "PUT /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n0123456789";
  size_t used = in.feed(wire);
  ASSERT_EQ(in.phase(), Phase::kComplete);
  ASSERT_TRUE(in.take().streamed_body);
  std::string out;
  used += in.feedStreamed(std::string_view(wire).substr(used), &out);
  EXPECT_EQ(out, "0123456789");
  EXPECT_EQ(in.phase(), Phase::kComplete);

  RequestIntake bad(limits);
  std::string chunked =
      "PUT /upload HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n";
  used = bad.feed(chunked);
  ASSERT_TRUE(bad.take().streamed_body);
  bad.feedStreamed(std::string_view(chunked).substr(used), &out);
  EXPECT_EQ(bad.phase(), Phase::kFailed);
  // Other requests keep the buffered path and its cap.
  RequestIntake other(limits);
  other.feed("POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n");
  EXPECT_EQ(other.phase(), Phase::kFailed);
  EXPECT_EQ(other.error().status, 413);
}

}  // namespace
}  // namespace jw::frontend
