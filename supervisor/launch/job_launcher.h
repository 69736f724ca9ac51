// JobLauncher: jobworkerd's side of every job start. It keeps jobworker-spawner running, sends it
// an Order per job (the spec memfd, the channel and the job's files attached), places the shim it
// cloned in the job's cgroup(s), releases it, and calls back once the shim reports the command
// started or failed. The event loop never waits for a clone, the containment steps or the exec:
// those run in the spawner and the shim while other requests are served. Runs in jobworkerd.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <map>
#include <string>

#include "common/fd.h"
#include "common/result.h"
#include "supervisor/core/event_loop.h"
#include "supervisor/core/restarting_helper.h"
#include "supervisor/launch/spawn.h"

namespace jw::supervisor {

class JobLauncher {
 public:
  // Called exactly once per launch, from the event loop (or drain()), never inside launch().
  using Done = std::function<void(Result<SpawnedJob> result, SpawnFailure failure)>;

  // `init_fd` (jobworker-init, O_PATH) is handed to every spawner as its descriptor 4.
  JobLauncher(EventLoop& loop, std::string spawner_path, int init_fd);
  // Kills the spawner and every shim not yet started; pending callbacks are dropped.
  ~JobLauncher();
  JobLauncher(const JobLauncher&) = delete;
  JobLauncher& operator=(const JobLauncher&) = delete;

  void start();
  // Stops the spawner for good (an upgrade in place starts its own); launches in flight finish
  // first (drain).
  void shutdown();

  // Starts req's shim. The request's borrowed descriptors are sent at once: the caller may close
  // them when this returns; `req.cgroup` must stay valid until `done` runs.
  void launch(const SpawnRequest& req, Done done);

  // Waits (blocking the loop) until every launch in flight has called back: before an upgrade's
  // exec and a shutdown, which must see every job that will run.
  void drain();

  size_t inFlight() const { return launches_.size(); }
  pid_t spawnerPid() const { return process_.pid(); }

 private:
  struct Launch {
    SpawnRequest req;
    Done done;
    UniqueFd channel;  // ours
    UniqueFd pidfd;    // the shim's, once the spawner answered
    pid_t pid = -1;
    EventLoop::WatchId channel_watch = 0;
    EventLoop::TimerId timeout = 0;
  };

  void attachLink(UniqueFd link);
  void closeLink();
  void onLink();
  void onSpawned(uint32_t id, pid_t pid, int err, UniqueFd pidfd);
  void onShimEvent(uint32_t id);
  void onTimeout(uint32_t id);
  void finish(uint32_t id, Result<SpawnedJob> result, SpawnFailure failure);
  void failUnspawned(const std::string& why);
  uint32_t nextId();

  EventLoop& loop_;
  UniqueFd link_;
  EventLoop::WatchId link_watch_ = 0;
  uint32_t last_id_ = 0;
  std::map<uint32_t, Launch> launches_;
  RestartingHelper process_;  // last: destroyed (killed) first
};

}  // namespace jw::supervisor
