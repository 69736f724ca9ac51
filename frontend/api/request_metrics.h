// The frontend's own figures for GET /metrics: requests by route template, method and status
// class, and their durations. Route templates are a fixed list given at construction, so every
// label's cardinality is fixed; any worker thread records with atomic increments, no lock. Runs
// in jobworker-frontend.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace jw::frontend {

// Upper bounds (seconds) of the request duration histogram; follow streams land in the top ones.
inline constexpr double kRequestDurationBuckets[] = {
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 60, 300, 3600};

class RequestMetrics {
 public:
  // The method label: what the API answers, everything else as "other".
  static constexpr std::array<std::string_view, 3> kMethods = {"GET", "POST", "other"};
  static constexpr std::array<std::string_view, 5> kStatusClasses = {"1xx", "2xx", "3xx", "4xx",
                                                                     "5xx"};

  // routes: the route templates ("/v1/jobs/{id}"); a request no route matched is recorded under
  // the last one, which the caller names for that ("unmatched").
  explicit RequestMetrics(std::span<const std::string_view> routes);

  void record(std::string_view route, std::string_view method, int status, uint64_t duration_us);

  struct RouteFigures {
    std::string_view route;
    // [method][status class]
    std::array<std::array<uint64_t, kStatusClasses.size()>, kMethods.size()> requests{};
    std::vector<uint64_t> duration_buckets;  // not cumulative; the last is +Inf
    uint64_t duration_sum_us = 0;
  };
  std::vector<RouteFigures> snapshot() const;

 private:
  struct PerRoute {
    std::string_view route;
    std::array<std::array<std::atomic<uint64_t>, kStatusClasses.size()>, kMethods.size()>
        requests{};
    std::array<std::atomic<uint64_t>, std::size(kRequestDurationBuckets) + 1> buckets{};
    std::atomic<uint64_t> sum_us{0};
  };
  PerRoute& routeOf(std::string_view route);

  std::vector<std::unique_ptr<PerRoute>> routes_;
};

}  // namespace jw::frontend
