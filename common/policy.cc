// The limits policy of policy.h; runs in jobworker-frontend (early check) and jobworkerd (the
// authoritative one).
#include "common/policy.h"

#include <algorithm>
#include <limits>
#include <type_traits>

namespace jw::policy {

namespace {

using Limit = LimitRefusal::Limit;

// The one lookup: a user's entry overrides its role's, which overrides the global one.
template <typename Get>
auto lookup(const config::Settings& s, const std::string& user, protocol::Role role, Get get)
    -> std::invoke_result_t<Get, const config::Policy&> {
  if (auto it = s.users.find(user); it != s.users.end() && get(it->second)) {
    return get(it->second);
  }
  if (auto it = s.roles.find(std::string(protocol::roleName(role)));
      it != s.roles.end() && get(it->second)) {
    return get(it->second);
  }
  return get(s.global);
}

// One of cpu, memory, pids; false (and *refused set) when a requested value is over max or
// total.
template <typename T>
bool fitOne(T& value, std::optional<T> def, std::optional<T> max, std::optional<T> total,
            Limit limit, std::optional<LimitRefusal>* refused) {
  const bool requested = value != 0;
  if (requested) {
    if (max && value > *max) {
      *refused = LimitRefusal{limit, value, *max};
      return false;
    }
    if (total && value > *total) {
      *refused = LimitRefusal{limit, value, *total, true};
      return false;
    }
    return true;
  }
  if (def) value = *def;
  if (max && (value > *max || (value == 0 && *max != std::numeric_limits<T>::max()))) {
    value = *max;
  }
  // No limit stays none: the user's cgroup enforces the aggregate anyway.
  if (total && value > *total) value = *total;
  return true;
}

}  // namespace

config::LimitSet maxima(const config::Settings& s, const std::string& user, protocol::Role role) {
  auto max = [&](auto field) {
    return lookup(s, user, role, [&](const config::Policy& p) { return p.max.*field; });
  };
  config::LimitSet m;
  m.cpu_millicores = max(&config::LimitSet::cpu_millicores);
  m.memory_bytes = max(&config::LimitSet::memory_bytes);
  m.pids = max(&config::LimitSet::pids);
  m.io_bps = max(&config::LimitSet::io_bps);
  m.io_iops = max(&config::LimitSet::io_iops);
  return m;
}

config::LimitSet totals(const config::Settings& s, const std::string& user, protocol::Role role) {
  auto total = [&](auto field) {
    auto v = lookup(s, user, role, [&](const config::Policy& p) { return p.total.*field; });
    auto instance = s.global.total.*field;
    if (v && instance && *instance < *v) v = instance;
    return v;
  };
  config::LimitSet t;
  t.cpu_millicores = total(&config::LimitSet::cpu_millicores);
  t.memory_bytes = total(&config::LimitSet::memory_bytes);
  t.pids = total(&config::LimitSet::pids);
  return t;
}

bool roleMayUseApi(protocol::Role role) { return role != protocol::Role::kMetrics; }

bool roleMayScrape(protocol::Role role) {
  return role == protocol::Role::kAdmin || role == protocol::Role::kMetrics;
}

bool networkHostAllowed(const config::Settings& s, const std::string& user, protocol::Role role) {
  auto v = lookup(s, user, role, [](const config::Policy& p) { return p.allow_network_host; });
  return v.value_or(role == protocol::Role::kAdmin);
}

bool rootAllowed(const config::Settings& s, const std::string& user, protocol::Role role) {
  return lookup(s, user, role, [](const config::Policy& p) { return p.allow_root; })
      .value_or(false);
}

bool jobSeccomp(const config::Settings& s, const std::string& user, protocol::Role role) {
  return lookup(s, user, role, [](const config::Policy& p) { return p.seccomp; }).value_or(true);
}

std::string limitField(Limit limit) {
  switch (limit) {
    case Limit::kCpu:
      return "limits.cpu";
    case Limit::kMemory:
      return "limits.memory";
    case Limit::kPids:
      return "limits.pids";
    case Limit::kIoBps:
    case Limit::kIoIops:
      return "limits.io";
  }
  return "limits";
}

std::string totalKey(Limit limit) {
  switch (limit) {
    case Limit::kCpu:
      return "max.total_cpu";
    case Limit::kMemory:
      return "max.total_memory";
    case Limit::kPids:
      return "max.total_pids";
    case Limit::kIoBps:
    case Limit::kIoIops:
      break;
  }
  return "max.total";
}

FittedLimits fitLimits(const protocol::Limits& requested, const config::LimitSet& def,
                       const config::LimitSet& max, const config::LimitSet& total) {
  FittedLimits f{requested, std::nullopt};
  protocol::Limits& l = f.limits;
  if (!fitOne(l.cpu_millicores, def.cpu_millicores, max.cpu_millicores, total.cpu_millicores,
              Limit::kCpu, &f.refused) ||
      !fitOne(l.memory_bytes, def.memory_bytes, max.memory_bytes, total.memory_bytes,
              Limit::kMemory, &f.refused) ||
      !fitOne(l.pids, def.pids, max.pids, total.pids, Limit::kPids, &f.refused)) {
    return f;
  }
  for (const auto& io : l.io) {
    const uint64_t bps = std::max(io.read_bps, io.write_bps);
    const uint64_t iops = std::max(io.read_iops, io.write_iops);
    if (max.io_bps && bps > *max.io_bps) {
      f.refused = LimitRefusal{Limit::kIoBps, bps, *max.io_bps};
      return f;
    }
    if (max.io_iops && iops > *max.io_iops) {
      f.refused = LimitRefusal{Limit::kIoIops, iops, *max.io_iops};
      return f;
    }
  }
  return f;
}

bool anyLimit(const protocol::Limits& l) {
  return l.cpu_millicores != 0 || l.memory_bytes != 0 || l.pids != 0 || !l.io.empty();
}

std::optional<std::string> outOfRange(const protocol::Limits& l) {
  if (l.cpu_millicores != 0 &&
      (l.cpu_millicores < kMinCpuMillicores || l.cpu_millicores > kMaxCpuMillicores)) {
    return "field limits.cpu must be in 0.01..4096 cores";
  }
  if (l.memory_bytes > kMaxMemoryBytes) {
    return "field limits.memory must be in 1..4611686018427387904 bytes (4 EiB)";
  }
  if (l.pids > kMaxPids) return "field limits.pids must be in 1.." + std::to_string(kMaxPids);
  return std::nullopt;
}

}  // namespace jw::policy
