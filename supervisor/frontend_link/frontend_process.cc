// The frontend's channel I/O and frame checks (see frontend_process.h); runs in jobworkerd.
#include "supervisor/frontend_link/frontend_process.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/epoll.h>

#include <cerrno>
#include <cstring>

#include "common/fd.h"
#include "common/log.h"
#include "common/protocol/channel.h"

extern char** environ;

namespace jw::supervisor {

namespace {

constexpr int kFramesPerWakeup = 64;  // fairness: jobs' pipes get their turn

// The frontend gets our environment (the integration relay reads it) minus what belongs to the
// supervisor alone: systemd's notify socket and socket-activation variables.
std::vector<std::string> frontendEnvironment() {
  std::vector<std::string> env;
  for (char** e = environ; *e != nullptr; e++) {
    std::string_view kv(*e);
    if (kv.rfind("NOTIFY_SOCKET=", 0) == 0 || kv.rfind("LISTEN_", 0) == 0) continue;
    env.emplace_back(kv);
  }
  return env;
}

}  // namespace

FrontendProcess::FrontendProcess(EventLoop& loop, FrontendOptions options, Callbacks callbacks)
    : loop_(loop),
      cb_(std::move(callbacks)),
      process_(loop,
               RestartingHelperOptions{"frontend",
                                       std::move(options.path),
                                       std::move(options.args),
                                       frontendEnvironment(),
                                       {options.listen_fd}},
               RestartingHelper::Callbacks{
                   [this](UniqueFd link) { attachChannel(std::move(link)); },
                   [this](pid_t pid, const std::string& how, uint64_t ran_ms, uint64_t restart) {
                     onExited(pid, how, ran_ms, restart);
                   }}) {}

FrontendProcess::~FrontendProcess() { closeChannel(); }

void FrontendProcess::start() { process_.start(); }

// The supervisor's end of the channel, non-blocking, in the event loop; then the frontend is on.
void FrontendProcess::attachChannel(UniqueFd mine) {
  int fl = fcntl(mine.get(), F_GETFL);
  if (fl < 0 || fcntl(mine.get(), F_SETFL, fl | O_NONBLOCK) != 0) {
    log::err("make the frontend channel non-blocking: " + std::string(strerror(errno)));
    process_.signal(SIGKILL);
    return;
  }
  interest_ = EPOLLIN;
  auto cw = loop_.watch(mine.get(), interest_, [this](uint32_t ev) { onChannel(ev); });
  if (!cw) {
    log::err("watch the frontend channel: " + cw.error().message);
    process_.signal(SIGKILL);
    return;
  }
  channel_fd_ = std::move(mine);
  channel_watch_ = cw.value();
  cb_.on_connected();
}

void FrontendProcess::onExited(pid_t pid, const std::string& how, uint64_t ran_ms,
                               uint64_t restart_in_ms) {
  closeChannel();
  if (restart_in_ms == 0) return;  // shut down
  restarts_++;
  log::event(log::Priority::kWarning, log::ids::kFrontendRestart,
             "frontend pid " + std::to_string(pid) + " " + how + " after " +
                 std::to_string(ran_ms) + " ms; restarting in " + std::to_string(restart_in_ms) +
                 " ms",
             {{"FRONTEND_PID", std::to_string(pid)}, {"EXIT", how}});
}

void FrontendProcess::closeChannel() {
  if (!channel_fd_) return;
  loop_.unwatch(channel_watch_);
  channel_watch_ = 0;
  channel_fd_.reset();
  queue_.clear();
  queued_bytes_ = 0;
  if (cb_.on_disconnected) cb_.on_disconnected();
}

void FrontendProcess::violation(const std::string& why) {
  violations_++;
  log::event(log::Priority::kErr, log::ids::kProtocolViolation,
             "protocol violation by the frontend (pid " + std::to_string(process_.pid()) +
                 "): " + why + "; killing it",
             {{"FRONTEND_PID", std::to_string(process_.pid())}, {"REASON", why}});
  process_.signal(SIGKILL);
  closeChannel();
}

void FrontendProcess::shutdown() {
  closeChannel();
  process_.shutdown();
}

void FrontendProcess::send(std::string frame) {
  if (!channel_fd_) return;
  if (frame.size() > protocol::kMaxFrame) {
    // Replies are packed under the cap; this would be our bug, not the frontend's.
    log::err("dropping an oversized " + std::to_string(frame.size()) + "-byte frame");
    return;
  }
  queued_bytes_ += frame.size();
  queue_.push_back(std::move(frame));
  flushQueue();
}

void FrontendProcess::flushQueue() {
  while (channel_fd_ && !queue_.empty()) {
    Status st = protocol::sendFrame(channel_fd_.get(), queue_.front());
    if (!st) {
      if (st.error().sys_errno == EAGAIN) break;
      // EPIPE/ECONNRESET: the frontend is going away; its pidfd tells us when it is gone.
      log::warning("send to the frontend: " + st.error().message);
      process_.signal(SIGKILL);
      closeChannel();
      return;
    }
    queued_bytes_ -= queue_.front().size();
    queue_.pop_front();
  }
  updateInterest();
}

void FrontendProcess::updateInterest() {
  if (!channel_fd_) return;
  // Backpressure: a frontend that does not read its replies gets no new requests served.
  uint32_t want = queued_bytes_ > kQueueHighWater ? 0U : static_cast<uint32_t>(EPOLLIN);
  if (!queue_.empty()) want |= EPOLLOUT;
  if (want == interest_) return;
  Status st = loop_.modify(channel_watch_, want);
  if (!st) log::err("frontend channel interest: " + st.error().message);
  interest_ = want;
}

void FrontendProcess::onChannel(uint32_t events) {
  if (events & EPOLLOUT) flushQueue();
  if (!channel_fd_) return;
  if (!(events & (EPOLLIN | EPOLLHUP | EPOLLERR))) return;
  // Every request carries a token and a Login a password: the buffer wipes each frame once it
  // is handled, and whatever it holds when this returns (a violation's frame too).
  protocol::ReceiveBuffer buffer;
  for (int i = 0; i < kFramesPerWakeup && channel_fd_; i++) {
    if (queued_bytes_ > kQueueHighWater) break;
    auto r = buffer.receive(channel_fd_.get());
    if (!r) {
      violation(r.error().message);
      return;
    }
    if (r.value() == protocol::RecvStatus::kWouldBlock) return;
    if (r.value() == protocol::RecvStatus::kClosed) {
      log::warning("the frontend closed its channel; killing it");
      process_.signal(SIGKILL);
      closeChannel();
      return;
    }
    Status st = checkAndDispatch(buffer.frame());
    if (!st) {
      violation(st.error().message);
      return;
    }
  }
}

Status FrontendProcess::checkAndDispatch(std::string_view frame) {
  std::string_view payload;
  auto h = protocol::decodeHeader(frame, &payload);
  if (!h) return Error{"malformed frame: " + h.error().message};
  auto type = static_cast<uint16_t>(h->type);
  if (!protocol::isPermitted(type, protocol::Direction::kFrontendToSupervisor)) {
    return Error{"message type " + std::string(protocol::msgTypeName(type)) +
                 " is not permitted from the frontend"};
  }
  if (h->flags != 0) return Error{"requests never carry flags"};
  bool is_ready = h->type == protocol::MsgType::kReady;
  if (is_ready != (h->request_id == 0)) {
    return Error{"request id 0 is reserved for Ready, and Ready must use it"};
  }
  return cb_.on_request(h.value(), payload);
}

}  // namespace jw::supervisor
