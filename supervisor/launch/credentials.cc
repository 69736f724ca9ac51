// The kernel's highest capability number (see credentials.h); runs in jobworkerd.
#include "supervisor/launch/credentials.h"

#include <charconv>
#include <string>

#include "common/io.h"

namespace jw::supervisor {

Result<int> lastCapability() {
  const std::string path = "/proc/sys/kernel/cap_last_cap";
  auto text = readFile(path, 16);
  if (!text) return text.error();
  int value = 0;
  const char* begin = text->data();
  auto [end, ec] = std::from_chars(begin, begin + text->size(), value);
  if (ec != std::errc() || end == begin || value < 0 || value > 1023) {
    return Error{"unexpected content in " + path};
  }
  return value;
}

}  // namespace jw::supervisor
