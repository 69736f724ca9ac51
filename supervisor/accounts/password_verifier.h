// PasswordVerifier: jobworkerd's side of the password checks. It starts jobworker-verifier
// (fork + exec, SOCK_SEQPACKET link), hands it (password, stored argon2id hash) pairs and calls
// back with the answer, never blocking the event loop; it caps the checks in flight, checks
// unknown users against a dummy hash, and restarts a dead or stuck verifier with back-off.
// Runs in jobworkerd.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "supervisor/core/event_loop.h"

namespace jw::supervisor {

enum class PasswordVerdict : uint8_t {
  kMatch,        // the password is the user's
  kMismatch,     // wrong password, or no such user (the two are never told apart)
  kBusy,         // max_in_flight checks already running: refused at once (503 + Retry-After)
  kUnavailable,  // no verifier (starting, restarting) or it died or stalled during the check
};
std::string_view verdictName(PasswordVerdict v);

struct PasswordVerifierOptions {
  std::string path;               // jobworker-verifier (resolveVerifierPath())
  std::vector<std::string> args;  // {"--run-as", account} as root, {"--no-setuid"} otherwise
  uint32_t max_in_flight = 4;     // max_concurrent_password_checks; clamped to 1..kMaxInFlight
  // A check unanswered this long means a stuck verifier (SIGSTOPped by a process of its
  // account, say): it is killed, every pending check answered kUnavailable, and restarted.
  uint64_t check_timeout_ms = 10'000;
};

class PasswordVerifier {
 public:
  using Callback = std::function<void(PasswordVerdict)>;

  // The verifier answers one check at a time; the checks in flight wait in its socket. 32 small
  // frames stay far below a socket buffer, so a send never has to wait.
  static constexpr uint32_t kMaxInFlight = 32;
  static constexpr uint64_t kInitialBackoffMs = 100;
  static constexpr uint64_t kMaxBackoffMs = 5000;
  static constexpr uint64_t kStableRunMs = 30'000;  // ran this long: back-off starts over

  // What an unknown user's password is checked against: an argon2id hash with the parameters
  // jobworker-admin gives every user (OPSLIMIT/MEMLIMIT_INTERACTIVE) of a random password that
  // was thrown away. The answer is ignored (always kMismatch); only the time it takes matters.
  static constexpr std::string_view kDummyHash =
      "$argon2id$v=19$m=65536,t=2,p=1$AbJa3EGzrO722v1RASDJrQ$"
      "4ncl4bJSEBc2NGBRLJe+lPRNXQj2zATHNWN64YNeQkI";

  PasswordVerifier(EventLoop& loop, PasswordVerifierOptions options);
  // Kills the verifier; pending callbacks are dropped, never called.
  ~PasswordVerifier();
  PasswordVerifier(const PasswordVerifier&) = delete;
  PasswordVerifier& operator=(const PasswordVerifier&) = delete;

  // Starts the first verifier. Checks made before its Ready wait in its socket.
  void start();

  // Checks `password` against `stored_hash` (empty: no such user, checked against kDummyHash).
  // `done` is called exactly once, always from the event loop and never before check() returns.
  // The password is copied only into the frame sent to the verifier, which is wiped after the
  // send; the caller wipes its own copy. `user` is for log lines only.
  void check(std::string_view user, std::string_view password, std::string_view stored_hash,
             Callback done);

  // Kills the verifier for good and answers every pending check kUnavailable.
  void shutdown();

  pid_t pid() const { return pid_; }
  bool ready() const { return ready_; }  // the current verifier finished its privilege drop
  size_t inFlight() const { return pending_.size(); }
  uint64_t generation() const { return generation_; }  // verifiers started so far

 private:
  struct Pending {
    Callback done;
    bool dummy = false;  // an unknown user: the answer is kMismatch whatever the verifier says
    std::string user;
    EventLoop::TimerId timeout = 0;
  };

  void spawn();
  void onLink(uint32_t events);
  void onExit();
  void onTimeout(uint32_t request_id);
  Status handleFrame(std::string_view frame);
  void complete(uint32_t request_id, PasswordVerdict verdict);
  void later(Callback done, PasswordVerdict verdict);
  void failAllPending();
  void signalVerifier(int sig);
  void killVerifier(const std::string& why);
  void closeLink();
  void scheduleRespawn();
  uint32_t nextRequestId();

  EventLoop& loop_;
  PasswordVerifierOptions options_;
  pid_t pid_ = -1;
  UniqueFd pidfd_;    // closed once the verifier is reaped
  UniqueFd link_fd_;  // our end of the SEQPACKET link
  EventLoop::WatchId link_watch_ = 0;
  EventLoop::WatchId pidfd_watch_ = 0;
  EventLoop::TimerId respawn_timer_ = 0;
  bool ready_ = false;
  bool shutting_down_ = false;
  uint64_t backoff_ms_ = kInitialBackoffMs;
  uint64_t started_ms_ = 0;
  uint64_t generation_ = 0;
  uint32_t last_request_id_ = 0;
  std::map<uint32_t, Pending> pending_;  // by request id
};

}  // namespace jw::supervisor
