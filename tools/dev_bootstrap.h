// Dev mode's embedded defaults: a private CA, a server certificate for localhost/127.0.0.1/::1
// (ECDSA P-256) and a users file with an `admin` account, created once in the state dir.
// Runs in jobworker-admin (`dev-bootstrap`), which jobworkerd --dev runs at startup.
#pragma once

#include <string>

#include "common/dev_files.h"
#include "common/result.h"

namespace jw::admin {

// Creates whatever is missing (the state dir itself 0700), reuses what exists. The admin account
// gets a random password (24 chars, base64url of random bytes) and run_as `nobody`.
// In non-root dev mode the files belong to the invoking user.
Result<DevFiles> ensureDevFiles(const std::string& state_dir);

}  // namespace jw::admin
