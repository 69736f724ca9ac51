// GET /metrics' body: the Prometheus text exposition format (version 0.0.4) of jobworkerd's
// figures and the frontend's own. Every family has its HELP and TYPE lines; docs/operations.md
// lists them all. Runs in jobworker-frontend.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/protocol/codec.h"
#include "frontend/api/request_metrics.h"

namespace jw::frontend {

inline constexpr std::string_view kMetricsContentType = "text/plain; version=0.0.4; charset=utf-8";

// What the frontend measures itself, as of the scrape.
struct FrontendFigures {
  std::vector<RequestMetrics::RouteFigures> routes;
  uint64_t open_connections = 0;
  uint64_t log_followers = 0;  // follow streams being served
  // The intake's refusals by reason (IntakeCounters), as (reason, count).
  std::vector<std::pair<std::string, uint64_t>> intake_refusals;
};

std::string renderMetrics(const protocol::MetricsReply& supervisor,
                          const FrontendFigures& frontend);

}  // namespace jw::frontend
