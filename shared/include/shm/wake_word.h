// WakeWord: block until another process announces a change of a named object, and announce one.
//
// Every registry entry carries a 32-bit futex sequence word (blocked list pops and lease waits
// sleep on it). A WakeWord exposes that word for objects whose state an application keeps in an
// ordinary kind (the Python Manager keeps a Lock's or an Event's state in a dict entry, committed
// by compare-and-set): read Sequence(), check the state, then Wait(seen) sleeps until a WakeAll()
// that follows a change. The word carries no state of its own, so a process killed while waiting
// or waking leaves nothing to repair; a waker killed between its commit and its WakeAll costs the
// waiters at most their own timeout, which is why they always pass one.
//
// Process-safety: a cheap process-local handle; use it from any thread. Once the object is
// deleted, the registry bumps the word, so waiters wake and find the object gone.
#ifndef SHM_WAKE_WORD_H_
#define SHM_WAKE_WORD_H_

#include <chrono>
#include <cstdint>
#include <string_view>

#include "shm/registry.h"
#include "shm/status.h"

namespace shm {

class WakeWord {
 public:
  WakeWord() = default;

  // The word of the existing object `name` of `kind`: NotFound if absent, WrongType if another
  // kind.
  static Status Open(Segment* segment, std::string_view name, ObjectKind kind, WakeWord* result);

  // The word of an object already open (a keyspace's: Redis blocked pops, shm/block_lines.h).
  static WakeWord Of(const ObjectRef& ref) { return WakeWord(ref); }

  uint32_t Sequence() const;
  // Sleeps while the sequence is still `seen`, at most `timeout`; returns early on a wake, a
  // change or a signal (the caller re-checks its state either way). Before the sleep it watches
  // the word for at most a few microseconds (src/futex.h: bounded, with more than one CPU only,
  // and not on a word whose recent spins did not pay), then marks the word wanted.
  void Wait(uint32_t seen, std::chrono::nanoseconds timeout) const;
  // Bumps the sequence and wakes every waiter.
  void WakeAll() const;
  // Bumps the sequence, and wakes with a system call only if a sleeper of Wait marked the word
  // (so a change its waiter saw while spinning costs no system call). Only for words whose
  // sleepers all sleep in Wait (a Manager object's); a list's blocking pop does not mark it.
  void WakeWaiters() const;

  const ObjectRef& ref() const { return ref_; }

 private:
  explicit WakeWord(const ObjectRef& ref) : ref_(ref) {}

  ObjectRef ref_;
};

}  // namespace shm

#endif  // SHM_WAKE_WORD_H_
