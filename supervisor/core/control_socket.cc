// The root-only control socket (see control_socket.h); runs in jobworkerd's event loop.
#include "supervisor/core/control_socket.h"

#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "common/log.h"
#include "common/protocol/channel.h"

namespace jw::supervisor {

namespace {

Result<sockaddr_un> unixAddress(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.empty() || path[0] != '/') return Error{"control socket path must be absolute"};
  if (path.size() >= sizeof(addr.sun_path)) {
    return Error{"control socket path " + path + " longer than " +
                 std::to_string(sizeof(addr.sun_path) - 1) + " bytes"};
  }
  std::memcpy(addr.sun_path, path.data(), path.size());
  return addr;
}

std::string parentOf(const std::string& path) {
  size_t slash = path.rfind('/');
  return slash == 0 ? "/" : path.substr(0, slash);
}

// Nobody but us may create, rename or remove entries in the socket's directory: otherwise the
// path could be swapped for a symlink between our checks and bind().
Status checkParent(const std::string& dir) {
  struct stat st {};
  if (lstat(dir.c_str(), &st) != 0) return sysError("lstat " + dir);
  if (!S_ISDIR(st.st_mode)) return Error{dir + " is not a directory"};
  if (st.st_uid != geteuid())
    return Error{dir + " is not owned by uid " + std::to_string(geteuid())};
  if (st.st_mode & (S_IWGRP | S_IWOTH)) return Error{dir + " is writable by group or others"};
  return okStatus();
}

// An existing path: a socket without a listener is stale (a previous run that crashed) and is
// removed; anything else stays and is an error.
Status clearStale(const std::string& path, const sockaddr_un& addr) {
  struct stat st {};
  if (lstat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return okStatus();
    return sysError("lstat " + path);
  }
  if (!S_ISSOCK(st.st_mode)) return Error{path + " exists and is not a socket; not replacing it"};
  UniqueFd probe(socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!probe) return sysError("socket(AF_UNIX) to probe " + path);
  if (connect(probe.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) == 0 ||
      errno == EAGAIN) {
    return Error{"another process is listening on " + path + " (a second jobworkerd?)"};
  }
  if (errno != ECONNREFUSED) return sysError("probe the existing socket " + path);
  if (unlink(path.c_str()) != 0) return sysError("remove the stale socket " + path);
  log::notice("removed the stale control socket " + path);
  return okStatus();
}

Status verifyCreated(const std::string& path) {
  struct stat st {};
  if (lstat(path.c_str(), &st) != 0) return sysError("lstat " + path);
  if (!S_ISSOCK(st.st_mode) || st.st_uid != geteuid() || (st.st_mode & 07777) != 0600) {
    return Error{"control socket " + path + " is not a 0600 socket of ours after bind"};
  }
  return okStatus();
}

}  // namespace

Result<UniqueFd> bindControlSocket(const std::string& path) {
  auto addr = unixAddress(path);
  if (!addr) return addr.error();
  if (Status st = checkParent(parentOf(path)); !st) return st.error();
  if (Status st = clearStale(path, addr.value()); !st) return st.error();
  UniqueFd fd(socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!fd) return sysError("socket(AF_UNIX, SOCK_SEQPACKET) for " + path);
  // The umask makes the socket 0600 from its first moment: there is no window in which another
  // user could connect before the chmod.
  mode_t old_mask = umask(0177);
  int rc = bind(fd.get(), reinterpret_cast<const sockaddr*>(&addr.value()), sizeof(sockaddr_un));
  int bind_errno = errno;
  umask(old_mask);
  if (rc != 0) return sysError("bind " + path, bind_errno);
  if (chmod(path.c_str(), 0600) != 0) return sysError("chmod 0600 " + path);
  if (Status st = verifyCreated(path); !st) return st.error();
  if (::listen(fd.get(), 16) != 0) return sysError("listen on " + path);
  return fd;
}

ControlServer::~ControlServer() { shutdown(); }

Status ControlServer::listen(const std::string& path) {
  auto fd = bindControlSocket(path);
  if (!fd) return fd.error();
  struct stat st {};
  if (lstat(path.c_str(), &st) != 0) return sysError("lstat " + path);
  dev_ = st.st_dev;
  ino_ = st.st_ino;
  path_ = path;
  listen_fd_ = std::move(fd.value());
  auto w = loop_.watch(listen_fd_.get(), EPOLLIN, [this](uint32_t) { onAccept(); });
  if (!w) return w.error();
  listen_watch_ = w.value();
  log::info("control socket listening on " + path);
  return okStatus();
}

void ControlServer::shutdown() {
  while (!conns_.empty()) drop(conns_.begin()->first, "");
  if (!listen_fd_) return;
  loop_.unwatch(listen_watch_);
  listen_fd_.reset();
  // Remove the path only if it is still the socket we bound (never someone else's file).
  struct stat st {};
  if (lstat(path_.c_str(), &st) == 0 && st.st_dev == dev_ && st.st_ino == ino_) {
    unlink(path_.c_str());
  }
}

void ControlServer::onAccept() {
  // Accept even at the cap and close at once: a connection left in the backlog would keep the
  // level-triggered listener readable and spin the loop.
  UniqueFd fd(accept4(listen_fd_.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK));
  if (!fd) {
    if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED) {
      log::warning(sysError("accept on the control socket").message);
    }
    return;
  }
  pid_t pid = 0;
  if (!peerAllowed(fd.get(), &pid)) return;
  if (conns_.size() >= kMaxConnections) {
    log::warning("control socket: " + std::to_string(kMaxConnections) +
                 " connections open; refusing pid " + std::to_string(pid));
    return;
  }
  ConnId id = next_id_++;
  Conn& conn = conns_[id];
  conn.fd = std::move(fd);
  conn.pid = pid;
  auto w = loop_.watch(conn.fd.get(), EPOLLIN, [this, id](uint32_t ev) { onConn(id, ev); });
  if (!w) {
    log::warning("control socket: watch: " + w.error().message);
    conns_.erase(id);
    return;
  }
  conn.watch = w.value();
  conn.interest = EPOLLIN;
  conn.deadline = loop_.addTimer(kConnectionDeadlineMs, [this, id] {
    drop(id, "deadline of " + std::to_string(kConnectionDeadlineMs) + " ms reached");
  });
}

bool ControlServer::peerAllowed(int fd, pid_t* pid) {
  ucred cred{};
  socklen_t len = sizeof(cred);
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0 || len != sizeof(cred)) {
    log::warning(sysError("control socket: SO_PEERCRED").message);
    return false;
  }
  *pid = cred.pid;
  if (cred.uid == geteuid()) return true;
  log::event(log::Priority::kWarning, log::ids::kControlRefused,
             "control socket: refused a connection from uid " + std::to_string(cred.uid) +
                 " (pid " + std::to_string(cred.pid) + "): only uid " + std::to_string(geteuid()) +
                 " may use it",
             {{"PEER_UID", std::to_string(cred.uid)}, {"PEER_PID", std::to_string(cred.pid)}});
  return false;
}

void ControlServer::onConn(ConnId c, uint32_t events) {
  auto it = conns_.find(c);
  if (it == conns_.end()) return;
  if (events & EPOLLOUT) {
    if (Status st = flush(it->second); !st) return drop(c, st.error().message);
  }
  if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
    if (Status st = readFrames(c); !st) return drop(c, st.error().message);
  }
  if (conns_.count(c) != 0) updateInterest(c);
}

Status ControlServer::readFrames(ConnId c) {
  std::string frame;
  for (;;) {
    auto it = conns_.find(c);
    if (it == conns_.end()) return okStatus();
    // Do not read more requests while the peer is not reading its replies.
    if (it->second.out_bytes > kMaxQueuedBytes) return okStatus();
    auto r = protocol::recvFrame(it->second.fd.get(), &frame);
    if (!r) return r.error();
    if (r.value() == protocol::RecvStatus::kWouldBlock) return okStatus();
    if (r.value() == protocol::RecvStatus::kClosed) {
      drop(c, "");
      return okStatus();
    }
    std::string_view payload;
    auto h = protocol::decodeControlHeader(frame, &payload);
    if (!h) return h.error();
    if (!protocol::isControlPermitted(static_cast<uint16_t>(h->type),
                                      protocol::ControlDirection::kAdminToSupervisor)) {
      return Error{"not a request: " +
                   std::string(protocol::controlMsgTypeName(static_cast<uint16_t>(h->type)))};
    }
    if (Status st = handler_(c, h.value(), payload); !st) return st;
  }
}

void ControlServer::send(ConnId c, std::string frame) {
  auto it = conns_.find(c);
  if (it == conns_.end()) return;
  Conn& conn = it->second;
  conn.out_bytes += frame.size();
  conn.out.push_back(std::move(frame));
  if (Status st = flush(conn); !st) return drop(c, st.error().message);
  updateInterest(c);
}

Status ControlServer::flush(Conn& conn) {
  while (!conn.out.empty()) {
    ssize_t n = ::send(conn.fd.get(), conn.out.front().data(), conn.out.front().size(),
                       MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return okStatus();
    if (n < 0) return sysError("send on the control socket");
    conn.out_bytes -= conn.out.front().size();
    conn.out.pop_front();
  }
  return okStatus();
}

void ControlServer::updateInterest(ConnId c) {
  auto it = conns_.find(c);
  if (it == conns_.end()) return;
  Conn& conn = it->second;
  uint32_t want = 0;
  if (conn.out_bytes <= kMaxQueuedBytes) want |= EPOLLIN;
  if (!conn.out.empty()) want |= EPOLLOUT;
  if (want == conn.interest) return;
  if (Status st = loop_.modify(conn.watch, want); !st) return drop(c, st.error().message);
  conn.interest = want;
}

void ControlServer::drop(ConnId c, const std::string& why) {
  auto it = conns_.find(c);
  if (it == conns_.end()) return;
  if (!why.empty()) {
    log::warning("control socket: closing the connection of pid " + std::to_string(it->second.pid) +
                 ": " + why);
  }
  loop_.unwatch(it->second.watch);
  loop_.cancelTimer(it->second.deadline);
  conns_.erase(it);
}

}  // namespace jw::supervisor
