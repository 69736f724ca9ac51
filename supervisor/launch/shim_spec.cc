// Encoding the shim's spec (see shim_spec.h); runs in jobworkerd.
#include "supervisor/launch/shim_spec.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "common/io.h"
#include "common/protocol/shim_messages.h"

namespace jw::supervisor {

namespace {

class SpecWriter {
 public:
  void u8(uint8_t v) { out_.push_back(static_cast<char>(v)); }
  void u16(uint16_t v) {
    for (int i = 0; i < 2; i++) u8(static_cast<uint8_t>(v >> (8 * i)));
  }
  void u32(uint32_t v) {
    for (int i = 0; i < 4; i++) u8(static_cast<uint8_t>(v >> (8 * i)));
  }
  void u64(uint64_t v) {
    for (int i = 0; i < 8; i++) u8(static_cast<uint8_t>(v >> (8 * i)));
  }
  void str(const std::string& s) {
    if (s.find('\0') != std::string::npos) ok_ = false;
    u32(static_cast<uint32_t>(s.size() + 1));
    out_.append(s);
    out_.push_back('\0');
  }
  void list(const std::vector<std::string>& v, uint32_t cap) {
    if (v.size() > cap) ok_ = false;
    u32(static_cast<uint32_t>(v.size()));
    for (const auto& s : v) str(s);
  }
  bool ok() const { return ok_ && out_.size() <= shim::kMaxSpecBytes; }
  std::string& bytes() { return out_; }

 private:
  std::string out_;
  bool ok_ = true;
};

}  // namespace

Result<std::string> encodeShimSpec(const ShimSpec& s) {
  SpecWriter w;
  w.u32(shim::kSpecMagic);
  w.u32(shim::kSpecVersion);
  w.u32(s.flags);
  w.u32(s.uid);
  w.u32(s.gid);
  w.u32(static_cast<uint32_t>(s.last_cap));
  w.u64(s.nofile_cur);
  w.u64(s.nofile_max);
  w.u64(s.output_cap);
  w.u64(s.deadline_ns);
  w.u64(s.stop_grace_ms);
  for (const std::string* str : {&s.hostname, &s.tmp_options, &s.cwd, &s.home, &s.cgroup_leaf}) {
    w.str(*str);
  }
  if (s.groups.size() > shim::kMaxSpecGroups) return Error{"too many groups for the job shim"};
  w.u32(static_cast<uint32_t>(s.groups.size()));
  for (gid_t g : s.groups) w.u32(g);
  w.list(s.argv, shim::kMaxSpecArgs);
  w.list(s.env, shim::kMaxSpecEnv);
  w.list(s.candidates, shim::kMaxSpecCandidates);
  if (s.seccomp.size() > shim::kMaxSpecSeccomp) return Error{"seccomp program too long"};
  w.u32(static_cast<uint32_t>(s.seccomp.size()));
  for (const sock_filter& f : s.seccomp) {
    w.u16(f.code);
    w.u8(f.jt);
    w.u8(f.jf);
    w.u32(f.k);
  }
  if (!w.ok()) return Error{"the job spec does not fit the shim's caps", E2BIG};
  return std::move(w.bytes());
}

Result<UniqueFd> sealedSpecMemfd(const std::string& bytes) {
  UniqueFd fd(memfd_create("jw-spec", MFD_CLOEXEC | MFD_ALLOW_SEALING));
  if (!fd) return sysError("memfd_create for the job spec");
  if (Status st = writeAll(fd.get(), bytes, "job spec memfd"); !st) {
    return st.error();
  }
  if (fcntl(fd.get(), F_ADD_SEALS, F_SEAL_WRITE | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) != 0) {
    return sysError("seal the job spec memfd");
  }
  return fd;
}

}  // namespace jw::supervisor
