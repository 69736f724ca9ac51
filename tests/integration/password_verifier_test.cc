// Integration tests of password checking: the real jobworker-verifier, started through
// PasswordVerifier on a real EventLoop as jobworkerd does: answers, the concurrency cap, death
// and stall of the child, and what its privilege drop leaves in /proc/PID/status. Runs in the
// test process, as root (the drop to nobody needs it).
#include "supervisor/accounts/password_verifier.h"

#include <gtest/gtest.h>
#include <pwd.h>
#include <signal.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "supervisor/accounts/users_file.h"
#include "supervisor/core/event_loop.h"
#include "tests/integration/daemon.h"

namespace jw::supervisor {
namespace {

using test::procStatus;

constexpr uint64_t kDeadlineMs = 20'000;

std::string verifierPath() {
  const char* p = std::getenv("JW_VERIFIER");
  return p != nullptr ? p : "";
}

class PasswordVerifierTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto h = hashPassword("correct horse");
    ASSERT_TRUE(h) << h.error().message;
    hash_ = h.value();
  }

  void SetUp() override {
    ASSERT_FALSE(verifierPath().empty()) << "JW_VERIFIER is not set";
    ASSERT_TRUE(loop_.init());
  }

  void startVerifier(uint32_t max_in_flight = 4, uint64_t check_timeout_ms = 10'000,
                     std::string path = verifierPath(),
                     std::vector<std::string> args = {"--run-as", "nobody"}) {
    PasswordVerifierOptions o;
    o.path = std::move(path);
    o.args = std::move(args);
    o.max_in_flight = max_in_flight;
    o.check_timeout_ms = check_timeout_ms;
    v_ = std::make_unique<PasswordVerifier>(loop_, o);
    v_->start();
    ASSERT_GT(v_->pid(), 0);
  }

  // Runs the loop until `done` holds or the deadline passes; checks it every 5 ms.
  bool runUntil(const std::function<bool()>& done, uint64_t deadline_ms = kDeadlineMs) {
    uint64_t until = EventLoop::monotonicMs() + deadline_ms;
    std::function<void()> poll = [&] {
      if (done() || EventLoop::monotonicMs() > until) {
        loop_.stop();
      } else {
        loop_.addTimer(5, poll);
      }
    };
    loop_.addTimer(0, poll);
    EXPECT_TRUE(loop_.run());
    return done();
  }

  // One check, waited for.
  std::optional<PasswordVerdict> checkNow(const std::string& user, const std::string& pw,
                                          const std::string& hash) {
    std::optional<PasswordVerdict> got;
    v_->check(user, pw, hash, [&](PasswordVerdict v) { got = v; });
    EXPECT_FALSE(got.has_value()) << "called back inside check()";
    runUntil([&] { return got.has_value(); });
    return got;
  }

  EventLoop loop_;
  std::unique_ptr<PasswordVerifier> v_;
  static std::string hash_;
};
std::string PasswordVerifierTest::hash_;

TEST_F(PasswordVerifierTest, RightWrongAndUnknownUser) {
  startVerifier();
  EXPECT_EQ(checkNow("alice", "correct horse", hash_), PasswordVerdict::kMatch);
  EXPECT_EQ(checkNow("alice", "battery staple", hash_), PasswordVerdict::kMismatch);
  EXPECT_EQ(checkNow("alice", "", hash_), PasswordVerdict::kMismatch);
  EXPECT_EQ(checkNow("nosuchuser", "correct horse", ""), PasswordVerdict::kMismatch);
  // A stored hash that is not argon2id's is a "no", never a crash of the verifier.
  uint64_t gen = v_->generation();
  EXPECT_EQ(checkNow("alice", "x", "$argon2id$garbage"), PasswordVerdict::kMismatch);
  EXPECT_EQ(v_->generation(), gen);
}

TEST_F(PasswordVerifierTest, UnknownUsersCostAsMuchTimeAsKnownOnes) {
  startVerifier();
  ASSERT_TRUE(runUntil([&] { return v_->ready(); }));
  auto timeOf = [&](const std::string& user, const std::string& hash) {
    uint64_t best = UINT64_MAX;
    for (int i = 0; i < 3; i++) {
      uint64_t t0 = EventLoop::monotonicMs();
      EXPECT_EQ(checkNow(user, "wrong", hash), PasswordVerdict::kMismatch);
      best = std::min(best, EventLoop::monotonicMs() - t0);
    }
    return best;
  };
  uint64_t known = timeOf("alice", hash_);
  uint64_t unknown = timeOf("nosuchuser", "");
  std::printf("wrong password, best of 3: known user %llu ms, unknown user %llu ms\n",
              static_cast<unsigned long long>(known), static_cast<unsigned long long>(unknown));
  // Both run a full argon2id with the same parameters; generous bounds for a shared CI host.
  EXPECT_GE(unknown * 2, known);
  EXPECT_GE(known * 2, unknown);
}

TEST_F(PasswordVerifierTest, ChecksBeyondTheCapAreBusyAtOnce) {
  startVerifier(/*max_in_flight=*/2);
  std::vector<PasswordVerdict> order;
  for (int i = 0; i < 5; i++) {
    v_->check("alice", "correct horse", hash_, [&](PasswordVerdict v) { order.push_back(v); });
  }
  EXPECT_EQ(v_->inFlight(), 2u);
  ASSERT_TRUE(runUntil([&] { return order.size() == 5; }));
  // The three refusals come first: none of them waited for an argon2id.
  std::vector<PasswordVerdict> expected = {PasswordVerdict::kBusy, PasswordVerdict::kBusy,
                                           PasswordVerdict::kBusy, PasswordVerdict::kMatch,
                                           PasswordVerdict::kMatch};
  EXPECT_EQ(order, expected);
  // Slots are free again.
  EXPECT_EQ(checkNow("alice", "correct horse", hash_), PasswordVerdict::kMatch);
}

TEST_F(PasswordVerifierTest, TheChildRunsAsNobodyWithNothing) {
  startVerifier();
  ASSERT_TRUE(runUntil([&] { return v_->ready(); }));
  struct passwd* nobody = getpwnam("nobody");
  ASSERT_NE(nobody, nullptr);
  pid_t pid = v_->pid();
  auto st = procStatus(pid);
  std::string uid = std::to_string(nobody->pw_uid), gid = std::to_string(nobody->pw_gid);
  EXPECT_EQ(st["Uid"], uid + "\t" + uid + "\t" + uid + "\t" + uid);
  EXPECT_EQ(st["Gid"], gid + "\t" + gid + "\t" + gid + "\t" + gid);
  EXPECT_EQ(st["Groups"], "");
  EXPECT_EQ(st["CapEff"], "0000000000000000");
  EXPECT_EQ(st["CapPrm"], "0000000000000000");
  EXPECT_EQ(st["CapInh"], "0000000000000000");
  EXPECT_EQ(st["CapBnd"], "0000000000000000");
  EXPECT_EQ(st["CapAmb"], "0000000000000000");
  EXPECT_EQ(st["NoNewPrivs"], "1");
  EXPECT_EQ(st["Seccomp"], "2");
  // Its only descriptors: stdio and the link.
  std::vector<std::string> fds;
  for (const auto& e :
       std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/fd")) {
    fds.push_back(e.path().filename());
  }
  std::sort(fds.begin(), fds.end());
  EXPECT_EQ(fds, (std::vector<std::string>{"0", "1", "2", "3"}));
  EXPECT_EQ(std::filesystem::read_symlink("/proc/" + std::to_string(pid) + "/fd/3")
                .string()
                .rfind("socket:", 0),
            0u);
  // And it still answers after all that.
  EXPECT_EQ(checkNow("alice", "correct horse", hash_), PasswordVerdict::kMatch);
}

TEST_F(PasswordVerifierTest, AKilledChildFailsPendingChecksAndIsReplaced) {
  startVerifier();
  ASSERT_TRUE(runUntil([&] { return v_->ready(); }));
  pid_t first = v_->pid();
  std::vector<PasswordVerdict> got;
  for (int i = 0; i < 3; i++) {
    v_->check("alice", "correct horse", hash_, [&](PasswordVerdict v) { got.push_back(v); });
  }
  ASSERT_EQ(kill(first, SIGKILL), 0);
  ASSERT_TRUE(runUntil([&] { return got.size() == 3; }));
  for (PasswordVerdict v : got) {
    // The first may have been answered before the kill landed; none is left hanging or wrong.
    EXPECT_TRUE(v == PasswordVerdict::kUnavailable || v == PasswordVerdict::kMatch)
        << verdictName(v);
  }
  EXPECT_EQ(got.back(), PasswordVerdict::kUnavailable);
  // Until the replacement is up, checks are refused cleanly rather than queued.
  if (v_->pid() == -1) {
    EXPECT_EQ(checkNow("alice", "correct horse", hash_), PasswordVerdict::kUnavailable);
  }
  ASSERT_TRUE(runUntil([&] { return v_->pid() > 0 && v_->pid() != first && v_->ready(); }));
  EXPECT_EQ(v_->generation(), 2u);
  EXPECT_EQ(checkNow("alice", "correct horse", hash_), PasswordVerdict::kMatch);
  EXPECT_EQ(checkNow("alice", "wrong", hash_), PasswordVerdict::kMismatch);
}

TEST_F(PasswordVerifierTest, AStalledChildTimesOutAndIsReplaced) {
  startVerifier(/*max_in_flight=*/4, /*check_timeout_ms=*/1000);
  ASSERT_TRUE(runUntil([&] { return v_->ready(); }));
  pid_t first = v_->pid();
  ASSERT_EQ(kill(first, SIGSTOP), 0);  // what a process of the same account could do to it
  uint64_t t0 = EventLoop::monotonicMs();
  EXPECT_EQ(checkNow("alice", "correct horse", hash_), PasswordVerdict::kUnavailable);
  EXPECT_GE(EventLoop::monotonicMs() - t0, 1000u);
  ASSERT_TRUE(runUntil([&] { return v_->pid() > 0 && v_->pid() != first && v_->ready(); }));
  EXPECT_EQ(checkNow("alice", "correct horse", hash_), PasswordVerdict::kMatch);
}

// Non-root dev mode: the verifier keeps the developer's uid but still sets NNP and its seccomp
// filter. setpriv plays the non-root jobworkerd's part (a nobody process that execs it).
TEST_F(PasswordVerifierTest, WithoutAUidChangeItStillHasNnpAndSeccomp) {
  struct passwd* nobody = getpwnam("nobody");
  ASSERT_NE(nobody, nullptr);
  std::string uid = std::to_string(nobody->pw_uid), gid = std::to_string(nobody->pw_gid);
  startVerifier(4, 10'000, "/usr/bin/setpriv",
                {"--reuid=" + uid, "--regid=" + gid, "--clear-groups", "--inh-caps=-all",
                 "--bounding-set=-all", verifierPath(), "--no-setuid"});
  ASSERT_TRUE(runUntil([&] { return v_->ready(); }));
  auto st = procStatus(v_->pid());
  EXPECT_EQ(st["Uid"], uid + "\t" + uid + "\t" + uid + "\t" + uid);
  EXPECT_EQ(st["CapEff"], "0000000000000000");
  EXPECT_EQ(st["NoNewPrivs"], "1");
  EXPECT_EQ(st["Seccomp"], "2");
  EXPECT_EQ(checkNow("alice", "correct horse", hash_), PasswordVerdict::kMatch);
}

TEST_F(PasswordVerifierTest, NoSetuidAsRootIsRefused) {
  startVerifier(4, 10'000, verifierPath(), {"--no-setuid"});
  EXPECT_EQ(checkNow("alice", "correct horse", hash_), PasswordVerdict::kUnavailable);
  EXPECT_FALSE(v_->ready());
}

TEST_F(PasswordVerifierTest, ShutdownAnswersPendingChecks) {
  startVerifier();
  std::optional<PasswordVerdict> got;
  v_->check("alice", "correct horse", hash_, [&](PasswordVerdict v) { got = v; });
  pid_t pid = v_->pid();
  v_->shutdown();
  EXPECT_EQ(got, PasswordVerdict::kUnavailable);
  EXPECT_EQ(v_->pid(), -1);
  EXPECT_NE(kill(pid, 0), 0) << "the verifier is gone and reaped";
}

}  // namespace
}  // namespace jw::supervisor
