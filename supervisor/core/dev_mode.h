// Dev mode (`jobworkerd --dev`): its files come from jobworker-admin, and a non-root daemon says
// loudly which protections are off. Runs in jobworkerd at startup.
#pragma once

#include <string>

#include "common/dev_files.h"
#include "common/result.h"
#include "supervisor/accounts/accounts.h"

namespace jw::supervisor {

// Runs `jobworker-admin dev-bootstrap --state-dir DIR` (the daemon does not link the certificate
// generator) and returns where the files are. `state_dir` is absolute.
Result<DevFiles> runDevBootstrap(const std::string& admin_path, const std::string& state_dir);

// The warning a non-root dev-mode daemon logs at start.
void warnUnprotectedDevMode(const Account& self);

}  // namespace jw::supervisor
