// Blocking waits across processes on a 32-bit sequence word in the segment.
//
// Process-shared condition variables hang after a waiter is killed (docs/design.md, "Rules of the
// segment"), and C++20 atomic::wait is private to one process, so waiters sleep on a raw shared
// futex: read the sequence, check the condition under the object lock, unlock, then FutexWait(seq,
// seen). Wakers bump the sequence after changing the state and call FutexWakeAll. A waiter leaves
// no state behind, so a killed waiter costs nothing.
#ifndef SHM_SRC_FUTEX_H_
#define SHM_SRC_FUTEX_H_

#include <atomic>
#include <chrono>
#include <cstdint>

namespace shm {

// Sleeps while *word == seen, at most `timeout`. Returns early on a wake or a signal.
void FutexWait(std::atomic<uint32_t>* word, uint32_t seen, std::chrono::nanoseconds timeout);
// Bumps the sequence and wakes every waiter.
void FutexWakeAll(std::atomic<uint32_t>* word);

}  // namespace shm

#endif  // SHM_SRC_FUTEX_H_
