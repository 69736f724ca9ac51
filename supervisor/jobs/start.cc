// The job-start steps of start.h; runs in jobworkerd.
#include "supervisor/jobs/start.h"

#include <fcntl.h>
#include <linux/falloc.h>

#include <cerrno>
#include <cstdio>
#include <string>
#include <utility>

#include "common/log.h"
#include "common/policy.h"

namespace jw::supervisor {

using protocol::ErrorCode;

namespace {

// The shim writes the job's exit here even when no jobworkerd runs to hear it, and a full disk
// must not lose it: its blocks are reserved now (KEEP_SIZE: the file reads empty until then).
// Filesystems without fallocate (EOPNOTSUPP) go without the reservation.
Result<UniqueFd> createExitRecord(const std::string& path) {
  UniqueFd fd(open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (!fd) return sysError("create " + path);
  if (fallocate(fd.get(), FALLOC_FL_KEEP_SIZE, 0, kExitRecordReserve) != 0 && errno != EOPNOTSUPP) {
    return sysError("reserve space for " + path);
  }
  return fd;
}

}  // namespace

Result<Account, RequestError> resolveAccount(const config::Settings& s, const UserRecord& u,
                                             const Account* self,
                                             const std::optional<Account>& frontend_account) {
  if (self != nullptr) return *self;
  auto a = lookupAccount(u.run_as);
  if (!a) {
    return RequestError{ErrorCode::kInternal,
                        "run_as account of user " + u.name + ": " + a.error().message};
  }
  const bool privileged = a->uid == 0 || (frontend_account && a->uid == frontend_account->uid);
  if (privileged && !policy::rootAllowed(s, u.name, u.role)) {
    return RequestError{ErrorCode::kForbidden, "user " + u.name + " runs jobs as " +
                                                   log::quote(a->name) +
                                                   ", which needs allow_root in the configuration"};
  }
  return std::move(a.value());
}

std::optional<RequestError> checkNetwork(const config::Settings& s, const UserRecord& u,
                                         protocol::Network network) {
  if (network == protocol::Network::kHost && !policy::networkHostAllowed(s, u.name, u.role)) {
    return RequestError{ErrorCode::kForbidden, "network \"host\" is not allowed for user " +
                                                   u.name + " (network_host in the configuration)"};
  }
  return std::nullopt;
}

Result<protocol::Limits, RequestError> jobLimits(const config::Settings& s, const UserRecord& u,
                                                 const protocol::Limits& requested,
                                                 bool have_cgroups) {
  // Re-checked here: the frontend that checked it first may be compromised.
  if (auto range = policy::outOfRange(requested)) {
    return RequestError{ErrorCode::kBadRequest, *range};
  }
  auto fit = policy::fitLimits(requested, s.default_limits, policy::maxima(s, u.name, u.role),
                               policy::totals(s, u.name, u.role));
  if (fit.refused) {
    const policy::LimitRefusal& r = *fit.refused;
    if (r.aggregate) {
      // The numbers in the units the API takes: cores for cpu (millicores inside), bytes.
      auto text = [&](uint64_t v) {
        if (r.limit != policy::LimitRefusal::Limit::kCpu) return std::to_string(v);
        char buf[32];
        std::snprintf(buf, sizeof buf, "%g cores", static_cast<double>(v) / 1000);
        return std::string(buf);
      };
      return RequestError{ErrorCode::kLimitExceeded,
                          policy::limitField(r.limit) + " " + text(r.asked) +
                              " over the aggregate " + text(r.maximum) +
                              " of all the jobs of user " + u.name + " together (" +
                              policy::totalKey(r.limit) + ")"};
    }
    return RequestError{
        ErrorCode::kLimitExceeded,
        policy::limitField(r.limit) + " over the maximum allowed for user " + u.name};
  }
  if (!have_cgroups) {
    if (!policy::anyLimit(fit.limits)) return fit.limits;
    if (policy::anyLimit(requested)) {
      return RequestError{ErrorCode::kUnavailable,
                          "resource limits need cgroups, which this jobworkerd runs without"};
    }
    return protocol::Limits{};  // configured defaults cannot apply without cgroups
  }
  if (Status st = checkLimits(cgroupLimits(fit.limits)); !st) {
    return RequestError{ErrorCode::kBadRequest, st.error().message, st.error().sys_errno};
  }
  return fit.limits;
}

uint64_t jobTimeoutMs(const config::Settings& s, uint64_t requested_ms) {
  uint64_t ms = requested_ms != 0 ? requested_ms : s.default_timeout_ms;
  if (s.max_timeout_ms > 0 && (ms == 0 || ms > s.max_timeout_ms)) ms = s.max_timeout_ms;
  return ms;
}

CgroupLimits cgroupLimits(const protocol::Limits& l) {
  return CgroupLimits{l.cpu_millicores, l.memory_bytes, l.pids, l.io};
}

AggregateLimits aggregateLimits(const config::LimitSet& totals) {
  auto within = [](auto v, auto lowest, auto highest) -> decltype(highest) {
    if (!v || *v < lowest || *v > highest) return 0;
    return *v;
  };
  AggregateLimits a;
  a.cpu_millicores =
      within(totals.cpu_millicores, policy::kMinCpuMillicores, policy::kMaxCpuMillicores);
  a.memory_bytes = within(totals.memory_bytes, uint64_t{1}, policy::kMaxMemoryBytes);
  a.pids = within(totals.pids, uint32_t{1}, policy::kMaxPids);
  return a;
}

namespace {

std::string mebibytes(uint64_t bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f MiB", static_cast<double>(bytes) / (1 << 20));
  return buf;
}

// A full disk or quota while creating the job's files is the same shortage as the reserve's.
// A job's files could not be created: a full state filesystem is the client's 507, anything
// else internal. The details (paths, errno) go to the log only: they describe the host.
RequestError storageError(const Job& job, const std::string& what, const Error& e) {
  log::err("job " + job.id() + ": " + what + ": " + e.message);
  bool full = e.sys_errno == ENOSPC || e.sys_errno == EDQUOT;
  return RequestError{full ? ErrorCode::kInsufficientStorage : ErrorCode::kInternal,
                      what + (full ? " failed: the state filesystem is full"
                                   : " failed (details in the daemon's log)"),
                      e.sys_errno};
}

}  // namespace

std::optional<std::string> stateSpaceShortage(const OutputStore& store, uint64_t reserve_bytes) {
  auto space = store.space();
  if (!space) return "cannot check free space: " + space.error().message;
  if (space->out_of_inodes) return "no free inodes on the state filesystem";
  if (space->available_bytes < reserve_bytes) {
    return mebibytes(space->available_bytes) + " free on the state filesystem" +
           ", under the state_reserve of " + mebibytes(reserve_bytes);
  }
  return std::nullopt;
}

// --- JobResources ---------------------------------------------------------------------------

Result<JobResources, RequestError> JobResources::create(Job& job, OutputStore& store,
                                                        CgroupBackend* cgroups,
                                                        const AggregateLimits& owner_total) {
  auto dir = store.createJobDir(job.id());
  if (!dir) return storageError(job, "creating the job's output directory", dir.error());
  JobResources guard(job, store);
  const int nstreams = job.separate() ? 2 : 1;
  for (int s = 0; s < nstreams; s++) {
    auto log = OutputLog::create(dir.value() + "/" + kStreamFile[s]);
    if (!log) return storageError(job, "creating the job's output file", log.error());
    job.streams[s].log = std::move(log.value());
  }
  auto exit_record = createExitRecord(dir.value() + "/exit");
  if (!exit_record) return storageError(job, "creating the job's exit record", exit_record.error());
  job.exit_record = std::move(exit_record.value());
  if (cgroups != nullptr) {
    auto cg =
        cgroups->create(job.id(), job.spec().owner, owner_total, cgroupLimits(job.spec().limits));
    if (!cg) {
      log::err("job " + job.id() + ": creating its cgroup: " + cg.error().message);
      return RequestError{ErrorCode::kUnavailable,
                          "the job's cgroup could not be created (details in the daemon's log)"};
    }
    job.cgroup = std::move(cg.value());
  }
  return guard;
}

JobResources::JobResources(JobResources&& other) noexcept
    : job_(std::exchange(other.job_, nullptr)), store_(other.store_) {}

JobResources::~JobResources() {
  if (job_ == nullptr) return;
  if (job_->cgroup) (void)job_->cgroup->remove();
  (void)store_->removeJobDir(job_->id());
}

void JobResources::release() { job_ = nullptr; }

void JobResources::releaseOutput() {
  if (job_ == nullptr) return;
  if (job_->cgroup) (void)job_->cgroup->remove();
  job_->cgroup.reset();
  for (auto& st : job_->streams) {
    if (st.log) st.log->seal();
  }
  job_->exit_record.reset();
  job_ = nullptr;
}

}  // namespace jw::supervisor
