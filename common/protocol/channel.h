// Sending and receiving whole frames over the frontend<->supervisor SOCK_SEQPACKET socketpair.
#pragma once

#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"

namespace jw::protocol {

// socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC); fds[0] for the supervisor, fds[1] for the
// frontend.
Status makeChannelPair(int fds[2]);

// Sends one frame (refuses frames over kMaxFrame). Retries EINTR; MSG_NOSIGNAL.
// On a non-blocking fd, EAGAIN is returned as an error with sys_errno == EAGAIN.
Status sendFrame(int fd, std::string_view frame);

enum class RecvStatus { kFrame, kWouldBlock, kClosed };

// Receives one frame into *out. A message larger than kMaxFrame is an error (MSG_TRUNC),
// never silently cut. No received byte is left in *out's storage outside out->size() (a refused
// message is wiped before the error), so a caller that wipes what it consumed wipes everything.
Result<RecvStatus> recvFrame(int fd, std::string* out);

// The same into storage the caller keeps and reuses (at least kMaxFrame + 1 bytes): nothing is
// allocated or zero-filled per frame. *size gets the frame's size; a refused message is wiped
// before the error, as above.
Result<RecvStatus> recvFrameInto(int fd, std::span<char> storage, size_t* size);

// The receiving end of a process that handles credentials: every request frame carries a session
// token and a Login frame a password, so no frame outlives its use. Each receive() wipes the
// previous frame first, wipe() wipes the current one, and the destructor wipes what is left.
// The storage is kept (and reused) from one frame to the next.
class ReceiveBuffer {
 public:
  ReceiveBuffer() = default;
  ~ReceiveBuffer() { wipe(); }
  ReceiveBuffer(const ReceiveBuffer&) = delete;
  ReceiveBuffer& operator=(const ReceiveBuffer&) = delete;

  // recvFrame into the buffer, after wiping the previous frame.
  Result<RecvStatus> receive(int fd);
  // The frame last received; valid until the next receive() or wipe().
  std::string_view frame() const { return {bytes_.data(), size_}; }
  // Zeroes the current frame (explicit_bzero: not optimised away) and empties the buffer.
  void wipe();

 private:
  std::vector<char> bytes_;  // kMaxFrame + 1 once allocated; only size_ bytes hold a frame
  size_t size_ = 0;
};

}  // namespace jw::protocol
