// epoll loop with fd watches and timers on a single timerfd (see event_loop.h); runs in jobworkerd.
#include "supervisor/core/event_loop.h"

#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <vector>

namespace jw::supervisor {

EventLoop::~EventLoop() = default;

uint64_t EventLoop::monotonicMs() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000 + static_cast<uint64_t>(ts.tv_nsec) / 1'000'000;
}

Status EventLoop::init() {
  epfd_.reset(epoll_create1(EPOLL_CLOEXEC));
  if (!epfd_) return sysError("epoll_create1");
  timerfd_.reset(timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC));
  if (!timerfd_) return sysError("timerfd_create(CLOCK_MONOTONIC)");
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = 0;  // id 0 is the timerfd; watch ids start at 1
  if (epoll_ctl(epfd_.get(), EPOLL_CTL_ADD, timerfd_.get(), &ev) != 0)
    return sysError("epoll_ctl(timerfd)");
  return okStatus();
}

Result<EventLoop::WatchId> EventLoop::watch(int fd, uint32_t events, FdHandler handler) {
  WatchId id = next_id_++;
  epoll_event ev{};
  ev.events = events;
  ev.data.u64 = id;
  if (epoll_ctl(epfd_.get(), EPOLL_CTL_ADD, fd, &ev) != 0) {
    return sysError("epoll_ctl(ADD, fd " + std::to_string(fd) + ")");
  }
  watches_[id] = Watch{fd, std::make_shared<FdHandler>(std::move(handler))};
  return id;
}

Status EventLoop::modify(WatchId id, uint32_t events) {
  auto it = watches_.find(id);
  if (it == watches_.end()) return Error{"modify: unknown watch"};
  epoll_event ev{};
  ev.events = events;
  ev.data.u64 = id;
  if (epoll_ctl(epfd_.get(), EPOLL_CTL_MOD, it->second.fd, &ev) != 0) {
    return sysError("epoll_ctl(MOD, fd " + std::to_string(it->second.fd) + ")");
  }
  return okStatus();
}

void EventLoop::unwatch(WatchId id) {
  auto it = watches_.find(id);
  if (it == watches_.end()) return;
  // Failure means the fd was already closed, which removed it from the epoll set anyway.
  epoll_ctl(epfd_.get(), EPOLL_CTL_DEL, it->second.fd, nullptr);
  watches_.erase(it);
}

EventLoop::TimerId EventLoop::addTimer(uint64_t delay_ms, TimerHandler handler) {
  TimerId id = next_id_++;
  uint64_t deadline = monotonicMs() + delay_ms;
  timers_.emplace(std::make_pair(deadline, id), std::move(handler));
  timer_deadlines_[id] = deadline;
  armTimerFd();
  return id;
}

void EventLoop::cancelTimer(TimerId id) {
  auto it = timer_deadlines_.find(id);
  if (it == timer_deadlines_.end()) return;
  timers_.erase(std::make_pair(it->second, id));
  timer_deadlines_.erase(it);
  // Leaving the timerfd armed for an earlier deadline only costs one empty wake-up.
}

void EventLoop::armTimerFd() {
  if (timers_.empty()) return;
  uint64_t first = timers_.begin()->first.first;
  if (armed_deadline_ != 0 && armed_deadline_ <= first) return;
  itimerspec its{};
  its.it_value.tv_sec = static_cast<time_t>(first / 1000);
  its.it_value.tv_nsec = static_cast<long>((first % 1000) * 1'000'000);
  if (its.it_value.tv_sec == 0 && its.it_value.tv_nsec == 0) its.it_value.tv_nsec = 1;
  // Cannot fail with a valid fd and an in-range value; a failure would stall timers, so abort.
  if (timerfd_settime(timerfd_.get(), TFD_TIMER_ABSTIME, &its, nullptr) != 0) abort();
  armed_deadline_ = first;
}

void EventLoop::fireDueTimers() {
  uint64_t expirations = 0;
  ssize_t n = read(timerfd_.get(), &expirations, sizeof expirations);
  (void)n;  // EAGAIN when another wake-up already consumed it
  armed_deadline_ = 0;
  uint64_t now = monotonicMs();
  while (!timers_.empty() && timers_.begin()->first.first <= now) {
    auto node = timers_.extract(timers_.begin());
    timer_deadlines_.erase(node.key().second);
    node.mapped()();
  }
  armTimerFd();
}

Status EventLoop::run() {
  running_ = true;
  std::vector<epoll_event> events(64);
  while (running_) {
    int n = epoll_wait(epfd_.get(), events.data(), static_cast<int>(events.size()), -1);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return sysError("epoll_wait");
    for (int i = 0; i < n && running_; i++) {
      uint64_t id = events[i].data.u64;
      if (id == 0) {
        fireDueTimers();
        continue;
      }
      auto it = watches_.find(id);
      if (it == watches_.end()) continue;  // unwatched earlier in this batch
      std::shared_ptr<FdHandler> h = it->second.handler;
      (*h)(events[i].events);
    }
  }
  return okStatus();
}

}  // namespace jw::supervisor
