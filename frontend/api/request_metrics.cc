// Request counters of /metrics (see request_metrics.h); any HTTP worker thread of
// jobworker-frontend records, the /metrics handler reads.
#include "frontend/api/request_metrics.h"

#include <algorithm>

namespace jw::frontend {

RequestMetrics::RequestMetrics(std::span<const std::string_view> routes) {
  for (std::string_view r : routes) {
    routes_.push_back(std::make_unique<PerRoute>());
    routes_.back()->route = r;
  }
}

RequestMetrics::PerRoute& RequestMetrics::routeOf(std::string_view route) {
  for (auto& r : routes_) {
    if (r->route == route) return *r;
  }
  return *routes_.back();
}

void RequestMetrics::record(std::string_view route, std::string_view method, int status,
                            uint64_t duration_us) {
  if (routes_.empty()) return;
  PerRoute& r = routeOf(route);
  size_t m = static_cast<size_t>(std::find(kMethods.begin(), kMethods.end() - 1, method) -
                                 kMethods.begin());
  size_t c = static_cast<size_t>(std::clamp(status / 100, 1, 5) - 1);
  r.requests.at(m).at(c).fetch_add(1, std::memory_order_relaxed);
  const double seconds = static_cast<double>(duration_us) / 1e6;
  size_t b = 0;
  while (b < std::size(kRequestDurationBuckets) && seconds > kRequestDurationBuckets[b]) b++;
  r.buckets.at(b).fetch_add(1, std::memory_order_relaxed);
  r.sum_us.fetch_add(duration_us, std::memory_order_relaxed);
}

std::vector<RequestMetrics::RouteFigures> RequestMetrics::snapshot() const {
  std::vector<RouteFigures> out;
  for (const auto& r : routes_) {
    RouteFigures f;
    f.route = r->route;
    for (size_t m = 0; m < kMethods.size(); m++) {
      for (size_t c = 0; c < kStatusClasses.size(); c++) {
        f.requests.at(m).at(c) = r->requests.at(m).at(c).load(std::memory_order_relaxed);
      }
    }
    for (const auto& b : r->buckets)
      f.duration_buckets.push_back(b.load(std::memory_order_relaxed));
    f.duration_sum_us = r->sum_us.load(std::memory_order_relaxed);
    out.push_back(std::move(f));
  }
  return out;
}

}  // namespace jw::frontend
