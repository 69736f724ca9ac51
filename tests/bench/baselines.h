// What the harness (tests/bench/harness.cc) compares jobworker with, all on this machine and in
// the same run: plain spawn loops (bare, into cgroups like a job's, and into the namespaces a job
// gets), child processes timed whole, a throw-away sshd and an `openssl s_server`. Runs in the
// benchmark process, as root.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

namespace jw::bench {

// Milliseconds since an arbitrary start (CLOCK_MONOTONIC).
double nowMs();

// posix_spawn of /bin/true and waitpid: the floor of any start.
double spawnTrueMs();

// The cgroup directories a job gets, one per v1 controller jobworker manages (cpu, cpuacct,
// memory, blkio, pids, freezer) or the one v2 directory, below this process's own cgroups.
class CgroupParents {
 public:
  // Finds them from /proc/self/cgroup; empty when the host has none of them.
  static CgroupParents detect();
  bool empty() const { return dirs_.empty(); }
  size_t size() const { return dirs_.size(); }
  std::string describe() const;
  // mkdir a fresh child of each, fork, the child joins them (and with ns_flags, new namespaces:
  // a job's CLONE_NEW* set), exec /bin/true, wait, rmdir: a job's spawn without jobworker.
  // Returns the time in ms, or a negative value when a step failed.
  double spawnTrueMs(int ns_flags) const;
  // The namespaces a default job gets.
  static int jobNamespaces();

 private:
  std::vector<std::string> dirs_;
};

// Runs argv (PATH lookup) with env (full "K=V" list; empty: inherit) and stdin/stdout/stderr
// on /dev/null, or stdout into out_path when given; returns its wall time in ms, or a negative
// value when it did not exit 0.
double timedRun(const std::vector<std::string>& argv, const std::vector<std::string>& env = {},
                const std::string& out_path = "");
// Starts argv (argv[0] an absolute path: no PATH lookup) in the background, stdin /dev/null,
// output appended to log_path.
pid_t startBackground(const std::vector<std::string>& argv, const std::string& log_path);
// SIGTERM, then SIGKILL after 5 s, and reaps it.
void stopBackground(pid_t pid);

// A throw-away sshd on 127.0.0.1 with host and client keys made here, running in a mount
// namespace where root's home is an empty directory (no .bashrc, .profile or ~/.ssh/rc of the
// machine's root account runs); its client side, warm (ControlMaster) or cold.
class ThrowawaySshd {
 public:
  explicit ThrowawaySshd(const std::string& dir);
  ~ThrowawaySshd();
  ThrowawaySshd(const ThrowawaySshd&) = delete;
  ThrowawaySshd& operator=(const ThrowawaySshd&) = delete;
  bool ok() const { return ok_; }
  const std::string& error() const { return error_; }
  // `ssh ... root@127.0.0.1 COMMAND`: through the warm master, or a full handshake.
  std::vector<std::string> command(const std::vector<std::string>& remote, bool warm) const;

 private:
  std::string dir_;
  int port_ = 0;
  pid_t sshd_ = -1;
  bool ok_ = false;
  std::string error_;
};

// `openssl s_server -WWW` serving files below `root` with the given certificate, key and TLS 1.3
// suite on 127.0.0.1: raw TLS without any HTTP server of ours.
class RawTlsServer {
 public:
  RawTlsServer(const std::string& root, const std::string& cert, const std::string& key,
               const std::string& suite, const std::string& log_path);
  ~RawTlsServer();
  RawTlsServer(const RawTlsServer&) = delete;
  RawTlsServer& operator=(const RawTlsServer&) = delete;
  int port() const { return port_; }
  bool ok() const { return ok_; }

 private:
  int port_ = 0;
  pid_t pid_ = -1;
  bool ok_ = false;
};

// The TLS 1.3 suite a server on 127.0.0.1:port negotiates (`openssl s_client -brief`), or "".
std::string negotiatedSuite(int port, const std::string& ca_file);

}  // namespace jw::bench
