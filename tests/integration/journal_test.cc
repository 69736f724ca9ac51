// Integration tests of jobworkerd's audit events as journald receives them: the test owns the
// journal socket (a private mount namespace with its own /run, and a datagram socket at
// /run/systemd/journal/socket, where libsystemd's sd_journal_send writes), starts the real daemon
// with JOURNAL_STREAM set, and reads the native-protocol entries it sends. Runs in the test
// process against the real daemon; no journald needed.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "common/fd.h"
#include "common/log.h"
#include "tests/integration/daemon.h"

namespace jw::test {
namespace {

namespace ids = jw::log::ids;

using Entry = std::vector<std::pair<std::string, std::string>>;

// Every field each audit event must carry (docs/operations.md, "Audit events"); empty or 0
// where it does not apply, never absent.
const std::map<std::string_view, std::vector<std::string>>& schema() {
  static const std::map<std::string_view, std::vector<std::string>> s = {
      {ids::kLogin, {"USER", "REMOTE_ADDR", "LOGIN_RESULT", "THROTTLE_REASON"}},
      {ids::kLoginFailed, {"USER", "REMOTE_ADDR", "LOGIN_RESULT", "THROTTLE_REASON"}},
      {ids::kLoginUnknownUser, {"USER", "REMOTE_ADDR", "LOGIN_RESULT", "THROTTLE_REASON"}},
      {ids::kLogout, {"USER", "REMOTE_ADDR"}},
      {ids::kJobStart,
       {"JOB_ID", "JOB_USER", "REMOTE_ADDR", "JOB_RUN_AS", "JOB_PID", "JOB_ENV_KEYS", "JOB_ARGV"}},
      {ids::kJobStop, {"JOB_ID", "JOB_USER", "JOB_STOPPED_BY", "REMOTE_ADDR", "JOB_STOP_GRACE_MS"}},
      {ids::kJobExit,
       {"JOB_ID", "JOB_USER", "JOB_STATE", "JOB_EXIT_CODE", "JOB_SIGNAL", "JOB_STOPPED_BY",
        "JOB_OOM_KILLED", "JOB_OUTPUT_BYTES"}},
      {ids::kRefused, {"USER", "REMOTE_ADDR", "ACTION", "REFUSAL", "REASON"}},
      {ids::kUsersReload,
       {"USERS_FILE", "RELOAD_RESULT", "REASON", "USERS_COUNT", "USERS_ADDED", "USERS_REMOVED",
        "USERS_CHANGED", "SESSIONS_ENDED"}},
      {ids::kAdminUserChange,
       {"ADMIN_ACTION", "USER", "USER_ROLE", "USER_RUN_AS", "USERS_FILE", "ADMIN_UID"}},
      {ids::kFrontendRestart, {"FRONTEND_PID", "EXIT"}},
      {ids::kProtocolViolation, {"FRONTEND_PID", "REASON"}},
      {ids::kAccess,
       {"REMOTE_ADDR", "USER", "METHOD", "ROUTE", "JOB_ID", "STATUS", "DURATION_MS", "BYTES_OUT"}},
      {ids::kTokenCreated, {"USER", "SESSION_ID", "EXPIRES_AT_MS"}},
  };
  return s;
}

// journald's native protocol (systemd.journal-fields(7), "native protocol"): KEY=VALUE lines, or
// KEY, a newline, a little-endian 64-bit length and the raw value (values holding a newline).
Entry parseNative(std::string_view d) {
  Entry e;
  while (!d.empty()) {
    size_t nl = d.find('\n');
    if (nl == std::string_view::npos) break;
    std::string_view line = d.substr(0, nl);
    size_t eq = line.find('=');
    if (eq != std::string_view::npos) {
      e.emplace_back(std::string(line.substr(0, eq)), std::string(line.substr(eq + 1)));
      d.remove_prefix(nl + 1);
      continue;
    }
    d.remove_prefix(nl + 1);
    if (d.size() < 8) break;
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = (n << 8) | static_cast<unsigned char>(d[i]);
    d.remove_prefix(8);
    if (d.size() < n + 1) break;
    e.emplace_back(std::string(line), std::string(d.substr(0, n)));
    d.remove_prefix(n + 1);
  }
  return e;
}

std::string field(const Entry& e, const std::string& key) {
  for (const auto& [k, v] : e) {
    if (k == key) return v;
  }
  return "<absent>";
}

std::vector<std::string> fields(const Entry& e, const std::string& key) {
  std::vector<std::string> out;
  for (const auto& [k, v] : e) {
    if (k == key) out.push_back(v);
  }
  return out;
}

std::string describe(const Entry& e) {
  std::string s;
  for (const auto& [k, v] : e) s += "  " + k + "=" + log::quote(v) + "\n";
  return s;
}

// The journal socket of this test process's private mount namespace, which the daemons it starts
// inherit. Reading is non-blocking: tests drain it inside waitUntil.
class JournalSink {
 public:
  static constexpr const char* kSocket = "/run/systemd/journal/socket";

  // Must run while the process has one thread: unshare(CLONE_NEWNS) refuses a shared fs struct.
  void open() {
    ASSERT_EQ(unshare(CLONE_NEWNS), 0) << "unshare(CLONE_NEWNS): " << strerror(errno);
    // Private: nothing mounted here reaches the host's namespace.
    ASSERT_EQ(mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr), 0) << strerror(errno);
    ASSERT_EQ(mount("jwtest-run", "/run", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755"), 0)
        << "tmpfs on /run: " << strerror(errno);
    ASSERT_EQ(mkdir("/run/systemd", 0755), 0) << strerror(errno);
    ASSERT_EQ(mkdir("/run/systemd/journal", 0755), 0) << strerror(errno);
    fd_.reset(socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    ASSERT_TRUE(fd_) << strerror(errno);
    int big = 8 << 20;
    setsockopt(fd_.get(), SOL_SOCKET, SO_RCVBUFFORCE, &big, sizeof big);
    sockaddr_un sa{};
    sa.sun_family = AF_UNIX;
    std::strncpy(sa.sun_path, kSocket, sizeof sa.sun_path - 1);
    ASSERT_EQ(bind(fd_.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa), 0) << strerror(errno);
    chmod(kSocket, 0666);  // journald's socket is writable by everyone too
  }

  // Reads every datagram waiting; returns all entries received so far.
  const std::vector<Entry>& drain() {
    std::vector<char> buf(1 << 20);
    for (;;) {
      iovec iov{buf.data(), buf.size()};
      std::array<char, CMSG_SPACE(sizeof(int))> control{};
      msghdr m{};
      m.msg_iov = &iov;
      m.msg_iovlen = 1;
      m.msg_control = control.data();
      m.msg_controllen = control.size();
      ssize_t n = recvmsg(fd_.get(), &m, MSG_CMSG_CLOEXEC);
      if (n < 0) break;
      cmsghdr* c = CMSG_FIRSTHDR(&m);
      if (c != nullptr && c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
        // A large entry comes as a sealed memfd with an empty datagram.
        int memfd = -1;
        std::memcpy(&memfd, CMSG_DATA(c), sizeof memfd);
        UniqueFd owned(memfd);
        std::string data;
        char chunk[65536];
        ssize_t r;
        while ((r = pread(owned.get(), chunk, sizeof chunk, static_cast<off_t>(data.size()))) > 0) {
          data.append(chunk, static_cast<size_t>(r));
        }
        entries_.push_back(parseNative(data));
      } else {
        entries_.push_back(parseNative(std::string_view(buf.data(), static_cast<size_t>(n))));
      }
    }
    return entries_;
  }

  // The entries with this MESSAGE_ID (and, when given, KEY=VALUE) received so far.
  std::vector<Entry> find(std::string_view message_id, const std::string& key = "",
                          const std::string& value = "") {
    std::vector<Entry> out;
    for (const Entry& e : drain()) {
      if (field(e, "MESSAGE_ID") != message_id) continue;
      if (!key.empty() && field(e, key) != value) continue;
      out.push_back(e);
    }
    return out;
  }

  // Waits (generously: a loaded CI machine) for the first such entry.
  Entry await(std::string_view message_id, const std::string& key = "",
              const std::string& value = "") {
    Entry got;
    waitUntil(
        [&] {
          auto found = find(message_id, key, value);
          if (!found.empty()) got = found.front();
          return !found.empty();
        },
        std::chrono::seconds(20));
    return got;
  }

 private:
  UniqueFd fd_;
  std::vector<Entry> entries_;
};

class Journal : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    sink_ = new JournalSink;
    sink_->open();
    Daemon::Options o;
    o.env = {"JOURNAL_STREAM=0:0"};  // what systemd sets: jobworkerd then writes to journald
    o.config_text = "max_running_jobs_per_user = 2\naccess_log = all\n";
    d_ = Daemon::start(o).release();
  }
  static void TearDownTestSuite() {
    delete d_;
    d_ = nullptr;
    delete sink_;
    sink_ = nullptr;
  }
  void SetUp() override {
    ASSERT_NE(d_, nullptr);
    admin_ = login(*d_, "admin", d_->adminPassword());
  }

  static JournalSink* sink_;
  static Daemon* d_;
  std::string admin_;
};
JournalSink* Journal::sink_ = nullptr;
Daemon* Journal::d_ = nullptr;

TEST_F(Journal, UnknownUserAndWrongPasswordAreDistinctEventsWithOneAnswer) {
  HttpResponse wrong =
      https(*d_, "POST", "/v1/login", R"({"username":"admin","password":"not-the-password"})");
  HttpResponse unknown =
      https(*d_, "POST", "/v1/login", R"({"username":"nosuchuser","password":"not-the-password"})");
  // The client cannot tell them apart.
  EXPECT_EQ(wrong.status, 401);
  EXPECT_EQ(unknown.status, wrong.status);
  EXPECT_EQ(unknown.body, wrong.body);

  Entry w = sink_->await(ids::kLoginFailed, "USER", "admin");
  Entry u = sink_->await(ids::kLoginUnknownUser, "USER", "nosuchuser");
  ASSERT_FALSE(w.empty());
  ASSERT_FALSE(u.empty());
  EXPECT_EQ(field(w, "LOGIN_RESULT"), "wrong_password") << describe(w);
  EXPECT_EQ(field(u, "LOGIN_RESULT"), "unknown_user") << describe(u);
  EXPECT_EQ(field(w, "REMOTE_ADDR"), "127.0.0.1");
  EXPECT_EQ(field(u, "REMOTE_ADDR"), "127.0.0.1");
  EXPECT_EQ(field(w, "SYSLOG_IDENTIFIER"), "jobworkerd");
  EXPECT_EQ(field(w, "PRIORITY"), "5");
  Entry ok = sink_->await(ids::kLogin, "USER", "admin");
  EXPECT_EQ(field(ok, "LOGIN_RESULT"), "ok") << describe(ok);
  EXPECT_EQ(field(ok, "REMOTE_ADDR"), "127.0.0.1");
  // Neither the password tried nor the real one appears in any field.
  for (const Entry& e : sink_->drain()) {
    for (const auto& [k, v] : e) {
      EXPECT_EQ(v.find("not-the-password"), std::string::npos) << k;
      EXPECT_EQ(v.find(d_->adminPassword()), std::string::npos) << k;
    }
  }
}

TEST_F(Journal, JobEventsKeepArgumentBoundariesAndTheClientAddress) {
  // Spaces, an empty argument and a newline: only one field per argument keeps them apart.
  const std::vector<std::string> argv = {"sh",  "-c", "echo started; exec sleep 1000",
                                         "a b", "",   "two\nlines"};
  std::string cmd = "[";
  for (const auto& a : argv) cmd += (cmd.size() > 1 ? "," : "") + jsonString(a);
  cmd += "]";
  std::string id = startJob(*d_, admin_, "{\"command\":" + cmd + "}");
  Entry start = sink_->await(ids::kJobStart, "JOB_ID", id);
  ASSERT_FALSE(start.empty());
  EXPECT_EQ(fields(start, "JOB_ARGV"), argv) << describe(start);
  EXPECT_EQ(field(start, "JOB_USER"), "admin");
  EXPECT_EQ(field(start, "REMOTE_ADDR"), "127.0.0.1");
  EXPECT_GT(std::stoi(field(start, "JOB_PID")), 0);

  ASSERT_EQ(https(*d_, "POST", "/v1/jobs/" + id + "/stop", R"({"grace_s":1})", admin_).status, 202);
  Entry stop = sink_->await(ids::kJobStop, "JOB_ID", id);
  EXPECT_EQ(field(stop, "JOB_STOPPED_BY"), "admin") << describe(stop);
  EXPECT_EQ(field(stop, "REMOTE_ADDR"), "127.0.0.1");
  EXPECT_EQ(field(stop, "JOB_STOP_GRACE_MS"), "1000");
  Entry end = sink_->await(ids::kJobExit, "JOB_ID", id);
  ASSERT_FALSE(end.empty());
  EXPECT_EQ(field(end, "JOB_STATE"), "killed") << describe(end);
  EXPECT_EQ(field(end, "JOB_EXIT_CODE"), "");  // killed: no exit code, but the field is there
  EXPECT_EQ(field(end, "JOB_SIGNAL"), "15");
  EXPECT_EQ(field(end, "JOB_STOPPED_BY"), "admin");
  EXPECT_EQ(field(end, "JOB_OOM_KILLED"), "0");

  // A job that exits by itself: stopped by nobody, exit code 3.
  std::string quick = startJob(*d_, admin_, R"({"command":["sh","-c","exit 3"]})");
  Entry exited = sink_->await(ids::kJobExit, "JOB_ID", quick);
  EXPECT_EQ(field(exited, "JOB_EXIT_CODE"), "3") << describe(exited);
  EXPECT_EQ(field(exited, "JOB_SIGNAL"), "0");
  EXPECT_EQ(field(exited, "JOB_STOPPED_BY"), "");
}

TEST_F(Journal, UserChangesReloadsRefusalsAndLogoutAreAudited) {
  // jobworker-admin, run from here (no journal stream), still writes its event to journald.
  d_->addUser("watcher", "viewer", "watcher-password");
  Entry added = sink_->await(ids::kAdminUserChange, "USER", "watcher");
  ASSERT_FALSE(added.empty());
  EXPECT_EQ(field(added, "ADMIN_ACTION"), "user_add") << describe(added);
  EXPECT_EQ(field(added, "USER_ROLE"), "viewer");
  EXPECT_EQ(field(added, "ADMIN_UID"), "0");
  EXPECT_EQ(field(added, "SYSLOG_IDENTIFIER"), "jobworker-admin");
  for (const auto& [k, v] : added) EXPECT_EQ(v.find("$argon2id$"), std::string::npos) << k;
  Entry reload = sink_->await(ids::kUsersReload, "USERS_ADDED", "1");
  ASSERT_FALSE(reload.empty());
  EXPECT_EQ(field(reload, "RELOAD_RESULT"), "ok") << describe(reload);
  EXPECT_EQ(field(reload, "USERS_COUNT"), "2");
  EXPECT_EQ(field(reload, "USERS_REMOVED"), "0");

  // A viewer may not start jobs: 403, and an audit event naming the rule and the address.
  std::string viewer = login(*d_, "watcher", "watcher-password");
  EXPECT_EQ(https(*d_, "POST", "/v1/jobs", R"({"command":["true"]})", viewer).status, 403);
  Entry refused = sink_->await(ids::kRefused, "USER", "watcher");
  ASSERT_FALSE(refused.empty());
  EXPECT_EQ(field(refused, "ACTION"), "job_start") << describe(refused);
  EXPECT_EQ(field(refused, "REFUSAL"), "forbidden");
  EXPECT_EQ(field(refused, "REMOTE_ADDR"), "127.0.0.1");

  // Over max_running_jobs_per_user (2): refused as limit_exceeded.
  std::vector<std::string> running;
  for (int i = 0; i < 2; i++) {
    running.push_back(startJob(*d_, admin_, R"({"command":["sleep","1000"]})"));
  }
  EXPECT_EQ(https(*d_, "POST", "/v1/jobs", R"({"command":["sleep","1000"]})", admin_).status, 403);
  Entry over = sink_->await(ids::kRefused, "REFUSAL", "limit_exceeded");
  EXPECT_EQ(field(over, "USER"), "admin") << describe(over);
  for (const auto& j : running) https(*d_, "POST", "/v1/jobs/" + j + "/stop", "", admin_);

  EXPECT_EQ(https(*d_, "POST", "/v1/logout", "", viewer).status, 204);
  Entry out = sink_->await(ids::kLogout, "USER", "watcher");
  EXPECT_EQ(field(out, "REMOTE_ADDR"), "127.0.0.1") << describe(out);

  // A removal: the reload counts it and ends the user's sessions.
  std::string again = login(*d_, "watcher", "watcher-password");
  ASSERT_FALSE(again.empty());
  CmdResult del =
      run({binary("jobworker-admin"), "user", "del", "--users-file", d_->usersFile(), "watcher"});
  ASSERT_EQ(del.exit_code, 0) << del.err;
  EXPECT_EQ(field(sink_->await(ids::kAdminUserChange, "ADMIN_ACTION", "user_del"), "USER"),
            "watcher");
  d_->reload();
  Entry removed = sink_->await(ids::kUsersReload, "USERS_REMOVED", "1");
  // Two: addUser's own check that the user can log in, and `again` (`viewer` logged out).
  EXPECT_EQ(field(removed, "SESSIONS_ENDED"), "2") << describe(removed);
  EXPECT_EQ(field(removed, "USERS_COUNT"), "1");
}

TEST_F(Journal, EveryRequestHasOneAccessEntryWithItsRouteTemplateAndNoSecret) {
  // The access entry of a route with a status (the fixture's other tests made some too).
  auto awaitAccess = [&](const std::string& route, const std::string& status) {
    Entry got;
    waitUntil(
        [&] {
          for (const Entry& e : sink_->find(ids::kAccess, "ROUTE", route)) {
            if (field(e, "STATUS") == status) got = e;
          }
          return !got.empty();
        },
        std::chrono::seconds(20));
    return got;
  };
  std::string id = startJob(*d_, admin_, R"({"command":["sh","-c","echo hello; sleep 0.5"]})");
  // A follow stream logs once, when it ends.
  HttpResponse logs = https(*d_, "GET", "/v1/jobs/" + id + "/logs?follow=true", "", admin_);
  ASSERT_EQ(logs.body, "hello\n");
  Entry follow = sink_->await(ids::kAccess, "ROUTE", "/v1/jobs/{id}/logs");
  ASSERT_FALSE(follow.empty());
  EXPECT_EQ(field(follow, "JOB_ID"), id) << describe(follow);
  EXPECT_EQ(field(follow, "USER"), "admin");
  EXPECT_EQ(field(follow, "METHOD"), "GET");
  EXPECT_EQ(field(follow, "STATUS"), "200");
  EXPECT_EQ(field(follow, "REMOTE_ADDR"), "127.0.0.1");
  EXPECT_GE(std::stoi(field(follow, "DURATION_MS")), 100) << describe(follow);  // the job's life
  EXPECT_GT(std::stoi(field(follow, "BYTES_OUT")), 6);
  EXPECT_EQ(sink_->find(ids::kAccess, "ROUTE", "/v1/jobs/{id}/logs").size(), 1u);

  // The route is the template, never the query (it could carry anything).
  ASSERT_EQ(https(*d_, "GET", "/v1/jobs?state=running&all=true", "", admin_).status, 200);
  HttpResponse bad = https(*d_, "GET", "/v1/jobs/not-a-job-id", "", admin_);
  ASSERT_EQ(bad.status, 400);
  Entry malformed = awaitAccess("/v1/jobs/{id}", "400");
  EXPECT_EQ(field(malformed, "ROUTE"), "/v1/jobs/{id}") << describe(malformed);
  EXPECT_EQ(field(malformed, "JOB_ID"), "");  // only a well-formed id is logged
  // Anonymous and refused requests: no user.
  ASSERT_EQ(https(*d_, "GET", "/v1/whoami").status, 401);
  Entry refused = awaitAccess("/v1/whoami", "401");
  EXPECT_EQ(field(refused, "USER"), "") << describe(refused);
  EXPECT_EQ(field(refused, "ROUTE"), "/v1/whoami");
  ASSERT_EQ(https(*d_, "GET", "/nowhere?token=" + admin_).status, 404);
  Entry unmatched = awaitAccess("unmatched", "404");
  EXPECT_EQ(field(unmatched, "STATUS"), "404") << describe(unmatched);
  // A login names its user once it succeeded; no entry carries a token or a password.
  login(*d_, "admin", d_->adminPassword());
  Entry in = awaitAccess("/v1/login", "201");
  EXPECT_EQ(field(in, "USER"), "admin");
  for (const Entry& e : sink_->find(ids::kAccess)) {
    for (const auto& [k, v] : e) {
      EXPECT_EQ(v.find("jw_"), std::string::npos) << k << "\n" << describe(e);
      EXPECT_EQ(v.find("state=running"), std::string::npos) << k;
      EXPECT_EQ(v.find(d_->adminPassword()), std::string::npos) << k;
    }
  }
}

TEST_F(Journal, ScrapeTokenCreationIsAudited) {
  d_->addUser("scraper", "metrics", "scraper-password");
  CmdResult r = run({binary("jobworker-admin"), "token", "create", "scraper", "--expires", "1d",
                     "--control", d_->stateDir() + "/control.sock"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  Entry made = sink_->await(ids::kTokenCreated, "USER", "scraper");
  ASSERT_FALSE(made.empty());
  EXPECT_EQ(field(made, "SESSION_ID"), r.err.substr(6, 12)) << describe(made) << r.err;
  for (const auto& [k, v] : made) EXPECT_EQ(v.find(r.out.substr(0, 46)), std::string::npos) << k;
}

// Runs last (gtest keeps the file's order): every event the other tests caused has every field
// of its schema, and every event jobworkerd sent is one the schema knows.
TEST_F(Journal, EveryEventCarriesEveryDocumentedField) {
  std::set<std::string> seen;
  for (const Entry& e : sink_->drain()) {
    std::string id = field(e, "MESSAGE_ID");
    if (id == "<absent>") continue;  // not an event (nothing else is sent, but be exact)
    auto it = schema().find(id);
    ASSERT_NE(it, schema().end()) << "undocumented MESSAGE_ID:\n" << describe(e);
    for (const auto& key : it->second) {
      EXPECT_NE(field(e, key), "<absent>") << key << " missing in\n" << describe(e);
    }
    for (const char* key : {"MESSAGE", "PRIORITY", "SYSLOG_IDENTIFIER"}) {
      EXPECT_NE(field(e, key), "<absent>") << key << " missing in\n" << describe(e);
    }
    seen.insert(id);
  }
  // The tests above caused these; the frontend restart and protocol violation events have
  // their own tests (frontend_process, supervisor) through the stderr form.
  for (std::string_view id :
       {ids::kLogin, ids::kLoginFailed, ids::kLoginUnknownUser, ids::kLogout, ids::kJobStart,
        ids::kJobStop, ids::kJobExit, ids::kRefused, ids::kUsersReload, ids::kAdminUserChange,
        ids::kAccess, ids::kTokenCreated}) {
    EXPECT_TRUE(seen.contains(std::string(id))) << "no event " << id << " was received";
  }
}

}  // namespace
}  // namespace jw::test
