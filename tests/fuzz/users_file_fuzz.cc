// libFuzzer target for the users-file parser (supervisor/accounts/users_file): any text loads or
// fails naming FILE:LINE, never a crash; whatever loads has valid, distinct names and accounts,
// exactly as the daemon relies on. Runs in the fuzzer.
#include <cstdint>
#include <cstdlib>
#include <set>
#include <string_view>

#include "common/names.h"
#include "supervisor/accounts/users_file.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace jw;
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto users = supervisor::parseUsersFile(text, "users");
  if (!users.ok()) {
    if (users.error().message.rfind("users:", 0) != 0) std::abort();
    return 0;
  }
  std::set<std::string> seen;
  for (const auto& u : users.value()) {
    if (!names::validUserName(u.name) || !names::validAccountName(u.run_as)) std::abort();
    if (u.password_hash.rfind("$argon2id$", 0) != 0) std::abort();
    if (!seen.insert(u.name).second) std::abort();
  }
  return 0;
}
