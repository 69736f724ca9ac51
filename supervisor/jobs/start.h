// Starting a job, as named steps that Supervisor::startJob calls in order: the run-as account,
// the network rule, the limits, the timeout, and a guard over the job's output directory, logs
// and cgroup. Each refusal carries the code and message the user sees. Runs in jobworkerd.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>

#include "common/config.h"
#include "common/protocol/codec.h"
#include "common/result.h"
#include "supervisor/accounts/accounts.h"
#include "supervisor/accounts/users_file.h"
#include "supervisor/cgroup/cgroup.h"
#include "supervisor/jobs/job.h"
#include "supervisor/jobs/output_store.h"

namespace jw::supervisor {

// The account u's jobs run as, looked up per job so that users-file and passwd changes apply to
// the next one. `self` non-null: a non-root dev supervisor, whose jobs all run as *self. As root,
// root and the frontend's account need `allow_root`.
Result<Account, RequestError> resolveAccount(const config::Settings& s, const UserRecord& u,
                                             const Account* self,
                                             const std::optional<Account>& frontend_account);

// network "host" needs `network_host` (unset: admins only). Checked here even though the
// frontend checked it: the frontend's check is not to be trusted.
std::optional<RequestError> checkNetwork(const config::Settings& s, const UserRecord& u,
                                         protocol::Network network);

// The limits the job gets: policy::fitLimits with u's maxima (403 naming the limit). Without
// cgroups a job that asks for limits is refused (503) and the defaults are dropped (the status
// says so); with them, the client's mistakes only root can see (a missing or non-block io
// device, a cpu share under the kernel's minimum quota) are 400 rather than a 503 from the
// cgroup's creation.
Result<protocol::Limits, RequestError> jobLimits(const config::Settings& s, const UserRecord& u,
                                                 const protocol::Limits& requested,
                                                 bool have_cgroups);

// The request's timeout, else the configured default, within max_timeout_ms; 0: none.
uint64_t jobTimeoutMs(const config::Settings& s, uint64_t requested_ms);

CgroupLimits cgroupLimits(const protocol::Limits& l);
// An aggregate (policy::totals, or the global max.total_* for the instance) as the cgroup levels
// get it: unset or beyond what the kernel takes (`unlimited`) is no cap.
AggregateLimits aggregateLimits(const config::LimitSet& totals);

// Why the state filesystem cannot take new jobs ("2.0 MiB free, under the state_reserve of
// 64.0 MiB"), or nullopt. The one rule behind healthz's `degraded` and the starts' 507; a
// filesystem that cannot be checked counts as short (fail closed).
std::optional<std::string> stateSpaceShortage(const OutputStore& store, uint64_t reserve_bytes);

// The space reserved for <job>/exit (the shim's Exited frame).
constexpr off_t kExitRecordReserve = 4096;

// What a job needs before it runs: its output directory, one log per stream, the exit record
// (its space reserved), and with a cgroup backend its cgroup (limits from the job's spec, below
// its owner's level with owner_total), attached to the job. Until released, the guard removes
// them again: a refused job leaves nothing behind.
class JobResources {
 public:
  // Output files first: a job never runs without somewhere to put its output.
  static Result<JobResources, RequestError> create(Job& job, OutputStore& store,
                                                   CgroupBackend* cgroups,
                                                   const AggregateLimits& owner_total);
  JobResources(JobResources&& other) noexcept;
  JobResources(const JobResources&) = delete;
  JobResources& operator=(const JobResources&) = delete;
  JobResources& operator=(JobResources&&) = delete;
  ~JobResources();

  // The job runs: it owns everything now.
  void release();
  // The job failed to start but keeps its record: its (empty) output stays, its cgroup goes.
  void releaseOutput();

 private:
  JobResources(Job& job, OutputStore& store) : job_(&job), store_(&store) {}
  Job* job_;  // null once released
  OutputStore* store_;
};

}  // namespace jw::supervisor
