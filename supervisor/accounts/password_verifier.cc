// The supervisor's side of password checks (see password_verifier.h); runs in jobworkerd, on its
// event loop.
#include "supervisor/accounts/password_verifier.h"

#include <fcntl.h>
#include <signal.h>
#include <sodium.h>
#include <sys/epoll.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "common/log.h"
#include "common/protocol/channel.h"
#include "common/protocol/verifier_codec.h"
#include "supervisor/launch/helper_process.h"

namespace jw::supervisor {

namespace pv = protocol::verifier;

namespace {

constexpr int kFramesPerWakeup = 64;  // fairness: the frontend and jobs' pipes get their turn

std::string describeExit(const siginfo_t& info) {
  if (info.si_code == CLD_EXITED) return "exited with status " + std::to_string(info.si_status);
  return std::string("killed by signal ") + std::to_string(info.si_status) + " (" +
         strsignal(info.si_status) + ")";
}

Status makeNonBlocking(int fd) {
  int fl = fcntl(fd, F_GETFL);
  if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) != 0) {
    return sysError("fcntl(O_NONBLOCK) on the verifier link");
  }
  return okStatus();
}

}  // namespace

std::string_view verdictName(PasswordVerdict v) {
  switch (v) {
    case PasswordVerdict::kMatch:
      return "match";
    case PasswordVerdict::kMismatch:
      return "mismatch";
    case PasswordVerdict::kBusy:
      return "busy";
    case PasswordVerdict::kUnavailable:
      return "unavailable";
  }
  return "unknown";
}

PasswordVerifier::PasswordVerifier(EventLoop& loop, PasswordVerifierOptions options)
    : loop_(loop), options_(std::move(options)) {
  options_.max_in_flight = std::clamp<uint32_t>(options_.max_in_flight, 1, kMaxInFlight);
}

PasswordVerifier::~PasswordVerifier() {
  shutting_down_ = true;
  for (auto& [id, p] : pending_) loop_.cancelTimer(p.timeout);
  pending_.clear();
  if (respawn_timer_ != 0) loop_.cancelTimer(respawn_timer_);
  closeLink();
  if (pidfd_) {
    signalVerifier(SIGKILL);
    siginfo_t info{};
    while (waitid(static_cast<idtype_t>(P_PIDFD), static_cast<id_t>(pidfd_.get()), &info,
                  WEXITED) != 0 &&
           errno == EINTR) {
    }
    if (pidfd_watch_ != 0) loop_.unwatch(pidfd_watch_);
    pidfd_.reset();
  }
}

void PasswordVerifier::start() { spawn(); }

void PasswordVerifier::spawn() {
  respawn_timer_ = 0;
  if (shutting_down_) return;
  int raw[2];
  if (Status st = protocol::makeChannelPair(raw); !st) {
    log::err("cannot start the password verifier: " + st.error().message);
    scheduleRespawn();
    return;
  }
  UniqueFd ours(raw[0]);
  UniqueFd theirs(raw[1]);
  HelperSpec spec{options_.path, options_.args, sanitizerEnvironment(), {theirs.get()}};
  auto child = spawnHelper(spec);
  theirs.reset();
  if (!child) {
    log::err("cannot start the password verifier: " + child.error().message);
    scheduleRespawn();
    return;
  }
  pid_ = child->pid;
  pidfd_ = std::move(child->pidfd);
  link_fd_ = std::move(ours);
  ready_ = false;
  generation_++;
  started_ms_ = EventLoop::monotonicMs();
  auto pw = loop_.watch(pidfd_.get(), EPOLLIN, [this](uint32_t) { onExit(); });
  if (!pw) {
    // Without a watch on its pidfd we could never reap or replace it: fail closed.
    log::err("watch the verifier's pidfd: " + pw.error().message);
    abort();
  }
  pidfd_watch_ = pw.value();
  Status nb = makeNonBlocking(link_fd_.get());
  auto lw = nb ? loop_.watch(link_fd_.get(), EPOLLIN, [this](uint32_t ev) { onLink(ev); })
               : Result<EventLoop::WatchId>(nb.error());
  if (!lw) {
    killVerifier("set up its link: " + lw.error().message);
    return;
  }
  link_watch_ = lw.value();
  log::info("password verifier started: pid " + std::to_string(pid_) + ", " + options_.path);
}

uint32_t PasswordVerifier::nextRequestId() {
  // At most kMaxInFlight ids are taken, so this finds a free one within a few steps.
  do {
    last_request_id_++;
  } while (last_request_id_ == 0 || pending_.count(last_request_id_) != 0);
  return last_request_id_;
}

void PasswordVerifier::later(Callback done, PasswordVerdict verdict) {
  // Through the loop, so a caller never sees its callback run inside its own check() call.
  loop_.addTimer(0, [done = std::move(done), verdict] { done(verdict); });
}

void PasswordVerifier::check(std::string_view user, std::string_view password,
                             std::string_view stored_hash, Callback done) {
  if (!link_fd_) {
    later(std::move(done), PasswordVerdict::kUnavailable);
    return;
  }
  if (pending_.size() >= options_.max_in_flight) {
    later(std::move(done), PasswordVerdict::kBusy);
    return;
  }
  bool dummy = stored_hash.empty();
  if (password.size() > pv::kMaxPassword || stored_hash.size() > pv::kMaxHash) {
    // The frontend caps passwords first and the users file caps hashes; answer as a wrong
    // password would, without spending a check (a stored hash this long is not argon2id's).
    later(std::move(done), PasswordVerdict::kMismatch);
    return;
  }
  uint32_t id = nextRequestId();
  std::string frame =
      pv::encodeVerifyPassword(id, pv::VerifyRequest{password, dummy ? kDummyHash : stored_hash});
  Status sent = protocol::sendFrame(link_fd_.get(), frame);
  sodium_memzero(frame.data(), frame.size());
  if (!sent) {
    // EAGAIN cannot happen under kMaxInFlight small frames; anything else means it is dying.
    log::warning("send to the password verifier: " + sent.error().message);
    later(std::move(done), PasswordVerdict::kUnavailable);
    return;
  }
  Pending p{std::move(done), dummy, std::string(user), 0};
  p.timeout = loop_.addTimer(options_.check_timeout_ms, [this, id] { onTimeout(id); });
  pending_.emplace(id, std::move(p));
}

void PasswordVerifier::onTimeout(uint32_t request_id) {
  auto it = pending_.find(request_id);
  if (it == pending_.end()) return;
  it->second.timeout = 0;
  killVerifier("no answer to a check (user " + log::quote(it->second.user) + ") within " +
               std::to_string(options_.check_timeout_ms) + " ms");
}

void PasswordVerifier::onLink(uint32_t events) {
  if (!link_fd_) return;
  if (!(events & (EPOLLIN | EPOLLHUP | EPOLLERR))) return;
  std::string frame;
  for (int i = 0; i < kFramesPerWakeup && link_fd_; i++) {
    auto r = protocol::recvFrame(link_fd_.get(), &frame);
    if (!r || r.value() == protocol::RecvStatus::kClosed) {
      // Usually it died (ECONNRESET or EOF); onExit() reports how. Killed anyway, to be sure.
      log::warning("password verifier (pid " + std::to_string(pid_) +
                   ") link lost: " + (r ? std::string("closed") : r.error().message));
      signalVerifier(SIGKILL);
      closeLink();
      return;
    }
    if (r.value() == protocol::RecvStatus::kWouldBlock) return;
    if (Status st = handleFrame(frame); !st) {
      killVerifier("protocol violation: " + st.error().message);
      return;
    }
  }
}

// The verifier is unprivileged and could in principle be subverted: every frame is checked as
// the frontend's are, and any surprise costs it its life, never a guess.
Status PasswordVerifier::handleFrame(std::string_view frame) {
  std::string_view payload;
  auto h = pv::decodeHeader(frame, &payload);
  if (!h) return h.error();
  auto type = static_cast<uint16_t>(h->type);
  if (!pv::isPermitted(type, pv::Direction::kVerifierToSupervisor)) {
    return Error{std::string(pv::msgTypeName(type)) + " does not flow from the verifier"};
  }
  switch (h->type) {
    case pv::MsgType::kVerifierReady: {
      if (h->request_id != 0 || ready_) return Error{"unexpected VerifierReady"};
      if (auto r = pv::decodeVerifierReadyPayload(payload); !r) return r.error();
      ready_ = true;
      return okStatus();
    }
    case pv::MsgType::kVerifyResult: {
      if (!ready_) return Error{"VerifyResult before VerifierReady"};
      if (pending_.count(h->request_id) == 0) {
        return Error{"VerifyResult for request " + std::to_string(h->request_id) +
                     ", which is not pending"};
      }
      auto r = pv::decodeVerifyResultPayload(payload);
      if (!r) return r.error();
      complete(h->request_id, r->match ? PasswordVerdict::kMatch : PasswordVerdict::kMismatch);
      return okStatus();
    }
    case pv::MsgType::kVerifyPassword:
      break;  // refused by isPermitted above
  }
  return Error{"unhandled verifier message " + std::string(pv::msgTypeName(type))};
}

void PasswordVerifier::complete(uint32_t request_id, PasswordVerdict verdict) {
  auto node = pending_.extract(request_id);
  if (node.empty()) return;
  Pending& p = node.mapped();
  if (p.timeout != 0) loop_.cancelTimer(p.timeout);
  if (p.dummy && verdict == PasswordVerdict::kMatch) verdict = PasswordVerdict::kMismatch;
  p.done(verdict);
}

void PasswordVerifier::failAllPending() {
  // Moved out first: a callback may call check() again (which sees no link and answers later).
  std::map<uint32_t, Pending> failed;
  failed.swap(pending_);
  for (auto& [id, p] : failed) {
    if (p.timeout != 0) loop_.cancelTimer(p.timeout);
    p.done(PasswordVerdict::kUnavailable);
  }
}

void PasswordVerifier::signalVerifier(int sig) {
  if (pidfd_ && syscall(SYS_pidfd_send_signal, pidfd_.get(), sig, nullptr, 0) != 0 &&
      errno != ESRCH) {
    log::err("signal the password verifier: " + std::string(strerror(errno)));
  }
}

void PasswordVerifier::killVerifier(const std::string& why) {
  log::err("password verifier (pid " + std::to_string(pid_) + "): " + why + "; killing it");
  signalVerifier(SIGKILL);
  closeLink();
  // onExit() reaps it and schedules the restart.
}

void PasswordVerifier::closeLink() {
  if (!link_fd_) return;
  if (link_watch_ != 0) loop_.unwatch(link_watch_);
  link_watch_ = 0;
  link_fd_.reset();
  ready_ = false;
  failAllPending();  // none left in the destructor, which drops them unanswered first
}

void PasswordVerifier::onExit() {
  siginfo_t info{};
  if (waitid(static_cast<idtype_t>(P_PIDFD), static_cast<id_t>(pidfd_.get()), &info,
             WEXITED | WNOHANG) != 0) {
    log::err("waitid(verifier pidfd): " + std::string(strerror(errno)));
    return;
  }
  if (info.si_pid == 0) return;  // not exited yet (spurious wake-up)
  closeLink();
  loop_.unwatch(pidfd_watch_);
  pidfd_watch_ = 0;
  pidfd_.reset();
  pid_t old = pid_;
  pid_ = -1;
  if (shutting_down_) return;
  uint64_t ran = EventLoop::monotonicMs() - started_ms_;
  if (ran >= kStableRunMs) backoff_ms_ = kInitialBackoffMs;
  log::warning("password verifier pid " + std::to_string(old) + " " + describeExit(info) +
               " after " + std::to_string(ran) + " ms; restarting in " +
               std::to_string(backoff_ms_) + " ms");
  scheduleRespawn();
}

void PasswordVerifier::scheduleRespawn() {
  if (shutting_down_ || respawn_timer_ != 0) return;
  uint64_t delay = backoff_ms_;
  backoff_ms_ = std::min(backoff_ms_ * 2, kMaxBackoffMs);
  respawn_timer_ = loop_.addTimer(delay, [this] { spawn(); });
}

void PasswordVerifier::shutdown() {
  shutting_down_ = true;
  if (respawn_timer_ != 0) loop_.cancelTimer(respawn_timer_);
  respawn_timer_ = 0;
  closeLink();
  if (!pidfd_) return;
  signalVerifier(SIGKILL);
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

}  // namespace jw::supervisor
