// One SOCK_SEQPACKET message with descriptors attached (SCM_RIGHTS): the link between jobworkerd
// and jobworker-spawner uses nothing else. Compiled into both.
#pragma once

#include <sys/types.h>

#include <cstddef>

namespace jw::supervisor {

// Sends `len` bytes with `nfds` descriptors (0..8); retries EINTR. Returns send()'s result.
ssize_t sendWithFds(int sock, const void* data, size_t len, const int* fds, int nfds);

// Receives one message into `data` (at most `len` bytes) and up to `max_fds` (<= 8) descriptors,
// close-on-exec; retries EINTR. *nfds: how many arrived (each owned by the caller, also on a
// short or truncated message); *truncated: the message or its descriptors did not fit.
ssize_t recvWithFds(int sock, void* data, size_t len, int* fds, int max_fds, int* nfds,
                    bool* truncated, int flags);

}  // namespace jw::supervisor
