// Integration tests of job isolation through the real daemon: namespaces, the job's shim, the job
// seccomp profile, the run-as account and the clean process state, as seen from inside jobs
// started over HTTPS, plus the supervisor's own network policy through the relay frontend.
// Runs in the integration test process (root).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "common/protocol/codec.h"
#include "common/protocol/messages.h"
#include "tests/integration/daemon.h"

namespace jw::test {
namespace {

using Clock = std::chrono::steady_clock;

// `jobworker` must exist for a root jobworkerd; install-deps creates it, a bare machine may not.
void ensureFrontendAccount() {
  if (getpwnam("jobworker") != nullptr) return;
  CmdResult r = run({"/usr/sbin/useradd", "--system", "--no-create-home", "--shell",
                     "/usr/sbin/nologin", "jobworker"});
  ASSERT_EQ(r.exit_code, 0) << "useradd jobworker: " << r.err;
}

// {"command":[...]} plus extra members (",\"network\":\"host\"").
std::string jobBody(const std::vector<std::string>& argv, const std::string& extra = "") {
  std::string body = "{\"command\":[";
  for (size_t i = 0; i < argv.size(); i++) {
    if (i > 0) body += ',';  // not `(i ? "," : "") + ...`: GCC 12 -O3's false -Wrestrict
    body += jsonString(argv[i]);
  }
  return body + "]" + extra + "}";
}

std::vector<std::string> sh(const std::string& script) { return {"sh", "-c", script}; }

std::string logsOf(const Daemon& d, const std::string& token, const std::string& id) {
  HttpResponse r = https(d, "GET", "/v1/jobs/" + id + "/logs", "", token);
  EXPECT_EQ(r.status, 200) << r.body;
  return r.body;
}

struct Ran {
  std::string id, status, output;
};

// Starts a job, waits for its end, returns its final status and output.
Ran runJob(const Daemon& d, const std::string& token, const std::vector<std::string>& argv,
           const std::string& extra = "") {
  Ran r;
  r.id = startJob(d, token, jobBody(argv, extra));
  if (r.id.empty()) return r;
  r.status = waitJob(d, token, r.id);
  r.output = logsOf(d, token, r.id);
  return r;
}

// The labels of a status's `isolation` array.
std::set<std::string> isolationOf(const std::string& status) {
  std::set<std::string> out;
  std::string arr = jsonField(status, "isolation");
  size_t p = 0;
  while ((p = arr.find('"', p)) != std::string::npos) {
    size_t e = arr.find('"', p + 1);
    if (e == std::string::npos) break;
    out.insert(arr.substr(p + 1, e - p - 1));
    p = e + 1;
  }
  return out;
}

std::vector<std::string> lines(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  std::string l;
  while (std::getline(in, l)) out.push_back(l);
  return out;
}

// Interface names listed in a /proc/net/dev text.
std::set<std::string> interfaces(const std::string& proc_net_dev) {
  std::set<std::string> out;
  for (const auto& l : lines(proc_net_dev)) {
    size_t colon = l.find(':');
    if (colon == std::string::npos || l.find('|') != std::string::npos) continue;
    std::string name = l.substr(0, colon);
    name.erase(0, name.find_first_not_of(' '));
    out.insert(name);
  }
  return out;
}

class IsolationApi : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    ensureFrontendAccount();
    daemon_ = Daemon::start().release();
    token_ = login(*daemon_, "admin", daemon_->adminPassword());
  }
  static void TearDownTestSuite() {
    delete reference_;
    reference_ = nullptr;
    delete daemon_;
    daemon_ = nullptr;
  }
  void TearDown() override {
    if (HasFailure()) std::fprintf(stderr, "--- jobworkerd log ---\n%s\n", daemon_->log().c_str());
  }
  // A second daemon without a PID namespace (the shim is then the command's parent, not PID 1)
  // and without seccomp for admins: the reference for "exactly as without namespaces" and the
  // control for the seccomp checks.
  static const Daemon& reference() {
    if (reference_ == nullptr) {
      Daemon::Options o;
      o.config_text = "isolation.pid = false\nrole.admin.seccomp = false\n";
      reference_ = Daemon::start(o).release();
      reference_token_ = login(*reference_, "admin", reference_->adminPassword());
    }
    return *reference_;
  }
  bool hostHasCgroups() {
    HttpResponse h = https(*daemon_, "GET", "/v1/healthz", "", token_);  // details: a session
    return h.body.find("cgroups: none") == std::string::npos;
  }

  static Daemon* daemon_;
  static std::string token_;
  static Daemon* reference_;
  static std::string reference_token_;
};
Daemon* IsolationApi::daemon_ = nullptr;
std::string IsolationApi::token_;
Daemon* IsolationApi::reference_ = nullptr;
std::string IsolationApi::reference_token_;

// --- the status and the init ------------------------------------------------------------------

TEST_F(IsolationApi, StatusNamesTheIsolationAndThePidIsTheInits) {
  std::string id = startJob(*daemon_, token_, jobBody({"sleep", "60"}));
  ASSERT_FALSE(id.empty());
  HttpResponse st = https(*daemon_, "GET", "/v1/jobs/" + id, "", token_);
  ASSERT_EQ(st.status, 200);
  std::set<std::string> want = {"pid", "mount", "net", "uts", "ipc", "seccomp"};
  if (hostHasCgroups()) want.insert("cgroup");
  EXPECT_EQ(isolationOf(st.body), want) << st.body;

  // The status pid is the init's host pid; the command is its only child, PID 2 inside.
  pid_t init = std::stoi(jsonField(st.body, "pid"));
  EXPECT_EQ(readFile("/proc/" + std::to_string(init) + "/comm"), "jw-init\n");
  EXPECT_NE(nsOf(init, "pid"), nsOf(getpid(), "pid"));
  std::string children =
      readFile("/proc/" + std::to_string(init) + "/task/" + std::to_string(init) + "/children");
  std::istringstream in(children);
  std::vector<pid_t> kids;
  for (pid_t k; in >> k;) kids.push_back(k);
  ASSERT_EQ(kids.size(), 1u) << children;
  EXPECT_EQ(readFile("/proc/" + std::to_string(kids[0]) + "/comm"), "sleep\n");
  EXPECT_EQ(procStatusField(kids[0], "NSpid"), std::to_string(kids[0]) + "\t2");
  EXPECT_EQ(procStatusField(init, "NSpid"), std::to_string(init) + "\t1");

  // A stop's SIGTERM goes through the init to the command, which dies of it: reported as the
  // command's death, not the init's exit.
  HttpResponse stop =
      https(*daemon_, "POST", "/v1/jobs/" + id + "/stop", "{\"grace_s\":10}", token_);
  EXPECT_EQ(stop.status, 202) << stop.body;
  std::string fin = waitJob(*daemon_, token_, id, 8);
  EXPECT_EQ(jsonField(fin, "state"), "killed") << fin;
  EXPECT_EQ(jsonField(fin, "signal"), "15") << fin;
  EXPECT_EQ(jsonField(fin, "stopped_by"), "admin");
  EXPECT_EQ(kill(init, 0), -1);  // reaped: no zombie left
}

TEST_F(IsolationApi, PsAndProcShowOnlyTheJobAndItsParentIsPid1) {
  Ran r = runJob(*daemon_, token_,
                 sh("echo ppid=$PPID; ps -e -o pid=,comm=; echo procs; ls /proc | grep -E "
                    "'^[0-9]+$'"));
  EXPECT_EQ(jsonField(r.status, "exit_code"), "0") << r.output;
  auto ls = lines(r.output);
  ASSERT_GE(ls.size(), 3u) << r.output;
  EXPECT_EQ(ls[0], "ppid=1");
  size_t i = 1;
  std::set<std::string> comms;
  for (; i < ls.size() && ls[i] != "procs"; i++) {
    std::istringstream l(ls[i]);
    int pid = 0;
    std::string comm;
    l >> pid >> comm;
    comms.insert(comm);
    if (pid == 1) {
      EXPECT_EQ(comm, "jw-init");
    }
    EXPECT_LE(pid, 10) << r.output;
  }
  for (const auto& c : comms) {
    EXPECT_TRUE(c == "jw-init" || c == "sh" || c == "ps") << "unexpected process " << c;
  }
  EXPECT_TRUE(comms.count("jw-init") && comms.count("ps")) << r.output;
  // /proc: the init, the shell, ls and grep at most; never a host process.
  std::vector<int> procs;
  for (i++; i < ls.size(); i++) procs.push_back(std::stoi(ls[i]));
  EXPECT_GE(procs.size(), 2u) << r.output;
  EXPECT_LE(procs.size(), 4u) << r.output;
  EXPECT_EQ(procs.front(), 1) << r.output;
  for (int p : procs) EXPECT_LE(p, 10) << r.output;
}

// --- network ----------------------------------------------------------------------------------

TEST_F(IsolationApi, OnlyLoopbackAndTheHostsLoopbackIsUnreachable) {
  int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(lfd, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(lfd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  ASSERT_EQ(listen(lfd, 16), 0);
  socklen_t len = sizeof a;
  ASSERT_EQ(getsockname(lfd, reinterpret_cast<sockaddr*>(&a), &len), 0);
  std::string port = std::to_string(ntohs(a.sin_port));
  std::string script =
      "cat /proc/net/dev; echo LINKS; ip -o link; echo END; bash -c 'exec "
      "3<>/dev/tcp/127.0.0.1/" +
      port + "' && echo RESULT=connected || echo RESULT=refused";

  Ran none = runJob(*daemon_, token_, sh(script));
  EXPECT_EQ(jsonField(none.status, "exit_code"), "0") << none.output;
  std::string dev = none.output.substr(0, none.output.find("LINKS"));
  EXPECT_EQ(interfaces(dev), std::set<std::string>{"lo"}) << none.output;
  size_t links = none.output.find("LINKS\n"), end = none.output.find("END\n");
  ASSERT_NE(links, std::string::npos);
  ASSERT_NE(end, std::string::npos);
  auto link_lines = lines(none.output.substr(links + 6, end - links - 6));
  ASSERT_EQ(link_lines.size(), 1u) << none.output;
  EXPECT_NE(link_lines[0].find(" lo: "), std::string::npos) << link_lines[0];
  EXPECT_NE(link_lines[0].find("UP"), std::string::npos) << link_lines[0];
  EXPECT_NE(none.output.find("RESULT=refused"), std::string::npos) << none.output;
  EXPECT_EQ(none.output.find("RESULT=connected"), std::string::npos) << none.output;

  // The same job with "network": "host" (admin): the host's interfaces and its loopback.
  Ran host = runJob(*daemon_, token_, sh(script), ",\"network\":\"host\"");
  EXPECT_EQ(jsonField(host.status, "exit_code"), "0") << host.output;
  EXPECT_EQ(interfaces(host.output.substr(0, host.output.find("LINKS"))),
            interfaces(readFile("/proc/net/dev")));
  EXPECT_NE(host.output.find("RESULT=connected"), std::string::npos) << host.output;
  auto iso = isolationOf(host.status);
  EXPECT_EQ(iso.count("net"), 0u) << host.status;
  EXPECT_EQ(iso.count("pid"), 1u) << host.status;
  close(lfd);
}

TEST_F(IsolationApi, NetworkHostIsForbiddenToRoleUser) {
  daemon_->addUser("ursula", "user", "ursula-password-1");
  std::string t = login(*daemon_, "ursula", "ursula-password-1");
  HttpResponse r =
      https(*daemon_, "POST", "/v1/jobs", jobBody({"true"}, ",\"network\":\"host\""), t);
  EXPECT_EQ(r.status, 403) << r.body;
  EXPECT_EQ(jsonField(jsonField(r.body, "error"), "code"), "forbidden");
  // "none" is fine for her, and isolated.
  Ran ok = runJob(*daemon_, t, {"true"}, ",\"network\":\"none\"");
  EXPECT_EQ(jsonField(ok.status, "exit_code"), "0") << ok.status;
  EXPECT_EQ(isolationOf(ok.status).count("net"), 1u) << ok.status;
}

// --- identity, files, process state -----------------------------------------------------------

TEST_F(IsolationApi, HostnameAccountCapabilitiesAndProcessState) {
  Ran r = runJob(*daemon_, token_,
                 sh("hostname; id -u; id -g; umask; ulimit -c; pwd; grep -E "
                    "'^(Cap(Inh|Prm|Eff|Bnd|Amb)|NoNewPrivs|Seccomp):' /proc/self/status; "
                    "ls -l /proc/$$/fd"));
  EXPECT_EQ(jsonField(r.status, "exit_code"), "0") << r.output;
  auto ls = lines(r.output);
  ASSERT_GE(ls.size(), 13u) << r.output;
  EXPECT_EQ(ls[0], "job-" + r.id.substr(0, 8));
  EXPECT_EQ(ls[1], "65534");  // admin's run_as: nobody
  EXPECT_EQ(ls[2], "65534");
  EXPECT_EQ(ls[3], "0022");
  EXPECT_EQ(ls[4], "0");  // RLIMIT_CORE
  // nobody's home (/nonexistent) does not exist: the job starts in "/".
  EXPECT_EQ(ls[5], "/");
  for (size_t i = 6; i < 11; i++) {
    EXPECT_NE(ls[i].find(":\t0000000000000000"), std::string::npos) << ls[i];
  }
  EXPECT_EQ(ls[11], "NoNewPrivs:\t1");
  EXPECT_EQ(ls[12], "Seccomp:\t2");
  // The shell's open fds: stdin /dev/null, stdout and stderr the output pipe, nothing else.
  std::map<int, std::string> fds;
  for (size_t i = 13; i < ls.size(); i++) {
    size_t arrow = ls[i].find(" -> ");
    if (arrow == std::string::npos) continue;
    size_t sp = ls[i].rfind(' ', arrow - 1);
    fds[std::stoi(ls[i].substr(sp + 1, arrow - sp - 1))] = ls[i].substr(arrow + 4);
  }
  ASSERT_EQ(fds.size(), 3u) << r.output;
  EXPECT_EQ(fds[0], "/dev/null");
  EXPECT_EQ(fds[1].rfind("pipe:", 0), 0u) << fds[1];
  EXPECT_EQ(fds[2], fds[1]);
}

TEST_F(IsolationApi, EnvironmentIsCleanWithDocumentedDefaults) {
  Ran r = runJob(*daemon_, token_, {"env"});
  auto env = lines(r.output);
  EXPECT_EQ(env.size(), 4u) << r.output;
  std::set<std::string> got(env.begin(), env.end());
  EXPECT_EQ(
      got, (std::set<std::string>{
               "HOME=/nonexistent", "LANG=C.UTF-8",
               "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "USER=nobody"}))
      << r.output;
}

TEST_F(IsolationApi, TmpIsPrivate) {
  std::mt19937_64 rng(std::random_device{}());
  std::string name = "/tmp/jw-iso-" + std::to_string(rng());
  Ran r = runJob(*daemon_, token_,
                 sh("echo inside > " + name + " && cat " + name + " && stat -f -c %T /tmp"));
  EXPECT_EQ(jsonField(r.status, "exit_code"), "0") << r.output;
  EXPECT_EQ(r.output, "inside\ntmpfs\n");
  EXPECT_NE(access(name.c_str(), F_OK), 0) << name << " appeared on the host";
  unlink(name.c_str());
}

// --- stop and exit statuses -------------------------------------------------------------------

TEST_F(IsolationApi, StopKillsAJobWhoseChildIgnoresSigtermAndOrphansAGrandchild) {
  // Everything ignores SIGTERM (the ignored disposition survives fork and exec); the inner shell
  // leaves a sleep behind, reparented to the init.
  std::string id = startJob(
      *daemon_, token_,
      jobBody(sh("trap '' TERM; sh -c 'sleep 1000 & echo orphaned'; echo ready; sleep 1000")));
  ASSERT_FALSE(id.empty());
  ASSERT_TRUE(
      waitUntil([&] { return logsOf(*daemon_, token_, id).find("ready") != std::string::npos; },
                std::chrono::seconds(10)))
      << logsOf(*daemon_, token_, id);
  HttpResponse st = https(*daemon_, "GET", "/v1/jobs/" + id, "", token_);
  pid_t init = std::stoi(jsonField(st.body, "pid"));
  std::string ns = nsOf(init, "pid");
  ASSERT_FALSE(ns.empty());
  ASSERT_NE(ns, nsOf(getpid(), "pid"));
  // Host pids of every process of the job, held as pidfds: immune to pid reuse, and a pidfd's
  // process answers ESRCH only once it has been reaped (a zombie still takes signal 0).
  // jw-init, sh, the orphaned sleep and (once the shell forked it) the foreground sleep.
  std::vector<pid_t> pids;
  EXPECT_TRUE(waitUntil(
      [&] {
        pids = processesInPidNs(ns);
        return pids.size() >= 4;
      },
      std::chrono::seconds(10)))
      << pids.size() << " processes";
  std::vector<int> pidfds;
  for (pid_t p : pids) {
    int fd = static_cast<int>(syscall(SYS_pidfd_open, p, 0));
    if (fd >= 0) pidfds.push_back(fd);
  }
  ASSERT_EQ(pidfds.size(), pids.size());

  auto t0 = Clock::now();
  HttpResponse stop =
      https(*daemon_, "POST", "/v1/jobs/" + id + "/stop", "{\"grace_s\":1}", token_);
  EXPECT_EQ(stop.status, 202) << stop.body;
  std::string fin = waitJob(*daemon_, token_, id, 15);
  auto took = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0).count();
  EXPECT_EQ(jsonField(fin, "state"), "killed") << fin;
  EXPECT_EQ(jsonField(fin, "signal"), "9") << fin;
  EXPECT_EQ(jsonField(fin, "stopped_by"), "admin");
  EXPECT_GE(took, 900) << "SIGKILL came before the grace";
  EXPECT_LT(took, 10'000);
  for (size_t i = 0; i < pidfds.size(); i++) {
    errno = 0;
    EXPECT_EQ(syscall(SYS_pidfd_send_signal, pidfds[i], 0, nullptr, 0U), -1)
        << "process " << pids[i] << " of the job survived the stop (or is an unreaped zombie)";
    EXPECT_EQ(errno, ESRCH);
    close(pidfds[i]);
  }
  EXPECT_TRUE(processesInPidNs(ns).empty());
  EXPECT_EQ(logsOf(*daemon_, token_, id), "orphaned\nready\n");
}

TEST_F(IsolationApi, ExitStatusesAreReportedExactlyAsWithoutAPidNamespace) {
  struct Case {
    std::string script, state, exit_code, signal;
  };
  const std::vector<Case> cases = {
      {"exit 0", "exited", "0", "null"},
      {"exit 3", "exited", "3", "null"},
      {"kill -9 $$", "killed", "null", "9"},
      {"kill -TERM $$", "killed", "null", "15"},
      {"echo out; exec sh -c 'kill -SEGV $$'", "killed", "null", "11"},
  };
  const Daemon& ref = reference();
  for (const auto& c : cases) {
    Ran with = runJob(*daemon_, token_, sh(c.script));
    Ran without = runJob(ref, reference_token_, sh(c.script));
    EXPECT_EQ(isolationOf(with.status).count("pid"), 1u);
    EXPECT_EQ(isolationOf(without.status).count("pid"), 0u) << without.status;
    for (const char* f : {"state", "exit_code", "signal", "error"}) {
      EXPECT_EQ(jsonField(with.status, f), jsonField(without.status, f))
          << c.script << ": field " << f << "\nwith init: " << with.status
          << "\nwithout: " << without.status;
    }
    EXPECT_EQ(jsonField(with.status, "state"), c.state) << c.script << ": " << with.status;
    EXPECT_EQ(jsonField(with.status, "exit_code"), c.exit_code) << c.script;
    EXPECT_EQ(jsonField(with.status, "signal"), c.signal) << c.script;
    EXPECT_EQ(with.output, without.output) << c.script;
  }
}

// --- seccomp ----------------------------------------------------------------------------------

TEST_F(IsolationApi, BlockedSyscallGetsEpermAndTheDaemonStaysHealthy) {
  const std::string script = "unshare -U true; echo rc=$?";
  Ran r = runJob(*daemon_, token_, sh(script));
  EXPECT_EQ(jsonField(r.status, "exit_code"), "0") << r.output;
  EXPECT_NE(r.output.find("Operation not permitted"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("rc=1"), std::string::npos) << r.output;
  // The daemon is unaffected: healthy, and the next job runs.
  EXPECT_EQ(https(*daemon_, "GET", "/v1/healthz").status, 200);
  Ran next = runJob(*daemon_, token_, {"echo", "still here"});
  EXPECT_EQ(next.output, "still here\n");

  // Control: where role.admin.seccomp = false, the same call succeeds, so the profile (not the
  // account or the namespaces) is what refused it.
  Ran off = runJob(reference(), reference_token_, sh(script));
  EXPECT_EQ(off.output, "rc=0\n");
  EXPECT_EQ(isolationOf(off.status).count("seccomp"), 0u) << off.status;
  EXPECT_EQ(isolationOf(off.status).count("mount"), 1u) << off.status;
}

// --- the supervisor's own check, without the frontend's ---------------------------------------

// jobworkerd with the relay frontend: the test speaks the protocol directly, as a compromised
// frontend could.
class RelayedDaemon {
 public:
  RelayedDaemon() {
    dir_ = makeTempDir("jwisorelay");
    std::string sock = dir_ + "/relay.sock";
    listen_fd_ = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::strcpy(a.sun_path, sock.c_str());
    EXPECT_EQ(bind(listen_fd_, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    EXPECT_EQ(listen(listen_fd_, 4), 0);
    std::vector<std::string> argv = {
        binary("jobworkerd"), "--dev",
        "--state-dir",        dir_ + "/state",
        "--listen",           "127.0.0.1:" + std::to_string(freePort()),
        "--frontend",         binary("relay_frontend")};
    std::vector<std::string> env;
    for (char** e = environ; *e != nullptr; e++) env.emplace_back(*e);
    env.push_back("JW_RELAY_SOCKET=" + sock);
    std::vector<char*> cargv, cenv;
    for (auto& s : argv) cargv.push_back(s.data());
    cargv.push_back(nullptr);
    for (auto& s : env) cenv.push_back(s.data());
    cenv.push_back(nullptr);
    int logfd = open((dir_ + "/log").c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
    pid_ = fork();
    if (pid_ == 0) {
      dup2(logfd, 1);
      dup2(logfd, 2);
      execve(cargv[0], cargv.data(), cenv.data());
      _exit(127);
    }
    close(logfd);
    pollfd p{listen_fd_, POLLIN, 0};
    EXPECT_EQ(poll(&p, 1, 20'000), 1) << readFile(dir_ + "/log");
    conn_ = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    EXPECT_GE(conn_, 0);
    // The supervisor sends nothing first; Ready and we serve.
    send(protocol::encodeReady(0, {}));
  }
  ~RelayedDaemon() {
    if (pid_ > 0) {
      kill(pid_, SIGTERM);
      waitUntil([&] { return waitpid(pid_, nullptr, WNOHANG) != 0; }, std::chrono::seconds(20));
      if (kill(pid_, 0) == 0) {
        kill(pid_, SIGKILL);
        waitpid(pid_, nullptr, 0);
      }
    }
    if (conn_ >= 0) close(conn_);
    if (listen_fd_ >= 0) close(listen_fd_);
    removeTree(dir_);
  }

  void send(const std::string& frame) {
    EXPECT_EQ(::send(conn_, frame.data(), frame.size(), MSG_NOSIGNAL),
              static_cast<ssize_t>(frame.size()));
  }
  std::optional<std::pair<protocol::FrameHeader, std::string>> recvFrame(int timeout_ms = 20'000) {
    pollfd p{conn_, POLLIN, 0};
    if (poll(&p, 1, timeout_ms) != 1) return std::nullopt;
    std::string buf(protocol::kMaxFrame + 1, '\0');
    ssize_t n = recv(conn_, buf.data(), buf.size(), 0);
    if (n <= 0) return std::nullopt;
    buf.resize(static_cast<size_t>(n));
    std::string_view payload;
    auto h = protocol::decodeHeader(buf, &payload);
    if (!h) return std::nullopt;
    return std::make_pair(h.value(), std::string(payload));
  }
  // The reply to request `id`.
  std::optional<std::pair<protocol::FrameHeader, std::string>> reply(uint32_t id) {
    for (;;) {
      auto f = recvFrame();
      if (!f || f->first.request_id == id) return f;
    }
  }
  void addUser(const std::string& name, const std::string& role) {
    CmdResult r =
        run({binary("jobworker-admin"), "user", "add", "--users-file", dir_ + "/state/users", name,
             "--role", role, "--run-as", "nobody", "--password-stdin"},
            "password-of-" + name + "\n");
    ASSERT_EQ(r.exit_code, 0) << r.err;
    kill(pid_, SIGHUP);
    // Reloaded once the new user can log in (a login before the reload is a 401; its
    // throttle allowance is far more than the few polls this takes).
    ASSERT_TRUE(waitUntil([&] { return login(name, "password-of-" + name).has_value(); },
                          std::chrono::seconds(10)))
        << "no reload after SIGHUP";
  }
  // Logs in; the token, or nullopt when refused.
  std::optional<protocol::Token> login(const std::string& user, const std::string& password) {
    uint32_t id = next_id_++;
    send(protocol::encodeLogin(id, protocol::LoginRequest{user, password, "127.0.0.1"}));
    auto f = reply(id);
    if (!f || f->first.type != protocol::MsgType::kLoginReply) return std::nullopt;
    auto r = protocol::decodeLoginReplyPayload(f->second);
    if (!r) return std::nullopt;
    return r->token;
  }
  std::string adminPassword() const {
    std::string pw = readFile(dir_ + "/state/admin-password");
    while (!pw.empty() && (pw.back() == '\n' || pw.back() == '\r')) pw.pop_back();
    return pw;
  }
  std::string log() const { return readFile(dir_ + "/log"); }

 private:
  std::string dir_;
  int listen_fd_ = -1, conn_ = -1;
  pid_t pid_ = -1;
  uint32_t next_id_ = 1000;
};

TEST(IsolationSupervisor, RefusesNetworkHostToRoleUserWhateverTheFrontendSays) {
  ensureFrontendAccount();
  RelayedDaemon d;
  d.addUser("rudi", "user");
  protocol::JobStartRequest r;
  auto rudi = d.login("rudi", "password-of-rudi");
  ASSERT_TRUE(rudi);
  r.token = *rudi;
  r.argv = {"true"};
  r.network = protocol::Network::kHost;
  d.send(protocol::encodeJobStart(7, r));
  auto f = d.reply(7);
  ASSERT_TRUE(f) << d.log();
  ASSERT_EQ(f->first.type, protocol::MsgType::kErrorReply) << d.log();
  auto e = protocol::decodeErrorReplyPayload(f->second);
  ASSERT_TRUE(e.ok());
  EXPECT_EQ(e->code, protocol::ErrorCode::kForbidden);
  EXPECT_NE(e->message.find("network_host"), std::string::npos) << e->message;

  // Admin may, and the job then has no network namespace.
  auto admin = d.login("admin", d.adminPassword());
  ASSERT_TRUE(admin) << d.log();
  r.token = *admin;
  d.send(protocol::encodeJobStart(8, r));
  auto ok = d.reply(8);
  ASSERT_TRUE(ok);
  ASSERT_EQ(ok->first.type, protocol::MsgType::kJobStatus) << d.log();
  auto s = protocol::decodeJobStatusPayload(ok->second);
  ASSERT_TRUE(s.ok());
  const auto& iso = s->isolation;
  EXPECT_EQ(std::count(iso.begin(), iso.end(), "net"), 0);
  EXPECT_EQ(std::count(iso.begin(), iso.end(), "pid"), 1);
}

}  // namespace
}  // namespace jw::test
