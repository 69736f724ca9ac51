// jobworkerd's entry point: command line, configuration, the root/dev-mode rules, and the
// startup sequence before the event loop takes over. Runs in jobworkerd.
#include <arpa/inet.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/config.h"
#include "common/log.h"
#include "jw_build_config.h"
#include "supervisor/accounts/accounts.h"
#include "supervisor/cgroup/cgroup.h"
#include "supervisor/core/dev_mode.h"
#include "supervisor/core/helper_binaries.h"
#include "supervisor/core/supervisor.h"
#include "supervisor/frontend_link/listen_socket.h"
#include "supervisor/jobs/start.h"
#include "supervisor/state/state_store.h"

namespace jw::supervisor {
namespace {

constexpr const char* kUsage =
    "usage: jobworkerd [--dev] [--state-dir DIR] [--listen HOST:PORT] [--config FILE]\n"
    "                  [--frontend PATH]\n"
    "       jobworkerd --check-state DIR\n"
    "       jobworkerd user add|del|passwd|list --users-file FILE NAME [...]\n"
    "\n"
    "Runs the jobworker supervisor in the foreground until SIGTERM or SIGINT; SIGHUP re-reads\n"
    "the users file.\n"
    "\n"
    "  --dev              development mode: generates a CA, a server certificate and an admin\n"
    "                     account in the state directory; allows running as a non-root user\n"
    "  --state-dir DIR    job output and dev-mode files (default /var/lib/jobworker)\n"
    "  --listen HOST:PORT address of the HTTPS API (default from the config, else\n"
    "                     127.0.0.1:8443)\n"
    "  --config FILE      configuration file (see README.md for every key)\n"
    "  --frontend PATH    the jobworker-frontend binary to run\n"
    "  --check-state DIR  dry run: read DIR's job and session records without changing\n"
    "                     anything, print what a start would load; exit 1 when this version\n"
    "                     cannot take the state over\n"
    "  --help, --version\n"
    "Users are added with jobworker-admin (`jobworker-admin user --help`).\n";

struct CommandLine {
  bool dev = false;
  std::optional<std::string> state_dir, listen, config, frontend, check_state;
  // An upgrade in place: the listening socket the previous image held, inherited at this fd.
  std::optional<std::string> listen_fd;
  std::vector<std::string> argv;
};

// 0: parsed; otherwise the exit status to return.
int parseCommandLine(int argc, char** argv, CommandLine* cl) {
  cl->argv.assign(argv, argv + argc);
  for (int i = 1; i < argc; i++) {
    std::string a = argv[i];
    std::optional<std::string> inline_value;
    if (a.rfind("--", 0) == 0 && a.find('=') != std::string::npos) {
      inline_value = a.substr(a.find('=') + 1);
      a = a.substr(0, a.find('='));
    }
    auto value = [&](std::optional<std::string>* out) -> bool {
      if (inline_value) {
        *out = *inline_value;
        return true;
      }
      if (i + 1 >= argc) {
        std::fprintf(stderr, "jobworkerd: %s needs a value\n%s", a.c_str(), kUsage);
        return false;
      }
      *out = argv[++i];
      return true;
    };
    if (a == "--help" || a == "-h") {
      std::fputs(kUsage, stdout);
      return -1;
    } else if (a == "--version") {
      std::printf("jobworkerd %s\n", JW_VERSION);
      return -1;
    } else if (a == "--dev" && !inline_value) {
      cl->dev = true;
    } else if (a == "--state-dir") {
      if (!value(&cl->state_dir)) return 2;
    } else if (a == "--listen") {
      if (!value(&cl->listen)) return 2;
    } else if (a == "--config") {
      if (!value(&cl->config)) return 2;
    } else if (a == "--frontend") {
      if (!value(&cl->frontend)) return 2;
    } else if (a == "--check-state") {
      if (!value(&cl->check_state)) return 2;
    } else if (a == "--listen-fd") {
      if (!value(&cl->listen_fd)) return 2;
    } else {
      std::fprintf(stderr, "jobworkerd: unknown argument '%s'\n%s", argv[i], kUsage);
      return 2;
    }
  }
  return 0;
}

// Jobs and pipes get fds from the lowest free number; if 0-2 were closed, a job pipe could
// become our own stderr.
void ensureStdFds() {
  for (int fd = 0; fd < 3; fd++) {
    if (fcntl(fd, F_GETFD) < 0 && errno == EBADF) {
      if (open("/dev/null", O_RDWR) < 0) _exit(1);
    }
  }
}

// The signalfd signals must be blocked before anything else exists; SIGPIPE is an error return.
bool setupSignals() {
  sigset_t set;
  sigemptyset(&set);
  for (int s : {SIGTERM, SIGINT, SIGHUP, SIGCHLD}) sigaddset(&set, s);
  if (sigprocmask(SIG_BLOCK, &set, nullptr) != 0) return false;
  struct sigaction ign {};
  ign.sa_handler = SIG_IGN;
  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;
  // SIGCHLD must not be ignored: an ignored SIGCHLD makes the kernel reap children itself.
  return sigaction(SIGPIPE, &ign, nullptr) == 0 && sigaction(SIGCHLD, &dfl, nullptr) == 0;
}

bool fileExists(const std::string& path) {
  struct stat st {};
  return stat(path.c_str(), &st) == 0;
}

std::string absolutePath(const std::string& p) {
  if (!p.empty() && p[0] == '/') return p;
  char cwd[PATH_MAX];
  if (getcwd(cwd, sizeof cwd) == nullptr) return p;
  return std::string(cwd) + "/" + p;
}

// The URL a dev-mode user types: the bound port, and 127.0.0.1 for wildcard addresses.
std::string loginUrl(const std::string& listen, int fd) {
  std::string host = listen.substr(0, listen.rfind(':'));
  if (host.empty() || host == "0.0.0.0" || host == "[::]" || host == "*") host = "127.0.0.1";
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  int port = 0;
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) == 0) {
    if (ss.ss_family == AF_INET) port = ntohs(reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
    if (ss.ss_family == AF_INET6) port = ntohs(reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port);
  }
  std::string p = port > 0 ? std::to_string(port) : listen.substr(listen.rfind(':') + 1);
  return "https://" + host + ":" + p;
}

// The configuration file, then the command line over it; the state dir made absolute.
Status loadSettings(const CommandLine& cl, SupervisorOptions& opt) {
  if (cl.config) {
    auto s = config::load(*cl.config);
    if (!s) return Error{"configuration: " + s.error().message};
    opt.settings = std::move(s.value());
    opt.config_file = absolutePath(*cl.config);
  }
  config::Settings& settings = opt.settings;
  config::applyHostMaxima(settings);  // unset global maxima: host RAM and cores
  if (cl.state_dir) settings.state_dir = *cl.state_dir;
  if (cl.listen) settings.listen = *cl.listen;
  settings.state_dir = absolutePath(settings.state_dir);
  while (settings.state_dir.size() > 1 && settings.state_dir.back() == '/') {
    settings.state_dir.pop_back();
  }
  opt.dev = cl.dev;
  opt.state_dir = settings.state_dir;
  opt.frontend_path = resolveFrontendPath(cl.frontend ? absolutePath(*cl.frontend) : "");
  opt.verifier_path = resolveVerifierPath();
  opt.spawner_path = resolveSpawnerPath();
  // Opened once, O_PATH: every job's child execveat()s exactly this file, so replacing the
  // installed binary (a package upgrade) never mixes an old supervisor with a new shim.
  const std::string init_path = resolveInitPath();
  opt.init_fd.reset(open(init_path.c_str(), O_PATH | O_CLOEXEC));
  if (!opt.init_fd) return sysError("open the job shim " + init_path);
  return okStatus();
}

// Who we are, and as root the account the frontend drops to.
Status resolveAccounts(SupervisorOptions& opt) {
  auto self = currentAccount();
  if (!self) return Error{"who am I: " + self.error().message};
  opt.self = self.value();
  if (!opt.as_root) {
    warnUnprotectedDevMode(opt.self);
    return okStatus();
  }
  const std::string& name = opt.settings.frontend_user;
  auto fa = lookupAccount(name);
  if (!fa) {
    return Error{"the frontend's account " + log::quote(name) + " does not exist (" +
                 fa.error().message +
                 "). Create it with `useradd --system --no-create-home --shell "
                 "/usr/sbin/nologin " +
                 name + "` (or systemd-sysusers with the shipped sysusers.d file)."};
  }
  opt.frontend_account = fa.value();
  return okStatus();
}

// Production: the configured TLS files and users file must exist (we never invent them).
Status checkProductionFiles(SupervisorOptions& opt) {
  const config::Settings& settings = opt.settings;
  opt.tls_cert = settings.tls_cert;
  opt.tls_key = settings.tls_key;
  opt.users_file = settings.users_file;
  for (const auto& [path, what] : {std::pair{opt.tls_cert, "TLS certificate (tls_cert)"},
                                   std::pair{opt.tls_key, "TLS private key (tls_key)"}}) {
    if (!fileExists(path)) {
      return Error{std::string(what) + " " + path +
                   " does not exist. Put your certificate chain and key there (for a "
                   "self-signed pair: `openssl req -x509 -newkey ec -pkeyopt "
                   "ec_paramgen_curve:P-256 -nodes -days 365 -subj /CN=$(hostname) -keyout " +
                   opt.tls_key + " -out " + opt.tls_cert + "`), or try `jobworkerd --dev`."};
    }
  }
  if (!fileExists(opt.users_file)) {
    return Error{"users file " + opt.users_file +
                 " does not exist. Create it with `jobworker-admin user add --users-file " +
                 opt.users_file + " NAME --role admin`."};
  }
  if (mkdir(settings.state_dir.c_str(), 0700) != 0 && errno != EEXIST) {
    return sysError("create the state directory " + settings.state_dir);
  }
  return okStatus();
}

// Dev mode: jobworker-admin creates (or reuses) the CA, certificate and admin in the state dir.
Result<DevFiles> prepareDevFiles(SupervisorOptions& opt) {
  auto f = runDevBootstrap(resolveAdminPath(), opt.settings.state_dir);
  if (!f) return Error{"dev mode: " + f.error().message};
  opt.tls_cert = f->server_cert;
  opt.tls_key = f->server_key;
  opt.users_file = f->users_file;
  return f;
}

Status openListener(const CommandLine& cl, SupervisorOptions& opt) {
  if (cl.listen_fd) {
    // The previous image's socket: connections queued during the exec are served, none refused.
    char* end = nullptr;
    long fd = std::strtol(cl.listen_fd->c_str(), &end, 10);
    int type = 0;
    socklen_t len = sizeof type;
    if (end == cl.listen_fd->c_str() || *end != '\0' || fd < 3 || fd > INT_MAX ||
        getsockopt(static_cast<int>(fd), SOL_SOCKET, SO_TYPE, &type, &len) != 0 ||
        type != SOCK_STREAM) {
      return Error{"--listen-fd " + *cl.listen_fd + " is not an inherited listening socket"};
    }
    opt.listen_fd.reset(static_cast<int>(fd));
    if (fcntl(opt.listen_fd.get(), F_SETFD, FD_CLOEXEC) != 0) return sysError("--listen-fd");
    return okStatus();
  }
  auto listen_fd = openListenSocket(opt.settings.listen);
  if (!listen_fd) {
    return Error{"listen on " + opt.settings.listen + ": " + listen_fd.error().message};
  }
  opt.listen_fd = std::move(listen_fd.value());
  return okStatus();
}

// Fail closed: as root with cgroups on, every job is owed its limits and a whole-tree kill.
Status chooseCgroupBackend(SupervisorOptions& opt) {
  if (!opt.as_root) return okStatus();
  if (!opt.settings.use_cgroups) {
    log::warning("cgroups disabled by the configuration (isolation.cgroups = false)");
    return okStatus();
  }
  // The instance's cgroup is named after the state dir, so a later jobworkerd on it finds the
  // same one; realpath: two spellings of one directory are one instance.
  std::unique_ptr<char, decltype(&::free)> canonical(
      ::realpath(opt.settings.state_dir.c_str(), nullptr), &::free);
  if (!canonical) return sysError("realpath of the state dir " + opt.settings.state_dir);
  CgroupInstance instance{cgroupInstanceName(canonical.get()),
                          aggregateLimits(opt.settings.global.total)};
  auto backend = CgroupBackend::detect(instance);
  if (!backend) {
    return Error{"cgroups unavailable: " + backend.error().message +
                 "; refusing to run jobs without limits (set isolation.cgroups = false in the "
                 "configuration to run without cgroups)"};
  }
  opt.cgroups = std::move(backend.value());
  log::info("cgroups: " + opt.cgroups->name() + ", instance " + instance.name);
  for (const auto& d : opt.cgroups->details()) log::info("cgroups: " + d);
  // The leftovers of a previous run are removed once its records say which jobs still run
  // (Supervisor::loadState): those are taken over, with their cgroups.
  return okStatus();
}

void printDevLogin(const DevFiles& files, const SupervisorOptions& opt) {
  std::string url = loginUrl(opt.settings.listen, opt.listen_fd.get());
  log::notice("dev mode: log in as admin with:");
  log::notice("  jobworker login --server " + url + " --ca-file " + files.ca_cert +
              " --user admin --password-stdin < " + files.admin_password);
  log::notice("  (the admin password is in " + files.admin_password + ")");
}

// Thousands of finished jobs hold no fd, but running jobs and reads do: use all the hard limit
// allows. Jobs get the original soft limit back (SpawnRequest::nofile_soft).
void raiseOwnFdLimit(SupervisorOptions& opt) {
  auto lim = raiseFdLimit();
  if (!lim) {
    log::warning("file descriptors: " + lim.error().message);
    rlimit cur{};
    if (getrlimit(RLIMIT_NOFILE, &cur) == 0) opt.fd_limits = {cur.rlim_cur, cur.rlim_cur};
    return;
  }
  opt.fd_limits = lim.value();
  log::info("file descriptors: RLIMIT_NOFILE " + std::to_string(lim->soft) + " (jobs get " +
            std::to_string(lim->original_soft) + ")");
}

// The startup sequence: each step either fills in the options or says why we cannot start.
Status prepareOptions(const CommandLine& cl, SupervisorOptions& opt) {
  opt.as_root = geteuid() == 0;
  opt.argv = cl.argv;
  // Now, while it is the binary we run (a package upgrade may replace it later).
  std::unique_ptr<char, decltype(&::free)> self(::realpath("/proc/self/exe", nullptr), &::free);
  opt.self_path = self ? self.get() : "";
  if (!opt.as_root && !cl.dev) {
    return Error{
        "jobworkerd must run as root: it runs each job as its user's account, in its own "
        "cgroup. To try it out as an ordinary user, run `jobworkerd --dev`."};
  }
  if (Status st = loadSettings(cl, opt); !st) return st;
  raiseOwnFdLimit(opt);
  if (Status st = resolveAccounts(opt); !st) return st;
  std::optional<DevFiles> dev_files;
  if (cl.dev) {
    auto f = prepareDevFiles(opt);
    if (!f) return f.error();
    dev_files = std::move(f.value());
  } else if (Status st = checkProductionFiles(opt); !st) {
    return st;
  }
  if (Status st = openListener(cl, opt); !st) return st;
  if (Status st = chooseCgroupBackend(opt); !st) return st;
  if (dev_files) printDevLogin(*dev_files, opt);
  return okStatus();
}

int startDaemon(const CommandLine& cl) {
  SupervisorOptions opt;
  if (Status st = prepareOptions(cl, opt); !st) {
    log::err(st.error().message);
    return 1;
  }
  Supervisor sup(std::move(opt));
  if (Status st = sup.init(); !st) {
    log::err("startup: " + st.error().message);
    return 1;
  }
  return sup.run();
}

}  // namespace
}  // namespace jw::supervisor

int main(int argc, char** argv) {
  using namespace jw::supervisor;
  jw::log::setIdentity("jobworkerd");
  CommandLine cl;
  int rc = parseCommandLine(argc, argv, &cl);
  if (rc != 0) return rc < 0 ? 0 : rc;
  if (cl.check_state) return checkState(*cl.check_state);
  ensureStdFds();
  if (!setupSignals()) {
    jw::log::err(jw::sysError("block signals").message);
    return 1;
  }
  return startDaemon(cl);
}
