// Blocking read and write loops with errno context (EINTR, short transfers, size caps): the one
// copy each process calls. Runs in every process; none of it is async-signal-safe.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include "common/result.h"

namespace jw {

// Writes every byte of `data` to fd, retrying EINTR and short writes. `what` names the file or
// pipe in the error ("write <what>: <strerror>").
Status writeAll(int fd, std::string_view data, const std::string& what);

// Reads fd to its end. More than max_bytes is an error, found before the buffer grows past it.
Result<std::string> readAll(int fd, const std::string& what, size_t max_bytes);

// open(path, O_RDONLY | O_CLOEXEC | extra_open_flags) and readAll. A failed open keeps its errno
// in sys_errno (ENOENT: the file does not exist).
Result<std::string> readFile(const std::string& path, size_t max_bytes, int extra_open_flags = 0);

// Reads up to len bytes into buf, retrying EINTR and short reads. Returns how many bytes came:
// len, or fewer when the writer closed its end (EOF) or, on a non-blocking fd, when nothing more
// is buffered (EAGAIN). For fixed-size reports over a pipe.
Result<size_t> readExact(int fd, void* buf, size_t len, const std::string& what);

}  // namespace jw
