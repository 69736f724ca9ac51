// Integration-test fixture: runs the real jobworkerd (dev mode, loopback, random port) and talks
// to it over real HTTPS. Runs in the test process.
#pragma once

#include <sys/types.h>

#include <initializer_list>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "tests/wait_until.h"  // waitUntil: how every test here waits

namespace jw::test {

// Path of a built binary: "jobworkerd", "jobworker-frontend", "jobworker-verifier",
// "jobworker-admin", "jobworker", "jobworker-init", "relay_frontend", "hostile_frontend".
std::string binary(const std::string& name);
// The live (not zombie) child of `parent` whose /proc comm starts with one of the prefixes, or -1.
pid_t childWithComm(pid_t parent, std::initializer_list<std::string_view> comm_prefixes);

// Copies of the programs a jobworkerd run by another user must execute, for tests that run it
// as `nobody`: the checkout may sit below a directory that user cannot traverse (a clone inside
// `mktemp -d`, mode 0700), so the build tree's binaries are out of its reach. The copies keep
// the build tree's layout (supervisor/jobworkerd, frontend/jobworker-frontend,
// tools/jobworker-admin, supervisor/init/jobworker-init, tests/integration/relay_frontend)
// because jobworkerd finds the frontend, the job shim and jobworker-admin relative to itself. One
// fresh 0755 directory under /tmp, removed by the destructor.
class StagedBinaries {
 public:
  StagedBinaries();
  ~StagedBinaries();
  StagedBinaries(const StagedBinaries&) = delete;
  StagedBinaries& operator=(const StagedBinaries&) = delete;
  // The staged copy of binary(name).
  std::string path(const std::string& name) const;

 private:
  std::string dir_;
};

struct CmdResult {
  int exit_code = -1;  // exit status, or 128+N when killed by signal N
  std::string out;
  std::string err;
};
// Runs argv (no shell) with stdin_data on its stdin; env entries "K=V" are added to (and
// override) the test's environment. Waits at most timeout_s, then SIGKILLs it.
CmdResult run(const std::vector<std::string>& argv, const std::string& stdin_data = "",
              const std::vector<std::string>& env = {}, int timeout_s = 120);

// Starts argv in the background (no shell) with stdin /dev/null and stdout+stderr appended to
// log_path (stderr to err_path instead when that is given); env entries "K=V" are added to (and
// override) the test's environment. A test waits on what the program writes there. The program
// gets SIGTERM when the calling thread ends (PR_SET_PDEATHSIG), so a test process that dies
// leaks no daemon: call it from the thread that outlives the program (the test's main thread).
// The setting does not survive a change of uid (setpriv prefixes): such a daemon can still leak.
pid_t spawnLogged(const std::vector<std::string>& argv, const std::vector<std::string>& env,
                  const std::string& log_path, const std::string& err_path = "");

// Fails the running test when `log` holds a sanitizer's report or says that a helper (frontend,
// password verifier) was killed by its seccomp filter (Daemon::stop checks its own log).
void failOnSanitizerReport(const std::string& log);

class Daemon {
 public:
  struct Options {
    std::string config_text;              // written to a file and passed with --config when set
    std::vector<std::string> extra_args;  // appended to the jobworkerd command line
    std::vector<std::string> env;         // added to jobworkerd's environment
    // An existing empty directory to use as the state dir (e.g. a small tmpfs the test mounted);
    // the destructor empties it but leaves the directory to the caller. Empty: a fresh temp dir.
    std::string state_dir;
    // Runs jobworkerd through this command, which must exec it in place (same pid), e.g.
    // {"/usr/bin/prlimit", "--nofile=1024:1024", "--"}.
    std::vector<std::string> exec_prefix;
    // The port to listen on (a daemon started again on a crashed one's state dir and port, so
    // that clients reconnect to it); 0: a free one.
    int port = 0;
  };
  // Starts `jobworkerd --dev --state-dir <tmp> --listen 127.0.0.1:<free port>` and waits until
  // GET /v1/healthz answers 200 (fails the test after 30 s).
  static std::unique_ptr<Daemon> start(const Options& options);
  static std::unique_ptr<Daemon> start() { return start(Options{}); }
  ~Daemon();  // SIGTERM, wait (SIGKILL after 20 s), remove the state dir

  int port() const { return port_; }
  std::string url() const { return "https://127.0.0.1:" + std::to_string(port_); }
  const std::string& stateDir() const { return state_dir_; }
  std::string caFile() const { return state_dir_ + "/ca.pem"; }
  std::string usersFile() const { return state_dir_ + "/users"; }
  std::string adminPassword() const;
  pid_t pid() const { return pid_; }
  // The current frontend process (a child of jobworkerd), or -1. Waits up to 5 s for one.
  pid_t frontendPid() const;
  // Threads of the current frontend (/proc/PID/status), -1 without one. The HTTPS server adds a
  // worker for each log stream it serves, so this tells when followers are being streamed to.
  int frontendThreads() const;
  // Everything jobworkerd wrote to stdout and stderr so far.
  std::string log() const;

  // `jobworker-admin user add`, then SIGHUP, then waits until the user can log in.
  void addUser(const std::string& name, const std::string& role, const std::string& password,
               const std::string& run_as = "nobody");
  // SIGHUP, then waits (fails the test after 10 s) until the log shows the reload handled: a new
  // user table reached the frontend, or the supervisor refused a broken users file.
  void reload();
  // Sends SIGTERM and waits for exit; returns the exit status (or 128+signal).
  int stop();
  // SIGKILL, as a crash would end it, and waits for it; returns 128+9.
  int crash();
  // Waits until healthz answers 200 (e.g. after killing the frontend); false after timeout_s.
  bool waitHealthy(int timeout_s = 10) const;

 private:
  Daemon() = default;
  pid_t pid_ = -1;
  int port_ = 0;
  std::string state_dir_;
  bool own_state_dir_ = true;
  std::string log_file_;
};

struct HttpResponse {
  int status = 0;
  std::string body;
  std::map<std::string, std::string> headers;  // names lower-cased
};
// One HTTPS request trusting the daemon's CA. token: "Bearer" credential when non-empty.
// headers: extra request headers (e.g. {"Authorization", "Basic ..."} overrides the token).
HttpResponse https(const Daemon& d, const std::string& method, const std::string& path,
                   const std::string& body = "", const std::string& token = "",
                   const std::map<std::string, std::string>& headers = {});
// POST /v1/login with JSON credentials; returns the token (fails the test if not 201).
std::string login(const Daemon& d, const std::string& user, const std::string& password);
// POST /v1/jobs with the given JSON body; returns the job id (fails the test if not 201).
std::string startJob(const Daemon& d, const std::string& token, const std::string& json_body);
// Polls GET /v1/jobs/{id} until state != running; returns the final status JSON text.
std::string waitJob(const Daemon& d, const std::string& token, const std::string& id,
                    int timeout_s = 60);
// A JSON string field or number of a flat JSON object text ("" when absent); for quick checks.
std::string jsonField(const std::string& json, const std::string& key);

// A JSON string literal (quotes and escapes) for building request bodies.
std::string jsonString(const std::string& s);

// /proc helpers: the namespace link of a process ("pid:[4026531836]"), the host pids of every
// process (zombies included) in a PID namespace, the "Name:\tvalue" lines of /proc/PID/status
// (empty when the process is gone), and one field of them.
std::string nsOf(pid_t pid, const char* ns);
std::vector<pid_t> processesInPidNs(const std::string& ns);
std::map<std::string, std::string> procStatus(pid_t pid);
std::string procStatusField(pid_t pid, const std::string& field);

// A free TCP port on 127.0.0.1 (bound then released).
int freePort();
// A fresh temp dir (removed by the caller with removeTree).
std::string makeTempDir(const std::string& prefix = "jwtest");
void removeTree(const std::string& path);
std::string readFile(const std::string& path);

}  // namespace jw::test
