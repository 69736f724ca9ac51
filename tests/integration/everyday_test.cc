// Integration tests of issue 17's everyday verbs against the real jobworkerd over real HTTPS and
// through the real CLI: the wait long poll (API and `jobworker wait`), names and their
// precedence, labels, list filters and cursor pages, DELETE / `rm`, and the version endpoint.
// Runs in the test process.
#include <Poco/JSON/Array.h>
#include <Poco/JSON/Object.h>
#include <Poco/JSON/Parser.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <future>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "tests/integration/daemon.h"

namespace jw::test {
namespace {

using Clock = std::chrono::steady_clock;

Poco::JSON::Object::Ptr parseObject(const std::string& text) {
  Poco::JSON::Parser p;
  return p.parse(text).extract<Poco::JSON::Object::Ptr>();
}

std::string errorCode(const HttpResponse& r) {
  return jsonField(jsonField(r.body, "error"), "code");
}

// The ids of a {"jobs":[...]} answer, in order.
std::vector<std::string> idsOf(const std::string& body) {
  std::vector<std::string> out;
  auto jobs = parseObject(body)->getArray("jobs");
  for (size_t i = 0; jobs && i < jobs->size(); ++i) {
    out.push_back(jobs->getObject(static_cast<unsigned>(i))->getValue<std::string>("id"));
  }
  return out;
}

class Everyday : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    Daemon::Options o;
    // 250 short jobs for the pagination test start faster than each is reaped.
    o.config_text = "max_running_jobs_per_user = 400\n";
    daemon_ = Daemon::start(o).release();
    if (daemon_ == nullptr) return;
    daemon_->addUser("bob", "user", "bob-password-1");
    daemon_->addUser("vera", "viewer", "vera-password-1");
    admin_ = login(*daemon_, "admin", daemon_->adminPassword());
    bob_ = login(*daemon_, "bob", "bob-password-1");
    vera_ = login(*daemon_, "vera", "vera-password-1");
  }
  static void TearDownTestSuite() {
    delete daemon_;
    daemon_ = nullptr;
  }

  void SetUp() override {
    ASSERT_NE(daemon_, nullptr) << "the daemon did not start";
    for (const char* v : {"JOBWORKER_SERVER", "JOBWORKER_TOKEN", "JOBWORKER_CA_FILE"}) unsetenv(v);
    xdg_ = makeTempDir("jwcli");
  }
  void TearDown() override { removeTree(xdg_); }

  const Daemon& d() const { return *daemon_; }

  // The jobworker CLI as `token`'s user, with this test's private config directory.
  CmdResult cli(std::vector<std::string> args, const std::string& token = admin_) {
    args.insert(args.begin(), binary("jobworker"));
    return run(args, "",
               {"XDG_CONFIG_HOME=" + xdg_, "JOBWORKER_SERVER=" + d().url(),
                "JOBWORKER_CA_FILE=" + d().caFile(), "JOBWORKER_TOKEN=" + token});
  }

  static Daemon* daemon_;
  static std::string admin_, bob_, vera_;
  std::string xdg_;
};

Daemon* Everyday::daemon_ = nullptr;
std::string Everyday::admin_, Everyday::bob_, Everyday::vera_;

// ---- wait -------------------------------------------------------------------------------------

TEST_F(Everyday, WaitAnswersEveryWaiterWithTheExitCodeWhenTheJobEnds) {
  std::string id = startJob(d(), admin_, R"({"command":["sh","-c","sleep 1; exit 7"]})");
  std::vector<std::future<HttpResponse>> waiters;
  for (int i = 0; i < 4; i++) {
    waiters.push_back(std::async(std::launch::async, [&] {
      return https(d(), "GET", "/v1/jobs/" + id + "/wait?timeout_s=60", "", admin_);
    }));
  }
  for (auto& w : waiters) {
    HttpResponse r = w.get();
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(jsonField(r.body, "state"), "exited");
    EXPECT_EQ(jsonField(r.body, "exit_code"), "7");
  }
  // An ended job is answered at once.
  auto t0 = Clock::now();
  HttpResponse again = https(d(), "GET", "/v1/jobs/" + id + "/wait?timeout_s=60", "", admin_);
  EXPECT_EQ(jsonField(again.body, "exit_code"), "7");
  EXPECT_LT(Clock::now() - t0, std::chrono::seconds(5));
}

TEST_F(Everyday, WaitTimesOutWithTheCurrentStatus) {
  std::string id = startJob(d(), admin_, R"({"command":["sleep","60"]})");
  auto t0 = Clock::now();
  HttpResponse r = https(d(), "GET", "/v1/jobs/" + id + "/wait?timeout_s=1.5", "", admin_);
  auto took = Clock::now() - t0;
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(jsonField(r.body, "state"), "running");
  EXPECT_GE(took, std::chrono::milliseconds(1400));
  EXPECT_LT(took, std::chrono::seconds(15));
  std::printf(
      "wait timeout_s=1.5 answered after %lld ms\n",
      static_cast<long long>(std::chrono::duration_cast<std::chrono::milliseconds>(took).count()));
  // timeout_s=0: the status now.
  EXPECT_EQ(jsonField(https(d(), "GET", "/v1/jobs/" + id + "/wait?timeout_s=0", "", admin_).body,
                      "state"),
            "running");
  // Another user's job is not found; bad timeouts are 400.
  EXPECT_EQ(https(d(), "GET", "/v1/jobs/" + id + "/wait", "", bob_).status, 404);
  for (const char* bad : {"-1", "abc", "3601", "1e3", ""}) {
    HttpResponse b =
        https(d(), "GET", "/v1/jobs/" + id + "/wait?timeout_s=" + std::string(bad), "", admin_);
    EXPECT_EQ(b.status, 400) << bad << ": " << b.body;
  }
  EXPECT_EQ(https(d(), "POST", "/v1/jobs/" + id + "/stop", "", admin_).status, 202);
  HttpResponse ended = https(d(), "GET", "/v1/jobs/" + id + "/wait?timeout_s=30", "", admin_);
  EXPECT_EQ(jsonField(ended.body, "state"), "killed");
}

TEST_F(Everyday, CliWaitPrintsEachExitCodeAndExitsWithTheFirst) {
  std::string a = startJob(d(), admin_, R"({"command":["sh","-c","sleep 0.5; exit 3"]})");
  std::string b = startJob(d(), admin_, R"({"command":["sh","-c","exit 5"]})");
  CmdResult r = cli({"wait", a.substr(0, 8), b});
  EXPECT_EQ(r.exit_code, 3) << r.err;
  EXPECT_EQ(r.out, "3\n5\n");
  CmdResult json = cli({"wait", "-o", "json", b});
  EXPECT_EQ(json.exit_code, 5) << json.err;
  EXPECT_EQ(parseObject(json.out)->getValue<int>("exit_code"), 5);
  std::string slow = startJob(d(), admin_, R"({"command":["sleep","60"]})");
  CmdResult timed_out = cli({"wait", "--timeout", "1s", slow});
  EXPECT_EQ(timed_out.exit_code, 1);
  EXPECT_NE(timed_out.err.find("still running after --timeout"), std::string::npos)
      << timed_out.err;
  EXPECT_EQ(cli({"stop", slow}).exit_code, 0);
}

// ---- names and labels -------------------------------------------------------------------------

TEST_F(Everyday, NamesAreUniqueAmongRunningJobsOfOneOwner) {
  std::string web = startJob(d(), admin_, R"({"command":["sleep","60"],"name":"web"})");
  HttpResponse twice =
      https(d(), "POST", "/v1/jobs", R"({"command":["true"],"name":"web"})", admin_);
  EXPECT_EQ(twice.status, 409) << twice.body;
  EXPECT_NE(twice.body.find(web), std::string::npos) << twice.body;
  // Another owner may use the name.
  std::string bobs = startJob(d(), bob_, R"({"command":["true"],"name":"web"})");
  EXPECT_EQ(jsonField(https(d(), "GET", "/v1/jobs/" + web, "", admin_).body, "name"), "web");
  // Malformed names and labels are 400 naming the field.
  for (const char* body :
       {R"({"command":["true"],"name":"a b"})",
        R"({"command":["true"],"name":"0b6f3c1e-5d2a-4c8e-9f1a-2b3c4d5e6f70"})",
        R"({"command":["true"],"name":7})", R"({"command":["true"],"labels":{"k":"v/w"}})",
        R"({"command":["true"],"labels":["k=v"]})"}) {
    HttpResponse r = https(d(), "POST", "/v1/jobs", body, admin_);
    EXPECT_EQ(r.status, 400) << body << ": " << r.body;
  }
  EXPECT_EQ(https(d(), "POST", "/v1/jobs/" + web + "/stop", "", admin_).status, 202);
  waitJob(d(), admin_, web);
  // Once it has ended, the name is free again.
  std::string next = startJob(d(), admin_, R"({"command":["true"],"name":"web"})");
  EXPECT_FALSE(next.empty());
  waitJob(d(), admin_, next);
  waitJob(d(), bob_, bobs);
}

TEST_F(Everyday, AnExactIdBeatsANameWhichBeatsAnIdPrefix) {
  std::string first = startJob(d(), admin_, R"({"command":["sh","-c","exit 11"]})");
  waitJob(d(), admin_, first);
  // A job named like the first one's id prefix: the name wins over the prefix.
  std::string prefix = first.substr(0, 6);
  std::string named =
      startJob(d(), admin_, R"({"command":["sh","-c","exit 12"],"name":")" + prefix + "\"}");
  waitJob(d(), admin_, named);
  CmdResult by_name = cli({"status", "-o", "json", prefix});
  ASSERT_EQ(by_name.exit_code, 0) << by_name.err;
  EXPECT_EQ(parseObject(by_name.out)->getValue<std::string>("id"), named);
  // The full id still names the first job.
  CmdResult by_id = cli({"status", "-o", "json", first});
  ASSERT_EQ(by_id.exit_code, 0) << by_id.err;
  EXPECT_EQ(parseObject(by_id.out)->getValue<int>("exit_code"), 11);
  // A longer prefix is no name: the prefix rule finds the first job.
  CmdResult by_prefix = cli({"status", "-o", "json", first.substr(0, 9)});
  ASSERT_EQ(by_prefix.exit_code, 0) << by_prefix.err;
  EXPECT_EQ(parseObject(by_prefix.out)->getValue<std::string>("id"), first);
  // Two finished jobs with one name: ambiguous, listing both.
  std::string again = startJob(d(), admin_, R"({"command":["true"],"name":")" + prefix + "\"}");
  waitJob(d(), admin_, again);
  CmdResult amb = cli({"status", prefix});
  EXPECT_EQ(amb.exit_code, 1);
  EXPECT_NE(amb.err.find("is ambiguous"), std::string::npos) << amb.err;
  EXPECT_NE(amb.err.find(named.substr(0, 8)), std::string::npos) << amb.err;
  EXPECT_NE(amb.err.find(again.substr(0, 8)), std::string::npos) << amb.err;
  // The CLI starts named, labelled jobs, and status/stop take several at once.
  CmdResult start = cli({"start", "--name", "svc-a", "-l", "tier=svc", "--", "sleep", "60"});
  ASSERT_EQ(start.exit_code, 0) << start.err;
  std::string svc = start.out.substr(0, 36);
  CmdResult both = cli({"status", "-o", "json", "svc-a", first});
  ASSERT_EQ(both.exit_code, 0) << both.err;
  EXPECT_EQ(idsOf(both.out), (std::vector<std::string>{svc, first}));
  EXPECT_EQ(parseObject(both.out)
                ->getArray("jobs")
                ->getObject(0)
                ->getObject("labels")
                ->getValue<std::string>("tier"),
            "svc");
  CmdResult stop = cli({"stop", "svc-a"});
  EXPECT_EQ(stop.exit_code, 0) << stop.err;
  EXPECT_EQ(stop.out, svc + "\n");
  EXPECT_EQ(cli({"wait", "svc-a"}).out, "143\n");
}

TEST_F(Everyday, ListFiltersOnLabelsOwnerStateAndSince) {
  std::string db1 =
      startJob(d(), admin_, R"({"command":["true"],"labels":{"suite":"filters","tier":"db"}})");
  std::string web1 =
      startJob(d(), admin_, R"({"command":["true"],"labels":{"suite":"filters","tier":"web"}})");
  std::string db2 =
      startJob(d(), bob_, R"({"command":["true"],"labels":{"suite":"filters","tier":"db"}})");
  for (const auto& [id, tok] : {std::pair{db1, admin_}, {web1, admin_}, {db2, bob_}}) {
    waitJob(d(), tok, id);
  }
  HttpResponse db = https(d(), "GET", "/v1/jobs?all=true&label=suite=filters,tier=db", "", admin_);
  ASSERT_EQ(db.status, 200) << db.body;
  EXPECT_EQ(idsOf(db.body), (std::vector<std::string>{db2, db1}));
  EXPECT_EQ(jsonField(db.body, "next"), "null");
  // owner= implies every owner's jobs for admin and viewer; role user may name only itself.
  EXPECT_EQ(idsOf(https(d(), "GET", "/v1/jobs?owner=bob&label=suite=filters", "", vera_).body),
            (std::vector<std::string>{db2}));
  EXPECT_EQ(idsOf(https(d(), "GET", "/v1/jobs?owner=bob&label=suite=filters", "", bob_).body),
            (std::vector<std::string>{db2}));
  HttpResponse others = https(d(), "GET", "/v1/jobs?owner=admin", "", bob_);
  EXPECT_EQ(others.status, 403) << others.body;
  // Without all, one's own jobs only.
  EXPECT_EQ(idsOf(https(d(), "GET", "/v1/jobs?label=tier=db,suite=filters", "", admin_).body),
            (std::vector<std::string>{db1}));
  // since: an RFC 3339 time (the created_at of web1) or a duration.
  std::string t = jsonField(https(d(), "GET", "/v1/jobs/" + web1, "", admin_).body, "created_at");
  EXPECT_EQ(
      idsOf(https(d(), "GET", "/v1/jobs?all=true&label=suite=filters&since=" + t, "", admin_).body),
      (std::vector<std::string>{db2, web1}));
  EXPECT_EQ(
      idsOf(https(d(), "GET", "/v1/jobs?all=true&label=suite=filters&since=1h", "", admin_).body)
          .size(),
      3u);
  EXPECT_EQ(
      https(d(), "GET", "/v1/jobs?all=true&label=suite=filters&state=running", "", admin_).body,
      R"({"jobs":[],"next":null})");
  // The CLI: list -l ... --owner.
  CmdResult q = cli({"list", "-q", "--all", "-l", "suite=filters", "-l", "tier=db"});
  ASSERT_EQ(q.exit_code, 0) << q.err;
  EXPECT_EQ(q.out, db2 + "\n" + db1 + "\n");
  CmdResult o = cli({"list", "-q", "--owner", "bob", "-l", "suite=filters"});
  EXPECT_EQ(o.out, db2 + "\n") << o.err;
  // Output formats: name, yaml, wide; piped output is never cut nor coloured.
  EXPECT_EQ(cli({"list", "-o", "name", "-l", "suite=filters", "-l", "tier=db"}).out, db1 + "\n");
  CmdResult yaml = cli({"status", "-o", "yaml", db1});
  EXPECT_EQ(yaml.out.rfind("command:\n  - \"true\"\n", 0), 0u) << yaml.out;
  EXPECT_NE(yaml.out.find("\nid: \"" + db1 + "\"\n"), std::string::npos) << yaml.out;
  EXPECT_NE(yaml.out.find("\nlabels:\n  suite: \"filters\"\n  tier: \"db\"\n"), std::string::npos)
      << yaml.out;
  CmdResult wide = cli({"list", "-o", "wide", "--no-trunc", "-l", "suite=filters"});
  EXPECT_NE(wide.out.find(db1 + "   admin   exited 0"), std::string::npos) << wide.out;
  EXPECT_NE(wide.out.find("suite=filters,tier=db"), std::string::npos) << wide.out;
  EXPECT_EQ(wide.out.find("\x1b["), std::string::npos) << wide.out;
  // Malformed filters are 400.
  for (const char* bad :
       {"label=tier", "label=a=b,,c=d", "owner=Not%20A%20User", "state=zombie", "since=yesterday",
        "limit=0", "limit=1001", "limit=x", "after=12", "after=1.not-an-id", "name=a%20b"}) {
    HttpResponse r = https(d(), "GET", std::string("/v1/jobs?") + bad, "", admin_);
    EXPECT_EQ(r.status, 400) << bad << ": " << r.body;
    EXPECT_EQ(errorCode(r), "bad_request") << bad;
  }
}

TEST_F(Everyday, PagesOver250JobsReturnEachExactlyOnce) {
  std::set<std::string> started;
  auto t0 = Clock::now();
  for (int i = 0; i < 250; i++) {
    started.insert(startJob(d(), admin_, R"({"command":["true"],"labels":{"batch":"pages"}})"));
  }
  std::printf(
      "started 250 jobs in %lld ms\n",
      static_cast<long long>(
          std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0).count()));
  ASSERT_EQ(started.size(), 250u);
  std::vector<std::string> seen;
  std::string after;
  int pages = 0;
  for (; pages < 100; pages++) {
    std::string path = "/v1/jobs?label=batch=pages&limit=7";
    if (!after.empty()) path += "&after=" + after;
    HttpResponse r = https(d(), "GET", path, "", admin_);
    ASSERT_EQ(r.status, 200) << r.body;
    auto page = idsOf(r.body);
    EXPECT_LE(page.size(), 7u);
    seen.insert(seen.end(), page.begin(), page.end());
    if (pages == 3) {
      // Jobs started meanwhile are newer than the cursor: later pages do not show them.
      startJob(d(), admin_, R"({"command":["true"],"labels":{"batch":"pages"}})");
    }
    after = jsonField(r.body, "next");
    if (after == "null") break;
  }
  EXPECT_EQ(pages, 35);  // 250 / 7 = 35.7: 36 pages, the last one short
  ASSERT_EQ(seen.size(), 250u);
  EXPECT_EQ(std::set<std::string>(seen.begin(), seen.end()), started);
  // Newest first, as without pages.
  HttpResponse all = https(d(), "GET", "/v1/jobs?label=batch=pages", "", admin_);
  auto every = idsOf(all.body);
  ASSERT_EQ(every.size(), 251u);
  EXPECT_EQ(std::vector<std::string>(every.begin() + 1, every.end()), seen);
  CmdResult limited = cli({"list", "-q", "-l", "batch=pages", "--limit", "5"});
  EXPECT_EQ(limited.out, every[0] + "\n" + every[1] + "\n" + every[2] + "\n" + every[3] + "\n" +
                             every[4] + "\n");
}

// ---- delete, version --------------------------------------------------------------------------

TEST_F(Everyday, DeleteRemovesAFinishedJobAndItsOutput) {
  std::string id = startJob(d(), bob_, R"({"command":["sh","-c","echo kept; exit 0"]})");
  waitJob(d(), bob_, id);
  EXPECT_EQ(https(d(), "GET", "/v1/jobs/" + id + "/logs", "", bob_).body, "kept\n");
  EXPECT_EQ(https(d(), "DELETE", "/v1/jobs/" + id, "", vera_).status, 403);
  HttpResponse del = https(d(), "DELETE", "/v1/jobs/" + id, "", bob_);
  EXPECT_EQ(del.status, 204) << del.body;
  EXPECT_EQ(https(d(), "GET", "/v1/jobs/" + id, "", bob_).status, 404);
  EXPECT_EQ(https(d(), "GET", "/v1/jobs/" + id + "/logs", "", bob_).status, 404);
  EXPECT_EQ(https(d(), "DELETE", "/v1/jobs/" + id, "", bob_).status, 404);
  // Running: 409. Another user's: 404 (existence not revealed).
  std::string running = startJob(d(), admin_, R"({"command":["sleep","60"],"name":"keep-me"})");
  HttpResponse busy = https(d(), "DELETE", "/v1/jobs/" + running, "", admin_);
  EXPECT_EQ(busy.status, 409) << busy.body;
  EXPECT_EQ(https(d(), "DELETE", "/v1/jobs/" + running, "", bob_).status, 404);
  CmdResult rm_running = cli({"rm", "keep-me"});
  EXPECT_EQ(rm_running.exit_code, 1);
  EXPECT_NE(rm_running.err.find("still running: stop it first"), std::string::npos)
      << rm_running.err;
  EXPECT_EQ(cli({"stop", "keep-me"}).exit_code, 0);
  EXPECT_EQ(cli({"wait", "keep-me"}).exit_code, 143);
  CmdResult rm = cli({"rm", "keep-me"});
  EXPECT_EQ(rm.exit_code, 0) << rm.err;
  EXPECT_EQ(rm.out, running + "\n");
  EXPECT_EQ(https(d(), "GET", "/v1/jobs/" + running, "", admin_).status, 404);
  EXPECT_EQ(https(d(), "PUT", "/v1/jobs/" + running, "", admin_).status, 405);
}

TEST_F(Everyday, VersionNamesTheServerBuildAndItsFeatures) {
  HttpResponse r = https(d(), "GET", "/v1/version", "", vera_);
  ASSERT_EQ(r.status, 200) << r.body;
  auto o = parseObject(r.body);
  EXPECT_FALSE(o->getValue<std::string>("version").empty());
  EXPECT_EQ(o->getValue<std::string>("api_version"), "v1");
  EXPECT_NE(o->getValue<std::string>("cgroup_backend"), "");
  EXPECT_NE(r.body.find("\"wait\""), std::string::npos) << r.body;
  EXPECT_EQ(https(d(), "GET", "/v1/version").status, 401);
  CmdResult v = cli({"version"}, vera_);
  ASSERT_EQ(v.exit_code, 0) << v.err;
  EXPECT_EQ(v.out.rfind("client: jobworker " + o->getValue<std::string>("version") + "\n", 0), 0u)
      << v.out;
  EXPECT_NE(v.out.find("server: jobworkerd " + o->getValue<std::string>("version")),
            std::string::npos)
      << v.out;
}

// ---- admin verbs -------------------------------------------------------------------------------

TEST_F(Everyday, AdminUserSetChangesTheRoleAndKeepsThePassword) {
  daemon_->addUser("carol", "user", "carol-password-1");
  std::string carol = login(d(), "carol", "carol-password-1");
  EXPECT_EQ(https(d(), "POST", "/v1/jobs", R"({"command":["true"]})", carol).status, 201);
  CmdResult set = run({binary("jobworker-admin"), "user", "set", "--users-file", d().usersFile(),
                       "carol", "--role", "viewer"});
  ASSERT_EQ(set.exit_code, 0) << set.err;
  EXPECT_NE(set.out.find("user carol now has role viewer"), std::string::npos) << set.out;
  daemon_->reload();
  EXPECT_EQ(jsonField(https(d(), "GET", "/v1/whoami", "", carol).body, "role"), "viewer");
  EXPECT_EQ(https(d(), "POST", "/v1/jobs", R"({"command":["true"]})", carol).status, 403);
  login(d(), "carol", "carol-password-1");  // the same password still works
  EXPECT_EQ(
      run({binary("jobworker-admin"), "user", "set", "--users-file", d().usersFile(), "carol"})
          .exit_code,
      2);  // nothing to set
  EXPECT_EQ(run({binary("jobworker-admin"), "user", "set", "--users-file", d().usersFile(),
                 "nosuch", "--role", "user"})
                .exit_code,
            1);
}

// ---- contexts ----------------------------------------------------------------------------------

// check-config reads a file as jobworkerd does: the effective settings of a good one (the ones
// it sets, the defaults, the host-derived maxima) and the line of a bad one. The listing is a
// config file jobworkerd starts with.
TEST(EverydayAdmin, CheckConfigPrintsTheEffectiveSettingsOrTheFault) {
  std::string dir = makeTempDir("jwcheck");
  std::string good = dir + "/good.conf", bad = dir + "/bad.conf", listed = dir + "/listed.conf";
  std::ofstream(good) << "stop_grace = 3s\nmax.total_pids = 5000\nrole.user.max.pids = 64\n";
  std::ofstream(bad) << "stop_grace = 3s\nstop_grase = 4s\n";
  CmdResult ok = run({binary("jobworker-admin"), "check-config", good});
  EXPECT_EQ(ok.exit_code, 0) << ok.err;
  for (const char* line :
       {"stop_grace = 3000ms\n", "max.total_pids = 5000\n", "role.user.max.pids = 64\n",
        "output_cap = 1073741824\n", "max.memory = "}) {
    EXPECT_NE(ok.out.find(line), std::string::npos) << line << " missing from:\n" << ok.out;
  }
  CmdResult fault = run({binary("jobworker-admin"), "check-config", bad});
  EXPECT_EQ(fault.exit_code, 1);
  EXPECT_NE(fault.err.find("bad.conf:2: unknown key 'stop_grase'"), std::string::npos) << fault.err;
  EXPECT_EQ(run({binary("jobworker-admin"), "check-config"}).exit_code, 2);
  // The listing itself checks clean and lists the same.
  std::ofstream(listed) << ok.out;
  CmdResult again = run({binary("jobworker-admin"), "check-config", listed});
  EXPECT_EQ(again.exit_code, 0) << again.err;
  EXPECT_EQ(again.out.substr(again.out.find('\n')), ok.out.substr(ok.out.find('\n')));
  removeTree(dir);
}

TEST_F(Everyday, ContextsSwitchBetweenTwoDaemonsEachWithItsOwnToken) {
  auto other = Daemon::start();
  ASSERT_NE(other, nullptr);
  auto jw = [&](std::vector<std::string> args, const std::string& in = "",
                std::vector<std::string> env = {}) {
    args.insert(args.begin(), binary("jobworker"));
    env.push_back("XDG_CONFIG_HOME=" + xdg_);
    return run(args, in, env);
  };
  // A config.json of the single-server CLI becomes the context "default" on first use.
  const std::string dir = xdg_ + "/jobworker";
  ASSERT_EQ(jw({"context", "list"}).exit_code, 0);  // creates nothing but works
  ASSERT_EQ(::mkdir(dir.c_str(), 0700), 0);
  {
    std::ofstream f(dir + "/config.json");
    f << "{\"server\":\"" << d().url() << "\",\"ca_file\":\"" << d().caFile() << "\",\"token\":\""
      << admin_ << "\",\"user\":\"admin\",\"role\":\"admin\"}\n";
  }
  ASSERT_EQ(::chmod((dir + "/config.json").c_str(), 0600), 0);
  CmdResult first = jw({"whoami"});
  ASSERT_EQ(first.exit_code, 0) << first.err;
  EXPECT_NE(first.out.find("server: " + d().url()), std::string::npos) << first.out;
  EXPECT_NE(first.err.find("to the context 'default'"), std::string::npos) << first.err;
  EXPECT_NE(::access((dir + "/config.json").c_str(), F_OK), 0);
  EXPECT_EQ(readFile(dir + "/current-context"), "default\n");
  // A second server: its own context, its own token file, 0600.
  CmdResult add =
      jw({"context", "add", "two", "--server", other->url(), "--ca-file", other->caFile()});
  ASSERT_EQ(add.exit_code, 0) << add.err;
  CmdResult login = jw({"login", "--context", "two", "--user", "admin", "--password-stdin"},
                       other->adminPassword() + "\n");
  ASSERT_EQ(login.exit_code, 0) << login.err;
  for (const char* name : {"default", "two"}) {
    struct stat st {};
    std::string path = dir + "/contexts/" + name + ".json";
    ASSERT_EQ(::stat(path.c_str(), &st), 0) << path;
    EXPECT_EQ(st.st_mode & 0777, 0600u) << path;
    EXPECT_NE(readFile(path).find("\"token\""), std::string::npos) << path;
  }
  EXPECT_NE(readFile(dir + "/contexts/two.json"), readFile(dir + "/contexts/default.json"));
  auto server_of = [](const CmdResult& r) {
    size_t at = r.out.find("server: ");
    return at == std::string::npos ? r.err : r.out.substr(at + 8, r.out.find('\n', at) - at - 8);
  };
  EXPECT_EQ(server_of(jw({"whoami"})), d().url());
  EXPECT_EQ(server_of(jw({"whoami", "--context", "two"})), other->url());
  EXPECT_EQ(server_of(jw({"whoami"}, "", {"JOBWORKER_CONTEXT=two"})), other->url());
  EXPECT_EQ(server_of(jw({"--context", "default", "whoami"}, "", {"JOBWORKER_CONTEXT=two"})),
            d().url());  // the flag over the environment
  ASSERT_EQ(jw({"context", "use", "two"}).exit_code, 0);
  EXPECT_EQ(server_of(jw({"whoami"})), other->url());
  // A job started in one context is not the other server's.
  CmdResult started = jw({"start", "--", "true"});
  ASSERT_EQ(started.exit_code, 0) << started.err;
  std::string id = started.out.substr(0, 36);
  EXPECT_EQ(jw({"wait", id}).out, "0\n");
  EXPECT_EQ(jw({"--context", "default", "status", id}).exit_code, 1);
  CmdResult list = jw({"context", "list"});
  ASSERT_EQ(list.exit_code, 0) << list.err;
  EXPECT_NE(list.out.find("*        two"), std::string::npos) << list.out;
  EXPECT_NE(list.out.find(other->url()), std::string::npos) << list.out;
  EXPECT_NE(list.out.find(d().url()), std::string::npos) << list.out;
  CmdResult nosuch = jw({"whoami", "--context", "nosuch"});
  EXPECT_EQ(nosuch.exit_code, 1);
  EXPECT_NE(nosuch.err.find("no context 'nosuch'"), std::string::npos) << nosuch.err;
  EXPECT_EQ(jw({"context", "use", "nosuch"}).exit_code, 1);
  EXPECT_EQ(jw({"context", "add", "two", "--server", d().url()}).exit_code, 1);  // exists
}

// ---- shell completion --------------------------------------------------------------------------

// zsh completes only in an interactive shell: drive one through zpty, press TAB after `words`,
// and print what it shows (the command line as completed, and any listing).
constexpr const char* kZptyDriver = R"(zmodload zsh/zpty
zpty z env PATH="$PATH" TERM=dumb zsh -f -i
zpty -w z "PS1='PROMPT> '; fpath=($1 \$fpath); autoload -U compinit; compinit -u -D; zstyle ':completion:*' list-prompt ''; LISTMAX=10000; unsetopt beep; print RE''ADY"
zpty -r z junk '*READY*PROMPT> '
zpty -w -n z "$2"$'\t'
zpty -w z $'\C-e; print DO''NE'
zpty -r z out '*DONE*PROMPT> '
print -r -- "$out"
zpty -d z
)";

TEST_F(Everyday, CompletionInBashZshAndFishOffersCommandsFlagValuesAndLiveJobIds) {
  std::string id = startJob(d(), admin_, R"({"command":["true"],"name":"completed"})");
  waitJob(d(), admin_, id);
  const std::string prefix = id.substr(0, 8);
  std::string dir = makeTempDir("jwcompl");
  for (const char* shell : {"bash", "zsh", "fish"}) {
    CmdResult script = cli({"completion", shell});
    ASSERT_EQ(script.exit_code, 0) << script.err;
    std::ofstream(dir + "/" + (std::string(shell) == "zsh" ? "_jobworker" : shell)) << script.out;
  }
  std::ofstream(dir + "/zpty.zsh") << kZptyDriver;
  std::string bin_dir = binary("jobworker").substr(0, binary("jobworker").rfind('/'));
  std::vector<std::string> env = {"PATH=" + bin_dir + ":/usr/bin:/bin", "XDG_CONFIG_HOME=" + xdg_,
                                  "JOBWORKER_SERVER=" + d().url(),
                                  "JOBWORKER_CA_FILE=" + d().caFile(), "JOBWORKER_TOKEN=" + admin_};
  auto bash = [&](const std::string& words) {
    return run({"bash", "--norc", "-c",
                "source " + dir + "/bash; COMP_WORDS=(" + words +
                    "); COMP_CWORD=$((${#COMP_WORDS[@]} - 1)); _jobworker; "
                    "printf '%s\\n' \"${COMPREPLY[@]}\""},
               "", env)
        .out;
  };
  EXPECT_EQ(bash("jobworker sta"), "start\nstatus\n");
  EXPECT_EQ(bash("jobworker list --state ''"), "running\nexited\nkilled\nfailed\n");
  EXPECT_EQ(bash("jobworker status " + prefix), id + "\n");
  auto fish = [&](const std::string& line) {
    return run({"fish", "--no-config", "-c", "source " + dir + "/fish; complete -C '" + line + "'"},
               "", env)
        .out;
  };
  EXPECT_EQ(fish("jobworker sta"),
            "start\tstart a job and print its id\nstatus\tshow jobs' status\n");
  EXPECT_NE(fish("jobworker list --state ").find("killed\t"), std::string::npos);
  EXPECT_EQ(fish("jobworker wait " + prefix), id + "\n");
  auto zsh = [&](const std::string& line) {
    return run({"zsh", "-f", dir + "/zpty.zsh", dir, line}, "", env, 30).out;
  };
  std::string zcmd = zsh("jobworker sta");
  EXPECT_NE(zcmd.find("start"), std::string::npos) << zcmd;
  EXPECT_NE(zcmd.find("status"), std::string::npos) << zcmd;
  std::string zval = zsh("jobworker list --state ");
  EXPECT_NE(zval.find("exited   failed   killed   running"), std::string::npos) << zval;
  std::string zid = zsh("jobworker status " + prefix);
  EXPECT_NE(zid.find("jobworker status " + id), std::string::npos) << zid;
  removeTree(dir);
}

}  // namespace
}  // namespace jw::test
