// Parsing of HTTP request targets (path segments, query parameters) for the REST API (job ids:
// common/names); runs in jobworker-frontend's HTTP worker threads. Strict on purpose: the API has
// no legitimate use for percent-encoded paths, dot segments or empty segments.
#pragma once

#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "frontend/api/api_error.h"

namespace jw::frontend {

struct Target {
  std::vector<std::string> segments;         // "/v1/jobs/x" -> {"v1", "jobs", "x"}
  std::map<std::string, std::string> query;  // percent-decoded; each key at most once
};

// 400 for anything malformed (absolute-form, '%' or other characters outside the unreserved set
// in the path, "." or ".." segments, bad percent-encoding in the query, repeated parameters);
// 404 for empty segments ("//", trailing "/"), which name nothing.
ApiResult<Target> parseTarget(std::string_view raw);

}  // namespace jw::frontend
