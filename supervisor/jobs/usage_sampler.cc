// UsageSampler (see usage_sampler.h); runs in jobworkerd's event loop.
#include "supervisor/jobs/usage_sampler.h"

#include <time.h>

#include "supervisor/jobs/job.h"
#include "supervisor/jobs/job_table.h"

namespace jw::supervisor {

namespace {

int64_t monotonicUsNow() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1'000'000 + ts.tv_nsec / 1000;
}

}  // namespace

void UsageSampler::add(const std::string& job_id) {
  if (queued_.insert(job_id).second) queue_.push_back(job_id);
}

bool UsageSampler::runSlice(const JobTable& jobs, int64_t budget_us) {
  const int64_t start_us = monotonicUsNow();
  int64_t now_us = start_us;
  do {
    if (queue_.empty()) break;
    std::string id = std::move(queue_.front());
    queue_.pop_front();
    queued_.erase(id);
    const Job* job = jobs.find(id);
    // Sampled meanwhile (a single status, an earlier slice): no second read within the second.
    if (job != nullptr && job->usageStale(now_us / 1000)) job->sampleUsage(now_us / 1000);
    now_us = monotonicUsNow();
  } while (now_us - start_us < budget_us);
  return !queue_.empty();
}

}  // namespace jw::supervisor
