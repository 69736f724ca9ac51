// A compromised frontend, built for the integration tests only (never installed): jobworkerd
// starts it with `--frontend` in place of jobworker-frontend. While still root it connects to the
// test's control socket (JW_HOSTILE_SOCKET), then makes the real frontend's privilege drop
// (frontend/privilege_drop: the shared sequence with the frontend's own seccomp allowlist), sends
// Ready and runs the attacks the test names: one command line in, one result line out. What it
// can still do after the drop is what a compromised jobworker-frontend can do. Runs as
// jobworkerd's child.
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sodium.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "common/protocol/channel.h"
#include "common/protocol/codec.h"
#include "frontend/privilege_drop.h"

namespace jw::test::hostile {
namespace {

using namespace jw::protocol;

constexpr int kChannelFd = 3;
constexpr int kReplyTimeoutMs = 60'000;  // a password check under load may take seconds

struct Args {
  std::string run_as;
  std::string tls_key;
};

[[noreturn]] void die(const std::string& why) {
  std::fprintf(stderr, "hostile_frontend: %s\n", why.c_str());
  _exit(1);
}

Args parseArgs(int argc, char** argv) {
  Args a;
  for (int i = 1; i + 1 < argc; i++) {
    std::string k = argv[i];
    if (k == "--run-as") a.run_as = argv[i + 1];
    if (k == "--tls-key") a.tls_key = argv[i + 1];
  }
  // The attacks are only worth something after the real drop to an unprivileged account.
  if (a.run_as.empty()) die("needs --run-as (a root jobworkerd): the drop is the point");
  return a;
}

int connectControl() {
  const char* path = std::getenv("JW_HOSTILE_SOCKET");
  if (path == nullptr) die("JW_HOSTILE_SOCKET is not set");
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  if (std::strlen(path) >= sizeof a.sun_path) die("JW_HOSTILE_SOCKET is too long");
  std::strcpy(a.sun_path, path);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0 || connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    die(std::string("connect ") + path + ": " + std::strerror(errno));
  }
  return fd;
}

// The control connection: lines in, lines out.
class Control {
 public:
  explicit Control(int fd) : fd_(fd) {}
  std::optional<std::string> readLine() {
    for (;;) {
      size_t nl = buf_.find('\n');
      if (nl != std::string::npos) {
        std::string line = buf_.substr(0, nl);
        buf_.erase(0, nl + 1);
        return line;
      }
      char chunk[4096];
      ssize_t n = read(fd_, chunk, sizeof chunk);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return std::nullopt;
      buf_.append(chunk, static_cast<size_t>(n));
    }
  }
  void writeLine(std::string line) {
    for (char& c : line) c = c == '\n' ? ' ' : c;
    line += '\n';
    size_t off = 0;
    while (off < line.size()) {
      ssize_t n = write(fd_, line.data() + off, line.size() - off);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) _exit(0);  // the test has gone
      off += static_cast<size_t>(n);
    }
  }

 private:
  int fd_;
  std::string buf_;
};

std::string errnoText(int err) {
  const char* name = strerrorname_np(err);
  return std::string(name != nullptr ? name : "E?") + " (" + std::strerror(err) + ")";
}

std::string hex(const uint8_t* p, size_t n) {
  static const char* kDigits = "0123456789abcdef";
  std::string out;
  for (size_t i = 0; i < n; i++) {
    out += kDigits[p[i] >> 4];
    out += kDigits[p[i] & 15];
  }
  return out;
}

std::optional<Token> parseHexToken(const std::string& s) {
  Token t;
  if (s.size() != 2 * kTokenSize) return std::nullopt;
  for (size_t i = 0; i < kTokenSize; i++) {
    unsigned v = 0;
    if (std::sscanf(s.c_str() + 2 * i, "%2x", &v) != 1) return std::nullopt;
    t.bytes[i] = static_cast<uint8_t>(v);
  }
  return t;
}

// A token named by the test: 64 hex digits (one it saw minted), "random" (one it never saw),
// "flip:HEX" (a seen one with its last bit flipped: well-formed, never minted) or "hash:HEX"
// (BLAKE2b of a seen one: what the supervisor stores, which must not work as the credential).
std::optional<Token> tokenSpec(const std::string& spec) {
  Token t;
  if (spec == "random") {
    randombytes_buf(t.bytes.data(), t.bytes.size());
    return t;
  }
  auto colon = spec.find(':');
  std::string kind = colon == std::string::npos ? "" : spec.substr(0, colon);
  auto seen = parseHexToken(colon == std::string::npos ? spec : spec.substr(colon + 1));
  if (!seen) return std::nullopt;
  if (kind == "flip") seen->bytes[kTokenSize - 1] ^= 1;
  if (kind == "hash") {
    crypto_generichash(t.bytes.data(), t.bytes.size(), seen->bytes.data(), seen->bytes.size(),
                       nullptr, 0);
    return t;
  }
  return seen;
}

// The supervisor's answer to one request, as one line.
std::string describe(MsgType type, std::string_view payload) {
  switch (type) {
    case MsgType::kLoginReply: {
      auto r = decodeLoginReplyPayload(payload);
      if (!r) return "LoginReply (undecodable)";
      return "LoginReply token=" + hex(r->token.bytes.data(), r->token.bytes.size()) +
             " role=" + std::string(roleName(r->role));
    }
    case MsgType::kErrorReply: {
      auto e = decodeErrorReplyPayload(payload);
      if (!e) return "ErrorReply (undecodable)";
      return "ErrorReply code=" + std::to_string(static_cast<int>(e->code)) +
             " retry=" + std::to_string(e->retry_after_s) + " message=" + e->message;
    }
    case MsgType::kJobStatus: {
      auto s = decodeJobStatusPayload(payload);
      if (!s) return "JobStatus (undecodable)";
      return "JobStatus id=" + s->id + " owner=" + s->owner +
             " state=" + std::string(jobStateName(s->state));
    }
    case MsgType::kJobListReply: {
      auto l = decodeJobListReplyPayload(payload);
      return "JobListReply jobs=" + (l ? std::to_string(l->jobs.size()) : std::string("?"));
    }
    case MsgType::kOutputChunk: {
      auto c = decodeOutputChunkPayload(payload);
      return "OutputChunk bytes=" + (c ? std::to_string(c->data.size()) : std::string("?"));
    }
    case MsgType::kSessionInfo: {
      auto i = decodeSessionInfoPayload(payload);
      return "SessionInfo user=" + (i ? i->user : std::string("?"));
    }
    default:
      return std::string(msgTypeName(static_cast<uint16_t>(type)));
  }
}

class Attacker {
 public:
  Attacker(Control& control, Args args) : control_(control), args_(std::move(args)) {}

  void run() {
    while (auto line = control_.readLine()) {
      std::istringstream in(*line);
      std::vector<std::string> w;
      for (std::string s; in >> s;) w.push_back(s == "-" ? "" : s);
      if (w.empty()) continue;
      control_.writeLine(execute(w));
    }
    _exit(0);  // the test closed the control socket
  }

 private:
  std::string execute(const std::vector<std::string>& w) {
    const std::string& verb = w[0];
    auto arg = [&](size_t i) { return i < w.size() ? w[i] : std::string(); };
    if (verb == "login") return login(arg(1), arg(2), arg(3));
    if (verb == "bruteforce") return bruteForce(arg(1), std::stoi(arg(2)));
    if (verb == "health") return request([](uint32_t id) { return encodeHealth(id, {}); });
    if (verb == "oversized") return oversized(std::stoul(arg(1)));
    if (verb == "raw") return raw(arg(1));
    if (verb == "open") return tryOpen(arg(1) == "tls-key" ? args_.tls_key : arg(1), O_RDONLY);
    if (verb == "opendir") return tryOpen(arg(1), O_RDONLY | O_DIRECTORY);
    if (verb == "create") return tryOpen(arg(1), O_WRONLY | O_CREAT | O_EXCL);
    if (verb == "exec") return exec(arg(1));
    if (verb == "signal") return signalProcess(std::stoi(arg(1)));
    if (verb == "setuid") return setRoot();
    if (verb == "ptrace") return ptraceAttach(std::stoi(arg(1)));
    if (verb == "inet-socket") return inetSocket();
    if (verb == "fds") return openFds();
    auto token = tokenSpec(arg(1));
    if (!token) return "bad command: no token in '" + verb + "'";
    return sessionRequest(verb, *token, arg(2));
  }

  // A request with a token: the request types a frontend forwards for an HTTP client.
  std::string sessionRequest(const std::string& verb, const Token& t, const std::string& job) {
    if (verb == "jobstart" || verb == "jobstart-host") {
      JobStartRequest r;
      r.token = t;
      r.argv = {"sleep", "300"};
      r.network = verb == "jobstart-host" ? Network::kHost : Network::kDefault;
      return request([&](uint32_t id) { return encodeJobStart(id, r); });
    }
    if (verb == "jobstop") {
      return request([&](uint32_t id) { return encodeJobStop(id, {t, job, true, 0}); });
    }
    if (verb == "jobget") return request([&](uint32_t id) { return encodeJobGet(id, {t, job}); });
    if (verb == "joblist") {
      return request([&](uint32_t id) { return encodeJobList(id, {t, true, 0}); });
    }
    if (verb == "read") {
      OutputReadRequest r{t, job, Stream::kStdout, 0, kMaxChunk, false};
      return request([&](uint32_t id) { return encodeOutputRead(id, r); });
    }
    if (verb == "whoami") return request([&](uint32_t id) { return encodeSessionGet(id, {t}); });
    if (verb == "metrics") return request([&](uint32_t id) { return encodeMetricsGet(id, {t}); });
    if (verb == "logout") {
      return request([&](uint32_t id) { return encodeSessionRevoke(id, SessionEnd{t, ""}); });
    }
    return "bad command: '" + verb + "'";
  }

  std::string login(const std::string& user, const std::string& password,
                    const std::string& address) {
    return request([&](uint32_t id) {
      return encodeLogin(id, LoginRequest{user, password, address});
    });
  }

  // `count` wrong passwords for one user, the asserted address rotating through 203.0.x.y.
  std::string bruteForce(const std::string& user, int count) {
    std::map<std::string, int> outcomes;
    auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < count; i++) {
      std::string addr = "203.0." + std::to_string(i / 250) + "." + std::to_string(i % 250 + 1);
      std::string answer = login(user, "guess-" + std::to_string(i), addr);
      if (answer.rfind("ErrorReply code=2 ", 0) == 0) {
        outcomes["checked"]++;
      } else if (answer.rfind("ErrorReply code=11 ", 0) == 0 &&
                 answer.rfind("ErrorReply code=11 retry=0 ", 0) != 0) {
        outcomes["throttled"]++;
      } else {
        outcomes["other"]++;
        last_other_ = answer;
      }
    }
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    char line[160];
    std::snprintf(line, sizeof line, "bruteforce checked=%d throttled=%d other=%d seconds=%.2f",
                  outcomes["checked"], outcomes["throttled"], outcomes["other"], secs);
    return line + (last_other_.empty() ? "" : " last_other=" + last_other_);
  }

  std::string request(const std::function<std::string(uint32_t)>& encode) {
    uint32_t id = next_id_++;
    std::string frame = encode(id);
    if (Status s = sendFrame(kChannelFd, frame); !s) return "send failed: " + s.error().message;
    return awaitReply(id);
  }

  // The reply to `id`: the first frame's description, with the number of frames of a multi-frame
  // reply.
  std::string awaitReply(uint32_t id) {
    std::string first;
    int frames = 0;
    for (;;) {
      pollfd p{kChannelFd, POLLIN, 0};
      if (poll(&p, 1, kReplyTimeoutMs) != 1) return "no reply within 60 s";
      auto r = buffer_.receive(kChannelFd);
      if (!r) return "channel error: " + r.error().message;
      if (r.value() == RecvStatus::kClosed) return "channel closed";
      if (r.value() != RecvStatus::kFrame) continue;
      std::string_view payload;
      auto h = decodeHeader(buffer_.frame(), &payload);
      if (!h) return "malformed frame from the supervisor";
      if (h->request_id != id) continue;  // a late answer to an earlier request
      if (frames++ == 0) first = describe(h->type, payload);
      if ((h->flags & kFlagMore) == 0) {
        return frames == 1 ? first : first + " frames=" + std::to_string(frames);
      }
    }
  }

  // A frame of `size` bytes (a JobGet header and padding) sent past sendFrame's own cap.
  std::string oversized(size_t size) {
    std::string frame = encodeJobGet(next_id_++, JobRef{Token{}, "x"});
    frame.resize(size, 'x');
    return sendUnchecked(frame);
  }

  std::string raw(const std::string& hexed) {
    std::string frame;
    for (size_t i = 0; i + 1 < hexed.size(); i += 2) {
      unsigned v = 0;
      if (std::sscanf(hexed.c_str() + i, "%2x", &v) != 1) return "bad hex";
      frame += static_cast<char>(v);
    }
    return sendUnchecked(frame);
  }

  // Sent as is; "sent N" means the kernel took it and the supervisor's verdict comes next.
  static std::string sendUnchecked(const std::string& frame) {
    ssize_t n = send(kChannelFd, frame.data(), frame.size(), MSG_NOSIGNAL);
    if (n < 0) return "send refused: " + errnoText(errno);
    return "sent " + std::to_string(n);
  }

  static std::string tryOpen(const std::string& path, int flags) {
    int fd = open(path.c_str(), flags | O_CLOEXEC, 0600);
    if (fd >= 0) {
      close(fd);
      return "open " + path + ": opened";
    }
    return "open " + path + ": " + errnoText(errno);
  }

  // The calls below are outside the frontend's allowlist: the seccomp filter kills the process
  // (SIGSYS) before they run, so a line only comes back if the filter let one through.
  static std::string exec(const std::string& path) {
    char* argv[] = {const_cast<char*>(path.c_str()), nullptr};
    execve(path.c_str(), argv, nullptr);
    return "exec " + path + ": " + errnoText(errno);
  }
  static std::string setRoot() {
    long rc = syscall(SYS_setresuid, 0, 0, 0);
    return "setresuid(0): " + (rc == 0 ? std::string("succeeded") : errnoText(errno));
  }
  static std::string ptraceAttach(pid_t pid) {
    long rc = ptrace(PTRACE_ATTACH, pid, nullptr, nullptr);
    return "ptrace " + std::to_string(pid) + ": " +
           (rc == 0 ? std::string("attached") : errnoText(errno));
  }
  static std::string inetSocket() {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    return "socket(AF_INET): " + (fd >= 0 ? std::string("created") : errnoText(errno));
  }

  // tgkill is allowed (glibc's abort and pthread_kill need it): the kernel's own permission check
  // is what keeps it from the supervisor and its jobs.
  static std::string signalProcess(pid_t pid) {
    long rc = syscall(SYS_tgkill, pid, pid, SIGKILL);
    return "SIGKILL " + std::to_string(pid) + ": " +
           (rc == 0 ? std::string("delivered") : errnoText(errno));
  }

  // Which descriptors the process holds (fcntl is allowed; /proc/self/fd cannot be opened).
  static std::string openFds() {
    std::string out = "fds";
    for (int fd = 0; fd < 1024; fd++) {
      if (fcntl(fd, F_GETFD) >= 0) out += " " + std::to_string(fd);
    }
    return out;
  }

  Control& control_;
  Args args_;
  ReceiveBuffer buffer_;
  uint32_t next_id_ = 1;
  std::string last_other_;
};

int run(int argc, char** argv) {
  signal(SIGPIPE, SIG_IGN);
  Args args = parseArgs(argc, argv);
  if (sodium_init() < 0) die("sodium_init failed");
  int control_fd = connectControl();  // connect is not in the allowlist: before the drop
  auto target = frontend::lookupAccount(args.run_as);
  if (!target) die("--run-as: " + target.error().message);
  if (Status s = frontend::dropPrivileges(target.value()); !s) die(s.error().message);
  if (Status s = sendFrame(kChannelFd, encodeReady(0, {})); !s) die(s.error().message);
  Control control(control_fd);
  control.writeLine("ready pid=" + std::to_string(getpid()) + " uid=" + std::to_string(getuid()) +
                    " euid=" + std::to_string(geteuid()) + " gid=" + std::to_string(getgid()));
  Attacker(control, args).run();
  return 0;
}

}  // namespace
}  // namespace jw::test::hostile

int main(int argc, char** argv) { return jw::test::hostile::run(argc, argv); }
