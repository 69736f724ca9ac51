// jobworker-init: the job's shim, exec'd by jobworkerd (execveat of the binary it opened at
// start) as `jw-init <first 8 characters of the job id>`. PID 1 of the job's PID namespace, or
// with isolation.pid = false a subreaper parent of the command. It reads its spec, waits until it
// sits in its cgroup, contains itself, forks the command, and from then on only drains its
// output into the log files, waits, forwards stop signals, enforces the deadline, reaps and
// reports. No parent-death signal: it outlives jobworkerd. Runs as root in the job's namespaces.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <initializer_list>
#include <new>

#include "common/protocol/shim_messages.h"
#include "supervisor/init/command.h"
#include "supervisor/init/containment.h"
#include "supervisor/init/output.h"
#include "supervisor/init/spec.h"

namespace jw::init {
namespace {

using shim::Frame;
using shim::FrameWriter;
using shim::InitStep;

constexpr uint64_t kProgressIntervalMs = 10;
constexpr uint64_t kDrainDeadlineMs = 2000;  // escaped holders of the output pipe

void send(const FrameWriter& w) {
  // Never blocks: a full channel (no supervisor reading) drops the frame; only the latest sizes
  // matter and the exit is also in <job>/exit.
  while (::send(shim::kChannelFd, w.data(), w.size(), MSG_DONTWAIT | MSG_NOSIGNAL) < 0 &&
         errno == EINTR) {
  }
}

[[noreturn]] void failStart(InitStep step, int err, int32_t detail = 0) {
  send(shim::encodeExecFailed(step, err, detail));
  _exit(127);
}

uint64_t monotonicMs() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000 + static_cast<uint64_t>(ts.tv_nsec) / 1000000;
}

sigset_t shimSignals() {
  sigset_t set;
  sigemptyset(&set);
  for (int sig : {SIGTERM, SIGINT, SIGHUP, SIGCHLD}) sigaddset(&set, sig);
  return set;
}

// jobworkerd's blocked signals and SIGPIPE's SIG_IGN survive execve; the shim takes TERM, INT,
// HUP and CHLD through a signalfd, so a stop sent before its loop runs is queued, not lost.
int takeSignals() {
  for (int sig = 1; sig < NSIG; sig++) {
    if (sig == SIGKILL || sig == SIGSTOP) continue;
    struct sigaction sa {};
    sa.sa_handler = SIG_DFL;
    sigaction(sig, &sa, nullptr);
  }
  sigset_t set = shimSignals();
  if (sigprocmask(SIG_SETMASK, &set, nullptr) != 0) return errno;
  // The name `ps` shows, inside the job and on the host (execveat would show the fd number).
  prctl(PR_SET_NAME, "jw-init", 0, 0, 0);
  return 0;
}

struct MappedSpec {
  InitSpec spec;
  void* data = MAP_FAILED;
  size_t len = 0;
  void* storage = MAP_FAILED;
  size_t storage_len = 0;
};

// Only a sealed memfd: nobody can change the spec after jobworkerd wrote it.
int readSpec(MappedSpec* m) {
  int seals = fcntl(shim::kSpecFd, F_GET_SEALS);
  constexpr int kNeeded = F_SEAL_WRITE | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL;
  if (seals < 0 || (seals & kNeeded) != kNeeded) return EPERM;
  struct stat st {};
  if (fstat(shim::kSpecFd, &st) != 0) return errno;
  if (st.st_size <= 0 || static_cast<size_t>(st.st_size) > shim::kMaxSpecBytes) return E2BIG;
  m->len = static_cast<size_t>(st.st_size);
  m->data = mmap(nullptr, m->len, PROT_READ, MAP_PRIVATE, shim::kSpecFd, 0);
  if (m->data == MAP_FAILED) return errno;
  m->storage_len = specStorageBytes(m->len);
  m->storage =
      mmap(nullptr, m->storage_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (m->storage == MAP_FAILED) return errno;
  close(shim::kSpecFd);
  if (!parseSpec(static_cast<const uint8_t*>(m->data), m->len, m->storage, m->storage_len,
                 &m->spec)) {
    return EINVAL;
  }
  return 0;
}

// The first frame down is the go-ahead: jobworkerd has placed this process in its cgroup(s).
// Bounded: jobworkerd gives up on a start after 30 s, and a spawner that died right after the
// clone leaves nobody to release us.
int waitForRelease() {
  constexpr int kReleaseTimeoutMs = 60'000;
  uint8_t buf[shim::kMaxFrameBytes];
  for (;;) {
    pollfd p{shim::kChannelFd, POLLIN, 0};
    int ready = poll(&p, 1, kReleaseTimeoutMs);
    if (ready < 0 && errno == EINTR) continue;
    if (ready < 0) return errno;
    if (ready == 0) return ETIMEDOUT;
    ssize_t n = recv(shim::kChannelFd, buf, sizeof buf, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errno;
    if (n == 0) return ECANCELED;  // jobworkerd gave up on us
    return n == 1 && buf[0] == static_cast<uint8_t>(Frame::kRelease) ? 0 : EPROTO;
  }
}

int timerAt(int fd, uint64_t ms_from_now) {
  itimerspec its{};
  its.it_value.tv_sec = static_cast<time_t>(ms_from_now / 1000);
  its.it_value.tv_nsec = static_cast<long>((ms_from_now % 1000) * 1000000);
  if (ms_from_now == 0) its.it_value.tv_nsec = 1;  // 0 would disarm
  return timerfd_settime(fd, 0, &its, nullptr);
}

class Shim {
 public:
  explicit Shim(MappedSpec& m) : m_(m), s_(m.spec) {}
  [[noreturn]] void run();

 private:
  void startOutput();
  void startCommand();
  [[noreturn]] void loop();
  void onSignal();
  void onChannel();
  void onDeadline();
  void reap();
  void forward(int sig);
  void killAll();
  void armKill(uint64_t grace_ms);
  void outputChanged();
  void sendProgress();
  bool outputOpen() const { return out_open_[0] || out_open_[1]; }
  void awaitCollected();
  [[noreturn]] void finish();

  MappedSpec& m_;
  const InitSpec& s_;
  int out_r_[2] = {-1, -1}, out_w_[2] = {-1, -1};
  LogAppender* logs_[2] = {nullptr, nullptr};
  alignas(LogAppender) unsigned char log_space_[2][sizeof(LogAppender)];
  bool out_open_[2] = {false, false};
  int signal_fd_ = -1, deadline_fd_ = -1, kill_fd_ = -1, progress_fd_ = -1, drain_fd_ = -1;
  pid_t command_ = -1;
  bool command_done_ = false;
  int command_status_ = 0;
  rusage command_usage_{};
  bool timed_out_ = false;
  uint64_t kill_at_ms_ = 0;  // 0: no SIGKILL scheduled
  bool progress_dirty_ = false, progress_armed_ = false;
  uint64_t progress_sent_ms_ = 0;
  bool drain_timed_out_ = false;
  bool channel_open_ = true;
};

void Shim::startOutput() {
  const int streams = s_.has(shim::kFlagSeparate) ? 2 : 1;
  for (int i = 0; i < streams; i++) {
    int p[2];
    if (pipe2(p, O_CLOEXEC) != 0) failStart(InitStep::kOutput, errno);
    // Only our end is non-blocking: the job's writes block on a full pipe as usual.
    int fl = fcntl(p[0], F_GETFL);
    if (fl < 0 || fcntl(p[0], F_SETFL, fl | O_NONBLOCK) != 0) failStart(InitStep::kOutput, errno);
    fcntl(p[0], F_SETPIPE_SZ, 1 << 20);  // fewer wake-ups for chatty jobs; failure costs speed
    out_r_[i] = p[0];
    out_w_[i] = p[1];
    int log_fd = i == 0 ? shim::kStdoutLogFd : shim::kStderrLogFd;
    logs_[i] = new (log_space_[i]) LogAppender(p[0], log_fd, shim::kDevNullFd, s_.output_cap);
    out_open_[i] = true;
  }
  sigset_t set = shimSignals();
  signal_fd_ = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
  deadline_fd_ = timerfd_create(CLOCK_BOOTTIME, TFD_CLOEXEC | TFD_NONBLOCK);
  kill_fd_ = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
  progress_fd_ = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
  drain_fd_ = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
  for (int fd : {signal_fd_, deadline_fd_, kill_fd_, progress_fd_, drain_fd_}) {
    if (fd < 0) failStart(InitStep::kOutput, errno);
  }
  if (s_.deadline_ns != 0) {
    // CLOCK_BOOTTIME: a suspended host still counts, and the deadline is absolute, so a later
    // supervisor can read it from the record.
    itimerspec its{};
    its.it_value.tv_sec = static_cast<time_t>(s_.deadline_ns / 1000000000);
    its.it_value.tv_nsec = static_cast<long>(s_.deadline_ns % 1000000000);
    if (timerfd_settime(deadline_fd_, TFD_TIMER_ABSTIME, &its, nullptr) != 0) {
      failStart(InitStep::kOutput, errno);
    }
  }
}

void Shim::startCommand() {
  int report[2];
  if (pipe2(report, O_CLOEXEC) != 0) failStart(InitStep::kForkCommand, errno);
  pid_t pid = fork();
  if (pid < 0) failStart(InitStep::kForkCommand, errno);
  if (pid == 0) {
    close(report[0]);
    runCommand(s_, CommandFds{out_w_[0], out_w_[1], report[1]});
  }
  // Both sides set the group, so a signal forwarded right after the fork reaches the command.
  setpgid(pid, pid);
  command_ = pid;
  close(report[1]);
  // The command's copy is its stdin; ours would keep the pipe open after the command exits.
  if (s_.has(shim::kFlagStdinPipe)) close(shim::kStdinFd);
  for (int& w : out_w_) {
    if (w >= 0) close(w);
    w = -1;
  }
  int32_t r[2] = {0, 0};
  ssize_t n;
  while ((n = read(report[0], r, sizeof r)) < 0 && errno == EINTR) {
  }
  close(report[0]);
  if (n != 0) {
    // The command failed a step (or the report is garbled): it has _exited; nothing of the job
    // ever ran.
    while (waitpid(pid, nullptr, 0) < 0 && errno == EINTR) {
    }
    if (n != sizeof r) failStart(InitStep::kForkCommand, EPROTO);
    failStart(static_cast<InitStep>(r[0]), r[1]);
  }
  FrameWriter w(Frame::kStarted);
  w.put32(static_cast<uint32_t>(pid));
  send(w);
  // The command has exec'd: the spec's argv, environment and filter are no longer needed, and
  // each running job should cost as few pages as possible.
  munmap(m_.data, m_.len);
  munmap(m_.storage, m_.storage_len);
}

void Shim::forward(int sig) {
  if (command_done_) return;  // its pid may be reused
  if (kill(-command_, sig) != 0 && errno == ESRCH) kill(command_, sig);
}

// With a PID namespace, kill(-1) from its PID 1 reaches every process of the job but the shim.
// Without one, the command's group; what left it is the cgroup's (jobworkerd kills that).
void Shim::killAll() {
  if (s_.has(shim::kFlagPidNs)) {
    kill(-1, SIGKILL);
  } else if (command_ > 0) {
    kill(-command_, SIGKILL);
    if (!command_done_) kill(command_, SIGKILL);
  }
}

void Shim::armKill(uint64_t grace_ms) {
  uint64_t at = monotonicMs() + grace_ms;
  if (kill_at_ms_ != 0 && kill_at_ms_ <= at) return;  // an earlier one stands
  kill_at_ms_ = at;
  timerAt(kill_fd_, grace_ms);
}

void Shim::sendProgress() {
  send(shim::encodeProgress(logs_[0]->sizes(),
                            logs_[1] != nullptr ? logs_[1]->sizes() : shim::StreamSizes{}));
  progress_sent_ms_ = monotonicMs();
  progress_dirty_ = false;
}

// Coalesced: at most one Progress per 10 ms, the first at once.
void Shim::outputChanged() {
  progress_dirty_ = true;
  if (progress_armed_) return;
  uint64_t since = monotonicMs() - progress_sent_ms_;
  if (since >= kProgressIntervalMs) {
    sendProgress();
    return;
  }
  progress_armed_ = true;
  timerAt(progress_fd_, kProgressIntervalMs - since);
}

void Shim::reap() {
  for (;;) {
    int status = 0;
    rusage ru{};
    pid_t pid = wait4(-1, &status, WNOHANG, &ru);
    if (pid > 0 && WIFSTOPPED(status)) {
      // Only a tracee reports a stop without WUNTRACED: a job process that made the shim its
      // tracer (PTRACE_TRACEME, when seccomp is off). Let it go with the signal it stopped on,
      // except the SIGTRAP that only tracing caused (at execve), which would kill it.
      int sig = WSTOPSIG(status) == SIGTRAP ? 0 : WSTOPSIG(status);
      ptrace(PTRACE_DETACH, pid, nullptr, sig);
      continue;
    }
    if (pid == command_ && !command_done_) {
      command_done_ = true;
      command_status_ = status;
      command_usage_ = ru;
      // The job ends with its command: the rest goes, then the pipes drain to EOF (bounded).
      killAll();
      timerAt(drain_fd_, kDrainDeadlineMs);
      continue;
    }
    if (pid > 0) continue;  // an orphan reparented to us
    if (pid < 0 && errno == EINTR) continue;
    return;  // 0: others still run; ECHILD: nobody left
  }
}

void Shim::onSignal() {
  signalfd_siginfo si{};
  while (read(signal_fd_, &si, sizeof si) == static_cast<ssize_t>(sizeof si)) {
    if (si.ssi_signo == SIGCHLD) {
      reap();
    } else {
      forward(static_cast<int>(si.ssi_signo));
    }
  }
  reap();  // one SIGCHLD can stand for many children
}

void Shim::onChannel() {
  uint8_t buf[shim::kMaxFrameBytes];
  for (;;) {
    ssize_t n = recv(shim::kChannelFd, buf, sizeof buf, MSG_DONTWAIT);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    shim::FrameReader r(buf, static_cast<size_t>(n));
    Frame type{};
    int32_t sig = 0;
    uint32_t grace_ms = 0;
    if (!r.type(&type) || type != Frame::kStop || !r.getI32(&sig) || !r.get32(&grace_ms) ||
        !r.complete() || sig <= 0 || sig >= NSIG) {
      continue;  // only Stop comes down after the release; anything else is ignored
    }
    forward(sig);
    armKill(grace_ms);
  }
}

void Shim::onDeadline() {
  uint64_t expirations = 0;
  if (read(deadline_fd_, &expirations, sizeof expirations) <= 0) return;
  if (timed_out_ || command_done_) return;
  timed_out_ = true;
  send(FrameWriter(Frame::kDeadlinePassed));
  forward(SIGTERM);
  armKill(s_.stop_grace_ms);
}

// Everything of the job is gone (or given up on): report, record, exit. With a PID namespace the
// kernel kills whatever is left in it as we exit.
void Shim::finish() {
  shim::Exited e;
  e.wait_status = command_status_;
  e.utime_us = static_cast<uint64_t>(command_usage_.ru_utime.tv_sec) * 1000000 +
               static_cast<uint64_t>(command_usage_.ru_utime.tv_usec);
  e.stime_us = static_cast<uint64_t>(command_usage_.ru_stime.tv_sec) * 1000000 +
               static_cast<uint64_t>(command_usage_.ru_stime.tv_usec);
  e.maxrss_kb = static_cast<uint64_t>(command_usage_.ru_maxrss);
  for (int i = 0; i < 2; i++) {
    if (logs_[i] != nullptr) e.streams[i] = logs_[i]->sizes();
  }
  e.timed_out = timed_out_;
  // The record first: the channel may have nobody reading it.
  FrameWriter w = shim::encodeExited(e);
  ssize_t n = pwrite(shim::kExitRecordFd, w.data(), w.size(), 0);
  (void)n;
  send(w);
  awaitCollected();
  _exit(0);
}

// jobworkerd reads the job's final usage and OOM count when Exited arrives, and answers
// Collected: only then may the cgroup empty (systemd removes a job's empty scope at once). A
// channel nobody reads (no supervisor runs) costs kCollectWaitMs at most.
void Shim::awaitCollected() {
  if (!channel_open_) return;
  const uint64_t deadline = monotonicMs() + shim::kCollectWaitMs;
  for (uint64_t now = monotonicMs(); now < deadline; now = monotonicMs()) {
    pollfd p{shim::kChannelFd, POLLIN, 0};
    int n = poll(&p, 1, static_cast<int>(deadline - now));
    if (n < 0) continue;  // EINTR
    if (n == 0 || (p.revents & POLLIN) == 0) return;
    uint8_t buf[shim::kMaxFrameBytes];
    ssize_t got = recv(shim::kChannelFd, buf, sizeof buf, MSG_DONTWAIT);
    if (got == 0) return;
    if (got < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      return;
    }
    shim::FrameReader r(buf, static_cast<size_t>(got));
    Frame type{};
    if (r.type(&type) && type == Frame::kCollected && r.complete()) return;
    // A late Stop: the job is over already.
  }
}

void Shim::loop() {
  for (;;) {
    if (command_done_ && (!outputOpen() || drain_timed_out_)) finish();
    enum { kSig, kChan, kDeadline, kKill, kProgress, kDrain, kOut0, kOut1, kCount };
    pollfd p[kCount] = {};
    p[kSig] = {signal_fd_, POLLIN, 0};
    p[kChan] = {channel_open_ ? shim::kChannelFd : -1, POLLIN, 0};
    p[kDeadline] = {deadline_fd_, POLLIN, 0};
    p[kKill] = {kill_fd_, POLLIN, 0};
    p[kProgress] = {progress_fd_, POLLIN, 0};
    p[kDrain] = {drain_fd_, POLLIN, 0};
    p[kOut0] = {out_open_[0] ? out_r_[0] : -1, POLLIN, 0};
    p[kOut1] = {out_open_[1] ? out_r_[1] : -1, POLLIN, 0};
    if (poll(p, kCount, -1) < 0) continue;  // EINTR
    if (p[kSig].revents != 0) onSignal();
    if (p[kChan].revents & POLLIN) onChannel();
    if (p[kChan].revents & (POLLHUP | POLLERR | POLLNVAL)) channel_open_ = false;
    if (p[kDeadline].revents != 0) onDeadline();
    uint64_t x = 0;
    if (p[kKill].revents != 0 && read(kill_fd_, &x, sizeof x) > 0) killAll();
    if (p[kDrain].revents != 0 && read(drain_fd_, &x, sizeof x) > 0) drain_timed_out_ = true;
    if (p[kProgress].revents != 0 && read(progress_fd_, &x, sizeof x) > 0) {
      progress_armed_ = false;
      if (progress_dirty_) sendProgress();
    }
    for (int i = 0; i < 2; i++) {
      if (p[kOut0 + i].revents == 0 || !out_open_[i]) continue;
      LogAppender::Drained d = logs_[i]->drain();
      if (d != LogAppender::Drained::kEmpty) outputChanged();
      if (d == LogAppender::Drained::kEof) {
        out_open_[i] = false;
        close(out_r_[i]);
      }
    }
  }
}

void Shim::run() {
  int err;
  // Not a session of jobworkerd's: a hangup there (its terminal in dev mode) never reaches jobs.
  if (setsid() < 0) failStart(InitStep::kSession, errno);
  // Without a PID namespace, orphans of the job are reparented to the shim, not to the host's
  // init, so they are reaped and counted here.
  if (!s_.has(shim::kFlagPidNs) && prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0) {
    failStart(InitStep::kSession, errno);
  }
  shim::ContainmentStep failed{};
  if ((err = setupContainment(s_, &failed)) != 0) {
    failStart(InitStep::kContainment, err, static_cast<int32_t>(failed));
  }
  // Do not pin jobworkerd's working directory (and its mount) for the job's lifetime.
  if (chdir("/") != 0) failStart(InitStep::kContainment, errno);
  startOutput();
  startCommand();
  loop();
}

}  // namespace
}  // namespace jw::init

int main() {
  using namespace jw::init;
  int err;
  if ((err = takeSignals()) != 0) failStart(jw::shim::InitStep::kSignals, err);
  MappedSpec spec;
  if ((err = readSpec(&spec)) != 0) failStart(jw::shim::InitStep::kSpec, err);
  if ((err = waitForRelease()) != 0) failStart(jw::shim::InitStep::kRelease, err);
  Shim shim(spec);
  shim.run();
}
