// Shared libseccomp helpers of the allowlists (see seccomp_allowlist.h); runs in
// jobworker-frontend and jobworker-verifier during their privilege drop.
#include "common/sandbox/seccomp_allowlist.h"

namespace jw::sandbox {

Status addRule(scmp_filter_ctx ctx, uint32_t action, const char* name, unsigned count,
               const scmp_arg_cmp* args) {
  int nr = seccomp_syscall_resolve_name(name);
  if (nr == __NR_SCMP_ERROR) return Error{std::string("unknown system call ") + name};
  int rc = seccomp_rule_add_array(ctx, action, nr, count, args);
  if (rc != 0) return sysError(std::string("seccomp_rule_add(") + name + ")", -rc);
  return okStatus();
}

Status allowGroups(scmp_filter_ctx ctx, const std::vector<SyscallGroup>& groups) {
  for (const SyscallGroup& g : groups) {
    for (const char* call : g.calls) {
      if (Status s = addRule(ctx, SCMP_ACT_ALLOW, call); !s) return s;
    }
  }
  return okStatus();
}

Status loadKillByDefault(Status (*build)(scmp_filter_ctx)) {
  scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_KILL_PROCESS);
  if (ctx == nullptr) return Error{"seccomp_init failed"};
  Status st = build(ctx);
  if (st) {
    if (int rc = seccomp_load(ctx); rc != 0) st = sysError("seccomp_load", -rc);
  }
  seccomp_release(ctx);
  return st;
}

std::vector<std::string> callNames(const std::vector<SyscallGroup>& groups) {
  std::vector<std::string> out;
  for (const SyscallGroup& g : groups) {
    for (const char* c : g.calls) out.emplace_back(c);
  }
  return out;
}

}  // namespace jw::sandbox
