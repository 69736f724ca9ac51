// Unit tests (no privileges) of common/policy: the user > role > global lookup and fitLimits(),
// the one rule both the frontend's early check and the supervisor's decision apply.
#include "common/policy.h"

#include <gtest/gtest.h>

#include <limits>
#include <string>

namespace jw::policy {
namespace {

using protocol::Role;
using Limit = LimitRefusal::Limit;

constexpr uint64_t kMiB = 1ULL << 20;

config::Settings settings(const std::string& text) {
  auto s = config::parse(text, "test");
  EXPECT_TRUE(s.ok()) << s.error().message;
  return s.ok() ? s.value() : config::Settings{};
}

TEST(Policy, UserEntryOverridesRoleWhichOverridesGlobal) {
  auto s = settings(
      "max.memory = 1G\nmax.pids = 100\nrole.user.max.memory = 512M\n"
      "user.carol.max.memory = 2G\nrole.user.max.cpu = 1\nmax.io_bps = 10M\n");
  config::LimitSet alice = maxima(s, "alice", Role::kUser);
  EXPECT_EQ(alice.memory_bytes, 512 * kMiB);
  EXPECT_EQ(alice.cpu_millicores, 1000u);
  EXPECT_EQ(alice.pids, 100u);  // field by field: the role sets no pids, the global does
  EXPECT_EQ(alice.io_bps, 10 * kMiB);
  EXPECT_FALSE(alice.io_iops.has_value());
  EXPECT_EQ(maxima(s, "carol", Role::kUser).memory_bytes, 2048 * kMiB);
  EXPECT_EQ(maxima(s, "carol", Role::kUser).cpu_millicores, 1000u);  // still the role's
  EXPECT_EQ(maxima(s, "root", Role::kAdmin).memory_bytes, 1024 * kMiB);
  EXPECT_FALSE(maxima(s, "root", Role::kAdmin).cpu_millicores.has_value());
}

TEST(Policy, NetworkHostRootAndSeccompDefaults) {
  const config::Settings none;
  EXPECT_TRUE(networkHostAllowed(none, "root", Role::kAdmin));
  EXPECT_FALSE(networkHostAllowed(none, "alice", Role::kUser));
  EXPECT_FALSE(rootAllowed(none, "root", Role::kAdmin));
  EXPECT_TRUE(jobSeccomp(none, "alice", Role::kUser));

  auto s = settings(
      "role.user.network_host = true\nuser.bob.network_host = false\n"
      "role.admin.allow_root = true\nuser.eve.allow_root = true\n"
      "role.user.seccomp = false\nuser.alice.seccomp = true\n");
  EXPECT_TRUE(networkHostAllowed(s, "alice", Role::kUser));
  EXPECT_FALSE(networkHostAllowed(s, "bob", Role::kUser));
  EXPECT_TRUE(rootAllowed(s, "root", Role::kAdmin));
  EXPECT_TRUE(rootAllowed(s, "eve", Role::kUser));
  EXPECT_FALSE(rootAllowed(s, "alice", Role::kUser));
  EXPECT_TRUE(jobSeccomp(s, "alice", Role::kUser));
  EXPECT_FALSE(jobSeccomp(s, "bob", Role::kUser));
}

config::LimitSet defaults() { return {500, 100 * kMiB, 64, std::nullopt, std::nullopt}; }

TEST(FitLimits, DefaultsApplyToWhatIsNotAsked) {
  protocol::Limits asked;
  asked.pids = 10;
  FittedLimits f = fitLimits(asked, defaults(), {}, {});
  ASSERT_FALSE(f.refused.has_value());
  EXPECT_EQ(f.limits.cpu_millicores, 500u);
  EXPECT_EQ(f.limits.memory_bytes, 100 * kMiB);
  EXPECT_EQ(f.limits.pids, 10u);
  EXPECT_TRUE(f.limits.io.empty());
}

TEST(FitLimits, RequestOverTheMaximumIsRefusedNamingTheLimit) {
  config::LimitSet max{2000, 256 * kMiB, 100, std::nullopt, std::nullopt};
  protocol::Limits asked;
  asked.memory_bytes = 512 * kMiB;
  FittedLimits f = fitLimits(asked, defaults(), max, {});
  ASSERT_TRUE(f.refused.has_value());
  EXPECT_EQ(f.refused->limit, Limit::kMemory);
  EXPECT_EQ(f.refused->asked, 512 * kMiB);
  EXPECT_EQ(f.refused->maximum, 256 * kMiB);
  EXPECT_EQ(limitField(f.refused->limit), "limits.memory");

  asked = {};
  asked.cpu_millicores = 2001;
  f = fitLimits(asked, defaults(), max, {});
  ASSERT_TRUE(f.refused.has_value());
  EXPECT_EQ(limitField(f.refused->limit), "limits.cpu");

  asked = {};
  asked.pids = 101;
  f = fitLimits(asked, defaults(), max, {});
  ASSERT_TRUE(f.refused.has_value());
  EXPECT_EQ(limitField(f.refused->limit), "limits.pids");

  // Exactly the maximum is allowed.
  asked = {};
  asked.memory_bytes = 256 * kMiB;
  f = fitLimits(asked, defaults(), max, {});
  ASSERT_FALSE(f.refused.has_value());
  EXPECT_EQ(f.limits.memory_bytes, 256 * kMiB);
}

TEST(FitLimits, UnaskedDefaultAboveTheMaximumIsLoweredToIt) {
  config::LimitSet max{std::nullopt, 32 * kMiB, 16, std::nullopt, std::nullopt};
  protocol::Limits asked;
  asked.cpu_millicores = 250;
  FittedLimits f = fitLimits(asked, defaults(), max, {});
  ASSERT_FALSE(f.refused.has_value());
  EXPECT_EQ(f.limits.memory_bytes, 32 * kMiB);
  EXPECT_EQ(f.limits.pids, 16u);
  EXPECT_EQ(f.limits.cpu_millicores, 250u);
}

TEST(FitLimits, UnlimitedDefaultUnderAFiniteMaximumGetsTheMaximum) {
  config::LimitSet unlimited_default{0, 0, 0, std::nullopt, std::nullopt};
  config::LimitSet max{std::nullopt, 32 * kMiB, std::nullopt, std::nullopt, std::nullopt};
  FittedLimits f = fitLimits({}, unlimited_default, max, {});
  ASSERT_FALSE(f.refused.has_value());
  EXPECT_EQ(f.limits.memory_bytes, 32 * kMiB);
  EXPECT_EQ(f.limits.cpu_millicores, 0u);  // no maximum: stays unlimited
  EXPECT_EQ(f.limits.pids, 0u);
  // `max.memory = unlimited` (the type's maximum) leaves an unlimited default unlimited.
  max.memory_bytes = std::numeric_limits<uint64_t>::max();
  f = fitLimits({}, unlimited_default, max, {});
  ASSERT_FALSE(f.refused.has_value());
  EXPECT_EQ(f.limits.memory_bytes, 0u);
}

TEST(FitLimits, IoRatesWithinTheirMaxima) {
  config::LimitSet max{std::nullopt, std::nullopt, std::nullopt, 10 * kMiB, 1000};
  protocol::Limits asked;
  asked.io.push_back({"/dev/vda", 10 * kMiB, 5 * kMiB, 1000, 0});
  FittedLimits f = fitLimits(asked, {}, max, {});
  ASSERT_FALSE(f.refused.has_value());
  ASSERT_EQ(f.limits.io.size(), 1u);
  EXPECT_EQ(f.limits.io[0].read_bps, 10 * kMiB);

  asked.io.push_back({"/dev/vdb", 0, 20 * kMiB, 0, 0});
  f = fitLimits(asked, {}, max, {});
  ASSERT_TRUE(f.refused.has_value());
  EXPECT_EQ(f.refused->limit, Limit::kIoBps);
  EXPECT_EQ(f.refused->asked, 20 * kMiB);
  EXPECT_EQ(f.refused->maximum, 10 * kMiB);
  EXPECT_EQ(limitField(f.refused->limit), "limits.io");

  asked.io.back() = {"/dev/vdb", 0, 0, 0, 1001};
  f = fitLimits(asked, {}, max, {});
  ASSERT_TRUE(f.refused.has_value());
  EXPECT_EQ(f.refused->limit, Limit::kIoIops);
  EXPECT_EQ(f.refused->asked, 1001u);
  EXPECT_EQ(limitField(f.refused->limit), "limits.io");
}

TEST(Policy, TotalsLookUpUserRoleGlobalAndNeverExceedTheInstance) {
  auto s = settings(
      "max.total_pids = 1000\nmax.total_memory = 8G\nrole.user.max.total_pids = 100\n"
      "user.carol.max.total_pids = 5000\nuser.dave.max.total_pids = 300\n"
      "role.user.max.total_cpu = 2\n");
  config::LimitSet alice = totals(s, "alice", Role::kUser);
  EXPECT_EQ(alice.pids, 100u);                 // the role's
  EXPECT_EQ(alice.memory_bytes, 8192 * kMiB);  // the global's, field by field
  EXPECT_EQ(alice.cpu_millicores, 2000u);
  EXPECT_EQ(totals(s, "dave", Role::kUser).pids, 300u);    // the user's over the role's
  EXPECT_EQ(totals(s, "carol", Role::kUser).pids, 1000u);  // never above the instance's
  EXPECT_EQ(totals(s, "root", Role::kAdmin).pids, 1000u);
  EXPECT_FALSE(totals(s, "root", Role::kAdmin).cpu_millicores.has_value());
  EXPECT_FALSE(totals(s, "root", Role::kAdmin).io_bps.has_value());
}

TEST(FitLimits, ExplicitLimitOverAnAggregateIsRefusedAndADefaultFitted) {
  config::LimitSet max{4000, 512 * kMiB, 1000, std::nullopt, std::nullopt};
  config::LimitSet total{1000, 256 * kMiB, 50, std::nullopt, std::nullopt};
  protocol::Limits asked;
  asked.pids = 51;
  FittedLimits f = fitLimits(asked, defaults(), max, total);
  ASSERT_TRUE(f.refused.has_value());
  EXPECT_EQ(f.refused->limit, Limit::kPids);
  EXPECT_TRUE(f.refused->aggregate);
  EXPECT_EQ(f.refused->maximum, 50u);
  EXPECT_EQ(totalKey(f.refused->limit), "max.total_pids");
  // Over the per-job maximum first: that is the refusal named.
  asked.pids = 1001;
  f = fitLimits(asked, defaults(), max, total);
  ASSERT_TRUE(f.refused.has_value());
  EXPECT_FALSE(f.refused->aggregate);
  // Exactly the aggregate is allowed; defaults above it are lowered to it, unlimited stays so.
  asked.pids = 50;
  asked.cpu_millicores = 0;
  f = fitLimits(asked, {2000, 0, 0, std::nullopt, std::nullopt},
                {std::nullopt, std::nullopt, std::nullopt, std::nullopt, std::nullopt}, total);
  ASSERT_FALSE(f.refused.has_value());
  EXPECT_EQ(f.limits.pids, 50u);
  EXPECT_EQ(f.limits.cpu_millicores, 1000u);
  EXPECT_EQ(f.limits.memory_bytes, 0u);
  asked = {};
  asked.memory_bytes = 257 * kMiB;
  f = fitLimits(asked, defaults(), max, total);
  ASSERT_TRUE(f.refused.has_value());
  EXPECT_EQ(totalKey(f.refused->limit), "max.total_memory");
}

TEST(FitLimits, AnyLimit) {
  EXPECT_FALSE(anyLimit({}));
  protocol::Limits l;
  l.pids = 1;
  EXPECT_TRUE(anyLimit(l));
  l = {};
  l.io.push_back({"/dev/vda", 0, 0, 0, 0});
  EXPECT_TRUE(anyLimit(l));
}

}  // namespace
}  // namespace jw::policy
