// Unit tests (no privileges) of the supervisor's job-start steps (supervisor/jobs/start.h): the
// refusals users see, and the JobResources guard that leaves nothing behind a refused job.
#include "supervisor/jobs/start.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <filesystem>
#include <memory>
#include <string>

#include "common/policy.h"

namespace jw::supervisor {
namespace {

using protocol::ErrorCode;
using protocol::Role;

constexpr uint64_t kMiB = 1ULL << 20;

UserRecord user(const std::string& name, Role role) { return {name, "", role, "nobody"}; }

TEST(JobStart, ResolveAccountWithoutRootIsTheSupervisorsOwn) {
  Account self{"dev", 1000, 1000, {1000}, "/home/dev"};
  auto a = resolveAccount(config::Settings{}, user("alice", Role::kUser), &self, std::nullopt);
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->name, "dev");
  EXPECT_EQ(a->uid, 1000u);
}

TEST(JobStart, NetworkHostNeedsThePolicy) {
  config::Settings s;
  EXPECT_FALSE(checkNetwork(s, user("alice", Role::kUser), protocol::Network::kDefault));
  EXPECT_FALSE(checkNetwork(s, user("root", Role::kAdmin), protocol::Network::kHost));
  auto e = checkNetwork(s, user("alice", Role::kUser), protocol::Network::kHost);
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->code, ErrorCode::kForbidden);
  EXPECT_EQ(e->message,
            "network \"host\" is not allowed for user alice (network_host in the configuration)");
}

TEST(JobStart, LimitsOverTheMaximumNameTheLimitAndTheUser) {
  auto s = config::parse("role.user.max.memory = 64M\n", "test");
  ASSERT_TRUE(s.ok());
  protocol::Limits asked;
  asked.memory_bytes = 128 * kMiB;
  auto l = jobLimits(s.value(), user("bob", Role::kUser), asked, false);
  ASSERT_FALSE(l.ok());
  EXPECT_EQ(l.error().code, ErrorCode::kLimitExceeded);
  EXPECT_EQ(l.error().message, "limits.memory over the maximum allowed for user bob");
}

TEST(JobStart, AnExplicitLimitOverAnAggregateIsRefusedNamingTheKey) {
  auto s = config::parse("max.total_cpu = 4\nrole.user.max.total_cpu = 1.5\n", "t");
  ASSERT_TRUE(s.ok()) << s.error().message;
  protocol::Limits asked;
  asked.cpu_millicores = 2000;
  auto l = jobLimits(s.value(), user("bob", Role::kUser), asked, false);
  ASSERT_FALSE(l.ok());
  EXPECT_EQ(l.error().code, ErrorCode::kLimitExceeded);
  EXPECT_EQ(l.error().message,
            "limits.cpu 2 cores over the aggregate 1.5 cores of all the jobs of user bob together "
            "(max.total_cpu)");
  // The instance's aggregate bounds an admin, who has no role entry.
  asked.cpu_millicores = 4500;
  l = jobLimits(s.value(), user("root", Role::kAdmin), asked, false);
  ASSERT_FALSE(l.ok());
  EXPECT_NE(l.error().message.find("max.total_cpu"), std::string::npos) << l.error().message;
}

TEST(JobStart, LimitsOutsideTheKernelsRangeAreBadRequestsWhateverTheFrontendChecked) {
  config::Settings s;
  s.global.max.pids = UINT32_MAX;  // even where the configuration sets no maximum
  protocol::Limits asked;
  asked.pids = 1'000'000'000;
  auto l = jobLimits(s, user("bob", Role::kUser), asked, true);
  ASSERT_FALSE(l.ok());
  EXPECT_EQ(l.error().code, ErrorCode::kBadRequest);
  EXPECT_EQ(l.error().message, "field limits.pids must be in 1..4194304");
  asked = {};
  asked.memory_bytes = UINT64_MAX;
  l = jobLimits(s, user("bob", Role::kUser), asked, true);
  ASSERT_FALSE(l.ok());
  EXPECT_EQ(l.error().code, ErrorCode::kBadRequest);
  asked = {};
  asked.cpu_millicores = 5;
  EXPECT_FALSE(jobLimits(s, user("bob", Role::kUser), asked, true).ok());
}

TEST(JobStart, WithoutCgroupsAskedLimitsAreRefusedAndDefaultsDropped) {
  config::Settings s;  // built-in defaults: 1 core, 1G, 1024 pids
  auto l = jobLimits(s, user("alice", Role::kUser), {}, false);
  ASSERT_TRUE(l.ok());
  EXPECT_FALSE(policy::anyLimit(*l));
  protocol::Limits asked;
  asked.pids = 5;
  l = jobLimits(s, user("alice", Role::kUser), asked, false);
  ASSERT_FALSE(l.ok());
  EXPECT_EQ(l.error().code, ErrorCode::kUnavailable);
  EXPECT_EQ(l.error().message, "resource limits need cgroups, which this jobworkerd runs without");
}

TEST(JobStart, TimeoutDefaultsAndMaximum) {
  config::Settings s;
  EXPECT_EQ(jobTimeoutMs(s, 0), 0u);
  EXPECT_EQ(jobTimeoutMs(s, 5000), 5000u);
  s.default_timeout_ms = 60'000;
  EXPECT_EQ(jobTimeoutMs(s, 0), 60'000u);
  EXPECT_EQ(jobTimeoutMs(s, 5000), 5000u);
  s.default_timeout_ms = 0;
  s.max_timeout_ms = 10'000;
  EXPECT_EQ(jobTimeoutMs(s, 0), 10'000u);  // no timeout is not within a maximum
  EXPECT_EQ(jobTimeoutMs(s, 20'000), 10'000u);
}

class JobResourcesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string t = "/tmp/jw-start-test-XXXXXX";
    ASSERT_NE(mkdtemp(t.data()), nullptr);
    dir_ = t;
    store_ = std::make_unique<OutputStore>(dir_);
    ASSERT_TRUE(store_->prepare());
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::unique_ptr<Job> job(protocol::OutputMode mode) {
    JobSpec spec;
    spec.id = "0b6f3c1e-5d2a-4c8e-9f1a-2b3c4d5e6f70";
    spec.output = mode;
    return std::make_unique<Job>(std::move(spec), 0);
  }
  std::string jobDir() const { return store_->jobsDir() + "/0b6f3c1e-5d2a-4c8e-9f1a-2b3c4d5e6f70"; }

  std::string dir_;
  std::unique_ptr<OutputStore> store_;
};

TEST_F(JobResourcesTest, RemovedUnlessReleased) {
  auto j = job(protocol::OutputMode::kSeparate);
  {
    auto r = JobResources::create(*j, *store_, nullptr, {});
    ASSERT_TRUE(r.ok()) << r.error().message;
    EXPECT_TRUE(std::filesystem::exists(jobDir() + "/output"));
    EXPECT_TRUE(std::filesystem::exists(jobDir() + "/stderr"));
    EXPECT_TRUE(std::filesystem::exists(jobDir() + "/exit"));
    EXPECT_TRUE(j->exit_record);
    // The exit record reads empty but has its blocks (where the filesystem can reserve them).
    struct stat st {};
    ASSERT_EQ(stat((jobDir() + "/exit").c_str(), &st), 0);
    EXPECT_EQ(st.st_size, 0);
    EXPECT_GE(st.st_blocks * 512, kExitRecordReserve);
    EXPECT_NE(j->streams[0].log, nullptr);
    EXPECT_NE(j->streams[1].log, nullptr);
  }
  EXPECT_FALSE(std::filesystem::exists(jobDir()));
}

TEST_F(JobResourcesTest, ReleasedStay) {
  auto j = job(protocol::OutputMode::kMerged);
  {
    auto r = JobResources::create(*j, *store_, nullptr, {});
    ASSERT_TRUE(r.ok()) << r.error().message;
    EXPECT_EQ(j->streams[1].log, nullptr);  // merged: one log
    r->release();
  }
  EXPECT_TRUE(std::filesystem::exists(jobDir() + "/output"));
  EXPECT_FALSE(std::filesystem::exists(jobDir() + "/stderr"));
  // A second job with the same id cannot get a directory: the error is the store's.
  auto again = job(protocol::OutputMode::kMerged);
  auto r = JobResources::create(*again, *store_, nullptr, {});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::kInternal);
  EXPECT_TRUE(std::filesystem::exists(jobDir() + "/output"));  // the first job's stays
}

}  // namespace
}  // namespace jw::supervisor
