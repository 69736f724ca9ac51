// The x86-64 system call instruction for jobworker-init's own runtime (start.cc, syscalls.cc),
// which links no C library. Runs in jobworker-init.
#pragma once

#if !defined(__x86_64__)
#error "jobworker-init's runtime is written for x86-64 Linux"
#endif

namespace jw::init {

// The kernel's return value: -4095..-1 is -errno, anything else the result.
inline long rawSyscall(long n, long a = 0, long b = 0, long c = 0, long d = 0, long e = 0,
                       long f = 0) {
  long ret;
  register long r10 asm("r10") = d;
  register long r8 asm("r8") = e;
  register long r9 asm("r9") = f;
  asm volatile("syscall"
               : "=a"(ret)
               : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9)
               : "rcx", "r11", "memory");
  return ret;
}

inline bool isSyscallError(long ret) { return ret < 0 && ret > -4096; }

}  // namespace jw::init
