// RestartingHelper: one of jobworkerd's helper programs (the frontend, the password verifier)
// kept running. It spawns the program through spawnHelper() with a fresh channel pair each time,
// reaps it through its pidfd from the event loop and restarts it with back-off. Its owner keeps
// only the channel logic. Runs in jobworkerd.
#pragma once

#include <signal.h>
#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "common/fd.h"
#include "supervisor/core/event_loop.h"

namespace jw::supervisor {

struct RestartingHelperOptions {
  std::string name;               // for log lines: "frontend", "password verifier"
  std::string path;               // the program (argv[0])
  std::vector<std::string> args;  // everything after argv[0]
  std::vector<std::string> env;   // its whole environment
  std::vector<int> extra_fds;     // borrowed: descriptors 4, 5, ... of every incarnation
};

class RestartingHelper {
 public:
  struct Callbacks {
    // A new incarnation runs with the other end of `link` as its descriptor 3.
    std::function<void(UniqueFd link)> on_started;
    // The incarnation is gone and reaped (or `shutdown()` killed it): drop its link and pending
    // work. `restart_in_ms` is 0 when no restart follows.
    std::function<void(pid_t pid, const std::string& how, uint64_t ran_ms, uint64_t restart_in_ms)>
        on_exited;
  };

  static constexpr uint64_t kInitialBackoffMs = 100;
  static constexpr uint64_t kMaxBackoffMs = 5000;
  static constexpr uint64_t kStableRunMs = 30'000;  // ran this long: back-off starts over

  RestartingHelper(EventLoop& loop, RestartingHelperOptions options, Callbacks callbacks);
  // Kills and reaps the current incarnation; on_exited is not called.
  ~RestartingHelper();
  RestartingHelper(const RestartingHelper&) = delete;
  RestartingHelper& operator=(const RestartingHelper&) = delete;

  void start();
  void signal(int sig);  // to the current incarnation, if any
  // Kills the helper for good, waits for it and calls on_exited; no restart follows.
  void shutdown();

  pid_t pid() const { return pid_; }
  uint64_t generation() const { return generation_; }  // incarnations started so far

  // "exited with status 3" / "killed by signal 9 (Killed)"
  static std::string describeExit(const siginfo_t& info);

 private:
  void spawn();
  void onExit();
  void forget();
  void scheduleRespawn();

  EventLoop& loop_;
  RestartingHelperOptions options_;
  Callbacks cb_;
  pid_t pid_ = -1;
  UniqueFd pidfd_;
  EventLoop::WatchId pidfd_watch_ = 0;
  EventLoop::TimerId respawn_timer_ = 0;
  uint64_t backoff_ms_ = kInitialBackoffMs;
  uint64_t started_ms_ = 0;
  uint64_t generation_ = 0;
  bool shutting_down_ = false;
};

}  // namespace jw::supervisor
