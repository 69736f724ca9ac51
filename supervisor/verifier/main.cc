// jobworker-verifier's entry point: the start-up order read top to bottom (arguments, the link
// on fd 3, libsodium, the account, not dumpable, the privilege drop, Ready, serve). Started by
// jobworkerd with fork + exec; runs as root (or the invoking user in non-root dev mode) until
// the drop, then as the verifier account with no capabilities, NNP and its seccomp allowlist.
#include <signal.h>
#include <sodium.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <optional>
#include <string>

#include "common/log.h"
#include "common/protocol/channel.h"
#include "common/protocol/verifier_codec.h"
#include "common/sandbox/privilege_drop.h"
#include "supervisor/verifier/check.h"
#include "supervisor/verifier/verifier_seccomp.h"

namespace jw::verifier {
namespace {

// The link to jobworkerd, where its spawn puts it (supervisor/accounts/password_verifier.cc).
constexpr int kLinkFd = 3;

constexpr const char* kUsage =
    "usage: jobworker-verifier --run-as ACCOUNT | --no-setuid\n"
    "Started by jobworkerd, which passes the link on fd 3. Answers password checks.\n";

struct Args {
  std::string run_as;
  bool no_setuid = false;
};

[[noreturn]] void fatal(const std::string& message) {
  log::err(message);
  _exit(1);
}

Result<Args> parseArgs(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; i++) {
    std::string k = argv[i];
    if (k == "--no-setuid") {
      a.no_setuid = true;
    } else if (k == "--run-as" && i + 1 < argc && argv[i + 1][0] != '\0') {
      a.run_as = argv[++i];
    } else {
      return Error{"unknown or incomplete argument '" + k + "'"};
    }
  }
  if (a.run_as.empty() == !a.no_setuid)
    return Error{"give exactly one of --run-as and --no-setuid"};
  return a;
}

// A process that holds password hashes and passwords in flight: no core dump, and no ptrace or
// /proc/PID/mem by another process of its account (a job may run as the same account).
Status notDumpable() {
  if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0) return sysError("prctl(PR_SET_DUMPABLE, 0)");
  return okStatus();
}

int run(int argc, char** argv) {
  log::setIdentity("jobworker-verifier");
  auto args = parseArgs(argc, argv);
  if (!args) {
    log::err(args.error().message);
    ssize_t n = ::write(STDERR_FILENO, kUsage, std::char_traits<char>::length(kUsage));
    (void)n;
    return 2;
  }
  // A supervisor gone mid-answer must cost an EPIPE and a clean exit, not a signal.
  signal(SIGPIPE, SIG_IGN);
  if (Status s = sandbox::requireSeqpacket(kLinkFd, "link"); !s) fatal(s.error().message);
  if (sodium_init() < 0) fatal("sodium_init failed");
  auto target = sandbox::dropTargetFor(args->run_as, args->no_setuid);
  if (!target) fatal("account: " + target.error().message);
  if (Status s = notDumpable(); !s) fatal(s.error().message);
  if (Status s = sandbox::dropPrivileges(target.value(), installSeccompFilter); !s) {
    fatal(s.error().message);
  }
  std::string ready = protocol::verifier::encodeVerifierReady(0, {});
  if (Status s = protocol::sendFrame(kLinkFd, ready); !s)
    fatal("sending Ready: " + s.error().message);
  Status served = serve(kLinkFd);
  if (!served) fatal(served.error().message);
  return 0;  // jobworkerd closed the link: it is shutting down or replacing us
}

}  // namespace
}  // namespace jw::verifier

int main(int argc, char** argv) { return jw::verifier::run(argc, argv); }
