// The limits policy both processes apply: the user > role > global lookup and the fitting of a
// job's limits within the user's maxima. The frontend uses it for an early 403, jobworkerd again
// for the decision (it never trusts the frontend's check).
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "common/config.h"
#include "common/protocol/codec.h"

namespace jw::policy {

// Each field resolved on its own: the user's `user.<name>.max.*`, else the role's
// `role.<role>.max.*`, else the global `max.*`; nullopt where none sets it (no maximum).
config::LimitSet maxima(const config::Settings& s, const std::string& user, protocol::Role role);
// The aggregate caps of all u's jobs together (`max.total_cpu`, `.total_memory`, `.total_pids`):
// each field the user's `user.<name>.max.total_*`, else the role's, else the global one; never
// above the global one, the instance's, whose cgroup holds every user's.
config::LimitSet totals(const config::Settings& s, const std::string& user, protocol::Role role);

// Role metrics (a Prometheus scraper) may read GET /metrics and whoami, nothing else; admins
// may read /metrics too. jobworkerd decides with these for every request.
bool roleMayUseApi(protocol::Role role);
bool roleMayScrape(protocol::Role role);
// `network_host`: whether the job may share the host's network; unset, admins only.
bool networkHostAllowed(const config::Settings& s, const std::string& user, protocol::Role role);
// `allow_root`: whether the user's run_as may be root or the frontend's account; unset, no.
bool rootAllowed(const config::Settings& s, const std::string& user, protocol::Role role);
// `seccomp`: whether the user's jobs get the default seccomp profile; unset, yes.
bool jobSeccomp(const config::Settings& s, const std::string& user, protocol::Role role);

// A limit asked for over its maximum. The numbers are in the units of protocol::Limits
// (millicores, bytes, count, bytes or operations per second); each process words the message.
struct LimitRefusal {
  enum class Limit { kCpu, kMemory, kPids, kIoBps, kIoIops };
  Limit limit;
  uint64_t asked;
  uint64_t maximum;
  bool aggregate = false;  // maximum is the aggregate of all the user's jobs (max.total_*)
};
// "limits.cpu", "limits.memory", "limits.pids", "limits.io" (both io kinds).
std::string limitField(LimitRefusal::Limit limit);
// The configuration key of an aggregate: "max.total_cpu", "max.total_memory", "max.total_pids".
std::string totalKey(LimitRefusal::Limit limit);

struct FittedLimits {
  protocol::Limits limits;              // what the job gets, when nothing is refused
  std::optional<LimitRefusal> refused;  // the first limit asked for over its maximum
};

// The one rule for a job's limits: each of cpu, memory and pids is what the request asks (not
// 0), else the configured default; a requested value over the maximum is refused, while what
// the user did not ask for is fitted under the maximum instead: a default above it, or no limit
// at all (`default.<limit> = unlimited`, stored as 0) under a finite one (`max.<limit> =
// unlimited` is the type's maximum). IO rules have no defaults; each direction's rate must be
// within max.io_bps / max.io_iops. Aggregates (`totals`) are not summed over running jobs (the
// kernel enforces them on the user's and the instance's cgroups): a requested value that alone
// is over one is refused (aggregate set), a default above one is fitted under it. Pure: no
// configuration lookup, no host state.
FittedLimits fitLimits(const protocol::Limits& requested, const config::LimitSet& defaults,
                       const config::LimitSet& maxima, const config::LimitSet& totals);

// The range each limit can have at all, whatever the configuration says: outside it the kernel
// would refuse the value (a failed cgroup write) or wrap it.
constexpr uint32_t kMinCpuMillicores = 10;         // the kernel's smallest quota: 1 ms per 100 ms
constexpr uint32_t kMaxCpuMillicores = 4'096'000;  // 4096 cores
constexpr uint64_t kMaxMemoryBytes = 1ULL << 62;   // 4 EiB; v1 keeps a signed count of bytes
constexpr uint32_t kMaxPids = 4'194'304;           // the kernel's PID_MAX_LIMIT on 64-bit
// The first requested limit (0 = not asked) outside its range, worded for a client as
// "field limits.pids must be in 1..4194304"; nullopt when every one is in range. Both
// processes call it: the frontend for its 400, jobworkerd again before anything is created.
std::optional<std::string> outOfRange(const protocol::Limits& requested);

// Whether any limit is set (a cpu, memory or pids value, or an io rule).
bool anyLimit(const protocol::Limits& l);

}  // namespace jw::policy
