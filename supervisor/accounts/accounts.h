// Unix account lookup (uid, gid, supplementary groups, home) for job run-as accounts and the
// frontend's `jobworker` account. Runs in jobworkerd.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include "common/result.h"

namespace jw::supervisor {

struct Account {
  std::string name;
  uid_t uid = 0;
  gid_t gid = 0;
  std::vector<gid_t> groups;  // supplementary groups, including gid
  std::string home;
};

// getpwnam_r + getgrouplist; an unknown account is an error naming it.
Result<Account> lookupAccount(const std::string& name);
// The account running this process (for non-root dev mode).
Result<Account> currentAccount();

}  // namespace jw::supervisor
