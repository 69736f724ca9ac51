// The frontend's listening TCP socket: adopted from systemd socket activation or bound here.
// Runs in jobworkerd, which passes the fd to the frontend as fd 4.
#include "supervisor/frontend_link/listen_socket.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "common/log.h"

namespace jw::supervisor {

namespace {

constexpr int kSystemdFirstFd = 3;  // SD_LISTEN_FDS_START
constexpr int kBacklog = 128;

union SockAddr {
  sockaddr sa;
  sockaddr_in in4;
  sockaddr_in6 in6;
  sockaddr_storage storage;
};

Result<int> parsePort(const std::string& s, const std::string& listen) {
  if (s.empty() || s.size() > 5 || s.find_first_not_of("0123456789") != std::string::npos) {
    return Error{"listen address " + log::quote(listen) + ": port must be a number 0-65535"};
  }
  int port = std::atoi(s.c_str());
  if (port > 65535) {
    return Error{"listen address " + log::quote(listen) + ": port must be a number 0-65535"};
  }
  return port;
}

// Systemd passes the socket as fd 3 when LISTEN_PID names us; the variables are then removed so
// no child (the frontend, a job) believes it was socket-activated too.
Result<UniqueFd> adoptSystemdSocket() {
  const char* fds = std::getenv("LISTEN_FDS");
  long count = std::strtol(fds, nullptr, 10);
  ::unsetenv("LISTEN_PID");
  ::unsetenv("LISTEN_FDS");
  ::unsetenv("LISTEN_FDNAMES");
  if (count > 1) {
    log::warning("socket activation passed " + std::to_string(count) +
                 " sockets; only the first (fd 3) is used");
  }
  const int fd = kSystemdFirstFd;
  int type = 0, listening = 0;
  socklen_t len = sizeof type;
  if (::getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) != 0) {
    return sysError("socket activation: fd 3 is not a socket");
  }
  len = sizeof listening;
  if (::getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) != 0) {
    return sysError("socket activation: getsockopt(fd 3, SO_ACCEPTCONN)");
  }
  if (type != SOCK_STREAM || listening == 0) {
    return Error{
        "socket activation: fd 3 is not a listening stream socket (check "
        "jobworkerd.socket: ListenStream=)"};
  }
  int flags = ::fcntl(fd, F_GETFD);
  if (flags < 0 || ::fcntl(fd, F_SETFD, flags | FD_CLOEXEC) != 0) {
    return sysError("socket activation: set close-on-exec on fd 3");
  }
  return UniqueFd(fd);
}

}  // namespace

Result<ListenAddress> parseListenAddress(const std::string& listen) {
  ListenAddress a;
  std::string port;
  if (!listen.empty() && listen[0] == '[') {
    size_t close = listen.find(']');
    if (close == std::string::npos || close + 1 >= listen.size() || listen[close + 1] != ':') {
      return Error{"listen address " + log::quote(listen) + ": expected [IPV6]:PORT"};
    }
    a.host = listen.substr(1, close - 1);
    port = listen.substr(close + 2);
    in6_addr probe{};
    if (::inet_pton(AF_INET6, a.host.c_str(), &probe) != 1) {
      return Error{"listen address " + log::quote(listen) + ": not a numeric IPv6 address"};
    }
  } else {
    size_t colon = listen.rfind(':');
    if (colon == std::string::npos || colon == 0) {
      return Error{"listen address " + log::quote(listen) + ": expected HOST:PORT"};
    }
    a.host = listen.substr(0, colon);
    port = listen.substr(colon + 1);
    if (a.host.find(':') != std::string::npos) {
      return Error{"listen address " + log::quote(listen) +
                   ": write IPv6 addresses in brackets, e.g. [::1]:8443"};
    }
    // "localhost" only, no resolver: the listen address must not depend on DNS at boot.
    if (a.host == "localhost") a.host = "127.0.0.1";
    in_addr probe{};
    if (::inet_pton(AF_INET, a.host.c_str(), &probe) != 1) {
      return Error{"listen address " + log::quote(listen) +
                   ": host must be a numeric IP address or localhost"};
    }
  }
  auto p = parsePort(port, listen);
  if (!p) return p.error();
  a.port = p.value();
  return a;
}

Result<UniqueFd> openListenSocket(const std::string& listen) {
  const char* pid = std::getenv("LISTEN_PID");
  const char* fds = std::getenv("LISTEN_FDS");
  if (pid != nullptr && fds != nullptr && std::strtol(pid, nullptr, 10) == ::getpid() &&
      std::strtol(fds, nullptr, 10) >= 1) {
    return adoptSystemdSocket();
  }

  auto addr = parseListenAddress(listen);
  if (!addr) return addr.error();
  const bool v6 = addr->host.find(':') != std::string::npos;
  const std::string shown =
      (v6 ? "[" + addr->host + "]" : addr->host) + ":" + std::to_string(addr->port);

  SockAddr sa{};
  socklen_t sa_len;
  if (v6) {
    sa.in6.sin6_family = AF_INET6;
    sa.in6.sin6_port = htons(static_cast<uint16_t>(addr->port));
    ::inet_pton(AF_INET6, addr->host.c_str(), &sa.in6.sin6_addr);
    sa_len = sizeof sa.in6;
  } else {
    sa.in4.sin_family = AF_INET;
    sa.in4.sin_port = htons(static_cast<uint16_t>(addr->port));
    ::inet_pton(AF_INET, addr->host.c_str(), &sa.in4.sin_addr);
    sa_len = sizeof sa.in4;
  }

  UniqueFd fd(::socket(v6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) return sysError("socket for " + shown);
  // SO_REUSEADDR lets a restart rebind while old connections sit in TIME_WAIT. Never
  // SO_REUSEPORT: a second daemon on the same port must fail here, not share the traffic.
  int one = 1;
  if (::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0) {
    return sysError("setsockopt(SO_REUSEADDR) for " + shown);
  }
  // "[::]:PORT" means IPv6 only: the address configured is exactly the address served.
  if (v6 && ::setsockopt(fd.get(), IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one) != 0) {
    return sysError("setsockopt(IPV6_V6ONLY) for " + shown);
  }
  if (::bind(fd.get(), &sa.sa, sa_len) != 0) return sysError("cannot listen on " + shown);
  if (::listen(fd.get(), kBacklog) != 0) return sysError("listen on " + shown);
  return fd;
}

Result<int> boundPort(int fd) {
  SockAddr sa{};
  socklen_t len = sizeof sa;
  if (::getsockname(fd, &sa.sa, &len) != 0)
    return sysError("getsockname(fd " + std::to_string(fd) + ")");
  if (sa.sa.sa_family == AF_INET) return static_cast<int>(ntohs(sa.in4.sin_port));
  if (sa.sa.sa_family == AF_INET6) return static_cast<int>(ntohs(sa.in6.sin6_port));
  return Error{"fd " + std::to_string(fd) + " is not an IP socket"};
}

}  // namespace jw::supervisor
