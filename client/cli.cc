// The jobworker CLI's commands (CLI process): login/logout/whoami, start/run/stop, status/list,
// logs. Every failure becomes one line on stderr, "jobworker: <what>: <what to do>".
#include "client/cli.h"

#include <Poco/JSON/Array.h>
#include <Poco/JSON/Parser.h>
#include <Poco/Timestamp.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <sstream>
#include <thread>

#include "client/api_client.h"
#include "client/completion.h"
#include "client/event_stream.h"
#include "client/job_ref.h"
#include "client/output_format.h"
#include "jw_build_config.h"

namespace jw::client {
namespace {

const char* realGetenv(const char* name) { return std::getenv(name); }

void printError(const std::string& msg) {
  std::string line = "jobworker: " + msg + "\n";
  std::fwrite(line.data(), 1, line.size(), stderr);
  std::fflush(stderr);
}

int fail(const std::string& msg, int code) {
  printError(msg);
  return code;
}

void printOut(const std::string& text) {
  std::fwrite(text.data(), 1, text.size(), stdout);
  std::fflush(stdout);
}

void printJson(const std::string& body) {
  printOut(body.empty() || body.back() != '\n' ? body + "\n" : body);
}

// Writes all of `data` to fd; false when the reader went away (EPIPE) or the fd is broken.
bool writeFd(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

// A closed stdout (`jobworker logs ID | head`) ends us the way it ends cat: by SIGPIPE.
[[noreturn]] void dieOfBrokenPipe() {
  signal(SIGPIPE, SIG_DFL);
  sigset_t s;
  sigemptyset(&s);
  sigaddset(&s, SIGPIPE);
  pthread_sigmask(SIG_UNBLOCK, &s, nullptr);
  raise(SIGPIPE);
  _exit(141);
}

// ---- terminal prompts -------------------------------------------------------------------------

int g_tty_fd = -1;
struct termios g_saved_tty;

// Puts the terminal's echo back if the user interrupts the password prompt.
void restoreTtyAndReraise(int sig) {
  if (g_tty_fd >= 0) tcsetattr(g_tty_fd, TCSAFLUSH, &g_saved_tty);
  signal(sig, SIG_DFL);
  raise(sig);
}

Result<std::string> promptTty(const std::string& prompt, bool echo) {
  int fd = open("/dev/tty", O_RDWR | O_CLOEXEC | O_NOCTTY);
  if (fd < 0) return sysError("cannot open /dev/tty");
  writeFd(fd, prompt);
  struct termios old {};
  bool changed = false;
  struct sigaction sa {
  }, old_int{}, old_term{}, old_hup{}, old_quit{};
  if (!echo && tcgetattr(fd, &old) == 0) {
    g_saved_tty = old;
    g_tty_fd = fd;
    sa.sa_handler = restoreTtyAndReraise;
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
    sigaction(SIGHUP, &sa, &old_hup);
    sigaction(SIGQUIT, &sa, &old_quit);
    struct termios t = old;
    t.c_lflag &= ~static_cast<tcflag_t>(ECHO);
    changed = tcsetattr(fd, TCSAFLUSH, &t) == 0;
  }
  std::string line;
  char c;
  bool got_eof = true;
  while (line.size() < 4096) {
    ssize_t n = read(fd, &c, 1);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    if (c == '\n') {
      got_eof = false;
      break;
    }
    line += c;
  }
  if (changed) {
    tcsetattr(fd, TCSAFLUSH, &old);
    writeFd(fd, "\n");
  }
  if (!echo) {
    sigaction(SIGINT, &old_int, nullptr);
    sigaction(SIGTERM, &old_term, nullptr);
    sigaction(SIGHUP, &old_hup, nullptr);
    sigaction(SIGQUIT, &old_quit, nullptr);
    g_tty_fd = -1;
  }
  close(fd);
  if (got_eof && line.empty()) return Error{"no input"};
  if (!line.empty() && line.back() == '\r') line.pop_back();
  return line;
}

// The first line of stdin, without its line ending.
Result<std::string> readPasswordStdin() {
  std::string line;
  char c;
  while (true) {
    ssize_t n = read(0, &c, 1);
    if (n < 0) {
      if (errno == EINTR) continue;
      return sysError("cannot read the password from stdin");
    }
    if (n == 0 || c == '\n') break;
    line += c;
    if (line.size() > 4096) return Error{"password on stdin is too long"};
  }
  if (!line.empty() && line.back() == '\r') line.pop_back();
  if (line.empty())
    return Error{"empty password on stdin: pipe the password into --password-stdin"};
  return line;
}

// ---- connection set-up ------------------------------------------------------------------------

std::string loginHint(const std::string& server) {
  return "run 'jobworker login --server " + (server.empty() ? "https://HOST:PORT" : server) + "'";
}

// Same server? Compared after normalisation, so "localhost:8443" equals "https://localhost:8443/".
bool sameServer(const std::string& a, const std::string& b) {
  auto ua = parseServerUrl(a);
  auto ub = parseServerUrl(b);
  return ua && ub && ua->text == ub->text;
}

struct Context {
  Invocation inv;
  int failure_code = kExitFailure;
  std::string config_dir;    // $XDG_CONFIG_HOME/jobworker
  std::string context_name;  // the context this command uses
  std::string config_path;   // its file
  std::optional<CliConfig> config;
};

// The directory of the CLI's files, with an old single-server config.json migrated into the
// context "default" on first use.
std::optional<std::string> loadConfigDir(Context& ctx) {
  auto path = configPath(realGetenv);
  if (!path) return path.error().message;
  ctx.config_dir = path.value().substr(0, path.value().rfind('/'));
  auto migrated = migrateLegacyConfig(ctx.config_dir);
  if (!migrated) return migrated.error().message;
  if (migrated.value()) {
    printError("note: moved " + path.value() + " to the context '" + kDefaultContext +
               "' (jobworker context list)");
  }
  return std::nullopt;
}

// Loads the context's file (missing is fine for login; unsafe permissions never are): --context,
// else JOBWORKER_CONTEXT, else the current context, else "default".
std::optional<std::string> loadContextConfig(Context& ctx) {
  if (auto err = loadConfigDir(ctx)) return err;
  const char* env = realGetenv("JOBWORKER_CONTEXT");
  std::string name = ctx.inv.context.value_or(env != nullptr ? env : "");
  const bool named = !name.empty();
  if (!named) {
    auto current = currentContext(ctx.config_dir);
    if (!current) return current.error().message;
    name = current.value().empty() ? kDefaultContext : current.value();
  }
  if (!validContextName(name)) return "bad context name '" + name + "'";
  ctx.context_name = name;
  ctx.config_path = contextFile(ctx.config_dir, name);
  auto cfg = loadConfig(ctx.config_path);
  if (!cfg) return cfg.error().message;
  ctx.config = cfg.value();
  if (named && !ctx.config && ctx.inv.command != Command::kLogin) {
    return "no context '" + name + "': add it with 'jobworker context add " + name +
           " --server URL'";
  }
  return std::nullopt;
}

// A ready client with the session token; prints the error otherwise (exit with
// ctx.failure_code).
// The context's TLS session ticket, beside its token file (contexts/NAME.tls-session, 0600):
// the next command resumes the TLS session instead of a full handshake.
std::string ticketFile(const Context& ctx) {
  std::string base = ctx.config_path;
  if (base.size() > 5 && base.compare(base.size() - 5, 5, ".json") == 0)
    base.resize(base.size() - 5);
  return base.empty() ? "" : base + ".tls-session";
}

std::optional<ApiClient> connect(Context& ctx) {
  if (auto err = loadContextConfig(ctx)) {
    printError(*err);
    return std::nullopt;
  }
  ConnectionSettings cs = resolveConnection(ctx.inv, realGetenv, ctx.config);
  if (cs.server.empty()) {
    printError("not logged in: " + loginHint(""));
    return std::nullopt;
  }
  if (cs.token.empty()) {
    auto url = parseServerUrl(cs.server);
    printError("not logged in: " + loginHint(url ? url->text : cs.server));
    return std::nullopt;
  }
  ApiClient::Settings s;
  s.server = cs.server;
  s.ca_file = cs.ca_file;
  s.token = cs.token;
  s.tls_session_file = ticketFile(ctx);
  auto client = ApiClient::create(s);
  if (!client) {
    printError(client.error().message);
    return std::nullopt;
  }
  return std::move(client.value());
}

// For stop, status and logs: the client and the job id their ID argument names.
struct JobTarget {
  ApiClient client;
  std::string id;
};

std::optional<JobTarget> connectToJob(Context& ctx) {
  auto client = connect(ctx);
  if (!client) return std::nullopt;
  auto id = resolveJobId(client.value(), ctx.inv.job);
  if (!id) {
    printError(id.error().message);
    return std::nullopt;
  }
  return JobTarget{std::move(client.value()), id.value()};
}

// For stop, status, wait and rm: the client and the ids of every ID argument, all resolved before
// anything is done, so a mistyped one fails before the others are touched.
struct JobTargets {
  ApiClient client;
  std::vector<std::string> ids;
};

std::optional<JobTargets> connectToJobs(Context& ctx) {
  auto client = connect(ctx);
  if (!client) return std::nullopt;
  JobTargets t{std::move(client.value()), {}};
  for (const auto& ref : ctx.inv.jobs) {
    auto id = resolveJobId(t.client, ref);
    if (!id) {
      printError(id.error().message);
      return std::nullopt;
    }
    t.ids.push_back(id.value());
  }
  return t;
}

// Several JSON documents of one command as one: {"jobs":[...]}; one stays itself.
void printJsonDocuments(const std::vector<std::string>& docs) {
  if (docs.size() == 1) return printJson(docs[0]);
  std::string out = "{\"jobs\":[";
  for (size_t i = 0; i < docs.size(); ++i) out += (i ? "," : "") + docs[i];
  printJson(out + "]}");
}

// The response when it arrived with one of the `ok` statuses; otherwise prints why not (`what`
// names the object for httpError, "" for none).
std::optional<Response> expectStatus(const ApiClient& client, ClientResult<Response> r,
                                     std::initializer_list<int> ok, const std::string& what) {
  if (!r) {
    printError(r.error().message);
    return std::nullopt;
  }
  if (std::find(ok.begin(), ok.end(), r->status) == ok.end()) {
    printError(httpError(r.value(), what, client.server()).message);
    return std::nullopt;
  }
  return std::move(r.value());
}

// ---- commands ---------------------------------------------------------------------------------

// Where to log in: the server URL and the CA file (stored absolute: later commands run from
// other directories). Prints the error and sets *code otherwise.
struct LoginTarget {
  ServerUrl url;
  std::string ca_file;
};

std::optional<LoginTarget> loginTarget(Context& ctx, int* code) {
  *code = kExitFailure;
  if (auto err = loadContextConfig(ctx)) {
    printError(*err);
    return std::nullopt;
  }
  ConnectionSettings cs = resolveConnection(ctx.inv, realGetenv, ctx.config);
  *code = kExitUsage;
  if (cs.server.empty()) {
    printError("no server given: run 'jobworker login --server https://HOST:PORT'");
    return std::nullopt;
  }
  auto url = parseServerUrl(cs.server);
  if (!url) {
    printError(url.error().message);
    return std::nullopt;
  }
  LoginTarget target{url.value(), cs.ca_file};
  if (!target.ca_file.empty()) {
    char resolved[PATH_MAX];
    if (realpath(target.ca_file.c_str(), resolved) == nullptr) {
      printError("cannot read CA file " + target.ca_file + ": " + std::strerror(errno) +
                 ": check --ca-file");
      *code = kExitFailure;
      return std::nullopt;
    }
    target.ca_file = resolved;
  }
  return target;
}

// --user, or asked on the terminal.
std::optional<std::string> loginUser(const Invocation& inv) {
  if (inv.user) return *inv.user;
  auto typed = promptTty("User: ", true);
  if (!typed || typed->empty()) {
    printError("no user name: pass --user NAME");
    return std::nullopt;
  }
  return typed.value();
}

// The first line of stdin with --password-stdin, or asked on the terminal without echo.
std::optional<std::string> loginPassword(const Invocation& inv, const std::string& user,
                                         const ServerUrl& url) {
  if (inv.password_stdin) {
    auto p = readPasswordStdin();
    if (!p) {
      printError(p.error().message);
      return std::nullopt;
    }
    return std::move(p.value());
  }
  auto p = promptTty("Password for " + user + " at " + url.text + ": ", false);
  if (!p) {
    printError("cannot prompt for the password (no terminal): pipe it in with --password-stdin");
    return std::nullopt;
  }
  return std::move(p.value());
}

void printLoggedIn(const Invocation& inv, const CliConfig& cfg) {
  if (inv.output == OutputFormat::kJson) {
    Poco::JSON::Object o(Poco::JSON_PRESERVE_KEY_ORDER);
    o.set("server", cfg.server);
    o.set("user", cfg.user);
    o.set("role", cfg.role);
    o.set("expires_at", cfg.expires_at);
    std::ostringstream os;
    o.stringify(os);
    printJson(os.str());
    return;
  }
  printOut("Logged in to " + cfg.server + " as " + cfg.user +
           (cfg.role.empty() ? "" : " (role " + cfg.role + ")") +
           (cfg.expires_at.empty() ? "" : "; the session expires at " + cfg.expires_at) + ".\n");
}

int cmdLogin(Context& ctx) {
  const Invocation& inv = ctx.inv;
  int code = kExitFailure;
  auto target = loginTarget(ctx, &code);
  if (!target) return code;
  auto user = loginUser(inv);
  if (!user) return kExitUsage;
  auto password = loginPassword(inv, *user, target->url);
  if (!password) return kExitFailure;
  ApiClient::Settings s;
  s.server = target->url.text;
  s.ca_file = target->ca_file;
  s.tls_session_file = ticketFile(ctx);
  auto client = ApiClient::create(s);
  if (!client) return fail(client.error().message, kExitFailure);
  auto info = client->login(*user, *password);
  std::fill(password->begin(), password->end(), '\0');
  if (!info) return fail(info.error().message, kExitFailure);
  CliConfig cfg;
  cfg.server = target->url.text;
  cfg.ca_file = target->ca_file;
  cfg.token = info->token;
  cfg.user = info->user;
  cfg.role = info->role;
  cfg.expires_at = info->expires_at;
  Status saved = saveConfig(ctx.config_path, cfg);
  if (!saved) {
    return fail("logged in, but cannot store the session: " + saved.error().message, kExitFailure);
  }
  if (auto current = currentContext(ctx.config_dir); current && current.value().empty()) {
    (void)setCurrentContext(ctx.config_dir, ctx.context_name);  // the first context becomes it
  }
  printLoggedIn(inv, cfg);
  if (realGetenv("JOBWORKER_TOKEN") != nullptr) {
    printError("note: JOBWORKER_TOKEN is set and takes precedence over the stored token: unset it");
  }
  return kExitOk;
}

int cmdLogout(Context& ctx) {
  auto client = connect(ctx);
  if (!client) return ctx.failure_code;
  ConnectionSettings cs = resolveConnection(ctx.inv, realGetenv, ctx.config);
  auto r = client->request("POST", "/v1/logout");
  std::optional<std::string> revoke_error;
  if (!r) {
    revoke_error = r.error().message;
  } else if (r->status >= 400 && r->status != 401) {
    revoke_error = httpError(r.value(), "", client->server()).message;
  }
  if (cs.token_from_config && ctx.config) {
    CliConfig cfg = *ctx.config;
    cfg.token.clear();
    cfg.role.clear();
    cfg.expires_at.clear();
    Status saved = saveConfig(ctx.config_path, cfg);
    if (!saved) return fail("cannot remove the token: " + saved.error().message, kExitFailure);
    unlink(ticketFile(ctx).c_str());  // nothing of the session stays behind
  }
  if (revoke_error) {
    return fail("could not revoke the session (" + *revoke_error + ")" +
                    (cs.token_from_config ? ": the token was removed here and stays valid on the "
                                            "server until it expires"
                                          : ""),
                kExitFailure);
  }
  if (!cs.token_from_config) {
    printError("note: the session is revoked; JOBWORKER_TOKEN still holds it: unset it");
  }
  if (ctx.inv.output != OutputFormat::kJson)
    printOut("Logged out of " + client->server().text + ".\n");
  return kExitOk;
}

int cmdWhoami(Context& ctx) {
  auto client = connect(ctx);
  if (!client) return ctx.failure_code;
  auto r = expectStatus(*client, client->request("GET", "/v1/whoami"), {200}, "");
  if (!r) return kExitFailure;
  if (ctx.inv.output == OutputFormat::kJson) {
    printJson(r->body);
    return kExitOk;
  }
  auto o = r->object();
  if (!o) return fail(client->server().text + " sent an unexpected answer to whoami", kExitFailure);
  printOut("user:   " + o->optValue<std::string>("user", "?") + "\nrole:   " +
           o->optValue<std::string>("role", "?") + "\nserver: " + client->server().text + "\n");
  return kExitOk;
}

// POST /v1/jobs; returns the status object, or prints the error and sets *code.
Poco::JSON::Object::Ptr startJob(Context& ctx, const ApiClient& client, std::string* body_out,
                                 int* code) {
  const int failure = ctx.failure_code;
  *code = failure;
  auto request = buildJobRequest(ctx.inv.spec, realGetenv);
  if (!request) {
    printError(request.error().message);
    *code = usageExitCode(ctx.inv.command);
    return nullptr;
  }
  auto r = client.request("POST", "/v1/jobs", request.value());
  if (!r) {
    printError(r.error().message);
    return nullptr;
  }
  const std::string prog = ctx.inv.spec.command[0];
  if (r->status == 422) {
    if (ctx.inv.command == Command::kRun) *code = startFailureExitStatus(r->status, r->errorCode());
    printError("cannot run '" + prog + "': " + r->errorMessage());
    return nullptr;
  }
  if (r->status == 400) {
    printError("the server refused the job (" + r->errorMessage() + "): check the flags");
    return nullptr;
  }
  if (r->status != 201 && r->status != 200) {
    printError(httpError(r.value(), "", client.server()).message);
    return nullptr;
  }
  auto o = r->object();
  if (!o || !o->has("id")) {
    printError(client.server().text + " answered the job start without an id");
    return nullptr;
  }
  *body_out = r->body;
  return o;
}

// -i: our stdin to the job's until its EOF. Nothing when the upload went through or the job
// closed its stdin early (a pipeline's writer would get EPIPE and stop the same way); else why.
std::optional<std::string> sendStdin(const ApiClient& client, const std::string& id) {
  auto r = client.upload("/v1/jobs/" + id + "/stdin", STDIN_FILENO);
  if (!r) return "sending stdin to job " + shortId(id) + ": " + r.error().message;
  if (r->status == 200 || r->status == 409) return std::nullopt;
  return "sending stdin to job " + shortId(id) + ": " +
         httpError(r.value(), "job " + shortId(id), client.server()).message;
}

int cmdStart(Context& ctx) {
  auto client = connect(ctx);
  if (!client) return ctx.failure_code;
  int code = kExitFailure;
  std::string body;
  auto job = startJob(ctx, client.value(), &body, &code);
  if (!job) return code;
  if (ctx.inv.spec.stdin_pipe) {
    if (auto e = sendStdin(client.value(), job->getValue<std::string>("id"))) {
      return fail(*e, kExitFailure);
    }
  }
  if (ctx.inv.output == OutputFormat::kJson) {
    printJson(body);
  } else {
    printOut(job->getValue<std::string>("id") + "\n");
  }
  return kExitOk;
}

// Ctrl-C handling for `run`: SIGINT is blocked in every thread and taken here with sigwait, so
// the reaction (an HTTPS request) runs in a normal thread instead of a signal handler.
class InterruptWatcher {
 public:
  InterruptWatcher(const ApiClient& client, std::string id) : client_(client), id_(std::move(id)) {
    thread_ = std::thread([this] { loop(); });
  }
  ~InterruptWatcher() {
    pthread_kill(thread_.native_handle(), SIGUSR2);
    thread_.join();
  }
  InterruptWatcher(const InterruptWatcher&) = delete;
  InterruptWatcher& operator=(const InterruptWatcher&) = delete;

  // SIGINT and our private wake-up signal must be blocked before any thread starts.
  static void blockSignals() {
    sigset_t s = signals();
    pthread_sigmask(SIG_BLOCK, &s, nullptr);
  }

 private:
  static sigset_t signals() {
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, SIGINT);
    sigaddset(&s, SIGUSR2);
    return s;
  }

  void loop() {
    sigset_t s = signals();
    int presses = 0;
    while (true) {
      int sig = 0;
      if (sigwait(&s, &sig) != 0) return;
      if (sig == SIGUSR2) return;
      if (++presses == 1) {
        printError("stopping job " + shortId(id_) + " (Ctrl-C again to detach)");
        auto r = client_.request("POST", "/v1/jobs/" + id_ + "/stop");
        if (!r) {
          printError("could not stop job " + shortId(id_) + ": " + r.error().message);
        } else if (r->status >= 400 && r->status != 409) {
          printError("could not stop job " + shortId(id_) + ": " +
                     httpError(r.value(), "job " + shortId(id_), client_.server()).message);
        }
        continue;
      }
      printError("detached; reattach with: jobworker logs -f " + id_);
      _exit(kExitDetached);
    }
  }

  const ApiClient& client_;
  std::string id_;
  std::thread thread_;
};

LogRequest logRequest(const std::string& id, const std::string& stream, bool follow) {
  LogRequest lr;
  lr.job_id = id;
  lr.follow = follow;
  lr.stream = stream;
  return lr;
}

ClientResult<LogStreamEnd> streamTo(const ApiClient& client, const LogRequest& lr, int fd) {
  int write_errno = 0;
  auto r = client.streamLogs(
      lr,
      [fd, &write_errno](std::string_view piece) {
        if (writeFd(fd, piece)) return true;
        if (errno == EPIPE) dieOfBrokenPipe();
        write_errno = errno;
        return false;  // streamLogs() reports aborted
      },
      [&client](const ClientError&, unsigned attempt) {
        // One note per outage; the stream resumes at the exact byte, so there is nothing to fix.
        if (attempt == 1)
          printError("connection to " + client.server().text + " interrupted; reconnecting");
      });
  if (r && r->aborted) {
    return ClientError{ClientError::Kind::kLocal,
                       std::string("cannot write the output (") + std::strerror(write_errno) +
                           "): check the disk or the output file",
                       0, ""};
  }
  return r;
}

// Streams the job's output (stdout and stderr apart with --separate-stderr) until it ends.
std::optional<ClientError> streamRunOutput(const Context& ctx, const ApiClient& client,
                                           const std::string& id) {
  if (!ctx.inv.spec.separate_stderr) {
    auto r = streamTo(client, logRequest(id, "", true), 1);
    return r ? std::nullopt : std::optional<ClientError>(r.error());
  }
  std::optional<ClientError> err_lost;
  std::thread err_thread([&] {
    auto r = streamTo(client, logRequest(id, "stderr", true), 2);
    if (!r) err_lost = r.error();
  });
  std::optional<ClientError> lost;
  auto r = streamTo(client, logRequest(id, "stdout", true), 1);
  if (!r) lost = r.error();
  err_thread.join();
  return lost ? lost : err_lost;
}

// What `run` exits with once the output has ended: the job's status, with a note on stderr when
// it was killed for memory or stopped by its timeout.
int runExitStatus(const ApiClient& client, const std::string& id) {
  // The follow stream ended with the job and confirmed it with the final status; else the long
  // poll answers with it at once (and would wait, should the job still be publishing it).
  auto known = client.knownFinalStatus(id);
  ClientResult<Response> st = known
                                  ? ClientResult<Response>(std::move(*known))
                                  : client.request("GET", "/v1/jobs/" + id + "/wait?timeout_s=60");
  if (!st) return fail(st.error().message, kExitRunFailure);
  if (st->status != 200 || !st->object()) {
    return fail(httpError(st.value(), "job " + shortId(id), client.server()).message,
                kExitRunFailure);
  }
  auto status = st->object();
  std::string state = status->optValue<std::string>("state", "");
  if (state == "failed") {
    return fail("job " + shortId(id) +
                    " failed: " + status->optValue<std::string>("error", "unknown error"),
                kExitRunFailure);
  }
  if (status->has("oom_killed") && status->get("oom_killed").isBoolean() &&
      status->getValue<bool>("oom_killed")) {
    printError("job " + shortId(id) + " was killed: out of memory (raise --memory)");
  } else if (status->optValue<std::string>("stopped_by", "") == "timeout") {
    printError("job " + shortId(id) + " was stopped: --timeout reached");
  }
  return jobExitStatus(status);
}

int cmdRun(Context& ctx) {
  auto client = connect(ctx);
  if (!client) return ctx.failure_code;
  // Blocked before the job exists, so an early Ctrl-C stops the job instead of orphaning it.
  InterruptWatcher::blockSignals();
  int code = kExitRunFailure;
  std::string body;
  auto job = startJob(ctx, client.value(), &body, &code);
  if (!job) return code;
  const std::string id = job->getValue<std::string>("id");
  if (ctx.inv.spec.stdin_pipe) {
    // Detached: an interactive stdin may never reach its EOF, and the job's end (or a detach)
    // ends `run` whatever the upload is doing; the output is what we wait for.
    std::thread([c = client.value(), id] {
      if (auto e = sendStdin(c, id)) printError(*e);
    }).detach();
  }
  std::optional<ClientError> lost;
  {
    InterruptWatcher watcher(client.value(), id);
    lost = streamRunOutput(ctx, client.value(), id);
  }
  if (lost) {
    return fail(lost->message + "; the job was not stopped: reattach with: jobworker logs -f " + id,
                kExitRunFailure);
  }
  return runExitStatus(client.value(), id);
}

int cmdStop(Context& ctx) {
  auto jobs = connectToJobs(ctx);
  if (!jobs) return ctx.failure_code;
  Poco::JSON::Object::Ptr body;
  if (ctx.inv.grace_ms) {
    body = new Poco::JSON::Object;
    setSeconds(*body, "grace_s", *ctx.inv.grace_ms);
  }
  int code = kExitOk;
  std::vector<std::string> docs;
  for (const auto& id : jobs->ids) {
    auto r = jobs->client.request("POST", "/v1/jobs/" + id + "/stop", body);
    if (r && r->status == 409) {
      code = fail("job " + shortId(id) + " has already finished: nothing to stop", kExitFailure);
      continue;
    }
    auto stopped = expectStatus(jobs->client, std::move(r), {202, 200}, "job " + id);
    if (!stopped) {
      code = kExitFailure;
      continue;
    }
    if (ctx.inv.output == OutputFormat::kJson) {
      docs.push_back(stopped->body);
    } else {
      printOut(id + "\n");
    }
  }
  if (!docs.empty()) printJsonDocuments(docs);
  return code;
}

int cmdStatus(Context& ctx) {
  auto jobs = connectToJobs(ctx);
  if (!jobs) return ctx.failure_code;
  int code = kExitOk;
  std::vector<std::string> docs;
  for (size_t i = 0; i < jobs->ids.size(); ++i) {
    const std::string& id = jobs->ids[i];
    auto r = expectStatus(jobs->client, jobs->client.request("GET", "/v1/jobs/" + id), {200},
                          "job " + id);
    if (!r) {
      code = kExitFailure;
      continue;
    }
    if (ctx.inv.output == OutputFormat::kJson || ctx.inv.output == OutputFormat::kYaml) {
      docs.push_back(r->body);
      continue;
    }
    if (ctx.inv.output == OutputFormat::kName) {
      printOut(id + "\n");
      continue;
    }
    auto o = r->object();
    if (!o) {
      code = fail(jobs->client.server().text + " sent an unexpected job status", kExitFailure);
      continue;
    }
    printOut((i > 0 ? "\n" : "") + formatStatus(o, Poco::Timestamp()));
  }
  if (docs.empty()) return code;
  if (ctx.inv.output == OutputFormat::kYaml) {
    for (size_t i = 0; i < docs.size(); ++i) printOut((i > 0 ? "---\n" : "") + jsonToYaml(docs[i]));
  } else {
    printJsonDocuments(docs);
  }
  return code;
}

// One job's final status through the long poll: asks again every minute until the job ended or
// the deadline (steady clock ms, 0: none) passed. Null after printing why.
Poco::JSON::Object::Ptr waitForEnd(const ApiClient& client, const std::string& id,
                                   uint64_t deadline_ms, std::string* body) {
  using Clock = std::chrono::steady_clock;
  auto now_ms = [] {
    return static_cast<uint64_t>(
        std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now().time_since_epoch())
            .count());
  };
  for (;;) {
    uint64_t wait_ms = 60'000;
    if (deadline_ms != 0)
      wait_ms = deadline_ms > now_ms() ? std::min(wait_ms, deadline_ms - now_ms()) : 0;
    std::string q = std::to_string(wait_ms / 1000) + "." + std::to_string(wait_ms % 1000 / 100);
    auto r = expectStatus(client, client.request("GET", "/v1/jobs/" + id + "/wait?timeout_s=" + q),
                          {200}, "job " + id);
    if (!r) return nullptr;
    auto o = r->object();
    if (!o) {
      printError(client.server().text + " sent an unexpected job status");
      return nullptr;
    }
    if (o->optValue<std::string>("state", "running") != "running") {
      *body = r->body;
      return o;
    }
    if (deadline_ms != 0 && now_ms() >= deadline_ms) {
      printError("job " + shortId(id) + " is still running after --timeout");
      return nullptr;
    }
  }
}

int cmdWait(Context& ctx) {
  auto jobs = connectToJobs(ctx);
  if (!jobs) return ctx.failure_code;
  uint64_t deadline = 0;
  if (ctx.inv.wait_timeout_ms) {
    deadline = static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                         std::chrono::steady_clock::now().time_since_epoch())
                                         .count()) +
               *ctx.inv.wait_timeout_ms;
  }
  std::optional<int> first;
  std::vector<std::string> docs;
  bool failed = false;
  for (const auto& id : jobs->ids) {
    std::string body;
    auto o = waitForEnd(jobs->client, id, deadline, &body);
    if (!o) {
      failed = true;
      if (!first) first = kExitFailure;
      continue;
    }
    int code = jobExitStatus(o);
    if (!first) first = code;
    if (ctx.inv.output == OutputFormat::kJson) {
      docs.push_back(body);
    } else {
      printOut(std::to_string(code) + "\n");
    }
  }
  if (!docs.empty()) printJsonDocuments(docs);
  return failed && first == kExitFailure ? kExitFailure : first.value_or(kExitFailure);
}

int cmdRm(Context& ctx) {
  auto jobs = connectToJobs(ctx);
  if (!jobs) return ctx.failure_code;
  int code = kExitOk;
  for (const auto& id : jobs->ids) {
    auto r = jobs->client.request("DELETE", "/v1/jobs/" + id);
    if (r && r->status == 409) {
      code = fail("job " + shortId(id) + " is still running: stop it first ('jobworker stop " +
                      shortId(id) + "')",
                  kExitFailure);
      continue;
    }
    if (!expectStatus(jobs->client, std::move(r), {204}, "job " + id)) {
      code = kExitFailure;
      continue;
    }
    if (ctx.inv.output != OutputFormat::kJson) printOut(id + "\n");
  }
  return code;
}

int cmdVersion(Context& ctx) {
  const std::string mine = std::string("jobworker ") + JW_VERSION;
  auto client = connect(ctx);
  if (!client) {
    printOut("client: " + mine + "\n");
    return kExitFailure;
  }
  auto r = expectStatus(*client, client->request("GET", "/v1/version"), {200}, "");
  if (ctx.inv.output == OutputFormat::kJson) {
    printJson("{\"client\":{\"version\":\"" + std::string(JW_VERSION) +
              "\"},\"server\":" + (r ? r->body : std::string("null")) + "}");
    return r ? kExitOk : kExitFailure;
  }
  printOut("client: " + mine + "\n");
  if (!r) return kExitFailure;
  auto o = r->object();
  if (!o) return fail(client->server().text + " sent an unexpected version answer", kExitFailure);
  std::string features;
  if (auto f = o->getArray("features")) {
    for (size_t i = 0; i < f->size(); ++i)
      features += (i ? " " : "") + f->getElement<std::string>(static_cast<unsigned>(i));
  }
  printOut("server: jobworkerd " + o->optValue<std::string>("version", "?") + " at " +
           client->server().text + " (API " + o->optValue<std::string>("api_version", "?") +
           ", cgroups " + o->optValue<std::string>("cgroup_backend", "?") +
           ")\nfeatures: " + features + "\n");
  return kExitOk;
}

// The table's layout: on a terminal it fits the width and colours states (unless NO_COLOR is set
// and not empty, no-color.org); piped, nothing is cut or coloured.
TableStyle tableStyle(const Invocation& inv) {
  TableStyle style;
  style.wide = inv.output == OutputFormat::kWide;
  style.no_trunc = inv.no_trunc;
  if (isatty(STDOUT_FILENO) == 1) {
    winsize ws{};
    if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0) style.columns = ws.ws_col;
    const char* no_color = realGetenv("NO_COLOR");
    style.colour = no_color == nullptr || no_color[0] == '\0';
  }
  return style;
}

int cmdList(Context& ctx) {
  auto client = connect(ctx);
  if (!client) return ctx.failure_code;
  std::string path = "/v1/jobs";
  auto add = [&path](const std::string& k, const std::string& v) {
    path += (path.find('?') == std::string::npos ? "?" : "&") + k + "=" + urlEncode(v);
  };
  if (ctx.inv.all) add("all", "true");
  if (ctx.inv.state) add("state", *ctx.inv.state);
  if (ctx.inv.owner) add("owner", *ctx.inv.owner);
  if (ctx.inv.limit) add("limit", std::to_string(*ctx.inv.limit));
  if (!ctx.inv.label_filter.empty()) {
    std::string labels;
    for (const auto& l : ctx.inv.label_filter) labels += (labels.empty() ? "" : ",") + l;
    add("label", labels);
  }
  auto answer = client->request("GET", path);
  if (answer && answer->status == 403 && ctx.inv.all) {
    return fail("your role may not list every job: drop --all to list your own", kExitFailure);
  }
  auto r = expectStatus(*client, std::move(answer), {200}, "");
  if (!r) return kExitFailure;
  if (ctx.inv.output == OutputFormat::kJson) {
    printJson(r->body);
    return kExitOk;
  }
  if (ctx.inv.output == OutputFormat::kYaml) {
    printOut(jsonToYaml(r->body));
    return kExitOk;
  }
  auto o = r->object();
  auto jobs = o ? o->getArray("jobs") : nullptr;
  if (!jobs) return fail(client->server().text + " sent a job list without 'jobs'", kExitFailure);
  if (ctx.inv.quiet || ctx.inv.output == OutputFormat::kName) {
    std::string ids;
    for (size_t i = 0; i < jobs->size(); ++i) {
      auto job = jobs->getObject(static_cast<unsigned>(i));
      if (job) ids += job->optValue<std::string>("id", "") + "\n";
    }
    printOut(ids);
    return kExitOk;
  }
  printOut(formatJobTable(jobs, Poco::Timestamp(), tableStyle(ctx.inv)));
  return kExitOk;
}

int cmdLogs(Context& ctx) {
  auto job = connectToJob(ctx);
  if (!job) return ctx.failure_code;
  LogRequest lr = logRequest(job->id, ctx.inv.stream.value_or(""), ctx.inv.follow);
  lr.tail_lines = ctx.inv.tail_lines;
  lr.since = ctx.inv.since.value_or("");
  lr.timestamps = ctx.inv.timestamps;
  auto r = streamTo(job->client, lr, 1);
  if (!r) {
    ClientError e = r.error();
    if (e.kind == ClientError::Kind::kHttp && e.http_status == 404) {
      e.message = "job " + job->id + " not found: list jobs with 'jobworker list'";
    }
    return fail(e.message, kExitFailure);
  }
  return kExitOk;
}

// One event as a line for people: time, short id, type, owner, and what it says.
std::string formatEvent(const Poco::JSON::Object::Ptr& e) {
  auto job = e->getObject("job");
  std::string line = e->optValue<std::string>("time", "?") + "  " +
                     shortId(job ? job->optValue<std::string>("id", "?") : "?") + "  " +
                     e->optValue<std::string>("type", "?") + "  " +
                     (job ? job->optValue<std::string>("owner", "?") : "?");
  if (job && job->has("name") && job->get("name").isString()) {
    line += "  name=" + job->getValue<std::string>("name");
  }
  if (e->has("exit_code") && !e->get("exit_code").isEmpty()) {
    line += "  exit_code=" + e->get("exit_code").toString();
  }
  if (e->has("signal") && !e->get("signal").isEmpty()) {
    line += "  signal=" + e->get("signal").toString();
  }
  if (e->has("stopped_by") && e->get("stopped_by").isString()) {
    line += "  by=" + e->getValue<std::string>("stopped_by");
  }
  if (e->has("error") && e->get("error").isString()) {
    line += "  error=" + e->getValue<std::string>("error");
  }
  return line + "\n";
}

int cmdEvents(Context& ctx) {
  auto client = connect(ctx);
  if (!client) return ctx.failure_code;
  EventStreamRequest req;
  if (ctx.inv.event_job) {
    auto id = resolveJobId(client.value(), *ctx.inv.event_job);
    if (!id) return fail(id.error().message, kExitFailure);
    req.job_id = id.value();
  }
  const bool json = ctx.inv.output == OutputFormat::kJson;
  auto r = followEvents(
      client.value(), req,
      [&](std::string_view line, uint64_t) {
        if (json) {
          printOut(std::string(line) + "\n");
          return true;
        }
        try {
          Poco::JSON::Parser parser;
          auto o = parser.parse(std::string(line)).extract<Poco::JSON::Object::Ptr>();
          printOut(formatEvent(o));
        } catch (const Poco::Exception&) {
          printOut(std::string(line) + "\n");
        }
        return true;
      },
      [](const std::string& note) { printError(note); });
  if (!r) return fail(r.error().message, kExitFailure);
  return kExitOk;
}

// context add NAME --server URL [--ca-file PEM]
int contextAdd(Context& ctx) {
  const Invocation& inv = ctx.inv;
  if (!validContextName(inv.context_name)) {
    return fail("bad context name '" + inv.context_name + "': use [A-Za-z0-9][A-Za-z0-9_.-]{0,62}",
                kExitUsage);
  }
  if (!inv.server) return fail("context add needs --server URL", kExitUsage);
  auto url = parseServerUrl(*inv.server);
  if (!url) return fail(url.error().message, kExitUsage);
  const std::string path = contextFile(ctx.config_dir, inv.context_name);
  auto existing = loadConfig(path);
  if (!existing) return fail(existing.error().message, kExitFailure);
  if (existing.value()) {
    return fail("context '" + inv.context_name + "' exists (" + existing.value()->server + ")",
                kExitFailure);
  }
  CliConfig cfg;
  cfg.server = url->text;
  if (inv.ca_file) {
    char resolved[PATH_MAX];
    if (realpath(inv.ca_file->c_str(), resolved) == nullptr) {
      return fail(
          "cannot read CA file " + *inv.ca_file + ": " + std::strerror(errno) + ": check --ca-file",
          kExitFailure);
    }
    cfg.ca_file = resolved;
  }
  Status saved = saveConfig(path, cfg);
  if (!saved) return fail(saved.error().message, kExitFailure);
  if (auto current = currentContext(ctx.config_dir); current && current.value().empty()) {
    (void)setCurrentContext(ctx.config_dir, inv.context_name);
  }
  printOut("added context " + inv.context_name + " (" + cfg.server +
           "): log in with 'jobworker login --context " + inv.context_name + "'\n");
  return kExitOk;
}

int contextList(Context& ctx) {
  auto names = listContexts(ctx.config_dir);
  if (!names) return fail(names.error().message, kExitFailure);
  auto current = currentContext(ctx.config_dir);
  if (!current) return fail(current.error().message, kExitFailure);
  Poco::JSON::Array::Ptr list = new Poco::JSON::Array;
  std::string table = "CURRENT  NAME                 SERVER                              USER\n";
  for (const auto& n : names.value()) {
    auto cfg = loadConfig(contextFile(ctx.config_dir, n));
    if (!cfg) return fail(cfg.error().message, kExitFailure);
    CliConfig c = cfg.value().value_or(CliConfig{});
    std::string user = c.token.empty() ? "(not logged in)" : c.user;
    Poco::JSON::Object::Ptr o = new Poco::JSON::Object(Poco::JSON_PRESERVE_KEY_ORDER);
    o->set("name", n);
    o->set("server", c.server);
    o->set("user", c.token.empty() ? "" : c.user);
    o->set("current", n == current.value());
    list->add(o);
    auto pad = [](std::string s, size_t w) {
      return s.size() >= w ? s + " " : s.append(w - s.size(), ' ');
    };
    table += pad(n == current.value() ? "*" : "", 9) + pad(n, 21) + pad(c.server, 36) + user + "\n";
  }
  if (ctx.inv.output == OutputFormat::kJson) {
    std::ostringstream os;
    Poco::JSON::Object o(Poco::JSON_PRESERVE_KEY_ORDER);
    o.set("current", current.value());
    o.set("contexts", list);
    o.stringify(os);
    printJson(os.str());
  } else {
    printOut(table);
  }
  return kExitOk;
}

int cmdContext(Context& ctx) {
  if (auto err = loadConfigDir(ctx)) return fail(*err, kExitFailure);
  if (ctx.inv.context_action == "add") return contextAdd(ctx);
  if (ctx.inv.context_action == "list") return contextList(ctx);
  const std::string& name = ctx.inv.context_name;
  auto cfg = validContextName(name) ? loadConfig(contextFile(ctx.config_dir, name))
                                    : Result<std::optional<CliConfig>>(Error{"bad context name"});
  if (!cfg || !cfg.value()) {
    return fail("no context '" + name + "': see 'jobworker context list'", kExitFailure);
  }
  Status set = setCurrentContext(ctx.config_dir, name);
  if (!set) return fail(set.error().message, kExitFailure);
  printOut("using context " + name + " (" + cfg.value()->server + ")\n");
  return kExitOk;
}

int cmdCompletion(Context& ctx) {
  auto script = completionScript(ctx.inv.shell);
  if (!script) return fail("no completion for shell '" + ctx.inv.shell + "'", kExitUsage);
  printOut(*script);
  return kExitOk;
}

struct CommandHandler {
  Command command;
  int (*run)(Context&);
};

constexpr CommandHandler kHandlers[] = {
    {Command::kLogin, cmdLogin},     {Command::kLogout, cmdLogout},
    {Command::kWhoami, cmdWhoami},   {Command::kStart, cmdStart},
    {Command::kRun, cmdRun},         {Command::kStop, cmdStop},
    {Command::kStatus, cmdStatus},   {Command::kList, cmdList},
    {Command::kLogs, cmdLogs},       {Command::kWait, cmdWait},
    {Command::kEvents, cmdEvents},   {Command::kRm, cmdRm},
    {Command::kVersion, cmdVersion}, {Command::kCompletion, cmdCompletion},
    {Command::kContext, cmdContext},
};

// Every command from kLogin to kContext has exactly one handler (kNone and kHelp are answered
// with help texts before dispatch).
constexpr bool everyHandlerOnce() {
  for (int c = static_cast<int>(Command::kLogin); c <= static_cast<int>(Command::kCompletion);
       ++c) {
    int n = 0;
    for (const auto& h : kHandlers) n += static_cast<int>(h.command) == c ? 1 : 0;
    if (n != 1) return false;
  }
  return std::size(kHandlers) ==
         static_cast<size_t>(Command::kContext) - static_cast<size_t>(Command::kLogin) + 1;
}
static_assert(everyHandlerOnce(), "each CLI command needs exactly one handler in kHandlers");

}  // namespace

ConnectionSettings resolveConnection(const Invocation& inv, const EnvLookup& getenv_fn,
                                     const std::optional<CliConfig>& config) {
  auto env = [&](const char* name) -> std::string {
    const char* v = getenv_fn ? getenv_fn(name) : nullptr;
    return v ? v : "";
  };
  ConnectionSettings cs;
  cs.server = inv.server.value_or(env("JOBWORKER_SERVER"));
  bool config_matches = false;
  if (config && !config->server.empty()) {
    if (cs.server.empty()) cs.server = config->server;
    config_matches = sameServer(cs.server, config->server);
  }
  cs.ca_file = inv.ca_file.value_or(env("JOBWORKER_CA_FILE"));
  if (cs.ca_file.empty() && config_matches) cs.ca_file = config->ca_file;
  cs.token = env("JOBWORKER_TOKEN");
  if (cs.token.empty() && config_matches) {
    cs.token = config->token;
    cs.token_from_config = !cs.token.empty();
  }
  return cs;
}

int runCli(const std::vector<std::string>& args) {
  ParseOutcome parsed = parseCommandLine(args);
  Context ctx;
  ctx.inv = parsed.inv;
  ctx.failure_code = ctx.inv.command == Command::kRun ? kExitRunFailure : kExitFailure;
  if (parsed.usage_error) {
    std::string cmd = commandName(ctx.inv.command);
    std::string hint =
        cmd.empty() || cmd == "help" ? "jobworker --help" : "jobworker " + cmd + " --help";
    const std::string& msg = *parsed.usage_error;
    // Messages that already show the right form need no pointer to --help.
    bool shows_form = msg.find("'jobworker ") != std::string::npos;
    return fail(shows_form ? msg : msg + ": see '" + hint + "'", usageExitCode(ctx.inv.command));
  }
  if (ctx.inv.version) {
    printOut(std::string("jobworker ") + JW_VERSION + "\n");
    return kExitOk;
  }
  if (ctx.inv.command == Command::kHelp) {
    printOut(helpText(ctx.inv.help_topic));
    return kExitOk;
  }
  if (ctx.inv.help || ctx.inv.command == Command::kNone) {
    printOut(helpText(ctx.inv.command));
    return kExitOk;
  }
  for (const auto& h : kHandlers) {
    if (h.command == ctx.inv.command) return h.run(ctx);
  }
  return kExitOk;  // not reached: everyHandlerOnce() covers every command
}

}  // namespace jw::client
