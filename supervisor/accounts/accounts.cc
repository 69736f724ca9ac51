// Unix account lookup through NSS (getpwnam_r, getgrouplist) for run-as accounts and the
// frontend's account. Runs in jobworkerd and its `user` admin command.
#include "supervisor/accounts/accounts.h"

#include <grp.h>
#include <pwd.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <vector>

namespace jw::supervisor {

namespace {

// Buffers past this are a broken NSS module, not a real account.
constexpr size_t kMaxPwBuffer = 1 << 20;
constexpr int kMaxGroups = 65536;

Status fillGroups(Account& a) {
  int n = 32;
  while (true) {
    std::vector<gid_t> groups(static_cast<size_t>(n));
    int count = n;
    if (::getgrouplist(a.name.c_str(), a.gid, groups.data(), &count) >= 0) {
      groups.resize(static_cast<size_t>(count));
      a.groups = std::move(groups);
      return okStatus();
    }
    // -1 with count set to the number needed; glibc may leave count unchanged on other errors.
    n = count > n ? count : n * 2;
    if (n > kMaxGroups) return Error{"account " + a.name + ": too many supplementary groups"};
  }
}

// lookup(buf, size, &pw, &result) wraps getpwnam_r or getpwuid_r; `who` names it in errors.
template <typename Lookup>
Result<Account> lookupWith(Lookup lookup, const std::string& who) {
  long hint = ::sysconf(_SC_GETPW_R_SIZE_MAX);
  size_t size = hint > 0 ? static_cast<size_t>(hint) : 4096;
  while (true) {
    std::vector<char> buf(size);
    struct passwd pw {};
    struct passwd* result = nullptr;
    int rc = lookup(buf.data(), buf.size(), &pw, &result);
    if (rc == ERANGE && size < kMaxPwBuffer) {
      size *= 2;
      continue;
    }
    if (rc != 0) return sysError("look up account " + who, rc);
    if (result == nullptr) {
      return Error{"no such Unix account: " + who, ENOENT};
    }
    Account a;
    a.name = pw.pw_name;
    a.uid = pw.pw_uid;
    a.gid = pw.pw_gid;
    a.home = pw.pw_dir != nullptr && pw.pw_dir[0] == '/' ? pw.pw_dir : "/";
    if (auto s = fillGroups(a); !s) return s.error();
    return a;
  }
}

}  // namespace

Result<Account> lookupAccount(const std::string& name) {
  if (name.empty()) return Error{"empty account name"};
  return lookupWith(
      [&](char* buf, size_t size, struct passwd* pw, struct passwd** result) {
        return ::getpwnam_r(name.c_str(), pw, buf, size, result);
      },
      name);
}

Result<Account> currentAccount() {
  const uid_t uid = ::geteuid();
  auto a =
      lookupWith([&](char* buf, size_t size, struct passwd* pw,
                     struct passwd** result) { return ::getpwuid_r(uid, pw, buf, size, result); },
                 "uid " + std::to_string(uid));
  if (a || a.error().sys_errno != ENOENT) return a;
  // A uid without a passwd entry (common in containers): describe it from the process itself.
  Account self;
  self.name = std::to_string(uid);
  self.uid = uid;
  self.gid = ::getegid();
  int n = ::getgroups(0, nullptr);
  if (n < 0) return sysError("getgroups");
  self.groups.resize(static_cast<size_t>(n));
  n = ::getgroups(n, self.groups.data());
  if (n < 0) return sysError("getgroups");
  self.groups.resize(static_cast<size_t>(n));
  self.groups.insert(self.groups.begin(), self.gid);
  const char* home = std::getenv("HOME");
  self.home = home != nullptr && home[0] == '/' ? home : "/";
  return self;
}

}  // namespace jw::supervisor
