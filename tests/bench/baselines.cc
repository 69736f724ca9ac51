// The harness's baselines (see baselines.h). Runs in the benchmark process, as root.
#include "tests/bench/baselines.h"

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "tests/integration/daemon.h"

namespace jw::bench {
namespace {

std::vector<char*> cstrings(std::vector<std::string>& v) {
  std::vector<char*> out;
  out.reserve(v.size() + 1);
  for (auto& s : v) out.push_back(s.data());
  out.push_back(nullptr);
  return out;
}

bool writeText(const std::string& path, const std::string& text) {
  std::ofstream out(path);
  out << text;
  return static_cast<bool>(out.flush());
}

// Waits for pid; true when it exited 0.
bool reapOk(pid_t pid) {
  int status = 0;
  while (waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) return false;
  }
  return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

}  // namespace

double nowMs() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<double>(ts.tv_sec) * 1e3 + static_cast<double>(ts.tv_nsec) / 1e6;
}

double spawnTrueMs() {
  double t = nowMs();
  pid_t pid = -1;
  char path[] = "/bin/true";
  char* argv[] = {path, nullptr};
  if (posix_spawn(&pid, path, nullptr, nullptr, argv, environ) != 0) return -1;
  if (!reapOk(pid)) return -1;
  return nowMs() - t;
}

CgroupParents CgroupParents::detect() {
  CgroupParents p;
  std::ifstream in("/proc/self/cgroup");
  std::string line;
  std::string unified;
  const std::vector<std::string> managed = {"cpu", "cpuacct", "memory", "blkio", "pids", "freezer"};
  while (std::getline(in, line)) {
    // "ID:CONTROLLERS:PATH"; v2 is "0::PATH".
    size_t a = line.find(':');
    size_t b = line.find(':', a + 1);
    if (a == std::string::npos || b == std::string::npos) continue;
    std::string controllers = line.substr(a + 1, b - a - 1);
    std::string path = line.substr(b + 1);
    if (controllers.empty()) {
      unified = path;
      continue;
    }
    std::stringstream list(controllers);
    std::string c;
    while (std::getline(list, c, ',')) {
      for (const auto& m : managed) {
        if (c == m && access(("/sys/fs/cgroup/" + m).c_str(), W_OK) == 0) {
          p.dirs_.push_back("/sys/fs/cgroup/" + m + path);
        }
      }
    }
  }
  if (p.dirs_.empty() && access("/sys/fs/cgroup/cgroup.controllers", R_OK) == 0) {
    p.dirs_.push_back("/sys/fs/cgroup" + unified);
  }
  return p;
}

std::string CgroupParents::describe() const {
  return std::to_string(dirs_.size()) + (dirs_.size() == 1 ? " v2 cgroup" : " v1 cgroups");
}

int CgroupParents::jobNamespaces() {
  return CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWUTS | CLONE_NEWIPC;
}

double CgroupParents::spawnTrueMs(int ns_flags) const {
  static std::atomic<unsigned> serial{0};
  std::string leaf =
      "/jwbench-" + std::to_string(getpid()) + "-" + std::to_string(serial.fetch_add(1));
  double t = nowMs();
  std::vector<std::string> procs;
  for (const auto& d : dirs_) {
    if (mkdir((d + leaf).c_str(), 0755) != 0) return -1;
    procs.push_back(d + leaf + "/cgroup.procs");
  }
  // A raw clone behaves like fork() and takes the namespace flags, as the supervisor's does.
  auto child = static_cast<pid_t>(syscall(SYS_clone, static_cast<unsigned long>(ns_flags) | SIGCHLD,
                                          nullptr, nullptr, nullptr, nullptr));
  if (child == 0) {
    // Only async-signal-safe calls here: the benchmark may be multithreaded.
    for (const auto& p : procs) {
      int fd = open(p.c_str(), O_WRONLY | O_CLOEXEC);
      if (fd < 0 || write(fd, "0", 1) != 1) _exit(126);
      close(fd);
    }
    char path[] = "/bin/true";
    char* argv[] = {path, nullptr};
    execve(path, argv, environ);
    _exit(127);
  }
  bool ok = child > 0 && reapOk(child);
  for (const auto& d : dirs_) ok = rmdir((d + leaf).c_str()) == 0 && ok;
  return ok ? nowMs() - t : -1;
}

double timedRun(const std::vector<std::string>& argv_in, const std::vector<std::string>& env_in,
                const std::string& out_path) {
  std::vector<std::string> argv = argv_in;
  std::vector<std::string> env = env_in;
  auto args = cstrings(argv);
  auto envp = cstrings(env);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 1, out_path.empty() ? "/dev/null" : out_path.c_str(),
                                   O_WRONLY | O_CREAT | O_TRUNC, 0600);
  posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
  double t = nowMs();
  pid_t pid = -1;
  int rc = posix_spawnp(&pid, args[0], &fa, nullptr, args.data(),
                        env_in.empty() ? environ : envp.data());
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0 || !reapOk(pid)) return -1;
  return nowMs() - t;
}

pid_t startBackground(const std::vector<std::string>& argv, const std::string& log_path) {
  return jw::test::spawnLogged(argv, {}, log_path);
}

void stopBackground(pid_t pid) {
  if (pid <= 0) return;
  kill(pid, SIGTERM);
  int status = 0;
  bool gone = jw::test::waitUntil([&] { return waitpid(pid, &status, WNOHANG) == pid; },
                                  std::chrono::seconds(5));
  if (!gone) {
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
  }
}

ThrowawaySshd::ThrowawaySshd(const std::string& dir) : dir_(dir) {
  mkdir("/run/sshd", 0755);  // sshd's privilege-separation directory
  mkdir((dir_ + "/home").c_str(), 0700);
  bool keys =
      jw::test::run({"ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", dir_ + "/host_key"})
              .exit_code == 0 &&
      jw::test::run({"ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", dir_ + "/id"})
              .exit_code == 0;
  if (!keys) {
    error_ = "ssh-keygen failed";
    return;
  }
  writeText(dir_ + "/authorized_keys", jw::test::readFile(dir_ + "/id.pub"));
  port_ = jw::test::freePort();
  writeText(dir_ + "/sshd_config",
            "ListenAddress 127.0.0.1:" + std::to_string(port_) + "\nHostKey " + dir_ +
                "/host_key\nAuthorizedKeysFile " + dir_ +
                "/authorized_keys\nPermitRootLogin prohibit-password\n"
                "PasswordAuthentication no\nKbdInteractiveAuthentication "
                "no\nUsePAM no\nStrictModes no\nPidFile " +
                dir_ +
                "/sshd.pid\nPermitUserEnvironment no\nPrintMotd no\n"
                "PrintLastLog no\nUseDNS no\nSubsystem sftp internal-sftp\n");
  // Root's home (from the password database) hidden behind an empty directory in sshd's own
  // mount namespace: what sshd runs is the command and nothing of the account's set-up.
  std::string home = "/root";
  std::string script = "mount --make-rprivate / && mount --bind " + dir_ + "/home " + home +
                       " && exec /usr/sbin/sshd -D -e -f " + dir_ + "/sshd_config";
  sshd_ = startBackground({"/usr/bin/unshare", "-m", "/bin/sh", "-c", script}, dir_ + "/sshd.log");
  ok_ = jw::test::waitUntil([&] { return timedRun(command({"true"}, false)) >= 0; },
                            std::chrono::seconds(15));
  if (!ok_) {
    error_ = "sshd did not accept a login: " + jw::test::readFile(dir_ + "/sshd.log");
    return;
  }
  // The master of the warm runs, kept for the whole benchmark.
  std::vector<std::string> master = command({"true"}, true);
  master.insert(master.begin() + 1, {"-o", "ControlMaster=auto", "-o", "ControlPersist=600"});
  ok_ = timedRun(master) >= 0;
  if (!ok_) error_ = "ssh ControlMaster did not start";
}

ThrowawaySshd::~ThrowawaySshd() {
  timedRun({"ssh", "-o", "ControlPath=" + dir_ + "/ctl", "-O", "exit", "root@127.0.0.1"});
  stopBackground(sshd_);
}

std::vector<std::string> ThrowawaySshd::command(const std::vector<std::string>& remote,
                                                bool warm) const {
  std::vector<std::string> argv = {"ssh",
                                   "-F",
                                   "/dev/null",
                                   "-i",
                                   dir_ + "/id",
                                   "-p",
                                   std::to_string(port_),
                                   "-c",
                                   "aes256-gcm@openssh.com",
                                   "-o",
                                   "BatchMode=yes",
                                   "-o",
                                   "StrictHostKeyChecking=no",
                                   "-o",
                                   "UserKnownHostsFile=/dev/null",
                                   "-o",
                                   "LogLevel=ERROR",
                                   "-o",
                                   "ControlPath=" + (warm ? dir_ + "/ctl" : std::string("none")),
                                   "root@127.0.0.1"};
  argv.insert(argv.end(), remote.begin(), remote.end());
  return argv;
}

RawTlsServer::RawTlsServer(const std::string& root, const std::string& cert, const std::string& key,
                           const std::string& suite, const std::string& log_path) {
  port_ = jw::test::freePort();
  // -WWW serves files relative to the working directory.
  std::string script = "cd " + root + " && exec openssl s_server -quiet -WWW -accept 127.0.0.1:" +
                       std::to_string(port_) + " -cert " + cert + " -key " + key +
                       " -tls1_3 -ciphersuites " + suite;
  pid_ = startBackground({"/bin/sh", "-c", script}, log_path);
  ok_ = jw::test::waitUntil([&] { return jw::test::acceptQueueLength(port_) >= 0; },
                            std::chrono::seconds(10));
}

RawTlsServer::~RawTlsServer() { stopBackground(pid_); }

std::string negotiatedSuite(int port, const std::string& ca_file) {
  auto r = jw::test::run({"openssl", "s_client", "-brief", "-connect",
                          "127.0.0.1:" + std::to_string(port), "-CAfile", ca_file});
  const std::string key = "Ciphersuite: ";
  size_t p = r.err.find(key);
  if (p == std::string::npos) return "";
  return r.err.substr(p + key.size(), r.err.find('\n', p) - p - key.size());
}

}  // namespace jw::bench
