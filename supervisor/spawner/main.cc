// jobworker-spawner: clones the shims of jobworkerd's jobs. Started (fork + exec) by jobworkerd
// and kept running; root, single-threaded, with a dozen descriptors and no job state, so a clone
// copies almost nothing, and jobworkerd's event loop never waits for one. Each Order carries the
// job's descriptors; the shim is cloned into the job's namespaces (and v2 cgroup) as jobworkerd's
// child (CLONE_PARENT: jobworkerd reaps it through the pidfd sent back), and execs jobworker-init.
// Everything else of a start (cgroup placement, the release, the shim's report) stays in
// jobworkerd. It exits when jobworkerd closes the link.
#include <fcntl.h>
#include <sched.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "supervisor/launch/fd_passing.h"
#include "supervisor/launch/init_exec.h"
#include "supervisor/launch/spawner_protocol.h"

namespace {

using jw::spawner::FdSlot;
using jw::spawner::kLinkFd;

constexpr int kMaxFds = jw::spawner::kSlotCount;
constexpr uint32_t kNamespaceFlags =
    CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWUTS | CLONE_NEWIPC;

struct Received {
  jw::spawner::Order order;
  int fds[jw::spawner::kSlotCount];

  Received() {
    for (int& fd : fds) fd = -1;
  }
  ~Received() {
    for (int fd : fds) {
      if (fd >= 0) close(fd);
    }
  }
  Received(const Received&) = delete;
  Received& operator=(const Received&) = delete;
  int slot(FdSlot s) const { return fds[s]; }
};

void reply(uint32_t request_id, pid_t pid, int err, int pidfd) {
  jw::spawner::Reply r{request_id, pid, err};
  if (jw::supervisor::sendWithFds(kLinkFd, &r, sizeof r, &pidfd, pidfd >= 0 ? 1 : 0) < 0) {
    _exit(1);  // jobworkerd is gone: so are we
  }
}

// One Order and its descriptors; 0 when it is well-formed, else the errno to answer with.
// Returns -1 when the link is closed.
int receive(Received* in) {
  int attached[kMaxFds];
  int nattached = 0;
  bool truncated = false;
  ssize_t n = jw::supervisor::recvWithFds(kLinkFd, &in->order, sizeof in->order, attached, kMaxFds,
                                          &nattached, &truncated, 0);
  // Every received descriptor is owned (closed) by `in`, whatever follows.
  const jw::spawner::Order& o = in->order;
  int next = 0;
  for (uint32_t s = 0; s < jw::spawner::kSlotCount && next < nattached; s++) {
    if (o.fd_mask & (1U << s)) in->fds[s] = attached[next++];
  }
  for (; next < nattached; next++) close(attached[next]);
  if (n <= 0) return -1;
  if (static_cast<size_t>(n) != sizeof o || truncated || o.magic != jw::spawner::kOrderMagic) {
    return EPROTO;
  }
  if ((o.ns_flags & ~kNamespaceFlags) != 0 ||
      (o.fd_mask & jw::spawner::kRequiredSlots) != jw::spawner::kRequiredSlots ||
      o.fd_mask >= (1U << jw::spawner::kSlotCount) || nattached != __builtin_popcount(o.fd_mask)) {
    return EINVAL;
  }
  return 0;
}

}  // namespace

int main() {
  const int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
  if (devnull < 0) return 1;
  for (;;) {
    Received in;
    int bad = receive(&in);
    if (bad < 0) return 0;  // jobworkerd closed the link
    if (bad > 0) {
      reply(in.order.request_id, -1, bad, -1);
      continue;
    }
    jw::supervisor::InitFds fds;
    fds.devnull = devnull;
    fds.spec = in.slot(jw::spawner::kSpec);
    fds.channel = in.slot(jw::spawner::kChannel);
    fds.supervisor_end = in.slot(jw::spawner::kSupervisorEnd);
    fds.stdout_log = in.slot(jw::spawner::kStdoutLog);
    fds.stderr_log = in.slot(jw::spawner::kStderrLog);
    fds.exit_record = in.slot(jw::spawner::kExitRecord);
    fds.stdin_read = in.slot(jw::spawner::kStdinRead);
    fds.init = jw::spawner::kInitFd;
    char id[9] = {};
    memcpy(id, in.order.short_id, sizeof in.order.short_id);
    jw::supervisor::InitArgv args(id);
    int pidfd = -1;
    pid_t pid = jw::supervisor::cloneShim(static_cast<int>(in.order.ns_flags),
                                          in.slot(jw::spawner::kCgroupDir), true, &pidfd);
    if (pid == 0) jw::supervisor::execJobInit(fds, args);
    int err = pid < 0 ? errno : 0;
    reply(in.order.request_id, pid < 0 ? -1 : pid, err, pidfd);
    if (pidfd >= 0) close(pidfd);
  }
}
