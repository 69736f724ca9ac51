// jobworkerd: systemd's manager API over sd-bus (transient scopes, slice properties). Runs in
// jobworkerd.
#include "supervisor/cgroup/systemd_manager.h"

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "common/log.h"

#ifdef JW_HAVE_SYSTEMD
#include <systemd/sd-bus.h>
#endif

namespace jw::supervisor::cg {

#ifdef JW_HAVE_SYSTEMD
namespace {

constexpr const char* kDestination = "org.freedesktop.systemd1";
constexpr const char* kObject = "/org/freedesktop/systemd1";
constexpr const char* kManager = "org.freedesktop.systemd1.Manager";
// A manager call answers in milliseconds; a wedged systemd must not wedge the event loop for
// D-Bus's default 25 s.
constexpr uint64_t kCallTimeoutUs = 10'000'000;

Result<sd_bus*> open() {
  sd_bus* bus = nullptr;
  int r = sd_bus_new(&bus);
  if (r >= 0) r = sd_bus_set_address(bus, "unix:path=/run/systemd/private");
  if (r >= 0) r = sd_bus_start(bus);
  if (r >= 0) return bus;
  sd_bus_unref(bus);
  bus = nullptr;
  int system = sd_bus_open_system(&bus);
  if (system >= 0) return bus;
  return Error{std::string("connect to systemd (/run/systemd/private: ") + std::strerror(-r) +
                   "; system bus: " + std::strerror(-system) + ")",
               -system};
}

int appendProperty(sd_bus_message* m, const UnitProperty& p) {
  int r = sd_bus_message_open_container(m, 'r', "sv");
  if (r >= 0) r = sd_bus_message_append(m, "s", p.name.c_str());
  if (r < 0) return r;
  if (const auto* s = std::get_if<std::string>(&p.value)) {
    r = sd_bus_message_append(m, "v", "s", s->c_str());
  } else if (const auto* b = std::get_if<bool>(&p.value)) {
    r = sd_bus_message_append(m, "v", "b", static_cast<int>(*b));
  } else if (const auto* t = std::get_if<uint64_t>(&p.value)) {
    r = sd_bus_message_append(m, "v", "t", *t);
  } else if (const auto* pids = std::get_if<std::vector<uint32_t>>(&p.value)) {
    r = sd_bus_message_open_container(m, 'v', "au");
    if (r >= 0) r = sd_bus_message_append_array(m, 'u', pids->data(), pids->size() * 4);
    if (r >= 0) r = sd_bus_message_close_container(m);
  } else if (const auto* strs = std::get_if<std::vector<std::string>>(&p.value)) {
    r = sd_bus_message_open_container(m, 'v', "as");
    if (r >= 0) r = sd_bus_message_open_container(m, 'a', "s");
    for (const std::string& s : *strs) {
      if (r >= 0) r = sd_bus_message_append(m, "s", s.c_str());
    }
    if (r >= 0) r = sd_bus_message_close_container(m);
    if (r >= 0) r = sd_bus_message_close_container(m);
  }
  if (r < 0) return r;
  return sd_bus_message_close_container(m);
}

int appendProperties(sd_bus_message* m, const std::vector<UnitProperty>& props) {
  int r = sd_bus_message_open_container(m, 'a', "(sv)");
  for (const UnitProperty& p : props) {
    if (r >= 0) r = appendProperty(m, p);
  }
  if (r < 0) return r;
  return sd_bus_message_close_container(m);
}

bool connectionBroken(int r) { return r == -ENOTCONN || r == -ECONNRESET || r == -EPIPE; }

}  // namespace

Result<std::shared_ptr<SystemdManager>> SystemdManager::connect() {
  auto bus = open();
  if (!bus) return bus.error();
  return std::shared_ptr<SystemdManager>(new SystemdManager(*bus));
}

SystemdManager::~SystemdManager() { sd_bus_flush_close_unref(bus_); }

Status SystemdManager::reconnect() {
  auto bus = open();
  if (!bus) return bus.error();
  sd_bus_flush_close_unref(bus_);
  bus_ = *bus;
  return okStatus();
}

template <typename Fill>
Status SystemdManager::call(const char* method, const std::string& unit, Fill fill) {
  for (int attempt = 0;; attempt++) {
    sd_bus_message* m = nullptr;
    sd_bus_message* reply = nullptr;
    sd_bus_error error{};  // SD_BUS_ERROR_NULL, without its C99 compound literal
    int r = sd_bus_message_new_method_call(bus_, &m, kDestination, kObject, kManager, method);
    if (r >= 0) r = fill(m);
    if (r >= 0) r = sd_bus_call(bus_, m, kCallTimeoutUs, &error, &reply);
    std::string why = sd_bus_error_is_set(&error) ? error.message : std::strerror(-r);
    sd_bus_error_free(&error);
    sd_bus_message_unref(reply);
    sd_bus_message_unref(m);
    if (r >= 0) return okStatus();
    if (attempt == 0 && connectionBroken(r)) {
      if (Status s = reconnect(); !s) return s;
      continue;
    }
    return Error{std::string("systemd ") + method + " " + log::quote(unit) + ": " + why, -r};
  }
}

Result<std::string> SystemdManager::version() {
  char* v = nullptr;
  sd_bus_error error{};  // SD_BUS_ERROR_NULL, without its C99 compound literal
  int r = sd_bus_get_property_string(bus_, kDestination, kObject, kManager, "Version", &error, &v);
  std::string why = sd_bus_error_is_set(&error) ? error.message : std::strerror(-r);
  sd_bus_error_free(&error);
  if (r < 0) return Error{"systemd's Version: " + why, -r};
  std::string out = v;
  free(v);  // sd-bus allocates it with malloc
  return out;
}

Status SystemdManager::startTransientUnit(const std::string& unit,
                                          const std::vector<UnitProperty>& props) {
  return call("StartTransientUnit", unit, [&](sd_bus_message* m) {
    int r = sd_bus_message_append(m, "ss", unit.c_str(), "fail");
    if (r >= 0) r = appendProperties(m, props);
    // No auxiliary units.
    if (r >= 0) r = sd_bus_message_append(m, "a(sa(sv))", 0);
    return r;
  });
}

Status SystemdManager::setUnitProperties(const std::string& unit,
                                         const std::vector<UnitProperty>& props) {
  return call("SetUnitProperties", unit, [&](sd_bus_message* m) {
    int r = sd_bus_message_append(m, "sb", unit.c_str(), 1);
    if (r >= 0) r = appendProperties(m, props);
    return r;
  });
}

Status SystemdManager::startUnit(const std::string& unit) {
  return call("StartUnit", unit, [&](sd_bus_message* m) {
    return sd_bus_message_append(m, "ss", unit.c_str(), "replace");
  });
}

Status SystemdManager::stopUnit(const std::string& unit) {
  return call("StopUnit", unit, [&](sd_bus_message* m) {
    return sd_bus_message_append(m, "ss", unit.c_str(), "replace");
  });
}

#else  // built without libsystemd: the cgroupfs placement is the only one

Result<std::shared_ptr<SystemdManager>> SystemdManager::connect() {
  return Error{"jobworkerd was built without libsystemd (meson -Dsystemd=disabled)"};
}
SystemdManager::~SystemdManager() = default;
Result<std::string> SystemdManager::version() { return Error{"no libsystemd"}; }
Status SystemdManager::startTransientUnit(const std::string&, const std::vector<UnitProperty>&) {
  return Error{"no libsystemd"};
}
Status SystemdManager::setUnitProperties(const std::string&, const std::vector<UnitProperty>&) {
  return Error{"no libsystemd"};
}
Status SystemdManager::startUnit(const std::string&) { return Error{"no libsystemd"}; }
Status SystemdManager::stopUnit(const std::string&) { return Error{"no libsystemd"}; }

#endif

}  // namespace jw::supervisor::cg
