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

// A sequence word with a flag, `wanted`, saying that someone may sleep on it, for a waker that
// is usually alone (a lock's release): a waiter sets the flag before it sleeps and the waker
// makes the wake system call only when it clears a set flag. Both sides are sequentially
// consistent (the waiter stores the flag then the kernel reads the word; the waker bumps the word
// then reads the flag), so a wake is never lost: either the waker sees the flag, or the waiter's
// sleep sees the bumped word and returns at once. The flag carries no count, so a waiter killed
// after setting it costs one spare wake, the next one, and nothing after.
//
// Marks the word wanted; FutexWait then. Also for a waiter that sleeps on several words at once.
void MarkWakeWanted(std::atomic<uint32_t>* wanted);
// MarkWakeWanted, then FutexWait.
void FutexWaitWanted(std::atomic<uint32_t>* word, std::atomic<uint32_t>* wanted, uint32_t seen,
                     std::chrono::nanoseconds timeout);
// Bumps the sequence, and wakes every waiter if the word was wanted (clearing the flag).
void FutexWakeIfWanted(std::atomic<uint32_t>* word, std::atomic<uint32_t>* wanted);

}  // namespace shm

#endif  // SHM_SRC_FUTEX_H_
