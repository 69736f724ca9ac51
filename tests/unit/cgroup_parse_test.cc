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

TEST(CgroupLayout, InstanceNameIsStableReadableAndSafe) {
  // Fixed value: a later version must find the same directory for the same state dir.
  EXPECT_EQ(cgroupInstanceName("/var/lib/jobworker"), "jobworker_b8186719");
  EXPECT_NE(cgroupInstanceName("/srv/a/jobworker"), cgroupInstanceName("/srv/b/jobworker"));
  EXPECT_EQ(cgroupInstanceName("/").substr(0, 5), "root_");
  std::string odd = cgroupInstanceName("/tmp/My State.dir-2/");
  EXPECT_EQ(odd.substr(0, odd.size() - 9), "my_state_dir_2");
  std::string longest = cgroupInstanceName("/" + std::string(200, 'x'));
  EXPECT_EQ(longest.size(), 32u + 1 + 8);
  for (const std::string& path :
       std::vector<std::string>{"/var/lib/jobworker", "/", "/tmp/My State.dir-2/", "/../..",
                                "/a/" + std::string(200, 'x')}) {
    std::string n = cgroupInstanceName(path);
    EXPECT_TRUE(validateInstance(n)) << n;
  }
  EXPECT_FALSE(validateInstance(""));
  EXPECT_FALSE(validateInstance(".."));
  EXPECT_FALSE(validateInstance("a/b"));
  EXPECT_FALSE(validateInstance(std::string(49, 'a')));
}

TEST(CgroupLayout, UserLevelNamesAreSafePathComponents) {
  EXPECT_TRUE(validateUser("alice"));
  EXPECT_TRUE(validateUser("first.last"));
  for (const char* bad : {"", ".", "..", "a/b", "../x", "Alice", "-x"}) {
    EXPECT_FALSE(validateUser(bad)) << bad;
  }
}

// Under systemd the levels are units: a '-' in a slice's name nests it, so a user's '-' must
// be escaped (as systemd-escape does), and only our own scope names map back to job ids.
TEST(CgroupSystemdNames, SlicesNestAndUserNamesAreEscaped) {
  EXPECT_EQ(instanceSliceName("jobworker_1f0c2a9e"), "jobworker-jobworker_1f0c2a9e.slice");
  EXPECT_EQ(userSliceName("jobworker_1f0c2a9e", "alice"),
            "jobworker-jobworker_1f0c2a9e-alice.slice");
  EXPECT_EQ(userSliceName("i", "a-b.c"), "jobworker-i-a\\x2db.c.slice");
  EXPECT_EQ(unitNameEscape("_x.y-z"), "_x.y\\x2dz");
  EXPECT_EQ(unitNameEscape(".hidden"), "\\x2ehidden");
  EXPECT_EQ(unitNameEscape("a/b c"), "a\\x2fb\\x20c");
}

TEST(CgroupSystemdNames, ScopeNamesRoundTripOnlyForJobIds) {
  const std::string id = "3f2b8c1e-9a4d-4e5f-8a7b-1c2d3e4f5a6b";
  EXPECT_EQ(jobScopeName(id), "jobworker-job-" + id + ".scope");
  EXPECT_EQ(jobIdOfScope(jobScopeName(id)), id);
  for (const char* other : {"jobworker-job-.scope", "jobworker-job-../x.scope", "job",
                            "jobworker-job-3f2b8c1e-9a4d-4e5f-8a7b-1c2d3e4f5a6b.slice",
                            "session-1.scope", "jobworker-job-NOT-A-UUID.scope"}) {
    EXPECT_FALSE(jobIdOfScope(other).has_value()) << other;
  }
}

}  // namespace
}  // namespace jw::supervisor::cg
