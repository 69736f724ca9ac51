// How tests wait (unit and integration suites, in the test process): poll something observable
// (a log line, a status field, /proc, a socket) until it holds or a deadline passes. The one
// polling loop of the tests; a fixed sleep standing in for an event is a bug to fix, not a habit.
// Header-only so that the unit suites use it without linking the integration fixture.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <thread>

namespace jw::test {

// Evaluates ready() at once, then after 5 ms, 10 ms, ... (backing off to 50 ms between polls)
// until it returns true or `timeout` has passed; returns whether it became true. The caller
// asserts on the outcome (or on the state it waited for), so a wait that times out fails the test.
inline bool waitUntil(const std::function<bool()>& ready,
                      std::chrono::steady_clock::duration timeout) {
  using namespace std::chrono;
  const auto deadline = steady_clock::now() + timeout;
  milliseconds pause(5);
  for (;;) {
    if (ready()) return true;
    auto now = steady_clock::now();
    if (now >= deadline) return false;
    std::this_thread::sleep_for(std::min<steady_clock::duration>(pause, deadline - now));
    pause = std::min(pause * 2, milliseconds(50));
  }
}

// Connections waiting in the accept queue of the TCP socket listening on 127.0.0.1:port (the
// rx_queue column /proc/net/tcp shows for a listener), or -1 when there is no such listener.
// 0 after connecting means the server has taken every connection: what a test of silent or
// parked connections must wait for before it measures anything.
inline int acceptQueueLength(int port) {
  std::ifstream in("/proc/net/tcp");
  char local[32];
  std::snprintf(local, sizeof local, "0100007F:%04X", static_cast<unsigned>(port));
  std::string line;
  std::getline(in, line);  // the header
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::string slot, addr, remote, state, queues;
    fields >> slot >> addr >> remote >> state >> queues;
    if (addr != local || state != "0A") continue;  // 0A: TCP_LISTEN
    size_t colon = queues.find(':');
    if (colon == std::string::npos) return -1;
    return static_cast<int>(std::stoul(queues.substr(colon + 1), nullptr, 16));
  }
  return -1;
}

}  // namespace jw::test
