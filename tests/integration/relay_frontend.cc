// A stand-in frontend for the supervisor's integration tests: accepts the frontend command line,
// connects to the SOCK_SEQPACKET socket named by JW_RELAY_SOCKET (where the test listens) and
// relays frames both ways between it and the channel on fd 3. Runs as jobworkerd's child.
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

constexpr int kChannelFd = 3;
// Larger than any legal frame, so an oversized test frame reaches the supervisor intact.
constexpr size_t kBuffer = 1 << 20;

int connectRelay(const char* path) {
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  if (std::strlen(path) >= sizeof a.sun_path) return -1;
  std::strcpy(a.sun_path, path);
  // A bounded retry, not a wait for an event: the tests listen on the path before they start
  // jobworkerd, so the first attempt connects; the retries only ride out a transient refusal.
  for (int attempt = 0; attempt < 50; attempt++) {
    int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0) return fd;
    close(fd);
    usleep(100'000);
  }
  return -1;
}

// One message from `from` to `to`; false when either side is gone.
bool relayOne(int from, int to, std::vector<char>& buf) {
  ssize_t n = recv(from, buf.data(), buf.size(), 0);
  if (n < 0 && errno == EINTR) return true;
  if (n <= 0) return false;
  ssize_t w = send(to, buf.data(), static_cast<size_t>(n), MSG_NOSIGNAL);
  if (w != n) {
    std::fprintf(stderr, "relay_frontend: send %zd bytes: %s\n", n, std::strerror(errno));
    return false;
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  bool has_channel = false;
  for (int i = 1; i + 1 < argc; i++) {
    if (std::string(argv[i]) == "--channel-fd" && std::string(argv[i + 1]) == "3")
      has_channel = true;
  }
  const char* path = std::getenv("JW_RELAY_SOCKET");
  if (!has_channel || path == nullptr) {
    std::fprintf(stderr, "relay_frontend: needs --channel-fd 3 and JW_RELAY_SOCKET\n");
    return 2;
  }
  // The command line and what fd 4 is, for tests that check what the supervisor passes.
  std::string line = "relay_frontend: argv:";
  for (int i = 1; i < argc; i++) line += std::string(" ") + argv[i];
  int listening = 0;
  socklen_t len = sizeof listening;
  bool fd4_listens = getsockopt(4, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) == 0 && listening;
  line += fd4_listens ? " (fd 4: listening socket)" : " (fd 4: NOT a listening socket)";
  line += " uid " + std::to_string(getuid()) + "\n";
  ssize_t ignored = write(STDERR_FILENO, line.data(), line.size());
  (void)ignored;
  int relay = connectRelay(path);
  if (relay < 0) {
    std::fprintf(stderr, "relay_frontend: connect %s: %s\n", path, std::strerror(errno));
    return 1;
  }
  // Room for a frame over the protocol's maximum in both directions (root may force it).
  int big = 1 << 20;
  for (int fd : {relay, kChannelFd}) {
    setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &big, sizeof big);
    setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &big, sizeof big);
  }
  std::vector<char> buf(kBuffer);
  pollfd fds[2] = {{kChannelFd, POLLIN, 0}, {relay, POLLIN, 0}};
  for (;;) {
    if (poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      return 1;
    }
    if (fds[0].revents != 0 && !relayOne(kChannelFd, relay, buf)) return 0;
    if (fds[1].revents != 0 && !relayOne(relay, kChannelFd, buf)) return 0;
  }
}
