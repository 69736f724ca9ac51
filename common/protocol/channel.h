// Sending and receiving whole frames over the frontend<->supervisor SOCK_SEQPACKET socketpair.
#pragma once

#include <string>
#include <string_view>

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
// never silently cut.
Result<RecvStatus> recvFrame(int fd, std::string* out);

}  // namespace jw::protocol
