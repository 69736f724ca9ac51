// The frontend child (a RestartingHelper: the channel as fd 3, the listening socket as fd 4,
// respawned with back-off when it dies or misbehaves): frame checks against the
// permitted-request table and queued replies. Runs in jobworkerd.
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
#include "supervisor/core/restarting_helper.h"

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
  pid_t pid() const { return process_.pid(); }
  uint64_t generation() const { return process_.generation(); }
  // Since jobworkerd started, for /metrics.
  uint64_t restarts() const { return restarts_; }
  uint64_t violations() const { return violations_; }

 private:
  void attachChannel(UniqueFd mine);
  void onExited(pid_t pid, const std::string& how, uint64_t ran_ms, uint64_t restart_in_ms);
  void onChannel(uint32_t events);
  void closeChannel();
  void flushQueue();
  void updateInterest();
  Status checkAndDispatch(std::string_view frame);

  EventLoop& loop_;
  Callbacks cb_;
  UniqueFd channel_fd_;
  EventLoop::WatchId channel_watch_ = 0;
  std::deque<std::string> queue_;
  size_t queued_bytes_ = 0;
  uint32_t interest_ = 0;
  uint64_t restarts_ = 0, violations_ = 0;
  RestartingHelper process_;  // last: destroyed (killed) first, while the channel still exists
};

}  // namespace jw::supervisor
