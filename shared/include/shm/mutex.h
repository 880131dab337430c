// Mutex and MutexLock: a process-local mutex the thread-safety analysis understands.
//
// libstdc++'s std::mutex carries no Clang annotations, so GUARDED_BY(std::mutex) checks nothing;
// this thin wrapper does. For process-local state only: nothing of it may live in the segment
// (use the robust mutexes there, DESIGN.md "Rules of the segment").
//
// Process-safety: an ordinary std::mutex; a forked child must not use one its parent held.
#ifndef SHM_MUTEX_H_
#define SHM_MUTEX_H_

#include <mutex>

#include "shm/thread_annotations.h"

namespace shm {

class CAPABILITY("mutex") Mutex {
 public:
  Mutex() = default;
  Mutex(const Mutex&) = delete;
  Mutex& operator=(const Mutex&) = delete;

  void Lock() ACQUIRE() { mu_.lock(); }
  void Unlock() RELEASE() { mu_.unlock(); }

 private:
  std::mutex mu_;
};

// Holds `mu` for its scope.
class SCOPED_CAPABILITY MutexLock {
 public:
  explicit MutexLock(Mutex* mu) ACQUIRE(mu) : mu_(mu) { mu_->Lock(); }
  ~MutexLock() RELEASE() { mu_->Unlock(); }
  MutexLock(const MutexLock&) = delete;
  MutexLock& operator=(const MutexLock&) = delete;

 private:
  Mutex* const mu_;
};

}  // namespace shm

#endif  // SHM_MUTEX_H_
