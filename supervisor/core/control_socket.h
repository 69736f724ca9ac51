// The root-only control socket of jobworker-admin: a Unix SOCK_SEQPACKET listener in the state
// directory, peers checked with SO_PEERCRED, bounded connections with a deadline, frames checked
// against the control permitted-request table. Runs in jobworkerd's event loop, never blocking.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <utility>

#include "common/fd.h"
#include "common/protocol/control_codec.h"
#include "common/result.h"
#include "supervisor/core/event_loop.h"

namespace jw::supervisor {

// Creates the listening socket at `path`, mode 0600, owned by us. The parent directory must be
// ours and writable by nobody else (so nobody can swap the path under us). An existing socket
// nobody listens on is replaced; a live one (another jobworkerd) or anything that is not a socket
// (a symlink, a file) is an error, never followed or removed.
Result<UniqueFd> bindControlSocket(const std::string& path);

class ControlServer {
 public:
  static constexpr size_t kMaxConnections = 8;
  static constexpr uint64_t kConnectionDeadlineMs = 10'000;   // from accept to close, whatever
  static constexpr size_t kMaxQueuedBytes = size_t{4} << 20;  // replies waiting for the peer
  using ConnId = uint64_t;
  // A frame that passed the header and permission checks. An error return (e.g. a payload that
  // does not decode) closes that connection and only that one.
  using RequestHandler =
      std::function<Status(ConnId, const protocol::ControlFrameHeader&, std::string_view)>;

  ControlServer(EventLoop& loop, RequestHandler handler)
      : loop_(loop), handler_(std::move(handler)) {}
  ~ControlServer();
  ControlServer(const ControlServer&) = delete;
  ControlServer& operator=(const ControlServer&) = delete;

  // Binds `path` (bindControlSocket) and accepts from the event loop. Only peers whose uid is
  // ours (root, or the dev-mode user) are served.
  Status listen(const std::string& path);
  // Queues a frame for connection c; dropped when c is gone.
  void send(ConnId c, std::string frame);
  // Closes every connection and removes the socket path (if it is still ours).
  void shutdown();
  size_t connections() const { return conns_.size(); }

 private:
  struct Conn {
    UniqueFd fd;
    EventLoop::WatchId watch = 0;
    EventLoop::TimerId deadline = 0;
    std::deque<std::string> out;
    size_t out_bytes = 0;
    uint32_t interest = 0;
    pid_t pid = 0;
  };

  void onAccept();
  bool peerAllowed(int fd, pid_t* pid);
  void onConn(ConnId c, uint32_t events);
  Status readFrames(ConnId c);
  Status flush(Conn& conn);
  void updateInterest(ConnId c);
  void drop(ConnId c, const std::string& why);

  EventLoop& loop_;
  RequestHandler handler_;
  std::string path_;
  dev_t dev_ = 0;
  ino_t ino_ = 0;
  UniqueFd listen_fd_;
  EventLoop::WatchId listen_watch_ = 0;
  std::map<ConnId, Conn> conns_;
  ConnId next_id_ = 1;
};

}  // namespace jw::supervisor
