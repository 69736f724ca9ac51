// A helper program kept running (see restarting_helper.h); runs in jobworkerd, on its event loop.
#include "supervisor/core/restarting_helper.h"

#include <sys/epoll.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "common/log.h"
#include "common/protocol/channel.h"
#include "supervisor/launch/helper_process.h"

namespace jw::supervisor {

RestartingHelper::RestartingHelper(EventLoop& loop, RestartingHelperOptions options,
                                   Callbacks callbacks)
    : loop_(loop), options_(std::move(options)), cb_(std::move(callbacks)) {}

RestartingHelper::~RestartingHelper() {
  cb_.on_exited = nullptr;
  shutdown();
}

std::string RestartingHelper::describeExit(const siginfo_t& info) {
  if (info.si_code == CLD_EXITED) return "exited with status " + std::to_string(info.si_status);
  return std::string("killed by signal ") + std::to_string(info.si_status) + " (" +
         strsignal(info.si_status) + ")";
}

// Also after shutdown(): a failed upgrade in place starts the helpers it stopped again.
void RestartingHelper::start() {
  shutting_down_ = false;
  spawn();
}

void RestartingHelper::spawn() {
  respawn_timer_ = 0;
  if (shutting_down_) return;
  int raw[2];
  if (Status st = protocol::makeChannelPair(raw); !st) {
    log::err("cannot start the " + options_.name + ": " + st.error().message);
    scheduleRespawn();
    return;
  }
  UniqueFd ours(raw[0]);
  UniqueFd theirs(raw[1]);
  HelperSpec spec{options_.path, options_.args, options_.env, {theirs.get()}};
  spec.fds.insert(spec.fds.end(), options_.extra_fds.begin(), options_.extra_fds.end());
  auto child = spawnHelper(spec);
  theirs.reset();
  if (!child) {
    log::err("cannot start the " + options_.name + ": " + child.error().message);
    scheduleRespawn();
    return;
  }
  pid_ = child->pid;
  pidfd_ = std::move(child->pidfd);
  generation_++;
  started_ms_ = EventLoop::monotonicMs();
  auto pw = loop_.watch(pidfd_.get(), EPOLLIN, [this](uint32_t) { onExit(); });
  if (!pw) {
    // Without a watch on its pidfd we could never reap or replace it: fail closed.
    log::err("watch the " + options_.name + "'s pidfd: " + pw.error().message);
    abort();
  }
  pidfd_watch_ = pw.value();
  log::info(options_.name + " started: pid " + std::to_string(pid_) + ", " + options_.path);
  cb_.on_started(std::move(ours));
}

void RestartingHelper::signal(int sig) {
  if (pidfd_ && syscall(SYS_pidfd_send_signal, pidfd_.get(), sig, nullptr, 0) != 0 &&
      errno != ESRCH) {
    log::err("signal the " + options_.name + ": " + std::string(strerror(errno)));
  }
}

void RestartingHelper::forget() {
  loop_.unwatch(pidfd_watch_);
  pidfd_watch_ = 0;
  pidfd_.reset();
  pid_ = -1;
}

void RestartingHelper::onExit() {
  siginfo_t info{};
  if (waitid(static_cast<idtype_t>(P_PIDFD), static_cast<id_t>(pidfd_.get()), &info,
             WEXITED | WNOHANG) != 0) {
    log::err("waitid(" + options_.name + " pidfd): " + std::string(strerror(errno)));
    return;
  }
  if (info.si_pid == 0) return;  // not exited yet (spurious wake-up)
  pid_t old = pid_;
  forget();
  uint64_t ran = EventLoop::monotonicMs() - started_ms_;
  if (ran >= kStableRunMs) backoff_ms_ = kInitialBackoffMs;
  uint64_t restart_in = shutting_down_ ? 0 : backoff_ms_;
  if (cb_.on_exited) cb_.on_exited(old, describeExit(info), ran, restart_in);
  scheduleRespawn();
}

void RestartingHelper::scheduleRespawn() {
  if (shutting_down_ || respawn_timer_ != 0) return;
  uint64_t delay = backoff_ms_;
  backoff_ms_ = std::min(backoff_ms_ * 2, kMaxBackoffMs);
  respawn_timer_ = loop_.addTimer(delay, [this] { spawn(); });
}

void RestartingHelper::shutdown() {
  shutting_down_ = true;
  if (respawn_timer_ != 0) loop_.cancelTimer(respawn_timer_);
  respawn_timer_ = 0;
  if (!pidfd_) return;
  signal(SIGKILL);
  siginfo_t info{};
  while (waitid(static_cast<idtype_t>(P_PIDFD), static_cast<id_t>(pidfd_.get()), &info, WEXITED) !=
             0 &&
         errno == EINTR) {
  }
  pid_t old = pid_;
  forget();
  if (cb_.on_exited)
    cb_.on_exited(old, describeExit(info), EventLoop::monotonicMs() - started_ms_, 0);
}

}  // namespace jw::supervisor
