// Unit tests (no privileges) of common/names: the one validator per kind of name that the
// supervisor, the frontend, the admin tool and the CLI share.
#include "common/names.h"

#include <gtest/gtest.h>

#include <string>

namespace jw::names {
namespace {

TEST(Names, ValidUserName) {
  for (const char* ok : {"a", "_", "_svc", "alice", "alice.b-c_1", "x9", "a-", "a."}) {
    EXPECT_TRUE(validUserName(ok)) << ok;
  }
  EXPECT_TRUE(validUserName(std::string(32, 'a')));
  for (const char* bad :
       {"", "Alice", "1abc", "-a", ".a", "a:b", "a b", "a\n", "caf\xc3\xa9", "a/b", "aB"}) {
    EXPECT_FALSE(validUserName(bad)) << bad;
  }
  EXPECT_FALSE(validUserName(std::string(33, 'a')));
  EXPECT_FALSE(validUserName(std::string("a\0b", 3)));
}

TEST(Names, ValidAccountName) {
  for (const char* ok : {"nobody", "www-data", "_apt", "first.last", "John", "host$"}) {
    EXPECT_TRUE(validAccountName(ok)) << ok;
  }
  for (const char* bad : {"", "-rf", "1000", "a:b", "a b", "a$b", ".hidden", "a/b"}) {
    EXPECT_FALSE(validAccountName(bad)) << bad;
  }
  EXPECT_FALSE(validAccountName(std::string(33, 'a')));
}

TEST(Names, ValidEnvName) {
  for (const char* ok : {"PATH", "_", "_x1", "lower", "A1_B2", "a"}) {
    EXPECT_TRUE(validEnvName(ok)) << ok;
  }
  EXPECT_TRUE(validEnvName(std::string(4096, 'X')));  // no length cap: the spec-size cap applies
  for (const char* bad : {"", "1A", "A-B", "A=B", "A B", "A.B", "caf\xc3\xa9", "=", "A\n"}) {
    EXPECT_FALSE(validEnvName(bad)) << bad;
  }
  EXPECT_FALSE(validEnvName(std::string("A\0B", 3)));
}

TEST(Names, ValidJobIdIsALowercaseUuidV4) {
  EXPECT_TRUE(validJobId("0b6f3c1e-5d2a-4c8e-9f1a-2b3c4d5e6f70"));
  EXPECT_TRUE(validJobId("0b6f3c1e-5d2a-4c8e-af1a-2b3c4d5e6f70"));
  EXPECT_TRUE(validJobId("00000000-0000-4000-8000-000000000000"));
  EXPECT_TRUE(validJobId("ffffffff-ffff-4fff-bfff-ffffffffffff"));
  EXPECT_FALSE(validJobId("0B6F3C1E-5D2A-4C8E-9F1A-2B3C4D5E6F70"));   // uppercase
  EXPECT_FALSE(validJobId("0b6f3c1e-5d2a-1c8e-9f1a-2b3c4d5e6f70"));   // version 1
  EXPECT_FALSE(validJobId("0b6f3c1e-5d2a-4c8e-7f1a-2b3c4d5e6f70"));   // variant
  EXPECT_FALSE(validJobId("0b6f3c1e-5d2a-4c8e-cf1a-2b3c4d5e6f70"));   // variant
  EXPECT_FALSE(validJobId("0b6f3c1e5d2a4c8e9f1a2b3c4d5e6f70"));       // no dashes
  EXPECT_FALSE(validJobId("0b6f3c1e-5d2a-4c8e-9f1a-2b3c4d5e6f7"));    // short
  EXPECT_FALSE(validJobId("0b6f3c1e-5d2a-4c8e-9f1a-2b3c4d5e6f701"));  // long
  EXPECT_FALSE(validJobId(""));
  // What the cgroup backends used to accept ([A-Za-z0-9_-]{1,64}) but jobworkerd never makes.
  EXPECT_FALSE(validJobId("job_1"));
  EXPECT_FALSE(validJobId("t1234-oom"));
  // Nothing that could leave the directory the id is joined to.
  EXPECT_FALSE(validJobId("../../../../etc/passwd-aaaaaaaaaaaaaa"));
  EXPECT_FALSE(validJobId("0b6f3c1e-5d2a-4c8e-9f1a-2b3c4d5e/f70"));
  EXPECT_FALSE(validJobId("0b6f3c1e-5d2a-4c8e-9f1a-2b3c4d5e..70"));
  EXPECT_FALSE(validJobId(std::string("0b6f3c1e-5d2a-4c8e-9f1a-2b3c4d5e6f7\0", 36)));
}

TEST(Names, JobNamesAreShortWordsThatCannotPassForAnId) {
  EXPECT_TRUE(validJobName("build"));
  EXPECT_TRUE(validJobName("nightly-2026.12_01"));
  EXPECT_TRUE(validJobName("3f2a"));  // an id prefix too: the exact name wins
  EXPECT_TRUE(validJobName(std::string(63, 'a')));
  EXPECT_FALSE(validJobName(std::string(64, 'a')));
  EXPECT_FALSE(validJobName(""));
  EXPECT_FALSE(validJobName("-rf"));
  EXPECT_FALSE(validJobName(".hidden"));
  EXPECT_FALSE(validJobName("a b"));
  EXPECT_FALSE(validJobName("a/b"));
  EXPECT_FALSE(validJobName("0b6f3c1e-5d2a-4c8e-9f1a-2b3c4d5e6f70"));  // an id names its job
}

TEST(Names, LabelsAreKeyEqualsValueWithDistinctKeys) {
  EXPECT_TRUE(validLabel("team=infra"));
  EXPECT_TRUE(validLabel("app.kubernetes.io/name=web"));
  EXPECT_TRUE(validLabel("empty="));
  EXPECT_FALSE(validLabel("novalue"));
  EXPECT_FALSE(validLabel("=v"));
  EXPECT_FALSE(validLabel("k=v/w"));
  EXPECT_FALSE(validLabel("k=v=w"));
  EXPECT_FALSE(validLabel("k y=v"));
  EXPECT_FALSE(validLabel(std::string(64, 'k') + "=v"));
  EXPECT_FALSE(validLabel("k=" + std::string(64, 'v')));
  EXPECT_EQ(labelListProblem({"a=1", "b=2"}), "");
  EXPECT_EQ(labelListProblem({"a=1", "a=2"}), "label key 'a' given twice");
  EXPECT_NE(labelListProblem({"a=1", "b"}).find("label 'b' is not"), std::string::npos);
  std::vector<std::string> many;
  for (size_t i = 0; i <= kMaxLabels; i++) many.push_back("k" + std::to_string(i) + "=v");
  EXPECT_EQ(labelListProblem(many), "more than 32 labels");
}

}  // namespace
}  // namespace jw::names
