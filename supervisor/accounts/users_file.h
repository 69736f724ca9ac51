// The users file (`name:argon2id-hash:role:run_as` per line): parsing, validation, atomic rewrite
// and password hashing. Runs in jobworkerd (the only reader) and in jobworker-admin (the editor).
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "common/protocol/codec.h"
#include "common/result.h"

namespace jw::supervisor {

struct UserRecord {
  std::string name;
  std::string password_hash;  // crypto_pwhash_str output (argon2id)
  protocol::Role role = protocol::Role::kViewer;
  std::string run_as = "nobody";  // Unix account the user's jobs run as
};

// Reads and validates every line (names, roles, hash prefix "$argon2id$", no duplicates). Any bad
// line fails the whole load with "FILE:LINE: what": a half-read users file is never used.
// A file readable or writable by group/other is refused (it holds password hashes).
Result<std::vector<UserRecord>> loadUsersFile(const std::string& path);
// The text part of loadUsersFile (no file checks); `path` names it in errors.
Result<std::vector<UserRecord>> parseUsersFile(std::string_view text, const std::string& path);

// Writes all records to path atomically (temp file in the same dir, fsync, rename), mode 0600.
Status saveUsersFile(const std::string& path, const std::vector<UserRecord>& users);

// Writes content to path atomically: a new temp file (O_EXCL) in the same directory with `mode`,
// fsync, rename over path, fsync the directory. A crash leaves the old file or the new one.
Status writeFileAtomic(const std::string& path, std::string_view content, unsigned mode);

// argon2id via crypto_pwhash_str with OPSLIMIT_INTERACTIVE / MEMLIMIT_INTERACTIVE.
Result<std::string> hashPassword(std::string_view password);

}  // namespace jw::supervisor
