// Job ID arguments of the jobworker CLI (CLI process): prefix matching against the job list.
#include "client/job_ref.h"

#include <Poco/JSON/Array.h>

#include <algorithm>

#include "client/output_format.h"
#include "common/names.h"

namespace jw::client {
namespace {

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

constexpr const char* kListHint = ": list jobs with 'jobworker list --all'";

}  // namespace

bool isFullJobId(const std::string& s) { return names::validJobId(lower(s)); }

ClientResult<std::string> matchJobPrefix(const std::vector<std::string>& ids,
                                         const std::string& prefix_in) {
  const std::string prefix = lower(prefix_in);
  std::vector<std::string> hits;
  for (const auto& id : ids) {
    if (!prefix.empty() && lower(id).compare(0, prefix.size(), prefix) == 0) hits.push_back(id);
  }
  if (hits.size() == 1) return hits[0];
  if (hits.empty()) {
    return ClientError{ClientError::Kind::kHttp, "job " + prefix_in + "… not found" + kListHint,
                       404, "not_found"};
  }
  std::string shown;
  for (size_t i = 0; i < hits.size() && i < 3; ++i) {
    shown += (i ? ", " : "") + hits[i].substr(0, std::max(prefix.size() + 4, kShortIdLength));
  }
  if (hits.size() > 3) shown += " and " + std::to_string(hits.size() - 3) + " more";
  return ClientError{
      ClientError::Kind::kLocal,
      "job prefix '" + prefix_in + "' is ambiguous (matches " + shown + "): give more characters",
      0, ""};
}

std::optional<ClientResult<std::string>> matchJobName(const std::vector<NamedJob>& named,
                                                      const std::string& name) {
  if (named.empty()) return std::nullopt;
  for (const auto& j : named) {
    if (j.running) return ClientResult<std::string>(j.id);
  }
  if (named.size() == 1) return ClientResult<std::string>(named[0].id);
  std::string shown;
  for (size_t i = 0; i < named.size() && i < 3; ++i) {
    shown += (i ? ", " : "") + shortId(named[i].id);
  }
  if (named.size() > 3) shown += " and " + std::to_string(named.size() - 3) + " more";
  return ClientResult<std::string>(ClientError{
      ClientError::Kind::kLocal,
      "name '" + name + "' is ambiguous (finished jobs " + shown + "): use an id", 0, ""});
}

namespace {

// The caller's jobs named `name`, newest first; nullopt with the error set when the server
// could not be asked.
std::optional<std::vector<NamedJob>> jobsNamed(const ApiClient& client, const std::string& name,
                                               std::optional<ClientError>* error) {
  auto r = client.request("GET", "/v1/jobs?name=" + name);
  if (!r) {
    *error = r.error();
    return std::nullopt;
  }
  if (r->status != 200) {
    *error = httpError(r.value(), "job " + name, client.server());
    return std::nullopt;
  }
  auto o = r->object();
  Poco::JSON::Array::Ptr jobs = o ? o->getArray("jobs") : nullptr;
  std::vector<NamedJob> out;
  for (size_t i = 0; jobs && i < jobs->size(); ++i) {
    auto job = jobs->getObject(static_cast<unsigned>(i));
    if (!job || !job->has("id") || !job->get("id").isString()) continue;
    out.push_back(
        {job->getValue<std::string>("id"), job->optValue<std::string>("state", "") == "running"});
  }
  return out;
}

}  // namespace

ClientResult<std::string> resolveJobId(const ApiClient& client, const std::string& ref) {
  if (isFullJobId(ref)) return lower(ref);
  if (names::validJobName(ref)) {
    std::optional<ClientError> error;
    auto named = jobsNamed(client, ref, &error);
    if (!named) return *error;
    if (auto hit = matchJobName(*named, ref)) return *hit;
  }
  bool plausible = !ref.empty() && std::all_of(ref.begin(), ref.end(), [](unsigned char c) {
    return std::isxdigit(c) || c == '-';
  });
  if (!plausible || ref.size() > 36) {
    return ClientError{ClientError::Kind::kHttp,
                       "job '" + ref +
                           "' not found (no job of yours has that name, and job ids look like "
                           "3f2a1b2c-...)" +
                           std::string(kListHint),
                       404, "not_found"};
  }
  auto r = client.request("GET", "/v1/jobs?all=true");
  if (r && r->status == 403) r = client.request("GET", "/v1/jobs");
  if (!r) return r.error();
  if (r->status != 200) return httpError(r.value(), "job " + ref + "…", client.server());
  auto o = r->object();
  Poco::JSON::Array::Ptr jobs = o ? o->getArray("jobs") : nullptr;
  if (!jobs) {
    return ClientError{ClientError::Kind::kProtocol,
                       client.server().text + " sent a job list without 'jobs'", 0, ""};
  }
  std::vector<std::string> ids;
  for (size_t i = 0; i < jobs->size(); ++i) {
    auto job = jobs->getObject(static_cast<unsigned>(i));
    if (job && job->has("id") && job->get("id").isString())
      ids.push_back(job->getValue<std::string>("id"));
  }
  return matchJobPrefix(ids, ref);
}

}  // namespace jw::client
