// Blocking waits across processes on a 32-bit sequence word in the segment.
//
// Process-shared condition variables hang after a waiter is killed (docs/design.md, "Rules of the
// segment"), and C++20 atomic::wait is private to one process, so waiters sleep on a raw shared
// futex: read the sequence, check the condition under the object lock, unlock, then FutexWait(seq,
// seen). Wakers bump the sequence after changing the state and call FutexWakeAll. A waiter leaves
// no state behind, so a killed waiter costs nothing.
//
// Before it sleeps, a waiter watches the word for a few microseconds (SpinAdvisor below): a
// sleep and a wake between two processes cost more than that, so a change that comes within the
// spin saves the whole hand-off. The spin is bounded (kSpinBudget, and the caller's timeout),
// happens only with more than one online CPU, and stops on a word whose spins did not pay
// recently; it reads the word with plain loads, so it does not take the line from the waker.
#ifndef SHM_SRC_FUTEX_H_
#define SHM_SRC_FUTEX_H_

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>

#include "cpu_relax.h"

namespace shm {

// The longest a waiter watches its word before the futex sleep. A hand-off through a sleep costs
// 9-14 us on the 2-vCPU machine this was tuned on (bench/manager_compare.py's bare futex
// ping-pong: 36-58k round trips/s, two hand-offs each): a spin below one hand-off costs less
// than what it can save, and still covers a running peer's next step through the native proxy
// methods (an Event set back, a Lock released: one or two library calls of well under 1 us
// each, plus the interpreter between them).
inline constexpr std::chrono::nanoseconds kSpinBudget{6'000};

// Whether spinning before a sleep paid lately, per word, in this process: a spin that saw the
// word change (paid) keeps the word's credit full; one that did not takes a unit off; a word
// without credit is spun on only at a probe, so that it earns its credit back when its waker
// speeds up: the kProbeEvery-th wait, and twice as far apart after each probe that did not pay
// (up to kMaxProbeEvery), so that where spins never pay (a loaded machine, where a sleeper's wake
// takes longer than the spin) they cost about nothing. A fixed table indexed by the word's
// address: two words that share a place reset each other's record, which costs only a spin or
// two. Thread-safe (relaxed atomics: the advice is a heuristic, a lost update only moves it by a
// step).
class SpinAdvisor {
 public:
  static constexpr int32_t kFreshCredit = 4;  // A new word: four spins that do not pay, then stop.
  static constexpr int32_t kFullCredit = 8;   // After a spin that paid.
  static constexpr uint32_t kProbeEvery = 16;
  static constexpr uint32_t kMaxProbeEvery = 1024;

  // Whether the next wait on `word` should spin first.
  bool ShouldSpin(const void* word);
  // What that spin found: whether the word changed within it.
  void Record(const void* word, bool paid);

  // The process's advisor, used by FutexWait.
  static SpinAdvisor& Get();

 private:
  struct Place {
    std::atomic<uintptr_t> word{0};
    std::atomic<int32_t> credit{0};
    std::atomic<uint32_t> skipped{0};  // Waits without a spin since the last probe.
    std::atomic<uint32_t> probe_every{kProbeEvery};
  };
  static constexpr size_t kPlaces = 64;
  Place& PlaceOf(const void* word);

  Place places_[kPlaces];
};

// Whether this machine has more than one online CPU: with one, a spinner only delays its waker.
bool SeveralCpus();

// The bounded spin before a sleep, on any word: at most min(kSpinBudget, timeout), only with
// several CPUs and when the advisor says so for `word`; true as soon as changed() (plain loads,
// so the spinner does not take the line from its waker). *spent is the time spun.
template <class Changed>
bool BoundedSpin(const void* word, std::chrono::nanoseconds timeout, Changed&& changed,
                 std::chrono::nanoseconds* spent);

// The system calls alone, on the 32-bit futex word at `word` (for a word packed into a wider
// atomic, its low half): sleeps while it is `seen`, at most `timeout`; wakes every sleeper.
void FutexSleep(const void* word, uint32_t seen, std::chrono::nanoseconds timeout);
void FutexWakeSleepers(const void* word);

// Sleeps while *word == seen, at most `timeout`, after a bounded spin (SpinAdvisor). Returns
// early on a wake, a change seen while spinning, or a signal.
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
// The bounded spin, then MarkWakeWanted and the sleep: a change that comes while spinning costs
// its waker no system call.
void FutexWaitWanted(std::atomic<uint32_t>* word, std::atomic<uint32_t>* wanted, uint32_t seen,
                     std::chrono::nanoseconds timeout);
// Bumps the sequence, and wakes every waiter if the word was wanted (clearing the flag).
void FutexWakeIfWanted(std::atomic<uint32_t>* word, std::atomic<uint32_t>* wanted);

template <class Changed>
bool BoundedSpin(const void* word, std::chrono::nanoseconds timeout, Changed&& changed,
                 std::chrono::nanoseconds* spent) {
  *spent = std::chrono::nanoseconds(0);
  if (!SeveralCpus()) return false;
  SpinAdvisor& advisor = SpinAdvisor::Get();
  if (!advisor.ShouldSpin(word)) return false;
  const auto budget = std::min(kSpinBudget, timeout);
  const auto start = std::chrono::steady_clock::now();
  bool done = false;
  while (!done && *spent < budget) {  // The clock is read every few pauses only.
    for (int i = 0; i < 16 && !done; ++i) {
      done = changed();
      if (!done) CpuRelax();
    }
    *spent = std::chrono::steady_clock::now() - start;
  }
  advisor.Record(word, done);
  return done;
}

}  // namespace shm

#endif  // SHM_SRC_FUTEX_H_
