// Unit tests for the configuration file parser shared by both processes.
#include "common/config.h"

#include <gtest/gtest.h>

#include <fstream>
#include <map>
#include <sstream>
#include <string>

namespace jw::config {
namespace {

std::string readWhole(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// check-config's listing: every top-level key appears, and the listing is itself a config file
// that reads back to the same settings.
TEST(Config, DescribeListsEveryEffectiveSettingAndParsesBack) {
  auto s = parse(
      "stop_grace = 3s\n"
      "access_log = all\n"
      "isolation.net = false\n"
      "default.memory = 256M\n"
      "max.cpu = 1.5\n"
      "max.total_pids = 5000\n"
      "role.user.max.total_memory = 8G\n"
      "user.alice.network_host = true\n",
      "t");
  ASSERT_TRUE(s.ok()) << s.error().message;
  auto listed = describe(s.value());
  std::string text;
  std::map<std::string, std::string> by_key;
  for (const auto& [k, v] : listed) {
    text += k + " = " + v + "\n";
    EXPECT_TRUE(by_key.emplace(k, v).second) << "listed twice: " << k;
  }
  EXPECT_EQ(by_key["stop_grace"], "3000ms");
  EXPECT_EQ(by_key["access_log"], "all");
  EXPECT_EQ(by_key["isolation.net"], "false");
  EXPECT_EQ(by_key["output_cap"], std::to_string(1ULL << 30));  // a default, listed too
  EXPECT_EQ(by_key["default.memory"], std::to_string(256ULL << 20));
  EXPECT_EQ(by_key["max.cpu"], "1.5");
  EXPECT_EQ(by_key["max.total_pids"], "5000");
  EXPECT_EQ(by_key["role.user.max.total_memory"], std::to_string(8ULL << 30));
  EXPECT_EQ(by_key["user.alice.network_host"], "true");
  EXPECT_GE(by_key.size(), 50u);
  auto again = parse(text, "listing");
  ASSERT_TRUE(again.ok()) << again.error().message << "\n" << text;
  EXPECT_EQ(describe(again.value()), listed);
}

TEST(Config, DefaultsWithoutAnyKey) {
  auto s = parse("# nothing\n\n", "t");
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->output_cap_bytes, 1ULL << 30);
  EXPECT_EQ(s->stop_grace_ms, 10000u);
  EXPECT_TRUE(s->isolate_pid);
  EXPECT_EQ(s->verifier_user, "nobody");
  EXPECT_EQ(parse("verifier_user = jobworker-verify\n", "t")->verifier_user, "jobworker-verify");
  EXPECT_EQ(s->retention_count, 1000u);
  EXPECT_EQ(s->retention_total, 10000u);
  EXPECT_EQ(s->state_reserve_bytes, 64ULL << 20);
}

TEST(Config, ObservabilityKeys) {
  auto d = parse("", "t");
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->access_log, Settings::AccessLog::kSampled);
  EXPECT_EQ(d->access_log_rate, 10u);
  EXPECT_EQ(d->metrics_max_users, 100u);
  auto s = parse(
      "access_log = all\naccess_log_rate = 3\nmetrics_max_users = 7\n"
      "max_token_ttl = 30d\nrole.metrics.max.pids = 1\n",
      "t");
  ASSERT_TRUE(s.ok()) << s.error().message;
  EXPECT_EQ(s->access_log, Settings::AccessLog::kAll);
  EXPECT_EQ(s->access_log_rate, 3u);
  EXPECT_EQ(s->metrics_max_users, 7u);
  EXPECT_EQ(s->max_token_ttl_ms, 30ULL * 24 * 3600 * 1000);
  EXPECT_EQ(parse("access_log = off\n", "t")->access_log, Settings::AccessLog::kOff);
  auto bad = parse("\naccess_log = some\n", "f");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().message.find("f:2"), std::string::npos) << bad.error().message;
}

TEST(Config, StoreKeys) {
  auto s = parse("retention_count = 5\nretention_total = 7\nstate_reserve = 2M\n", "t");
  ASSERT_TRUE(s.ok()) << s.error().message;
  EXPECT_EQ(s->retention_count, 5u);
  EXPECT_EQ(s->retention_total, 7u);
  EXPECT_EQ(s->state_reserve_bytes, 2u << 20);
  EXPECT_FALSE(parse("state_reserve = lots\n", "t").ok());
}

TEST(Config, ParsesTypedValues) {
  auto s = parse(
      "output_cap = 10M\nstop_grace = 1500ms\nsession_ttl = 2h\nisolation.net = false\n"
      "default.memory = 256M\ndefault.cpu = 0.5\nrole.user.max.pids = 64\n"
      "user.alice.network_host = true\nuser.alice.max.memory = 1G  # trailing comment\n",
      "t");
  ASSERT_TRUE(s.ok()) << s.error().message;
  EXPECT_EQ(s->output_cap_bytes, 10u << 20);
  EXPECT_EQ(s->stop_grace_ms, 1500u);
  EXPECT_EQ(s->session_ttl_ms, 7200000u);
  EXPECT_FALSE(s->isolate_net);
  EXPECT_EQ(*s->default_limits.memory_bytes, 256u << 20);
  EXPECT_EQ(*s->default_limits.cpu_millicores, 500u);
  EXPECT_EQ(*s->roles["user"].max.pids, 64u);
  EXPECT_TRUE(*s->users["alice"].allow_network_host);
  EXPECT_EQ(*s->users["alice"].max.memory_bytes, 1ULL << 30);
}

TEST(Config, RequestIntakeKeys) {
  Settings d;
  EXPECT_EQ(d.max_connections, 4096u);
  EXPECT_EQ(d.header_timeout_ms, 10000u);
  auto s = parse(
      "header_timeout = 3s\nbody_timeout = 20s\nmin_receive_rate = 2K\nsend_timeout = 5s\n"
      "max_request_head = 8K\nmax_buffered_bytes = 32M\nmax_queued_requests = 10\n",
      "t");
  ASSERT_TRUE(s.ok()) << s.error().message;
  EXPECT_EQ(s->header_timeout_ms, 3000u);
  EXPECT_EQ(s->body_timeout_ms, 20000u);
  EXPECT_EQ(s->min_receive_rate, 2048u);
  EXPECT_EQ(s->send_timeout_ms, 5000u);
  EXPECT_EQ(s->max_request_head, 8192u);
  EXPECT_EQ(s->max_buffered_bytes, 32u << 20);
  EXPECT_EQ(s->max_queued_requests, 10u);
  EXPECT_FALSE(parse("header_timeout = soon\n", "t").ok());
}

TEST(Config, UnknownKeysAndBadValuesNameTheLine) {
  auto a = parse("output_cap = 1M\noutptu_cap = 2M\n", "f.conf");
  ASSERT_FALSE(a.ok());
  EXPECT_NE(a.error().message.find("f.conf:2"), std::string::npos) << a.error().message;
  EXPECT_NE(a.error().message.find("outptu_cap"), std::string::npos);
  EXPECT_FALSE(parse("stop_grace = soon\n", "t").ok());
  EXPECT_FALSE(parse("isolation.pid = maybe\n", "t").ok());
  EXPECT_FALSE(parse("role.superuser.max.cpu = 1\n", "t").ok());
  EXPECT_FALSE(parse("just a line\n", "t").ok());
  EXPECT_FALSE(parse("default.cpu = -1\n", "t").ok());
  EXPECT_FALSE(parse("default.io_bps = 1M\n", "t").ok());
}

TEST(Config, BuiltInDefaultsAndUnlimited) {
  auto s = parse("", "t");
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(*s->default_limits.cpu_millicores, 1000u);
  EXPECT_EQ(*s->default_limits.memory_bytes, 1ULL << 30);
  EXPECT_EQ(*s->default_limits.pids, 1024u);
  auto u = parse(
      "default.memory = unlimited\nmax.memory = unlimited\nrole.user.max.pids = unlimited\n", "t");
  ASSERT_TRUE(u.ok()) << u.error().message;
  EXPECT_EQ(*u->default_limits.memory_bytes, 0u);      // no limit applied
  EXPECT_EQ(*u->global.max.memory_bytes, UINT64_MAX);  // nothing is over it
  EXPECT_EQ(*u->roles["user"].max.pids, UINT32_MAX);
  applyHostMaxima(*u);
  EXPECT_EQ(*u->global.max.memory_bytes, UINT64_MAX);  // explicit values stay
  EXPECT_GE(*u->global.max.cpu_millicores, 1000u);     // host cores fill the gap
  Settings h;
  applyHostMaxima(h);
  EXPECT_GT(*h.global.max.memory_bytes, 64ULL << 20);
  // Aggregates from the host: 90 % of RAM and of pid_max, every core.
  ASSERT_TRUE(h.global.total.memory_bytes.has_value());
  EXPECT_EQ(*h.global.total.memory_bytes,
            *h.global.max.memory_bytes - *h.global.max.memory_bytes / 10);
  EXPECT_EQ(h.global.total.cpu_millicores, h.global.max.cpu_millicores);
  uint64_t pid_max = std::stoull(readWhole("/proc/sys/kernel/pid_max"));
  EXPECT_EQ(h.global.total.pids, pid_max - pid_max / 10);
}

TEST(Config, AggregateCapsPerInstanceRoleAndUser) {
  auto s = parse(
      "max.total_memory = 20G\nmax.total_pids = 30000\nmax.total_cpu = 8\n"
      "role.user.max.total_pids = 2000\nuser.carol.max.total_memory = 4G\n"
      "user.dave.max.total_cpu = unlimited\n",
      "t");
  ASSERT_TRUE(s.ok()) << s.error().message;
  EXPECT_EQ(*s->global.total.memory_bytes, 20ULL << 30);
  EXPECT_EQ(*s->global.total.pids, 30000u);
  EXPECT_EQ(*s->global.total.cpu_millicores, 8000u);
  EXPECT_FALSE(s->global.max.pids.has_value());  // not the per-job maximum
  EXPECT_EQ(*s->roles["user"].total.pids, 2000u);
  EXPECT_EQ(*s->users["carol"].total.memory_bytes, 4ULL << 30);
  EXPECT_EQ(*s->users["dave"].total.cpu_millicores, UINT32_MAX);
  applyHostMaxima(*s);
  EXPECT_EQ(*s->global.total.pids, 30000u);  // explicit values stay
  // IO rates have no aggregate; a typo fails closed.
  auto io = parse("max.total_io_bps = 10M\n", "t");
  ASSERT_FALSE(io.ok());
  EXPECT_NE(io.error().message.find("t:1: unknown key 'max.total_io_bps'"), std::string::npos)
      << io.error().message;
  EXPECT_FALSE(parse("user.x.max.total_pids = -1\n", "t").ok());
  EXPECT_FALSE(parse("max.total_memory = lots\n", "t").ok());
}

TEST(Config, SizesDurationsCpu) {
  EXPECT_EQ(*parseSize("256M"), 256u << 20);
  EXPECT_EQ(*parseSize("1g"), 1u << 30);
  EXPECT_EQ(*parseSize("512"), 512u);
  EXPECT_EQ(*parseSize("4KB"), 4096u);
  EXPECT_FALSE(parseSize("M").ok());
  EXPECT_FALSE(parseSize("-1").ok());
  EXPECT_FALSE(parseSize("99999999999999999999").ok());
  EXPECT_FALSE(parseSize("1.5G").ok());
  EXPECT_EQ(*parseDurationMs("10"), 10000u);
  EXPECT_EQ(*parseDurationMs("250ms"), 250u);
  EXPECT_EQ(*parseDurationMs("3m"), 180000u);
  EXPECT_FALSE(parseDurationMs("1w").ok());
  EXPECT_EQ(*parseCpuMillicores("0.5"), 500u);
  EXPECT_EQ(*parseCpuMillicores("2"), 2000u);
  EXPECT_FALSE(parseCpuMillicores("0").ok());
  EXPECT_FALSE(parseCpuMillicores("abc").ok());
  EXPECT_FALSE(parseCpuMillicores("1e3").ok());
}

}  // namespace
}  // namespace jw::config
