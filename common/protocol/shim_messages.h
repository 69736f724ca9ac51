// The contract between jobworkerd and a job's shim (jobworker-init): the descriptors the shim
// starts with, the spec's layout in its sealed memfd, and the frames of the per-job status
// channel. Header-only and allocation-free: the static init includes it without any runtime, and
// the supervisor's child uses it between fork and execveat. Compiled into both.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace jw::shim {

// --- descriptors the shim is exec'd with (fixed numbers) ---------------------------------------
constexpr int kDevNullFd = 0;  // also 1 and 2: the shim prints nothing; the command's stdin
constexpr int kSpecFd = 3;     // sealed memfd with the spec (below); closed once parsed
constexpr int kChannelFd = 4;  // the shim's end of the status channel (SOCK_SEQPACKET)
// A duplicate of jobworkerd's own end of the channel, kept so that a later jobworkerd can take
// it back with pidfd_getfd() (root with CAP_SYS_PTRACE) after a crash or an upgrade.
constexpr int kSupervisorEndFd = 5;
constexpr int kStdoutLogFd = 6;   // <job>/output: stdout, and stderr when merged
constexpr int kStderrLogFd = 7;   // <job>/stderr for separate jobs; absent when merged
constexpr int kExitRecordFd = 8;  // <job>/exit, its space reserved (fallocate) at start
// With kFlagStdinPipe: the read end of the job's stdin pipe, the command's fd 0. The shim closes
// its copy once the command is forked; jobworkerd alone holds the write end.
constexpr int kStdinFd = 9;
constexpr int kFirstFreeFd = 10;  // everything from here is closed before execveat

// --- the spec ------------------------------------------------------------------------------------
// Little-endian, field by field, in this order (written by supervisor/launch/shim_spec.cc, read
// by supervisor/init/spec.cc):
//   u32 magic, u32 version, u32 flags, u32 uid, u32 gid, u32 last_cap,
//   u64 nofile_cur, u64 nofile_max (0: keep), u64 output_cap, u64 deadline (CLOCK_BOOTTIME ns,
//   0: none), u64 stop_grace_ms,
//   str hostname, str tmp_options, str cwd, str home, str cgroup leaf (the job's cgroup
//   directory name: on v1 the shim mounts exactly the hierarchies it sits in such a leaf of),
//   list groups (u32 count, u32 each), list argv, list env, list exec candidates (str each),
//   list seccomp (u32 count, then per instruction u16 code, u8 jt, u8 jf, u32 k).
// A str is u32 length (including its NUL) and the bytes ending in exactly one NUL.
constexpr uint32_t kSpecMagic = 0x3153574a;  // "JWS1"
constexpr uint32_t kSpecVersion = 1;
constexpr size_t kMaxSpecBytes = size_t{1} << 20;
constexpr uint32_t kMaxSpecArgs = 4096;
constexpr uint32_t kMaxSpecEnv = 1100;  // the request's 1024 plus the defaults jobworkerd adds
constexpr uint32_t kMaxSpecCandidates = 256;
constexpr uint32_t kMaxSpecGroups = 65536;
constexpr uint32_t kMaxSpecSeccomp = 4096;  // BPF_MAXINSNS

enum SpecFlag : uint32_t {
  kFlagPidNs = 1u << 0,        // the shim is PID 1 of a new PID namespace
  kFlagMountNs = 1u << 1,      // mounts: / slave, /tmp, /dev/shm (and /proc with kFlagPidNs)
  kFlagNetNs = 1u << 2,        // bring lo up
  kFlagUtsNs = 1u << 3,        // sethostname
  kFlagSeccomp = 1u << 4,      // install the program before execve
  kFlagCredentials = 1u << 5,  // become uid/gid/groups (root supervisor)
  kFlagCoreDumps = 1u << 6,    // keep RLIMIT_CORE
  kFlagSeparate = 1u << 7,     // stderr has its own log
  kFlagOwnCgroup = 1u << 8,    // the job has its own cgroup: unshare a cgroup namespace
  kFlagCgroupV2 = 1u << 9,     // mount cgroup2 (else the v1 hierarchies over a tmpfs)
  kFlagStdinPipe = 1u << 10,   // kStdinFd is the command's stdin (else /dev/null)
};

// --- the status channel ------------------------------------------------------------------------
// One SOCK_SEQPACKET socketpair per job. Every frame: u8 type, then fixed fields little-endian;
// a frame's length is exact for its type (checked before any field is read).
enum class Frame : uint8_t {
  // shim -> jobworkerd
  kStarted = 1,         // u32 command pid (host view is the shim's pid; this is the shim's view)
  kExecFailed = 2,      // u32 step (InitStep), i32 errno, i32 detail (ContainmentStep)
  kProgress = 3,        // 2 x StreamSizes: stdout, stderr (coalesced, at most one per 10 ms)
  kDeadlinePassed = 4,  // the job's timeout passed: the shim sent SIGTERM, the grace runs
  kExited = 5,          // i32 raw wait status, u64 utime us, u64 stime us, u64 maxrss KiB,
                        // 2 x StreamSizes (final), u8 timed out
  // jobworkerd -> shim
  kRelease = 64,    // the shim sits in its cgroup(s): go on
  kStop = 65,       // i32 signal, u32 grace ms: signal the command's group, SIGKILL all after grace
  kCollected = 66,  // the Exited frame arrived (and the job's final cgroup figures were read)
};

// After Exited the shim, the job's last process, waits this long for Collected before it exits:
// under systemd the job's scope, and with it its cgroup's figures, goes as soon as it is empty.
constexpr uint64_t kCollectWaitMs = 5000;

struct StreamSizes {
  uint64_t stored = 0;   // bytes in the log file
  uint64_t dropped = 0;  // bytes drained but not stored (cap or write error)
  int32_t error = 0;     // errno of the first failed append (storing stopped there), else 0
  uint64_t error_offset = 0;
};

struct Exited {
  int32_t wait_status = 0;
  uint64_t utime_us = 0, stime_us = 0, maxrss_kb = 0;
  StreamSizes streams[2];
  bool timed_out = false;
};

constexpr size_t kStreamSizesBytes = 8 + 8 + 4 + 8;
constexpr size_t kMaxFrameBytes = 128;

// The steps of the shim's start, for ExecFailed (spawn.cc names them in its error).
enum class InitStep : uint32_t {
  kExecInit = 1,  // execveat of jobworker-init itself (in jobworkerd's child)
  kSpec,          // the spec memfd: seals, size, layout
  kSignals,
  kRelease,
  kSession,      // setsid (and PR_SET_CHILD_SUBREAPER without a PID namespace)
  kContainment,  // detail: which ContainmentStep
  kOutput,       // pipes, timers
  kForkCommand,
  kProcessGroup,
  kStdio,
  kResourceLimits,
  kBoundingSet,
  kCredentials,
  kCapabilities,
  kNoNewPrivs,
  kWorkingDir,
  kCloseFds,
  kSeccomp,
  kExec,
};

inline const char* initStepName(uint32_t step) {
  static const char* const kNames[] = {"unknown step",
                                       "execveat jobworker-init",
                                       "read the job spec",
                                       "reset signals",
                                       "wait for cgroup placement",
                                       "setsid",
                                       "containment",
                                       "output pipes and timers",
                                       "fork the command",
                                       "setpgid",
                                       "redirect stdio",
                                       "set resource limits",
                                       "drop the capability bounding set",
                                       "change credentials",
                                       "clear capabilities",
                                       "PR_SET_NO_NEW_PRIVS",
                                       "chdir",
                                       "close file descriptors",
                                       "install the job seccomp profile",
                                       "execve"};
  return step < sizeof kNames / sizeof kNames[0] ? kNames[step] : kNames[0];
}

enum class ContainmentStep : int32_t {
  kNone = 0,
  kMountPropagation,  // make / recursively a slave
  kProc,              // mount proc on /proc
  kTmp,               // tmpfs on /tmp
  kShm,               // tmpfs on /dev/shm
  kLoopback,          // bring `lo` up
  kHostname,          // sethostname
  kCgroupNamespace,   // unshare(CLONE_NEWCGROUP)
  kCgroupMount,       // the job's own view of /sys/fs/cgroup
};

inline const char* containmentStepName(int32_t step) {
  static const char* const kNames[] = {"none",
                                       "make / a recursive slave mount",
                                       "mount /proc",
                                       "mount tmpfs on /tmp",
                                       "mount tmpfs on /dev/shm",
                                       "bring lo up",
                                       "sethostname",
                                       "unshare the cgroup namespace",
                                       "mount the job's /sys/fs/cgroup"};
  return step >= 0 && static_cast<size_t>(step) < sizeof kNames / sizeof kNames[0]
             ? kNames[step]
             : "unknown containment step";
}

// A frame being built in a fixed buffer.
class FrameWriter {
 public:
  explicit FrameWriter(Frame type) { put8(static_cast<uint8_t>(type)); }
  void put8(uint8_t v) { putBytes(&v, 1); }
  void put32(uint32_t v) {
    uint8_t b[4];
    for (int i = 0; i < 4; i++) b[i] = static_cast<uint8_t>(v >> (8 * i));
    putBytes(b, 4);
  }
  void put64(uint64_t v) {
    uint8_t b[8];
    for (int i = 0; i < 8; i++) b[i] = static_cast<uint8_t>(v >> (8 * i));
    putBytes(b, 8);
  }
  void putSizes(const StreamSizes& s) {
    put64(s.stored);
    put64(s.dropped);
    put32(static_cast<uint32_t>(s.error));
    put64(s.error_offset);
  }
  const uint8_t* data() const { return buf_; }
  size_t size() const { return len_; }

 private:
  void putBytes(const uint8_t* p, size_t n) {
    if (len_ + n > sizeof buf_) return;  // frames are far below the buffer: cannot happen
    std::memcpy(buf_ + len_, p, n);
    len_ += n;
  }
  uint8_t buf_[kMaxFrameBytes] = {};
  size_t len_ = 0;
};

// A received frame: the type, then getters that latch the first overrun.
class FrameReader {
 public:
  FrameReader(const uint8_t* data, size_t len) : p_(data), len_(len) {}
  bool type(Frame* out) {
    uint8_t t = 0;
    if (!get8(&t)) return false;
    *out = static_cast<Frame>(t);
    return true;
  }
  bool get8(uint8_t* v) { return getBytes(v, 1); }
  bool get32(uint32_t* v) {
    uint8_t b[4];
    if (!getBytes(b, 4)) return false;
    *v = 0;
    for (int i = 0; i < 4; i++) *v |= static_cast<uint32_t>(b[i]) << (8 * i);
    return true;
  }
  bool getI32(int32_t* v) {
    uint32_t u = 0;
    if (!get32(&u)) return false;
    *v = static_cast<int32_t>(u);
    return true;
  }
  bool get64(uint64_t* v) {
    uint8_t b[8];
    if (!getBytes(b, 8)) return false;
    *v = 0;
    for (int i = 0; i < 8; i++) *v |= static_cast<uint64_t>(b[i]) << (8 * i);
    return true;
  }
  bool getSizes(StreamSizes* s) {
    return get64(&s->stored) && get64(&s->dropped) && getI32(&s->error) && get64(&s->error_offset);
  }
  // Every byte consumed and no overrun: a frame is exactly its type's length.
  bool complete() const { return ok_ && off_ == len_; }

 private:
  bool getBytes(uint8_t* out, size_t n) {
    if (!ok_ || n > len_ - off_) return ok_ = false;
    std::memcpy(out, p_ + off_, n);
    off_ += n;
    return true;
  }
  const uint8_t* p_;
  size_t len_;
  size_t off_ = 0;
  bool ok_ = true;
};

inline FrameWriter encodeExited(const Exited& e) {
  FrameWriter w(Frame::kExited);
  w.put32(static_cast<uint32_t>(e.wait_status));
  w.put64(e.utime_us);
  w.put64(e.stime_us);
  w.put64(e.maxrss_kb);
  w.putSizes(e.streams[0]);
  w.putSizes(e.streams[1]);
  w.put8(e.timed_out ? 1 : 0);
  return w;
}

inline bool decodeExited(FrameReader& r, Exited* e) {
  uint8_t timed_out = 0;
  bool ok = r.getI32(&e->wait_status) && r.get64(&e->utime_us) && r.get64(&e->stime_us) &&
            r.get64(&e->maxrss_kb) && r.getSizes(&e->streams[0]) && r.getSizes(&e->streams[1]) &&
            r.get8(&timed_out) && r.complete() && timed_out <= 1;
  e->timed_out = timed_out == 1;
  return ok;
}

inline FrameWriter encodeProgress(const StreamSizes& out, const StreamSizes& err) {
  FrameWriter w(Frame::kProgress);
  w.putSizes(out);
  w.putSizes(err);
  return w;
}

inline FrameWriter encodeExecFailed(InitStep step, int err, int32_t detail) {
  FrameWriter w(Frame::kExecFailed);
  w.put32(static_cast<uint32_t>(step));
  w.put32(static_cast<uint32_t>(err));
  w.put32(static_cast<uint32_t>(detail));
  return w;
}

}  // namespace jw::shim
