// Parsing of HTTP request targets (path segments, query parameters) and job ids for the REST
// API; runs in jobworker-frontend's HTTP worker threads. Strict on purpose: the API has no
// legitimate use for percent-encoded paths, dot segments or empty segments.
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

// A well-formed job id: lowercase UUIDv4 text, e.g. "0b6f3c1e-5d2a-4c8e-9f1a-2b3c4d5e6f70".
bool isJobId(std::string_view id);

}  // namespace jw::frontend
