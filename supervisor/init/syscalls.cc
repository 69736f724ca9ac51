// The C library functions jobworker-init calls, each a plain system call (start.cc says why the
// shim links no C library). Declared by the C library's own headers, which the compiler checks
// these definitions against; compiled without _FORTIFY_SOURCE, whose inline wrappers would be
// second definitions. The shim is single-threaded: errno is one variable, fork is a bare clone,
// set*id need no broadcast to other threads. Runs in jobworker-init.
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdarg>
#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "supervisor/init/raw_syscall.h"

namespace {

using jw::init::isSyscallError;
using jw::init::rawSyscall;

int errno_value = 0;

// The C convention: -1 and errno on failure.
long result(long ret) {
  if (isSyscallError(ret)) {
    errno_value = static_cast<int>(-ret);
    return -1;
  }
  return ret;
}

// A system call's argument register holds a pointer or an integer alike.
template <typename T>
long arg(T v) {
  if constexpr (std::is_pointer_v<T> || std::is_null_pointer_v<T>) {
    return reinterpret_cast<long>(v);
  } else {
    return static_cast<long>(v);
  }
}

template <typename... Args>
long sys(long n, Args... args) {
  return result(rawSyscall(n, arg(args)...));
}

// The kernel's sigset is 64 bits: the first word of the C library's 1024-bit sigset_t.
constexpr long kKernelSigsetBytes = 8;
static_assert(NSIG - 1 <= kKernelSigsetBytes * 8);

// The kernel's flag for sa_restorer (the C library's headers do not export it).
constexpr unsigned long kSaRestorer = 0x04000000;

struct KernelSigaction {
  void (*handler)(int);
  unsigned long flags;
  void (*restorer)();
  uint64_t mask;
};

uint64_t kernelMask(const sigset_t* set) {
  uint64_t m = 0;
  __builtin_memcpy(&m, set, sizeof m);
  return m;
}

}  // namespace

// A handler returns through rt_sigreturn; x86-64 needs the trampoline named in SA_RESTORER.
extern "C" void jwInitSigreturn();
asm(R"(
  .text
  .type jwInitSigreturn, @function
jwInitSigreturn:
  mov $15, %eax
  syscall
  hlt
  .size jwInitSigreturn, . - jwInitSigreturn
)");

// The C library's names, reserved for it, which the shim's code and its compilers call.
// NOLINTBEGIN(bugprone-reserved-identifier)
extern "C" {

int* __errno_location() noexcept { return &errno_value; }

// What -fstack-protector calls when a canary was overwritten: stop at once. A trap, because a
// fault's signal reaches even PID 1 of a namespace, where a raised SIGABRT would be ignored.
[[noreturn]] void __stack_chk_fail() { __builtin_trap(); }

void _exit(int status) {  // noreturn, as <unistd.h> declares it
  for (;;) rawSyscall(SYS_exit_group, status);
}

ssize_t read(int fd, void* buf, size_t n) { return sys(SYS_read, fd, buf, n); }
ssize_t write(int fd, const void* buf, size_t n) { return sys(SYS_write, fd, buf, n); }
ssize_t pwrite64(int fd, const void* buf, size_t n, off64_t off) {
  return sys(SYS_pwrite64, fd, buf, n, off);
}
int close(int fd) { return static_cast<int>(sys(SYS_close, fd)); }
int dup2(int from, int to) noexcept { return static_cast<int>(sys(SYS_dup2, from, to)); }
int pipe2(int fds[2], int flags) noexcept { return static_cast<int>(sys(SYS_pipe2, fds, flags)); }

int open64(const char* path, int flags, ...) {
  mode_t mode = 0;
  if ((flags & O_CREAT) != 0 || (flags & O_TMPFILE) == O_TMPFILE) {
    va_list ap;
    va_start(ap, flags);
    mode = va_arg(ap, mode_t);
    va_end(ap);
  }
  return static_cast<int>(sys(SYS_openat, AT_FDCWD, path, flags, mode));
}

int fcntl64(int fd, int cmd, ...) {
  va_list ap;
  va_start(ap, cmd);
  unsigned long arg = va_arg(ap, unsigned long);
  va_end(ap);
  return static_cast<int>(sys(SYS_fcntl, fd, cmd, arg));
}

int ioctl(int fd, unsigned long request, ...) noexcept {
  va_list ap;
  va_start(ap, request);
  void* arg = va_arg(ap, void*);
  va_end(ap);
  return static_cast<int>(sys(SYS_ioctl, fd, request, arg));
}

// x86-64's struct stat is the kernel's.
static_assert(sizeof(struct stat64) == 144);
int fstat64(int fd, struct stat64* st) noexcept { return static_cast<int>(sys(SYS_fstat, fd, st)); }

void* mmap64(void* addr, size_t len, int prot, int flags, int fd, off64_t off) noexcept {
  long ret = rawSyscall(SYS_mmap, reinterpret_cast<long>(addr), static_cast<long>(len), prot, flags,
                        fd, off);
  return reinterpret_cast<void*>(result(ret));  // NOLINT(performance-no-int-to-ptr): an address
}
int munmap(void* addr, size_t len) noexcept { return static_cast<int>(sys(SYS_munmap, addr, len)); }

ssize_t splice(int in, loff_t* in_off, int out, loff_t* out_off, size_t len, unsigned flags) {
  return sys(SYS_splice, in, in_off, out, out_off, len, flags);
}

ssize_t send(int fd, const void* buf, size_t n, int flags) {
  return sys(SYS_sendto, fd, buf, n, flags, nullptr, 0);
}
ssize_t recv(int fd, void* buf, size_t n, int flags) {
  return sys(SYS_recvfrom, fd, buf, n, flags, nullptr, nullptr);
}
int socket(int domain, int type, int protocol) noexcept {
  return static_cast<int>(sys(SYS_socket, domain, type, protocol));
}

int poll(struct pollfd* fds, nfds_t n, int timeout) {
  return static_cast<int>(sys(SYS_poll, fds, n, timeout));
}

// vDSO-less: the shim reads the clock a few times per 10 ms at most.
int clock_gettime(clockid_t clock, struct timespec* ts) noexcept {
  return static_cast<int>(sys(SYS_clock_gettime, clock, ts));
}
int timerfd_create(clockid_t clock, int flags) noexcept {
  return static_cast<int>(sys(SYS_timerfd_create, clock, flags));
}
int timerfd_settime(int fd, int flags, const struct itimerspec* value,
                    struct itimerspec* old) noexcept {
  return static_cast<int>(sys(SYS_timerfd_settime, fd, flags, value, old));
}

int sigemptyset(sigset_t* set) noexcept {
  __builtin_memset(set, 0, sizeof *set);
  return 0;
}
int sigaddset(sigset_t* set, int sig) noexcept {
  if (sig <= 0 || sig >= NSIG) {
    errno_value = EINVAL;
    return -1;
  }
  constexpr size_t kWordBits = 8 * sizeof(unsigned long);
  auto* words = reinterpret_cast<unsigned long*>(set);
  words[static_cast<size_t>(sig - 1) / kWordBits] |= 1UL
                                                     << (static_cast<size_t>(sig - 1) % kWordBits);
  return 0;
}
int sigprocmask(int how, const sigset_t* set, sigset_t* old) noexcept {
  return static_cast<int>(sys(SYS_rt_sigprocmask, how, set, old, kKernelSigsetBytes));
}
int sigaction(int sig, const struct sigaction* act, struct sigaction* old) noexcept {
  KernelSigaction k{}, k_old{};
  if (act != nullptr) {
    k.handler = act->sa_handler;
    k.flags = static_cast<unsigned long>(act->sa_flags) | kSaRestorer;
    k.restorer = jwInitSigreturn;
    k.mask = kernelMask(&act->sa_mask);
  }
  long ret = sys(SYS_rt_sigaction, sig, act != nullptr ? &k : nullptr,
                 old != nullptr ? &k_old : nullptr, kKernelSigsetBytes);
  if (ret == 0 && old != nullptr) {
    __builtin_memset(old, 0, sizeof *old);
    old->sa_handler = k_old.handler;
    old->sa_flags = static_cast<int>(k_old.flags);
    __builtin_memcpy(&old->sa_mask, &k_old.mask, sizeof k_old.mask);
  }
  return static_cast<int>(ret);
}
int signalfd(int fd, const sigset_t* mask, int flags) noexcept {
  return static_cast<int>(sys(SYS_signalfd4, fd, mask, kKernelSigsetBytes, flags));
}
int kill(pid_t pid, int sig) noexcept { return static_cast<int>(sys(SYS_kill, pid, sig)); }

pid_t fork() noexcept { return static_cast<pid_t>(sys(SYS_clone, SIGCHLD, 0, 0, 0, 0)); }
pid_t wait4(pid_t pid, int* status, int options, struct rusage* usage) noexcept {
  return static_cast<pid_t>(sys(SYS_wait4, pid, status, options, usage));
}
pid_t waitpid(pid_t pid, int* status, int options) {
  return static_cast<pid_t>(sys(SYS_wait4, pid, status, options, nullptr));
}
int execve(const char* path, char* const argv[], char* const envp[]) noexcept {
  return static_cast<int>(sys(SYS_execve, path, argv, envp));
}
// glibc declares the request an enum, which clang calls undefined before va_start; on x86-64
// va_start reads the register save area and the enum's position does not matter.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wvarargs"
long ptrace(enum __ptrace_request request, ...) noexcept {
  va_list ap;
  va_start(ap, request);
  pid_t pid = va_arg(ap, pid_t);
  void* addr = va_arg(ap, void*);
  void* data = va_arg(ap, void*);
  va_end(ap);
  return sys(SYS_ptrace, request, pid, addr, data);
}
#pragma GCC diagnostic pop

pid_t setsid() noexcept { return static_cast<pid_t>(sys(SYS_setsid)); }
int setpgid(pid_t pid, pid_t pgid) noexcept {
  return static_cast<int>(sys(SYS_setpgid, pid, pgid));
}
int setgroups(size_t n, const gid_t* groups) noexcept {
  return static_cast<int>(sys(SYS_setgroups, n, groups));
}
int setresuid(uid_t r, uid_t e, uid_t s) noexcept {
  return static_cast<int>(sys(SYS_setresuid, r, e, s));
}
int setresgid(gid_t r, gid_t e, gid_t s) noexcept {
  return static_cast<int>(sys(SYS_setresgid, r, e, s));
}
int setrlimit64(__rlimit_resource_t resource, const struct rlimit64* limit) noexcept {
  return static_cast<int>(sys(SYS_prlimit64, 0, resource, limit, nullptr));
}
mode_t umask(mode_t mask) noexcept { return static_cast<mode_t>(rawSyscall(SYS_umask, mask)); }
int prctl(int option, ...) noexcept {
  va_list ap;
  va_start(ap, option);
  unsigned long a = va_arg(ap, unsigned long), b = va_arg(ap, unsigned long);
  unsigned long c = va_arg(ap, unsigned long), d = va_arg(ap, unsigned long);
  va_end(ap);
  return static_cast<int>(sys(SYS_prctl, option, a, b, c, d));
}
long syscall(long n, ...) noexcept {
  va_list ap;
  va_start(ap, n);
  long a = va_arg(ap, long), b = va_arg(ap, long), c = va_arg(ap, long);
  long d = va_arg(ap, long), e = va_arg(ap, long), f = va_arg(ap, long);
  va_end(ap);
  return result(rawSyscall(n, a, b, c, d, e, f));
}

int chdir(const char* path) noexcept { return static_cast<int>(sys(SYS_chdir, path)); }
int mkdir(const char* path, mode_t mode) noexcept {
  return static_cast<int>(sys(SYS_mkdir, path, mode));
}
int mount(const char* source, const char* target, const char* type, unsigned long flags,
          const void* data) noexcept {
  return static_cast<int>(sys(SYS_mount, source, target, type, flags, data));
}
int unshare(int flags) noexcept { return static_cast<int>(sys(SYS_unshare, flags)); }
int sethostname(const char* name, size_t len) noexcept {
  return static_cast<int>(sys(SYS_sethostname, name, len));
}

// The string functions the shim and the compilers use. In assembly or plain loops that no
// compiler turns back into a call to themselves.
void* memcpy(void* dst, const void* src, size_t n) {
  void* d = dst;
  asm volatile("rep movsb" : "+D"(d), "+S"(src), "+c"(n) : : "memory");
  return dst;
}
void* memmove(void* dst, const void* src, size_t n) {
  if (reinterpret_cast<uintptr_t>(dst) - reinterpret_cast<uintptr_t>(src) >= n) {
    return memcpy(dst, src, n);  // no overlap that a forward copy would clobber
  }
  auto* d = static_cast<unsigned char*>(dst) + n - 1;
  const auto* s = static_cast<const unsigned char*>(src) + n - 1;
  asm volatile("std\n\trep movsb\n\tcld" : "+D"(d), "+S"(s), "+c"(n) : : "memory");
  return dst;
}
void* memset(void* dst, int c, size_t n) {
  void* d = dst;
  asm volatile("rep stosb" : "+D"(d), "+c"(n) : "a"(c) : "memory");
  return dst;
}
int memcmp(const void* a, const void* b, size_t n) {
  const auto* x = static_cast<const unsigned char*>(a);
  const auto* y = static_cast<const unsigned char*>(b);
  for (size_t i = 0; i < n; i++) {
    if (x[i] != y[i]) return x[i] < y[i] ? -1 : 1;
  }
  return 0;
}
void* memchr(const void* p, int c, size_t n) {
  const auto* s = static_cast<const unsigned char*>(p);
  for (size_t i = 0; i < n; i++) {
    if (s[i] == static_cast<unsigned char>(c)) return const_cast<unsigned char*>(s + i);
  }
  return nullptr;
}
// clang calls bcmp where only equality matters.
int bcmp(const void* a, const void* b, size_t n) { return memcmp(a, b, n); }
size_t strlen(const char* s) {
  size_t n = 0;
  while (s[n] != '\0') n++;
  return n;
}
char* strchr(const char* s, int c) {
  for (;; s++) {
    if (*s == static_cast<char>(c)) return const_cast<char*>(s);
    if (*s == '\0') return nullptr;
  }
}

// _FORTIFY_SOURCE's checked variants, which callers reach when the compiler knows the buffer's
// size but not the length: a length past the buffer stops the shim, as glibc's __chk_fail does.
void* __memcpy_chk(void* dst, const void* src, size_t n, size_t dst_len) {
  if (n > dst_len) __builtin_trap();
  return memcpy(dst, src, n);
}
void* __memmove_chk(void* dst, const void* src, size_t n, size_t dst_len) {
  if (n > dst_len) __builtin_trap();
  return memmove(dst, src, n);
}
void* __memset_chk(void* dst, int c, size_t n, size_t dst_len) {
  if (n > dst_len) __builtin_trap();
  return memset(dst, c, n);
}
ssize_t __read_chk(int fd, void* buf, size_t n, size_t buf_len) {
  if (n > buf_len) __builtin_trap();
  return read(fd, buf, n);
}
ssize_t __recv_chk(int fd, void* buf, size_t n, size_t buf_len, int flags) {
  if (n > buf_len) __builtin_trap();
  return recv(fd, buf, n, flags);
}

}  // extern "C"
// NOLINTEND(bugprone-reserved-identifier)
