// RobustMutex: a process-shared, robust pthread mutex that lives in the segment.
//
// Boost's interprocess_mutex turns a dead owner into a mutex that is broken for good, so every lock
// in the segment is this one (see docs/design.md, "Rules of the segment"). Two policies decide what
// owner death means:
//
//  * kPoison  (allocator and name-index locks): a death inside means the heap may be half-updated.
//    The mutex is made consistent (never NOTRECOVERABLE), marked poisoned, and every later acquire,
//    including waiters already asleep, throws SegmentPoisoned. The manager rebuilds the segment.
//  * kRecover (registry and object locks): the committed state is valid at every instant (COW +
//    intent slots), so the next holder gets the lock with owner_died=true and must repair the
//    object before doing anything else.
//
// The pid of the holder is recorded next to the lock for diagnostics. Process-safety: all methods
// are safe from any thread of any process that maps the segment.
#ifndef SHM_SRC_ROBUST_MUTEX_H_
#define SHM_SRC_ROBUST_MUTEX_H_

#include <pthread.h>
#include <unistd.h>

#include <atomic>
#include <boost/interprocess/detail/timed_utils.hpp>
#include <boost/interprocess/sync/posix/timepoint_to_timespec.hpp>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <stdexcept>

#include "cpu_relax.h"
#include "crash_point.h"
#include "prefetch_write.h"
#include "shm/process_id.h"

namespace shm {

// Thrown only inside the library (by the allocator's and index's locks); converted to
// Status::Poisoned before reaching a caller.
struct SegmentPoisoned : std::runtime_error {
  SegmentPoisoned() : std::runtime_error("segment poisoned: a process died inside the allocator") {}
};

enum class OnOwnerDeath { kPoison, kRecover };

enum class LockResult {
  kAcquired,   // Held; the previous owner released it normally.
  kOwnerDied,  // Held; the previous owner died holding it: repair before anything else.
  kTimedOut,   // Not held.
};

template <bool kRecursive, OnOwnerDeath kPolicy>
class RobustMutexT {
 public:
  RobustMutexT() {
    pthread_mutexattr_t attr;
    pthread_mutexattr_init(&attr);
    pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
    pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST);
    if (kRecursive) pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_RECURSIVE);
    int rc = pthread_mutex_init(&mutex_, &attr);
    pthread_mutexattr_destroy(&attr);
    if (rc != 0) throw std::runtime_error("pthread_mutex_init failed");
  }
  ~RobustMutexT() { pthread_mutex_destroy(&mutex_); }
  RobustMutexT(const RobustMutexT&) = delete;
  RobustMutexT& operator=(const RobustMutexT&) = delete;

  // The interface Boost.Interprocess expects of a MutexFamily member (throws SegmentPoisoned).
  // The allocator's lock is taken this way: it spins before sleeping as LockFor does, since
  // glibc's robust mutexes go to a futex sleep at once, and two processes that push to lists
  // (each refilling its blob cache) then slept and woke each other tens of thousands of times a
  // second, using 1.3 of 2 cores.
  void lock() {
    ThrowIfPoisoned();
    if (SpinToAcquire() != LockResult::kTimedOut) return;
    Handle(pthread_mutex_lock(&mutex_));
  }
  bool try_lock() {
    ThrowIfPoisoned();
    return Handle(pthread_mutex_trylock(&mutex_)) != LockResult::kTimedOut;
  }
  template <class TimePoint>
  bool timed_lock(const TimePoint& abs_time) {
    ThrowIfPoisoned();
    if (boost::interprocess::ipcdetail::is_pos_infinity(abs_time)) {
      lock();
      return true;
    }
    timespec ts = boost::interprocess::ipcdetail::timepoint_to_timespec(abs_time);
    return Handle(pthread_mutex_timedlock(&mutex_, &ts)) != LockResult::kTimedOut;
  }
  void unlock() {
    owner_pid_.store(0, std::memory_order_relaxed);
    pthread_mutex_unlock(&mutex_);
  }

  // Our own interface: waits at most `timeout` (steady clock); never throws for kRecover.
  LockResult LockFor(std::chrono::nanoseconds timeout) {
    ThrowIfPoisoned();
    const LockResult quick = SpinToAcquire();
    if (quick != LockResult::kTimedOut) return quick;
#if defined(__SANITIZE_THREAD__)
    // GCC 12's ThreadSanitizer does not intercept pthread_mutex_clocklock (false reports).
    constexpr clockid_t kClock = CLOCK_REALTIME;
#else
    constexpr clockid_t kClock = CLOCK_MONOTONIC;  // Immune to wall-clock jumps.
#endif
    timespec deadline;
    clock_gettime(kClock, &deadline);
    auto ns = deadline.tv_nsec + timeout.count();
    deadline.tv_sec += static_cast<time_t>(ns / 1'000'000'000);
    deadline.tv_nsec = static_cast<long>(ns % 1'000'000'000);
#if defined(__SANITIZE_THREAD__)
    return Handle(pthread_mutex_timedlock(&mutex_, &deadline));
#else
    return Handle(pthread_mutex_clocklock(&mutex_, kClock, &deadline));
#endif
  }

  // About 2 us on current x86 (a pause is ~40 cycles on Skylake and later).
  static constexpr int kSpinsBeforeSleeping = 200;

  bool poisoned() const { return poisoned_.load(std::memory_order_acquire) != 0; }
  // Pid of the current holder, 0 when free (advisory: for logs and stats).
  pid_t owner_pid() const { return owner_pid_.load(std::memory_order_relaxed); }

 private:
  // A trylock, then up to kSpinsBeforeSleeping more while the lock is held; kTimedOut if it
  // stayed held. Uncontended: no clock read, no deadline. Safe on a robust mutex because we never
  // let one become NOTRECOVERABLE (where glibc's trylock misbehaves, docs/crash-protocol.md).
  // Locks are held for a few hundred nanoseconds: a contender that spins briefly gets the lock
  // without the futex sleep and wake (microseconds each) that glibc's robust mutexes go to at
  // once. It watches the lock word (glibc keeps the holder's tid there, 0 when free) with plain
  // loads, so spinning does not steal the line from the holder.
  LockResult SpinToAcquire() {
    PrefetchForWrite(&mutex_);  // glibc reads the lock word before its compare-and-swap.
    LockResult quick = Handle(pthread_mutex_trylock(&mutex_));
    if (quick != LockResult::kTimedOut) return quick;
    for (int spin = 0; spin < kSpinsBeforeSleeping; ++spin) {
      if (__atomic_load_n(&mutex_.__data.__lock, __ATOMIC_RELAXED) == 0) {
        quick = Handle(pthread_mutex_trylock(&mutex_));
        if (quick != LockResult::kTimedOut) return quick;
      }
      CpuRelax();
    }
    return LockResult::kTimedOut;
  }

  void ThrowIfPoisoned() const {
    if (kPolicy == OnOwnerDeath::kPoison && poisoned()) throw SegmentPoisoned();
  }

  LockResult Handle(int rc) {
    if (rc == 0) {
      // A waiter that went to sleep before the poison flag was set wakes with a plain 0 once the
      // EOWNERDEAD receiver unlocks: it must re-check, or it walks into the broken heap.
      if (kPolicy == OnOwnerDeath::kPoison && poisoned()) {
        pthread_mutex_unlock(&mutex_);
        throw SegmentPoisoned();
      }
      OnAcquired();
      return LockResult::kAcquired;
    }
    if (rc == EBUSY || rc == ETIMEDOUT) return LockResult::kTimedOut;
    if (rc == EOWNERDEAD) {
      pthread_mutex_consistent(&mutex_);  // Never let it become ENOTRECOVERABLE.
      if (kPolicy == OnOwnerDeath::kRecover) {
        OnAcquired();
        return LockResult::kOwnerDied;
      }
      poisoned_.store(1, std::memory_order_release);
      pthread_mutex_unlock(&mutex_);
      throw SegmentPoisoned();
    }
    throw std::runtime_error("robust mutex: unexpected pthread error");
  }

  void OnAcquired() {
    owner_pid_.store(CurrentPid(), std::memory_order_relaxed);
    if (kPolicy == OnOwnerDeath::kPoison) {
      CrashPoint(kRecursive ? "inside_name_index" : "inside_allocator");
    }
  }

  pthread_mutex_t mutex_;
  std::atomic<uint32_t> poisoned_{0};
  std::atomic<pid_t> owner_pid_{0};
};

// The segment's own locks: allocator (mutex_type) and name index (recursive_mutex_type).
struct RobustMutexFamily {
  using mutex_type = RobustMutexT<false, OnOwnerDeath::kPoison>;
  using recursive_mutex_type = RobustMutexT<true, OnOwnerDeath::kPoison>;
};

// Registry and object locks: the next holder repairs.
using ObjectMutex = RobustMutexT<false, OnOwnerDeath::kRecover>;

static_assert(std::atomic<uint32_t>::is_always_lock_free);
static_assert(std::atomic<pid_t>::is_always_lock_free);

}  // namespace shm

#endif  // SHM_SRC_ROBUST_MUTEX_H_
