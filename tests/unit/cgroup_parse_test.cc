// Unit tests of the cgroupfs number parsing in supervisor/cgroup (parseU64 on std::from_chars,
// keyedValue, parsePids); runs in the unit suite, unprivileged.
#include <gtest/gtest.h>

#include "supervisor/cgroup/cgroup_impl.h"

namespace jw::supervisor::cg {
namespace {

TEST(CgroupParse, ParseU64TrimsWhitespaceAndRejectsTheRest) {
  EXPECT_EQ(parseU64("0"), 0u);
  EXPECT_EQ(parseU64("42\n"), 42u);
  EXPECT_EQ(parseU64(" \t7 \n"), 7u);
  EXPECT_EQ(parseU64("18446744073709551615"), UINT64_MAX);
  for (const char* bad :
       {"", " \n", "18446744073709551616", "-1", "+1", "1 2", "12a", "0x10", "max"}) {
    EXPECT_FALSE(parseU64(bad).has_value()) << bad;
  }
}

TEST(CgroupParse, KeyedValuesAndPids) {
  std::string_view events = "low 0\nhigh 3\nmax 12\noom 1\noom_kill 2\n";
  EXPECT_EQ(keyedValue(events, "oom_kill"), 2u);
  EXPECT_EQ(keyedValue(events, "oom"), 1u);
  EXPECT_FALSE(keyedValue(events, "oom_group_kill").has_value());
  EXPECT_EQ(parsePids("12\n0\n345\nnot-a-pid\n4294967296\n7"), (std::vector<pid_t>{12, 345, 7}));
}

}  // namespace
}  // namespace jw::supervisor::cg
