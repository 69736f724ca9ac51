// Unit tests of the output logs' time index: marks at most one per spacing, flushes at most once a
// second, coarsening at the cap, the file round trip and damaged files, the lookups, RFC 3339
// stamps, line prefixes across chunks, and tail/next-line scans. Runs in the unit test process.
#include "supervisor/jobs/time_index.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

namespace jw::supervisor {
namespace {

class TimeIndexTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string t = "/tmp/jw-time-index-XXXXXX";
    ASSERT_NE(mkdtemp(t.data()), nullptr);
    dir_ = t;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string path(const std::string& name) const { return dir_ + "/" + name; }
  std::string write(const std::string& name, const std::string& bytes) const {
    std::ofstream(path(name), std::ios::binary) << bytes;
    return path(name);
  }
  std::string dir_;
};

constexpr int64_t kT0 = 1796180000000;  // 2026-12-01T...Z, any fixed wall-clock time

TEST_F(TimeIndexTest, AMarkTakesArrivalsForOneSpacingThenANewOneBegins) {
  TimeIndex idx(path("output.times"));
  idx.note(100, kT0);
  idx.note(200, kT0 + 4);  // same mark: its end and time move
  idx.note(300, kT0 + 9);
  idx.note(400, kT0 + 10);  // a spacing after the mark began: a new one
  idx.note(400, kT0 + 30);  // no new bytes: no mark
  ASSERT_EQ(idx.marks().size(), 2u);
  EXPECT_EQ(idx.marks()[0], (TimeMark{300, kT0 + 9}));
  EXPECT_EQ(idx.marks()[1], (TimeMark{400, kT0 + 10}));
  EXPECT_EQ(arrivalOf(idx.marks(), 0), kT0 + 9);
  EXPECT_EQ(arrivalOf(idx.marks(), 299), kT0 + 9);
  EXPECT_EQ(arrivalOf(idx.marks(), 300), kT0 + 10);
  EXPECT_EQ(arrivalOf(idx.marks(), 400), std::nullopt);
}

TEST_F(TimeIndexTest, FlushesAtMostOnceASecondAndTheFileRoundTrips) {
  TimeIndex idx(path("output.times"));
  for (int i = 1; i <= 250; i++) idx.note(static_cast<uint64_t>(i) * 10, kT0 + int64_t{i} * 10);
  // Flushed a second after the first byte and a second after that: not the newest marks.
  EXPECT_LT(TimeIndex::load(path("output.times")).size(), idx.marks().size());
  idx.flush(kT0 + 5000);
  EXPECT_EQ(TimeIndex::load(path("output.times")), idx.marks());
  idx.note(5000, kT0 + 6000);
  idx.flush(kT0 + 7000);  // appended
  EXPECT_EQ(TimeIndex::load(path("output.times")), idx.marks());
}

TEST_F(TimeIndexTest, AtTheCapItKeepsEveryOtherMarkAndDoublesTheSpacing) {
  TimeIndex idx(path("output.times"));
  uint64_t size = 0;
  int64_t t = kT0;
  for (size_t i = 0; i < TimeIndex::kMaxMarks * 3; i++) {
    size += 7;
    t += 10;
    idx.note(size, t);
  }
  EXPECT_LE(idx.marks().size(), TimeIndex::kMaxMarks);
  EXPECT_GT(idx.spacingMs(), TimeIndex::kMinSpacingMs);
  EXPECT_EQ(idx.marks().back(), (TimeMark{size, t}));
  for (size_t i = 1; i < idx.marks().size(); i++) {
    EXPECT_LT(idx.marks()[i - 1].end, idx.marks()[i].end);
    EXPECT_LE(idx.marks()[i].unix_ms - idx.marks()[i - 1].unix_ms, 2 * idx.spacingMs());
  }
  // Every byte's time is at most one spacing (plus the open mark's) late, never early.
  for (uint64_t off = 0; off < size; off += 997) {
    int64_t truth = kT0 + 10 * static_cast<int64_t>(off / 7 + 1);
    int64_t got = arrivalOf(idx.marks(), off).value();
    EXPECT_GE(got, truth);
    EXPECT_LE(got - truth, 2 * idx.spacingMs());
  }
  idx.flush(t + 1000);  // the stale file is rewritten whole
  EXPECT_EQ(TimeIndex::load(path("output.times")), idx.marks());
}

TEST_F(TimeIndexTest, ADamagedFileEndsTheMarksWhereItBreaks) {
  EXPECT_TRUE(TimeIndex::load(path("missing")).empty());
  EXPECT_TRUE(TimeIndex::load(write("junk", "not an index at all")).empty());
  TimeIndex idx(path("good"));
  idx.note(10, kT0);
  idx.note(20, kT0 + 50);
  idx.flush(kT0 + 2000);
  std::string good;
  {
    std::ifstream in(path("good"), std::ios::binary);
    good.assign(std::istreambuf_iterator<char>(in), {});
  }
  EXPECT_EQ(TimeIndex::load(write("torn", good.substr(0, good.size() - 3))).size(), 1u);
  std::string backwards = good + good.substr(8, 16);  // a mark that goes back to end 10
  EXPECT_EQ(TimeIndex::load(write("backwards", backwards)).size(), 2u);
}

TEST_F(TimeIndexTest, SinceStartsWhereTheFirstLaterMarkBegins) {
  std::vector<TimeMark> marks = {{100, kT0}, {250, kT0 + 1000}, {400, kT0 + 2000}};
  EXPECT_EQ(firstOffsetSince(marks, kT0 - 5, 400), 0u);
  EXPECT_EQ(firstOffsetSince(marks, kT0, 400), 0u);
  EXPECT_EQ(firstOffsetSince(marks, kT0 + 1, 400), 100u);
  EXPECT_EQ(firstOffsetSince(marks, kT0 + 1500, 400), 250u);
  EXPECT_EQ(firstOffsetSince(marks, kT0 + 9000, 400), 400u);
  EXPECT_EQ(firstOffsetSince({}, kT0, 0), 0u);
}

TEST(Rfc3339Ms, FixedWidthUtcWithMilliseconds) {
  EXPECT_EQ(rfc3339Ms(0), "1970-01-01T00:00:00.000Z");
  EXPECT_EQ(rfc3339Ms(1796182466123), "2026-12-02T03:34:26.123Z");
  EXPECT_EQ(rfc3339Ms(-1), "1969-12-31T23:59:59.999Z");
  EXPECT_EQ(rfc3339Ms(1796182466123).size(), kTimestampWidth);
}

std::string stamped(std::string_view data, uint64_t offset, bool at_line_start,
                    const std::vector<TimeMark>& marks, int64_t unmarked_ms,
                    size_t max_out = 1 << 20, size_t* consumed_out = nullptr) {
  size_t consumed = 0;
  std::string out =
      withTimestamps(data, offset, at_line_start, marks, unmarked_ms, max_out, &consumed);
  if (consumed_out != nullptr) *consumed_out = consumed;
  return out;
}

TEST(WithTimestamps, EachLineThatBeginsInTheChunkGetsItsFirstBytesTime) {
  std::vector<TimeMark> marks = {{4, kT0}, {8, kT0 + 1}};
  std::string a = rfc3339Ms(kT0) + " ", b = rfc3339Ms(kT0 + 1) + " ", u = rfc3339Ms(kT0 + 9) + " ";
  EXPECT_EQ(stamped("ab\ncd\nef\n", 0, true, marks, kT0 + 9), a + "ab\n" + a + "cd\n" + b + "ef\n");
  // A chunk that starts inside a line: that line's prefix went out with its beginning.
  EXPECT_EQ(stamped("d\nef", 4, false, marks, kT0 + 9), "d\n" + b + "ef");
  // Past the marks: the fallback time.
  EXPECT_EQ(stamped("xy\n", 8, true, marks, kT0 + 9), u + "xy\n");
  EXPECT_EQ(stamped("", 3, true, marks, kT0), "");
}

TEST(WithTimestamps, AtMostMaxOutBytesOfWholeLinesUnlessOneLineIsLonger) {
  std::vector<TimeMark> marks = {{100, kT0}};
  std::string p = rfc3339Ms(kT0) + " ";
  size_t consumed = 0;
  // Two lines of 3 bytes each take 2 x 28; a budget of 60 carries both, 40 only the first.
  EXPECT_EQ(stamped("ab\ncd\n", 0, true, marks, kT0, 60, &consumed), p + "ab\n" + p + "cd\n");
  EXPECT_EQ(consumed, 6u);
  EXPECT_EQ(stamped("ab\ncd\n", 0, true, marks, kT0, 40, &consumed), p + "ab\n");
  EXPECT_EQ(consumed, 3u);
  // One line longer than the budget: split, its first part with the prefix.
  EXPECT_EQ(stamped("abcdefgh\n", 0, true, marks, kT0, 29, &consumed), p + "abcd");
  EXPECT_EQ(consumed, 4u);
  EXPECT_EQ(stamped("efgh\nx", 4, false, marks, kT0, 1 << 20, &consumed), "efgh\n" + p + "x");
  EXPECT_EQ(consumed, 6u);
}

TEST_F(TimeIndexTest, TailStartFindsTheNthLastLine) {
  std::string log = write("log", "one\ntwo\nthree\nfour");
  EXPECT_EQ(tailStart(log, 18, 1, 1 << 20).value(), 14u);  // "four" (no final newline) counts
  EXPECT_EQ(tailStart(log, 18, 2, 1 << 20).value(), 8u);
  EXPECT_EQ(tailStart(log, 18, 9, 1 << 20).value(), 0u);
  EXPECT_EQ(tailStart(log, 14, 1, 1 << 20).value(), 8u);  // "three\n": its newline ends it
  EXPECT_EQ(tailStart(log, 18, 0, 1 << 20).value(), 18u);
  // A bounded scan that finds too few newlines starts at the first line start it saw.
  EXPECT_EQ(tailStart(log, 18, 9, 6).value(), 14u);
  // Lines longer than a scan block.
  std::string big(200000, 'x');
  std::string log2 = write("log2", big + "\n" + big + "\n");
  EXPECT_EQ(tailStart(log2, 400002, 1, 1 << 20).value(), 200001u);
  EXPECT_FALSE(tailStart(path("missing"), 10, 1, 100).ok());
}

TEST_F(TimeIndexTest, NextLineStartMovesForwardToALineStart) {
  std::string log = write("log", "one\ntwo\nthree\n");
  EXPECT_EQ(nextLineStart(log, 0, 14, 100).value(), 0u);
  EXPECT_EQ(nextLineStart(log, 4, 14, 100).value(), 4u);
  EXPECT_EQ(nextLineStart(log, 5, 14, 100).value(), 8u);
  EXPECT_EQ(nextLineStart(log, 9, 14, 100).value(), 14u);
  EXPECT_EQ(nextLineStart(log, 20, 14, 100).value(), 14u);
}

}  // namespace
}  // namespace jw::supervisor
