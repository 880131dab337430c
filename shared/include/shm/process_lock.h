// ProcessLock: a named mutual-exclusion lock held by a process, in one word of shared memory.
//
// The whole state is one 64-bit word in the object's registry entry (its own cache line, the one
// a counter keeps its value in): 0 when free, else the holder's pid, its start time (so a reused
// pid is not taken for the holder) and a flag saying that a waiter may sleep. Acquire is one
// compare-and-swap 0 -> holder, release one swap back to 0, and a contended hand-off touches
// that line only; a release makes the wake system call only when a waiter set the flag.
//
// Crash safety: the word is the only truth, so there is nothing half-done to repair. A process
// killed while holding the lock leaves its pid in the word; a waiter that finds that process gone
// takes the lock over with a compare-and-swap and is told so (owner_died). A waiter killed after
// flagging the word costs the next release one spare wake. docs/crash-protocol.md, "Process
// locks".
//
// Like the stdlib's threading.Lock (the Python Manager's Lock is one), the lock is not reentrant
// and any process may release it, not only its holder.
//
// Process-safety: a ProcessLock is a cheap process-local handle; copy it freely and use it from
// any thread of any attached process. Waits spin a few microseconds at most, then sleep on a
// futex. Once the object is deleted, every call answers NotFound, and the deletion wakes its
// sleepers, which then answer NotFound.
#ifndef SHM_PROCESS_LOCK_H_
#define SHM_PROCESS_LOCK_H_

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <string_view>

#include "shm/registry.h"
#include "shm/status.h"

namespace shm {

class ProcessLock {
 public:
  ProcessLock() = default;

  // Opens the lock `name`, creating it (free) when missing and `mode` allows.
  static Status Open(Segment* segment, std::string_view name, OpenMode mode, ProcessLock* result,
                     bool* created = nullptr);

  // One compare-and-swap: *acquired tells whether this process took the lock. It does not wait,
  // and does not look for a dead holder (TryAcquireOrTakeOver does).
  Status TryAcquire(bool* acquired) {
    SHM_RETURN_IF_ERROR(CheckLive());
    int64_t free_word = 0;
    *acquired =
        word_->compare_exchange_strong(free_word, static_cast<int64_t>(MyWord()),
                                       std::memory_order_acquire, std::memory_order_relaxed);
    return *acquired ? AfterTake(acquired) : Status::OK();
  }
  // Takes the lock, waiting at most `timeout` (0: no wait; any duration: then *acquired false).
  // A holder found dead is taken over: *owner_died true then. Waits spin a few microseconds,
  // then sleep on the word's futex; each sleep that ends with the word unchanged, and a wait
  // about to fail, checks whether the holder is still alive.
  Status Acquire(std::chrono::nanoseconds timeout, bool* acquired, bool* owner_died);
  // Frees the lock, whoever holds it; wakes the sleepers if one flagged the word. Conflict
  // ("release unlocked lock") when it is free.
  Status Release();
  // Whether it is held (by a live process or not).
  Status Locked(bool* locked) const;
  // The holder's pid, 0 when free.
  Status Holder(pid_t* pid) const;

  const ObjectRef& ref() const { return ref_; }

  // The word's layout: the holder's pid in the low bits (Linux pids stay below 2^22), the
  // waiters flag above them, and the holder's start time (low 32 bits) in the high half. The
  // futex is the low half: every change that matters to a sleeper (a release, a take-over)
  // changes it.
  static constexpr uint64_t kPidMask = (uint64_t{1} << 30) - 1;
  static constexpr uint64_t kWaiters = uint64_t{1} << 30;
  // This process's holder word (without the flag).
  static uint64_t MyWord();

 private:
  explicit ProcessLock(const ObjectRef& ref);
  Status CheckLive() const;
  // After a successful take: NotFound (the lock given back, *acquired false) if the object went
  // away between the check and the take.
  Status AfterTake(bool* acquired);

  ObjectRef ref_;
  std::atomic<int64_t>* word_ = nullptr;  // EntryRep::counter, in this process's mapping.
};

}  // namespace shm

#endif  // SHM_PROCESS_LOCK_H_
