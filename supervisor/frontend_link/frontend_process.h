// The frontend child: fork + exec with the channel as fd 3 and the listening socket as fd 4,
// frame checks against the permitted-request table, queued replies, and respawn with back-off
// when it dies or misbehaves. Runs in jobworkerd.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <deque>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "common/fd.h"
#include "common/protocol/codec.h"
#include "common/result.h"
#include "supervisor/core/event_loop.h"

namespace jw::supervisor {

struct FrontendOptions {
  std::string path;               // the frontend binary
  std::vector<std::string> args;  // everything after argv[0]
  int listen_fd = -1;             // borrowed (the Supervisor owns it); fd 4 of every incarnation
};

class FrontendProcess {
 public:
  struct Callbacks {
    // A new frontend is up: send it the user and session tables.
    std::function<void()> on_connected;
    // A frame that passed the header and permission checks. An error return is a protocol
    // violation (e.g. a payload that does not decode): the frontend is killed and respawned.
    std::function<Status(const protocol::FrameHeader&, std::string_view payload)> on_request;
    // The channel is gone (death, violation, shutdown): forget that frontend's pending requests.
    std::function<void()> on_disconnected;
  };

  static constexpr uint64_t kInitialBackoffMs = 100;
  static constexpr uint64_t kMaxBackoffMs = 5000;
  static constexpr uint64_t kStableRunMs = 30'000;    // ran this long: back-off starts over
  static constexpr size_t kQueueHighWater = 8 << 20;  // stop reading requests above this

  FrontendProcess(EventLoop& loop, FrontendOptions options, Callbacks callbacks);
  ~FrontendProcess();
  FrontendProcess(const FrontendProcess&) = delete;
  FrontendProcess& operator=(const FrontendProcess&) = delete;

  void start();
  // Queues a frame for the current frontend; dropped when none is connected.
  void send(std::string frame);
  // Logs a protocol violation, SIGKILLs the frontend and closes the channel (never re-syncs).
  void violation(const std::string& why);
  // Kills the frontend for good (shutdown); waits for it.
  void shutdown();

  bool connected() const { return static_cast<bool>(channel_fd_); }
  pid_t pid() const { return pid_; }
  uint64_t generation() const { return generation_; }

 private:
  void spawn();
  struct ForkedChild {
    UniqueFd channel;  // the supervisor's end
    UniqueFd report;   // read end of the exec report pipe
  };
  Result<ForkedChild> forkFrontend();
  bool watchChild(UniqueFd& report);
  void attachChannel(UniqueFd mine);
  void onChannel(uint32_t events);
  void onExit();
  void closeChannel();
  void flushQueue();
  void updateInterest();
  void signalFrontend(int sig);
  void scheduleRespawn();
  Status checkAndDispatch(std::string_view frame);

  EventLoop& loop_;
  FrontendOptions options_;
  Callbacks cb_;
  pid_t pid_ = -1;
  UniqueFd pidfd_;
  UniqueFd channel_fd_;
  EventLoop::WatchId channel_watch_ = 0;
  EventLoop::WatchId pidfd_watch_ = 0;
  EventLoop::TimerId respawn_timer_ = 0;
  std::deque<std::string> queue_;
  size_t queued_bytes_ = 0;
  uint32_t interest_ = 0;
  uint64_t backoff_ms_ = kInitialBackoffMs;
  uint64_t started_ms_ = 0;
  uint64_t generation_ = 0;
  bool shutting_down_ = false;
};

}  // namespace jw::supervisor
