// Taking over the running jobs of a previous jobworkerd on this state dir (after a crash, or
// after an upgrade in place exec'd this binary): proving each shim's identity, recovering its
// status channel with pidfd_getfd, keeping its cgroup, and ending a job whose shim is gone from
// its <job>/exit record. Runs in jobworkerd, at start, before the frontend.
#include <fcntl.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "common/io.h"
#include "common/log.h"
#include "supervisor/core/supervisor.h"

namespace jw::supervisor {

namespace {

// A pidfd of the process the record names, only when it is provably the job's shim: same boot,
// same pid, same start time, same cgroup. pidfd_open comes first so the pid cannot be reused
// between the checks; the signal-0 probe afterwards proves the /proc entries read were that
// process's (a zombie still answers: its exit is then read from <job>/exit).
Result<UniqueFd> openProvenShim(const JobIdentity& recorded, const std::string& boot_id) {
  if (recorded.boot_id != boot_id) return Error{"the host rebooted since it started"};
  UniqueFd pidfd(static_cast<int>(syscall(SYS_pidfd_open, recorded.shim_pid, 0U)));
  if (!pidfd) return sysError("pidfd_open of pid " + std::to_string(recorded.shim_pid));
  auto now = readJobIdentity(recorded.shim_pid, boot_id);
  if (!now) return Error{"its /proc entries: " + now.error().message};
  if (now->shim_start_time != recorded.shim_start_time) {
    return Error{"pid " + std::to_string(recorded.shim_pid) + " is another process now"};
  }
  if (now->cgroup_path != recorded.cgroup_path) {
    return Error{"pid " + std::to_string(recorded.shim_pid) + " left the job's cgroup"};
  }
  if (syscall(SYS_pidfd_send_signal, pidfd.get(), 0, nullptr, 0U) != 0) {
    return sysError("pid " + std::to_string(recorded.shim_pid) + " ended during the checks");
  }
  return pidfd;
}

}  // namespace

std::optional<shim::Exited> Supervisor::readExitRecord(const std::string& job_id) const {
  const std::string path = store_.jobsDir() + "/" + job_id + "/exit";
  UniqueFd fd(open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
  if (!fd) return std::nullopt;
  uint8_t buf[shim::kMaxFrameBytes];
  ssize_t n;
  while ((n = pread(fd.get(), buf, sizeof buf, 0)) < 0 && errno == EINTR) {
  }
  if (n <= 0) return std::nullopt;  // reserved, never written: the shim did not get that far
  shim::FrameReader r(buf, static_cast<size_t>(n));
  shim::Frame type{};
  shim::Exited e;
  // The file holds exactly the Exited frame the shim also sent; anything else is not an exit.
  if (!r.type(&type) || type != shim::Frame::kExited || !shim::decodeExited(r, &e)) {
    log::warning("job " + job_id + ": " + path + " is not an exit record; ignored");
    return std::nullopt;
  }
  return e;
}

void Supervisor::takeOverJob(const JobRecord& record, std::set<std::string>& keep_cgroups) {
  const protocol::JobStatus& r = record.status;
  std::unique_ptr<Job> job = Job::resume(record);
  // The shim appends to the files itself: what they hold is what was stored, to the byte.
  if (Status st = job->openStoredLogs(store_.jobsDir(), r); !st) {
    log::err("job " + r.id + ": " + st.error().message + "; not taken over");
    return;
  }
  const auto& iso = r.isolation;
  if (opt_.cgroups && std::find(iso.begin(), iso.end(), "cgroup") != iso.end()) {
    auto cg = opt_.cgroups->adopt(r.id, r.owner);
    if (cg) {
      job->cgroup = std::move(cg.value());
      keep_cgroups.insert(r.id);
    } else {
      log::warning("job " + r.id + ": its cgroup: " + cg.error().message);
    }
  }
  auto pidfd = openProvenShim(record.shim->identity, boot_id_);
  Job* raw = jobs_.insert(std::move(job));
  if (!pidfd) {
    // Ended before we came (or not ours any more): its exit record, if it wrote one, says how.
    log::notice("job " + r.id + ": its shim is gone (" + pidfd.error().message + ")");
    finishAdoptedJob(*raw, std::nullopt);
    return;
  }
  raw->pidfd = std::move(pidfd.value());
  raw->channel.reset(
      static_cast<int>(syscall(SYS_pidfd_getfd, raw->pidfd.get(), shim::kSupervisorEndFd, 0U)));
  if (!raw->channel) {
    // A shim that has just exited has no descriptors left: its exit comes from <job>/exit.
    log::warning("job " + r.id + ": " + sysError("pidfd_getfd of its status channel").message +
                 "; its end will be read from its exit record");
  }
  watchJob(*raw);
  if (record.shim->backup_kill_at_ms != 0) {
    // A stop was requested before: the shim runs its grace itself; the backup kill keeps the
    // deadline the previous jobworkerd set (same boot: CLOCK_MONOTONIC still counts from it).
    uint64_t now = EventLoop::monotonicMs();
    uint64_t at = record.shim->backup_kill_at_ms;
    armBackupKill(*raw, at > now + kShimGraceMarginMs ? at - now - kShimGraceMarginMs : 0);
  }
  log::info("job " + r.id + " of " + r.owner + " taken over: shim pid " + std::to_string(r.pid) +
            (raw->channel ? "" : " (no status channel)"));
}

// The pidfd of a taken-over shim became readable: it has exited. After an upgrade in place it is
// still our child (reap it); after a crash it is not (ECHILD: the host's init reaps it).
void Supervisor::onAdoptedJobExit(Job& job) {
  siginfo_t info{};
  std::optional<int> shim_status;
  if (waitid(P_PIDFD, static_cast<id_t>(job.pidfd.get()), &info, WEXITED | WNOHANG) == 0) {
    if (info.si_pid == 0) return;  // our child, still running: a spurious wake-up
    shim_status =
        info.si_code == CLD_EXITED ? W_EXITCODE(info.si_status, 0) : W_EXITCODE(0, info.si_status);
  }
  loop_.unwatch(job.pidfd_watch);
  job.pidfd_watch = 0;
  job.pidfd.reset();
  finishAdoptedJob(job, shim_status);
}

// The shim is gone: its Exited frame (from the channel, else from <job>/exit) is the job's end;
// without one the job is lost. shim_status: its own wait status when we reaped it.
void Supervisor::finishAdoptedJob(Job& job, std::optional<int> shim_status) {
  if (job.channel) onShimFrames(job);
  closeShimChannel(job);
  if (!job.reported_exit) job.reported_exit = readExitRecord(job.id());
  if (job.reported_exit) {
    applySizes(job, job.reported_exit->streams[0], job.reported_exit->streams[1]);
    recordShimEnd(job, job.reported_exit->wait_status);
  } else if (shim_status) {
    recordShimEnd(job, *shim_status);  // killed before it could report (a backup kill, OOM)
  } else {
    job.markFailed("lost: the shim (pid " + std::to_string(job.pid()) +
                       ") ended without an exit record while no jobworkerd ran; its output up "
                       "to then is kept",
                   realtimeMs());
  }
  killJob(job);  // what may be left in its cgroup
  if (!job.cgroup && job.reported_exit) {
    job.final_usage.has_cpu = true;
    job.final_usage.cpu_seconds =
        static_cast<double>(job.reported_exit->utime_us + job.reported_exit->stime_us) / 1e6;
  }
  if (job.kill_timer != 0) loop_.cancelTimer(job.kill_timer);
  job.kill_timer = 0;
  publishJob(job);
}

}  // namespace jw::supervisor
