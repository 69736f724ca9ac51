// Job starts through jobworker-spawner (see job_launcher.h); runs in jobworkerd, on its event loop.
#include "supervisor/launch/job_launcher.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>
#include <utility>
#include <vector>

#include "common/log.h"
#include "supervisor/launch/fd_passing.h"
#include "supervisor/launch/helper_process.h"
#include "supervisor/launch/spawner_protocol.h"

namespace jw::supervisor {

namespace {

constexpr int kRepliesPerWakeup = 64;  // fairness: the frontend and the jobs get their turn

}  // namespace

JobLauncher::JobLauncher(EventLoop& loop, std::string spawner_path, int init_fd)
    : loop_(loop),
      process_(loop,
               RestartingHelperOptions{
                   "job spawner", std::move(spawner_path), {}, sanitizerEnvironment(), {init_fd}},
               RestartingHelper::Callbacks{
                   [this](UniqueFd link) { attachLink(std::move(link)); },
                   [this](pid_t pid, const std::string& how, uint64_t ran_ms, uint64_t restart) {
                     closeLink();
                     failUnspawned("the job spawner stopped");
                     if (restart == 0) return;  // shut down
                     log::warning("job spawner pid " + std::to_string(pid) + " " + how + " after " +
                                  std::to_string(ran_ms) + " ms; restarting in " +
                                  std::to_string(restart) + " ms");
                   }}) {}

JobLauncher::~JobLauncher() {
  for (auto& [id, l] : launches_) {
    if (l.channel_watch != 0) loop_.unwatch(l.channel_watch);
    loop_.cancelTimer(l.timeout);
    if (l.pidfd) killAndReapShim(l.pidfd.get());
  }
  launches_.clear();
  closeLink();
  // process_, destroyed next, kills and reaps the spawner.
}

void JobLauncher::start() { process_.start(); }

void JobLauncher::shutdown() {
  drain();
  process_.shutdown();
  closeLink();
}

void JobLauncher::attachLink(UniqueFd link) {
  int fl = fcntl(link.get(), F_GETFL);
  if (fl < 0 || fcntl(link.get(), F_SETFL, fl | O_NONBLOCK) != 0) {
    log::err("job spawner link: " + std::string(strerror(errno)) + "; restarting it");
    process_.signal(SIGKILL);
    return;
  }
  auto w = loop_.watch(link.get(), EPOLLIN, [this](uint32_t) { onLink(); });
  if (!w) {
    log::err("watch the job spawner link: " + w.error().message + "; restarting it");
    process_.signal(SIGKILL);
    return;
  }
  link_ = std::move(link);
  link_watch_ = w.value();
}

void JobLauncher::closeLink() {
  if (link_watch_ != 0) loop_.unwatch(link_watch_);
  link_watch_ = 0;
  link_.reset();
}

uint32_t JobLauncher::nextId() {
  do {
    last_id_++;
  } while (last_id_ == 0 || launches_.count(last_id_) != 0);
  return last_id_;
}

void JobLauncher::launch(const SpawnRequest& req, Done done) {
  auto later = [this, &done](Error e, SpawnFailure f) {
    loop_.addTimer(0, [done = std::move(done), e = std::move(e), f]() mutable { done(e, f); });
  };
  if (!link_) {
    return later(Error{"no job spawner is running (it is being restarted)", EAGAIN},
                 SpawnFailure::kUnavailable);
  }
  SpawnFailure failure = SpawnFailure::kSetup;
  auto prepared = prepareShim(req, &failure);
  if (!prepared) return later(prepared.error(), failure);
  PreparedShim& p = prepared.value();

  const uint32_t id = nextId();
  spawner::Order order;
  order.request_id = id;
  order.ns_flags = static_cast<uint32_t>(p.ns_flags);
  memcpy(order.short_id, p.short_id.data(), std::min(p.short_id.size(), sizeof order.short_id));
  const int slots[spawner::kSlotCount] = {
      p.spec.get(),      p.shim_channel.get(), p.channel.get(),   req.stdout_log_fd,
      req.stderr_log_fd, req.exit_record_fd,   req.stdin_read_fd, p.cgroup_dir};
  int fds[spawner::kSlotCount];
  int nfds = 0;
  for (uint32_t s = 0; s < spawner::kSlotCount; s++) {
    if (slots[s] < 0) continue;
    order.fd_mask |= 1U << s;
    fds[nfds++] = slots[s];
  }
  ssize_t n = sendWithFds(link_.get(), &order, sizeof order, fds, nfds);
  if (n != static_cast<ssize_t>(sizeof order)) {
    // EAGAIN: thousands of orders queued in a wedged spawner; anything else: it is dying.
    int err = n < 0 ? errno : EPROTO;
    log::warning("send an order to the job spawner: " + std::string(strerror(err)));
    if (err != EAGAIN) process_.signal(SIGKILL);
    return later(Error{"the job spawner cannot take the job right now", err},
                 SpawnFailure::kUnavailable);
  }
  Launch l;
  l.req = req;
  l.done = std::move(done);
  l.channel = std::move(p.channel);
  l.timeout = loop_.addTimer(kShimStartTimeoutMs, [this, id] { onTimeout(id); });
  launches_.emplace(id, std::move(l));
}

void JobLauncher::onLink() {
  for (int i = 0; i < kRepliesPerWakeup && link_; i++) {
    spawner::Reply r;
    int fd = -1;
    int nfds = 0;
    bool truncated = false;
    ssize_t n = recvWithFds(link_.get(), &r, sizeof r, &fd, 1, &nfds, &truncated, MSG_DONTWAIT);
    if (n < 0 && errno == EAGAIN) return;
    UniqueFd pidfd(nfds == 1 ? fd : -1);
    if (n != static_cast<ssize_t>(sizeof r) || truncated ||
        (r.pid > 0) != static_cast<bool>(pidfd)) {
      // Its end closed (it died: onExit reports how) or it spoke nonsense: replaced either way.
      if (pidfd) killAndReapShim(pidfd.get());
      if (n != 0) log::err("job spawner: malformed reply; restarting it");
      process_.signal(SIGKILL);
      closeLink();
      failUnspawned("the job spawner stopped");
      return;
    }
    onSpawned(r.request_id, r.pid, r.err, std::move(pidfd));
  }
}

void JobLauncher::onSpawned(uint32_t id, pid_t pid, int err, UniqueFd pidfd) {
  auto it = launches_.find(id);
  if (it == launches_.end() || it->second.pidfd) {
    // Timed out meanwhile (or a reply twice): the shim has nobody waiting for it.
    if (pidfd) killAndReapShim(pidfd.get());
    return;
  }
  Launch& l = it->second;
  if (pid <= 0) {
    return finish(id, Error{std::string("clone the job's shim: ") + strerror(err), err},
                  SpawnFailure::kSetup);
  }
  l.pid = pid;
  l.pidfd = std::move(pidfd);
  if (Status st = releaseShim(l.req, pid, l.channel.get()); !st) {
    killAndReapShim(l.pidfd.get());
    return finish(id, st.error(), SpawnFailure::kSetup);
  }
  // The shim's report, or the EOF of its exit, arrives on the channel.
  auto w = loop_.watch(l.channel.get(), EPOLLIN, [this, id](uint32_t) { onShimEvent(id); });
  if (!w) {
    killAndReapShim(l.pidfd.get());
    return finish(id, w.error(), SpawnFailure::kSetup);
  }
  l.channel_watch = w.value();
}

void JobLauncher::onShimEvent(uint32_t id) {
  auto it = launches_.find(id);
  if (it == launches_.end()) return;
  Launch& l = it->second;
  SpawnFailure failure = SpawnFailure::kSetup;
  auto report = readStartReport(l.req, l.channel.get(), &failure);
  if (!report) return;
  if (!*report) {
    killAndReapShim(l.pidfd.get());
    return finish(id, report->error(), failure);
  }
  SpawnedJob job{l.pid, std::move(l.pidfd), std::move(l.channel), report->value()};
  finish(id, std::move(job), SpawnFailure::kNone);
}

void JobLauncher::onTimeout(uint32_t id) {
  auto it = launches_.find(id);
  if (it == launches_.end()) return;
  it->second.timeout = 0;
  if (it->second.pidfd) {
    killAndReapShim(it->second.pidfd.get());
  } else {
    log::err("job spawner: no answer within " + std::to_string(kShimStartTimeoutMs) +
             " ms; restarting it");
    process_.signal(SIGKILL);
  }
  finish(id, Error{"the job shim did not start within 30 s", ETIMEDOUT}, SpawnFailure::kSetup);
}

// Ends the launch (its watch, its timer) before calling back: the callback may launch again.
void JobLauncher::finish(uint32_t id, Result<SpawnedJob> result, SpawnFailure failure) {
  auto node = launches_.extract(id);
  if (node.empty()) return;
  Launch& l = node.mapped();
  if (l.channel_watch != 0) loop_.unwatch(l.channel_watch);
  loop_.cancelTimer(l.timeout);
  l.done(std::move(result), failure);
}

// The spawner is gone: an order it had not answered has no shim we know of. A shim it cloned
// just before dying waits for a release that never comes, and gives up on its own.
void JobLauncher::failUnspawned(const std::string& why) {
  std::vector<uint32_t> ids;
  for (auto& [id, l] : launches_) {
    if (!l.pidfd) ids.push_back(id);
  }
  for (uint32_t id : ids) finish(id, Error{why, ECHILD}, SpawnFailure::kUnavailable);
}

void JobLauncher::drain() {
  uint64_t deadline = EventLoop::monotonicMs() + kShimStartTimeoutMs;
  while (!launches_.empty()) {
    std::vector<pollfd> p;
    std::vector<uint32_t> ids;  // per entry of p; 0: the link
    bool unspawned = false;
    for (auto& [id, l] : launches_) {
      if (l.pidfd) {
        p.push_back({l.channel.get(), POLLIN, 0});
        ids.push_back(id);
      } else {
        unspawned = true;
      }
    }
    if (unspawned) {
      if (!link_) {
        failUnspawned("the job spawner stopped");
        continue;
      }
      p.push_back({link_.get(), POLLIN, 0});
      ids.push_back(0);
    }
    uint64_t now = EventLoop::monotonicMs();
    int n = poll(p.data(), p.size(), now >= deadline ? 0 : static_cast<int>(deadline - now));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      std::vector<uint32_t> all;
      for (auto& [id, l] : launches_) all.push_back(id);
      for (uint32_t id : all) onTimeout(id);
      return;
    }
    for (size_t i = 0; i < p.size(); i++) {
      if (p[i].revents == 0) continue;
      if (ids[i] == 0) {
        onLink();
      } else {
        onShimEvent(ids[i]);
      }
    }
  }
}

}  // namespace jw::supervisor
