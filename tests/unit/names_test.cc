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

}  // namespace
}  // namespace jw::names
