// WakeWatch: lets one thread sleep until another thread or process changes any of a set of
// objects (a push to a list, a release of a lock, a delete of either), so a front end's parked
// waits (shm/wait_queue.h) are retried at once instead of at their next poll.
//
// Writers already wake the blocked waiters of an object through the futex word of its registry
// entry; a watched list counts the watch as one blocked pop, so that its pushes wake, and each
// Wait marks the watched words wanted, so that a lock's release wakes (src/futex.h). Wait is one
// futex_waitv(2) over the words of the watched objects (at most kMaxWatched), one raw word of
// the segment (WatchWord) and the watch's own interrupt word. Objects past kMaxWatched, and a
// kernel without futex_waitv (Linux < 5.16), leave the caller to its poll.
//
// Process-safety: a process killed while it watches a list leaves the list counting a waiter
// that is gone; that costs a spare wake per push, never a lost one (as a killed blocked pop). A
// process killed in Wait leaves its words marked wanted: one spare wake at the next release.
// Thread-safety: Watch, Unwatch and Interrupt from any thread; Wait from one thread at a time.
// Process-local: never in shared memory.
#ifndef SHM_WAKE_WATCH_H_
#define SHM_WAKE_WATCH_H_

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>

#include "shm/mutex.h"
#include "shm/registry.h"
#include "shm/thread_annotations.h"

namespace shm {

class WakeWatch {
 public:
  // futex_waitv takes 128 words: two are the interrupt and WatchWord's.
  static constexpr size_t kMaxWatched = 126;

  WakeWatch() = default;
  ~WakeWatch();  // Unwatches everything.
  WakeWatch(const WakeWatch&) = delete;
  WakeWatch& operator=(const WakeWatch&) = delete;

  // Watches `ref` until Unwatch (a second Watch of the same object is a no-op). False when
  // kMaxWatched objects are watched already, or the object is gone.
  bool Watch(const ObjectRef& ref);
  void Unwatch(const ObjectRef& ref);
  // Also watches `word`, a process-shared futex word in the segment (one at a time; nullptr
  // stops), for as long as the watch lives.
  void WatchWord(std::atomic<uint32_t>* word);
  // Sleeps until a watched object changed since the last Wait returned (or since it was
  // watched), Interrupt was called, or `timeout` passed. True unless the timeout passed.
  bool Wait(std::chrono::nanoseconds timeout);
  // Makes the current Wait (or the next one) return at once.
  void Interrupt();
  size_t watched() const;

 private:
  struct Watched {
    ObjectRef ref;
    uint32_t seen;  // The entry's futex word when last consumed.
  };

  mutable Mutex mu_;
  std::map<const void*, Watched> watched_ GUARDED_BY(mu_);  // By entry.
  std::atomic<uint32_t>* word_ GUARDED_BY(mu_) = nullptr;
  uint32_t word_seen_ GUARDED_BY(mu_) = 0;
  std::atomic<uint32_t> interrupt_{0};
  uint32_t interrupt_seen_ GUARDED_BY(mu_) = 0;
};

}  // namespace shm

#endif  // SHM_WAKE_WATCH_H_
