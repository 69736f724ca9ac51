// Integration tests of GET /metrics, role metrics and its scrape tokens, and healthz' private
// details: the real daemon over real HTTPS, the exposition parsed by a real Prometheus parser
// (Debian's python3-prometheus-client), scrape tokens made by jobworker-admin over the control
// socket. Checks that the counters move as jobs run.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "tests/integration/daemon.h"
#include "tests/wait_until.h"

namespace jw::test {
namespace {

using std::chrono::seconds;
using Samples = std::map<std::string, double>;  // "name{k=v,...}" (labels sorted) -> value

// Parses an exposition with prometheus_client's own text parser and prints one sample a line,
// "name{labels sorted}<TAB>value", plus one "family<TAB>type" line per family; any parse error
// fails the script (and the test).
constexpr const char* kParser = R"PY(
import sys
from prometheus_client.parser import text_string_to_metric_families
for fam in text_string_to_metric_families(sys.stdin.read()):
    if not fam.documentation:
        sys.exit("family %s has no HELP text" % fam.name)
    print("#family\t%s\t%s" % (fam.name, fam.type))
    for s in fam.samples:
        labels = ",".join("%s=%s" % (k, v) for k, v in sorted(s.labels.items()))
        print("%s{%s}\t%r" % (s.name, labels, float(s.value)))
)PY";

struct Parsed {
  bool ok = false;
  std::string error;
  Samples samples;
  std::map<std::string, std::string> families;  // name -> type
};

Parsed parseExposition(const std::string& text) {
  Parsed p;
  CmdResult r = run({"/usr/bin/python3", "-c", kParser}, text);
  if (r.exit_code != 0) {
    p.error = "prometheus parser failed (" + std::to_string(r.exit_code) + "): " + r.err +
              " (install python3-prometheus-client: scripts/install-deps)";
    return p;
  }
  std::istringstream in(r.out);
  std::string line;
  while (std::getline(in, line)) {
    size_t tab = line.find('\t');
    if (tab == std::string::npos) continue;
    if (line.rfind("#family\t", 0) == 0) {
      size_t second = line.find('\t', 8);
      p.families[line.substr(8, second - 8)] = line.substr(second + 1);
      continue;
    }
    p.samples[line.substr(0, tab)] = std::stod(line.substr(tab + 1));
  }
  p.ok = true;
  return p;
}

class Metrics : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    Daemon::Options o;
    // Two users get their own label; the third one to start a job counts as "(other)".
    o.config_text = "metrics_max_users = 2\nmax_token_ttl = 100d\n";
    d_ = Daemon::start(o).release();
    admin_ = login(*d_, "admin", d_->adminPassword());
    d_->addUser("scraper", "metrics", "scraper-password");
    d_->addUser("alice", "user", "alice-password");
    d_->addUser("bob", "user", "bob-password");
    d_->addUser("watcher", "viewer", "watcher-password");
  }
  static void TearDownTestSuite() {
    delete d_;
    d_ = nullptr;
  }
  void SetUp() override { ASSERT_NE(d_, nullptr); }

  static CmdResult admin(std::vector<std::string> args) {
    args.insert(args.begin(), binary("jobworker-admin"));
    args.insert(args.end(), {"--control", d_->stateDir() + "/control.sock"});
    return run(args);
  }
  // A fresh scrape token of `scraper`, as Prometheus would read it from its token file.
  static std::string scrapeToken() {
    CmdResult r = admin({"token", "create", "scraper", "--expires", "90d"});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    std::string token = r.out.substr(0, r.out.find('\n'));
    EXPECT_EQ(token.rfind("jw_", 0), 0u) << r.out;
    return token;
  }
  static Parsed scrape(const std::string& token) {
    HttpResponse r = https(*d_, "GET", "/metrics", "", token);
    EXPECT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(r.headers["content-type"], "text/plain; version=0.0.4; charset=utf-8");
    Parsed p = parseExposition(r.body);
    EXPECT_TRUE(p.ok) << p.error << "\n" << r.body;
    return p;
  }
  // A series that is not there yet counts as 0 (a labelled series appears with its first event).
  static double at(const Parsed& p, const std::string& key) {
    auto it = p.samples.find(key);
    return it == p.samples.end() ? 0 : it->second;
  }

  static Daemon* d_;
  static std::string admin_;
};
Daemon* Metrics::d_ = nullptr;
std::string Metrics::admin_;

TEST_F(Metrics, ARealParserReadsEveryFamilyAndTheCountersMoveAsJobsRun) {
  const std::string token = scrapeToken();
  Parsed before = scrape(token);
  ASSERT_TRUE(before.ok);
  for (const char* f :
       {"jobworker_jobs", "jobworker_job_starts", "jobworker_job_ends",
        "jobworker_job_start_latency_seconds", "jobworker_output_stored_bytes",
        "jobworker_output_dropped_bytes", "jobworker_logins", "jobworker_http_requests",
        "jobworker_http_request_duration_seconds", "jobworker_http_connections",
        "jobworker_log_followers", "jobworker_frontend_restarts", "jobworker_protocol_violations",
        "jobworker_event_loop_lag_seconds", "jobworker_state_filesystem_free_bytes",
        "jobworker_http_intake_refusals"}) {
    EXPECT_TRUE(before.families.count(f)) << "family " << f << " missing";
  }
  EXPECT_EQ(before.families["jobworker_job_start_latency_seconds"], "histogram");
  EXPECT_EQ(before.families["jobworker_job_starts"], "counter");
  EXPECT_EQ(before.families["jobworker_jobs"], "gauge");
  EXPECT_GT(at(before, "jobworker_state_filesystem_free_bytes{}"), 0);
  EXPECT_GE(at(before, "jobworker_http_connections{}"), 1);  // this scrape's own

  // A running job shows in the state gauge while it runs.
  std::string sleeper =
      startJob(*d_, admin_, R"({"command":["sh","-c","echo sleeping; exec sleep 1000"]})");
  ASSERT_FALSE(sleeper.empty());
  Parsed during = scrape(token);
  EXPECT_GE(at(during, "jobworker_jobs{state=running}"), 1);
  // The running job's cgroup memory counts for its owner (a cgroup exists when jobworkerd has
  // a backend: the jobs' total memory is reported then too).
  if (during.samples.count("jobworker_jobs_memory_bytes{}") != 0) {
    EXPECT_GT(at(during, "jobworker_user_memory_bytes{user=admin}"), 0);
    EXPECT_GT(at(during, "jobworker_jobs_memory_bytes{}"), 0);
  }
  ASSERT_EQ(https(*d_, "POST", "/v1/jobs/" + sleeper + "/stop", R"({"grace_s":1})", admin_).status,
            202);
  std::string ok = startJob(*d_, admin_, R"({"command":["sh","-c","printf 0123456789"]})");
  std::string three = startJob(*d_, admin_, R"({"command":["sh","-c","exit 3"]})");
  for (const std::string& id : {sleeper, ok, three}) waitJob(*d_, admin_, id);

  Parsed after = scrape(token);
  auto moved = [&](const std::string& key) { return at(after, key) - at(before, key); };
  const double latency_count = moved("jobworker_job_start_latency_seconds_count{}");
  std::printf("[ measure ] start latency: %.0f starts, mean %.2f ms\n", latency_count,
              1000 * moved("jobworker_job_start_latency_seconds_sum{}") / latency_count);
  EXPECT_EQ(moved("jobworker_job_starts_total{user=admin}"), 3);
  EXPECT_EQ(moved("jobworker_job_ends_total{outcome=exited,user=admin}"), 2);
  EXPECT_EQ(moved("jobworker_job_ends_total{outcome=killed,user=admin}"), 1);
  EXPECT_EQ(latency_count, 3);
  EXPECT_GE(moved("jobworker_output_stored_bytes_total{}"), 10 + 9);  // "sleeping\n" too
  EXPECT_EQ(at(after, "jobworker_jobs{state=running}"),
            at(before, "jobworker_jobs{state=running}"));
  EXPECT_EQ(moved("jobworker_jobs{state=exited}"), 2);
  EXPECT_EQ(moved("jobworker_http_requests_total{method=POST,route=/v1/jobs,status_class=2xx}"), 3);
  EXPECT_GE(moved("jobworker_http_requests_total{method=GET,route=/v1/jobs/{id},status_class=2xx}"),
            3);
  EXPECT_GE(moved("jobworker_http_request_duration_seconds_count{route=/v1/jobs}"), 3);
  EXPECT_GE(moved("jobworker_http_requests_total{method=GET,route=/metrics,status_class=2xx}"), 2);
  EXPECT_GT(at(after, "jobworker_event_loop_lag_seconds_count{}"), 0);
  EXPECT_EQ(at(after, "jobworker_protocol_violations_total{}"), 0);

  // What a scrape costs end to end (a fresh TLS connection each, as Prometheus' first one).
  constexpr int kScrapes = 20;
  size_t bytes = 0;
  auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < kScrapes; i++) bytes = https(*d_, "GET", "/metrics", "", token).body.size();
  auto ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0);
  std::printf("[ measure ] %d scrapes: %.1f ms each over HTTPS, %zu bytes of exposition\n",
              kScrapes, ms.count() / kScrapes, bytes);
}

TEST_F(Metrics, LoginsAreCountedByResultWithoutNamesOrAddresses) {
  const std::string token = scrapeToken();
  Parsed before = scrape(token);
  login(*d_, "alice", "alice-password");
  https(*d_, "POST", "/v1/login", R"({"username":"alice","password":"wrong"})");
  https(*d_, "POST", "/v1/login", R"({"username":"nobody-here","password":"wrong"})");
  Parsed after = scrape(token);
  auto moved = [&](const std::string& key) { return at(after, key) - at(before, key); };
  EXPECT_EQ(moved("jobworker_logins_total{result=ok}"), 1);
  EXPECT_EQ(moved("jobworker_logins_total{result=wrong_password}"), 1);
  EXPECT_EQ(moved("jobworker_logins_total{result=unknown_user}"), 1);
  for (const auto& [key, value] : after.samples) {
    EXPECT_EQ(key.find("nobody-here"), std::string::npos) << key;
    EXPECT_EQ(key.find("127.0.0.1"), std::string::npos) << key;
  }
}

TEST_F(Metrics, UsersPastTheCapShareOneLabel) {
  const std::string token = scrapeToken();
  // admin holds one of the two labels (the first test, or this one); alice takes the other, bob
  // is past the cap.
  waitJob(*d_, admin_, startJob(*d_, admin_, R"({"command":["true"]})"));
  std::string alice = login(*d_, "alice", "alice-password");
  std::string bob = login(*d_, "bob", "bob-password");
  Parsed before = scrape(token);
  waitJob(*d_, alice, startJob(*d_, alice, R"({"command":["true"]})"));
  waitJob(*d_, bob, startJob(*d_, bob, R"({"command":["true"]})"));
  Parsed after = scrape(token);
  EXPECT_EQ(at(after, "jobworker_job_starts_total{user=alice}") -
                at(before, "jobworker_job_starts_total{user=alice}"),
            1);
  EXPECT_EQ(at(after, "jobworker_job_starts_total{user=(other)}") -
                at(before, "jobworker_job_starts_total{user=(other)}"),
            1);
  for (const auto& [key, value] : after.samples) {
    EXPECT_EQ(key.find("user=bob"), std::string::npos) << key;
  }
}

TEST_F(Metrics, RoleMetricsOpensOnlyMetricsAndOnlyScrapersAndAdminsReadIt) {
  const std::string token = scrapeToken();
  std::string job = startJob(*d_, admin_, R"({"command":["true"]})");
  waitJob(*d_, admin_, job);
  EXPECT_EQ(https(*d_, "GET", "/v1/jobs", "", token).status, 403);
  EXPECT_EQ(https(*d_, "POST", "/v1/jobs", R"({"command":["true"]})", token).status, 403);
  EXPECT_EQ(https(*d_, "POST", "/v1/jobs", "not json", token).status, 403);
  EXPECT_EQ(https(*d_, "GET", "/v1/jobs/" + job, "", token).status, 403);
  EXPECT_EQ(https(*d_, "GET", "/v1/jobs/" + job + "/logs", "", token).status, 403);
  EXPECT_EQ(https(*d_, "POST", "/v1/jobs/" + job + "/stop", "", token).status, 403);
  EXPECT_EQ(https(*d_, "POST", "/v1/logout", "", token).status, 403);
  HttpResponse who = https(*d_, "GET", "/v1/whoami", "", token);
  EXPECT_EQ(who.status, 200) << who.body;
  EXPECT_EQ(jsonField(who.body, "role"), "metrics");

  EXPECT_EQ(https(*d_, "GET", "/metrics", "", admin_).status, 200);
  EXPECT_EQ(https(*d_, "GET", "/metrics", "", login(*d_, "alice", "alice-password")).status, 403);
  EXPECT_EQ(https(*d_, "GET", "/metrics", "", login(*d_, "watcher", "watcher-password")).status,
            403);
  HttpResponse anonymous = https(*d_, "GET", "/metrics");
  EXPECT_EQ(anonymous.status, 401);
  EXPECT_EQ(anonymous.headers["content-type"], "application/json");
  EXPECT_EQ(https(*d_, "POST", "/metrics", "", token).status, 405);
  EXPECT_EQ(https(*d_, "GET", "/metrics?x=1", "", token).status, 400);
}

TEST_F(Metrics, ScrapeTokensNeedRoleMetricsAnExpiryAndAreRevocable) {
  CmdResult for_admin = admin({"token", "create", "admin", "--expires", "1d"});
  EXPECT_EQ(for_admin.exit_code, 1);
  EXPECT_NE(for_admin.err.find("role metrics"), std::string::npos) << for_admin.err;
  EXPECT_EQ(admin({"token", "create", "scraper"}).exit_code, 2);  // no expiry: refused
  CmdResult too_long = admin({"token", "create", "scraper", "--expires", "101d"});
  EXPECT_EQ(too_long.exit_code, 1);
  EXPECT_NE(too_long.err.find("max_token_ttl"), std::string::npos) << too_long.err;
  EXPECT_EQ(admin({"token", "create", "nosuchuser", "--expires", "1d"}).exit_code, 1);

  CmdResult made = admin({"token", "create", "scraper", "--expires", "2h"});
  ASSERT_EQ(made.exit_code, 0) << made.err;
  std::string token = made.out.substr(0, made.out.find('\n'));
  EXPECT_EQ(made.out, token + "\n");  // stdout: the token alone, for a token file
  // stderr: "token <id> for scraper, expires ..."
  std::string id = made.err.substr(6, 12);
  CmdResult list = admin({"session", "list", "-o", "json"});
  ASSERT_EQ(list.exit_code, 0) << list.err;
  EXPECT_NE(list.out.find("\"id\":\"" + id + "\",\"user\":\"scraper\",\"role\":\"metrics\""),
            std::string::npos)
      << list.out;
  EXPECT_EQ(list.out.find(token), std::string::npos);  // the list never shows a token
  EXPECT_EQ(https(*d_, "GET", "/metrics", "", token).status, 200);
  CmdResult revoked = admin({"token", "revoke", id});
  EXPECT_EQ(revoked.exit_code, 0) << revoked.err;
  EXPECT_EQ(revoked.out, "revoked 1 session(s) with id " + id + "\n");
  EXPECT_EQ(https(*d_, "GET", "/metrics", "", token).status, 401);
}

TEST_F(Metrics, HealthzDetailsNeedALiveSession) {
  HttpResponse anonymous = https(*d_, "GET", "/v1/healthz");
  EXPECT_EQ(anonymous.status, 200);
  EXPECT_EQ(anonymous.body, R"({"status":"ok"})");
  HttpResponse bogus =
      https(*d_, "GET", "/v1/healthz", "", "jw_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
  EXPECT_EQ(bogus.body, R"({"status":"ok"})");
  HttpResponse authenticated = https(*d_, "GET", "/v1/healthz", "", admin_);
  EXPECT_EQ(authenticated.status, 200);
  EXPECT_NE(authenticated.body.find("\"details\":[\"cgroups: "), std::string::npos)
      << authenticated.body;
}

}  // namespace
}  // namespace jw::test
