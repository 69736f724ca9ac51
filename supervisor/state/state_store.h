// jobworkerd's durable state under the state dir: <state>/jobs/<id>/record (each job's record,
// next to its output), <state>/sessions/<hash hex> (one file per live session), and
// <state>/corrupt/, where records that cannot be read are moved aside. Loads all of it at start
// (and for `jobworkerd --check-state`, without changing anything). Runs in jobworkerd.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "common/fd.h"
#include "common/protocol/codec.h"
#include "common/result.h"
#include "supervisor/state/durable_files.h"
#include "supervisor/state/record_codec.h"

namespace jw::supervisor {

inline constexpr const char* kJobRecordFile = "record";
inline constexpr const char* kJobReserveFile = "record.reserve";

class StateStore {
 public:
  explicit StateStore(std::string state_dir);

  // Creates jobs/, sessions/ and corrupt/ (0700) and opens them.
  Status prepare();

  // --- jobs: every failure is logged, never the job's end -----------------------------------
  // Before the job runs: the space its end record will need (ENOSPC: refuse the job).
  Status reserveEndRecord(const protocol::JobStatus& start);
  // A record of the job as it is now (started, stop requested), with its shim.
  void saveJob(const JobRecord& job);
  // The job's end record, written into its reserve: a full disk cannot lose it.
  void saveEndRecord(const protocol::JobStatus& job);
  // The job's directory is gone (retention): make that durable too.
  void jobRemoved();

  // --- sessions -------------------------------------------------------------------------------
  void saveSession(const SessionRecord& s);
  void removeSession(const SessionStore::Hash& hash);

  // --- load -----------------------------------------------------------------------------------
  struct Loaded {
    std::vector<JobRecord> jobs;  // oldest first
    std::vector<SessionRecord> sessions;
    size_t corrupt = 0;                 // moved aside (or, for a check, would be)
    size_t newer_version = 0;           // of those: written by a newer jobworkerd
    std::vector<std::string> problems;  // one line per record set aside, for the log
  };
  // Every record, checked. With move_aside (the daemon) what cannot be read (bad bytes, a
  // newer version, an id that is not its directory's name, a symlink, a missing output file,
  // a directory without a record) is renamed to corrupt/<name>-<time> and sessions past their
  // expiry are deleted; without it (--check-state) nothing on disk changes.
  Loaded load(bool move_aside, int64_t now_ms);

  // Durably writes what is queued (shutdown, tests).
  void flush() { sync_.flush(); }
  const std::string& jobsDir() const { return jobs_dir_; }

 private:
  UniqueFd openJobDir(const std::string& id) const;
  void loadJobs(bool move_aside, Loaded& out);
  void loadSessions(bool move_aside, int64_t now_ms, Loaded& out);
  void setAside(int dir_fd, const std::string& name, const std::string& what, bool move_aside,
                Loaded& out);

  std::string state_dir_, jobs_dir_, sessions_dir_, corrupt_dir_;
  UniqueFd jobs_fd_, sessions_fd_;
  bool warned_full_ = false;  // one "cannot write" warning per run, not one per job
  SyncQueue sync_;
};

// `jobworkerd --check-state DIR`: loads DIR's records read-only and prints counts to stdout.
// Returns 0 when this version can take the state over (corrupt records would be set aside),
// 1 with a message on stderr when it cannot (unreadable dir, a record of a newer version).
int checkState(const std::string& state_dir);

}  // namespace jw::supervisor
