// Durable job and session records under the state dir (see state_store.h); runs in jobworkerd.
#include "supervisor/state/state_store.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include "common/io.h"
#include "common/log.h"
#include "common/names.h"
#include "supervisor/jobs/job.h"
#include "supervisor/jobs/output_store.h"

namespace jw::supervisor {

namespace {

constexpr size_t kHashHexLength = 64;

std::string hashHex(const SessionStore::Hash& h) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string s;
  for (uint8_t b : h) {
    s += kHex[b >> 4];
    s += kHex[b & 0xf];
  }
  return s;
}

bool isHashHex(std::string_view name) {
  return name.size() == kHashHexLength && std::all_of(name.begin(), name.end(), [](char c) {
           return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
         });
}

Status makePrivateDir(const std::string& path) {
  if (mkdir(path.c_str(), 0700) != 0 && errno != EEXIST) return sysError("mkdir " + path);
  UniqueFd fd(open(path.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!fd) return sysError("open " + path);
  if (fchmod(fd.get(), 0700) != 0) return sysError("chmod 0700 " + path);
  return okStatus();
}

UniqueFd openDirAt(int dir_fd, const std::string& name) {
  return UniqueFd(openat(dir_fd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
}

// A regular file's bytes (never through a symlink), at most kMaxRecordBytes.
Result<std::string> readRecordAt(int dir_fd, const char* name) {
  UniqueFd fd(openat(dir_fd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
  if (!fd) return sysError(std::string("open ") + name);
  struct stat st {};
  if (fstat(fd.get(), &st) != 0) return sysError(std::string("stat ") + name);
  if (!S_ISREG(st.st_mode)) return Error{std::string(name) + " is not a regular file"};
  return readAll(fd.get(), name, kMaxRecordBytes);
}

bool regularFileAt(int dir_fd, const char* name) {
  struct stat st {};
  return fstatat(dir_fd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode);
}

// Each entry of an open directory but . and .., in no particular order.
std::vector<std::string> entriesOf(int dir_fd) {
  std::vector<std::string> names;
  // A fresh open, not a dup: a dup would share (and leave at the end) the directory's offset.
  UniqueFd dup(openat(dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dup) return names;
  DIR* d = fdopendir(dup.get());
  if (d == nullptr) return names;
  (void)dup.release();  // closedir closes it
  while (dirent* e = readdir(d)) {
    if (std::strcmp(e->d_name, ".") != 0 && std::strcmp(e->d_name, "..") != 0) {
      names.emplace_back(e->d_name);
    }
  }
  closedir(d);
  return names;
}

}  // namespace

StateStore::StateStore(std::string state_dir)
    : state_dir_(std::move(state_dir)),
      jobs_dir_(state_dir_ + "/jobs"),
      sessions_dir_(state_dir_ + "/sessions"),
      corrupt_dir_(state_dir_ + "/corrupt") {}

Status StateStore::prepare() {
  for (const auto* dir : {&jobs_dir_, &sessions_dir_, &corrupt_dir_}) {
    if (Status st = makePrivateDir(*dir); !st) return st;
  }
  jobs_fd_.reset(open(jobs_dir_.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  sessions_fd_.reset(open(sessions_dir_.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!jobs_fd_ || !sessions_fd_) return sysError("open " + state_dir_ + "/{jobs,sessions}");
  sync_.push(state_dir_);
  return okStatus();
}

UniqueFd StateStore::openJobDir(const std::string& id) const {
  if (!jobs_fd_ || !names::validJobId(id)) return UniqueFd();
  return openDirAt(jobs_fd_.get(), id);
}

Status StateStore::reserveEndRecord(const protocol::JobStatus& start) {
  UniqueFd dir = openJobDir(start.id);
  if (!dir) return sysError("open the directory of job " + start.id);
  return createReserveAt(dir.get(), kJobReserveFile,
                         endRecordReserve(encodeJobRecord(start).size()));
}

void StateStore::saveJob(const JobRecord& record) {
  const protocol::JobStatus& job = record.status;
  UniqueFd dir = openJobDir(job.id);
  Status st = dir ? replaceFileAt(dir.get(), kJobRecordFile, encodeJobRecord(record))
                  : sysError("open the directory of job " + job.id);
  if (!st) {
    // Only the end record is owed a reserve: an intermediate one may wait for space.
    if (!warned_full_ || st.error().sys_errno != ENOSPC) {
      log::warning("job " + job.id + ": record not written: " + st.error().message);
    }
    warned_full_ = warned_full_ || st.error().sys_errno == ENOSPC;
    return;
  }
  std::string path = jobs_dir_ + "/" + job.id;
  sync_.push(path + "/" + kJobRecordFile);
  sync_.push(path);
  sync_.push(jobs_dir_);
}

void StateStore::saveEndRecord(const protocol::JobStatus& job) {
  UniqueFd dir = openJobDir(job.id);
  if (!dir) {
    log::err(sysError("job " + job.id + ": end record: open its directory").message);
    return;
  }
  std::string bytes = encodeJobRecord(job);
  Status st = fillReserveAt(dir.get(), kJobReserveFile, kJobRecordFile, bytes);
  if (!st) {
    // No reserve (a record loaded from a previous run) or one too small: the ordinary way.
    Status again = replaceFileAt(dir.get(), kJobRecordFile, bytes);
    if (!again) {
      log::err("job " + job.id + ": end record not written (" + st.error().message + "; " +
               again.error().message + ")");
      return;
    }
  }
  (void)unlinkat(dir.get(), kJobReserveFile, 0);  // after the fallback: not needed any more
  std::string path = jobs_dir_ + "/" + job.id;
  sync_.push(path + "/" + kJobRecordFile);
  sync_.push(path);
  sync_.push(jobs_dir_);
}

void StateStore::jobRemoved() { sync_.push(jobs_dir_); }

void StateStore::saveSession(const SessionRecord& s) {
  if (!sessions_fd_) return;
  std::string name = hashHex(s.hash);
  Status st = replaceFileAt(sessions_fd_.get(), name, encodeSessionRecord(s));
  if (!st) {
    log::warning("session of " + s.session.user +
                 " not written (it ends with this run): " + st.error().message);
    return;
  }
  sync_.push(sessions_dir_ + "/" + name);
  sync_.push(sessions_dir_);
}

void StateStore::removeSession(const SessionStore::Hash& hash) {
  if (!sessions_fd_) return;
  if (unlinkat(sessions_fd_.get(), hashHex(hash).c_str(), 0) != 0 && errno != ENOENT) {
    // A revoked session must not come back at the next start.
    log::err(sysError("remove an ended session's record").message);
    return;
  }
  sync_.push(sessions_dir_);
}

// --- load --------------------------------------------------------------------------------------

void StateStore::setAside(int dir_fd, const std::string& name, const std::string& what,
                          bool move_aside, Loaded& out) {
  out.corrupt++;
  std::string line = log::quote(name) + ": " + what;
  if (move_aside) {
    // Only a job id or a hash is kept in the new name: the rest of a stray name is not ours.
    std::string base = names::validJobId(name) || isHashHex(name) ? name : "entry";
    std::string target;
    int rc = -1;
    for (int n = 0; n < 100 && rc != 0; n++) {
      target = corrupt_dir_ + "/" + base + "-" + std::to_string(realtimeMs()) +
               (n > 0 ? "-" + std::to_string(n) : "");
      rc = renameat(dir_fd, name.c_str(), AT_FDCWD, target.c_str());
      if (rc != 0 && errno != EEXIST && errno != ENOTEMPTY) break;
    }
    line += rc == 0 ? "; moved to " + target : "; " + sysError("moving it aside").message;
    sync_.push(corrupt_dir_);
  }
  out.problems.push_back(std::move(line));
}

void StateStore::loadJobs(bool move_aside, Loaded& out) {
  int jobs = jobs_fd_.get();
  for (const std::string& name : entriesOf(jobs)) {
    if (!names::validJobId(name)) {
      setAside(jobs, name, "not a job directory", move_aside, out);
      continue;
    }
    UniqueFd dir = openDirAt(jobs, name);
    if (!dir) {
      setAside(jobs, name, sysError("not a directory (or a symlink)").message, move_aside, out);
      continue;
    }
    auto bytes = readRecordAt(dir.get(), kJobRecordFile);
    if (!bytes) {
      setAside(jobs, name, "no readable record: " + bytes.error().message, move_aside, out);
      continue;
    }
    auto rec = decodeJobRecord(bytes.value());
    if (!rec) {
      if (rec.error().kind == RecordError::kNewerVersion) out.newer_version++;
      setAside(jobs, name, "bad record: " + rec.error().message, move_aside, out);
      continue;
    }
    if (rec->status.id != name) {
      setAside(jobs, name, "its record is job " + log::quote(rec->status.id) + "'s", move_aside,
               out);
      continue;
    }
    const int streams = rec->status.output == protocol::OutputMode::kSeparate ? 2 : 1;
    bool logs = true;
    for (int s = 0; s < streams; s++) logs = logs && regularFileAt(dir.get(), kStreamFile[s]);
    if (!logs) {
      setAside(jobs, name, "an output file is missing", move_aside, out);
      continue;
    }
    if (move_aside) (void)unlinkat(dir.get(), (std::string(kJobRecordFile) + ".tmp").c_str(), 0);
    out.jobs.push_back(std::move(rec.value()));
  }
  std::sort(out.jobs.begin(), out.jobs.end(), [](const JobRecord& a, const JobRecord& b) {
    const protocol::JobStatus& x = a.status;
    const protocol::JobStatus& y = b.status;
    return x.created_at_ms != y.created_at_ms ? x.created_at_ms < y.created_at_ms : x.id < y.id;
  });
}

void StateStore::loadSessions(bool move_aside, int64_t now_ms, Loaded& out) {
  int dir = sessions_fd_.get();
  for (const std::string& name : entriesOf(dir)) {
    if (!isHashHex(name)) {
      // A temporary left by a crash mid-write carries nothing that was ever in use.
      if (move_aside && name.ends_with(".tmp")) {
        (void)unlinkat(dir, name.c_str(), 0);
        continue;
      }
      setAside(dir, name, "not a session record", move_aside, out);
      continue;
    }
    auto bytes = readRecordAt(dir, name.c_str());
    auto rec = bytes ? decodeSessionRecord(bytes.value())
                     : Result<SessionRecord, RecordFailure>(
                           RecordFailure{RecordError::kCorrupt, bytes.error().message});
    if (!rec) {
      if (rec.error().kind == RecordError::kNewerVersion) out.newer_version++;
      setAside(dir, name, "bad session record: " + rec.error().message, move_aside, out);
      continue;
    }
    if (hashHex(rec->hash) != name) {
      setAside(dir, name, "a session record under another session's name", move_aside, out);
      continue;
    }
    if (rec->session.expires_at_ms <= now_ms) {
      if (move_aside) removeSession(rec->hash);
      continue;
    }
    out.sessions.push_back(std::move(rec.value()));
  }
}

StateStore::Loaded StateStore::load(bool move_aside, int64_t now_ms) {
  Loaded out;
  if (!move_aside) {
    jobs_fd_.reset(open(jobs_dir_.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    sessions_fd_.reset(
        open(sessions_dir_.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  }
  if (jobs_fd_) loadJobs(move_aside, out);
  if (sessions_fd_) loadSessions(move_aside, now_ms, out);
  return out;
}

int checkState(const std::string& state_dir) {
  struct stat st {};
  if (stat(state_dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    std::fprintf(stderr, "jobworkerd: --check-state: %s is not a readable directory\n",
                 state_dir.c_str());
    return 1;
  }
  for (const char* sub : {"/jobs", "/sessions"}) {
    std::string path = state_dir + sub;
    if (stat(path.c_str(), &st) == 0 && access(path.c_str(), R_OK | X_OK) != 0) {
      std::fprintf(stderr, "jobworkerd: --check-state: cannot read %s\n", path.c_str());
      return 1;
    }
  }
  StateStore store(state_dir);
  StateStore::Loaded loaded = store.load(false, realtimeMs());
  std::map<protocol::JobState, size_t> by_state;
  size_t adoptable = 0;
  for (const auto& j : loaded.jobs) {
    by_state[j.status.state]++;
    adoptable += j.shim ? 1 : 0;
  }
  std::printf("state dir %s (record format version %u)\n", state_dir.c_str(), kRecordVersion);
  std::printf("jobs: %zu (", loaded.jobs.size());
  const char* sep = "";
  for (auto s : {protocol::JobState::kExited, protocol::JobState::kKilled,
                 protocol::JobState::kFailed, protocol::JobState::kRunning}) {
    std::printf("%s%s %zu", sep, std::string(protocol::jobStateName(s)).c_str(), by_state[s]);
    sep = ", ";
  }
  std::printf(
      ")\nrunning with a shim to take over: %zu\nsessions: %zu live\ncorrupt: %zu (would be "
      "moved to %s/corrupt)\n",
      adoptable, loaded.sessions.size(), loaded.corrupt, state_dir.c_str());
  for (const auto& p : loaded.problems) std::printf("  %s\n", p.c_str());
  if (loaded.newer_version > 0) {
    std::fprintf(stderr,
                 "jobworkerd: --check-state: %zu record(s) written by a newer jobworkerd; this "
                 "version cannot take this state over\n",
                 loaded.newer_version);
    return 1;
  }
  return 0;
}

}  // namespace jw::supervisor
