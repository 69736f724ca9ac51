// The link between jobworkerd and jobworker-spawner (one SOCK_SEQPACKET pair, both ends root):
// an Order per job with its descriptors attached (SCM_RIGHTS), answered by a Reply carrying the
// shim's pidfd. Plain fixed-size structs: both sides are built from one tree (an upgrade in place
// starts a new spawner with the new jobworkerd). Compiled into both.
#pragma once

#include <cstdint>

namespace jw::spawner {

constexpr int kLinkFd = 3;  // the spawner's end of the link
constexpr int kInitFd = 4;  // O_PATH fd of jobworker-init, opened by jobworkerd at its start

constexpr uint32_t kOrderMagic = 0x314f574a;  // "JWO1"

// The descriptors an Order may carry, attached in this order for each bit set in fd_mask.
enum FdSlot : uint32_t {
  kSpec,           // the sealed spec memfd (required)
  kChannel,        // the shim's end of the status channel (required)
  kSupervisorEnd,  // jobworkerd's end, which the shim keeps for a take-over (required)
  kStdoutLog,      // required
  kStderrLog,
  kExitRecord,  // required
  kStdinRead,
  kCgroupDir,  // a v2 cgroup directory: the shim is cloned into it (CLONE_INTO_CGROUP)
  kSlotCount,
};
constexpr uint32_t kRequiredSlots = (1U << kSpec) | (1U << kChannel) | (1U << kSupervisorEnd) |
                                    (1U << kStdoutLog) | (1U << kExitRecord);

struct Order {
  uint32_t magic = kOrderMagic;
  uint32_t request_id = 0;
  uint32_t ns_flags = 0;  // CLONE_NEW{PID,NS,NET,UTS,IPC} only
  uint32_t fd_mask = 0;
  char short_id[8] = {};  // the shim's argv[1]: the job id's first 8 characters
};

struct Reply {
  uint32_t request_id = 0;
  int32_t pid = -1;  // the shim's pid (a child of jobworkerd); -1: failed with `err`
  int32_t err = 0;
};

}  // namespace jw::spawner
