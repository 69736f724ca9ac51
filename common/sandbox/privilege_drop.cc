// The privilege drop sequence (see privilege_drop.h); runs in jobworker-frontend and
// jobworker-verifier, once, before any thread exists.
#include "common/sandbox/privilege_drop.h"

#include <grp.h>
#include <linux/securebits.h>
#include <pwd.h>
#include <sys/capability.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <functional>
#include <string>

namespace jw::sandbox {

namespace {

// Empty bounding set: no later execve (already impossible under seccomp) could ever regain a
// capability. Then lock the securebits so root-ness can never grant capabilities again:
// NOROOT on and locked; the uid-change fixup kept ON and locked (setresuid to a non-root uid
// must clear every capability, which the next step verifies); KEEP_CAPS off and locked; no
// ambient raise.
Status dropBoundingSetAndLockSecurebits() {
  for (int cap = 0; cap <= 63; cap++) {
    if (prctl(PR_CAPBSET_READ, cap, 0, 0, 0) < 0) {
      if (errno == EINVAL) break;  // past the kernel's last capability
      return sysError("prctl(PR_CAPBSET_READ, " + std::to_string(cap) + ")");
    }
    if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0) {
      return sysError("prctl(PR_CAPBSET_DROP, " + std::to_string(cap) + ")");
    }
  }
  unsigned long bits = SECBIT_NOROOT | SECBIT_NOROOT_LOCKED | SECBIT_NO_SETUID_FIXUP_LOCKED |
                       SECBIT_KEEP_CAPS_LOCKED | SECBIT_NO_CAP_AMBIENT_RAISE |
                       SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED;
  if (prctl(PR_SET_SECUREBITS, bits, 0, 0, 0) != 0) return sysError("prctl(PR_SET_SECUREBITS)");
  return okStatus();
}

Status setGroups(const DropTarget& t) {
  if (setgroups(0, nullptr) != 0) return sysError("setgroups(0) for " + t.account);
  return okStatus();
}

Status setGid(const DropTarget& t) {
  if (setresgid(t.gid, t.gid, t.gid) != 0) {
    return sysError("setresgid(" + std::to_string(t.gid) + ") for " + t.account);
  }
  return okStatus();
}

Status setUid(const DropTarget& t) {
  if (setresuid(t.uid, t.uid, t.uid) != 0) {
    return sysError("setresuid(" + std::to_string(t.uid) + ") for " + t.account);
  }
  return okStatus();
}

Status verifyRootUnreachable() {
  if (setuid(0) == 0 || setresuid(0, 0, 0) == 0 || seteuid(0) == 0) {
    return Error{"regaining root succeeded after the uid change"};
  }
  if (getuid() == 0 || geteuid() == 0) return Error{"still running as uid 0"};
  if (setgid(0) == 0 || setegid(0) == 0) return Error{"regaining gid 0 succeeded"};
  return okStatus();
}

Status clearCapabilities() {
  cap_t caps = cap_init();  // an empty set
  if (caps == nullptr) return sysError("cap_init");
  int rc = cap_clear(caps) != 0 ? -1 : cap_set_proc(caps);
  int err = errno;
  cap_free(caps);
  if (rc != 0) return sysError("cap_set_proc(empty set)", err);
  if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0 && errno != EINVAL) {
    return sysError("prctl(PR_CAP_AMBIENT_CLEAR_ALL)");
  }
  return okStatus();
}

Status noNewPrivs() {
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return sysError("prctl(PR_SET_NO_NEW_PRIVS)");
  return okStatus();
}

}  // namespace

Result<DropTarget> lookupAccount(const std::string& name) {
  errno = 0;
  // Before any thread starts (the drop runs single-threaded): getpwnam's buffer is ours.
  struct passwd* pw = getpwnam(name.c_str());  // NOLINT(concurrency-mt-unsafe)
  if (pw == nullptr) {
    if (errno != 0) return sysError("getpwnam(" + name + ")");
    return Error{"no such account '" + name + "' (create it: see README, 'useradd --system')"};
  }
  if (pw->pw_uid == 0 || pw->pw_gid == 0) {
    return Error{"account '" + name + "' has uid or gid 0; refusing to drop to root"};
  }
  return DropTarget{true, name, pw->pw_uid, pw->pw_gid};
}

Result<DropTarget> dropTargetFor(const std::string& run_as, bool no_setuid) {
  if (!no_setuid) return lookupAccount(run_as);
  if (geteuid() == 0) return Error{"--no-setuid while running as root: refusing to run as root"};
  return DropTarget{false, "(no uid change)", getuid(), getgid()};
}

Status requireSeqpacket(int fd, const std::string& what) {
  int type = 0;
  socklen_t len = sizeof type;
  if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) != 0) {
    return sysError(what + " fd " + std::to_string(fd));
  }
  if (type != SOCK_SEQPACKET) return Error{what + " fd is not a SOCK_SEQPACKET socket"};
  return okStatus();
}

Status dropPrivileges(const DropTarget& t, InstallSeccomp install_seccomp) {
  struct Step {
    const char* name;
    std::function<Status(const DropTarget&)> run;
    bool needs_uid_change;
  };
  const Step steps[] = {
      {"drop bounding set, lock securebits",
       [](const DropTarget&) { return dropBoundingSetAndLockSecurebits(); }, true},
      {"setgroups", setGroups, true},
      {"setresgid", setGid, true},
      {"setresuid", setUid, true},
      {"verify root is gone", [](const DropTarget&) { return verifyRootUnreachable(); }, false},
      {"clear capabilities", [](const DropTarget&) { return clearCapabilities(); }, false},
      {"no_new_privs", [](const DropTarget&) { return noNewPrivs(); }, false},
      {"seccomp", [install_seccomp](const DropTarget&) { return install_seccomp(); }, false},
  };
  for (const Step& s : steps) {
    if (s.needs_uid_change && !t.change_uid) continue;
    Status st = s.run(t);
    if (!st)
      return Error{std::string("privilege drop step '") + s.name + "': " + st.error().message};
  }
  return okStatus();
}

}  // namespace jw::sandbox
