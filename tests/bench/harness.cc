// The speed harness (tests/bench/run): every row of "[speed]" measured against its baselines in
// one run on this machine, interleaved sample by sample, printed as a table (medians and p99)
// and written as JSON. Never a test: it prints figures and fails only when it cannot measure.
// Runs as root in the benchmark process, on loopback only; every load is bounded in count.
#include <Poco/JSON/Object.h>
#include <Poco/JSON/Parser.h>
#include <Poco/Net/Context.h>
#include <Poco/Net/HTTPRequest.h>
#include <Poco/Net/HTTPResponse.h>
#include <Poco/Net/HTTPSClientSession.h>
#include <Poco/StreamCopier.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "tests/bench/baselines.h"
#include "tests/integration/daemon.h"

namespace {

using jw::bench::nowMs;
using jw::test::Daemon;

// How much each part measures: --quick is a smoke run of a few minutes, the default a full run.
struct Plan {
  bool quick = false;
  int latency_samples = 100;
  int cold_ssh_every = 5;  // a cold ssh costs a whole key exchange: sampled every N-th round
  double rate_seconds = 4;
  int rate_rounds = 3;
  uint64_t follow_bytes = 1ULL << 30;
  int follow_rounds = 3;
  uint64_t fanout_bytes = 256ULL << 20;
  int fanout_rounds = 5;
  int followers = 100;
  int list_jobs = 2000;
  int list_samples = 30;
  int list_hold_s = 0;  // --list-hold S: keep the daemon and its jobs S seconds for profiling
};

Plan makePlan(bool quick) {
  Plan p;
  if (!quick) return p;
  p.quick = true;
  p.latency_samples = 20;
  p.rate_seconds = 1.5;
  p.rate_rounds = 1;
  p.follow_bytes = 256ULL << 20;
  p.follow_rounds = 1;
  p.fanout_bytes = 64ULL << 20;
  p.fanout_rounds = 2;
  p.list_jobs = 500;
  p.list_samples = 10;
  return p;
}

// One measured quantity: its samples, reduced to a median and a p99.
struct Series {
  std::string unit;
  std::vector<double> v;
  int failures = 0;
  void add(double x) {
    if (x < 0) {
      failures++;
    } else {
      v.push_back(x);
    }
  }
  double quantile(double q) const {
    if (v.empty()) return 0;
    std::vector<double> s = v;
    std::sort(s.begin(), s.end());
    auto i = static_cast<size_t>(q * static_cast<double>(s.size() - 1) + 0.5);
    return s[std::min(i, s.size() - 1)];
  }
  double median() const { return quantile(0.5); }
  double p99() const { return quantile(0.99); }
};

// A table row: jobworker's series next to its baselines.
struct Row {
  std::string scenario;
  std::string ours;
  std::vector<std::string> baselines;
};

class Results {
 public:
  Series& series(const std::string& name, const std::string& unit) {
    Series& s = series_[name];
    s.unit = unit;
    return s;
  }
  void row(Row r) { rows_.push_back(std::move(r)); }
  void note(const std::string& n) { notes_.push_back(n); }
  void print() const;
  std::string json(const Plan& plan) const;

 private:
  std::string cell(const std::string& name) const;
  std::map<std::string, Series> series_;
  std::vector<Row> rows_;
  std::vector<std::string> notes_;
};

std::string fmt(double x) {
  char buf[32];
  std::snprintf(buf, sizeof buf, x >= 100 ? "%.0f" : x >= 10 ? "%.1f" : "%.2f", x);
  return buf;
}

std::string Results::cell(const std::string& name) const {
  auto it = series_.find(name);
  if (it == series_.end() || it->second.v.empty()) return name + ": not measured";
  const Series& s = it->second;
  std::string c = name + " " + fmt(s.median()) + " " + s.unit;
  if (s.v.size() > 1) c += " (p99 " + fmt(s.p99()) + ")";
  if (s.failures > 0) c += " [" + std::to_string(s.failures) + " failed]";
  return c;
}

void Results::print() const {
  std::printf("\n| scenario | jobworker | baselines | ratio |\n|---|---|---|---|\n");
  for (const auto& r : rows_) {
    std::string base;
    std::string ratio;
    auto ours = series_.find(r.ours);
    for (const auto& b : r.baselines) {
      base += (base.empty() ? "" : "; ") + cell(b);
      auto bs = series_.find(b);
      if (ours != series_.end() && bs != series_.end() && !bs->second.v.empty() &&
          bs->second.median() > 0) {
        ratio +=
            (ratio.empty() ? "" : " / ") + fmt(ours->second.median() / bs->second.median()) + "x";
      }
    }
    std::printf("| %s | %s | %s | %s |\n", r.scenario.c_str(), cell(r.ours).c_str(),
                base.empty() ? "-" : base.c_str(), ratio.empty() ? "-" : ratio.c_str());
  }
  for (const auto& n : notes_) std::printf("note: %s\n", n.c_str());
  std::fflush(stdout);
}

std::string Results::json(const Plan& plan) const {
  Poco::JSON::Object root;
  struct utsname u {};
  uname(&u);
  root.set("quick", plan.quick);
  root.set("kernel", std::string(u.release));
  root.set("cpus", std::thread::hardware_concurrency());
  Poco::JSON::Object series;
  for (const auto& [name, s] : series_) {
    Poco::JSON::Object o;
    o.set("unit", s.unit);
    o.set("n", s.v.size());
    o.set("failures", s.failures);
    o.set("median", s.median());
    o.set("p99", s.p99());
    series.set(name, o);
  }
  root.set("series", series);
  Poco::JSON::Array rows;
  for (const auto& r : rows_) {
    Poco::JSON::Object o;
    o.set("scenario", r.scenario);
    o.set("jobworker", r.ours);
    Poco::JSON::Array b;
    for (const auto& x : r.baselines) b.add(x);
    o.set("baselines", b);
    rows.add(o);
  }
  root.set("rows", rows);
  Poco::JSON::Array notes;
  for (const auto& n : notes_) notes.add(n);
  root.set("notes", notes);
  std::ostringstream os;
  root.stringify(os, 1);
  return os.str();
}

Poco::JSON::Object::Ptr parseObject(const std::string& text) {
  try {
    Poco::JSON::Parser p;
    return p.parse(text).extract<Poco::JSON::Object::Ptr>();
  } catch (const Poco::Exception&) {
    return nullptr;
  }
}

// A keep-alive HTTPS connection to the daemon: the harness measures the server, not handshakes
// (the CLI rows measure those).
class Conn {
 public:
  Conn(const Daemon& d, std::string token)
      : session_("127.0.0.1", static_cast<Poco::UInt16>(d.port()), context(d)),
        token_(std::move(token)) {
    session_.setKeepAlive(true);
    session_.setTimeout(Poco::Timespan(300, 0));
  }
  // Status and body; status 0 when the connection failed.
  std::pair<int, std::string> call(const std::string& method, const std::string& path,
                                   const std::string& body = "") {
    try {
      Poco::Net::HTTPRequest req(method, path, Poco::Net::HTTPMessage::HTTP_1_1);
      req.set("Authorization", "Bearer " + token_);
      if (method == "POST") {
        req.setContentType("application/json");
        req.setContentLength(static_cast<std::streamsize>(body.size()));
      }
      session_.sendRequest(req) << body;
      Poco::Net::HTTPResponse resp;
      std::istream& is = session_.receiveResponse(resp);
      std::string out;
      Poco::StreamCopier::copyToString(is, out);
      return {resp.getStatus(), out};
    } catch (const Poco::Exception& e) {
      session_.reset();
      return {0, e.displayText()};
    }
  }
  // POST /v1/jobs: the id, or "" when it was not started.
  std::string start(const std::string& json_body) {
    auto [status, body] = call("POST", "/v1/jobs", json_body);
    if (status != 201) return "";
    auto o = parseObject(body);
    return o ? o->optValue<std::string>("id", "") : "";
  }
  // GET /v1/jobs/{id}/wait: the final status object, or null.
  Poco::JSON::Object::Ptr wait(const std::string& id) {
    auto [status, body] = call("GET", "/v1/jobs/" + id + "/wait?timeout_s=300");
    return status == 200 ? parseObject(body) : nullptr;
  }
  Poco::Net::HTTPSClientSession& session() { return session_; }

  static Poco::Net::Context::Ptr context(const Daemon& d) {
    static std::mutex m;
    static std::map<std::string, Poco::Net::Context::Ptr> by_ca;
    std::lock_guard<std::mutex> lock(m);
    auto& ctx = by_ca[d.caFile()];
    if (ctx.isNull()) {
      ctx = new Poco::Net::Context(Poco::Net::Context::TLS_CLIENT_USE, "", "", d.caFile(),
                                   Poco::Net::Context::VERIFY_RELAXED, 9, false);
    }
    return ctx;
  }

 private:
  Poco::Net::HTTPSClientSession session_;
  std::string token_;
};

const char* kTrueJob = R"({"command":["/bin/true"]})";

std::string writeJob(uint64_t bytes) {
  return R"({"command":["head","-c",")" + std::to_string(bytes) + R"(","/dev/zero"]})";
}

// Everything the parts share: the daemon, its admin session, the CLI's home, the baselines.
struct Bench {
  Plan plan;
  Results results;
  std::unique_ptr<Daemon> daemon;
  std::string token;
  std::string work;         // a temp dir for keys, configs and the CLI's home
  std::string auth_header;  // a file with the Authorization header, for curl -H @FILE
  jw::bench::CgroupParents cgroups;
  std::unique_ptr<jw::bench::ThrowawaySshd> sshd;
  std::vector<std::string> cli_env;
};

Daemon::Options daemonOptions() {
  Daemon::Options o;
  // Room for every load the harness makes: 2,000 running jobs, 100 followers from one address.
  o.config_text =
      "max_running_jobs_per_user = 10000\nmax_connections_per_client = 1024\n"
      "retention_count = 100000\nretention_total = 100000\noutput_cap = 2G\n";
  // As many descriptors as this process may have: 2,000 running jobs hold several each.
  rlimit nofile{};
  getrlimit(RLIMIT_NOFILE, &nofile);
  std::string most = std::to_string(nofile.rlim_max);
  o.exec_prefix = {"/usr/bin/prlimit", "--nofile=" + most + ":" + most, "--"};
  return o;
}

std::vector<std::string> environmentWith(const std::vector<std::string>& extra) {
  std::vector<std::string> env;
  for (char** e = environ; *e != nullptr; e++) {
    std::string kv = *e;
    if (kv.rfind("HOME=", 0) == 0 || kv.rfind("XDG_CONFIG_HOME=", 0) == 0 ||
        kv.rfind("JOBWORKER_", 0) == 0) {
      continue;
    }
    env.push_back(kv);
  }
  env.insert(env.end(), extra.begin(), extra.end());
  return env;
}

bool setUp(Bench& b) {
  b.daemon = Daemon::start(daemonOptions());
  b.token = jw::test::login(*b.daemon, "admin", b.daemon->adminPassword());
  if (b.token.empty()) return false;
  b.work = jw::test::makeTempDir("jwbench");
  b.auth_header = b.work + "/auth";
  { std::ofstream(b.auth_header) << "Authorization: Bearer " << b.token << "\n"; }
  b.cgroups = jw::bench::CgroupParents::detect();
  std::string home = b.work + "/clihome";
  mkdir(home.c_str(), 0700);
  b.cli_env = environmentWith({"HOME=" + home, "XDG_CONFIG_HOME=" + home + "/.config"});
  auto login = jw::test::run(
      {jw::test::binary("jobworker"), "login", "--server", b.daemon->url(), "--ca-file",
       b.daemon->caFile(), "--user", "admin", "--password-stdin"},
      b.daemon->adminPassword() + "\n", {"HOME=" + home, "XDG_CONFIG_HOME=" + home + "/.config"});
  if (login.exit_code != 0) {
    std::fprintf(stderr, "jobworker login failed: %s\n", login.err.c_str());
    return false;
  }
  mkdir((b.work + "/ssh").c_str(), 0700);
  b.sshd = std::make_unique<jw::bench::ThrowawaySshd>(b.work + "/ssh");
  if (!b.sshd->ok()) b.results.note("no ssh baselines: " + b.sshd->error());
  return true;
}

// Start latencies, interleaved: one sample of every scenario per round.
void measureLatency(Bench& b) {
  auto& posix = b.results.series("posix_spawn", "ms");
  auto& cg = b.results.series("spawn into " + b.cgroups.describe(), "ms");
  auto& cgns = b.results.series("spawn into cgroups + job namespaces", "ms");
  auto& running = b.results.series("POST -> running", "ms");
  auto& exited = b.results.series("POST -> exit visible", "ms");
  auto& cli = b.results.series("jobworker run -- /bin/true", "ms");
  // The CLI process without a request (its help): the floor of loading Poco and OpenSSL.
  auto& floor = b.results.series("jobworker --help", "ms");
  auto& warm = b.results.series("ssh warm", "ms");
  auto& cold = b.results.series("ssh cold", "ms");
  Conn conn(*b.daemon, b.token);
  std::vector<std::string> cli_argv = {jw::test::binary("jobworker"), "run", "--", "/bin/true"};
  for (int i = 0; i < b.plan.latency_samples; i++) {
    posix.add(jw::bench::spawnTrueMs());
    if (!b.cgroups.empty()) {
      cg.add(b.cgroups.spawnTrueMs(0));
      cgns.add(b.cgroups.spawnTrueMs(jw::bench::CgroupParents::jobNamespaces()));
    }
    double t = nowMs();
    std::string id = conn.start(kTrueJob);
    running.add(id.empty() ? -1 : nowMs() - t);
    if (!id.empty()) conn.wait(id);
    t = nowMs();
    id = conn.start(kTrueJob);
    exited.add(!id.empty() && conn.wait(id) ? nowMs() - t : -1);
    cli.add(jw::bench::timedRun(cli_argv, b.cli_env));
    floor.add(jw::bench::timedRun({jw::test::binary("jobworker"), "--help"}, b.cli_env));
    if (b.sshd->ok()) {
      warm.add(jw::bench::timedRun(b.sshd->command({"/bin/true"}, true)));
      if (i % b.plan.cold_ssh_every == 0) {
        cold.add(jw::bench::timedRun(b.sshd->command({"/bin/true"}, false)));
      }
    }
  }
  std::string cgname = "spawn into " + b.cgroups.describe();
  b.results.row({"POST -> running (default isolation)",
                 "POST -> running",
                 {"posix_spawn", cgname, "spawn into cgroups + job namespaces"}});
  b.results.row({"POST -> exit visible",
                 "POST -> exit visible",
                 {cgname, "spawn into cgroups + job namespaces", "ssh warm"}});
  b.results.row({"jobworker run -- /bin/true (CLI, whole process)",
                 "jobworker run -- /bin/true",
                 {"ssh warm", "ssh cold", "jobworker --help"}});
}

// Starts per second from `clients` threads for `seconds`, each running `one` in a loop.
double ratePerSecond(int clients, double seconds, const std::function<bool(int)>& one) {
  std::atomic<long> done{0};
  double end = nowMs() + seconds * 1000;
  std::vector<std::thread> threads;
  double t = nowMs();
  for (int c = 0; c < clients; c++) {
    threads.emplace_back([&, c] {
      while (nowMs() < end) {
        if (one(c)) done++;
      }
    });
  }
  for (auto& th : threads) th.join();
  return static_cast<double>(done.load()) / ((nowMs() - t) / 1000);
}

void measureStartRate(Bench& b) {
  for (int clients : {1, 8, 32}) {
    std::string n = std::to_string(clients);
    auto& ours = b.results.series("starts/s, " + n + " clients", "/s");
    auto& base = b.results.series("spawn+cgroups/s, " + n + " threads", "/s");
    auto& basens = b.results.series("spawn+cgroups+ns/s, " + n + " threads", "/s");
    for (int r = 0; r < b.plan.rate_rounds; r++) {
      std::vector<std::unique_ptr<Conn>> conns;
      for (int c = 0; c < clients; c++) conns.push_back(std::make_unique<Conn>(*b.daemon, b.token));
      ours.add(ratePerSecond(clients, b.plan.rate_seconds,
                             [&](int c) { return !conns[c]->start(kTrueJob).empty(); }));
      if (!b.cgroups.empty()) {
        base.add(ratePerSecond(clients, b.plan.rate_seconds,
                               [&](int) { return b.cgroups.spawnTrueMs(0) >= 0; }));
        basens.add(ratePerSecond(clients, b.plan.rate_seconds, [&](int) {
          return b.cgroups.spawnTrueMs(jw::bench::CgroupParents::jobNamespaces()) >= 0;
        }));
      }
    }
    b.results.row(
        {"starts/s at " + n + " clients",
         "starts/s, " + n + " clients",
         {"spawn+cgroups/s, " + n + " threads", "spawn+cgroups+ns/s, " + n + " threads"}});
  }
}

// The stored log file of a job: the regular file below its directory holding `bytes` bytes.
std::string storedLog(const Bench& b, const std::string& id, uint64_t bytes) {
  std::error_code ec;
  for (const auto& e :
       std::filesystem::recursive_directory_iterator(b.daemon->stateDir() + "/jobs", ec)) {
    if (e.is_regular_file() && e.file_size() == bytes &&
        e.path().string().find(id) != std::string::npos) {
      return e.path().string();
    }
  }
  return "";
}

double mibPerSecond(uint64_t bytes, double ms) {
  return ms > 0 ? static_cast<double>(bytes) / (1 << 20) / (ms / 1000) : -1;
}

std::vector<std::string> curl(const Bench& b, const std::string& url, bool auth) {
  std::vector<std::string> argv = {"curl", "-sS",      "--fail", "--cacert", b.daemon->caFile(),
                                   "-o",   "/dev/null"};
  if (auth) argv.insert(argv.end(), {"-H", "@" + b.auth_header});
  argv.push_back(url);
  return argv;
}

void measureFollow(Bench& b) {
  const uint64_t size = b.plan.follow_bytes;
  std::string mib = std::to_string(size >> 20) + " MiB";
  auto& follow = b.results.series("follow " + mib + " while written (curl)", "MiB/s");
  auto& read = b.results.series("read " + mib + " stored (curl)", "MiB/s");
  auto& raw = b.results.series("raw TLS, openssl s_server (curl)", "MiB/s");
  auto& ssh = b.results.series("ssh aes256-gcm cat", "MiB/s");
  std::string suite = jw::bench::negotiatedSuite(b.daemon->port(), b.daemon->caFile());
  b.results.note("follow: jobworker negotiates " + suite + "; s_server gets the same suite and " +
                 "the daemon's own certificate and key");
  Conn conn(*b.daemon, b.token);
  for (int r = 0; r < b.plan.follow_rounds; r++) {
    std::string id = conn.start(writeJob(size));
    if (id.empty()) {
      follow.add(-1);
      continue;
    }
    std::string logs = b.daemon->url() + "/v1/jobs/" + id + "/logs";
    double t = nowMs();
    double ok = jw::bench::timedRun(curl(b, logs + "?follow=true", true));
    follow.add(ok < 0 ? -1 : mibPerSecond(size, nowMs() - t));
    conn.wait(id);
    read.add(mibPerSecond(size, jw::bench::timedRun(curl(b, logs, true))));
    std::string file = storedLog(b, id, size);
    if (!file.empty()) {
      std::string dir = file.substr(0, file.rfind('/'));
      jw::bench::RawTlsServer server(dir, b.daemon->stateDir() + "/server.pem",
                                     b.daemon->stateDir() + "/server.key", suite,
                                     b.work + "/s_server.log");
      if (server.ok()) {
        std::string url =
            "https://127.0.0.1:" + std::to_string(server.port()) + file.substr(file.rfind('/'));
        raw.add(mibPerSecond(size, jw::bench::timedRun(curl(b, url, false))));
      }
      if (b.sshd->ok()) {
        ssh.add(mibPerSecond(size, jw::bench::timedRun(b.sshd->command({"cat", file}, true))));
      }
    }
    conn.call("DELETE", "/v1/jobs/" + id);
  }
  b.results.row({"follow " + mib,
                 "follow " + mib + " while written (curl)",
                 {"raw TLS, openssl s_server (curl)", "ssh aes256-gcm cat"}});
  b.results.row({"read " + mib + " stored",
                 "read " + mib + " stored (curl)",
                 {"raw TLS, openssl s_server (curl)", "ssh aes256-gcm cat"}});
}

// One follower of a job's log in a thread of the harness, counting what it receives until the
// stream ends or stop() cuts its connection.
class Follower {
 public:
  Follower(const Bench& b, const std::string& id) : conn_(*b.daemon, b.token), token_(b.token) {
    thread_ = std::thread([this, id] { run(id); });
  }
  ~Follower() {
    stop();
    thread_.join();
  }
  Follower(const Follower&) = delete;
  Follower& operator=(const Follower&) = delete;
  uint64_t bytes() const { return bytes_.load(); }
  void stop() {
    stopped_ = true;
    int fd = fd_.load();
    if (fd >= 0) shutdown(fd, SHUT_RDWR);
  }

 private:
  void run(const std::string& id) {
    try {
      auto& s = conn_.session();
      Poco::Net::HTTPRequest req("GET", "/v1/jobs/" + id + "/logs?follow=true",
                                 Poco::Net::HTTPMessage::HTTP_1_1);
      req.set("Authorization", "Bearer " + token_);
      s.sendRequest(req);
      fd_ = s.socket().impl()->sockfd();
      if (stopped_) return;  // stop() came before there was a socket to cut
      Poco::Net::HTTPResponse resp;
      std::istream& is = s.receiveResponse(resp);
      std::vector<char> buf(256 << 10);
      while (!stopped_) {
        is.read(buf.data(), static_cast<std::streamsize>(buf.size()));
        if (is.gcount() <= 0) break;
        bytes_ += static_cast<uint64_t>(is.gcount());
      }
    } catch (const Poco::Exception&) {
      // cut by stop(), or the stream failed: bytes_ says how far it got
    }
  }
  Conn conn_;
  std::string token_;
  std::atomic<bool> stopped_{false};
  std::atomic<int> fd_{-1};
  std::atomic<uint64_t> bytes_{0};
  std::thread thread_;
};

double jobCpuSeconds(const Poco::JSON::Object::Ptr& status) {
  if (!status) return -1;
  auto usage = status->getObject("usage");
  return usage && usage->has("cpu_seconds") ? usage->getValue<double>("cpu_seconds") : -1;
}

void measureFanout(Bench& b) {
  const uint64_t size = b.plan.fanout_bytes;
  std::string mib = std::to_string(size >> 20) + " MiB";
  std::string with = std::to_string(b.plan.followers) + " followers";
  auto& wall0 = b.results.series("job wall, no follower", "ms");
  auto& wall = b.results.series("job wall, " + with, "ms");
  auto& cpu0 = b.results.series("job cpu, no follower", "ms");
  auto& cpu = b.results.series("job cpu, " + with, "ms");
  auto& aggregate = b.results.series("aggregate to " + with + " while the job ran", "MiB/s");
  Conn conn(*b.daemon, b.token);
  for (int r = 0; r < b.plan.fanout_rounds; r++) {
    for (bool followed : {false, true}) {
      double t = nowMs();
      std::string id = conn.start(writeJob(size));
      std::vector<std::unique_ptr<Follower>> followers;
      if (followed) {
        for (int f = 0; f < b.plan.followers; f++) {
          followers.push_back(std::make_unique<Follower>(b, id));
        }
      }
      auto status = id.empty() ? nullptr : conn.wait(id);
      double ms = status ? nowMs() - t : -1;
      (followed ? wall : wall0).add(ms);
      double c = jobCpuSeconds(status);
      (followed ? cpu : cpu0).add(c < 0 ? -1 : c * 1000);
      if (followed) {
        uint64_t total = 0;
        for (auto& f : followers) total += f->bytes();
        aggregate.add(mibPerSecond(total, ms));
      }
      followers.clear();
      if (!id.empty()) conn.call("DELETE", "/v1/jobs/" + id);
    }
  }
  b.results.row({"job writing " + mib + ": wall with " + with + " vs none",
                 "job wall, " + with,
                 {"job wall, no follower"}});
  b.results.row({"job writing " + mib + ": cpu with " + with + " vs none",
                 "job cpu, " + with,
                 {"job cpu, no follower"}});
  b.results.row(
      {"fan-out throughput vs one follower",
       "aggregate to " + with + " while the job ran",
       {"follow " + std::to_string(b.plan.follow_bytes >> 20) + " MiB while written (curl)"}});
}

// The loop-lag histogram of GET /metrics: cumulative count per bucket bound, and the total.
struct LagHistogram {
  std::vector<std::pair<double, double>> buckets;  // (le, cumulative count)
  double count = 0;
};

LagHistogram scrapeLag(Conn& conn) {
  LagHistogram h;
  auto [status, body] = conn.call("GET", "/metrics");
  if (status != 200) return h;
  std::istringstream lines(body);
  std::string line;
  const std::string bucket = "jobworker_event_loop_lag_seconds_bucket{le=\"";
  const std::string count = "jobworker_event_loop_lag_seconds_count";
  while (std::getline(lines, line)) {
    if (line.rfind(bucket, 0) == 0) {
      size_t q = line.find('"', bucket.size());
      std::string le = line.substr(bucket.size(), q - bucket.size());
      double bound = le == "+Inf" ? 1e9 : std::stod(le);
      h.buckets.emplace_back(bound, std::stod(line.substr(line.rfind(' ') + 1)));
    } else if (line.rfind(count, 0) == 0) {
      h.count = std::stod(line.substr(line.rfind(' ') + 1));
    }
  }
  return h;
}

// Probes later than 5 ms between two scrapes, and the bound of the worst one's bucket.
std::string lagBetween(const LagHistogram& before, const LagHistogram& after) {
  double over5 = 0;
  double worst = 0;
  double total = after.count - before.count;
  for (size_t i = 0; i < after.buckets.size(); i++) {
    double was = i < before.buckets.size() ? before.buckets[i].second : 0;
    double in = after.buckets[i].second - was;
    if (after.buckets[i].first <= 0.005 + 1e-9) over5 = total - in;
  }
  // The first bucket whose cumulative count holds every probe bounds the worst.
  for (size_t i = 0; i < after.buckets.size(); i++) {
    double was = i < before.buckets.size() ? before.buckets[i].second : 0;
    if (after.buckets[i].second - was >= total) {
      worst = after.buckets[i].first;
      break;
    }
  }
  char buf[160];
  std::snprintf(buf, sizeof buf, "%.0f probes, %.0f later than 5 ms, worst <= %s", total, over5,
                worst >= 1e9 ? "+Inf" : (fmt(worst * 1000) + " ms").c_str());
  return buf;
}

void measureList(Bench& b) {
  auto d = Daemon::start(daemonOptions());
  std::string token = jw::test::login(*d, "admin", d->adminPassword());
  Conn conn(*d, token);
  auto lag0 = scrapeLag(conn);
  std::vector<std::string> ids;
  double t = nowMs();
  for (int i = 0; i < b.plan.list_jobs; i++) {
    std::string id = conn.start(R"({"command":["sleep","3600"]})");
    if (id.empty()) break;
    ids.push_back(id);
  }
  b.results.note("list: started " + std::to_string(ids.size()) + " sleep jobs in " +
                 fmt((nowMs() - t) / 1000) + " s");
  std::string n = std::to_string(ids.size());
  auto& list = b.results.series("GET /v1/jobs, " + n + " running", "ms");
  auto& one = b.results.series("GET /v1/jobs/{id}", "ms");
  auto lag1 = scrapeLag(conn);
  for (int i = 0; i < b.plan.list_samples && !ids.empty(); i++) {
    t = nowMs();
    auto [status, body] = conn.call("GET", "/v1/jobs");
    list.add(status == 200 ? nowMs() - t : -1);
    t = nowMs();
    auto [s1, b1] = conn.call("GET", "/v1/jobs/" + ids[static_cast<size_t>(i) % ids.size()]);
    one.add(s1 == 200 ? nowMs() - t : -1);
  }
  auto lag2 = scrapeLag(conn);
  if (b.plan.list_hold_s > 0) {
    std::fprintf(stderr, "list hold: url %s ca %s pid %d token %s\n", d->url().c_str(),
                 d->caFile().c_str(), static_cast<int>(d->pid()), token.c_str());
    std::this_thread::sleep_for(std::chrono::seconds(b.plan.list_hold_s));
  }
  b.results.note("loop lag while starting " + n + " jobs: " + lagBetween(lag0, lag1));
  b.results.note("loop lag while listing them: " + lagBetween(lag1, lag2));
  for (const auto& id : ids) conn.call("POST", "/v1/jobs/" + id + "/stop");
  bool drained = jw::test::waitUntil(
      [&] {
        auto [s, body] = conn.call("GET", "/v1/jobs?state=running&limit=1");
        auto o = parseObject(body);
        return s == 200 && o && o->getArray("jobs") && o->getArray("jobs")->size() == 0;
      },
      std::chrono::seconds(120));
  if (!drained) b.results.note("list: some sleep jobs were still running after 120 s");
  b.results.row({"GET /v1/jobs with " + n + " running",
                 "GET /v1/jobs, " + n + " running",
                 {"GET /v1/jobs/{id}"}});
}

void describeMachine() {
  struct utsname u {};
  uname(&u);
  std::string model;
  std::ifstream cpuinfo("/proc/cpuinfo");
  std::string line;
  while (std::getline(cpuinfo, line)) {
    if (line.rfind("model name", 0) == 0) {
      model = line.substr(line.find(':') + 2);
      break;
    }
  }
  double load = 0;
  std::ifstream("/proc/loadavg") >> load;
  std::printf("machine: %s, %u cpus, kernel %s, load %.2f\n", model.c_str(),
              std::thread::hardware_concurrency(), u.release, load);
}

}  // namespace

int main(int argc, char** argv) {
  bool quick = false;
  bool only_list = false;  // --only list: the list row alone, for profiling the list path
  int list_jobs = 0;
  int list_samples = 0;
  int list_hold_s = 0;
  std::string json_path;
  for (int i = 1; i < argc; i++) {
    std::string a = argv[i];
    if (a == "--quick") {
      quick = true;
    } else if (a == "--json" && i + 1 < argc) {
      json_path = argv[++i];
    } else if (a == "--only" && i + 1 < argc && std::string(argv[i + 1]) == "list") {
      only_list = true;
      i++;
    } else if (a == "--list-jobs" && i + 1 < argc) {
      list_jobs = std::atoi(argv[++i]);
    } else if (a == "--list-hold" && i + 1 < argc) {
      list_hold_s = std::atoi(argv[++i]);
    } else if (a == "--list-samples" && i + 1 < argc) {
      list_samples = std::atoi(argv[++i]);
    } else {
      std::fprintf(stderr,
                   "usage: %s [--quick] [--only list] [--list-jobs N] [--list-samples N]\n       "
                   "[--list-hold S] [--json FILE]\n",
                   argv[0]);
      return 2;
    }
  }
  if (geteuid() != 0) {
    std::fprintf(stderr, "the harness needs root (the daemon, cgroups, namespaces, sshd)\n");
    return 1;
  }
  Bench b;
  b.plan = makePlan(quick);
  if (list_jobs > 0) b.plan.list_jobs = list_jobs;
  if (list_samples > 0) b.plan.list_samples = list_samples;
  b.plan.list_hold_s = list_hold_s;
  describeMachine();
  if (only_list) {
    measureList(b);
    b.results.print();
    return 0;
  }
  if (!setUp(b)) return 1;
  Conn probe(*b.daemon, b.token);
  auto lag_start = scrapeLag(probe);
  std::fprintf(stderr, "latency...\n");
  measureLatency(b);
  std::fprintf(stderr, "start rate...\n");
  measureStartRate(b);
  std::fprintf(stderr, "follow...\n");
  measureFollow(b);
  std::fprintf(stderr, "fan-out...\n");
  measureFanout(b);
  b.results.note("loop lag over latency, start rate, follow and fan-out: " +
                 lagBetween(lag_start, scrapeLag(probe)));
  std::fprintf(stderr, "list...\n");
  measureList(b);
  b.sshd.reset();
  b.daemon.reset();
  jw::test::removeTree(b.work);
  b.results.print();
  std::string json = b.results.json(b.plan);
  if (!json_path.empty()) {
    std::ofstream(json_path) << json << "\n";
    std::printf("json: %s\n", json_path.c_str());
  } else {
    std::printf("%s\n", json.c_str());
  }
  return 0;
}
