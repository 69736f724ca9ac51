// Whole-frame send/receive over the SEQPACKET channel; runs in both processes.
#include "common/protocol/channel.h"

#include <string.h>
#include <sys/socket.h>

#include <cerrno>

#include "common/protocol/messages.h"

namespace jw::protocol {

Status makeChannelPair(int fds[2]) {
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, fds) != 0) {
    return sysError("socketpair(AF_UNIX, SOCK_SEQPACKET)");
  }
  return okStatus();
}

Status sendFrame(int fd, std::string_view frame) {
  if (frame.size() > kMaxFrame) {
    return Error{"frame of " + std::to_string(frame.size()) + " bytes over kMaxFrame"};
  }
  for (;;) {
    ssize_t n = send(fd, frame.data(), frame.size(), MSG_NOSIGNAL);
    if (n == static_cast<ssize_t>(frame.size())) return okStatus();
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return sysError("send on channel fd " + std::to_string(fd));
    return Error{"short send on a SEQPACKET channel"};
  }
}

Result<RecvStatus> recvFrame(int fd, std::string* out) {
  out->resize(kMaxFrame + 1);
  for (;;) {
    ssize_t n = recv(fd, out->data(), out->size(), MSG_TRUNC);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      out->clear();
      return RecvStatus::kWouldBlock;
    }
    if (n < 0) return sysError("recv on channel fd " + std::to_string(fd));
    if (n == 0) {
      out->clear();
      return RecvStatus::kClosed;
    }
    if (static_cast<size_t>(n) > kMaxFrame) {
      // recv filled the whole buffer with the refused message: it may hold a credential too.
      explicit_bzero(out->data(), out->size());
      out->clear();
      return Error{"frame of " + std::to_string(n) + " bytes over kMaxFrame"};
    }
    out->resize(static_cast<size_t>(n));
    return RecvStatus::kFrame;
  }
}

Result<RecvStatus> ReceiveBuffer::receive(int fd) {
  wipe();
  return recvFrame(fd, &bytes_);
}

void ReceiveBuffer::wipe() {
  // recvFrame leaves nothing outside size(): zeroing size() bytes zeroes every received byte.
  explicit_bzero(bytes_.data(), bytes_.size());
  bytes_.clear();
}

}  // namespace jw::protocol
