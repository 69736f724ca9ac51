// jobworkerd's core: owns the event loop, the frontend child, the users and session tables and
// every job, and answers the frontend's requests after re-checking each one. Runs in jobworkerd.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/config.h"
#include "common/fd.h"
#include "common/protocol/codec.h"
#include "common/protocol/shim_messages.h"
#include "supervisor/accounts/accounts.h"
#include "supervisor/accounts/login_throttle.h"
#include "supervisor/accounts/password_verifier.h"
#include "supervisor/accounts/sessions.h"
#include "supervisor/accounts/users_file.h"
#include "supervisor/cgroup/cgroup.h"
#include "supervisor/core/control_socket.h"
#include "supervisor/core/event_loop.h"
#include "supervisor/core/metrics.h"
#include "supervisor/frontend_link/frontend_process.h"
#include "supervisor/jobs/event_ring.h"
#include "supervisor/jobs/fd_budget.h"
#include "supervisor/jobs/job_table.h"
#include "supervisor/jobs/output_store.h"
#include "supervisor/jobs/start.h"
#include "supervisor/jobs/usage_sampler.h"
#include "supervisor/launch/job_launcher.h"
#include "supervisor/launch/job_seccomp.h"
#include "supervisor/launch/spawn.h"
#include "supervisor/state/state_store.h"

namespace jw::supervisor {

struct SupervisorOptions {
  config::Settings settings;  // with the command line applied
  bool dev = false;
  bool as_root = false;   // jobs change credentials, the frontend drops to frontend_user
  std::string state_dir;  // absolute
  std::string users_file;
  std::string tls_cert, tls_key;  // handed to the frontend
  std::string config_file;        // handed to the frontend ("" if none)
  std::string frontend_path;
  std::string verifier_path;                // jobworker-verifier
  std::string spawner_path;                 // jobworker-spawner
  UniqueFd init_fd;                         // jobworker-init, O_PATH: every job's shim
  UniqueFd listen_fd;                       // handed to every frontend incarnation as fd 4
  std::optional<Account> frontend_account;  // as root: the account the frontend drops to
  Account self;                             // non-root dev: the account every job runs as
  std::unique_ptr<CgroupBackend> cgroups;   // null: none
  FdLimits fd_limits;                       // RLIMIT_NOFILE as started and as raised
  std::vector<std::string> argv;            // the command line, for an upgrade's execve
  std::string self_path;                    // the binary as started: an upgrade's default
};

class Supervisor {
 public:
  static constexpr size_t kMaxParkedReads = 4096;
  static constexpr uint64_t kParkedReadMs = 15'000;
  static constexpr uint64_t kDrainDeadlineMs = 2'000;
  static constexpr uint64_t kMaxShutdownGraceMs = 5'000;
  // Job events kept for GET /v1/events?since= (a few hundred bytes each).
  static constexpr size_t kEventRingSize = 4096;
  // The shim escalates a stop to SIGKILL itself after the grace; jobworkerd's own SIGKILL (to the
  // shim, and the cgroup) only backs that up, for a shim that does not.
  static constexpr uint64_t kShimGraceMarginMs = 1'000;

  explicit Supervisor(SupervisorOptions options);
  ~Supervisor();

  // Builds the job seccomp profile, loads the users file, loads the job and session records of
  // the state dir, sets up the signalfd (the caller has blocked the signals) and starts the
  // frontend.
  Status init();
  // Runs until SIGTERM/SIGINT and the shutdown completed. Returns the exit status.
  int run();

 private:
  struct ParkedRead {
    uint32_t request_id;
    protocol::OutputReadRequest req;
    EventLoop::TimerId timer;
  };
  // A JobWait until its job ends or its timer answers with the status then (the frontend asks
  // again while the client's timeout_s lasts).
  struct ParkedWait {
    uint32_t request_id;
    protocol::Token token;
    EventLoop::TimerId timer;
  };
  // An events read with nothing to show yet, answered by the next visible event or its timer.
  struct ParkedEvents {
    uint32_t request_id;
    protocol::EventsReadRequest req;
    std::string user;
    protocol::Role role;
    EventLoop::TimerId timer;
  };
  enum class Access { kRead, kWrite };
  // Who asked, for the audit events: the user (resolved from the session), the address the
  // frontend asserts, and the action ("job_start", "job_stop").
  struct Requester {
    const UserRecord& user;
    const std::string& remote_address;
    std::string_view action;
    uint64_t received_us = 0;  // monotonicUs() when the request arrived: the start latency
  };
  // What a session may be used for: role metrics opens only the scrape and whoami.
  enum class AuthScope { kApi, kIdentity, kScrape };

  // job isolation, signals, users, sessions
  Status prepareIsolation();
  IsolationSpec isolationFor(const UserRecord& u, const protocol::JobStartRequest& r,
                             const std::string& job_id) const;
  Status setupSignals();
  void onSignal();
  Status loadUsers();
  void reloadUsers();
  const UserRecord* findUser(const std::string& name) const;
  void housekeeping();

  // durable_state.cc: the records of a previous run, and the sessions' tie to the users file
  Status loadState();
  SessionStore::Hash passwordTag(const std::string& user) const;
  // adoption.cc: the running jobs of a previous jobworkerd (a crash, an upgrade in place)
  void takeOverJob(const JobRecord& record, std::set<std::string>& keep_cgroups);
  std::optional<shim::Exited> readExitRecord(const std::string& job_id) const;
  void onAdoptedJobExit(Job& job);
  void finishAdoptedJob(Job& job, std::optional<int> shim_status);

  // systemd: the watchdog's pings (a timer of the event loop) and the STATUS= line
  void startWatchdog();
  void pingWatchdog();
  size_t runningJobs() const;
  void updateServiceStatus();

  // frontend channel
  void onFrontendConnected();
  void onFrontendGone();
  void replyError(uint32_t id, protocol::ErrorCode code, const std::string& message,
                  int sys_errno = 0);
  void replyStatus(uint32_t id, const Job& job);
  // Replies e; a forbidden or over-limit request is also an audit event (MESSAGE_ID kRefused).
  void refuse(uint32_t id, const Requester& who, const RequestError& e);

  // The request dispatch (request_dispatch.cc): a table generated from JW_MESSAGES with one
  // entry per frontend-to-supervisor message, each decoding its payload and calling
  // handle<Name>(id, payload). An error return is a protocol violation.
  struct RequestEntry {
    protocol::MsgType type;
    Status (*run)(Supervisor& s, uint32_t id, std::string_view payload);
  };
  static std::span<const RequestEntry> requestTable();
  Status onRequest(const protocol::FrameHeader& h, std::string_view payload);

  // The control socket's dispatch (control_dispatch.cc): a table generated from
  // JW_CONTROL_MESSAGES, one entry per admin-to-supervisor message calling handle<Name>(conn,
  // id, payload). An error return closes that control connection.
  struct ControlEntry {
    protocol::ControlMsgType type;
    Status (*run)(Supervisor& s, ControlServer::ConnId c, uint32_t id, std::string_view payload);
  };
  static std::span<const ControlEntry> controlTable();
  Status onControlRequest(ControlServer::ConnId c, const protocol::ControlFrameHeader& h,
                          std::string_view payload);
  void handleControlSessionList(ControlServer::ConnId c, uint32_t id, const protocol::Empty&);
  void handleControlSessionRevokeUser(ControlServer::ConnId c, uint32_t id,
                                      const protocol::ControlUser& u);
  void handleControlSessionRevokeId(ControlServer::ConnId c, uint32_t id,
                                    const protocol::ControlSessionId& s);
  void finishRevocation(ControlServer::ConnId c, uint32_t id, size_t revoked);
  void handleControlTokenCreate(ControlServer::ConnId c, uint32_t id,
                                const protocol::ControlTokenRequest& t);
  // upgrade.cc: the upgrade in place, and who answers the control socket
  void handleControlUpgrade(ControlServer::ConnId c, uint32_t id,
                            const protocol::ControlUpgradeRequest& r);
  void handleControlInfo(ControlServer::ConnId c, uint32_t id, const protocol::Empty&);
  // Returns only when execve failed (everything stopped for it is running again).
  Status execInPlace(const std::string& binary);

  // requests; each handler replies itself
  Status handleReady(uint32_t id, const protocol::Empty&);  // once per frontend
  // session_requests.cc: Login is answered from the verifier's callback (finishLogin); every
  // other request starts with authenticate(), which replies `unauthorized` itself on null.
  void handleLogin(uint32_t id, protocol::LoginRequest& r);  // wipes r.password
  void finishLogin(uint32_t id, uint64_t generation, const std::string& user,
                   const std::string& address, PasswordVerdict v);
  void handleSessionRevoke(uint32_t id, const protocol::SessionEnd& s);
  void handleSessionGet(uint32_t id, const protocol::SessionRef& s);
  const UserRecord* authenticate(uint32_t id, const protocol::Token& token,
                                 AuthScope scope = AuthScope::kApi);
  void handleJobStart(uint32_t id, const protocol::JobStartRequest& r);
  void handleJobStop(uint32_t id, const protocol::JobStopRequest& r);
  void handleJobGet(uint32_t id, const protocol::JobRef& r);
  void handleJobList(uint32_t id, const protocol::JobListRequest& r);
  // Runs the usage sampler's next slice soon, unless one is scheduled or nothing is queued.
  void scheduleUsageSampling();
  void handleOutputRead(uint32_t id, const protocol::OutputReadRequest& r);
  void handleJobWait(uint32_t id, const protocol::JobWaitRequest& r);
  void handleJobDelete(uint32_t id, const protocol::JobDeleteRequest& r);
  void handleServerInfo(uint32_t id, const protocol::SessionRef& r);
  void handleHealth(uint32_t id, const protocol::Empty&);
  // metrics_requests.cc: the scrape, the end-of-job counters and the loop's lag probe
  void handleMetricsGet(uint32_t id, const protocol::SessionRef& s);
  void countJobEnd(const Job& job);
  void startLagProbe();
  void probeLoopLag(uint64_t due_us);
  // stdin_requests.cc: a job's stdin upload, fed into its pipe without blocking
  void handleStdinOpen(uint32_t id, const protocol::StdinOpenRequest& r);
  Status handleStdinWrite(uint32_t id, protocol::StdinWriteRequest& r);  // error: violation
  void handleStdinClose(uint32_t id, const protocol::StdinCloseRequest& r);
  Job* uploadTarget(uint32_t id, const UserRecord& user, const std::string& job_id);
  void feedStdin(Job& job);
  // Closes the job's stdin pipe (EOF), answering the frames not written with an error.
  void endStdin(Job& job, bool complete, const std::string& why);
  void endUploads(const std::string& why);  // every upload in progress (the frontend is gone)
  // event_requests.cc: the job events of GET /v1/events
  void emitEvent(const Job& job, protocol::EventType type);
  void handleEventsRead(uint32_t id, const protocol::EventsReadRequest& r);
  bool answerEvents(uint32_t id, const protocol::EventsReadRequest& r, const std::string& user,
                    protocol::Role role, bool park);
  void answerParkedEvents();
  void expireParkedEvents(uint64_t key);
  // Resolves user + job with role and ownership rules; replies with the error itself and
  // returns null when refused.
  Job* accessibleJob(uint32_t id, const UserRecord& u, const std::string& job_id, Access a);

  // jobs
  std::optional<RequestError> checkStartCapacity() const;
  // A start runs in steps: startJob() checks, creates the job's files and cgroup and hands the
  // shim to the launcher; finishStart() runs once its shim reported, and answers. In between
  // the job waits in starting_ (it counts for names and per-user limits, but is not listed).
  struct PendingStart {
    uint32_t reply_id = 0;
    uint64_t frontend_generation = 0;  // a reply goes only to the frontend that asked
    UserRecord user;                   // copies: the users file may be reloaded meanwhile
    std::string remote_address;
    uint64_t received_us = 0;
    protocol::JobStartRequest request;
    std::string run_as;
    std::unique_ptr<Job> job;
    JobResources resources;
  };
  void startJob(uint32_t id, const Requester& who, const protocol::JobStartRequest& r);
  void finishStart(uint64_t key, Result<SpawnedJob> spawned, SpawnFailure failure);
  size_t startingJobsOf(const std::string& user) const;
  const Job* startingJobNamed(const std::string& user, const std::string& name) const;
  JobSpec jobSpec(const std::string& job_id, const UserRecord& u,
                  const protocol::JobStartRequest& r, const protocol::Limits& limits,
                  const Account& account, const IsolationSpec& isolation) const;
  SpawnRequest spawnRequest(const Job& job, const protocol::JobStartRequest& r,
                            const Account& account, const IsolationSpec& isolation) const;
  void logJobStart(const Job& job, const Requester& who, const protocol::JobStartRequest& r,
                   const std::string& run_as);
  void watchJob(Job& job);
  void onShimFrames(Job& job);
  void applySizes(Job& job, const shim::StreamSizes& out, const shim::StreamSizes& err);
  void takeFinalCgroupFigures(Job& job);
  void onJobDeadline(Job& job);
  void closeShimChannel(Job& job);
  void onJobExit(const std::string& job_id);
  void maybePublish(Job& job);
  void publishJob(Job& job);
  void recordShimEnd(Job& job, int shim_wait_status);
  // by: the user who asked, or "timeout" / "shutdown" (then remote_address is empty)
  void stopJob(Job& job, const std::string& by, uint64_t grace_ms,
               const std::string& remote_address = "");
  void logJobStop(const Job& job, const std::string& by, uint64_t grace_ms,
                  const std::string& remote_address);
  void armBackupKill(Job& job, uint64_t grace_ms);
  void killJob(Job& job);
  void removeCgroupLater(const std::string& job_id, int attempt);
  void enforceRetention();
  // Retention: the job, its record and its output are gone.
  void dropJob(const std::string& job_id);
  // Stops watching the job and ends what still runs of it; its directory stays (shutdown).
  void releaseJob(Job& job);

  // output reads
  protocol::OutputChunk readChunk(const Job& job, const protocol::OutputReadRequest& r);
  // The OutputChunk frame answering r, without timestamps read straight into the frame;
  // nothing when the log could not be read (logged).
  std::optional<std::string> chunkFrame(uint32_t request_id, const Job& job,
                                        const protocol::OutputReadRequest& r);
  Result<uint64_t> startOffset(const Job& job, const protocol::OutputReadRequest& r);
  void answerParked(Job& job, int stream, bool all);
  void expireParked(const std::string& job_id, uint64_t key);
  // Answers every parked follow read whose token no longer has a session (after a revocation)
  // as its timeout would: the frontend asks again and is told `unauthorized`.
  void releaseParkedWithoutSession();
  // waits: answered with the job's status when it ends (all), or one of them at its timer
  void answerWaits(const Job& job);
  void expireWait(const std::string& job_id, uint64_t key);
  void dropParked(const std::string& job_id);

  // shutdown
  void beginShutdown();
  void maybeFinishShutdown();

  SupervisorOptions opt_;
  const config::Settings& settings_;
  EventLoop loop_;
  std::unique_ptr<FrontendProcess> frontend_;
  std::unique_ptr<ControlServer> control_;
  OutputStore store_;
  StateStore state_;  // the records in store_'s job directories, and the sessions'
  SessionStore sessions_;
  PasswordVerifier verifier_;  // after loop_: destroyed first, while its timers can be cancelled
  LoginThrottle throttle_;
  SupervisorMetrics metrics_;
  uint64_t frontend_generation_ = 0;  // bumped per frontend connection; Login replies check it
  JobTable jobs_;
  UsageSampler usage_sampler_;          // lists' stale usage, refreshed in slices
  EventLoop::TimerId usage_timer_ = 0;  // the next slice; 0: none scheduled
  std::map<std::string, UserRecord> users_;
  UniqueFd signal_fd_;
  // Built once before any job: the child only reads it (no allocation between fork and exec).
  std::optional<JobSeccompProfile> job_seccomp_;
  int last_cap_ = 0;     // /proc/sys/kernel/cap_last_cap, for non-root jobs' bounding-set drop
  std::string boot_id_;  // /proc/sys/kernel/random/boot_id: part of each job's identity
  int64_t image_started_at_ms_ = realtimeMs();  // this binary's start in this pid
  uint64_t watchdog_ms_ = 0;                    // WatchdogSec=; 0: none
  uint64_t watchdog_ping_ms_ = 0;
  bool ready_notified_ = false;  // systemd heard READY=1 (from the first frontend)
  bool frontend_ready_ = false;  // the current frontend sent its Ready
  bool shutting_down_ = false;
  std::unordered_map<std::string, std::map<uint64_t, ParkedRead>> parked_;
  std::unordered_map<std::string, std::map<uint64_t, ParkedWait>> parked_waits_;
  size_t parked_count_ = 0;  // reads and waits: both bounded by kMaxParkedReads
  uint64_t next_parked_key_ = 1;
  EventRing events_;
  std::map<uint64_t, ParkedEvents> parked_events_;
  std::map<uint64_t, PendingStart> starting_;  // by next_start_key_
  uint64_t next_start_key_ = 1;
  JobLauncher launcher_;  // after starting_: destroyed first, killing the shims not yet started
};

}  // namespace jw::supervisor
