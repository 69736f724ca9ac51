// The users file: strict parsing, atomic rewrite and argon2id hashing. Runs in jobworkerd (the
// only reader of the file at run time) and in jobworker-admin (`user ...`, which edits it).
#include "supervisor/accounts/users_file.h"

#include <fcntl.h>
#include <sodium.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <map>
#include <mutex>

#include "common/fd.h"
#include "common/io.h"
#include "common/log.h"
#include "common/names.h"

namespace jw::supervisor {

namespace {

// Far above any real users file; stops a mistaken path (a log, a device) from eating memory.
constexpr size_t kMaxUsersFileBytes = 16 << 20;
constexpr std::string_view kHashPrefix = "$argon2id$";

// A crypto_pwhash_str string: "$argon2id$v=19$m=...,t=...,p=...$salt$hash", printable ASCII,
// and never a ':' (the field separator) or whitespace.
bool plausibleHash(std::string_view h) {
  if (h.size() <= kHashPrefix.size() || h.size() >= crypto_pwhash_STRBYTES) return false;
  if (h.substr(0, kHashPrefix.size()) != kHashPrefix) return false;
  for (char c : h) {
    if (c <= ' ' || c > '~' || c == ':') return false;
  }
  return true;
}

// One non-comment line; `where` is "FILE:LINE".
Result<UserRecord> parseLine(std::string_view line, const std::string& where) {
  std::vector<std::string_view> fields;
  size_t start = 0;
  while (true) {
    size_t colon = line.find(':', start);
    fields.push_back(line.substr(start, colon == std::string_view::npos ? colon : colon - start));
    if (colon == std::string_view::npos) break;
    start = colon + 1;
  }
  if (fields.size() != 4) {
    return Error{where + ": expected name:hash:role:run_as (4 fields separated by ':'), found " +
                 std::to_string(fields.size())};
  }
  UserRecord r;
  if (!names::validUserName(fields[0])) {
    return Error{where + ": invalid user name " + log::quote(fields[0]) +
                 " (allowed: " + std::string(names::kUserNamePattern) + ")"};
  }
  r.name = std::string(fields[0]);
  if (!plausibleHash(fields[1])) {
    return Error{where + ": user " + r.name +
                 ": password hash is not an argon2id hash (expected \"$argon2id$...\"; set one "
                 "with `jobworker-admin user passwd`)"};
  }
  r.password_hash = std::string(fields[1]);
  auto role = protocol::roleFromName(fields[2]);
  if (!role) {
    return Error{where + ": user " + r.name + ": unknown role " + log::quote(fields[2]) +
                 " (admin, user or viewer)"};
  }
  r.role = *role;
  if (!names::validAccountName(fields[3])) {
    return Error{where + ": user " + r.name + ": invalid run-as account name " +
                 log::quote(fields[3])};
  }
  r.run_as = std::string(fields[3]);
  return r;
}

Status fsyncDir(const std::string& dir) {
  UniqueFd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd) return sysError("open directory " + dir);
  if (::fsync(fd.get()) != 0) return sysError("fsync directory " + dir);
  return okStatus();
}

Status sodiumReady() {
  static std::once_flag once;
  static int rc = -1;
  std::call_once(once, [] { rc = sodium_init(); });
  if (rc < 0) return Error{"libsodium initialisation failed"};
  return okStatus();
}

}  // namespace

Result<std::vector<UserRecord>> loadUsersFile(const std::string& path) {
  // O_NOFOLLOW: a symlink planted in the config dir must not redirect what root reads.
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY));
  if (!fd) {
    if (errno == ENOENT) {
      return Error{path + ": no such file (create it with `jobworker-admin user add --users-file " +
                       path + " NAME --role admin`)",
                   ENOENT};
    }
    return sysError("open users file " + path);
  }
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return sysError("stat " + path);
  if (!S_ISREG(st.st_mode)) return Error{path + ": not a regular file"};
  if ((st.st_mode & 077) != 0) {
    char mode[8];
    std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
    return Error{path + ": mode " + mode +
                 " lets group or others access password hashes; run: chmod 600 " + path};
  }
  if (st.st_uid != 0 && st.st_uid != ::geteuid()) {
    return Error{path + ": owned by uid " + std::to_string(st.st_uid) +
                 ", expected root or the user running jobworkerd"};
  }
  auto data = readAll(fd.get(), path, kMaxUsersFileBytes);
  fd.reset();
  if (!data) return data.error();
  return parseUsersFile(data.value(), path);
}

Result<std::vector<UserRecord>> parseUsersFile(std::string_view text, const std::string& path) {
  std::vector<UserRecord> users;
  std::map<std::string, size_t> first_line;
  std::string_view rest = text;
  size_t line_no = 0;
  while (!rest.empty()) {
    ++line_no;
    size_t nl = rest.find('\n');
    std::string_view line = rest.substr(0, nl);
    rest = nl == std::string_view::npos ? std::string_view{} : rest.substr(nl + 1);
    const std::string where = path + ":" + std::to_string(line_no);
    size_t first = line.find_first_not_of(" \t");
    if (first == std::string_view::npos) continue;  // blank line
    if (line[first] == '#') continue;
    if (line.find('\r') != std::string_view::npos) {
      return Error{where + ": carriage return in line (convert the file to Unix line endings)"};
    }
    if (first != 0 || line.back() == ' ' || line.back() == '\t') {
      return Error{where + ": leading or trailing whitespace"};
    }
    auto rec = parseLine(line, where);
    if (!rec) return rec.error();
    auto [it, inserted] = first_line.emplace(rec->name, line_no);
    if (!inserted) {
      return Error{where + ": duplicate user " + rec->name + " (first defined on line " +
                   std::to_string(it->second) + ")"};
    }
    users.push_back(std::move(rec).value());
  }
  return users;
}

Status writeFileAtomic(const std::string& path, std::string_view content, unsigned mode) {
  size_t slash = path.rfind('/');
  const std::string dir =
      slash == std::string::npos ? "." : (slash == 0 ? "/" : path.substr(0, slash));
  const std::string base = slash == std::string::npos ? path : path.substr(slash + 1);
  if (base.empty()) return Error{"not a file path: " + path};
  if (auto s = sodiumReady(); !s) return s;

  std::string tmp;
  UniqueFd fd;
  for (int attempt = 0; attempt < 16 && !fd; ++attempt) {
    tmp = dir + "/." + base + ".tmp." + std::to_string(randombytes_uniform(1000000000));
    fd.reset(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode));
    if (!fd && errno != EEXIST) return sysError("create " + tmp);
  }
  if (!fd) return sysError("create temp file next to " + path);

  auto fail = [&](Error e) -> Status {
    fd.reset();
    ::unlink(tmp.c_str());
    return e;
  };
  // The umask may have removed bits; the caller's mode is what we promise.
  if (::fchmod(fd.get(), mode) != 0) return fail(sysError("chmod " + tmp));
  if (auto s = writeAll(fd.get(), content, tmp); !s) return fail(s.error());
  if (::fsync(fd.get()) != 0) return fail(sysError("fsync " + tmp));
  // close's own error matters here: it may be the write's.
  if (fd.close() != 0) return fail(sysError("close " + tmp));
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    return fail(sysError("rename " + tmp + " to " + path));
  }
  return fsyncDir(dir);
}

Status saveUsersFile(const std::string& path, const std::vector<UserRecord>& users) {
  std::string text =
      "# jobworker users: name:argon2id-hash:role:run_as (edit with `jobworker-admin user ...`,\n"
      "# then send SIGHUP to jobworkerd). Keep this file mode 0600, owned by root.\n";
  std::map<std::string, bool> seen;
  for (const auto& u : users) {
    // Never write a file that loadUsersFile would refuse.
    if (!names::validUserName(u.name)) return Error{"invalid user name " + log::quote(u.name)};
    if (!plausibleHash(u.password_hash)) return Error{"user " + u.name + ": invalid password hash"};
    if (!names::validAccountName(u.run_as)) {
      return Error{"user " + u.name + ": invalid run-as account " + log::quote(u.run_as)};
    }
    if (!seen.emplace(u.name, true).second) return Error{"duplicate user " + u.name};
    text += u.name + ":" + u.password_hash + ":" + std::string(protocol::roleName(u.role)) + ":" +
            u.run_as + "\n";
  }
  return writeFileAtomic(path, text, 0600);
}

Result<std::string> hashPassword(std::string_view password) {
  if (auto s = sodiumReady(); !s) return s.error();
  char out[crypto_pwhash_STRBYTES];
  if (crypto_pwhash_str(out, password.data(), password.size(), crypto_pwhash_OPSLIMIT_INTERACTIVE,
                        crypto_pwhash_MEMLIMIT_INTERACTIVE) != 0) {
    return Error{"password hashing failed (out of memory?)"};
  }
  return std::string(out);
}

}  // namespace jw::supervisor
