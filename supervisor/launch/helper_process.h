// fork + exec of one of jobworkerd's own helper programs (today the password verifier; the
// frontend's spawn is the same sequence and moves here in the "[authority]" wiring): a fresh
// address space with only the descriptors it is given, at 3, 4, ... Runs in jobworkerd, and the
// child part between fork and execve in the new process (async-signal-safe calls only).
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include "common/fd.h"
#include "common/result.h"

namespace jw::supervisor {

struct HelperSpec {
  std::string path;               // absolute path of the program (argv[0])
  std::vector<std::string> args;  // everything after argv[0]
  std::vector<std::string> env;   // the complete environment ("KEY=VALUE")
  std::vector<int> fds;           // borrowed; the child gets fds[i] as descriptor 3 + i
};

// The running helper; pidfd is close-on-exec (keep it until the child is reaped through it).
struct HelperChild {
  pid_t pid = -1;
  UniqueFd pidfd;
};

// Forks; the child resets every signal disposition and the signal mask, asks for SIGKILL when
// jobworkerd dies (PR_SET_PDEATHSIG), places `fds`, marks every other descriptor close-on-exec
// and execs. Returns once the exec has happened. A failed exec (the child reports its errno over
// a close-on-exec pipe) is an error naming the program, and the child is already reaped.
Result<HelperChild> spawnHelper(const HelperSpec& spec);

// The environment a helper gets: only the sanitizer runtime's options, when set. A helper needs
// nothing else from ours (no NOTIFY_SOCKET, LISTEN_*, JOURNAL_STREAM, locale or PATH).
std::vector<std::string> sanitizerEnvironment();

}  // namespace jw::supervisor
