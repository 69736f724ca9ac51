// Where dev mode keeps its CA, server certificate, users file and admin password: the one
// definition shared by jobworker-admin (which creates them) and jobworkerd --dev (which uses them).
#pragma once

#include <string>

namespace jw {

struct DevFiles {
  std::string ca_cert;         // DIR/ca.pem (what clients trust)
  std::string server_cert;     // DIR/server.pem
  std::string server_key;      // DIR/server.key (0600)
  std::string users_file;      // DIR/users (0600)
  std::string admin_password;  // DIR/admin-password (0600)
};

// `state_dir` must be absolute without a trailing slash: the paths are handed to the frontend.
inline DevFiles devFilesIn(const std::string& state_dir) {
  return DevFiles{state_dir + "/ca.pem", state_dir + "/server.pem", state_dir + "/server.key",
                  state_dir + "/users", state_dir + "/admin-password"};
}

}  // namespace jw
