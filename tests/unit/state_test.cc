// Unit tests of the durable state: the record codec (round trips, every truncation, versions,
// field checks), the state store on a temporary directory (save, reserve, load, set aside, the
// read-only check), the session table's observer, and Job::restore. Runs in the unit test
// process, unprivileged.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "common/io.h"
#include "supervisor/jobs/job.h"
#include "supervisor/jobs/output_store.h"
#include "supervisor/state/durable_files.h"
#include "supervisor/state/record_codec.h"
#include "supervisor/state/state_store.h"

namespace jw::supervisor {
namespace {

namespace fs = std::filesystem;
using protocol::JobState;
using protocol::JobStatus;

class TempDir {
 public:
  TempDir() {
    std::string t = "/tmp/jw-state-test-XXXXXX";
    EXPECT_NE(mkdtemp(t.data()), nullptr);
    path_ = t;
  }
  ~TempDir() { fs::remove_all(path_); }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

constexpr const char* kId = "0a1b2c3d-4e5f-4a6b-8c7d-8e9fa0b1c2d3";

// Every field set to something other than its default.
JobStatus fullRecord(const std::string& id = kId) {
  JobStatus s;
  s.id = id;
  s.owner = "alice";
  s.command = {"sh", "-c", std::string("echo \0x", 7), ""};
  s.state = JobState::kExited;
  s.pid = 4242;
  s.has_exit_code = true;
  s.exit_code = 3;
  s.stopped_by = "bob";
  s.created_at_ms = 1'700'000'000'000;
  s.started_at_ms = 1'700'000'000'010;
  s.ended_at_ms = 1'700'000'000'999;
  s.output = protocol::OutputMode::kSeparate;
  s.output_bytes = 12288;
  s.output_dropped_bytes = 7;
  s.output_truncated = true;
  s.output_error = "no space left on device at byte 12288";
  s.stderr_bytes = 5;
  s.stderr_error = "";
  s.oom_killed = true;
  s.limits = {500, 1 << 30, 64, {{"/dev/vda", 1, 2, 3, 4}}};
  s.usage = {true, true, true, true, 1.25, 1 << 20, 10, 20, 7};
  s.isolation = {"pid", "mount", "cgroup"};
  s.run_as = "first.last";
  return s;
}

TEST(JobRecord, RoundTripsEveryField) {
  JobStatus s = fullRecord();
  auto back = decodeJobRecord(encodeJobRecord(s));
  ASSERT_TRUE(back.ok()) << back.error().message;
  EXPECT_EQ(back->status, s);
  EXPECT_FALSE(back->shim.has_value());
  EXPECT_EQ(back->version, kRecordVersion);

  JobStatus running;
  running.id = kId;
  running.owner = "alice";
  running.command = {"sleep", "1"};
  running.created_at_ms = 1;
  running.state = JobState::kRunning;
  JobRecord with_shim{running, RunningShim{{"0a1b2c3d-boot", 4242, 987654, "0::/jw/j"}, 2, 12345}};
  auto r = decodeJobRecord(encodeJobRecord(with_shim));
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r.value(), with_shim);
}

// The record a version-1 jobworkerd wrote (tests/integration/fixtures/state-v1 has real ones):
// the same fields without the shim part, read as a running job with no shim to take over.
TEST(JobRecord, VersionOneRecordsStillLoad) {
  JobStatus s = fullRecord();
  std::string v2 = encodeJobRecord(s);
  std::string v1 = v2.substr(0, v2.size() - 1);  // without the "no shim" byte
  v1[8] = 1;
  const uint32_t len = static_cast<uint32_t>(v1.size() - kRecordHeaderSize);
  for (int i = 0; i < 4; i++) v1[12 + i] = static_cast<char>(len >> (8 * i));
  auto r = decodeJobRecord(v1);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->status, s);
  EXPECT_EQ(r->version, 1u);
  EXPECT_FALSE(r->shim.has_value());
}

TEST(JobRecord, AShimOnAnEndedJobOrABadPidIsCorrupt) {
  JobRecord ended{fullRecord(), RunningShim{{"b", 7, 1, "0::/x"}, 2, 0}};
  EXPECT_FALSE(decodeJobRecord(encodeJobRecord(ended)).ok());
  JobStatus running = fullRecord();
  running.state = JobState::kRunning;
  running.has_exit_code = false;
  running.exit_code = 0;
  running.signal = 0;
  running.ended_at_ms = 0;
  JobRecord bad_pid{running, RunningShim{{"b", 0, 1, "0::/x"}, 2, 0}};
  EXPECT_FALSE(decodeJobRecord(encodeJobRecord(bad_pid)).ok());
  bad_pid.shim->identity.shim_pid = 7;
  EXPECT_TRUE(decodeJobRecord(encodeJobRecord(bad_pid)).ok());
}

TEST(JobRecord, EveryTruncationAndAnyTrailingByteIsCorrupt) {
  std::string bytes = encodeJobRecord(fullRecord());
  for (size_t n = 0; n < bytes.size(); n++) {
    auto r = decodeJobRecord(bytes.substr(0, n));
    ASSERT_FALSE(r.ok()) << "a record cut at " << n << " bytes decoded";
    EXPECT_EQ(r.error().kind, RecordError::kCorrupt);
  }
  EXPECT_FALSE(decodeJobRecord(bytes + '\0').ok());
  // The header's length agrees, the payload has a byte too many.
  std::string longer = bytes + 'x';
  longer[12] = static_cast<char>(longer[12] + 1);
  auto r = decodeJobRecord(longer);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("trailing"), std::string::npos) << r.error().message;
}

TEST(JobRecord, ANewerVersionIsRefusedAsSuchAndGarbageVersionsAsCorrupt) {
  std::string bytes = encodeJobRecord(fullRecord());
  std::string newer = bytes;
  newer[8] = static_cast<char>(kRecordVersion + 1);
  auto r = decodeJobRecord(newer);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().kind, RecordError::kNewerVersion);
  EXPECT_NE(r.error().message.find("newer"), std::string::npos);
  std::string garbage = bytes;
  garbage[11] = 0x40;
  r = decodeJobRecord(garbage);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().kind, RecordError::kCorrupt);
  std::string zero = bytes;
  zero[8] = 0;
  EXPECT_FALSE(decodeJobRecord(zero).ok());
  // A session record is not a job record.
  EXPECT_FALSE(decodeJobRecord(encodeSessionRecord({})).ok());
}

TEST(JobRecord, InconsistentFieldsAreCorrupt) {
  auto refused = [](void (*change)(JobStatus&)) {
    JobStatus s = fullRecord();
    change(s);
    auto r = decodeJobRecord(encodeJobRecord(s));
    return !r.ok() && r.error().kind == RecordError::kCorrupt;
  };
  EXPECT_TRUE(refused([](JobStatus& s) { s.id = "../../etc"; }));
  EXPECT_TRUE(refused([](JobStatus& s) { s.owner = "Alice"; }));
  EXPECT_TRUE(refused([](JobStatus& s) { s.command.clear(); }));
  EXPECT_TRUE(refused([](JobStatus& s) { s.ended_at_ms = 0; }));
  // Beyond year 9999: the frontend's time formatting would overflow.
  EXPECT_TRUE(refused([](JobStatus& s) { s.created_at_ms = int64_t{1} << 60; }));
  EXPECT_TRUE(refused([](JobStatus& s) { s.started_at_ms = -1; }));
  EXPECT_TRUE(refused([](JobStatus& s) { s.has_exit_code = false; }));
  EXPECT_TRUE(refused([](JobStatus& s) { s.exit_code = 256; }));
  EXPECT_TRUE(refused([](JobStatus& s) { s.run_as = "a:b"; }));
  EXPECT_TRUE(refused([](JobStatus& s) { s.output_truncated = false; }));
  EXPECT_TRUE(refused([](JobStatus& s) { s.usage.cpu_seconds = -1; }));
  EXPECT_TRUE(refused([](JobStatus& s) {
    s.state = JobState::kKilled;
    s.has_exit_code = false;
    s.exit_code = 0;
    s.signal = 0;
  }));
  EXPECT_TRUE(refused([](JobStatus& s) {
    s.output = protocol::OutputMode::kMerged;  // with stderr counts
  }));
}

TEST(SessionRecord, RoundTripsAndChecksItsFields) {
  SessionRecord s;
  for (size_t i = 0; i < s.hash.size(); i++) s.hash[i] = static_cast<uint8_t>(i * 7);
  s.password_tag[0] = 9;
  s.session = {"alice", 2000, 1000, 1500, "::1"};
  auto back = decodeSessionRecord(encodeSessionRecord(s));
  ASSERT_TRUE(back.ok()) << back.error().message;
  EXPECT_EQ(back.value(), s);
  std::string bytes = encodeSessionRecord(s);
  for (size_t n = 0; n < bytes.size(); n++) {
    EXPECT_FALSE(decodeSessionRecord(bytes.substr(0, n)).ok()) << n;
  }
  SessionRecord bad = s;
  bad.session.user = "no/slash";
  EXPECT_FALSE(decodeSessionRecord(encodeSessionRecord(bad)).ok());
  bad = s;
  bad.session.expires_at_ms = int64_t{1} << 60;
  EXPECT_FALSE(decodeSessionRecord(encodeSessionRecord(bad)).ok());
  bad = s;
  bad.session.expires_at_ms = bad.session.created_at_ms;
  EXPECT_FALSE(decodeSessionRecord(encodeSessionRecord(bad)).ok());
}

TEST(JobRecord, TheEndRecordFitsItsReserve) {
  JobStatus start = fullRecord();
  start.state = JobState::kRunning;
  start.has_exit_code = false;
  start.exit_code = 0;
  start.error = start.output_error = start.stderr_error = start.stopped_by = "";
  size_t reserve = endRecordReserve(encodeJobRecord(start).size());
  EXPECT_EQ(reserve % 4096, 0u);
  JobStatus end = fullRecord();
  end.state = JobState::kFailed;
  end.has_exit_code = false;
  end.exit_code = 0;
  end.error = std::string(protocol::kMaxMessage, 'e');
  end.output_error = end.stderr_error = std::string(protocol::kMaxMessage, 'o');
  end.stopped_by = std::string(protocol::kMaxUserName, 'u');
  EXPECT_LE(encodeJobRecord(end).size(), reserve);
}

// --- the state store ---------------------------------------------------------------------------

// A job directory as the supervisor makes one: the directory and its output log(s).
void makeJobDir(const TempDir& dir, const std::string& id, bool separate) {
  fs::create_directories(dir.path() + "/jobs/" + id);
  std::ofstream(dir.path() + "/jobs/" + id + "/output") << "out";
  if (separate) std::ofstream(dir.path() + "/jobs/" + id + "/stderr") << "err";
}

TEST(StateStore, SavesReservesAndLoadsJobsAndSessions) {
  TempDir dir;
  JobStatus job = fullRecord();
  {
    StateStore store(dir.path());
    ASSERT_TRUE(store.prepare().ok());
    makeJobDir(dir, kId, true);
    JobStatus start = job;
    start.state = JobState::kRunning;
    start.has_exit_code = false;
    start.exit_code = 0;
    ASSERT_TRUE(store.reserveEndRecord(start).ok());
    struct stat st {};
    ASSERT_EQ(stat((dir.path() + "/jobs/" + kId + "/" + kJobReserveFile).c_str(), &st), 0);
    EXPECT_GE(st.st_blocks * 512, 4096);  // allocated, not a sparse promise
    store.saveJob({start});
    store.saveEndRecord(job);
    EXPECT_FALSE(fs::exists(dir.path() + "/jobs/" + kId + "/" + kJobReserveFile));
    SessionRecord s;
    s.hash[0] = 1;
    s.session = {"alice", 9'000'000'000'000, 1000, 0, "127.0.0.1"};
    store.saveSession(s);
    SessionRecord old = s;
    old.hash[0] = 2;
    old.session.expires_at_ms = 2000;
    store.saveSession(old);
    SessionRecord gone = s;
    gone.hash[0] = 3;
    store.saveSession(gone);
    store.removeSession(gone.hash);
    store.flush();
  }
  StateStore again(dir.path());
  ASSERT_TRUE(again.prepare().ok());
  StateStore::Loaded loaded = again.load(true, 5000);
  ASSERT_EQ(loaded.jobs.size(), 1u);
  EXPECT_EQ(loaded.jobs[0].status, job);
  ASSERT_EQ(loaded.sessions.size(), 1u);  // the expired one is deleted, the removed one gone
  EXPECT_EQ(loaded.sessions[0].hash[0], 1);
  EXPECT_EQ(loaded.corrupt, 0u);
  size_t session_files = 0;
  for (const auto& e : fs::directory_iterator(dir.path() + "/sessions")) {
    (void)e;
    session_files++;
  }
  EXPECT_EQ(session_files, 1u);
}

TEST(StateStore, SetsAsideWhatItCannotReadAndTheCheckChangesNothing) {
  TempDir dir;
  StateStore store(dir.path());
  ASSERT_TRUE(store.prepare().ok());
  const std::string other = "1a1b2c3d-4e5f-4a6b-8c7d-8e9fa0b1c2d3";
  makeJobDir(dir, kId, true);
  makeJobDir(dir, other, true);
  store.saveEndRecord(fullRecord());
  store.saveEndRecord(fullRecord(other));
  // other's directory now holds kId's record.
  fs::copy_file(dir.path() + "/jobs/" + std::string(kId) + "/record",
                dir.path() + "/jobs/" + other + "/record", fs::copy_options::overwrite_existing);
  std::ofstream(dir.path() + "/jobs/stray") << "x";

  EXPECT_EQ(checkState(dir.path()), 0);
  StateStore::Loaded dry = store.load(false, 0);
  EXPECT_EQ(dry.jobs.size(), 1u);
  EXPECT_EQ(dry.corrupt, 2u);
  EXPECT_TRUE(fs::exists(dir.path() + "/jobs/stray"));  // a dry run moves nothing

  StateStore::Loaded loaded = store.load(true, 0);
  EXPECT_EQ(loaded.jobs.size(), 1u);
  EXPECT_EQ(loaded.corrupt, 2u);
  EXPECT_FALSE(fs::exists(dir.path() + "/jobs/stray"));
  EXPECT_FALSE(fs::exists(dir.path() + "/jobs/" + other));
  size_t aside = 0;
  for (const auto& e : fs::directory_iterator(dir.path() + "/corrupt")) {
    std::string n = e.path().filename().string();
    EXPECT_TRUE(n.rfind(other + "-", 0) == 0 || n.rfind("entry-", 0) == 0) << n;
    aside++;
  }
  EXPECT_EQ(aside, 2u);
  ASSERT_EQ(loaded.problems.size(), 2u);

  // A newer format: the check refuses to take the state over.
  std::string bytes =
      readFile(dir.path() + "/jobs/" + std::string(kId) + "/record", 1 << 20).value();
  bytes[8] = static_cast<char>(kRecordVersion + 1);
  std::ofstream(dir.path() + "/jobs/" + std::string(kId) + "/record", std::ios::binary) << bytes;
  EXPECT_EQ(checkState(dir.path()), 1);
  EXPECT_EQ(checkState(dir.path() + "/does-not-exist"), 1);
}

// The cost of a record write on the event loop (temp file, write, rename; fsync is the sync
// thread's), against the baseline of what every job start already does on the loop: create one
// empty output file. Printed, never asserted on a time (the disk is shared).
TEST(StateStore, RecordWriteCost) {
  TempDir dir;
  StateStore store(dir.path());
  ASSERT_TRUE(store.prepare().ok());
  makeJobDir(dir, kId, true);
  JobStatus job = fullRecord();
  constexpr int kWrites = 500;
  using Clock = std::chrono::steady_clock;
  auto usEach = [](Clock::time_point t0) {
    return std::chrono::duration<double, std::micro>(Clock::now() - t0).count() / kWrites;
  };
  auto t0 = Clock::now();
  for (int i = 0; i < kWrites; i++) {
    UniqueFd fd(open((dir.path() + "/baseline-" + std::to_string(i)).c_str(),
                     O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
    ASSERT_TRUE(fd);
  }
  double baseline = usEach(t0);
  t0 = Clock::now();
  for (int i = 0; i < kWrites; i++) {
    job.output_bytes = static_cast<uint64_t>(i);
    store.saveJob({job});
  }
  double record = usEach(t0);
  t0 = Clock::now();
  for (int i = 0; i < kWrites; i++) {
    JobStatus start = job;
    start.state = JobState::kRunning;
    ASSERT_TRUE(store.reserveEndRecord(start).ok());
  }
  double reserve = usEach(t0);
  auto t1 = Clock::now();
  store.flush();
  double flush_ms = std::chrono::duration<double, std::milli>(Clock::now() - t1).count();
  std::printf(
      "[ measure ] on the loop, %d each: record write %.1f us, end-record reserve %.1f us, "
      "baseline (create an empty output file) %.1f us: ratios %.2f and %.2f; "
      "fsync thread's final flush %.1f ms\n",
      kWrites, record, reserve, baseline, record / baseline, reserve / baseline, flush_ms);
  auto loaded = store.load(false, 0);
  ASSERT_EQ(loaded.jobs.size(), 1u);
  EXPECT_EQ(loaded.jobs[0].status.output_bytes, static_cast<uint64_t>(kWrites - 1));
}

// What a start spends loading the records of a full history: printed, never asserted.
TEST(StateStore, LoadCost) {
  TempDir dir;
  StateStore store(dir.path());
  ASSERT_TRUE(store.prepare().ok());
  constexpr int kJobs = 2000;
  for (int i = 0; i < kJobs; i++) {
    char id[40];
    std::snprintf(id, sizeof id, "%08x-0000-4000-8000-000000000000", i);
    makeJobDir(dir, id, false);
    JobStatus r = fullRecord(id);
    r.output = protocol::OutputMode::kMerged;
    r.stderr_bytes = 0;
    r.stderr_error = "";
    r.created_at_ms += i;
    store.saveEndRecord(r);
  }
  store.flush();
  StateStore again(dir.path());
  ASSERT_TRUE(again.prepare().ok());
  auto t0 = std::chrono::steady_clock::now();
  auto loaded = again.load(true, 0);
  double ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  ASSERT_EQ(loaded.jobs.size(), static_cast<size_t>(kJobs));
  EXPECT_EQ(loaded.corrupt, 0u);
  EXPECT_LT(loaded.jobs.front().status.created_at_ms,
            loaded.jobs.back().status.created_at_ms);  // oldest first
  std::printf("[ measure ] loading %d job records: %.1f ms (%.1f us each)\n", kJobs, ms,
              ms * 1000 / kJobs);
}

TEST(DurableFiles, AReserveIsFilledInPlaceAndRenamed) {
  TempDir dir;
  UniqueFd fd(open(dir.path().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  ASSERT_TRUE(fd);
  ASSERT_TRUE(createReserveAt(fd.get(), "r", 8192).ok());
  ASSERT_TRUE(fillReserveAt(fd.get(), "r", "final", "hello").ok());
  EXPECT_EQ(readFile(dir.path() + "/final", 100).value(), "hello");
  EXPECT_FALSE(fs::exists(dir.path() + "/r"));
  // Too small a reserve, or none: refused, nothing renamed.
  ASSERT_TRUE(createReserveAt(fd.get(), "small", 2).ok());
  EXPECT_FALSE(fillReserveAt(fd.get(), "small", "final", "longer").ok());
  EXPECT_FALSE(fillReserveAt(fd.get(), "missing", "final", "x").ok());
  EXPECT_EQ(readFile(dir.path() + "/final", 100).value(), "hello");
  ASSERT_TRUE(replaceFileAt(fd.get(), "final", "replaced").ok());
  EXPECT_EQ(readFile(dir.path() + "/final", 100).value(), "replaced");
  EXPECT_FALSE(fs::exists(dir.path() + "/final.tmp"));
}

// --- sessions and jobs -------------------------------------------------------------------------

TEST(SessionObserver, HearsEveryBeginningAndEveryEnd) {
  SessionStore store(10'000);
  std::map<SessionStore::Hash, std::string> seen;  // what the disk would hold
  store.setObserver([&](const SessionStore::Hash& h, const SessionStore::Session* s) {
    if (s != nullptr) {
      seen[h] = s->user;
    } else {
      seen.erase(h);
    }
  });
  auto a = store.mint("alice", "::1", 1000);
  store.mint("bob", "::1", 1000);
  auto c = store.mint("carol", "::1", 1000);
  EXPECT_EQ(seen.size(), 3u);
  store.revoke(a.token);
  store.revokeUser("bob");
  EXPECT_EQ(seen.size(), 1u);
  store.revokeId(SessionStore::idOf(SessionStore::hashToken(c.token)));
  EXPECT_TRUE(seen.empty());
  store.mint("dave", "::1", 1000);
  store.pruneExpired(1000 + 10'000);
  EXPECT_TRUE(seen.empty());
  store.mint("erin", "::1", 1000);
  store.removeUsersIf([](const std::string&) { return true; });
  EXPECT_TRUE(seen.empty());
  // A restored session is not written back.
  SessionStore::Hash h{};
  store.restore(h, {"frank", 50'000, 1000, 0, ""});
  EXPECT_TRUE(seen.empty());
  EXPECT_EQ(store.size(), 1u);
}

TEST(JobRestore, AnEndedRecordBecomesTheSameStatus) {
  TempDir dir;
  JobStatus r = fullRecord();
  makeJobDir(dir, kId, true);
  std::unique_ptr<Job> job = Job::restore(r);
  const std::string base = dir.path() + "/jobs/" + std::string(kId) + "/";
  job->streams[0].log =
      OutputLog::openStored(base + "output", r.output_dropped_bytes, r.output_error).value();
  job->streams[1].log =
      OutputLog::openStored(base + "stderr", r.stderr_dropped_bytes, r.stderr_error).value();
  EXPECT_TRUE(job->ended());
  JobStatus s = job->status();
  // What the files hold is what is served.
  r.output_bytes = 3;
  r.stderr_bytes = 3;
  EXPECT_EQ(s, r);
  EXPECT_EQ(job->streams[0].log->read(0, 100).value(), "out");
  EXPECT_FALSE(OutputLog::openStored(base + "missing", 0, "").ok());
}

}  // namespace
}  // namespace jw::supervisor
