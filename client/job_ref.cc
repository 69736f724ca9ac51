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

ClientResult<std::string> resolveJobId(const ApiClient& client, const std::string& ref) {
  if (isFullJobId(ref)) return lower(ref);
  bool plausible = !ref.empty() && std::all_of(ref.begin(), ref.end(), [](unsigned char c) {
    return std::isxdigit(c) || c == '-';
  });
  if (!plausible || ref.size() > 36) {
    return ClientError{ClientError::Kind::kHttp,
                       "job '" + ref +
                           "' not found (job ids look like "
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
