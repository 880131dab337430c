// The in-segment state of a ProcessLock (shm/process_lock.h): one 64-bit word, the EntryRep's
// `counter` (a process lock has no body). Its bits, as ProcessLock::kPidMask and kWaiters say:
// 0 free; else the holder's pid, the waiters flag, and the holder's start time in the high half.
// The futex its sleepers sleep on is the word's low half (pid and flag): a release and a
// take-over both change it.
#ifndef SHM_SRC_PROCESS_LOCK_REP_H_
#define SHM_SRC_PROCESS_LOCK_REP_H_

#include <atomic>
#include <bit>
#include <cstdint>

#include "layout.h"

namespace shm {

static_assert(std::endian::native == std::endian::little,
              "a process lock's futex is the low half of its 64-bit word");
static_assert(std::atomic<int64_t>::is_always_lock_free);

inline std::atomic<int64_t>* ProcessLockWord(EntryRep* entry) { return &entry->counter; }
// The futex word: the low 32 bits of the lock word.
inline const void* ProcessLockFutex(const std::atomic<int64_t>* word) { return word; }
inline uint32_t ProcessLockFutexValue(int64_t word) {
  return static_cast<uint32_t>(static_cast<uint64_t>(word));
}

// Called by the registry once it deleted the process lock `entry` (before the entry is reused):
// frees the word and wakes its sleepers, which find the object gone.
void WakeDeletedProcessLock(EntryRep* entry);

}  // namespace shm

#endif  // SHM_SRC_PROCESS_LOCK_REP_H_
