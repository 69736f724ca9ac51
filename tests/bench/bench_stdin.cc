// Benchmark (not a test) of a job's stdin ("[streams]"): 1 GiB through `jobworker start -i -- wc
// -c` next to the baseline `ssh host 'wc -c'` over loopback (a throw-away sshd on a free port with
// a key made here), both fed by the same `head -c 1G /dev/zero` pipe; and the peak RSS of
// jobworkerd and its frontend while 1 GiB goes into a job that reads slowly. Runs as root in the
// benchmark process; `meson test --benchmark -C build stdin -v` or run it directly.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "tests/integration/daemon.h"

namespace {

using Clock = std::chrono::steady_clock;
using jw::test::CmdResult;
using jw::test::Daemon;

constexpr const char* kGiB = "1073741824";

double timed(const std::function<void()>& f) {
  auto t = Clock::now();
  f();
  return std::chrono::duration<double>(Clock::now() - t).count();
}

uint64_t rssKb(pid_t pid) {
  std::string v = jw::test::procStatusField(pid, "VmRSS");
  return v.empty() ? 0 : std::stoull(v);
}

// A throw-away sshd on 127.0.0.1 that takes one key, for root; stopped by the destructor.
class LoopbackSshd {
 public:
  LoopbackSshd() : dir_(jw::test::makeTempDir("jwsshd")), port_(jw::test::freePort()) {
    for (const char* k : {"host", "client"}) {
      auto r = jw::test::run({"ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", dir_ + "/" + k});
      EXPECT_EQ(r.exit_code, 0) << r.err;
    }
    std::ofstream(dir_ + "/sshd_config")
        << "ListenAddress 127.0.0.1:" << port_ << "\nHostKey " << dir_ << "/host\n"
        << "AuthorizedKeysFile " << dir_ << "/client.pub\nPermitRootLogin prohibit-password\n"
        << "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n"
        << "StrictModes no\nPidFile " << dir_ << "/pid\n";
    ::mkdir("/run/sshd", 0755);
    pid_ = jw::test::spawnLogged({"/usr/sbin/sshd", "-D", "-e", "-f", dir_ + "/sshd_config"}, {},
                                 dir_ + "/log");
    EXPECT_TRUE(jw::test::waitUntil([&] { return jw::test::acceptQueueLength(port_) >= 0; },
                                    std::chrono::seconds(10)))
        << jw::test::readFile(dir_ + "/log");
  }
  ~LoopbackSshd() {
    if (pid_ > 0) kill(pid_, SIGTERM);
    jw::test::removeTree(dir_);
  }
  // ssh options that reach it as root with the key.
  std::string command(const std::string& remote) const {
    return "ssh -q -i " + dir_ + "/client -p " + std::to_string(port_) +
           " -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o BatchMode=yes "
           "root@127.0.0.1 '" +
           remote + "'";
  }

 private:
  std::string dir_;
  int port_;
  pid_t pid_ = -1;
};

TEST(Bench, StdinThroughputAgainstSshAndMemoryWithASlowReader) {
  auto d = Daemon::start();
  ASSERT_NE(d, nullptr);
  std::string cfg = jw::test::makeTempDir("jwbenchcli");
  std::vector<std::string> env = {"JOBWORKER_SERVER=" + d->url(),
                                  "JOBWORKER_CA_FILE=" + d->caFile(), "XDG_CONFIG_HOME=" + cfg};
  auto in =
      jw::test::run({jw::test::binary("jobworker"), "login", "-u", "admin", "--password-stdin"},
                    d->adminPassword() + "\n", env);
  ASSERT_EQ(in.exit_code, 0) << in.err;
  const std::string cli = jw::test::binary("jobworker");
  CmdResult ours;
  double ours_s = timed([&] {
    ours = jw::test::run(
        {"sh", "-c", std::string("head -c ") + kGiB + " /dev/zero | " + cli + " run -i -- wc -c"},
        "", env, 600);
  });
  EXPECT_EQ(ours.out, std::string(kGiB) + "\n") << ours.err;
  LoopbackSshd sshd;
  CmdResult theirs;
  double ssh_s = timed([&] {
    theirs = jw::test::run(
        {"sh", "-c", std::string("head -c ") + kGiB + " /dev/zero | " + sshd.command("wc -c")}, "",
        {}, 600);
  });
  EXPECT_EQ(theirs.out, std::string(kGiB) + "\n") << theirs.err;
  std::printf(
      "%-40s jobworker %8.0f MiB/s (%.2f s)  ssh 'wc -c' %8.0f MiB/s (%.2f s)  ratio "
      "%.2fx\n",
      "stdin, 1 GiB, run -i -- wc -c", 1024 / ours_s, ours_s, 1024 / ssh_s, ssh_s, ssh_s / ours_s);

  // A slow reader: 64 KiB at a time with a pause every 4 MiB (about 50-100 MiB/s here).
  const pid_t frontend = d->frontendPid();
  const uint64_t super0 = rssKb(d->pid()), front0 = rssKb(frontend);
  uint64_t super_peak = 0, front_peak = 0;
  std::atomic<bool> done{false};
  std::thread sampler([&] {
    while (!done) {
      super_peak = std::max(super_peak, rssKb(d->pid()));
      front_peak = std::max(front_peak, rssKb(frontend));
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  });
  CmdResult slow;
  double slow_s = timed([&] {
    slow = jw::test::run(
        {"sh", "-c",
         std::string("head -c ") + kGiB + " /dev/zero | " + cli +
             " run -i -- sh -c 'n=0; while [ $n -lt 256 ]; do dd bs=64k count=64 iflag=fullblock "
             "status=none; n=$((n+1)); sleep 0.02; done | wc -c'"},
        "", env, 900);
  });
  done = true;
  sampler.join();
  EXPECT_EQ(slow.out, std::string(kGiB) + "\n") << slow.err;
  std::printf(
      "%-40s %.2f s (%.0f MiB/s); RSS jobworkerd %llu -> peak %llu KiB, frontend %llu "
      "-> peak %llu KiB\n",
      "stdin, 1 GiB, slow reader", slow_s, 1024 / slow_s, static_cast<unsigned long long>(super0),
      static_cast<unsigned long long>(super_peak), static_cast<unsigned long long>(front0),
      static_cast<unsigned long long>(front_peak));
  std::fflush(stdout);
  jw::test::removeTree(cfg);
}

}  // namespace

int main(int argc, char** argv) {
  testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
