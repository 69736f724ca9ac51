// Job ID arguments of the jobworker CLI (CLI process): an exact id, then an exact job name, then a
// unique prefix of an id, in that order.
#pragma once

#include <optional>
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

// A job of the caller's that carries the name asked for.
struct NamedJob {
  std::string id;
  bool running = false;
};
// The job a name means among the caller's jobs with that name (newest first): the running one
// (names are unique among running jobs), else the only one; nullopt when none has it. Several
// finished ones: "name 'x' is ambiguous (jobs ...): use an id".
std::optional<ClientResult<std::string>> matchJobName(const std::vector<NamedJob>& named,
                                                      const std::string& name);

// Resolves an ID argument against the server: a full id is used as is; then a name of one of
// the caller's jobs (GET /v1/jobs?name=); then a prefix, matched against GET /v1/jobs?all=true
// (the caller's own jobs when the role may not list all).
ClientResult<std::string> resolveJobId(const ApiClient& client, const std::string& ref);

}  // namespace jw::client
