// `jobworker-admin session list|revoke`, `token create|revoke` and `upgrade` (see
// session_cli.h): requests over the control socket, their replies printed. Runs in
// jobworker-admin, as root.
#include "tools/session_cli.h"

#include <poll.h>
#include <sodium.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "common/config.h"
#include "common/fd.h"
#include "common/log.h"
#include "common/names.h"
#include "common/protocol/channel.h"
#include "common/protocol/control_codec.h"
#include "common/protocol/token_text.h"

namespace jw::admin {

namespace {

constexpr int kExitOk = 0;
constexpr int kExitFailure = 1;
constexpr int kExitUsage = 2;
constexpr int kReplyTimeoutMs = 10'000;
constexpr uint32_t kRequestId = 1;

constexpr const char* kUsage =
    "usage: jobworker-admin session list [USER] [--control PATH] [--config FILE] [-o table|json]\n"
    "       jobworker-admin session revoke USER [--control PATH] [--config FILE]\n"
    "       jobworker-admin session revoke --id ID [--control PATH] [--config FILE]\n"
    "\n"
    "  list    every live session (of USER only, when given): id, user, role, remote address\n"
    "          of the login, created, expires, last used (never a token)\n"
    "  revoke  end every session of USER, or the one session ID from `list`, at once: its next\n"
    "          request is refused (401) and open follow streams end; the account stays (see\n"
    "          `user del`)\n"
    "  --id ID         the session's id as `list` shows it (12 hex digits)\n"
    "  --control PATH  jobworkerd's control socket (default: control_socket from the config,\n"
    "                  else <state_dir>/control.sock, i.e. /var/lib/jobworker/control.sock)\n"
    "  --config FILE   read control_socket / state_dir from FILE (default\n"
    "                  /etc/jobworker/jobworkerd.conf when it exists)\n";

struct Options {
  std::string verb;
  std::string user;                       // revoke USER; list USER ("": every user)
  std::optional<std::string> session_id;  // revoke --id ID
  std::optional<std::string> control, config;
  bool json = false;
};

int usage(const std::string& why) {
  if (!why.empty()) std::fprintf(stderr, "jobworker-admin session: %s\n", why.c_str());
  std::fputs(kUsage, stderr);
  return kExitUsage;
}

// Returns kExitOk or the usage exit status (after printing why).
int parseArgs(int argc, char** argv, Options* o) {
  std::vector<std::string> positional;
  for (int i = 1; i < argc; i++) {
    std::string a = argv[i];
    auto value = [&](std::optional<std::string>* out) {
      if (i + 1 >= argc) return false;
      *out = argv[++i];
      return true;
    };
    if (a == "--id") {
      if (!value(&o->session_id)) return usage("--id needs a session ID");
    } else if (a == "--control") {
      if (!value(&o->control)) return usage("--control needs a PATH");
    } else if (a == "--config") {
      if (!value(&o->config)) return usage("--config needs a FILE");
    } else if (a == "-o" || a == "--output") {
      std::optional<std::string> fmt;
      if (!value(&fmt) || (*fmt != "json" && *fmt != "table")) return usage("-o table|json");
      o->json = *fmt == "json";
    } else if (!a.empty() && a[0] == '-') {
      return usage("unknown option " + a);
    } else {
      positional.push_back(a);
    }
  }
  if (positional.empty()) return usage("");
  o->verb = positional[0];
  if (o->verb == "list") {
    if (positional.size() > 2) return usage("list takes at most one USER");
    if (o->session_id) return usage("--id is for revoke");
    if (positional.size() == 2) {
      o->user = positional[1];
      if (!names::validUserName(o->user)) return usage("invalid user name " + log::quote(o->user));
    }
  } else if (o->verb == "revoke") {
    if (o->json) return usage("-o is for list");
    if (o->session_id) {
      if (positional.size() != 1) return usage("revoke takes either USER or --id ID");
      if (!protocol::validSessionId(*o->session_id)) {
        return usage("invalid session id " + log::quote(*o->session_id) + " (" +
                     std::to_string(protocol::kSessionIdLength) + " hex digits, as `list` shows)");
      }
    } else {
      if (positional.size() != 2) return usage("revoke takes one USER (or --id ID)");
      o->user = positional[1];
      if (!names::validUserName(o->user)) {
        return usage("invalid user name " + log::quote(o->user));
      }
    }
  } else {
    return usage("unknown verb " + log::quote(o->verb));
  }
  return kExitOk;
}

Result<std::string> controlPath(const Options& o) {
  if (o.control) return *o.control;
  std::string file = o.config ? *o.config : kDefaultConfigFile;
  if (!o.config && access(file.c_str(), F_OK) != 0) {
    return config::controlSocketPath(config::Settings{});
  }
  auto s = config::load(file);
  if (!s) return Error{"configuration: " + s.error().message};
  return config::controlSocketPath(s.value());
}

Result<UniqueFd> connectControl(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof(addr.sun_path)) return Error{"control socket path too long: " + path};
  std::memcpy(addr.sun_path, path.data(), path.size());
  UniqueFd fd(socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
  if (!fd) return sysError("socket(AF_UNIX, SOCK_SEQPACKET)");
  if (connect(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) == 0) return fd;
  if (errno == ENOENT || errno == ECONNREFUSED) {
    return Error{"jobworkerd is not running (nothing listening on " + path + ")"};
  }
  if (errno == EACCES || errno == EPERM) {
    return Error{"permission denied on " + path +
                 ": the control socket is root-only; run jobworker-admin as root"};
  }
  return sysError("connect to " + path);
}

// One reply frame, waiting at most kReplyTimeoutMs.
Result<std::string> receive(int fd) {
  pollfd p{fd, POLLIN, 0};
  int n;
  do {
    n = poll(&p, 1, kReplyTimeoutMs);
  } while (n < 0 && errno == EINTR);
  if (n < 0) return sysError("poll on the control socket");
  if (n == 0) return Error{"no answer from jobworkerd within 10 s"};
  std::string frame;
  auto r = protocol::recvFrame(fd, &frame);
  if (!r) return r.error();
  if (r.value() != protocol::RecvStatus::kFrame) {
    return Error{"jobworkerd closed the connection without answering (only root may use it)"};
  }
  return frame;
}

// Header of a reply to our request; a ControlError reply becomes the error.
Result<protocol::ControlFrameHeader> replyHeader(const std::string& frame,
                                                 std::string_view* payload) {
  auto h = protocol::decodeControlHeader(frame, payload);
  if (!h) return Error{"bad reply from jobworkerd: " + h.error().message};
  if (h->request_id != kRequestId) return Error{"reply to another request from jobworkerd"};
  if (h->type == protocol::ControlMsgType::kControlError) {
    auto e = protocol::decodeControlErrorPayload(*payload);
    if (!e) return Error{"bad reply from jobworkerd: " + e.error().message};
    return Error{"jobworkerd refused: " + e->message};
  }
  return h;
}

// The next reply to our request, which must be a `want` frame: its header, with *payload pointing
// into *frame (the caller owns the bytes, so it can wipe a token out of them).
Result<protocol::ControlFrameHeader> receiveReply(int fd, protocol::ControlMsgType want,
                                                  std::string* frame, std::string_view* payload) {
  auto received = receive(fd);
  if (!received) return received.error();
  *frame = std::move(received.value());
  auto h = replyHeader(*frame, payload);
  if (!h) return h.error();
  if (h->type != want) return Error{"unexpected reply from jobworkerd"};
  return h;
}

std::string isoTime(int64_t ms) {
  time_t t = static_cast<time_t>(ms / 1000);
  tm utc{};
  gmtime_r(&t, &utc);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &utc);
  return buf;
}

// The remote address is whatever the frontend asserted: nothing but printable ASCII reaches
// the administrator's terminal or JSON.
std::string printable(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c < 0x20 || c > 0x7e) c = '?';
  }
  return out;
}

std::string jsonString(std::string_view s) {
  std::string out = "\"";
  for (char c : printable(s)) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + "\"";
}

std::string jsonTimeOrNull(int64_t ms) { return ms == 0 ? "null" : jsonString(isoTime(ms)); }

void printJson(const std::vector<protocol::ControlSessionInfo>& all) {
  std::string out = "[";
  for (size_t i = 0; i < all.size(); i++) {
    const auto& s = all[i];
    out += (i ? ",\n " : "") + std::string("{\"id\":") + jsonString(s.id) +
           ",\"user\":" + jsonString(s.user) +
           ",\"role\":" + jsonString(protocol::roleName(s.role)) +
           ",\"remote_addr\":" + (s.remote_addr.empty() ? "null" : jsonString(s.remote_addr)) +
           ",\"created_at\":" + jsonTimeOrNull(s.created_at_ms) +
           ",\"expires_at\":" + jsonTimeOrNull(s.expires_at_ms) +
           ",\"last_used_at\":" + jsonTimeOrNull(s.last_used_at_ms) + "}";
  }
  std::printf("%s]\n", out.c_str());
}

void printTable(const std::vector<protocol::ControlSessionInfo>& all) {
  constexpr const char* kRow = "%-12s  %-16s  %-6s  %-39s  %-20s  %-20s  %s\n";
  std::printf(kRow, "ID", "USER", "ROLE", "REMOTE", "CREATED", "EXPIRES", "LAST USED");
  for (const auto& s : all) {
    std::string remote = s.remote_addr.empty() ? "-" : printable(s.remote_addr);
    std::string used = s.last_used_at_ms == 0 ? "-" : isoTime(s.last_used_at_ms);
    std::printf(kRow, s.id.c_str(), s.user.c_str(), std::string(protocol::roleName(s.role)).c_str(),
                remote.c_str(), isoTime(s.created_at_ms).c_str(), isoTime(s.expires_at_ms).c_str(),
                used.c_str());
  }
}

Status listSessions(int fd, bool json, const std::string& user) {
  if (Status st = protocol::sendFrame(fd, protocol::encodeControlSessionList(kRequestId, {}));
      !st) {
    return st;
  }
  std::vector<protocol::ControlSessionInfo> all;
  for (;;) {
    std::string frame;
    std::string_view payload;
    auto h = receiveReply(fd, protocol::ControlMsgType::kControlSessions, &frame, &payload);
    if (!h) return h.error();
    auto part = protocol::decodeControlSessionsPayload(payload);
    if (!part) return Error{"bad reply from jobworkerd: " + part.error().message};
    for (auto& one : part->sessions) {
      if (user.empty() || one.user == user) all.push_back(std::move(one));
    }
    if ((h->flags & protocol::kFlagMore) == 0) break;
  }
  if (json) {
    printJson(all);
  } else {
    printTable(all);
  }
  return okStatus();
}

// Sends a revocation and prints how many sessions it ended, naming `what` was revoked.
Status revoke(int fd, const std::string& request, const std::string& what) {
  if (Status st = protocol::sendFrame(fd, request); !st) return st;
  std::string frame;
  std::string_view payload;
  if (auto h = receiveReply(fd, protocol::ControlMsgType::kControlRevoked, &frame, &payload); !h) {
    return h.error();
  }
  auto n = protocol::decodeControlRevokedPayload(payload);
  if (!n) return Error{"bad reply from jobworkerd: " + n.error().message};
  std::printf("revoked %u session(s) %s\n", n->count, what.c_str());
  return okStatus();
}

Status runVerb(int fd, const Options& o) {
  if (o.verb == "list") return listSessions(fd, o.json, o.user);
  if (o.session_id) {
    return revoke(fd, protocol::encodeControlSessionRevokeId(kRequestId, {*o.session_id}),
                  "with id " + *o.session_id);
  }
  return revoke(fd, protocol::encodeControlSessionRevokeUser(kRequestId, {o.user}), "of " + o.user);
}

constexpr const char* kTokenUsage =
    "usage: jobworker-admin token create USER --expires DURATION [--control PATH] [--config "
    "FILE]\n"
    "       jobworker-admin token revoke ID [--control PATH] [--config FILE]\n"
    "\n"
    "  create  a scrape token for USER, a users-file account of role metrics: it opens\n"
    "          GET /metrics (and whoami) only, until it expires (90d, 12h, ...; at most\n"
    "          max_token_ttl, default 366d). The token is printed once, alone on stdout (redirect\n"
    "          it into Prometheus' bearer token file); jobworkerd keeps only its hash. Its id\n"
    "          and expiry go to stderr.\n"
    "  revoke  end the token with id ID (as `create` printed it and `session list` shows it);\n"
    "          `session revoke USER` ends all of a user's\n";

int tokenUsage(const std::string& why) {
  if (!why.empty()) std::fprintf(stderr, "jobworker-admin token: %s\n", why.c_str());
  std::fputs(kTokenUsage, stderr);
  return kExitUsage;
}

struct TokenOptions {
  std::string verb, user, id;
  std::optional<std::string> expires;
  Options connection;  // --control, --config
};

int parseTokenArgs(int argc, char** argv, TokenOptions* o) {
  std::vector<std::string> positional;
  for (int i = 1; i < argc; i++) {
    std::string a = argv[i];
    std::optional<std::string>* target = a == "--expires"   ? &o->expires
                                         : a == "--control" ? &o->connection.control
                                         : a == "--config"  ? &o->connection.config
                                                            : nullptr;
    if (target != nullptr) {
      if (i + 1 >= argc) return tokenUsage(a + " needs a value");
      *target = argv[++i];
    } else if (!a.empty() && a[0] == '-') {
      return tokenUsage("unknown option " + a);
    } else {
      positional.push_back(a);
    }
  }
  if (positional.size() != 2) return tokenUsage("");
  o->verb = positional[0];
  if (o->verb == "create") {
    o->user = positional[1];
    if (!names::validUserName(o->user))
      return tokenUsage("invalid user name " + log::quote(o->user));
    // No default: a token that never expires turns a leaked file into a door left open.
    if (!o->expires) return tokenUsage("--expires is required (e.g. --expires 90d)");
  } else if (o->verb == "revoke") {
    o->id = positional[1];
    if (o->expires) return tokenUsage("--expires is for create");
    if (!protocol::validSessionId(o->id))
      return tokenUsage("invalid token id " + log::quote(o->id));
  } else {
    return tokenUsage("unknown verb " + log::quote(o->verb));
  }
  return kExitOk;
}

Status createToken(int fd, const std::string& user, uint64_t ttl_ms) {
  if (Status st =
          protocol::sendFrame(fd, protocol::encodeControlTokenCreate(kRequestId, {user, ttl_ms}));
      !st) {
    return st;
  }
  std::string frame;
  std::string_view payload;
  if (auto h = receiveReply(fd, protocol::ControlMsgType::kControlToken, &frame, &payload); !h) {
    return h.error();
  }
  auto reply = protocol::decodeControlTokenPayload(payload);
  sodium_memzero(frame.data(), frame.size());
  if (!reply) return Error{"bad reply from jobworkerd: " + reply.error().message};
  std::string text = protocol::tokenText(reply->token);
  sodium_memzero(reply->token.bytes.data(), reply->token.bytes.size());
  std::printf("%s\n", text.c_str());
  std::fflush(stdout);
  sodium_memzero(text.data(), text.size());
  std::fprintf(stderr, "token %s for %s, expires %s\n", reply->id.c_str(), user.c_str(),
               isoTime(reply->expires_at_ms).c_str());
  return okStatus();
}

}  // namespace

int runTokenCommand(int argc, char** argv) {
  if (argc >= 2 && (std::string(argv[1]) == "--help" || std::string(argv[1]) == "-h")) {
    std::fputs(kTokenUsage, stdout);
    return kExitOk;
  }
  TokenOptions o;
  if (int rc = parseTokenArgs(argc, argv, &o); rc != kExitOk) return rc;
  uint64_t ttl_ms = 0;
  if (o.expires) {
    auto ttl = config::parseDurationMs(*o.expires);
    if (!ttl || ttl.value() == 0) return tokenUsage("--expires: not a duration: " + *o.expires);
    ttl_ms = ttl.value();
  }
  auto path = controlPath(o.connection);
  if (!path) {
    log::err(path.error().message);
    return kExitFailure;
  }
  auto fd = connectControl(path.value());
  if (!fd) {
    log::err(fd.error().message);
    return kExitFailure;
  }
  Status st = o.verb == "create"
                  ? createToken(fd->get(), o.user, ttl_ms)
                  : revoke(fd->get(), protocol::encodeControlSessionRevokeId(kRequestId, {o.id}),
                           "with id " + o.id);
  if (!st) {
    log::err(st.error().message);
    return kExitFailure;
  }
  return kExitOk;
}

int runSessionCommand(int argc, char** argv) {
  if (argc >= 2 && (std::string(argv[1]) == "--help" || std::string(argv[1]) == "-h")) {
    std::fputs(kUsage, stdout);
    return kExitOk;
  }
  Options o;
  if (int rc = parseArgs(argc, argv, &o); rc != kExitOk) return rc;
  auto path = controlPath(o);
  if (!path) {
    log::err(path.error().message);
    return kExitFailure;
  }
  auto fd = connectControl(path.value());
  if (!fd) {
    log::err(fd.error().message);
    return kExitFailure;
  }
  if (Status st = runVerb(fd->get(), o); !st) {
    log::err(st.error().message);
    return kExitFailure;
  }
  return kExitOk;
}

namespace {

constexpr const char* kUpgradeUsage =
    "usage: jobworker-admin upgrade [--binary PATH] [--control PATH] [--config FILE]\n"
    "\n"
    "  Replaces the running jobworkerd by PATH (default: the binary it was started from, i.e.\n"
    "  the one a package upgrade has just installed) under the same PID: jobworkerd runs\n"
    "  `PATH --check-state` on its state dir, writes its records out and execs PATH, which\n"
    "  takes every running job over (no job is signalled, no output byte lost); the frontend\n"
    "  restarts and followers reconnect. A refused check or a failed exec leaves the old\n"
    "  jobworkerd serving (exit 1). PATH must be owned by root and writable by nobody else.\n";

constexpr int kUpgradeTimeoutMs = 60'000;  // the check (30 s at most), the exec, the take-over

int upgradeUsage(const std::string& why) {
  if (!why.empty()) std::fprintf(stderr, "jobworker-admin upgrade: %s\n", why.c_str());
  std::fputs(kUpgradeUsage, stderr);
  return kExitUsage;
}

Result<protocol::ControlInfoPayload> askInfo(int fd) {
  if (Status st = protocol::sendFrame(fd, protocol::encodeControlInfo(kRequestId, {})); !st) {
    return st.error();
  }
  auto frame = receive(fd);
  if (!frame) return frame.error();
  std::string_view payload;
  auto h = replyHeader(frame.value(), &payload);
  if (!h) return h.error();
  if (h->type != protocol::ControlMsgType::kControlInfoReply) {
    return Error{"unexpected reply from jobworkerd"};
  }
  auto info = protocol::decodeControlInfoReplyPayload(payload);
  if (!info) return Error{"bad reply from jobworkerd: " + info.error().message};
  return info.value();
}

// After the exec the control socket is the new image's, once it has taken the jobs over.
Result<protocol::ControlInfoPayload> infoOfNewImage(const std::string& path, int64_t after_ms) {
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::milliseconds(kUpgradeTimeoutMs);
  std::string last = "no answer";
  while (std::chrono::steady_clock::now() < deadline) {
    auto fd = connectControl(path);
    if (fd) {
      auto info = askInfo(fd->get());
      if (info && info->image_started_at_ms >= after_ms) return info;
      last = info ? "the old image still answers" : info.error().message;
    } else {
      last = fd.error().message;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return Error{"the upgraded jobworkerd did not answer within 60 s (" + last + ")"};
}

Status upgrade(const std::string& path, const std::string& binary) {
  auto fd = connectControl(path);
  if (!fd) return fd.error();
  auto before = askInfo(fd->get());
  if (!before) return before.error();
  if (Status st =
          protocol::sendFrame(fd->get(), protocol::encodeControlUpgrade(kRequestId, {binary}));
      !st) {
    return st;
  }
  // A refusal arrives as ControlError; a successful exec closes the connection.
  pollfd p{fd->get(), POLLIN, 0};
  int n;
  do {
    n = poll(&p, 1, kUpgradeTimeoutMs);
  } while (n < 0 && errno == EINTR);
  if (n <= 0) return Error{"no answer from jobworkerd within 60 s"};
  std::string frame;
  auto r = protocol::recvFrame(fd->get(), &frame);
  if (!r) return r.error();
  if (r.value() == protocol::RecvStatus::kFrame) {
    std::string_view payload;
    auto h = replyHeader(frame, &payload);
    if (!h)
      return Error{h.error().message + "; jobworkerd " + std::to_string(before->pid) + " (" +
                   before->version + ") keeps running"};
    return Error{"unexpected reply from jobworkerd"};
  }
  auto after = infoOfNewImage(path, before->image_started_at_ms + 1);
  if (!after) return after.error();
  if (after->pid != before->pid) {
    return Error{"jobworkerd now runs as pid " + std::to_string(after->pid) + ", not " +
                 std::to_string(before->pid) + ": it was restarted rather than upgraded"};
  }
  std::printf(
      "jobworkerd pid %d upgraded in place: %s -> %s; %u running job(s) taken over (%u "
      "before)\n",
      after->pid, before->version.c_str(), after->version.c_str(), after->running_jobs,
      before->running_jobs);
  return okStatus();
}

}  // namespace

int runUpgradeCommand(int argc, char** argv) {
  Options connection;
  std::string binary;
  for (int i = 1; i < argc; i++) {
    std::string a = argv[i];
    if (a == "--help" || a == "-h") {
      std::fputs(kUpgradeUsage, stdout);
      return kExitOk;
    }
    std::optional<std::string> value;
    if (a != "--binary" && a != "--control" && a != "--config") {
      return upgradeUsage("unknown argument " + log::quote(a));
    }
    if (i + 1 >= argc) return upgradeUsage(a + " needs a value");
    value = argv[++i];
    if (a == "--binary") {
      if (value->empty() || (*value)[0] != '/')
        return upgradeUsage("--binary needs an absolute PATH");
      binary = *value;
    } else if (a == "--control") {
      connection.control = value;
    } else {
      connection.config = value;
    }
  }
  auto path = controlPath(connection);
  if (!path) {
    log::err(path.error().message);
    return kExitFailure;
  }
  if (Status st = upgrade(path.value(), binary); !st) {
    log::err(st.error().message);
    return kExitFailure;
  }
  return kExitOk;
}

}  // namespace jw::admin
