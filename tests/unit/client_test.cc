// Unit tests of the jobworker CLI and its client library (no server needed): argument grammar,
// durations and sizes, job request JSON, prefix resolution, exit statuses, the config file and
// its permission checks, the chunked decoder, URL and TLS set-up errors.
#include <Poco/DateTimeFormatter.h>
#include <Poco/JSON/Array.h>
#include <Poco/JSON/Parser.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "client/api_client.h"
#include "client/chunked_decoder.h"
#include "client/cli.h"
#include "client/cli_args.h"
#include "client/cli_config.h"
#include "client/completion.h"
#include "client/job_ref.h"
#include "client/output_format.h"

namespace jw::client {
namespace {

namespace fs = std::filesystem;

ParseOutcome parse(const std::vector<std::string>& args) { return parseCommandLine(args); }

std::string jsonText(const Poco::JSON::Object::Ptr& o) {
  std::ostringstream os;
  o->stringify(os);
  return os.str();
}

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/jwclienttestXXXXXX";
    path_ = mkdtemp(tmpl);
  }
  ~TempDir() { fs::remove_all(path_); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// ---- argument grammar -----------------------------------------------------------------------

TEST(CliArgs, StartTakesFlagsThenProgramAfterDashDash) {
  auto p = parse({"start",
                  "--env",
                  "A=1",
                  "-e",
                  "B=2",
                  "--env=C=x=y",
                  "--cwd",
                  "/tmp",
                  "--timeout",
                  "500ms",
                  "--separate-stderr",
                  "--cpu",
                  "0.5",
                  "--memory",
                  "256M",
                  "--pids",
                  "64",
                  "--network",
                  "host",
                  "--",
                  "sh",
                  "-c",
                  "echo --env"});
  ASSERT_FALSE(p.usage_error) << *p.usage_error;
  EXPECT_EQ(p.inv.command, Command::kStart);
  EXPECT_EQ(p.inv.spec.command, (std::vector<std::string>{"sh", "-c", "echo --env"}));
  EXPECT_EQ(p.inv.spec.env, (std::vector<std::string>{"A=1", "B=2", "C=x=y"}));
  EXPECT_EQ(p.inv.spec.cwd, "/tmp");
  EXPECT_EQ(p.inv.spec.timeout_ms, 500u);
  EXPECT_TRUE(p.inv.spec.separate_stderr);
  EXPECT_EQ(p.inv.spec.cpu_millicores, 500u);
  EXPECT_EQ(p.inv.spec.memory_bytes, 256ull << 20);
  EXPECT_EQ(p.inv.spec.pids, 64u);
  EXPECT_EQ(p.inv.spec.network, "host");
}

TEST(CliArgs, FlagsAfterDashDashBelongToTheProgram) {
  auto p = parse({"run", "--", "ls", "--help", "-la"});
  ASSERT_FALSE(p.usage_error);
  EXPECT_FALSE(p.inv.help);
  EXPECT_EQ(p.inv.spec.command, (std::vector<std::string>{"ls", "--help", "-la"}));
}

TEST(CliArgs, MissingDashDashIsAUsageError) {
  auto start = parse({"start", "sh", "-c", "true"});
  ASSERT_TRUE(start.usage_error);
  EXPECT_NE(start.usage_error->find("missing '--' before the program 'sh'"), std::string::npos);
  EXPECT_EQ(usageExitCode(start.inv.command), 2);
  auto run = parse({"run", "--env", "A=1", "echo", "hi"});
  ASSERT_TRUE(run.usage_error);
  EXPECT_NE(run.usage_error->find("missing '--'"), std::string::npos);
  // docker run's convention: every failure of run itself is 125.
  EXPECT_EQ(usageExitCode(run.inv.command), 125);
  auto empty = parse({"run", "--"});
  ASSERT_TRUE(empty.usage_error);
  EXPECT_NE(empty.usage_error->find("missing program"), std::string::npos);
}

TEST(CliArgs, IdCommandsNeedTheirIds) {
  auto missing = parse({"status"});
  ASSERT_TRUE(missing.usage_error);
  EXPECT_NE(missing.usage_error->find("missing job ID"), std::string::npos);
  auto extra = parse({"logs", "abc", "def"});
  ASSERT_TRUE(extra.usage_error);
  EXPECT_NE(extra.usage_error->find("unexpected argument 'def'"), std::string::npos);
  // status, stop, wait and rm take several.
  for (const char* cmd : {"status", "stop", "wait", "rm"}) {
    auto several = parse({cmd, "abc", "build", "def"});
    ASSERT_FALSE(several.usage_error) << cmd << ": " << *several.usage_error;
    EXPECT_EQ(several.inv.jobs, (std::vector<std::string>{"abc", "build", "def"}));
  }
  auto wait = parse({"wait", "--timeout", "5s", "a"});
  ASSERT_FALSE(wait.usage_error) << *wait.usage_error;
  EXPECT_EQ(wait.inv.wait_timeout_ms, 5000u);
  EXPECT_FALSE(wait.inv.spec.timeout_ms);
  auto logs = parse({"logs", "3f2a", "-f", "--stream", "stderr"});
  ASSERT_FALSE(logs.usage_error) << *logs.usage_error;
  EXPECT_EQ(logs.inv.job, "3f2a");
  EXPECT_TRUE(logs.inv.follow);
  EXPECT_EQ(logs.inv.stream, "stderr");
  auto stop = parse({"stop", "--grace", "2m", "abcd"});
  ASSERT_FALSE(stop.usage_error);
  EXPECT_EQ(stop.inv.grace_ms, 120000u);
  EXPECT_EQ(stop.inv.job, "abcd");
}

TEST(CliArgs, UnknownAndAbbreviatedFlagsAreRejected) {
  auto unknown = parse({"list", "--bogus"});
  ASSERT_TRUE(unknown.usage_error);
  EXPECT_EQ(*unknown.usage_error, "unknown flag '--bogus'");
  // Poco would accept "--sep" for --separate-stderr; a script relying on it would break the day a
  // second flag starts with "sep".
  auto abbrev = parse({"start", "--sep", "--", "true"});
  ASSERT_TRUE(abbrev.usage_error);
  EXPECT_NE(abbrev.usage_error->find("unknown flag '--sep'"), std::string::npos);
  auto short_unknown = parse({"logs", "-z", "id"});
  ASSERT_TRUE(short_unknown.usage_error);
  auto needs_value = parse({"list", "--state"});
  ASSERT_TRUE(needs_value.usage_error);
  EXPECT_NE(needs_value.usage_error->find("needs a value"), std::string::npos);
  auto no_value = parse({"logs", "--follow=yes", "id"});
  ASSERT_TRUE(no_value.usage_error);
  auto twice = parse({"--server", "a", "list", "--output", "json", "--output", "json"});
  ASSERT_TRUE(twice.usage_error);
  EXPECT_NE(twice.usage_error->find("more than once"), std::string::npos);
}

TEST(CliArgs, UnknownOrMissingCommand) {
  auto unknown = parse({"frobnicate"});
  ASSERT_TRUE(unknown.usage_error);
  EXPECT_EQ(*unknown.usage_error, "unknown command 'frobnicate'");
  auto none = parse({});
  ASSERT_TRUE(none.usage_error);
  EXPECT_EQ(*none.usage_error, "missing command");
}

TEST(CliArgs, GlobalFlagsBeforeOrAfterTheCommand) {
  auto before = parse({"--server", "https://h:1", "-o", "json", "list", "--all"});
  ASSERT_FALSE(before.usage_error);
  EXPECT_EQ(before.inv.server, "https://h:1");
  EXPECT_EQ(before.inv.output, OutputFormat::kJson);
  EXPECT_TRUE(before.inv.all);
  auto after = parse({"status", "--ca-file=/x.pem", "--output=json", "abc"});
  ASSERT_FALSE(after.usage_error);
  EXPECT_EQ(after.inv.ca_file, "/x.pem");
  EXPECT_EQ(after.inv.output, OutputFormat::kJson);
  EXPECT_EQ(parse({"list", "-o", "yaml"}).inv.output, OutputFormat::kYaml);
  EXPECT_EQ(parse({"list", "-owide"}).inv.output, OutputFormat::kWide);
  EXPECT_EQ(parse({"status", "-o", "name", "x"}).inv.output, OutputFormat::kName);
  auto bad = parse({"list", "--output", "xml"});
  ASSERT_TRUE(bad.usage_error);
  EXPECT_NE(bad.usage_error->find("use human, json, yaml, wide or name"), std::string::npos);
}

TEST(CliArgs, HelpAndVersion) {
  auto h = parse({"logs", "--help"});
  ASSERT_FALSE(h.usage_error);
  EXPECT_TRUE(h.inv.help);
  EXPECT_EQ(h.inv.command, Command::kLogs);
  auto h2 = parse({"run", "-h"});  // help wins over the missing "--"
  ASSERT_FALSE(h2.usage_error);
  EXPECT_TRUE(h2.inv.help);
  auto topic = parse({"help", "stop"});
  ASSERT_FALSE(topic.usage_error);
  EXPECT_EQ(topic.inv.help_topic, Command::kStop);
  auto v = parse({"--version"});
  ASSERT_FALSE(v.usage_error);
  EXPECT_TRUE(v.inv.version);
  EXPECT_NE(helpText(Command::kLogs).find("--follow"), std::string::npos);
  EXPECT_NE(helpText(Command::kRun).find("--io-write-iops DEV=N"), std::string::npos);
  for (const char* cmd :
       {"login", "logout", "whoami", "start", "run", "stop", "status", "list", "logs"}) {
    EXPECT_NE(helpText(Command::kNone).find(std::string("  ") + cmd + " "), std::string::npos)
        << cmd;
  }
}

TEST(CliArgs, DurationsAndSizesAreValidated) {
  EXPECT_EQ(parse({"stop", "--grace", "10s", "x"}).inv.grace_ms, 10000u);
  EXPECT_EQ(parse({"stop", "--grace", "1h", "x"}).inv.grace_ms, 3600000u);
  EXPECT_EQ(parse({"stop", "--grace", "7", "x"}).inv.grace_ms, 7000u);  // bare number: seconds
  for (const char* bad : {"10x", "", "s", "-1s", "1.5s"}) {
    auto p = parse({"stop", "--grace", bad, "x"});
    ASSERT_TRUE(p.usage_error) << bad;
    EXPECT_NE(p.usage_error->find("bad --grace"), std::string::npos) << *p.usage_error;
  }
  EXPECT_TRUE(parse({"run", "--timeout", "0", "--", "true"}).usage_error);
  EXPECT_EQ(parse({"run", "--memory", "1G", "--", "true"}).inv.spec.memory_bytes, 1ull << 30);
  EXPECT_EQ(parse({"run", "--memory", "512k", "--", "true"}).inv.spec.memory_bytes, 512ull << 10);
  EXPECT_TRUE(parse({"run", "--memory", "lots", "--", "true"}).usage_error);
  EXPECT_TRUE(parse({"run", "--cpu", "-1", "--", "true"}).usage_error);
  EXPECT_TRUE(parse({"run", "--pids", "0", "--", "true"}).usage_error);
  EXPECT_TRUE(parse({"run", "--network", "bridge", "--", "true"}).usage_error);
  EXPECT_TRUE(parse({"list", "--state", "sleeping"}).usage_error);
  EXPECT_TRUE(parse({"logs", "--stream", "both", "x"}).usage_error);
  EXPECT_TRUE(parse({"run", "--io-read-bps", "10M", "--", "true"}).usage_error);  // no device
}

TEST(CliArgs, JobRequestJson) {
  auto p = parse({"run",         "-e",
                  "A=1",         "-e",
                  "HOME",        "--timeout",
                  "2s",          "--cpu",
                  "1.5",         "--memory",
                  "1M",          "--pids",
                  "8",           "--io-read-bps",
                  "8:0=10M",     "--io-write-iops",
                  "8:0=100",     "--io-write-bps",
                  "/dev/sdb=1K", "--separate-stderr",
                  "--network",   "none",
                  "--",          "prog",
                  "arg"});
  ASSERT_FALSE(p.usage_error) << *p.usage_error;
  auto env = [](const char* name) -> const char* {
    return std::string(name) == "HOME" ? "/home/me" : nullptr;
  };
  auto body = buildJobRequest(p.inv.spec, env);
  ASSERT_TRUE(body) << body.error().message;
  EXPECT_EQ(jsonText(body.value()),
            "{\"command\":[\"prog\",\"arg\"],\"env\":{\"A\":\"1\",\"HOME\":\"/home/me\"},"
            "\"timeout_s\":2,\"output\":\"separate\",\"limits\":{\"cpu\":1.5,\"memory\":1048576,"
            "\"pids\":8,\"io\":[{\"device\":\"/dev/sdb\",\"write_bps\":1024},{\"device\":\"8:0\","
            "\"read_bps\":10485760,\"write_iops\":100}]},\"network\":\"none\"}");
  // A sub-second timeout is sent as a fraction, not rounded to 0 or 1.
  auto frac = parse({"run", "--timeout", "1500ms", "--", "x"});
  auto fbody = buildJobRequest(frac.inv.spec, env);
  ASSERT_TRUE(fbody);
  EXPECT_EQ(jsonText(fbody.value()), "{\"command\":[\"x\"],\"timeout_s\":1.5}");
  // --name and --label; a malformed one is a usage error.
  auto named = parse({"start", "--name", "web", "-l", "tier=fe", "--label", "env=prod", "--", "x"});
  ASSERT_FALSE(named.usage_error) << *named.usage_error;
  auto nbody = buildJobRequest(named.inv.spec, env);
  ASSERT_TRUE(nbody);
  EXPECT_EQ(jsonText(nbody.value()),
            "{\"command\":[\"x\"],\"name\":\"web\",\"labels\":{\"tier\":\"fe\",\"env\":\"prod\"}}");
  EXPECT_TRUE(parse({"start", "--label", "novalue", "--", "x"}).usage_error);
  EXPECT_TRUE(parse({"start", "--name", "a b", "--", "x"}).usage_error);
  auto list = parse({"list", "-l", "tier=fe", "-l", "env=prod", "--owner", "bob", "--limit", "5"});
  ASSERT_FALSE(list.usage_error) << *list.usage_error;
  EXPECT_EQ(list.inv.label_filter, (std::vector<std::string>{"tier=fe", "env=prod"}));
  EXPECT_EQ(list.inv.owner, "bob");
  EXPECT_EQ(list.inv.limit, 5u);
  // --env K copies K from our environment, and says so when it is not set.
  auto unset = parse({"run", "-e", "NOPE", "--", "x"});
  auto ubody = buildJobRequest(unset.inv.spec, env);
  ASSERT_FALSE(ubody);
  EXPECT_NE(ubody.error().message.find("NOPE is not set"), std::string::npos);
}

// ---- prefixes, exit statuses, formatting ------------------------------------------------------

TEST(JobRef, FullIdsAndPrefixes) {
  EXPECT_TRUE(isFullJobId("3f2a1b2c-0000-4000-8000-000000000001"));
  EXPECT_FALSE(isFullJobId("3f2a1b2c"));
  EXPECT_FALSE(isFullJobId("3f2a1b2c-0000-4000-8000-00000000000g"));
  std::vector<std::string> ids = {"3f2a1b2c-0000-4000-8000-000000000001",
                                  "3f2a9e11-0000-4000-8000-000000000002",
                                  "ab000000-0000-4000-8000-000000000003"};
  auto one = matchJobPrefix(ids, "3f2a1");
  ASSERT_TRUE(one);
  EXPECT_EQ(one.value(), ids[0]);
  auto upper = matchJobPrefix(ids, "AB");
  ASSERT_TRUE(upper);
  EXPECT_EQ(upper.value(), ids[2]);
  auto amb = matchJobPrefix(ids, "3f2a");
  // Names: the running job with the name wins, else the only one; several finished: ambiguous.
  EXPECT_FALSE(matchJobName({}, "web"));
  auto run = matchJobName({{"aaaaaaaa-1", false}, {"bbbbbbbb-2", true}}, "web");
  ASSERT_TRUE(run && *run);
  EXPECT_EQ(run->value(), "bbbbbbbb-2");
  auto only = matchJobName({{"aaaaaaaa-1", false}}, "web");
  ASSERT_TRUE(only && *only);
  EXPECT_EQ(only->value(), "aaaaaaaa-1");
  auto two = matchJobName({{"aaaaaaaa-1", false}, {"cccccccc-3", false}}, "web");
  ASSERT_TRUE(two && !*two);
  EXPECT_EQ(two->error().message,
            "name 'web' is ambiguous (finished jobs aaaaaaaa, cccccccc): use an id");
  ASSERT_FALSE(amb);
  EXPECT_NE(amb.error().message.find("job prefix '3f2a' is ambiguous"), std::string::npos);
  EXPECT_NE(amb.error().message.find("3f2a1b2c"), std::string::npos);
  EXPECT_NE(amb.error().message.find("3f2a9e11"), std::string::npos);
  auto none = matchJobPrefix(ids, "ff");
  ASSERT_FALSE(none);
  EXPECT_EQ(none.error().message.rfind("job ff… not found", 0), 0u) << none.error().message;
  EXPECT_EQ(none.error().http_status, 404);
  EXPECT_FALSE(matchJobPrefix({}, "3f"));
  EXPECT_FALSE(matchJobPrefix(ids, ""));
}

Poco::JSON::Object::Ptr obj(const std::string& text) {
  Poco::JSON::Parser p;
  return p.parse(text).extract<Poco::JSON::Object::Ptr>();
}

TEST(ExitStatus, JobOutcomesMapLikeAShell) {
  EXPECT_EQ(jobExitStatus(obj(R"({"state":"exited","exit_code":0,"signal":null})")), 0);
  EXPECT_EQ(jobExitStatus(obj(R"({"state":"exited","exit_code":3,"signal":null})")), 3);
  EXPECT_EQ(jobExitStatus(obj(R"({"state":"killed","exit_code":null,"signal":9})")), 137);
  EXPECT_EQ(jobExitStatus(obj(R"({"state":"killed","exit_code":null,"signal":15})")), 143);
  EXPECT_EQ(jobExitStatus(obj(R"({"state":"failed","exit_code":null,"signal":null})")), 125);
  EXPECT_EQ(startFailureExitStatus(422, "program_not_found"), 127);
  EXPECT_EQ(startFailureExitStatus(422, "program_not_executable"), 126);
  EXPECT_EQ(startFailureExitStatus(400, "bad_request"), 125);
  EXPECT_EQ(startFailureExitStatus(403, "forbidden"), 125);
}

TEST(Format, HumanOutput) {
  EXPECT_EQ(shortId("3f2a1b2c-0000-4000-8000-000000000001"), "3f2a1b2c");
  EXPECT_EQ(shellQuote({"sh", "-c", "echo 'hi'; exit 3"}), "sh -c 'echo '\\''hi'\\''; exit 3'");
  EXPECT_EQ(shellQuote({"a\x1b[2Jb"}), "'a?[2Jb'");  // no terminal escapes from job argv
  EXPECT_EQ(formatBytes(512), "512 B");
  EXPECT_EQ(formatBytes(1536), "1.5 KiB");
  EXPECT_EQ(formatBytes(256ull << 20), "256 MiB");
  Poco::Timestamp now;
  Poco::Timestamp earlier = now - 90 * Poco::Timestamp::resolution();
  std::string t = Poco::DateTimeFormatter::format(earlier, "%Y-%m-%dT%H:%M:%S.%iZ");
  EXPECT_EQ(formatAge(t, now), "1m ago");
  EXPECT_EQ(formatAge("garbage", now), "");
  auto job = obj(R"({"id":"3f2a1b2c-0000-4000-8000-000000000001","owner":"alice",
      "command":["sh","-c","exit 3"],"state":"killed","pid":7,"exit_code":null,"signal":9,
      "stopped_by":"alice","error":null,"created_at":")" +
                 t + R"(","started_at":null,
      "ended_at":null,"output":"merged","output_bytes":2048,"output_truncated":false,
      "output_dropped_bytes":0,"oom_killed":false,"limits":{"cpu":0.5,"memory":268435456,
      "pids":null,"io":[]},"usage":{"cpu_seconds":1.25},"isolation":["pid","net"],"run_as":"nobody"})");
  EXPECT_EQ(describeOutcome(job), "killed (SIGKILL)");
  std::string status = formatStatus(job, now);
  EXPECT_NE(status.find("ID:        3f2a1b2c-0000-4000-8000-000000000001"), std::string::npos)
      << status;
  EXPECT_NE(status.find("signal 9 (SIGKILL), stopped by alice"), std::string::npos) << status;
  EXPECT_NE(status.find("Limits:    cpu 0.5, memory 256 MiB"), std::string::npos) << status;
  EXPECT_NE(status.find("Isolation: pid, net"), std::string::npos) << status;
  EXPECT_NE(status.find("merged, 2.0 KiB"), std::string::npos) << status;
  // A log that stopped storing says why, and the server's text cannot move the cursor.
  job->set("output_truncated", true);
  job->set("output_dropped_bytes", 4096);
  job->set("output_error", "no space left on device at byte 2048\x1b[2J");
  status = formatStatus(job, now);
  EXPECT_NE(status.find("merged, 2.0 KiB, truncated, 4.0 KiB dropped (no space left on device at "
                        "byte 2048?[2J)"),
            std::string::npos)
      << status;
  Poco::JSON::Array::Ptr jobs = new Poco::JSON::Array;
  jobs->add(job);
  std::string table = formatJobTable(jobs, now);
  EXPECT_EQ(table.substr(0, table.find('\n')),
            "ID         OWNER   STATE              CREATED   COMMAND");
  EXPECT_NE(table.find("3f2a1b2c   alice   killed (SIGKILL)   1m ago    sh -c 'exit 3'"),
            std::string::npos)
      << table;
  // Piped: nothing cut, even a long command; on a narrow terminal the command is cut to fit,
  // and --no-trunc shows full ids and the whole command; wide adds NAME and LABELS.
  Poco::JSON::Array::Ptr long_jobs = new Poco::JSON::Array;
  Poco::JSON::Parser p;
  auto cmd =
      p.parse(R"(["echo",")" + std::string(100, 'x') + R"("])").extract<Poco::JSON::Array::Ptr>();
  job->set("command", cmd);
  job->set("name", "web");
  Poco::JSON::Object::Ptr labels = new Poco::JSON::Object;
  labels->set("tier", "fe");
  job->set("labels", labels);
  long_jobs->add(job);
  std::string piped = formatJobTable(long_jobs, now);
  EXPECT_NE(piped.find(std::string(100, 'x')), std::string::npos) << piped;
  TableStyle narrow;
  narrow.columns = 80;
  std::string tty = formatJobTable(long_jobs, now, narrow);
  size_t second = tty.find('\n') + 1;
  EXPECT_EQ(tty.find('\n', second) - second, 80u) << tty;
  EXPECT_NE(tty.find("xxx...\n"), std::string::npos) << tty;
  narrow.no_trunc = true;
  std::string full = formatJobTable(long_jobs, now, narrow);
  EXPECT_NE(full.find("3f2a1b2c-0000-4000-8000-000000000001"), std::string::npos) << full;
  EXPECT_NE(full.find(std::string(100, 'x')), std::string::npos) << full;
  TableStyle wide;
  wide.wide = true;
  wide.colour = true;
  std::string w = formatJobTable(long_jobs, now, wide);
  EXPECT_EQ(w.substr(0, w.find('\n')),
            "ID         OWNER   STATE              CREATED   NAME   LABELS    COMMAND");
  EXPECT_NE(w.find("\x1b[31mkilled (SIGKILL)\x1b[0m   1m ago    web    tier=fe   echo"),
            std::string::npos)
      << w;
}

TEST(OutputFormat, JsonToYaml) {
  EXPECT_EQ(
      jsonToYaml(
          R"({"jobs":[{"id":"a","labels":{},"n":1,"ok":true,"e":null,"c":["x","y z"]}],"next":null})"),
      "jobs:\n"
      "  -\n"
      "    c:\n"
      "      - \"x\"\n"
      "      - \"y z\"\n"
      "    e: null\n"
      "    id: \"a\"\n"
      "    labels: {}\n"
      "    n: 1\n"
      "    ok: true\n"
      "next: null\n");
}

// ---- config file ------------------------------------------------------------------------------

TEST(CliConfig, PathFollowsXdg) {
  std::map<std::string, std::string> env = {{"HOME", "/home/u"}};
  auto lookup = [&](const char* n) -> const char* {
    auto it = env.find(n);
    return it == env.end() ? nullptr : it->second.c_str();
  };
  EXPECT_EQ(configPath(lookup).value(), "/home/u/.config/jobworker/config.json");
  env["XDG_CONFIG_HOME"] = "/xdg";
  EXPECT_EQ(configPath(lookup).value(), "/xdg/jobworker/config.json");
  env["XDG_CONFIG_HOME"] = "relative";  // invalid per the XDG spec: ignored
  EXPECT_EQ(configPath(lookup).value(), "/home/u/.config/jobworker/config.json");
  env.clear();
  EXPECT_FALSE(configPath(lookup));
}

TEST(CliConfig, SaveCreatesPrivateFilesAndRoundTrips) {
  TempDir tmp;
  std::string path = tmp.path() + "/new/jobworker/config.json";
  CliConfig cfg{"https://127.0.0.1:8443",  "/etc/ca.pem", "jw_secret", "alice", "user",
                "2030-01-01T00:00:00.000Z"};
  ASSERT_TRUE(saveConfig(path, cfg));
  struct stat st {};
  ASSERT_EQ(stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  ASSERT_EQ(stat((tmp.path() + "/new/jobworker").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  auto back = loadConfig(path);
  ASSERT_TRUE(back) << back.error().message;
  ASSERT_TRUE(back.value());
  EXPECT_EQ(back.value()->server, cfg.server);
  EXPECT_EQ(back.value()->ca_file, cfg.ca_file);
  EXPECT_EQ(back.value()->token, cfg.token);
  EXPECT_EQ(back.value()->user, "alice");
  // Replacing leaves no temporary files behind.
  cfg.token = "jw_other";
  ASSERT_TRUE(saveConfig(path, cfg));
  EXPECT_EQ(std::distance(fs::directory_iterator(tmp.path() + "/new/jobworker"),
                          fs::directory_iterator()),
            1);
  EXPECT_EQ(loadConfig(path).value()->token, "jw_other");
  auto missing = loadConfig(tmp.path() + "/none.json");
  ASSERT_TRUE(missing);
  EXPECT_FALSE(missing.value());
}

TEST(CliConfig, RefusesFilesOthersCanRead) {
  TempDir tmp;
  std::string path = tmp.path() + "/config.json";
  ASSERT_TRUE(saveConfig(path, CliConfig{"https://h:1", "", "jw_t", "", "", ""}));
  for (mode_t mode : {0644, 0640, 0604, 0620}) {
    ASSERT_EQ(chmod(path.c_str(), mode), 0);
    auto r = loadConfig(path);
    ASSERT_FALSE(r) << std::oct << mode;
    EXPECT_NE(r.error().message.find("chmod 600 " + path), std::string::npos) << r.error().message;
  }
  ASSERT_EQ(chmod(path.c_str(), 0400), 0);
  EXPECT_TRUE(loadConfig(path));
  // A symlink could point the CLI at a file someone else controls.
  std::string link = tmp.path() + "/link.json";
  ASSERT_EQ(symlink(path.c_str(), link.c_str()), 0);
  EXPECT_FALSE(loadConfig(link));
}

TEST(CliConfig, BadJsonIsReported) {
  TempDir tmp;
  std::string path = tmp.path() + "/config.json";
  { std::ofstream(path) << "{not json"; }
  ASSERT_EQ(chmod(path.c_str(), 0600), 0);
  auto r = loadConfig(path);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("not valid JSON"), std::string::npos);
  EXPECT_FALSE(parseConfig(R"({"server": 5})", "x"));
}

TEST(CliConfig, PrecedenceFlagThenEnvThenConfig) {
  CliConfig cfg{"https://127.0.0.1:8443", "/cfg/ca.pem", "jw_cfg", "", "", ""};
  std::map<std::string, std::string> env;
  auto lookup = [&](const char* n) -> const char* {
    auto it = env.find(n);
    return it == env.end() ? nullptr : it->second.c_str();
  };
  Invocation inv;
  auto cs = resolveConnection(inv, lookup, cfg);
  EXPECT_EQ(cs.server, cfg.server);
  EXPECT_EQ(cs.ca_file, "/cfg/ca.pem");
  EXPECT_EQ(cs.token, "jw_cfg");
  EXPECT_TRUE(cs.token_from_config);
  env["JOBWORKER_TOKEN"] = "jw_env";
  env["JOBWORKER_CA_FILE"] = "/env/ca.pem";
  cs = resolveConnection(inv, lookup, cfg);
  EXPECT_EQ(cs.token, "jw_env");
  EXPECT_FALSE(cs.token_from_config);
  EXPECT_EQ(cs.ca_file, "/env/ca.pem");
  inv.ca_file = "/flag/ca.pem";
  EXPECT_EQ(resolveConnection(inv, lookup, cfg).ca_file, "/flag/ca.pem");
  // The same server spelled differently still gets the stored token...
  env.clear();
  inv = Invocation();
  inv.server = "127.0.0.1:8443";
  EXPECT_EQ(resolveConnection(inv, lookup, cfg).token, "jw_cfg");
  // ...but another server never does, nor the CA file stored for the first.
  env["JOBWORKER_SERVER"] = "https://elsewhere:8443";
  inv = Invocation();
  cs = resolveConnection(inv, lookup, cfg);
  EXPECT_EQ(cs.server, "https://elsewhere:8443");
  EXPECT_EQ(cs.token, "");
  EXPECT_EQ(cs.ca_file, "");
  inv.server = "https://flag:1";
  EXPECT_EQ(resolveConnection(inv, lookup, cfg).server, "https://flag:1");
}

// runCli end to end, for the paths that fail before any connection.
class RunCli : public ::testing::Test {
 protected:
  void SetUp() override {
    for (const char* v : {"JOBWORKER_SERVER", "JOBWORKER_TOKEN", "JOBWORKER_CA_FILE"}) unsetenv(v);
    setenv("XDG_CONFIG_HOME", tmp_.path().c_str(), 1);
  }
  void TearDown() override { unsetenv("XDG_CONFIG_HOME"); }
  TempDir tmp_;
};

TEST_F(RunCli, UsageErrorsExit2ButRunExits125) {
  EXPECT_EQ(runCli({"start", "sh", "-c", "true"}), 2);
  EXPECT_EQ(runCli({"status"}), 2);
  EXPECT_EQ(runCli({"list", "--nope"}), 2);
  EXPECT_EQ(runCli({"nope"}), 2);
  EXPECT_EQ(runCli({"run", "sh"}), 125);
  EXPECT_EQ(runCli({"run", "--nope", "--", "true"}), 125);
  EXPECT_EQ(runCli({"--help"}), 0);
  EXPECT_EQ(runCli({"logs", "--help"}), 0);
}

TEST_F(RunCli, NotLoggedInAndUnsafeConfig) {
  testing::internal::CaptureStderr();
  EXPECT_EQ(runCli({"list"}), 1);
  EXPECT_EQ(runCli({"run", "--", "true"}), 125);
  std::string err = testing::internal::GetCapturedStderr();
  EXPECT_NE(err.find("jobworker: not logged in: run 'jobworker login --server https://HOST:PORT'"),
            std::string::npos)
      << err;
  std::string path = tmp_.path() + "/jobworker/config.json";
  ASSERT_TRUE(saveConfig(path, CliConfig{"https://127.0.0.1:1", "", "jw_t", "", "", ""}));
  ASSERT_EQ(chmod(path.c_str(), 0644), 0);
  testing::internal::CaptureStderr();
  EXPECT_EQ(runCli({"whoami"}), 1);
  err = testing::internal::GetCapturedStderr();
  EXPECT_NE(err.find("chmod 600"), std::string::npos) << err;
  EXPECT_EQ(std::count(err.begin(), err.end(), '\n'), 1) << err;
}

// ---- URL, TLS set-up and transport errors -----------------------------------------------------

TEST(ServerUrl, NormalisedHttpsOnly) {
  EXPECT_EQ(parseServerUrl("https://127.0.0.1:8443").value().text, "https://127.0.0.1:8443");
  EXPECT_EQ(parseServerUrl("127.0.0.1:8443").value().text, "https://127.0.0.1:8443");
  EXPECT_EQ(parseServerUrl("https://Example.COM/").value().text, "https://example.com:443");
  auto v6 = parseServerUrl("https://[::1]:9000");
  ASSERT_TRUE(v6);
  EXPECT_EQ(v6->host, "::1");
  EXPECT_TRUE(v6->host_is_ip);
  EXPECT_EQ(v6->text, "https://[::1]:9000");
  EXPECT_TRUE(parseServerUrl("https://127.0.0.1:1")->host_is_ip);
  EXPECT_FALSE(parseServerUrl("https://localhost:1")->host_is_ip);
  auto http = parseServerUrl("http://127.0.0.1:8443");
  ASSERT_FALSE(http);
  EXPECT_NE(http.error().message.find("only https"), std::string::npos);
  EXPECT_FALSE(parseServerUrl(""));
  EXPECT_FALSE(parseServerUrl("https://h:1/api"));
  EXPECT_FALSE(parseServerUrl("https://user:pw@h:1"));
}

TEST(UrlEncode, OnlyUnreservedBytesStay) {
  EXPECT_EQ(urlEncode("AZaz09-_.~"), "AZaz09-_.~");
  EXPECT_EQ(urlEncode(""), "");
  // What would end or split a query value, or climb out of a path segment.
  EXPECT_EQ(urlEncode("a&b=c+d/e"), "a%26b%3Dc%2Bd%2Fe");
  EXPECT_EQ(urlEncode("?#[]@!$'()*,;:"), "%3F%23%5B%5D%40%21%24%27%28%29%2A%2C%3B%3A");
  EXPECT_EQ(urlEncode("50% <x> \"q\""), "50%25%20%3Cx%3E%20%22q%22");
  EXPECT_EQ(urlEncode(std::string("\0\x1f\x7f", 3)), "%00%1F%7F");
  EXPECT_EQ(urlEncode("h\xc3\xa9"), "h%C3%A9");  // UTF-8 bytes, uppercase hex
  EXPECT_EQ(urlEncode(".."), "..");  // unreserved; the frontend refuses dot segments itself
}

TEST(ApiClient, CaFileProblemsAreLocalErrors) {
  auto missing = ApiClient::create({"https://127.0.0.1:1", "/nonexistent/ca.pem", "", {}, {}});
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().kind, ClientError::Kind::kLocal);
  EXPECT_NE(missing.error().message.find("cannot read CA file /nonexistent/ca.pem"),
            std::string::npos);
  TempDir tmp;
  std::string junk = tmp.path() + "/junk.pem";
  std::ofstream(junk) << "not a certificate\n";
  auto bad = ApiClient::create({"https://127.0.0.1:1", junk, "", {}, {}});
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message.find("pass a PEM file"), std::string::npos) << bad.error().message;
}

TEST(ApiClient, ConnectionRefusedIsOneClearLine) {
  // Port 1 on loopback: nothing listens there, so the kernel refuses at once.
  auto client = ApiClient::create({"https://127.0.0.1:1", "", "", {}, {}});
  ASSERT_TRUE(client);
  auto r = client->request("GET", "/v1/whoami");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().kind, ClientError::Kind::kConnect);
  EXPECT_EQ(r.error().message.rfind("cannot reach https://127.0.0.1:1: connection refused", 0), 0u)
      << r.error().message;
  EXPECT_TRUE(r.error().transient());
}

TEST(ApiClient, HttpErrorsSayWhatToDo) {
  ServerUrl url = parseServerUrl("https://h:1").value();
  Response r;
  r.status = 404;
  r.body = R"({"error":{"code":"not_found","message":"no such job"}})";
  r.json = Poco::JSON::Parser().parse(r.body);
  EXPECT_EQ(r.errorCode(), "not_found");
  EXPECT_EQ(httpError(r, "job 3f2a…", url).message,
            "job 3f2a… not found: list jobs with 'jobworker list'");
  r.status = 401;
  EXPECT_NE(httpError(r, "", url).message.find("jobworker login --server https://h:1"),
            std::string::npos);
  r.status = 503;
  auto e = httpError(r, "", url);
  EXPECT_TRUE(e.transient());
  r.status = 400;
  EXPECT_FALSE(httpError(r, "", url).transient());
}

// ---- chunked decoding -------------------------------------------------------------------------

std::string decodeAll(const std::string& wire, size_t step, bool* done, bool* failed) {
  ChunkedDecoder d;
  std::string out;
  for (size_t i = 0; i < wire.size(); i += step) {
    if (!d.feed(std::string_view(wire).substr(i, step), [&](std::string_view p) {
          out.append(p);
          return true;
        })) {
      break;
    }
  }
  *done = d.done();
  *failed = d.failed();
  return out;
}

TEST(ChunkedDecoder, DecodesInAnySplit) {
  std::string payload("binary\0\r\n\xff data\0", 16);  // NULs inside and at the end
  std::string wire =
      "6\r\nbinary\r\n" + std::string("A;ext=1\r\n") + payload.substr(6) + "\r\n0\r\n\r\n";
  for (size_t step : {1u, 2u, 3u, 7u, 1000u}) {
    bool done = false, failed = false;
    EXPECT_EQ(decodeAll(wire, step, &done, &failed), payload) << step;
    EXPECT_TRUE(done) << step;
    EXPECT_FALSE(failed);
  }
}

TEST(ChunkedDecoder, TrailersAndLfOnlyLines) {
  bool done = false, failed = false;
  EXPECT_EQ(decodeAll("3\nabc\n0\nX-Trailer: 1\n\n", 1, &done, &failed), "abc");
  EXPECT_TRUE(done);
}

TEST(ChunkedDecoder, ExtensionEndedByBareLfDoesNotLeakIntoTheTrailer) {
  // The last chunk's extension once kept its length counted, so the empty line after it was
  // taken for a trailer line and the stream never ended.
  for (size_t step : {1u, 3u, 100u}) {
    bool done = false, failed = false;
    EXPECT_EQ(decodeAll("2\r\nab\r\n0;ext=1\n\r\n", step, &done, &failed), "ab") << step;
    EXPECT_TRUE(done) << step;
    EXPECT_FALSE(failed) << step;
  }
}

TEST(ChunkedDecoder, CutStreamIsNotDone) {
  // What a killed frontend leaves behind: the follower must reconnect, not declare the end.
  for (const std::string wire : {"5\r\nhel", "5\r\nhello\r\n", "5\r\nhello\r\n0\r\n", ""}) {
    bool done = false, failed = false;
    decodeAll(wire, 4, &done, &failed);
    EXPECT_FALSE(done) << wire;
    EXPECT_FALSE(failed) << wire;
  }
}

TEST(ChunkedDecoder, RejectsBadFraming) {
  for (const std::string wire : {"zz\r\n", "5\r\nhelloXX", "\r\n", "1234567890abcdef0\r\n"}) {
    bool done = false, failed = false;
    decodeAll(wire, 1, &done, &failed);
    EXPECT_TRUE(failed) << wire;
  }
}

TEST(ChunkedDecoder, SinkCanStop) {
  ChunkedDecoder d;
  int calls = 0;
  EXPECT_FALSE(
      d.feed("1\r\na\r\n1\r\nb\r\n0\r\n\r\n", [&](std::string_view) { return ++calls < 1; }));
  EXPECT_EQ(calls, 1);
}

// Completion scripts come from the parser's table: every command and every flag is in each one.
TEST(Completion, EveryCommandAndFlagOfTheTableIsInEachScript) {
  EXPECT_FALSE(completionScript("tcsh"));
  for (const char* shell : {"bash", "zsh", "fish"}) {
    auto script = completionScript(shell);
    ASSERT_TRUE(script) << shell;
    for (const auto& c : commandSpecs()) {
      EXPECT_NE(script->find(c.name), std::string::npos) << shell << ": " << c.name;
      for (const auto& f : c.flags) {
        EXPECT_NE(script->find(f.long_name), std::string::npos) << shell << ": " << f.long_name;
      }
    }
  }
  std::vector<CommandSpec> specs = commandSpecs();
  auto it = std::find_if(specs.begin(), specs.end(),
                         [](const CommandSpec& c) { return c.name == "list"; });
  ASSERT_NE(it, specs.end());
  auto state = std::find_if(it->flags.begin(), it->flags.end(),
                            [](const FlagSpec& f) { return f.long_name == "state"; });
  ASSERT_NE(state, it->flags.end());
  EXPECT_EQ(state->choices, (std::vector<std::string>{"running", "exited", "killed", "failed"}));
}

}  // namespace
}  // namespace jw::client
