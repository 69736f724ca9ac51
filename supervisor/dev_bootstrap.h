// Dev mode's embedded defaults: a private CA, a server certificate for localhost/127.0.0.1/::1
// (ECDSA P-256) and a users file with an `admin` account, created once in the state dir.
// Runs in jobworkerd at startup with --dev.
#pragma once

#include <string>

#include "result.h"

namespace jw::supervisor {

struct DevFiles {
  std::string ca_cert;         // DIR/ca.pem (what clients trust)
  std::string server_cert;     // DIR/server.pem
  std::string server_key;      // DIR/server.key (0600)
  std::string users_file;      // DIR/users (0600)
  std::string admin_password;  // DIR/admin-password (0600)
};

// Creates whatever is missing (the state dir itself 0700), reuses what exists. The admin account
// gets a random password (24 chars, base64url of random bytes) and run_as `nobody`.
// In non-root dev mode the files belong to the invoking user.
Result<DevFiles> ensureDevFiles(const std::string& state_dir);

}  // namespace jw::supervisor
