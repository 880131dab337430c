// CpuRelax: the pause a spinning thread takes between two looks at a word it waits on, so that it
// yields the core's pipeline to a sibling hyperthread and does not flood the memory bus.
#ifndef SHM_SRC_CPU_RELAX_H_
#define SHM_SRC_CPU_RELAX_H_

namespace shm {

inline void CpuRelax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

}  // namespace shm

#endif  // SHM_SRC_CPU_RELAX_H_
