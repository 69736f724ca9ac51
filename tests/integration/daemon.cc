// Integration-test fixture (see daemon.h): real jobworkerd, real HTTPS. Runs in the test process.
#include "tests/integration/daemon.h"

#include <Poco/Dynamic/Var.h>
#include <Poco/JSON/Object.h>
#include <Poco/JSON/Parser.h>
#include <Poco/Net/Context.h>
#include <Poco/Net/HTTPRequest.h>
#include <Poco/Net/HTTPResponse.h>
#include <Poco/Net/HTTPSClientSession.h>
#include <Poco/StreamCopier.h>
#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <thread>

namespace jw::test {

namespace {

using Clock = std::chrono::steady_clock;

std::string envOr(const char* name, const std::string& fallback) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0' ? v : fallback;
}

std::vector<char*> cstrings(std::vector<std::string>& v) {
  std::vector<char*> out;
  for (auto& s : v) out.push_back(s.data());
  out.push_back(nullptr);
  return out;
}

std::vector<std::string> mergedEnv(const std::vector<std::string>& extra) {
  std::vector<std::string> env;
  for (char** e = environ; *e != nullptr; e++) {
    std::string kv = *e;
    std::string key = kv.substr(0, kv.find('='));
    bool overridden = false;
    for (const auto& x : extra) overridden |= x.substr(0, x.find('=')) == key;
    if (!overridden) env.push_back(kv);
  }
  env.insert(env.end(), extra.begin(), extra.end());
  return env;
}

int decodeWait(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}

// Waits for pid up to timeout; returns the decoded status or -1 on timeout.
int waitFor(pid_t pid, std::chrono::milliseconds timeout) {
  int status = 0;
  pid_t r = 0;
  waitUntil([&] { return (r = waitpid(pid, &status, WNOHANG)) != 0; }, timeout);
  return r == pid ? decodeWait(status) : -1;
}

// How many times needle occurs in text.
size_t occurrences(const std::string& text, const std::string& needle) {
  size_t n = 0;
  for (size_t p = text.find(needle); p != std::string::npos; p = text.find(needle, p + 1)) n++;
  return n;
}

// Where binary(name) sits below the build root.
std::string buildTreePath(const std::string& name) {
  if (name == "jobworkerd") return "supervisor/jobworkerd";
  if (name == "jobworker-frontend") return "frontend/jobworker-frontend";
  if (name == "jobworker-admin") return "tools/jobworker-admin";
  if (name == "jobworker") return "client/jobworker";
  if (name == "relay_frontend") return "tests/integration/relay_frontend";
  if (name == "hostile_frontend") return "tests/integration/hostile_frontend";
  if (name == "jobworker-verifier") return "supervisor/verifier/jobworker-verifier";
  if (name == "jobworker-init") return "supervisor/init/jobworker-init";
  if (name == "jobworker-spawner") return "supervisor/spawner/jobworker-spawner";
  return name;
}

}  // namespace

std::string binary(const std::string& name) {
  std::string built = envOr("JW_BUILD_ROOT", ".") + "/" + buildTreePath(name);
  if (name == "jobworkerd") return envOr("JW_JOBWORKERD", built);
  if (name == "relay_frontend") return envOr("JW_RELAY_FRONTEND", built);
  if (name == "hostile_frontend") return envOr("JW_HOSTILE_FRONTEND", built);
  if (name == "jobworker-verifier") return envOr("JW_VERIFIER", built);
  if (name == "jobworker-frontend") return envOr("JW_TEST_FRONTEND", built);
  return built;
}

StagedBinaries::StagedBinaries() : dir_(makeTempDir("jwbin")) {
  namespace fs = std::filesystem;
  auto reachable = fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec |
                   fs::perms::others_read | fs::perms::others_exec;
  std::error_code ec;
  fs::permissions(dir_, reachable, ec);
  if (ec) ADD_FAILURE() << "chmod 0755 " << dir_ << ": " << ec.message();
  for (const char* name : {"jobworkerd", "jobworker-frontend", "jobworker-admin", "relay_frontend",
                           "jobworker-verifier", "jobworker-init", "jobworker-spawner"}) {
    fs::path to = fs::path(dir_) / buildTreePath(name);
    for (fs::path d = to.parent_path(); d != fs::path(dir_); d = d.parent_path()) {
      fs::create_directories(d, ec);
      fs::permissions(d, reachable, ec);
    }
    fs::copy_file(binary(name), to, fs::copy_options::overwrite_existing, ec);
    if (!ec) fs::permissions(to, reachable, ec);
    if (ec) ADD_FAILURE() << "staging " << binary(name) << " as " << to << ": " << ec.message();
  }
}

StagedBinaries::~StagedBinaries() { removeTree(dir_); }

std::string StagedBinaries::path(const std::string& name) const {
  return dir_ + "/" + buildTreePath(name);
}

CmdResult run(const std::vector<std::string>& argv_in, const std::string& stdin_data,
              const std::vector<std::string>& env_in, int timeout_s) {
  CmdResult res;
  int in[2], out[2], err[2];
  if (pipe2(in, O_CLOEXEC) != 0 || pipe2(out, O_CLOEXEC) != 0 || pipe2(err, O_CLOEXEC) != 0) {
    ADD_FAILURE() << "pipe2: " << std::strerror(errno);
    return res;
  }
  std::vector<std::string> argv = argv_in;
  std::vector<std::string> env = mergedEnv(env_in);
  auto cargv = cstrings(argv);
  auto cenv = cstrings(env);
  pid_t pid = fork();
  if (pid == 0) {
    dup2(in[0], 0);
    dup2(out[1], 1);
    dup2(err[1], 2);
    execve(cargv[0], cargv.data(), cenv.data());
    execvpe(cargv[0], cargv.data(), cenv.data());
    _exit(127);
  }
  close(in[0]);
  close(out[1]);
  close(err[1]);
  // Feed stdin from a thread so a child that does not read it cannot deadlock us.
  std::thread feeder([fd = in[1], data = stdin_data] {
    signal(SIGPIPE, SIG_IGN);
    size_t off = 0;
    while (off < data.size()) {
      ssize_t n = write(fd, data.data() + off, data.size() - off);
      if (n <= 0) break;
      off += static_cast<size_t>(n);
    }
    close(fd);
  });
  auto deadline = Clock::now() + std::chrono::seconds(timeout_s);
  pollfd fds[2] = {{out[0], POLLIN, 0}, {err[0], POLLIN, 0}};
  int open_fds = 2;
  char buf[65536];
  bool killed = false;
  while (open_fds > 0) {
    int ms = static_cast<int>(
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count());
    if (ms <= 0 && !killed) {
      kill(pid, SIGKILL);
      killed = true;
      ADD_FAILURE() << "command timed out after " << timeout_s << " s: " << argv_in[0];
    }
    int r = poll(fds, 2, ms > 0 ? ms : 1000);
    if (r < 0 && errno == EINTR) continue;
    for (int i = 0; i < 2; i++) {
      if (fds[i].fd < 0 || fds[i].revents == 0) continue;
      ssize_t n = read(fds[i].fd, buf, sizeof buf);
      if (n > 0) {
        (i == 0 ? res.out : res.err).append(buf, static_cast<size_t>(n));
      } else if (n == 0 || errno != EINTR) {
        close(fds[i].fd);
        fds[i].fd = -1;
        open_fds--;
      }
    }
  }
  int status = 0;
  waitpid(pid, &status, 0);
  feeder.join();
  res.exit_code = decodeWait(status);
  return res;
}

std::string jsonString(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", c);
      out += buf;
    } else {
      out += c;
    }
  }
  return out + "\"";
}

std::string nsOf(pid_t pid, const char* ns) {
  char buf[128];
  std::string link = "/proc/" + std::to_string(pid) + "/ns/" + ns;
  ssize_t n = readlink(link.c_str(), buf, sizeof buf);
  return n > 0 ? std::string(buf, static_cast<size_t>(n)) : std::string();
}

std::vector<pid_t> processesInPidNs(const std::string& ns) {
  std::vector<pid_t> out;
  for (const auto& e : std::filesystem::directory_iterator("/proc")) {
    std::string name = e.path().filename();
    if (name.empty() || !std::all_of(name.begin(), name.end(), ::isdigit)) continue;
    pid_t pid = std::stoi(name);
    if (nsOf(pid, "pid") == ns) out.push_back(pid);
  }
  return out;
}

std::map<std::string, std::string> procStatus(pid_t pid) {
  std::map<std::string, std::string> out;
  std::istringstream in(readFile("/proc/" + std::to_string(pid) + "/status"));
  std::string line;
  while (std::getline(in, line)) {
    size_t colon = line.find(':');
    if (colon == std::string::npos) continue;
    std::string v = line.substr(colon + 1);
    v.erase(0, v.find_first_not_of(" \t"));
    out[line.substr(0, colon)] = v;
  }
  return out;
}

std::string procStatusField(pid_t pid, const std::string& field) {
  auto fields = procStatus(pid);
  auto it = fields.find(field);
  return it == fields.end() ? "" : it->second;
}

int freePort() {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  socklen_t len = sizeof a;
  if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    ADD_FAILURE() << "freePort: " << std::strerror(errno);
  }
  close(fd);
  return ntohs(a.sin_port);
}

std::string makeTempDir(const std::string& prefix) {
  std::string tmpl = "/tmp/" + prefix + "-XXXXXX";
  if (mkdtemp(tmpl.data()) == nullptr) ADD_FAILURE() << "mkdtemp: " << std::strerror(errno);
  return tmpl;
}

void removeTree(const std::string& path) {
  std::error_code ec;
  std::filesystem::remove_all(path, ec);
}

std::string readFile(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

pid_t spawnLogged(const std::vector<std::string>& argv_in, const std::vector<std::string>& env_in,
                  const std::string& log_path, const std::string& err_path) {
  std::vector<std::string> argv = argv_in;
  std::vector<std::string> env = mergedEnv(env_in);
  auto cargv = cstrings(argv);
  auto cenv = cstrings(env);
  const int flags = O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC;
  int logfd = open(log_path.c_str(), flags, 0600);
  int errfd = err_path.empty() ? logfd : open(err_path.c_str(), flags, 0600);
  if (logfd < 0 || errfd < 0) ADD_FAILURE() << "spawnLogged: open: " << std::strerror(errno);
  pid_t parent = getpid();
  pid_t pid = fork();
  if (pid == 0) {
    // A test process that dies (a crash, an abort, a harness's SIGKILL) must not leave its
    // daemon serving: the kernel sends SIGTERM (jobworkerd's clean shutdown, jobs included)
    // when the forking thread ends. A parent already gone before the prctl is caught by getppid.
    if (prctl(PR_SET_PDEATHSIG, SIGTERM, 0, 0, 0) != 0 || getppid() != parent) _exit(127);
    int devnull = open("/dev/null", O_RDONLY);
    dup2(devnull, 0);
    dup2(logfd, 1);
    dup2(errfd, 2);
    execve(cargv[0], cargv.data(), cenv.data());
    _exit(127);
  }
  if (errfd != logfd) close(errfd);
  close(logfd);
  return pid;
}

std::unique_ptr<Daemon> Daemon::start(const Options& options) {
  std::unique_ptr<Daemon> d(new Daemon());
  d->own_state_dir_ = options.state_dir.empty();
  d->state_dir_ = d->own_state_dir_ ? makeTempDir("jwstate") : options.state_dir;
  // The frontend runs as `jobworker` and never opens files after its drop; the state dir only
  // needs to be reachable by root.
  d->log_file_ = d->state_dir_ + ".log";
  d->port_ = options.port != 0 ? options.port : freePort();
  std::vector<std::string> argv = {binary("jobworkerd"), "--dev",
                                   "--state-dir",        d->state_dir_,
                                   "--listen",           "127.0.0.1:" + std::to_string(d->port_)};
  if (!options.config_text.empty()) {
    std::string conf = d->state_dir_ + ".conf";
    std::ofstream(conf) << options.config_text;
    argv.push_back("--config");
    argv.push_back(conf);
  }
  argv.insert(argv.end(), options.extra_args.begin(), options.extra_args.end());
  // The suite's "-tsan" runs name another frontend (jobworker-frontend-tsan); a test that
  // chose its own frontend, or runs jobworkerd through a prefix, keeps what it chose.
  bool chose_frontend = std::find(argv.begin(), argv.end(), "--frontend") != argv.end();
  if (std::getenv("JW_TEST_FRONTEND") != nullptr && !chose_frontend &&
      options.exec_prefix.empty()) {
    argv.push_back("--frontend");
    argv.push_back(binary("jobworker-frontend"));
  }
  argv.insert(argv.begin(), options.exec_prefix.begin(), options.exec_prefix.end());
  d->pid_ = spawnLogged(argv, options.env, d->log_file_);
  if (!d->waitHealthy(30)) {
    ADD_FAILURE() << "jobworkerd did not become healthy; its log:\n" << d->log();
  }
  return d;
}

Daemon::~Daemon() {
  if (pid_ > 0) stop();
  if (own_state_dir_) {
    removeTree(state_dir_);
  } else {
    std::error_code ec;
    for (const auto& e : std::filesystem::directory_iterator(state_dir_, ec)) removeTree(e.path());
  }
  ::unlink(log_file_.c_str());
  ::unlink((state_dir_ + ".conf").c_str());
}

int Daemon::stop() {
  if (pid_ <= 0) return -1;
  kill(pid_, SIGTERM);
  int st = waitFor(pid_, std::chrono::seconds(20));
  if (st < 0) {
    ADD_FAILURE() << "jobworkerd did not exit 20 s after SIGTERM";
    kill(pid_, SIGKILL);
    st = waitFor(pid_, std::chrono::seconds(5));
  }
  pid_ = -1;
  failOnSanitizerReport(log());
  return st;
}

int Daemon::crash() {
  if (pid_ <= 0) return -1;
  kill(pid_, SIGKILL);
  int st = waitFor(pid_, std::chrono::seconds(20));
  if (st < 0) ADD_FAILURE() << "jobworkerd did not die 20 s after SIGKILL";
  pid_ = -1;
  failOnSanitizerReport(log());
  return st;
}

// A sanitizer in a child of jobworkerd (the frontend above all: a ThreadSanitizer race, an
// ASan/UBSan report) writes to the log it inherited, and the supervisor then restarts that
// child, so the test itself may see nothing: the log decides. So it does for a helper that its
// own seccomp allowlist killed (a call the list lacks, or a sanitizer report that needed one).
void failOnSanitizerReport(const std::string& log) {
  size_t at = std::string::npos;
  for (const char* marker : {"WARNING: ThreadSanitizer", "ERROR: AddressSanitizer",
                             "ERROR: LeakSanitizer", ": runtime error: "}) {
    at = std::min(at, log.find(marker));
  }
  for (const char* helper : {"jobworkerd: frontend pid ", "jobworkerd: password verifier pid "}) {
    for (size_t p = log.find(helper); p != std::string::npos; p = log.find(helper, p + 1)) {
      size_t eol = log.find('\n', p);
      if (log.substr(p, eol - p).find("killed by signal 31 ") != std::string::npos) {
        at = std::min(at, p);
      }
    }
  }
  if (at == std::string::npos) return;
  size_t from = log.rfind('\n', at);
  from = from == std::string::npos ? 0 : from + 1;
  ADD_FAILURE() << "a sanitizer report or a seccomp kill in the daemon's log:\n"
                << log.substr(from, 6000);
}

std::string Daemon::adminPassword() const {
  std::string p = readFile(state_dir_ + "/admin-password");
  while (!p.empty() && (p.back() == '\n' || p.back() == '\r')) p.pop_back();
  return p;
}

std::string Daemon::log() const { return readFile(log_file_); }

pid_t childWithComm(pid_t parent, std::initializer_list<std::string_view> comm_prefixes) {
  for (const auto& e : std::filesystem::directory_iterator("/proc")) {
    std::string name = e.path().filename();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::string stat = readFile(e.path().string() + "/stat");
    size_t rp = stat.rfind(')');
    if (rp == std::string::npos) continue;
    std::istringstream rest(stat.substr(rp + 2));
    char state;
    pid_t ppid;
    rest >> state >> ppid;
    if (ppid != parent || state == 'Z') continue;
    std::string comm = readFile(e.path().string() + "/comm");
    for (std::string_view prefix : comm_prefixes) {
      if (comm.rfind(prefix, 0) == 0) return std::stoi(name);
    }
  }
  return -1;
}

pid_t Daemon::frontendPid() const {
  pid_t found = -1;
  waitUntil(
      [&] {
        found = childWithComm(pid_, {"jobworker-front", "relay_frontend"});
        return found > 0;
      },
      std::chrono::seconds(5));
  return found;
}

int Daemon::frontendThreads() const {
  std::string n = procStatusField(frontendPid(), "Threads");
  return n.empty() ? -1 : std::stoi(n);
}

bool Daemon::waitHealthy(int timeout_s) const {
  bool healthy = false;
  waitUntil(
      [&] {
        int status = 0;
        if (pid_ > 0 && waitpid(pid_, &status, WNOHANG) == pid_) {
          ADD_FAILURE() << "jobworkerd exited early (" << decodeWait(status) << ")";
          const_cast<Daemon*>(this)->pid_ = -1;
          return true;  // nothing left to wait for
        }
        try {
          healthy = https(*this, "GET", "/v1/healthz").status == 200;
        } catch (...) {
        }
        return healthy;
      },
      std::chrono::seconds(timeout_s));
  return healthy;
}

void Daemon::reload() {
  // jobworkerd alone holds the users (and their sessions): it logs every users file it loads,
  // and a reload it refuses; one more of either line than before the signal means it is done.
  const std::string applied = " user(s) from ", refused = "SIGHUP: keeping the previous";
  std::string before = log();
  size_t seen = occurrences(before, applied) + occurrences(before, refused);
  kill(pid_, SIGHUP);
  bool done = waitUntil(
      [&] {
        std::string now = log();
        return occurrences(now, applied) + occurrences(now, refused) > seen;
      },
      std::chrono::seconds(10));
  EXPECT_TRUE(done) << "SIGHUP: jobworkerd did not reload its users within 10 s; log:\n" << log();
}

void Daemon::addUser(const std::string& name, const std::string& role, const std::string& password,
                     const std::string& run_as) {
  CmdResult r = run({binary("jobworker-admin"), "user", "add", "--users-file", usersFile(), name,
                     "--role", role, "--run-as", run_as, "--password-stdin"},
                    password + "\n");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  kill(pid_, SIGHUP);
  std::string body = "{\"username\":\"" + name + "\",\"password\":\"" + password + "\"}";
  bool in = waitUntil([&] { return https(*this, "POST", "/v1/login", body).status == 201; },
                      std::chrono::seconds(10));
  if (!in) ADD_FAILURE() << "user " << name << " could not log in after SIGHUP";
}

HttpResponse https(const Daemon& d, const std::string& method, const std::string& path,
                   const std::string& body, const std::string& token,
                   const std::map<std::string, std::string>& headers) {
  static Poco::Net::Context::Ptr ctx;
  static std::string ctx_ca;
  if (ctx.isNull() || ctx_ca != d.caFile()) {
    ctx = new Poco::Net::Context(Poco::Net::Context::TLS_CLIENT_USE, "", "", d.caFile(),
                                 Poco::Net::Context::VERIFY_RELAXED, 9, false);
    ctx_ca = d.caFile();
  }
  Poco::Net::HTTPSClientSession s("127.0.0.1", static_cast<Poco::UInt16>(d.port()), ctx);
  s.setTimeout(Poco::Timespan(30, 0));
  Poco::Net::HTTPRequest req(method, path, Poco::Net::HTTPMessage::HTTP_1_1);
  if (!token.empty()) req.set("Authorization", "Bearer " + token);
  for (const auto& [k, v] : headers) req.set(k, v);
  if (!body.empty() || method == "POST") {
    req.setContentType("application/json");
    req.setContentLength(static_cast<std::streamsize>(body.size()));
  }
  std::ostream& os = s.sendRequest(req);
  os << body;
  Poco::Net::HTTPResponse resp;
  std::istream& is = s.receiveResponse(resp);
  HttpResponse out;
  out.status = resp.getStatus();
  for (const auto& [k, v] : resp) {
    std::string lk = k;
    for (auto& c : lk) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    out.headers[lk] = v;
  }
  Poco::StreamCopier::copyToString(is, out.body);
  return out;
}

std::string login(const Daemon& d, const std::string& user, const std::string& password) {
  HttpResponse r = https(d, "POST", "/v1/login",
                         "{\"username\":\"" + user + "\",\"password\":\"" + password + "\"}");
  EXPECT_EQ(r.status, 201) << r.body;
  return jsonField(r.body, "token");
}

std::string startJob(const Daemon& d, const std::string& token, const std::string& json_body) {
  HttpResponse r = https(d, "POST", "/v1/jobs", json_body, token);
  EXPECT_EQ(r.status, 201) << r.body;
  return jsonField(r.body, "id");
}

std::string waitJob(const Daemon& d, const std::string& token, const std::string& id,
                    int timeout_s) {
  HttpResponse r;
  bool ended = waitUntil(
      [&] {
        r = https(d, "GET", "/v1/jobs/" + id, "", token);
        return r.status != 200 || jsonField(r.body, "state") != "running";
      },
      std::chrono::seconds(timeout_s));
  if (!ended) ADD_FAILURE() << "job " << id << " still running after " << timeout_s << " s";
  return r.body;
}

std::string jsonField(const std::string& json, const std::string& key) {
  try {
    Poco::JSON::Parser p;
    auto obj = p.parse(json).extract<Poco::JSON::Object::Ptr>();
    if (!obj->has(key)) return "";
    Poco::Dynamic::Var v = obj->get(key);
    if (v.isEmpty()) return "null";
    if (v.isString()) return v.extract<std::string>();
    if (v.type() == typeid(bool)) return v.extract<bool>() ? "true" : "false";
    if (v.type() == typeid(Poco::JSON::Object::Ptr) || v.type() == typeid(Poco::JSON::Array::Ptr)) {
      std::ostringstream ss;
      if (v.type() == typeid(Poco::JSON::Object::Ptr)) {
        v.extract<Poco::JSON::Object::Ptr>()->stringify(ss);
      } else {
        v.extract<Poco::JSON::Array::Ptr>()->stringify(ss);
      }
      return ss.str();
    }
    return v.convert<std::string>();
  } catch (const Poco::Exception& e) {
    return "";
  }
}

}  // namespace jw::test
