// jobworker-frontend's entry point: its command line, then the start-up order read top to
// bottom (config, TLS material, tables from the supervisor, privilege drop, serve, Ready).
// Runs as root (or the invoking user in non-root dev mode) until the drop.
#include <Poco/Net/SSLManager.h>
#include <signal.h>
#include <sodium.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <exception>
#include <optional>
#include <string>
#include <thread>

#include "common/config.h"
#include "common/log.h"
#include "frontend/api/routes.h"
#include "frontend/auth.h"
#include "frontend/http/tls_server.h"
#include "frontend/privilege_drop.h"
#include "frontend/supervisor_channel.h"

namespace jw::frontend {
namespace {

struct Args {
  int channel_fd = -1;
  int listen_fd = -1;
  std::string tls_cert;
  std::string tls_key;
  std::string config_file;
  std::string run_as;
  bool no_setuid = false;
  bool dev = false;
};

constexpr const char* kUsage =
    "usage: jobworker-frontend --channel-fd N --listen-fd N --tls-cert PEM --tls-key PEM\n"
    "                          [--config FILE] [--run-as ACCOUNT | --no-setuid] [--dev]\n"
    "Started by jobworkerd, which passes the channel and the listening socket.\n";

[[noreturn]] void fatal(const std::string& message) {
  log::err(message);
  _exit(1);
}

std::optional<int> parseFd(const std::string& s) {
  if (s.empty() || s.size() > 4 || s.find_first_not_of("0123456789") != std::string::npos) {
    return std::nullopt;
  }
  return std::stoi(s);
}

Result<Args> parseArgs(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; i++) {
    std::string k = argv[i];
    auto value = [&]() -> std::optional<std::string> {
      if (i + 1 >= argc) return std::nullopt;
      return std::string(argv[++i]);
    };
    if (k == "--no-setuid") {
      a.no_setuid = true;
    } else if (k == "--dev") {
      a.dev = true;
    } else if (k == "--channel-fd" || k == "--listen-fd") {
      auto v = value();
      auto fd = v ? parseFd(*v) : std::nullopt;
      if (!fd) return Error{k + " needs a file descriptor number"};
      (k == "--channel-fd" ? a.channel_fd : a.listen_fd) = *fd;
    } else if (k == "--tls-cert" || k == "--tls-key" || k == "--config" || k == "--run-as") {
      auto v = value();
      if (!v || v->empty()) return Error{k + " needs a value"};
      if (k == "--tls-cert") a.tls_cert = *v;
      if (k == "--tls-key") a.tls_key = *v;
      if (k == "--config") a.config_file = *v;
      if (k == "--run-as") a.run_as = *v;
    } else {
      return Error{"unknown argument '" + k + "'"};
    }
  }
  if (a.channel_fd < 0 || a.listen_fd < 0)
    return Error{"--channel-fd and --listen-fd are required"};
  if (a.tls_cert.empty() || a.tls_key.empty())
    return Error{"--tls-cert and --tls-key are required"};
  if (a.run_as.empty() == !a.no_setuid)
    return Error{"give exactly one of --run-as and --no-setuid"};
  return a;
}

// The descriptors are what the supervisor promised: catches a wrong spawn at once.
Status checkInheritedFds(const Args& a) {
  if (Status s = sandbox::requireSeqpacket(a.channel_fd, "channel"); !s) return s;
  int listening = 0;
  socklen_t len = sizeof listening;
  if (getsockopt(a.listen_fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) != 0) {
    return sysError("listen fd " + std::to_string(a.listen_fd));
  }
  if (listening == 0) return Error{"listen fd is not a listening socket"};
  return okStatus();
}

// Defaults, or the config file's settings; a bad file is fatal.
config::Settings loadSettings(const Args& a) {
  if (a.config_file.empty()) return config::Settings{};
  auto loaded = config::load(a.config_file);
  if (!loaded) fatal("config: " + loaded.error().message);
  return loaded.value();
}

// Waiting connections cost a descriptor each: raise the soft limit to the hard one when the
// configured connections need it (no privilege needed; done before seccomp, which has no
// setrlimit). If even the hard limit is short, serve fewer connections rather than fail accept.
void fitDescriptorLimit(config::Settings& cfg) {
  uint64_t needed = ServerLimits(cfg).descriptorsNeeded();
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0) fatal(sysError("getrlimit(RLIMIT_NOFILE)").message);
  if (rl.rlim_cur < needed && rl.rlim_cur < rl.rlim_max) {
    rlimit raised{std::min<rlim_t>(rl.rlim_max, needed), rl.rlim_max};
    if (setrlimit(RLIMIT_NOFILE, &raised) != 0) {
      fatal(sysError("setrlimit(RLIMIT_NOFILE, " + std::to_string(raised.rlim_cur) + ")").message);
    }
    rl = raised;
  }
  if (rl.rlim_cur >= needed) return;
  // Under a small limit the reserve for over-cap answers and our own files shrinks with it:
  // half the descriptors still serve connections (an accept past the rest fails and is retried).
  uint64_t spare = needed - cfg.max_connections;
  uint64_t after_reserve = rl.rlim_cur > spare ? rl.rlim_cur - spare : 0;
  auto fitting = static_cast<uint32_t>(std::max<uint64_t>({after_reserve, rl.rlim_cur / 2, 1}));
  log::warning("max_connections " + std::to_string(cfg.max_connections) +
               " does not fit the descriptor limit " + std::to_string(rl.rlim_cur) +
               "; serving at most " + std::to_string(fitting));
  cfg.max_connections = fitting;
}

int run(int argc, char** argv) {
  log::setIdentity("jobworker-frontend");
  auto args = parseArgs(argc, argv);
  if (!args) {
    log::err(args.error().message);
    ssize_t n = ::write(STDERR_FILENO, kUsage, std::char_traits<char>::length(kUsage));
    (void)n;
    return 2;
  }
  const Args& a = args.value();
  // A client that disconnects mid-write must cost an EPIPE, not the process.
  signal(SIGPIPE, SIG_IGN);
  if (Status s = checkInheritedFds(a); !s) fatal(s.error().message);
  if (sodium_init() < 0) fatal("sodium_init failed");
  Poco::Net::initializeSSL();  // reads OpenSSL's configuration: must happen before the drop

  config::Settings cfg = loadSettings(a);
  fitDescriptorLimit(cfg);
  auto tls = makeTlsContext(a.tls_cert, a.tls_key);
  if (!tls) fatal(tls.error().message);
  auto target = sandbox::dropTargetFor(a.run_as, a.no_setuid);
  if (!target) fatal("account: " + target.error().message);

  SupervisorChannel channel(a.channel_fd);

  if (Status s = dropPrivileges(target.value()); !s) fatal(s.error().message);

  channel.start([](const std::string& why) {
    log::notice("leaving: " + why);
    _exit(0);
  });
  Api api(channel, ApiOptions{cfg.access_log, cfg.access_log_rate, cfg.body_timeout_ms});
  TlsServer server(a.listen_fd, tls.value(), ServerLimits(cfg), api);
  api.reportLoadOf(&server);
  if (Status s = server.start(); !s) fatal("HTTPS server: " + s.error().message);
  if (Status s = channel.sendReady(); !s) fatal("sending Ready: " + s.error().message);
  log::notice(std::string("serving HTTPS with ") + std::to_string(cfg.http_threads) +
              " worker threads" + (a.dev ? " (dev mode)" : "") +
              (a.no_setuid ? "; no uid change (non-root dev mode)" : "; running as " + a.run_as));
  for (;;) std::this_thread::sleep_for(std::chrono::hours(24));
}

}  // namespace
}  // namespace jw::frontend

int main(int argc, char** argv) {
  // An exception that escaped a Poco call at start-up: say what it was, exit, be respawned.
  try {
    return jw::frontend::run(argc, argv);
  } catch (const std::exception& e) {
    jw::log::err(std::string("uncaught exception: ") + e.what());
    return 1;
  }
}
