// Integration tests of the jobworker-frontend process itself: what its privilege drop leaves in
// /proc/<pid>/status, and what a kill -9 of it does to the service, a running job and sessions.
// Runs in the test process against the real daemon.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <sstream>
#include <thread>

#include "tests/integration/daemon.h"

namespace jw::test {
namespace {

using Clock = std::chrono::steady_clock;

class FrontendProcess : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { d_ = Daemon::start().release(); }
  static void TearDownTestSuite() {
    delete d_;
    d_ = nullptr;
  }
  static Daemon* d_;
};
Daemon* FrontendProcess::d_ = nullptr;

TEST_F(FrontendProcess, PrivilegesAreGone) {
  pid_t pid = d_->frontendPid();
  ASSERT_GT(pid, 0);
  auto st = procStatus(pid);
  std::istringstream uids(st["Uid"]), gids(st["Gid"]);
  for (int i = 0; i < 4; i++) {
    long uid = -1, gid = -1;
    uids >> uid;
    gids >> gid;
    EXPECT_GT(uid, 0) << "Uid field " << i << ": " << st["Uid"];
    EXPECT_GT(gid, 0) << "Gid field " << i << ": " << st["Gid"];
  }
  EXPECT_EQ(st["CapEff"], "0000000000000000");
  EXPECT_EQ(st["CapPrm"], "0000000000000000");
  EXPECT_EQ(st["CapInh"], "0000000000000000");
  EXPECT_EQ(st["CapBnd"], "0000000000000000");
  EXPECT_EQ(st["CapAmb"], "0000000000000000");
  EXPECT_EQ(st["NoNewPrivs"], "1");
  EXPECT_EQ(st["Seccomp"], "2");
  EXPECT_EQ(st["Groups"], "");
  // It runs as the jobworker system account, never as a job's account.
  struct stat sb {};
  ASSERT_EQ(stat(("/proc/" + std::to_string(pid)).c_str(), &sb), 0);
  CmdResult id = run({"id", "-u", "jobworker"});
  if (id.exit_code == 0) {
    EXPECT_EQ(std::to_string(sb.st_uid) + "\n", id.out);
  }
  // Only the descriptors it needs: stdio, channel, listening socket, and what serving opened.
  std::string fd3 = std::filesystem::read_symlink("/proc/" + std::to_string(pid) + "/fd/3");
  std::string fd4 = std::filesystem::read_symlink("/proc/" + std::to_string(pid) + "/fd/4");
  EXPECT_EQ(fd3.rfind("socket:", 0), 0u) << fd3;
  EXPECT_EQ(fd4.rfind("socket:", 0), 0u) << fd4;
}

TEST_F(FrontendProcess, KillNineWhileAJobRuns) {
  std::string token = login(*d_, "admin", d_->adminPassword());
  // Prints 40 numbered lines over ~4 s.
  std::string id = startJob(
      *d_, token,
      R"({"command":["sh","-c","i=1; while [ $i -le 40 ]; do echo line $i; i=$((i+1)); sleep 0.1; done"]})");
  // Kill while the job is part-way through its output.
  auto logs_so_far = [&] { return https(*d_, "GET", "/v1/jobs/" + id + "/logs", "", token).body; };
  ASSERT_TRUE(waitUntil([&] { return logs_so_far().find("line 3\n") != std::string::npos; },
                        std::chrono::seconds(10)))
      << logs_so_far();
  pid_t old_pid = d_->frontendPid();
  ASSERT_GT(old_pid, 0);
  ASSERT_EQ(kill(old_pid, SIGKILL), 0);
  auto t0 = Clock::now();
  ASSERT_TRUE(d_->waitHealthy(5));
  EXPECT_LT(Clock::now() - t0, std::chrono::seconds(2)) << "healthz back within 2 s";
  pid_t new_pid = d_->frontendPid();
  EXPECT_GT(new_pid, 0);
  EXPECT_NE(new_pid, old_pid);
  // The session survived: the supervisor held it.
  HttpResponse who = https(*d_, "GET", "/v1/whoami", "", token);
  EXPECT_EQ(who.status, 200) << who.body;
  // The job was not affected and its whole output is readable.
  std::string s = waitJob(*d_, token, id, 30);
  EXPECT_EQ(jsonField(s, "state"), "exited");
  EXPECT_EQ(jsonField(s, "exit_code"), "0");
  std::string expected;
  for (int i = 1; i <= 40; i++) expected += "line " + std::to_string(i) + "\n";
  HttpResponse logs = https(*d_, "GET", "/v1/jobs/" + id + "/logs", "", token);
  EXPECT_EQ(logs.status, 200);
  EXPECT_EQ(logs.body, expected);
  // The new frontend dropped its privileges too.
  auto st = procStatus(new_pid);
  EXPECT_EQ(st["Seccomp"], "2");
  EXPECT_EQ(st["CapEff"], "0000000000000000");
}

TEST_F(FrontendProcess, AFollowerCanResumeAfterARestart) {
  std::string token = login(*d_, "admin", d_->adminPassword());
  std::string id =
      startJob(*d_, token, R"({"command":["sh","-c","echo first; sleep 2; echo second"]})");
  HttpResponse part;
  waitUntil(
      [&] {
        part = https(*d_, "GET", "/v1/jobs/" + id + "/logs", "", token);
        return !part.body.empty();
      },
      std::chrono::seconds(10));
  ASSERT_EQ(part.body, "first\n");
  ASSERT_EQ(kill(d_->frontendPid(), SIGKILL), 0);
  ASSERT_TRUE(d_->waitHealthy(5));
  HttpResponse rest = https(
      *d_, "GET", "/v1/jobs/" + id + "/logs?follow=true&offset=" + std::to_string(part.body.size()),
      "", token);
  EXPECT_EQ(rest.status, 200);
  EXPECT_EQ(rest.body, "second\n");
  EXPECT_EQ(rest.headers["x-jobworker-offset"], "6");
}

TEST_F(FrontendProcess, LoginsAreLoggedWithoutSecrets) {
  std::string password = d_->adminPassword();
  HttpResponse ok =
      https(*d_, "POST", "/v1/login", "{\"username\":\"admin\",\"password\":\"" + password + "\"}");
  ASSERT_EQ(ok.status, 201);
  std::string token = jsonField(ok.body, "token");
  https(*d_, "POST", "/v1/login", R"({"username":"admin","password":"not-the-password"})");
  // jobworkerd logs each outcome before it answers; its log reaches the daemon's log file
  // through a pipe: wait for the last line.
  waitUntil([&] { return d_->log().find("LOGIN_RESULT=\"wrong_password\"") != std::string::npos; },
            std::chrono::seconds(5));
  std::string log = d_->log();
  EXPECT_NE(log.find("USER=\"admin\" REMOTE_ADDR=\"127.0.0.1\" LOGIN_RESULT=\"ok\""),
            std::string::npos)
      << log;
  EXPECT_NE(log.find("USER=\"admin\" REMOTE_ADDR=\"127.0.0.1\" LOGIN_RESULT=\"wrong_password\""),
            std::string::npos);
  EXPECT_EQ(log.find(password), std::string::npos);
  EXPECT_EQ(log.find("not-the-password"), std::string::npos);
  EXPECT_EQ(log.find(token), std::string::npos);
  EXPECT_EQ(log.find(token.substr(3, 20)), std::string::npos);
}

}  // namespace
}  // namespace jw::test
