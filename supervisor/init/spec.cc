// Bounds-checked reading of the job spec (see spec.h); runs in jobworker-init.
#include "supervisor/init/spec.h"

#include <cstring>

#include "common/protocol/shim_messages.h"

namespace jw::init {

namespace {

// Hands out aligned pieces of the caller's storage.
class Arena {
 public:
  Arena(void* p, size_t len) : p_(static_cast<uint8_t*>(p)), len_(len) {}
  template <typename T>
  T* take(size_t count) {
    size_t start = (used_ + alignof(T) - 1) & ~(alignof(T) - 1);
    if (count > (len_ - start) / sizeof(T) || start > len_) return nullptr;
    used_ = start + count * sizeof(T);
    return reinterpret_cast<T*>(p_ + start);
  }

 private:
  uint8_t* p_;
  size_t len_;
  size_t used_ = 0;
};

class SpecReader {
 public:
  SpecReader(const uint8_t* p, size_t len) : p_(p), len_(len) {}
  bool u8(uint8_t* v) { return bytes(v, 1); }
  bool u16(uint16_t* v) {
    uint8_t b[2];
    if (!bytes(b, 2)) return false;
    *v = static_cast<uint16_t>(b[0] | (b[1] << 8));
    return true;
  }
  bool u32(uint32_t* v) {
    uint8_t b[4];
    if (!bytes(b, 4)) return false;
    *v = 0;
    for (int i = 0; i < 4; i++) *v |= static_cast<uint32_t>(b[i]) << (8 * i);
    return true;
  }
  bool u64(uint64_t* v) {
    uint8_t b[8];
    if (!bytes(b, 8)) return false;
    *v = 0;
    for (int i = 0; i < 8; i++) *v |= static_cast<uint64_t>(b[i]) << (8 * i);
    return true;
  }
  // A string: its length includes exactly one NUL, the last byte.
  bool str(const char** out, size_t* out_len = nullptr) {
    uint32_t n = 0;
    if (!u32(&n) || n == 0 || n > len_ - off_) return false;
    const char* s = reinterpret_cast<const char*>(p_ + off_);
    if (s[n - 1] != '\0' || std::memchr(s, '\0', n - 1) != nullptr) return false;
    off_ += n;
    *out = s;
    if (out_len != nullptr) *out_len = n - 1;
    return true;
  }
  bool list(Arena& arena, uint32_t cap, char*** out, uint32_t* count_out = nullptr) {
    uint32_t n = 0;
    if (!u32(&n) || n > cap) return false;
    char** v = arena.take<char*>(size_t{n} + 1);
    if (v == nullptr) return false;
    for (uint32_t i = 0; i < n; i++) {
      const char* s = nullptr;
      if (!str(&s)) return false;
      v[i] = const_cast<char*>(s);
    }
    v[n] = nullptr;
    *out = v;
    if (count_out != nullptr) *count_out = n;
    return true;
  }
  bool atEnd() const { return off_ == len_; }

 private:
  bool bytes(uint8_t* out, size_t n) {
    if (n > len_ - off_) return false;
    std::memcpy(out, p_ + off_, n);
    off_ += n;
    return true;
  }
  const uint8_t* p_;
  size_t len_;
  size_t off_ = 0;
};

bool readGroups(SpecReader& r, Arena& arena, InitSpec* s) {
  uint32_t n = 0;
  if (!r.u32(&n) || n > shim::kMaxSpecGroups) return false;
  s->groups = arena.take<gid_t>(n == 0 ? 1 : n);
  if (s->groups == nullptr) return false;
  for (uint32_t i = 0; i < n; i++) {
    uint32_t g = 0;
    if (!r.u32(&g)) return false;
    s->groups[i] = g;
  }
  s->ngroups = n;
  return true;
}

bool readSeccomp(SpecReader& r, Arena& arena, InitSpec* s) {
  uint32_t n = 0;
  if (!r.u32(&n) || n > shim::kMaxSpecSeccomp) return false;
  s->seccomp = arena.take<sock_filter>(n == 0 ? 1 : n);
  if (s->seccomp == nullptr) return false;
  for (uint32_t i = 0; i < n; i++) {
    sock_filter& f = s->seccomp[i];
    if (!r.u16(&f.code) || !r.u8(&f.jt) || !r.u8(&f.jf) || !r.u32(&f.k)) return false;
  }
  s->seccomp_len = static_cast<uint16_t>(n);
  return true;
}

}  // namespace

size_t specStorageBytes(size_t len) { return 2 * len + 256; }

bool parseSpec(const uint8_t* data, size_t len, void* storage, size_t storage_len, InitSpec* s) {
  if (len > shim::kMaxSpecBytes) return false;
  SpecReader r(data, len);
  Arena arena(storage, storage_len);
  uint32_t magic = 0, version = 0, last_cap = 0;
  if (!r.u32(&magic) || magic != shim::kSpecMagic || !r.u32(&version) ||
      version != shim::kSpecVersion) {
    return false;
  }
  if (!r.u32(&s->flags) || !r.u32(&s->uid) || !r.u32(&s->gid) || !r.u32(&last_cap) ||
      last_cap > 1023) {
    return false;
  }
  s->last_cap = static_cast<int>(last_cap);
  if (!r.u64(&s->nofile_cur) || !r.u64(&s->nofile_max) || !r.u64(&s->output_cap) ||
      !r.u64(&s->deadline_ns) || !r.u64(&s->stop_grace_ms)) {
    return false;
  }
  if (!r.str(&s->hostname, &s->hostname_len) || s->hostname_len > 64 || !r.str(&s->tmp_options) ||
      !r.str(&s->cwd) || !r.str(&s->home) || !r.str(&s->cgroup_leaf)) {
    return false;
  }
  uint32_t argc = 0, ncandidates = 0;
  if (!readGroups(r, arena, s) || !r.list(arena, shim::kMaxSpecArgs, &s->argv, &argc) ||
      !r.list(arena, shim::kMaxSpecEnv, &s->envp) ||
      !r.list(arena, shim::kMaxSpecCandidates, &s->candidates, &ncandidates) ||
      !readSeccomp(r, arena, s)) {
    return false;
  }
  if (argc == 0 || ncandidates == 0) return false;
  if (s->has(shim::kFlagSeccomp) && s->seccomp_len == 0) return false;  // fail closed
  return r.atEnd();
}

}  // namespace jw::init
