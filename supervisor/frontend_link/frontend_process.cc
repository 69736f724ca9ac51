// Frontend spawn, channel I/O and respawn (see frontend_process.h); runs in jobworkerd, and the
// child part between fork and execve in the new frontend process.
#include "supervisor/frontend_link/frontend_process.h"

#include <fcntl.h>
#include <linux/close_range.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "common/fd.h"
#include "common/io.h"
#include "common/log.h"
#include "common/protocol/channel.h"

extern char** environ;

namespace jw::supervisor {

namespace {

constexpr int kChannelFd = 3;
constexpr int kListenFd = 4;
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

std::vector<char*> cStrings(std::vector<std::string>& v) {
  std::vector<char*> out;
  for (auto& s : v) out.push_back(s.data());
  out.push_back(nullptr);
  return out;
}

// Between fork and execve: async-signal-safe calls only.
[[noreturn]] void execFrontend(pid_t parent, int channel, int listen_fd, int report_w,
                               char* const* argv, char* const* envp) {
  auto fail = [report_w](int err) {
    ssize_t n = write(report_w, &err, sizeof err);
    (void)n;
    _exit(127);
  };
  for (int sig = 1; sig < NSIG; sig++) {
    if (sig == SIGKILL || sig == SIGSTOP) continue;
    struct sigaction sa {};
    sa.sa_handler = SIG_DFL;
    sigaction(sig, &sa, nullptr);
  }
  sigset_t none;
  sigemptyset(&none);
  if (sigprocmask(SIG_SETMASK, &none, nullptr) != 0) fail(errno);
  // The frontend must not outlive the supervisor: it would hold the port with nobody behind it.
  if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) != 0) fail(errno);
  if (getppid() != parent) _exit(1);
  // Move both fds above 4 first so the dup2s below cannot clobber each other.
  int ch = fcntl(channel, F_DUPFD_CLOEXEC, 10);
  int ls = fcntl(listen_fd, F_DUPFD_CLOEXEC, 10);
  if (ch < 0 || ls < 0) fail(errno);
  if (dup2(ch, kChannelFd) < 0 || dup2(ls, kListenFd) < 0) fail(errno);
  if (syscall(SYS_close_range, 5U, ~0U, CLOSE_RANGE_CLOEXEC) != 0) fail(errno);
  execve(argv[0], argv, envp);
  fail(errno);
  _exit(127);
}

std::string describeExit(const siginfo_t& info) {
  if (info.si_code == CLD_EXITED) return "exited with status " + std::to_string(info.si_status);
  return std::string("killed by signal ") + std::to_string(info.si_status) + " (" +
         strsignal(info.si_status) + ")";
}

}  // namespace

FrontendProcess::FrontendProcess(EventLoop& loop, FrontendOptions options, Callbacks callbacks)
    : loop_(loop), options_(std::move(options)), cb_(std::move(callbacks)) {}

FrontendProcess::~FrontendProcess() {
  closeChannel();
  if (pidfd_watch_ != 0) loop_.unwatch(pidfd_watch_);
}

void FrontendProcess::start() { spawn(); }

void FrontendProcess::spawn() {
  respawn_timer_ = 0;
  if (shutting_down_) return;
  auto child = forkFrontend();
  if (!child) {
    log::err("cannot start the frontend: " + child.error().message);
    scheduleRespawn();
    return;
  }
  if (!watchChild(child->report)) return;  // exec failed: onExit respawns it with back-off
  attachChannel(std::move(child->channel));
}

// The channel pair and the exec report pipe, then fork; the child execs the frontend binary.
Result<FrontendProcess::ForkedChild> FrontendProcess::forkFrontend() {
  int pair[2];
  if (Status st = protocol::makeChannelPair(pair); !st) return st.error();
  UniqueFd mine(pair[0]), theirs(pair[1]);
  auto report = makePipe(O_CLOEXEC);
  if (!report) return report.error();
  std::vector<std::string> argv_s = {options_.path};
  argv_s.insert(argv_s.end(), options_.args.begin(), options_.args.end());
  std::vector<std::string> env_s = frontendEnvironment();
  std::vector<char*> argv = cStrings(argv_s);
  std::vector<char*> envp = cStrings(env_s);
  pid_t parent = getpid();

  pid_t pid = fork();
  // execFrontend ends in execve or _exit: no destructor of this frame runs in the child.
  if (pid == 0) {
    execFrontend(parent, theirs.get(), options_.listen_fd, report->write.get(), argv.data(),
                 envp.data());
  }
  if (pid < 0) return sysError("fork");
  pid_ = pid;
  return ForkedChild{std::move(mine), std::move(report->read)};
}

// Watches the new child through its pidfd (fail closed without one) and reads its exec report.
// False when the exec failed.
bool FrontendProcess::watchChild(UniqueFd& report) {
  generation_++;
  started_ms_ = EventLoop::monotonicMs();
  pidfd_.reset(static_cast<int>(syscall(SYS_pidfd_open, pid_, 0)));
  if (!pidfd_) {
    // Without a pidfd we cannot watch it safely: fail closed, the supervisor cannot run.
    log::err("pidfd_open(frontend): " + std::string(strerror(errno)));
    kill(pid_, SIGKILL);
    abort();
  }
  int child_errno = 0;
  auto got = readExact(report.get(), &child_errno, sizeof child_errno, "frontend report");
  report.reset();
  const bool exec_failed = got && got.value() == sizeof child_errno;
  if (!got) log::err("cannot start the frontend: " + got.error().message);
  if (exec_failed) {
    log::err("cannot execute the frontend " + log::quote(options_.path) + ": " +
             strerror(child_errno));
  }
  auto pw = loop_.watch(pidfd_.get(), EPOLLIN, [this](uint32_t) { onExit(); });
  if (!pw) {
    log::err("watch frontend pidfd: " + pw.error().message);
    abort();
  }
  pidfd_watch_ = pw.value();
  return !exec_failed;
}

// The supervisor's end of the channel, non-blocking, in the event loop; then the frontend is on.
void FrontendProcess::attachChannel(UniqueFd mine) {
  int fl = fcntl(mine.get(), F_GETFL);
  if (fl < 0 || fcntl(mine.get(), F_SETFL, fl | O_NONBLOCK) != 0) {
    log::err("make the frontend channel non-blocking: " + std::string(strerror(errno)));
    signalFrontend(SIGKILL);
    return;
  }
  interest_ = EPOLLIN;
  auto cw = loop_.watch(mine.get(), interest_, [this](uint32_t ev) { onChannel(ev); });
  if (!cw) {
    log::err("watch the frontend channel: " + cw.error().message);
    signalFrontend(SIGKILL);
    return;
  }
  channel_fd_ = std::move(mine);
  channel_watch_ = cw.value();
  log::info("frontend started: pid " + std::to_string(pid_) + ", " + options_.path);
  cb_.on_connected();
}

void FrontendProcess::signalFrontend(int sig) {
  if (!pidfd_) return;
  if (syscall(SYS_pidfd_send_signal, pidfd_.get(), sig, nullptr, 0) != 0 && errno != ESRCH) {
    log::err("signal the frontend: " + std::string(strerror(errno)));
  }
}

void FrontendProcess::onExit() {
  siginfo_t info{};
  if (waitid(static_cast<idtype_t>(P_PIDFD), static_cast<id_t>(pidfd_.get()), &info,
             WEXITED | WNOHANG) != 0) {
    log::err("waitid(frontend pidfd): " + std::string(strerror(errno)));
    return;
  }
  if (info.si_pid == 0) return;  // not exited yet (spurious wake-up)
  closeChannel();
  loop_.unwatch(pidfd_watch_);
  pidfd_watch_ = 0;
  pidfd_.reset();
  pid_t old = pid_;
  pid_ = -1;
  if (shutting_down_) return;
  uint64_t ran = EventLoop::monotonicMs() - started_ms_;
  if (ran >= kStableRunMs) backoff_ms_ = kInitialBackoffMs;
  log::event(log::Priority::kWarning, log::ids::kFrontendRestart,
             "frontend pid " + std::to_string(old) + " " + describeExit(info) + " after " +
                 std::to_string(ran) + " ms; restarting in " + std::to_string(backoff_ms_) + " ms",
             {{"FRONTEND_PID", std::to_string(old)}, {"EXIT", describeExit(info)}});
  scheduleRespawn();
}

void FrontendProcess::scheduleRespawn() {
  if (shutting_down_ || respawn_timer_ != 0) return;
  uint64_t delay = backoff_ms_;
  backoff_ms_ = std::min(backoff_ms_ * 2, kMaxBackoffMs);
  respawn_timer_ = loop_.addTimer(delay, [this] { spawn(); });
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
  log::event(log::Priority::kErr, log::ids::kProtocolViolation,
             "protocol violation by the frontend (pid " + std::to_string(pid_) + "): " + why +
                 "; killing it",
             {{"FRONTEND_PID", std::to_string(pid_)}, {"REASON", why}});
  signalFrontend(SIGKILL);
  closeChannel();
}

void FrontendProcess::shutdown() {
  shutting_down_ = true;
  if (respawn_timer_ != 0) loop_.cancelTimer(respawn_timer_);
  respawn_timer_ = 0;
  closeChannel();
  if (!pidfd_) return;
  signalFrontend(SIGKILL);
  siginfo_t info{};
  while (waitid(static_cast<idtype_t>(P_PIDFD), static_cast<id_t>(pidfd_.get()), &info, WEXITED) !=
             0 &&
         errno == EINTR) {
  }
  loop_.unwatch(pidfd_watch_);
  pidfd_watch_ = 0;
  pidfd_.reset();
  pid_ = -1;
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
      signalFrontend(SIGKILL);
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
      signalFrontend(SIGKILL);
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
