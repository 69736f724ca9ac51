// Unit tests of the contract between jobworkerd and the job's shim: the spec jobworkerd encodes
// is what the shim parses, every truncation or overrun of it is refused, and the status frames
// decode only at their exact length. Runs in the unit test process.
#include "supervisor/launch/shim_spec.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mman.h>

#include <cstring>
#include <string>
#include <vector>

#include "common/protocol/shim_messages.h"
#include "supervisor/init/spec.h"

namespace jw::supervisor {
namespace {

ShimSpec sample() {
  ShimSpec s;
  s.flags = shim::kFlagPidNs | shim::kFlagSeccomp | shim::kFlagSeparate;
  s.uid = 1000;
  s.gid = 1001;
  s.last_cap = 40;
  s.nofile_cur = 1024;
  s.nofile_max = 524288;
  s.output_cap = 1 << 30;
  s.deadline_ns = 123456789012345;
  s.stop_grace_ms = 5000;
  s.hostname = "job-1a2b3c4d";
  s.tmp_options = "size=1048576,mode=1777";
  s.cwd = "/srv";
  s.home = "/home/alice";
  s.cgroup_leaf = "1a2b3c4d-0000-4000-8000-000000000000";
  s.groups = {1001, 27};
  s.argv = {"sh", "-c", "echo hi"};
  s.env = {"PATH=/usr/bin", "LANG=C.UTF-8"};
  s.candidates = {"/usr/bin/sh"};
  s.seccomp = {{0x20, 0, 0, 4}, {0x15, 1, 0, 0xc000003e}, {0x06, 0, 0, 0x7fff0000}};
  return s;
}

bool parse(const std::string& bytes, init::InitSpec* out, std::vector<uint8_t>* storage) {
  storage->assign(init::specStorageBytes(bytes.size()), 0);
  return init::parseSpec(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(),
                         storage->data(), storage->size(), out);
}

TEST(ShimSpec, WhatJobworkerdEncodesIsWhatTheShimReads) {
  auto bytes = encodeShimSpec(sample());
  ASSERT_TRUE(bytes.ok()) << bytes.error().message;
  init::InitSpec s;
  std::vector<uint8_t> storage;
  ASSERT_TRUE(parse(*bytes, &s, &storage));
  EXPECT_EQ(s.flags, shim::kFlagPidNs | shim::kFlagSeccomp | shim::kFlagSeparate);
  EXPECT_EQ(s.uid, 1000u);
  EXPECT_EQ(s.gid, 1001u);
  EXPECT_EQ(s.last_cap, 40);
  EXPECT_EQ(s.nofile_cur, 1024u);
  EXPECT_EQ(s.nofile_max, 524288u);
  EXPECT_EQ(s.output_cap, 1u << 30);
  EXPECT_EQ(s.deadline_ns, 123456789012345u);
  EXPECT_EQ(s.stop_grace_ms, 5000u);
  EXPECT_STREQ(s.hostname, "job-1a2b3c4d");
  EXPECT_EQ(s.hostname_len, 12u);
  EXPECT_STREQ(s.tmp_options, "size=1048576,mode=1777");
  EXPECT_STREQ(s.cwd, "/srv");
  EXPECT_STREQ(s.home, "/home/alice");
  EXPECT_STREQ(s.cgroup_leaf, "1a2b3c4d-0000-4000-8000-000000000000");
  ASSERT_EQ(s.ngroups, 2u);
  EXPECT_EQ(s.groups[0], 1001u);
  EXPECT_EQ(s.groups[1], 27u);
  ASSERT_NE(s.argv[2], nullptr);
  EXPECT_STREQ(s.argv[0], "sh");
  EXPECT_STREQ(s.argv[2], "echo hi");
  EXPECT_EQ(s.argv[3], nullptr);
  EXPECT_STREQ(s.envp[1], "LANG=C.UTF-8");
  EXPECT_EQ(s.envp[2], nullptr);
  EXPECT_STREQ(s.candidates[0], "/usr/bin/sh");
  ASSERT_EQ(s.seccomp_len, 3u);
  EXPECT_EQ(s.seccomp[1].code, 0x15);
  EXPECT_EQ(s.seccomp[1].jt, 1);
  EXPECT_EQ(s.seccomp[1].k, 0xc000003eu);
}

TEST(ShimSpec, EveryTruncationAndTrailingByteIsRefused) {
  auto bytes = encodeShimSpec(sample());
  ASSERT_TRUE(bytes.ok());
  init::InitSpec s;
  std::vector<uint8_t> storage;
  for (size_t n = 0; n < bytes->size(); n++) {
    ASSERT_FALSE(parse(bytes->substr(0, n), &s, &storage)) << "accepted " << n << " bytes";
  }
  ASSERT_FALSE(parse(*bytes + '\0', &s, &storage));
}

TEST(ShimSpec, BadMagicVersionStringsCountsAndFailOpenSeccompAreRefused) {
  auto good = encodeShimSpec(sample());
  ASSERT_TRUE(good.ok());
  init::InitSpec s;
  std::vector<uint8_t> storage;
  std::string bad_magic = *good;
  bad_magic[0] ^= 1;
  EXPECT_FALSE(parse(bad_magic, &s, &storage));
  std::string bad_version = *good;
  bad_version[4] = 2;
  EXPECT_FALSE(parse(bad_version, &s, &storage));
  // The hostname's terminating NUL replaced: the string no longer ends where its length says.
  std::string no_nul = *good;
  size_t at = no_nul.find("job-1a2b3c4d");
  ASSERT_NE(at, std::string::npos);
  no_nul[at + 12] = 'x';
  EXPECT_FALSE(parse(no_nul, &s, &storage));
  // An inner NUL.
  std::string inner = *good;
  inner[at + 3] = '\0';
  EXPECT_FALSE(parse(inner, &s, &storage));
  // A huge count: refused before anything is taken from the storage.
  ShimSpec many = sample();
  many.argv.assign(shim::kMaxSpecArgs + 1, "x");
  EXPECT_FALSE(encodeShimSpec(many).ok());  // jobworkerd refuses to write it, too
  std::string counted = *good;
  size_t argc_at = counted.find(std::string("\x03\x00\x00\x00\x03\x00\x00\x00sh", 10));
  ASSERT_NE(argc_at, std::string::npos);
  counted[argc_at + 3] = 0x7f;  // argc 0x7f000003
  EXPECT_FALSE(parse(counted, &s, &storage));
  // The seccomp flag without a program would run the job unfiltered: fail closed.
  ShimSpec open_filter = sample();
  open_filter.seccomp.clear();
  auto unfiltered = encodeShimSpec(open_filter);
  ASSERT_TRUE(unfiltered.ok());
  EXPECT_FALSE(parse(*unfiltered, &s, &storage));
  // An empty argv or no exec candidate.
  ShimSpec no_argv = sample();
  no_argv.argv.clear();
  EXPECT_FALSE(parse(*encodeShimSpec(no_argv), &s, &storage));
  // A NUL in a string cannot be encoded.
  ShimSpec nul = sample();
  nul.cwd = std::string("/a\0b", 4);
  EXPECT_FALSE(encodeShimSpec(nul).ok());
}

TEST(ShimSpec, TheMemfdIsSealed) {
  auto bytes = encodeShimSpec(sample());
  ASSERT_TRUE(bytes.ok());
  auto fd = sealedSpecMemfd(*bytes);
  ASSERT_TRUE(fd.ok()) << fd.error().message;
  int seals = fcntl(fd->get(), F_GET_SEALS);
  EXPECT_EQ(seals & (F_SEAL_WRITE | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL),
            F_SEAL_WRITE | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL);
  EXPECT_LT(write(fd->get(), "x", 1), 0);
}

TEST(ShimFrames, ExitedRoundTripsAndDecodesOnlyAtItsExactLength) {
  shim::Exited e;
  e.wait_status = 0x0f00;
  e.utime_us = 1;
  e.stime_us = 2;
  e.maxrss_kb = 3;
  e.streams[0] = {100, 5, 28, 100};
  e.streams[1] = {7, 0, 0, 0};
  e.timed_out = true;
  shim::FrameWriter w = shim::encodeExited(e);
  shim::FrameReader r(w.data(), w.size());
  shim::Frame type{};
  shim::Exited got;
  ASSERT_TRUE(r.type(&type));
  EXPECT_EQ(type, shim::Frame::kExited);
  ASSERT_TRUE(shim::decodeExited(r, &got));
  EXPECT_EQ(got.wait_status, 0x0f00);
  EXPECT_EQ(got.maxrss_kb, 3u);
  EXPECT_EQ(got.streams[0].error, 28);
  EXPECT_EQ(got.streams[0].error_offset, 100u);
  EXPECT_EQ(got.streams[1].stored, 7u);
  EXPECT_TRUE(got.timed_out);
  for (size_t n = 1; n < w.size(); n++) {
    shim::FrameReader shortr(w.data(), n);
    ASSERT_TRUE(shortr.type(&type));
    EXPECT_FALSE(shim::decodeExited(shortr, &got)) << n;
  }
  std::vector<uint8_t> longer(w.data(), w.data() + w.size());
  longer.push_back(0);
  shim::FrameReader longr(longer.data(), longer.size());
  ASSERT_TRUE(longr.type(&type));
  EXPECT_FALSE(shim::decodeExited(longr, &got));
}

}  // namespace
}  // namespace jw::supervisor
