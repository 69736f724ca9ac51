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

Result<RecvStatus> recvFrameInto(int fd, std::span<char> storage, size_t* size) {
  *size = 0;
  if (storage.size() <= kMaxFrame) return Error{"receive storage below kMaxFrame + 1 bytes"};
  for (;;) {
    ssize_t n = recv(fd, storage.data(), storage.size(), MSG_TRUNC);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return RecvStatus::kWouldBlock;
    if (n < 0) return sysError("recv on channel fd " + std::to_string(fd));
    if (n == 0) return RecvStatus::kClosed;
    if (static_cast<size_t>(n) > kMaxFrame) {
      // recv filled the whole buffer with the refused message: it may hold a credential too.
      explicit_bzero(storage.data(), storage.size());
      return Error{"frame of " + std::to_string(n) + " bytes over kMaxFrame"};
    }
    *size = static_cast<size_t>(n);
    return RecvStatus::kFrame;
  }
}

Result<RecvStatus> recvFrame(int fd, std::string* out) {
  out->resize(kMaxFrame + 1);
  size_t size = 0;
  auto r = recvFrameInto(fd, std::span<char>(out->data(), out->size()), &size);
  out->resize(size);
  return r;
}

Result<RecvStatus> ReceiveBuffer::receive(int fd) {
  wipe();
  if (bytes_.empty()) bytes_.resize(kMaxFrame + 1);
  return recvFrameInto(fd, bytes_, &size_);
}

void ReceiveBuffer::wipe() {
  // Only the first size_ bytes ever hold a frame (a refused one is wiped by recvFrameInto).
  if (size_ > 0) explicit_bzero(bytes_.data(), size_);  // data() is null before the first
  size_ = 0;
}

}  // namespace jw::protocol
