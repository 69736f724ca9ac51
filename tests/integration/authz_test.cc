// Integration test of the authorization matrix: two users of each role (admin, user, viewer)
// against the real daemon over HTTPS; role x own/other job x every endpoint. Runs in the test
// process.
#include <gtest/gtest.h>

#include <map>
#include <set>
#include <string>

#include "tests/integration/daemon.h"

namespace jw::test {
namespace {

class Authz : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    d_ = Daemon::start().release();
    for (const char* role : {"admin", "user", "viewer"}) {
      for (int i = 1; i <= 2; i++) {
        std::string name = std::string(role) + std::to_string(i);
        d_->addUser(name, role, "pw-" + name);
        (*tokens_)[name] = login(*d_, name, "pw-" + name);
      }
    }
  }
  static void TearDownTestSuite() {
    delete d_;
    d_ = nullptr;
  }

  static std::string token(const std::string& user) { return tokens_->at(user); }
  static int status(const std::string& user, const std::string& method, const std::string& path,
                    const std::string& body = "") {
    return https(*d_, method, path, body, token(user)).status;
  }
  // A running job owned by `user` (sleep 300), or a finished one (true).
  static std::string job(const std::string& user, bool running = true) {
    std::string id = startJob(
        *d_, token(user), running ? R"({"command":["sleep","300"]})" : R"({"command":["true"]})");
    if (!running) waitJob(*d_, token(user), id);
    return id;
  }

  static Daemon* d_;
  static std::map<std::string, std::string>* tokens_;
};
Daemon* Authz::d_ = nullptr;
std::map<std::string, std::string>* Authz::tokens_ = new std::map<std::string, std::string>;

TEST_F(Authz, WhoamiReportsEachRole) {
  for (const char* u : {"admin1", "admin2", "user1", "user2", "viewer1", "viewer2"}) {
    HttpResponse r = https(*d_, "GET", "/v1/whoami", "", token(u));
    ASSERT_EQ(r.status, 200) << u;
    EXPECT_EQ(jsonField(r.body, "user"), u);
    std::string role = std::string(u).substr(0, std::string(u).size() - 1);
    EXPECT_EQ(jsonField(r.body, "role"), role);
  }
}

TEST_F(Authz, StartJobs) {
  EXPECT_EQ(status("admin1", "POST", "/v1/jobs", R"({"command":["true"]})"), 201);
  EXPECT_EQ(status("user1", "POST", "/v1/jobs", R"({"command":["true"]})"), 201);
  EXPECT_EQ(status("viewer1", "POST", "/v1/jobs", R"({"command":["true"]})"), 403);
  // Role checks come before body validation: a viewer learns nothing from a bad body.
  EXPECT_EQ(status("viewer1", "POST", "/v1/jobs", "{"), 403);
}

// Expected status of GET /v1/jobs/{id} and GET /v1/jobs/{id}/logs for reader x owner.
TEST_F(Authz, ReadStatusAndLogs) {
  std::map<std::string, std::string> jobs = {{"admin1", job("admin1", false)},
                                             {"admin2", job("admin2", false)},
                                             {"user1", job("user1", false)},
                                             {"user2", job("user2", false)}};
  struct Case {
    const char* reader;
    const char* owner;
    int expected;
  } cases[] = {
      {"admin1", "admin1", 200}, {"admin1", "admin2", 200},  {"admin1", "user1", 200},
      {"user1", "user1", 200},   {"user1", "user2", 404},    {"user1", "admin1", 404},
      {"user2", "user1", 404},   {"viewer1", "admin1", 200}, {"viewer1", "user1", 200},
      {"viewer2", "user2", 200},
  };
  for (const auto& c : cases) {
    const std::string& id = jobs.at(c.owner);
    EXPECT_EQ(status(c.reader, "GET", "/v1/jobs/" + id), c.expected) << c.reader << " " << c.owner;
    EXPECT_EQ(status(c.reader, "GET", "/v1/jobs/" + id + "/logs"), c.expected)
        << c.reader << " " << c.owner;
    EXPECT_EQ(status(c.reader, "GET", "/v1/jobs/" + id + "/logs?follow=true"), c.expected)
        << c.reader << " " << c.owner;
  }
  // "Not found" for another user's job looks exactly like a job that does not exist.
  HttpResponse other = https(*d_, "GET", "/v1/jobs/" + jobs.at("user2"), "", token("user1"));
  HttpResponse none =
      https(*d_, "GET", "/v1/jobs/0b6f3c1e-5d2a-4c8e-9f1a-2b3c4d5e6f70", "", token("user1"));
  EXPECT_EQ(other.status, none.status);
  std::string other_error = jsonField(other.body, "error");
  size_t at = other_error.find(jobs.at("user2"));
  if (at != std::string::npos) other_error.replace(at, 36, "0b6f3c1e-5d2a-4c8e-9f1a-2b3c4d5e6f70");
  EXPECT_EQ(other_error, jsonField(none.body, "error"));
}

TEST_F(Authz, StopJobs) {
  struct Case {
    const char* actor;
    const char* owner;
    int expected;
  } cases[] = {
      {"admin1", "admin1", 202}, {"admin1", "admin2", 202},  {"admin1", "user1", 202},
      {"user1", "user1", 202},   {"user1", "user2", 404},    {"user1", "admin1", 404},
      {"viewer1", "user1", 403}, {"viewer1", "admin1", 403},
  };
  for (const auto& c : cases) {
    std::string id = job(c.owner);
    EXPECT_EQ(status(c.actor, "POST", "/v1/jobs/" + id + "/stop", R"({"grace_s":0.2})"), c.expected)
        << c.actor << " stops " << c.owner;
    HttpResponse s = https(*d_, "GET", "/v1/jobs/" + id, "", token(c.owner));
    if (c.expected == 202) {
      std::string final_status = waitJob(*d_, token(c.owner), id, 20);
      EXPECT_EQ(jsonField(final_status, "stopped_by"), c.actor);
    } else {
      EXPECT_EQ(jsonField(s.body, "state"), "running") << "a refused stop must not stop the job";
      EXPECT_EQ(status(c.owner, "POST", "/v1/jobs/" + id + "/stop", ""), 202);
    }
  }
  // A viewer is refused even for a job that does not exist (role first).
  EXPECT_EQ(status("viewer1", "POST", "/v1/jobs/0b6f3c1e-5d2a-4c8e-9f1a-2b3c4d5e6f70/stop"), 403);
}

std::set<std::string> listedIds(const std::string& body) {
  std::set<std::string> ids;
  size_t p = 0;
  while ((p = body.find("\"id\":\"", p)) != std::string::npos) {
    p += 6;
    ids.insert(body.substr(p, 36));
  }
  return ids;
}

TEST_F(Authz, ListJobs) {
  std::string a = job("admin2", false), u1 = job("user1", false), u2 = job("user2", false);
  // Own jobs only without all=true.
  auto mine = listedIds(https(*d_, "GET", "/v1/jobs", "", token("user1")).body);
  EXPECT_TRUE(mine.count(u1));
  EXPECT_FALSE(mine.count(u2));
  EXPECT_FALSE(mine.count(a));
  EXPECT_EQ(status("user1", "GET", "/v1/jobs?all=true"), 403);
  for (const char* seer : {"admin1", "viewer1", "viewer2"}) {
    HttpResponse r = https(*d_, "GET", "/v1/jobs?all=true", "", token(seer));
    ASSERT_EQ(r.status, 200) << seer;
    auto all = listedIds(r.body);
    EXPECT_TRUE(all.count(a) && all.count(u1) && all.count(u2)) << seer;
  }
  // A viewer owns no jobs.
  EXPECT_TRUE(listedIds(https(*d_, "GET", "/v1/jobs", "", token("viewer1")).body).empty());
  // An admin without all=true sees its own.
  auto admin_own = listedIds(https(*d_, "GET", "/v1/jobs", "", token("admin2")).body);
  EXPECT_TRUE(admin_own.count(a));
  EXPECT_FALSE(admin_own.count(u1));
}

TEST_F(Authz, NetworkHostIsForAdmins) {
  EXPECT_EQ(status("user1", "POST", "/v1/jobs", R"({"command":["true"],"network":"host"})"), 403);
  EXPECT_EQ(status("viewer1", "POST", "/v1/jobs", R"({"command":["true"],"network":"host"})"), 403);
  int admin = status("admin1", "POST", "/v1/jobs", R"({"command":["true"],"network":"host"})");
  EXPECT_EQ(admin, 201);
  EXPECT_EQ(status("user1", "POST", "/v1/jobs", R"({"command":["true"],"network":"none"})"), 201);
}

TEST_F(Authz, EveryEndpointNeedsCredentials) {
  std::string id = job("user1", false);
  struct Ep {
    const char* method;
    std::string path;
  } eps[] = {{"GET", "/v1/whoami"},
             {"POST", "/v1/logout"},
             {"GET", "/v1/jobs"},
             {"POST", "/v1/jobs"},
             {"GET", "/v1/jobs/" + id},
             {"POST", "/v1/jobs/" + id + "/stop"},
             {"GET", "/v1/jobs/" + id + "/logs"}};
  for (const auto& e : eps) {
    HttpResponse r = https(*d_, e.method, e.path);
    EXPECT_EQ(r.status, 401) << e.method << " " << e.path;
    EXPECT_EQ(r.headers["www-authenticate"], "Bearer realm=\"jobworker\"");
  }
}

TEST_F(Authz, RemovedUserLosesAccess) {
  d_->addUser("temp1", "user", "pw-temp1");
  std::string t = login(*d_, "temp1", "pw-temp1");
  ASSERT_EQ(https(*d_, "GET", "/v1/whoami", "", t).status, 200);
  CmdResult r =
      run({binary("jobworker-admin"), "user", "del", "--users-file", d_->usersFile(), "temp1"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  d_->reload();
  // The frontend has the new table; the token dies with its user once that table is applied.
  int s = 200;
  waitUntil([&] { return (s = https(*d_, "GET", "/v1/whoami", "", t).status) != 200; },
            std::chrono::seconds(5));
  EXPECT_EQ(s, 401);
}

}  // namespace
}  // namespace jw::test
