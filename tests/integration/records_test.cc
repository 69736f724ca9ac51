// Integration tests of durable records, against the real jobworkerd over real HTTPS: a restart
// (SIGTERM or SIGKILL) keeps finished jobs (status, list, output), sessions and revocations;
// retention stays per owner; damaged records are set aside while the daemon serves; a full disk
// cannot lose a job's end record; --check-state reads a state dir without changing it. Runs in
// the test process, as root.
#include <gtest/gtest.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "tests/integration/daemon.h"

namespace jw::test {
namespace {

namespace fs = std::filesystem;

// A state dir that outlives the daemons started on it, removed at the end of the test. Each
// daemon's destructor would empty it, so the daemons stay alive (stopped) until then.
class SharedState {
 public:
  // dir: an existing directory to use (a mounted tmpfs), left to the caller; "": a temp dir.
  explicit SharedState(std::string dir = "")
      : dir_(dir.empty() ? makeTempDir("jwrecords") : std::move(dir)), own_(dir_.empty()) {}
  ~SharedState() {
    daemons_.clear();  // newest first: each empties the dir
    if (own_) removeTree(dir_);
  }
  SharedState(const SharedState&) = delete;
  SharedState& operator=(const SharedState&) = delete;

  Daemon& start(std::string config_text = "") {
    Daemon::Options o;
    o.state_dir = dir_;
    o.config_text = std::move(config_text);
    daemons_.insert(daemons_.begin(), Daemon::start(o));
    return *daemons_.front();
  }
  const std::string& dir() const { return dir_; }

 private:
  std::string dir_;
  bool own_;
  std::vector<std::unique_ptr<Daemon>> daemons_;  // front: the newest
};

std::string stateOf(const Daemon& d, const std::string& token, const std::string& id) {
  return jsonField(https(d, "GET", "/v1/jobs/" + id, "", token).body, "state");
}

std::string logsOf(const Daemon& d, const std::string& token, const std::string& id,
                   const std::string& stream = "") {
  HttpResponse r = https(d, "GET", "/v1/jobs/" + id + "/logs" + stream, "", token);
  EXPECT_EQ(r.status, 200) << r.body;
  return r.body;
}

// FNV-1a: a short name for a log in the printed figures (the test compares the bytes).
uint64_t fnv1a(const std::string& s) {
  uint64_t h = 1469598103934665603ULL;
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ULL;
  return h;
}

size_t filesIn(const std::string& dir) {
  size_t n = 0;
  std::error_code ec;
  for (auto it = fs::directory_iterator(dir, ec); !ec && it != fs::directory_iterator(); ++it) n++;
  return n;
}

struct Finished {
  std::string id, status, output, stderr_output;
};

// What survives a restart, for both ways a daemon ends.
void restartKeepsEverything(bool crash) {
  SharedState state;
  Daemon& d1 = state.start();
  d1.addUser("alice", "user", "alice-password-1");
  std::string admin = login(d1, "admin", d1.adminPassword());
  std::string alice = login(d1, "alice", "alice-password-1");
  std::string revoked = login(d1, "alice", "alice-password-1");
  ASSERT_EQ(https(d1, "POST", "/v1/logout", "", revoked).status, 204);

  std::vector<Finished> done;
  for (const std::string& body :
       {std::string(R"({"command":["sh","-c","seq 1 30000; echo to-stderr >&2; exit 3"]})"),
        std::string(R"({"command":["sh","-c","printf out; printf err >&2"],"output":"separate"})"),
        std::string(R"({"command":["sh","-c","kill -9 $$"]})")}) {
    done.push_back({startJob(d1, alice, body), "", "", ""});
  }
  std::string stopped = startJob(d1, alice, R"({"command":["sleep","1000"]})");
  ASSERT_EQ(https(d1, "POST", "/v1/jobs/" + stopped + "/stop", "", alice).status, 202);
  done.push_back({stopped, "", "", ""});
  for (auto& f : done) {
    f.status = waitJob(d1, alice, f.id);
    f.output = logsOf(d1, alice, f.id);
    if (f.status.find(R"("output":"separate")") != std::string::npos) {
      f.stderr_output = logsOf(d1, alice, f.id, "?stream=stderr");
    }
  }
  EXPECT_EQ(jsonField(done[0].status, "exit_code"), "3");
  EXPECT_EQ(jsonField(done[2].status, "signal"), "9");
  EXPECT_EQ(jsonField(done[3].status, "stopped_by"), "alice");
  // Running through the restart: stopped by the shutdown, or taken over after the crash.
  std::string running = startJob(d1, admin, R"({"command":["sh","-c","echo before; sleep 1000"]})");
  ASSERT_TRUE(waitUntil([&] { return logsOf(d1, admin, running) == "before\n"; },
                        std::chrono::seconds(30)));

  if (crash) {
    EXPECT_EQ(d1.crash(), 128 + 9);
  } else {
    EXPECT_EQ(d1.stop(), 0);
  }
  auto t0 = std::chrono::steady_clock::now();
  Daemon& d2 = state.start();
  std::printf(
      "[ measure ] restart after %s: healthy %.0f ms after the start\n",
      crash ? "SIGKILL" : "SIGTERM",
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());

  // The session from before works; the revoked one stays revoked.
  EXPECT_EQ(https(d2, "GET", "/v1/whoami", "", alice).status, 200);
  EXPECT_EQ(https(d2, "GET", "/v1/whoami", "", revoked).status, 401);
  // Finished jobs: the same status JSON, field for field (no field of an ended job changes),
  // and the same output.
  for (const auto& f : done) {
    EXPECT_EQ(https(d2, "GET", "/v1/jobs/" + f.id, "", alice).body, f.status);
    std::string out = logsOf(d2, alice, f.id);
    EXPECT_EQ(out, f.output) << f.id;
    if (!f.stderr_output.empty()) {
      EXPECT_EQ(logsOf(d2, alice, f.id, "?stream=stderr"), f.stderr_output);
    }
    std::printf("[ measure ] job %s: %zu output bytes, fnv1a %016llx before and after\n",
                f.id.c_str(), out.size(), static_cast<unsigned long long>(fnv1a(out)));
  }
  std::string list = https(d2, "GET", "/v1/jobs", "", alice).body;
  for (const auto& f : done) EXPECT_NE(list.find(f.id), std::string::npos) << list;
  EXPECT_EQ(list.find(running), std::string::npos) << "alice sees the admin's job";

  std::string r = https(d2, "GET", "/v1/jobs/" + running, "", admin).body;
  if (crash) {
    // Its shim outlived jobworkerd: the new one took it over (adopt_test.cc has the details).
    EXPECT_EQ(jsonField(r, "state"), "running") << r;
    HttpResponse stop = https(d2, "POST", "/v1/jobs/" + running + "/stop", "", admin);
    EXPECT_EQ(stop.status, 202) << stop.body;
    r = waitJob(d2, admin, running);
    EXPECT_EQ(jsonField(r, "state"), "killed") << r;
    EXPECT_EQ(jsonField(r, "stopped_by"), "admin") << r;
  } else {
    EXPECT_EQ(jsonField(r, "state"), "killed") << r;
    EXPECT_EQ(jsonField(r, "stopped_by"), "shutdown") << r;
  }
  EXPECT_EQ(logsOf(d2, admin, running), "before\n");

  // New jobs work and get new ids.
  std::string fresh = startJob(d2, alice, R"({"command":["true"]})");
  for (const auto& f : done) EXPECT_NE(fresh, f.id);
  EXPECT_EQ(jsonField(waitJob(d2, alice, fresh), "state"), "exited");
}

TEST(Records, AGracefulRestartKeepsJobsOutputAndSessions) { restartKeepsEverything(false); }

TEST(Records, ARestartAfterSigkillKeepsJobsOutputAndSessions) { restartKeepsEverything(true); }

TEST(Records, SessionsExpireAcrossRestartsAndLeaveNoRecord) {
  SharedState state;
  const std::string conf = "session_ttl = 3s\n";
  Daemon& d1 = state.start(conf);
  std::string token = login(d1, "admin", d1.adminPassword());
  EXPECT_EQ(filesIn(state.dir() + "/sessions"), 1u);
  d1.stop();
  Daemon& d2 = state.start(conf);
  EXPECT_EQ(https(d2, "GET", "/v1/whoami", "", token).status, 200);
  // A loaded session expires like any other.
  EXPECT_TRUE(waitUntil([&] { return https(d2, "GET", "/v1/whoami", "", token).status == 401; },
                        std::chrono::seconds(30)));
  d2.stop();
  Daemon& d3 = state.start(conf);
  EXPECT_EQ(https(d3, "GET", "/v1/whoami", "", token).status, 401);
  EXPECT_EQ(filesIn(state.dir() + "/sessions"), 0u) << "an expired session's record stayed";
}

TEST(Records, ASessionOfARemovedUserEndsAtTheNextStart) {
  SharedState state;
  Daemon& d1 = state.start();
  d1.addUser("carol", "user", "carol-password-1");
  std::string carol = login(d1, "carol", "carol-password-1");
  d1.stop();
  CmdResult del =
      run({binary("jobworker-admin"), "user", "del", "--users-file", d1.usersFile(), "carol"});
  ASSERT_EQ(del.exit_code, 0) << del.err;
  Daemon& d2 = state.start();
  EXPECT_EQ(https(d2, "GET", "/v1/whoami", "", carol).status, 401);
  EXPECT_EQ(filesIn(state.dir() + "/sessions"), 0u);
}

TEST(Records, RetentionStaysPerOwnerAfterARestart) {
  SharedState state;
  const std::string conf = "retention_count = 3\n";
  Daemon& d1 = state.start(conf);
  d1.addUser("alice", "user", "alice-password-1");
  d1.addUser("bob", "user", "bob-password-1");
  std::string alice = login(d1, "alice", "alice-password-1");
  std::string bob = login(d1, "bob", "bob-password-1");
  std::string bobs = startJob(d1, bob, R"({"command":["echo","bob's"]})");
  waitJob(d1, bob, bobs);
  for (int i = 0; i < 3; i++) waitJob(d1, alice, startJob(d1, alice, R"({"command":["true"]})"));
  d1.stop();
  Daemon& d2 = state.start(conf);
  for (int i = 0; i < 4; i++) waitJob(d2, alice, startJob(d2, alice, R"({"command":["true"]})"));
  std::string list = https(d2, "GET", "/v1/jobs", "", alice).body;
  size_t alices = 0;
  for (size_t at = list.find(R"("owner":"alice")"); at != std::string::npos;
       at = list.find(R"("owner":"alice")", at + 1)) {
    alices++;
  }
  EXPECT_EQ(alices, 3u) << list;
  EXPECT_EQ(stateOf(d2, bob, bobs), "exited");
  EXPECT_EQ(logsOf(d2, bob, bobs), "bob's\n");
  EXPECT_EQ(filesIn(state.dir() + "/jobs"), 4u);
}

// --- damaged records ---------------------------------------------------------------------------

std::string fileBytes(const std::string& path) { return readFile(path); }

void writeBytes(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
}

// A fresh, valid, unused job id.
std::string newId(std::mt19937_64& rng) {
  static const char* hex = "0123456789abcdef";
  std::string id;
  for (int i = 0; i < 32; i++) {
    if (i == 8 || i == 12 || i == 16 || i == 20) id += '-';
    char c = hex[rng() % 16];
    if (i == 12) c = '4';
    if (i == 16) c = "89ab"[rng() % 4];
    id += c;
  }
  return id;
}

// A copy of the good job's directory under a new id, with `record` as its record.
void plantJob(const std::string& jobs, const std::string& good, const std::string& id,
              const std::string& record) {
  fs::copy(jobs + "/" + good, jobs + "/" + id, fs::copy_options::recursive);
  writeBytes(jobs + "/" + id + "/record", record);
}

// The record format's header is 16 bytes; the id's u32 length then its 36 bytes follow.
constexpr size_t kIdOffset = 16 + 4;

std::string withId(std::string record, const std::string& id) {
  return record.replace(kIdOffset, id.size(), id);
}

std::string listing(const std::string& dir) {
  std::string out;
  for (const auto& e : fs::recursive_directory_iterator(dir)) {
    out += e.path().string() + " " +
           (e.is_regular_file() ? std::to_string(fs::file_size(e.path())) : "-") + "\n";
  }
  return out;
}

TEST(Records, DamagedRecordsAreSetAsideAndTheDaemonServes) {
  SharedState state;
  Daemon& d1 = state.start();
  std::string admin = login(d1, "admin", d1.adminPassword());
  std::string good = startJob(d1, admin, R"({"command":["echo","good"]})");
  std::string good_status = waitJob(d1, admin, good);
  d1.stop();

  const std::string jobs = state.dir() + "/jobs";
  const std::string record = fileBytes(jobs + "/" + good + "/record");
  ASSERT_GT(record.size(), kIdOffset + 36);
  ASSERT_EQ(record.substr(kIdOffset, 36), good);
  std::mt19937_64 rng(20261202);
  std::set<std::string> bad;  // names that must end up in corrupt/
  auto plantBad = [&](const std::string& rec) {
    std::string id = newId(rng);
    plantJob(jobs, good, id, rec);
    bad.insert(id);
    return id;
  };
  plantBad(record);  // another job's record (the id inside is the good one's)
  std::string truncated = withId(record, newId(rng));
  for (size_t cut : {size_t{0}, size_t{7}, size_t{15}, size_t{40}, record.size() - 1}) {
    plantBad(truncated.substr(0, cut));
  }
  plantBad(withId(record, newId(rng)).replace(0, 4, "XXXX"));  // bad magic
  plantBad(withId(record, newId(rng)) + "trailing");
  {
    std::string id = newId(rng);
    std::string versioned = withId(record, id);
    versioned[8] = 9;  // format version 9
    plantJob(jobs, good, id, versioned);
    // planted below, after the first check: it makes --check-state refuse
    fs::rename(jobs + "/" + id, state.dir() + "/newer-" + id);
  }
  {
    std::string id = newId(rng);  // no output file
    plantJob(jobs, good, id, withId(record, id));
    fs::remove(jobs + "/" + id + "/output");
    bad.insert(id);
  }
  {
    std::string id = newId(rng);  // a directory without a record
    fs::create_directory(jobs + "/" + id);
    bad.insert(id);
  }
  {
    std::string id = newId(rng);  // a record that is a symlink
    plantJob(jobs, good, id, "");
    fs::remove(jobs + "/" + id + "/record");
    fs::create_symlink(jobs + "/" + good + "/record", jobs + "/" + id + "/record");
    bad.insert(id);
  }
  {
    std::string id = newId(rng);  // a job directory that is a symlink
    fs::create_directory_symlink(jobs + "/" + good, jobs + "/" + id);
    bad.insert(id);
  }
  {
    std::string id = newId(rng);  // a plain file
    writeBytes(jobs + "/" + id, record);
    bad.insert(id);
  }
  writeBytes(jobs + "/not-a-job", record);
  writeBytes(state.dir() + "/sessions/" + std::string(64, 'a'), "garbage");
  // Fuzz-ish: the good record under a new id with one random byte changed after the id. Each
  // either loads (a harmless field changed) or is set aside; none may crash the daemon.
  std::vector<std::string> mutants;
  for (int i = 0; i < 40; i++) {
    std::string id = newId(rng);
    std::string m = withId(record, id);
    size_t at = kIdOffset + 36 + rng() % (m.size() - kIdOffset - 36);
    m[at] = static_cast<char>(m[at] ^ (1 + rng() % 255));
    plantJob(jobs, good, id, m);
    mutants.push_back(id);
  }

  // The dry run: counts, exit 0, nothing changed.
  std::string before = listing(state.dir());
  CmdResult check = run({binary("jobworkerd"), "--check-state", state.dir()});
  EXPECT_EQ(check.exit_code, 0) << check.out << check.err;
  EXPECT_NE(check.out.find("sessions: 1 live"), std::string::npos) << check.out;  // admin's
  std::printf("[ measure ] --check-state:\n%s", check.out.substr(0, check.out.find("  ")).c_str());
  EXPECT_EQ(listing(state.dir()), before) << "--check-state changed the state dir";
  // A record of a newer format: this version cannot take the state over.
  std::string newer;
  for (const auto& e : fs::directory_iterator(state.dir())) {
    std::string n = e.path().filename().string();
    if (n.rfind("newer-", 0) == 0) newer = n.substr(6);
  }
  ASSERT_FALSE(newer.empty());
  fs::rename(state.dir() + "/newer-" + newer, jobs + "/" + newer);
  bad.insert(newer);
  CmdResult refused = run({binary("jobworkerd"), "--check-state", state.dir()});
  EXPECT_EQ(refused.exit_code, 1) << refused.out << refused.err;
  EXPECT_NE(refused.err.find("newer jobworkerd"), std::string::npos) << refused.err;

  // The daemon starts, serves the good job unchanged and sets the damage aside.
  Daemon& d2 = state.start();
  admin = login(d2, "admin", d2.adminPassword());
  EXPECT_EQ(https(d2, "GET", "/v1/jobs/" + good, "", admin).body, good_status);
  EXPECT_EQ(logsOf(d2, admin, good), "good\n");
  std::set<std::string> kept;
  for (const auto& e : fs::directory_iterator(jobs)) kept.insert(e.path().filename().string());
  EXPECT_TRUE(kept.contains(good));
  for (const auto& id : bad) EXPECT_FALSE(kept.contains(id)) << id << " was not set aside";
  EXPECT_FALSE(kept.contains("not-a-job"));
  size_t aside = filesIn(state.dir() + "/corrupt");
  size_t mutants_kept = 0;
  for (const auto& id : mutants) {
    if (!kept.contains(id)) continue;
    mutants_kept++;
    // A loaded mutant is served like any job.
    EXPECT_EQ(https(d2, "GET", "/v1/jobs/" + id, "", admin).status, 200) << id;
  }
  EXPECT_EQ(aside, bad.size() + 2 + (mutants.size() - mutants_kept));
  std::printf("[ measure ] %zu damaged entries set aside; of %zu one-byte mutants %zu loaded\n",
              aside, mutants.size(), mutants_kept);
  EXPECT_NE(d2.log().find("record(s) set aside"), std::string::npos);
  EXPECT_EQ(jsonField(waitJob(d2, admin, startJob(d2, admin, R"({"command":["true"]})")), "state"),
            "exited");
}

// --- a full disk -------------------------------------------------------------------------------

// A small tmpfs as the state dir, mounted by the test.
class SmallDisk {
 public:
  SmallDisk() : dir_(makeTempDir("jwrecords-tmpfs")) {
    mounted_ =
        mount("jwtest", dir_.c_str(), "tmpfs", MS_NOSUID | MS_NODEV, "size=16m,mode=0700") == 0;
    if (!mounted_) ADD_FAILURE() << "mount tmpfs on " << dir_ << ": " << std::strerror(errno);
  }
  ~SmallDisk() {
    if (mounted_ && umount2(dir_.c_str(), MNT_DETACH) != 0) {
      ADD_FAILURE() << "umount " << dir_ << ": " << std::strerror(errno);
    }
    rmdir(dir_.c_str());
  }
  SmallDisk(const SmallDisk&) = delete;
  SmallDisk& operator=(const SmallDisk&) = delete;
  const std::string& path() const { return dir_; }
  bool mounted() const { return mounted_; }

 private:
  std::string dir_;
  bool mounted_ = false;
};

// Fills the filesystem of `path` to its last byte; returns the bytes written.
size_t fillDisk(const std::string& path) {
  std::ofstream f(path, std::ios::binary);
  std::string block(4096, 'f');
  size_t written = 0;
  while (f.write(block.data(), static_cast<std::streamsize>(block.size())) && f.flush()) {
    written += block.size();
  }
  return written;
}

TEST(Records, AFullDiskCannotLoseAnEndRecord) {
  SmallDisk disk;
  ASSERT_TRUE(disk.mounted());
  const std::string signal = "/var/tmp/jwrecords-go-" + std::to_string(getpid());
  std::remove(signal.c_str());
  const std::string conf = "state_reserve = 1M\n";
  SharedState state(disk.path());
  Daemon& d1 = state.start(conf);
  std::string t = login(d1, "admin", d1.adminPassword());
  std::string id = startJob(
      d1, t,
      R"({"command":["sh","-c","while [ ! -e )" + signal + R"( ]; do sleep 0.05; done; exit 7"]})");
  ASSERT_EQ(stateOf(d1, t, id), "running");
  const std::string filler = disk.path() + "/filler";
  size_t filled = fillDisk(filler);
  std::printf("[ measure ] filled the state tmpfs with %zu bytes\n", filled);
  // Nothing but the reserve is left for the end record.
  std::ofstream(signal) << "go";
  std::string status = waitJob(d1, t, id);
  std::remove(signal.c_str());
  EXPECT_EQ(jsonField(status, "exit_code"), "7") << status;
  EXPECT_EQ(d1.stop(), 0);
  // On disk, read by a dry run while the disk is still full.
  CmdResult check = run({binary("jobworkerd"), "--check-state", disk.path()});
  EXPECT_EQ(check.exit_code, 0) << check.err;
  EXPECT_NE(check.out.find("jobs: 1 (exited 1, killed 0, failed 0, running 0)"), std::string::npos)
      << check.out;
  // Space returns; the next daemon serves the job as it ended.
  std::remove(filler.c_str());
  Daemon& d2 = state.start(conf);
  EXPECT_EQ(https(d2, "GET", "/v1/jobs/" + id, "", t).body, status);
}

// A start while the disk cannot hold the job's end record is refused, never run unrecorded.
TEST(Records, AStartWithoutRoomForItsEndRecordIsRefused) {
  SmallDisk disk;
  ASSERT_TRUE(disk.mounted());
  SharedState state(disk.path());
  Daemon& d = state.start("state_reserve = 0\n");
  std::string t = login(d, "admin", d.adminPassword());
  fillDisk(disk.path() + "/filler");
  HttpResponse r = https(d, "POST", "/v1/jobs", R"({"command":["true"]})", t);
  EXPECT_EQ(r.status, 507) << r.body;
  std::remove((disk.path() + "/filler").c_str());
  EXPECT_EQ(jsonField(waitJob(d, t, startJob(d, t, R"({"command":["true"]})")), "state"), "exited");
}

}  // namespace
}  // namespace jw::test
