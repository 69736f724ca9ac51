// Job ID arguments of the jobworker CLI (CLI process): a full id or a unique prefix of one.
#pragma once

#include <string>
#include <vector>

#include "client/api_client.h"

namespace jw::client {

// True for the full text form of a job id in any case: names::validJobId once lowercased (the
// server's ids are lowercase UUIDv4s; a user may paste them uppercased).
bool isFullJobId(const std::string& s);

// Picks the one id in `ids` that starts with `prefix` (case-insensitive). Errors:
// "job 3f2a… not found: ..." or "job prefix '3f' is ambiguous (matches ...): ...".
ClientResult<std::string> matchJobPrefix(const std::vector<std::string>& ids,
                                         const std::string& prefix);

// Resolves an ID argument against the server: a full id is used as is; a prefix is matched
// against GET /v1/jobs?all=true (the caller's own jobs when the role may not list all).
ClientResult<std::string> resolveJobId(const ApiClient& client, const std::string& ref);

}  // namespace jw::client
