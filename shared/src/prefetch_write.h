// PrefetchForWrite: asks for a cache line in the exclusive state ahead of a read-then-write.
//
// Under a lock two processes take in turns, a word read and then written crosses from the last
// holder's core twice: shared on the read (the other core keeps an owned copy), then upgraded for
// the write. Asked for with the intent to write, it crosses once. A hint only: no effect on
// correctness, on any thread of any process.
#ifndef SHM_SRC_PREFETCH_WRITE_H_
#define SHM_SRC_PREFETCH_WRITE_H_

namespace shm {

inline void PrefetchForWrite(const void* address) {
#if defined(__x86_64__)
  // PREFETCHW (AMD since K8, Intel since Broadwell; a NOP before). GCC emits a read prefetch for
  // __builtin_prefetch(p, 1) unless built for a CPU with PRFCHW, hence the instruction itself.
  asm volatile("prefetchw %0" : : "m"(*static_cast<const char*>(address)));
#else
  __builtin_prefetch(address, 1);
#endif
}

}  // namespace shm

#endif  // SHM_SRC_PREFETCH_WRITE_H_
