// Benchmarks (not tests): job start latency, output store throughput and log streaming
// throughput of the real daemon, each printed next to a baseline measured in the same run on the
// same machine (plain fork/exec, plain pipe-to-file, plain file read), with the ratio.
// Runs as root in the benchmark process; `meson test --benchmark -C build` or run it directly.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cctype>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "tests/integration/daemon.h"

namespace {

using Clock = std::chrono::steady_clock;
using jw::test::Daemon;

double secondsSince(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

void report(const char* what, double ours, double baseline, const char* unit) {
  std::printf("%-40s jobworker %10.2f %-6s baseline %10.2f %-6s ratio %6.2fx\n", what, ours, unit,
              baseline, unit, baseline > 0 ? ours / baseline : 0.0);
  std::fflush(stdout);
}

// Baseline: fork/exec/wait of `true` without any daemon.
double spawnTrueMs(int n) {
  auto t = Clock::now();
  for (int i = 0; i < n; i++) {
    pid_t pid;
    char* argv[] = {const_cast<char*>("/bin/true"), nullptr};
    posix_spawn(&pid, "/bin/true", nullptr, nullptr, argv, environ);
    int st;
    waitpid(pid, &st, 0);
  }
  return secondsSince(t) * 1000 / n;
}

TEST(Bench, StartLatencyOutputAndStreaming) {
  if (geteuid() != 0) GTEST_SKIP() << "the daemon needs root";
  auto d = Daemon::start();
  std::string tok = jw::test::login(*d, "admin", d->adminPassword());

  // 1. Start-to-exit latency of `true`, including HTTPS, the channel, cgroup and namespaces.
  const int n = 30;
  auto t = Clock::now();
  for (int i = 0; i < n; i++) {
    std::string id = jw::test::startJob(*d, tok, R"({"command":["/bin/true"]})");
    jw::test::waitJob(*d, tok, id);
  }
  double ours_ms = secondsSince(t) * 1000 / n;
  report("start+wait of /bin/true (ms per job)", ours_ms, spawnTrueMs(n), "ms");

  // 2. A job writing 512 MiB: time until its final state (every byte stored) vs a pipe into a file.
  const char* gen = "head -c 536870912 /dev/zero";
  t = Clock::now();
  std::string id =
      jw::test::startJob(*d, tok, std::string(R"({"command":["sh","-c",")") + gen + R"("]})");
  std::string final_status = jw::test::waitJob(*d, tok, id, 300);
  double ours_s = secondsSince(t);
  EXPECT_EQ(jw::test::jsonField(final_status, "output_bytes"), "536870912");
  std::string tmp = jw::test::makeTempDir("jwbench");
  t = Clock::now();
  jw::test::run({"/bin/sh", "-c", std::string(gen) + " | cat > " + tmp + "/out"});
  double base_s = secondsSince(t);
  report("store 512 MiB of output (MiB/s)", 512 / ours_s, 512 / base_s, "MiB/s");

  // 3. Reading those 512 MiB back over HTTPS vs reading the file locally.
  t = Clock::now();
  auto r = jw::test::https(*d, "GET", "/v1/jobs/" + id + "/logs", "", tok);
  double stream_s = secondsSince(t);
  EXPECT_EQ(r.body.size(), 536870912u);
  t = Clock::now();
  jw::test::run({"/bin/sh", "-c", "cat " + tmp + "/out > /dev/null"});
  double read_s = secondsSince(t);
  report("stream 512 MiB over HTTPS (MiB/s)", 512 / stream_s, 512 / read_s, "MiB/s");
  jw::test::removeTree(tmp);

  // 4. The supervisor's peak RSS after all that (output lives in files, not in RAM).
  std::string status = jw::test::readFile("/proc/" + std::to_string(d->pid()) + "/status");
  size_t p = status.find("VmHWM:");
  std::printf("%-40s %s\n", "jobworkerd peak RSS",
              status.substr(p + 6, status.find('\n', p) - p - 6).c_str());
}

// Memory of one running job's init, from /proc/PID/smaps_rollup: what the job costs the host
// beyond its command. Unique = Private_Clean + Private_Dirty (KiB, the USS), and Pss. With many
// jobs running, their inits share what they can (the static binary's text and read-only data),
// so the figures are averaged over `kJobs` at once. Not in smaps, so printed apart: the page
// tables (VmPTE) and the kernel stack every task has (THREAD_SIZE, 16 KiB on x86-64).
// Run against another build's daemon (JW_JOBWORKERD=...) for the "before" figure.
std::map<std::string, long> procFields(const std::string& path) {
  std::map<std::string, long> out;
  std::ifstream in(path);
  std::string key;
  long value;
  std::string unit;
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream words(line);
    if (words >> key >> value >> unit && unit == "kB") out[key.substr(0, key.size() - 1)] = value;
  }
  return out;
}

// Where one init's unique pages are: each mapping with private pages, from /proc/PID/smaps.
void printPrivateMappings(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/smaps");
  std::string line, mapping;
  long clean = 0;
  while (std::getline(in, line)) {
    // "start-end perms offset dev inode path" (a field line starts with its name and a colon).
    if (!line.empty() && std::isxdigit(static_cast<unsigned char>(line[0])) &&
        line.find('-') < line.find(' ')) {
      mapping = line;
      clean = 0;
    } else if (line.rfind("Private_Clean:", 0) == 0) {
      clean = std::atol(line.c_str() + 14);
    } else if (line.rfind("Private_Dirty:", 0) == 0) {
      long dirty = std::atol(line.c_str() + 14);
      if (clean + dirty > 0) {
        std::printf("%-40s %3ld KiB (clean %ld, dirty %ld)  %s\n", "", clean + dirty, clean, dirty,
                    mapping.c_str());
      }
    }
  }
}

TEST(Bench, MemoryPerRunningJobInit) {
  if (geteuid() != 0) GTEST_SKIP() << "the daemon needs root";
  constexpr int kJobs = 20;
  auto d = Daemon::start();
  std::string tok = jw::test::login(*d, "admin", d->adminPassword());
  std::vector<std::string> ids;
  for (int i = 0; i < kJobs; i++) {
    ids.push_back(jw::test::startJob(*d, tok, R"({"command":["sleep","120"]})"));
  }
  long unique = 0, pss = 0, rss = 0, page_tables = 0;
  int counted = 0;
  pid_t first = 0;
  for (const auto& id : ids) {
    auto s = jw::test::https(*d, "GET", "/v1/jobs/" + id, "", tok);
    pid_t pid = std::atoi(jw::test::jsonField(s.body, "pid").c_str());
    auto m = procFields("/proc/" + std::to_string(pid) + "/smaps_rollup");
    if (m.empty()) continue;
    unique += m["Private_Clean"] + m["Private_Dirty"];
    pss += m["Pss"];
    rss += m["Rss"];
    page_tables += procFields("/proc/" + std::to_string(pid) + "/status")["VmPTE"];
    if (first == 0) first = pid;
    counted++;
  }
  ASSERT_GT(counted, 0);
  printPrivateMappings(first);
  auto perJob = [&](long kib) { return static_cast<double>(kib) / counted; };
  std::printf("%-40s %s\n", "job init memory, per running job",
              jw::test::binary("jobworkerd").c_str());
  std::printf("%-40s unique %6.1f KiB  pss %6.1f KiB  rss %6.1f KiB  (%d jobs)\n", "",
              perJob(unique), perJob(pss), perJob(rss), counted);
  std::printf("%-40s page tables %4.1f KiB (VmPTE; and, as for any task, a 16 KiB kernel stack)\n",
              "", perJob(page_tables));
  std::fflush(stdout);
  for (const auto& id : ids) jw::test::https(*d, "POST", "/v1/jobs/" + id + "/stop", "", tok);
  for (const auto& id : ids) jw::test::waitJob(*d, tok, id);
}

}  // namespace

int main(int argc, char** argv) {
  testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
