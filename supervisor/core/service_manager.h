// jobworkerd's messages to systemd (sd_notify(3)): READY=1, STATUS=, STOPPING=1 and the
// watchdog's WATCHDOG=1. Each is a no-op without NOTIFY_SOCKET (not started by systemd). Runs in
// jobworkerd.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace jw::supervisor::service_manager {

void notify(const std::string& state);

// The interval systemd expects WATCHDOG=1 within (WatchdogSec=, for this process), in
// milliseconds; 0 when there is no watchdog. Removes WATCHDOG_USEC/WATCHDOG_PID from the
// environment, so that no child (frontend, verifier, job) believes the watchdog is its own.
uint64_t watchdogIntervalMs();
// Puts WATCHDOG_USEC/WATCHDOG_PID (this pid) back for an execve of this same process (the
// upgrade in place), so that the new image pings too; forgetWatchdogEnvironment() takes them
// out again when the exec failed.
void keepWatchdogEnvironment(uint64_t interval_ms);
void forgetWatchdogEnvironment();

// "serving; 3 jobs running": what `systemctl status` shows on its Status: line.
std::string statusLine(bool serving, bool stopping, size_t running_jobs);

}  // namespace jw::supervisor::service_manager
