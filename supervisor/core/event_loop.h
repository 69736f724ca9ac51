// The supervisor's single-threaded epoll loop: fd watches and one-shot timers multiplexed on one
// timerfd. Runs in jobworkerd.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <unordered_map>
#include <utility>

#include "common/fd.h"
#include "common/result.h"

namespace jw::supervisor {

class EventLoop {
 public:
  using WatchId = uint64_t;
  using TimerId = uint64_t;
  using FdHandler = std::function<void(uint32_t events)>;
  using TimerHandler = std::function<void()>;

  EventLoop() = default;
  ~EventLoop();
  EventLoop(const EventLoop&) = delete;
  EventLoop& operator=(const EventLoop&) = delete;

  Status init();

  // Level-triggered watch of fd (EPOLLIN/EPOLLOUT/...). The loop never closes fd; unwatch it
  // before closing. Handlers may add or remove any watch or timer, including their own.
  Result<WatchId> watch(int fd, uint32_t events, FdHandler handler);
  Status modify(WatchId id, uint32_t events);
  void unwatch(WatchId id);

  // One-shot timer on CLOCK_MONOTONIC, delay in milliseconds. Ids are never reused, so
  // cancelling a timer that already fired is harmless.
  TimerId addTimer(uint64_t delay_ms, TimerHandler handler);
  void cancelTimer(TimerId id);

  // Runs until stop(); an epoll failure other than EINTR is returned as an error.
  Status run();
  void stop() { running_ = false; }

  static uint64_t monotonicMs();

 private:
  struct Watch {
    int fd;
    std::shared_ptr<FdHandler> handler;  // shared: a handler may unwatch itself while running
  };

  void armTimerFd();
  void fireDueTimers();

  UniqueFd epfd_;
  UniqueFd timerfd_;
  bool running_ = false;
  uint64_t next_id_ = 1;
  std::unordered_map<WatchId, Watch> watches_;
  std::map<std::pair<uint64_t, TimerId>, TimerHandler> timers_;  // (deadline ms, id)
  std::unordered_map<TimerId, uint64_t> timer_deadlines_;
  uint64_t armed_deadline_ = 0;
};

}  // namespace jw::supervisor
