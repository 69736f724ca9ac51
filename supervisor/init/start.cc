// jobworker-init's entry point: a static-pie without a C library, so every running job pays only
// for the pages the shim itself touches (a C library's static start-up relocates and initialises
// some 40 KiB of its own data in each process). Before main: apply our own relocations (ASLR
// stays), make RELRO read-only, and load the stack protector's canary from AT_RANDOM. Runs in
// jobworker-init.
#include <asm/prctl.h>
#include <elf.h>
#include <sys/mman.h>
#include <sys/syscall.h>

#include <cstddef>
#include <cstdint>

#include "supervisor/init/raw_syscall.h"

// Defined by the linker, under the names it gives them. Hidden, so that they are reached
// PC-relative before any relocation.
// NOLINTBEGIN(bugprone-reserved-identifier)
extern "C" {
extern const Elf64_Ehdr __ehdr_start __attribute__((visibility("hidden")));
extern Elf64_Dyn _DYNAMIC[] __attribute__((visibility("hidden")));
extern void (*__init_array_start[])() __attribute__((visibility("hidden")));
extern void (*__init_array_end[])() __attribute__((visibility("hidden")));
}
// NOLINTEND(bugprone-reserved-identifier)

// Everything here runs before the canary is in place (and %fs is zero): no stack protector.
#define JW_BEFORE_CANARY __attribute__((no_stack_protector))

namespace jw::init {
namespace {

// What %fs points at: the compilers read the canary at %fs:0x28 (the x86-64 TCB layout), and
// the first word is the thread pointer itself, as the ABI says.
struct ThreadControlBlock {
  ThreadControlBlock* self;
  uintptr_t unused[4];
  uintptr_t stack_guard;
};
static_assert(offsetof(ThreadControlBlock, stack_guard) == 0x28);

alignas(64) ThreadControlBlock tcb;

[[noreturn]] JW_BEFORE_CANARY void die() {
  // Before main nothing can be reported; 127 is what jobworkerd reads as "the shim failed".
  for (;;) rawSyscall(SYS_exit_group, 127);
}

// Only R_X86_64_RELATIVE can occur in a static-pie without a dynamic linker; anything else
// would leave a pointer wrong, so it stops the start (fail closed).
// `image` is where the kernel loaded the binary (its ELF header), `base` the same as a number.
JW_BEFORE_CANARY void relocate(char* image, uintptr_t base) {
  const Elf64_Rela* rela = nullptr;
  size_t rela_bytes = 0;
  for (const Elf64_Dyn* d = _DYNAMIC; d->d_tag != DT_NULL; d++) {
    switch (d->d_tag) {
      case DT_RELA:
        rela = reinterpret_cast<const Elf64_Rela*>(image + d->d_un.d_ptr);
        break;
      case DT_RELASZ:
        rela_bytes = d->d_un.d_val;
        break;
      case DT_RELAENT:
        if (d->d_un.d_val != sizeof(Elf64_Rela)) die();
        break;
      case DT_REL:
      case DT_RELR:
      case DT_JMPREL:
      case DT_NEEDED:
        die();
      default:
        break;
    }
  }
  for (size_t i = 0; i < rela_bytes / sizeof(Elf64_Rela); i++) {
    if (ELF64_R_TYPE(rela[i].r_info) != R_X86_64_RELATIVE) die();
    *reinterpret_cast<uintptr_t*>(image + rela[i].r_offset) =
        base + static_cast<uintptr_t>(rela[i].r_addend);
  }
}

// As ld.so does: the relocated pointers become read-only before any code of ours runs.
JW_BEFORE_CANARY void protectRelro(const char* image, uintptr_t base, uintptr_t page_size) {
  const auto* ph = reinterpret_cast<const Elf64_Phdr*>(image + __ehdr_start.e_phoff);
  for (unsigned i = 0; i < __ehdr_start.e_phnum; i++) {
    if (ph[i].p_type != PT_GNU_RELRO) continue;
    uintptr_t start = (base + ph[i].p_vaddr) & ~(page_size - 1);
    uintptr_t end = (base + ph[i].p_vaddr + ph[i].p_memsz) & ~(page_size - 1);
    if (end > start && isSyscallError(rawSyscall(SYS_mprotect, static_cast<long>(start),
                                                 static_cast<long>(end - start), PROT_READ))) {
      die();
    }
  }
}

// The canary from the kernel's 16 random bytes; its low byte zero, as glibc does, so that a
// string overflow cannot write it back and a string read cannot leak it.
JW_BEFORE_CANARY void setUpCanary(const uint8_t* random) {
  if (random == nullptr) die();
  uintptr_t guard = 0;
  for (size_t i = 0; i < sizeof guard; i++) guard |= static_cast<uintptr_t>(random[i]) << (8 * i);
  tcb.self = &tcb;
  tcb.stack_guard = guard & ~uintptr_t{0xff};
  if (rawSyscall(SYS_arch_prctl, ARCH_SET_FS, reinterpret_cast<long>(&tcb)) != 0) die();
}

}  // namespace

// Called by _start with the initial stack: argc, argv..., nullptr, envp..., nullptr, auxv.
extern "C" JW_BEFORE_CANARY __attribute__((used)) void jwInitStart(uintptr_t* sp) {
  // The loaded image starts at its ELF header; relocation writes into it (never the header).
  auto* image = const_cast<char*>(reinterpret_cast<const char*>(&__ehdr_start));
  const auto base = reinterpret_cast<uintptr_t>(image);
  uintptr_t** envp = reinterpret_cast<uintptr_t**>(sp + 1 + sp[0] + 1);
  while (*envp != nullptr) envp++;
  uintptr_t page_size = 4096;
  const uint8_t* random = nullptr;
  for (auto* aux = reinterpret_cast<Elf64_auxv_t*>(envp + 1); aux->a_type != AT_NULL; aux++) {
    if (aux->a_type == AT_PAGESZ) page_size = aux->a_un.a_val;
    // NOLINTNEXTLINE(performance-no-int-to-ptr): the kernel hands the address as a number
    if (aux->a_type == AT_RANDOM) random = reinterpret_cast<const uint8_t*>(aux->a_un.a_val);
  }
  relocate(image, base);
  protectRelro(image, base, page_size);
  setUpCanary(random);
  for (void (**f)() = __init_array_start; f != __init_array_end; f++) (*f)();
}

}  // namespace jw::init

// The kernel enters here with %rsp at argc (16-byte aligned). main takes no arguments: the shim
// reads its spec from a descriptor, never from argv or the environment.
asm(R"(
  .text
  .globl _start
  .type _start, @function
_start:
  endbr64
  xor %ebp, %ebp
  mov %rsp, %rdi
  and $-16, %rsp
  call jwInitStart
  call main
  mov %eax, %edi
  mov $231, %eax
  syscall
  hlt
  .size _start, . - _start
)");
