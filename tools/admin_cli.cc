// `jobworker-admin user add|del|passwd|list`: edits the users file without an editor. Runs in
// jobworker-admin, started by an administrator (no daemon involved; SIGHUP applies it).
#include "tools/admin_cli.h"

#include <fcntl.h>
#include <sodium.h>
#include <sys/file.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "common/log.h"
#include "common/names.h"
#include "supervisor/accounts/accounts.h"
#include "supervisor/accounts/users_file.h"

namespace jw::admin {

namespace {

using namespace jw::supervisor;  // the users-file and account code the daemon reads too

constexpr int kExitOk = 0;
constexpr int kExitFailure = 1;
constexpr int kExitUsage = 2;
constexpr size_t kMinPasswordLength = 8;
constexpr size_t kMaxPasswordLength = 4096;
constexpr const char* kFrontendAccount = "jobworker";
constexpr const char* kReloadHint =
    "send SIGHUP to jobworkerd to apply (systemctl reload jobworkerd)";

constexpr const char* kUsage =
    "usage: jobworker-admin user add    --users-file FILE NAME --role admin|user|viewer\n"
    "                              [--run-as ACCOUNT] [--password-stdin] [--allow-root]\n"
    "       jobworker-admin user del    --users-file FILE NAME\n"
    "       jobworker-admin user passwd --users-file FILE NAME [--password-stdin]\n"
    "       jobworker-admin user set    --users-file FILE NAME [--role ROLE] [--run-as ACCOUNT]\n"
    "                              [--allow-root]    (the password stays)\n"
    "       jobworker-admin user list   --users-file FILE\n"
    "\n"
    "Edits the jobworker users file (one `name:argon2id-hash:role:run_as` per line, mode 0600).\n"
    "  --users-file FILE   the users file (production: /etc/jobworker/users); `add` creates it\n"
    "  --role ROLE         admin (everything), user (own jobs), viewer (reads every job)\n"
    "  --run-as ACCOUNT    Unix account the user's jobs run as. Default: a dedicated system\n"
    "                      account jw-NAME, created if missing, so that no two users' jobs share\n"
    "                      files or can signal each other. root and the frontend's account\n"
    "                      `jobworker` need --allow-root (and the config's\n"
    "                      user.NAME.allow_root = true)\n"
    "  --password-stdin    read the password from the first line of stdin instead of a prompt\n"
    "Passwords need at least 8 characters. Changes apply when jobworkerd receives SIGHUP.\n"
    "Exit status: 0 done, 1 failed, 2 usage error.\n";

struct Args {
  std::string command;
  std::string users_file;
  std::string name;
  std::optional<std::string> role;
  std::optional<std::string> run_as;
  bool password_stdin = false;
  bool allow_root = false;
  bool help = false;
};

// A usage error: message, exit 2.
struct UsageError {
  std::string message;
};

int usageError(const std::string& message) {
  std::fprintf(stderr, "jobworker-admin user: %s\n(see `jobworker-admin user --help`)\n",
               message.c_str());
  return kExitUsage;
}

int failure(const Args& a, const std::string& message) {
  std::fprintf(stderr, "jobworker-admin user %s: %s\n", a.command.c_str(), message.c_str());
  return kExitFailure;
}

// Which options each subcommand takes.
bool allowed(const std::string& command, const std::string& option) {
  if (option == "--users-file") return true;
  if (option == "--password-stdin") return command == "add" || command == "passwd";
  if (option == "--role" || option == "--run-as" || option == "--allow-root") {
    return command == "add" || command == "set";
  }
  return false;
}

// Splits argv into words (subcommand, then NAME) and options, storing option values in `a`; the
// option names seen go to `options`, to be checked once the subcommand is known.
std::optional<UsageError> scanArgs(int argc, char** argv, Args& a, std::vector<std::string>& words,
                                   std::vector<std::string>& options) {
  bool options_done = false;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (options_done || arg.empty() || arg[0] != '-' || arg == "-") {
      words.push_back(arg);
      continue;
    }
    if (arg == "--") {
      options_done = true;
      continue;
    }
    if (arg == "--help" || arg == "-h") {
      a.help = true;
      continue;
    }
    std::optional<std::string> inline_value;
    if (size_t eq = arg.find('='); eq != std::string::npos) {
      inline_value = arg.substr(eq + 1);
      arg = arg.substr(0, eq);
    }
    const bool takes_value = arg == "--users-file" || arg == "--role" || arg == "--run-as";
    const bool is_flag = arg == "--password-stdin" || arg == "--allow-root";
    if (!takes_value && !is_flag) return UsageError{"unknown option " + arg};
    if (is_flag && inline_value) return UsageError{arg + " takes no value"};
    std::string value;
    if (takes_value) {
      if (inline_value) {
        value = *inline_value;
      } else if (i + 1 < argc) {
        value = argv[++i];
      } else {
        return UsageError{arg + " needs a value"};
      }
      if (value.empty()) return UsageError{arg + " needs a non-empty value"};
    }
    if (arg == "--users-file") a.users_file = value;
    if (arg == "--role") a.role = value;
    if (arg == "--run-as") a.run_as = value;
    if (arg == "--password-stdin") a.password_stdin = true;
    if (arg == "--allow-root") a.allow_root = true;
    options.push_back(arg);
  }
  return std::nullopt;
}

// What each subcommand needs: its options, its NAME, a valid role and run-as account for `add`.
std::optional<UsageError> checkArgs(const std::vector<std::string>& words,
                                    const std::vector<std::string>& options, Args& a) {
  if (words.empty()) return UsageError{"missing subcommand (add, del, passwd, set or list)"};
  a.command = words[0];
  if (a.command != "add" && a.command != "del" && a.command != "passwd" && a.command != "list" &&
      a.command != "set") {
    return UsageError{"unknown subcommand " + log::quote(a.command) +
                      " (add, del, passwd, set or list)"};
  }
  for (const auto& o : options) {
    if (!allowed(a.command, o))
      return UsageError{o + " does not apply to `user " + a.command + "`"};
  }
  if (a.users_file.empty()) return UsageError{"--users-file FILE is required"};
  const size_t want = a.command == "list" ? 0 : 1;
  if (words.size() - 1 != want) {
    return UsageError{want == 0 ? "`user list` takes no user name"
                                : "expected exactly one user NAME, got " +
                                      std::to_string(words.size() - 1)};
  }
  if (want == 1) {
    a.name = words[1];
    if (!names::validUserName(a.name)) {
      return UsageError{"invalid user name " + log::quote(a.name) +
                        " (allowed: " + std::string(names::kUserNamePattern) + ")"};
    }
  }
  if (a.command == "set" && !a.role && !a.run_as) {
    return UsageError{"`user set` needs --role ROLE, --run-as ACCOUNT or both"};
  }
  if (a.command == "add" || a.command == "set") {
    if (a.command == "add" && !a.role) return UsageError{"--role admin|user|viewer is required"};
    if (a.role && !protocol::roleFromName(*a.role)) {
      return UsageError{"unknown role " + log::quote(*a.role) + " (admin, user or viewer)"};
    }
    if (a.run_as && !names::validAccountName(*a.run_as)) {
      return UsageError{"invalid account name for --run-as: " + log::quote(*a.run_as)};
    }
  }
  return std::nullopt;
}

std::optional<UsageError> parseArgs(int argc, char** argv, Args& a) {
  std::vector<std::string> words, options;
  if (auto err = scanArgs(argc, argv, a, words, options)) return err;
  if (a.help) return std::nullopt;
  return checkArgs(words, options, a);
}

// ---- Passwords -------------------------------------------------------------------------------

// The terminal state to restore if a signal arrives while echo is off.
int g_tty_fd = -1;
struct termios g_tty_saved;

extern "C" void restoreTtyAndDie(int sig) {
  if (g_tty_fd >= 0) ::tcsetattr(g_tty_fd, TCSAFLUSH, &g_tty_saved);
  ::signal(sig, SIG_DFL);
  ::raise(sig);
}

Status checkPassword(const std::string& pw) {
  if (pw.empty()) return Error{"empty password refused"};
  if (pw.size() < kMinPasswordLength) {
    return Error{"password too short (at least " + std::to_string(kMinPasswordLength) +
                 " characters)"};
  }
  return okStatus();
}

// One line from fd, without its "\n" (and a "\r" before it); at most kMaxPasswordLength bytes.
Result<std::string> readLine(int fd, const char* what) {
  std::string line;
  while (true) {
    char c;
    ssize_t n = ::read(fd, &c, 1);
    if (n < 0) {
      if (errno == EINTR) continue;
      return sysError(std::string("read ") + what);
    }
    if (n == 0 || c == '\n') break;
    line.push_back(c);
    if (line.size() > kMaxPasswordLength) {
      sodium_memzero(line.data(), line.size());
      return Error{"password longer than " + std::to_string(kMaxPasswordLength) + " bytes"};
    }
  }
  if (!line.empty() && line.back() == '\r') line.pop_back();
  return line;
}

Result<std::string> promptNoEcho(int tty, const std::string& prompt) {
  struct termios saved {};
  if (::tcgetattr(tty, &saved) != 0) return sysError("tcgetattr /dev/tty");
  struct termios quiet = saved;
  quiet.c_lflag &= ~static_cast<tcflag_t>(ECHO);
  quiet.c_lflag |= ECHONL;
  g_tty_saved = saved;
  g_tty_fd = tty;
  struct sigaction sa {};
  struct sigaction old_int {};
  struct sigaction old_term {};
  struct sigaction old_hup {};
  sa.sa_handler = restoreTtyAndDie;
  ::sigaction(SIGINT, &sa, &old_int);
  ::sigaction(SIGTERM, &sa, &old_term);
  ::sigaction(SIGHUP, &sa, &old_hup);
  Result<std::string> line = Error{""};
  // Echo off (TCSAFLUSH drops what was typed ahead) before the prompt, never after: what is typed
  // once the prompt shows must not be flushed, nor echoed.
  if (::tcsetattr(tty, TCSAFLUSH, &quiet) != 0) {
    line = sysError("turn off echo on /dev/tty");
  } else if (::write(tty, prompt.data(), prompt.size()) < 0) {
    line = sysError("write to /dev/tty");
    ::tcsetattr(tty, TCSAFLUSH, &saved);
  } else {
    line = readLine(tty, "/dev/tty");
    ::tcsetattr(tty, TCSAFLUSH, &saved);
  }
  ::sigaction(SIGINT, &old_int, nullptr);
  ::sigaction(SIGTERM, &old_term, nullptr);
  ::sigaction(SIGHUP, &old_hup, nullptr);
  g_tty_fd = -1;
  return line;
}

Result<std::string> readPassword(const Args& a) {
  if (a.password_stdin) {
    auto line = readLine(STDIN_FILENO, "password from stdin");
    if (!line) return line;
    if (auto s = checkPassword(line.value()); !s) return s.error();
    return line;
  }
  int tty = ::open("/dev/tty", O_RDWR | O_CLOEXEC | O_NOCTTY);
  if (tty < 0) {
    return Error{"no terminal to ask for the password on (" + std::string(std::strerror(errno)) +
                 "); use --password-stdin"};
  }
  auto first = promptNoEcho(tty, "New password for " + a.name + ": ");
  Result<std::string> result = first;
  if (first) {
    if (auto s = checkPassword(first.value()); !s) {
      result = s.error();
    } else {
      auto again = promptNoEcho(tty, "Repeat the password: ");
      if (!again) {
        result = again.error();
      } else if (again.value() != first.value()) {
        result = Error{"the passwords do not match"};
      }
      if (again) sodium_memzero(again->data(), again->size());
    }
    if (!result) sodium_memzero(first->data(), first->size());
  }
  ::close(tty);
  return result;
}

// ---- The users file under a lock -------------------------------------------------------------

// Serialises concurrent `jobworker-admin user` edits: flock on the file's directory (the file
// itself is replaced by rename, so a lock on it would not protect the next writer).
class DirLock {
 public:
  static Result<DirLock> take(const std::string& file) {
    size_t slash = file.rfind('/');
    std::string dir = slash == std::string::npos ? "." : (slash == 0 ? "/" : file.substr(0, slash));
    int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return sysError("open directory " + dir);
    if (::flock(fd, LOCK_EX) != 0) {
      Error e = sysError("lock directory " + dir);
      ::close(fd);
      return e;
    }
    return DirLock(fd);
  }
  DirLock(DirLock&& o) noexcept : fd_(o.fd_) { o.fd_ = -1; }
  DirLock(const DirLock&) = delete;
  DirLock& operator=(const DirLock&) = delete;
  DirLock& operator=(DirLock&&) = delete;
  ~DirLock() {
    if (fd_ >= 0) ::close(fd_);
  }

 private:
  explicit DirLock(int fd) : fd_(fd) {}
  int fd_;
};

// The current records; a missing file is an empty list only when `missing_ok` (user add).
Result<std::vector<UserRecord>> load(const std::string& path, bool missing_ok) {
  auto users = loadUsersFile(path);
  if (!users && missing_ok && users.error().sys_errno == ENOENT) {
    return std::vector<UserRecord>{};
  }
  return users;
}

UserRecord* find(std::vector<UserRecord>& users, const std::string& name) {
  for (auto& u : users) {
    if (u.name == name) return &u;
  }
  return nullptr;
}

// root, and the frontend's own account, are refused as run-as targets unless asked for twice
// (here with --allow-root, and in the daemon's config).
Status checkRunAs(const std::string& user, const Account& acct, bool allow_root) {
  bool privileged = acct.uid == 0;
  bool frontend = acct.name == kFrontendAccount;
  if (auto fe = lookupAccount(kFrontendAccount); fe && fe->uid == acct.uid) frontend = true;
  if (!privileged && !frontend) return okStatus();
  const std::string what =
      privileged ? "root (uid 0)" : std::string("the frontend's account ") + kFrontendAccount;
  if (!allow_root) {
    return Error{"refusing to run jobs as " + what + "; pass --allow-root if you really mean it"};
  }
  std::fprintf(stderr,
               "warning: jobs of %s will run as %s; jobworkerd starts them only if its config "
               "also sets `user.%s.allow_root = true`\n",
               user.c_str(), what.c_str(), user.c_str());
  return okStatus();
}

// Reads the new password (prompt or stdin) and hashes it; the clear text is wiped either way.
// The audit event of a change to the users file (MESSAGE_ID kAdminUserChange): which change,
// to whom, by which Unix user; never the password or its hash.
void logUserChange(const Args& a, std::string_view action, const std::string& role,
                   const std::string& run_as) {
  log::event(log::Priority::kNotice, log::ids::kAdminUserChange,
             "users file " + a.users_file + ": " + std::string(action) + " " + a.name + " by uid " +
                 std::to_string(getuid()),
             {{"ADMIN_ACTION", std::string(action)},
              {"USER", a.name},
              {"USER_ROLE", role},
              {"USER_RUN_AS", run_as},
              {"USERS_FILE", a.users_file},
              {"ADMIN_UID", std::to_string(getuid())}});
}

Result<std::string> readAndHashPassword(const Args& a) {
  auto password = readPassword(a);
  if (!password) return password.error();
  auto hash = hashPassword(password.value());
  sodium_memzero(password->data(), password->size());
  return hash;
}

// The account a user's jobs run as when --run-as is not given: jw-NAME, never a shared one.
std::string dedicatedAccountName(const std::string& user) { return "jw-" + user; }

// Creates the dedicated system account (no home, no login shell, its own group) unless it
// exists. useradd is run with an empty environment and its output passed through.
Status ensureDedicatedAccount(const std::string& account) {
  if (lookupAccount(account)) return okStatus();
  pid_t pid = fork();
  if (pid < 0) return sysError("fork (useradd)");
  if (pid == 0) {
    const char* argv[] = {"/usr/sbin/useradd", "--system",     "--user-group", "--no-create-home",
                          "--home-dir",        "/nonexistent", "--shell",      "/usr/sbin/nologin",
                          account.c_str(),     nullptr};
    const char* envp[] = {"PATH=/usr/sbin:/usr/bin:/sbin:/bin", nullptr};
    execve(argv[0], const_cast<char* const*>(argv), const_cast<char* const*>(envp));
    _exit(127);
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) return sysError("waitpid (useradd)");
  }
  // Another admin run may have created it meanwhile: what counts is that it exists now.
  if (lookupAccount(account)) return okStatus();
  return Error{"useradd " + account + " failed (exit status " +
               std::to_string(WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status)) +
               ")"};
}

// Users whose jobs would share an account with `user` (same name or same uid).
std::vector<std::string> sharingUsers(const std::vector<UserRecord>& users, const std::string& user,
                                      const Account& acct) {
  std::vector<std::string> out;
  for (const auto& u : users) {
    if (u.name == user) continue;
    auto other = lookupAccount(u.run_as);
    if (u.run_as == acct.name || (other && other->uid == acct.uid)) out.push_back(u.name);
  }
  return out;
}

int cmdAdd(const Args& a) {
  const std::string run_as = a.run_as.value_or(dedicatedAccountName(a.name));
  if (!a.run_as && !names::validAccountName(run_as)) {
    return failure(a, "cannot derive a dedicated account for " + a.name + " (" +
                          log::quote(run_as) +
                          " is not a valid Unix account name); pick one with --run-as ACCOUNT");
  }
  Result<Account> acct = a.run_as ? lookupAccount(run_as) : Result<Account>(Account{});
  if (!acct) return failure(a, "--run-as " + run_as + ": " + acct.error().message);
  if (a.run_as) {
    if (auto s = checkRunAs(a.name, acct.value(), a.allow_root); !s) {
      return failure(a, s.error().message);
    }
  }
  // Refuse a duplicate before asking for a password nobody will use.
  auto before = load(a.users_file, true);
  if (!before) return failure(a, before.error().message);
  if (find(before.value(), a.name)) {
    return failure(a, "user " + a.name + " already exists in " + a.users_file +
                          " (use `user passwd` or `user del`)");
  }
  auto hash = readAndHashPassword(a);
  if (!hash) return failure(a, hash.error().message);
  if (!a.run_as) {
    const bool existed = static_cast<bool>(lookupAccount(run_as));
    if (Status st = ensureDedicatedAccount(run_as); !st) return failure(a, st.error().message);
    acct = lookupAccount(run_as);
    if (!acct) return failure(a, run_as + ": " + acct.error().message);
    if (!existed)
      std::printf("created system account %s for %s's jobs\n", run_as.c_str(), a.name.c_str());
  }
  if (auto shared = sharingUsers(before.value(), a.name, acct.value()); !shared.empty()) {
    std::string names;
    for (const auto& n : shared) names += (names.empty() ? "" : ", ") + n;
    std::fprintf(stderr,
                 "warning: jobs of %s and of %s all run as %s (uid %u): they can read each "
                 "other's files and signal each other's processes; give each user an account "
                 "of its own (--run-as, or none for jw-%s)\n",
                 a.name.c_str(), names.c_str(), run_as.c_str(), acct->uid, a.name.c_str());
  }

  auto lock = DirLock::take(a.users_file);
  if (!lock) return failure(a, lock.error().message);
  auto users = load(a.users_file, true);
  if (!users) return failure(a, users.error().message);
  if (find(users.value(), a.name)) return failure(a, "user " + a.name + " already exists");
  UserRecord rec;
  rec.name = a.name;
  rec.password_hash = hash.value();
  rec.role = *protocol::roleFromName(*a.role);
  rec.run_as = run_as;
  users->push_back(rec);
  if (auto s = saveUsersFile(a.users_file, users.value()); !s) return failure(a, s.error().message);
  logUserChange(a, "user_add", *a.role, run_as);
  std::printf("added user %s (role %s, jobs run as %s) to %s\n%s\n", a.name.c_str(),
              a.role->c_str(), run_as.c_str(), a.users_file.c_str(), kReloadHint);
  return kExitOk;
}

int cmdDel(const Args& a) {
  auto lock = DirLock::take(a.users_file);
  if (!lock) return failure(a, lock.error().message);
  auto users = load(a.users_file, false);
  if (!users) return failure(a, users.error().message);
  auto& list = users.value();
  size_t before = list.size();
  std::erase_if(list, [&](const UserRecord& u) { return u.name == a.name; });
  if (list.size() == before) return failure(a, "no user " + a.name + " in " + a.users_file);
  if (auto s = saveUsersFile(a.users_file, list); !s) return failure(a, s.error().message);
  logUserChange(a, "user_del", "", "");
  std::printf("removed user %s from %s (their running jobs continue)\n%s\n", a.name.c_str(),
              a.users_file.c_str(), kReloadHint);
  return kExitOk;
}

int cmdPasswd(const Args& a) {
  auto before = load(a.users_file, false);
  if (!before) return failure(a, before.error().message);
  if (!find(before.value(), a.name)) return failure(a, "no user " + a.name + " in " + a.users_file);
  auto hash = readAndHashPassword(a);
  if (!hash) return failure(a, hash.error().message);

  auto lock = DirLock::take(a.users_file);
  if (!lock) return failure(a, lock.error().message);
  auto users = load(a.users_file, false);
  if (!users) return failure(a, users.error().message);
  UserRecord* u = find(users.value(), a.name);
  if (u == nullptr) return failure(a, "user " + a.name + " was removed meanwhile");
  u->password_hash = hash.value();
  if (auto s = saveUsersFile(a.users_file, users.value()); !s) return failure(a, s.error().message);
  logUserChange(a, "user_passwd", std::string(protocol::roleName(u->role)), u->run_as);
  std::printf("changed the password of %s in %s\n%s\n", a.name.c_str(), a.users_file.c_str(),
              kReloadHint);
  return kExitOk;
}

// `user set`: a new role and/or run-as account, the password hash kept; the same checks on the
// account as `add`.
int cmdSet(const Args& a) {
  std::optional<Account> acct;
  if (a.run_as) {
    Result<Account> found = lookupAccount(*a.run_as);
    if (!found) return failure(a, "--run-as " + *a.run_as + ": " + found.error().message);
    if (auto st = checkRunAs(a.name, found.value(), a.allow_root); !st) {
      return failure(a, st.error().message);
    }
    acct = found.value();
  }
  auto lock = DirLock::take(a.users_file);
  if (!lock) return failure(a, lock.error().message);
  auto users = load(a.users_file, false);
  if (!users) return failure(a, users.error().message);
  UserRecord* u = find(users.value(), a.name);
  if (u == nullptr) return failure(a, "no user " + a.name + " in " + a.users_file);
  if (a.role) u->role = *protocol::roleFromName(*a.role);
  if (a.run_as) u->run_as = *a.run_as;
  const std::string role(protocol::roleName(u->role));
  const std::string run_as = u->run_as;
  if (auto s = saveUsersFile(a.users_file, users.value()); !s) return failure(a, s.error().message);
  logUserChange(a, "user_set", role, run_as);
  std::printf("user %s now has role %s, jobs run as %s, in %s\n%s\n", a.name.c_str(), role.c_str(),
              run_as.c_str(), a.users_file.c_str(), kReloadHint);
  return kExitOk;
}

int cmdList(const Args& a) {
  auto users = load(a.users_file, false);
  if (!users) return failure(a, users.error().message);
  std::printf("%-32s %-7s %s\n", "NAME", "ROLE", "RUN-AS");
  for (const auto& u : users.value()) {
    std::printf("%-32s %-7s %s\n", u.name.c_str(), std::string(protocol::roleName(u.role)).c_str(),
                u.run_as.c_str());
  }
  return kExitOk;
}

}  // namespace

int runUserCommand(int argc, char** argv) {
  Args a;
  if (auto err = parseArgs(argc, argv, a)) return usageError(err->message);
  if (a.help) {
    std::fputs(kUsage, stdout);
    return kExitOk;
  }
  if (a.command == "add") return cmdAdd(a);
  if (a.command == "del") return cmdDel(a);
  if (a.command == "passwd") return cmdPasswd(a);
  if (a.command == "set") return cmdSet(a);
  return cmdList(a);
}

}  // namespace jw::admin
