// jobworkerd: the few calls of systemd's manager API (org.freedesktop.systemd1.Manager) the
// systemd placement makes, over sd-bus. Runs in jobworkerd, on its event loop.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <variant>
#include <vector>

#include "common/result.h"

struct sd_bus;

namespace jw::supervisor::cg {

// One unit property of a StartTransientUnit or SetUnitProperties call: D-Bus types s, b, t, au
// (PIDs=) and as (Before=).
struct UnitProperty {
  using Value =
      std::variant<std::string, bool, uint64_t, std::vector<uint32_t>, std::vector<std::string>>;
  std::string name;
  Value value;
};

// systemd's "infinity" for the u64 limits (MemoryMax=, TasksMax=, CPUQuotaPerSecUSec=).
inline constexpr uint64_t kUnitInfinity = UINT64_MAX;

class SystemdManager {
 public:
  // systemd's private socket (/run/systemd/private, root only: no D-Bus daemon needed, as
  // systemctl does as root), else the system bus.
  static Result<std::shared_ptr<SystemdManager>> connect();
  ~SystemdManager();
  SystemdManager(const SystemdManager&) = delete;
  SystemdManager& operator=(const SystemdManager&) = delete;

  // The manager's Version property, e.g. "252.39-1~deb12u2".
  Result<std::string> version();
  // A transient unit with these properties, started in mode "fail"; returns once systemd queued
  // its start job (the caller waits for what it needs, e.g. a pid in the unit's cgroup).
  Status startTransientUnit(const std::string& unit, const std::vector<UnitProperty>& props);
  // Runtime properties (a drop-in under /run/systemd/system.control), applied at once when the
  // unit is active, kept until reboot.
  Status setUnitProperties(const std::string& unit, const std::vector<UnitProperty>& props);
  Status startUnit(const std::string& unit);
  Status stopUnit(const std::string& unit);

 private:
  explicit SystemdManager(sd_bus* bus) : bus_(bus) {}
  // A call that fails because the connection broke (systemd re-executed) is retried once on a
  // fresh connection.
  template <typename Fill>
  Status call(const char* method, const std::string& unit, Fill fill);
  Status reconnect();

  sd_bus* bus_;
};

}  // namespace jw::supervisor::cg
