// Unit tests of the job event ring (supervisor/jobs/event_ring.h): numbering, what `since`
// covers once the ring drops its oldest, and filtered reads.
#include "supervisor/jobs/event_ring.h"

#include <gtest/gtest.h>

namespace jw::supervisor {
namespace {

protocol::JobEvent event(const std::string& owner) {
  protocol::JobEvent e;
  e.owner = owner;
  e.job_id = "id-" + owner;
  return e;
}

TEST(EventRing, NumbersConsecutivelyAndCoversOnlyWhatItStillHolds) {
  EventRing ring(3, 1000);
  EXPECT_TRUE(ring.covers(999));   // nothing yet: "after the floor" is everything
  EXPECT_FALSE(ring.covers(998));  // a number from before this ring
  for (int i = 0; i < 5; i++) EXPECT_EQ(ring.append(event("a")).seq, 1000U + i);
  EXPECT_EQ(ring.last(), 1004U);
  EXPECT_EQ(ring.floor(), 1001U);  // 1000 and 1001 were dropped: since 1001 is still whole
  EXPECT_FALSE(ring.covers(1000));
  EXPECT_TRUE(ring.covers(1001));
  EXPECT_TRUE(ring.covers(1004));
  EXPECT_FALSE(ring.covers(1005));  // not a number of this ring
  uint64_t next = 0;
  auto all = ring.after(
      1001, [](const protocol::JobEvent&) { return true; }, 10, &next);
  ASSERT_EQ(all.size(), 3U);
  EXPECT_EQ(all[0].seq, 1002U);
  EXPECT_EQ(next, 1004U);
}

TEST(EventRing, FilteredReadsAdvancePastWhatTheyDoNotShow) {
  EventRing ring(100, 1);
  for (const char* o : {"a", "b", "b", "a", "b"}) ring.append(event(o));
  uint64_t next = 0;
  auto mine = ring.after(
      0, [](const protocol::JobEvent& e) { return e.owner == "a"; }, 1, &next);
  ASSERT_EQ(mine.size(), 1U);
  EXPECT_EQ(mine[0].seq, 1U);
  EXPECT_EQ(next, 1U);
  mine = ring.after(
      next, [](const protocol::JobEvent& e) { return e.owner == "a"; }, 10, &next);
  ASSERT_EQ(mine.size(), 1U);
  EXPECT_EQ(mine[0].seq, 4U);
  EXPECT_EQ(next, 5U);  // the last event looked at, shown or not
  EXPECT_TRUE(ring.after(
                      next, [](const protocol::JobEvent&) { return true; }, 10, &next)
                  .empty());
}

}  // namespace
}  // namespace jw::supervisor
