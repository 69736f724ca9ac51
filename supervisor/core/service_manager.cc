// sd_notify messages to systemd (see service_manager.h). Runs in jobworkerd.
#include "supervisor/core/service_manager.h"

#include <stdlib.h>
#include <unistd.h>

#ifdef JW_HAVE_SYSTEMD
#include <systemd/sd-daemon.h>
#endif

namespace jw::supervisor::service_manager {

void notify([[maybe_unused]] const std::string& state) {
#ifdef JW_HAVE_SYSTEMD
  sd_notify(0, state.c_str());  // harmless without NOTIFY_SOCKET
#endif
}

uint64_t watchdogIntervalMs() {
#ifdef JW_HAVE_SYSTEMD
  uint64_t usec = 0;
  // unset_environment: the single-threaded supervisor calls this once, before any child.
  if (sd_watchdog_enabled(1, &usec) > 0) return usec / 1000;
#endif
  return 0;
}

void keepWatchdogEnvironment(uint64_t interval_ms) {
  if (interval_ms == 0) return;
  (void)setenv("WATCHDOG_USEC", std::to_string(interval_ms * 1000).c_str(), 1);
  (void)setenv("WATCHDOG_PID", std::to_string(getpid()).c_str(), 1);
}

void forgetWatchdogEnvironment() {
  (void)unsetenv("WATCHDOG_USEC");
  (void)unsetenv("WATCHDOG_PID");
}

std::string statusLine(bool serving, bool stopping, size_t running_jobs) {
  std::string state = stopping ? "stopping" : serving ? "serving" : "starting";
  return state + "; " + std::to_string(running_jobs) +
         (running_jobs == 1 ? " job running" : " jobs running");
}

}  // namespace jw::supervisor::service_manager
