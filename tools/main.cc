// jobworker-admin's entry point: `user ...` edits the users file, `session ...` lists and revokes
// sessions over jobworkerd's control socket, `check-config` validates a configuration file,
// `dev-bootstrap` creates dev mode's CA, certificate and first user. Runs as root (or the dev-mode
// user), never in the daemon.
#include <cstdio>
#include <string>

#include "common/config.h"
#include "common/log.h"
#include "jw_build_config.h"
#include "tools/admin_cli.h"
#include "tools/dev_bootstrap.h"
#include "tools/session_cli.h"

namespace {

constexpr const char* kUsage =
    "usage: jobworker-admin user add|del|passwd|list --users-file FILE [NAME] [...]\n"
    "       jobworker-admin session list [--control PATH] [-o table|json]\n"
    "       jobworker-admin session revoke USER|--id ID [--control PATH]\n"
    "       jobworker-admin token create USER --expires DURATION | token revoke ID\n"
    "       jobworker-admin upgrade [--binary PATH] [--control PATH]\n"
    "       jobworker-admin check-config FILE\n"
    "       jobworker-admin dev-bootstrap --state-dir DIR\n"
    "\n"
    "  user           edit the users file (`jobworker-admin user --help` for the options)\n"
    "  session        list live sessions, or end those of a user or one of them, over "
    "jobworkerd's\n"
    "                 root-only control socket (`jobworker-admin session --help`)\n"
    "  token          scrape tokens for /metrics: create one for a role-metrics user, or revoke\n"
    "                 it (`jobworker-admin token --help`)\n"
    "  upgrade        replace the running jobworkerd by PATH (default: its own installed\n"
    "                 binary) under the same PID, keeping every running job\n"
    "                 (`jobworker-admin upgrade --help`)\n"
    "  check-config   validate a jobworkerd configuration file and print every effective\n"
    "                 setting (defaults and host-derived maxima included); exit 1 if invalid\n"
    "  dev-bootstrap  create what `jobworkerd --dev` needs in DIR (a CA, a server certificate\n"
    "                 for localhost and a users file with `admin`); keeps what already exists\n"
    "  --help, --version\n";

// The file as jobworkerd would read it (config::load, then the host-derived maxima it applies
// at start), printed as `key = value` lines that parse back to the same settings.
int checkConfig(int argc, char** argv) {
  if (argc != 2) {
    std::fputs(kUsage, stderr);
    return 2;
  }
  auto loaded = jw::config::load(argv[1]);
  if (!loaded) {
    std::fprintf(stderr, "jobworker-admin: %s: %s\n", argv[1], loaded.error().message.c_str());
    return 1;
  }
  jw::config::applyHostMaxima(loaded.value());
  std::printf("# %s is valid; every effective setting:\n", argv[1]);
  for (const auto& [key, value] : jw::config::describe(loaded.value())) {
    std::printf("%s = %s\n", key.c_str(), value.c_str());
  }
  return 0;
}

int devBootstrap(int argc, char** argv) {
  if (argc != 3 || std::string(argv[1]) != "--state-dir") {
    std::fputs(kUsage, stderr);
    return 2;
  }
  auto files = jw::admin::ensureDevFiles(argv[2]);
  if (!files) {
    jw::log::err("dev mode files in " + std::string(argv[2]) + ": " + files.error().message);
    return 1;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  jw::log::setIdentity("jobworker-admin");
  std::string command = argc >= 2 ? argv[1] : "";
  if (command == "user") {
    // A user change is an audit event wherever the tool runs from (a shell has no journal
    // stream), so it goes to journald directly.
    jw::log::sendEventsToJournal();
    return jw::admin::runUserCommand(argc - 1, argv + 1);
  }
  if (command == "session") return jw::admin::runSessionCommand(argc - 1, argv + 1);
  if (command == "upgrade") return jw::admin::runUpgradeCommand(argc - 1, argv + 1);
  if (command == "token") return jw::admin::runTokenCommand(argc - 1, argv + 1);
  if (command == "check-config") return checkConfig(argc - 1, argv + 1);
  if (command == "dev-bootstrap") return devBootstrap(argc - 1, argv + 1);
  if (command == "--help" || command == "-h") {
    std::fputs(kUsage, stdout);
    return 0;
  }
  if (command == "--version") {
    std::printf("jobworker-admin %s\n", JW_VERSION);
    return 0;
  }
  std::fputs(kUsage, stderr);
  return 2;
}
