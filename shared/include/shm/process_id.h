// CurrentPid / CurrentTid: the calling process's and thread's ids without a system call, and
// ProcessGone: whether another process has exited.
//
// glibc's getpid() and gettid() enter the kernel (about 150 ns each here), and the lock and
// intent-slot paths need them on every operation. The pid is cached process-wide and refreshed in
// a fork child (pthread_atfork); the tid is cached per thread and refreshed when the pid changes.
// Thread-safe. Processes made with a raw clone(2) that skips the atfork handlers are unsupported.
#ifndef SHM_PROCESS_ID_H_
#define SHM_PROCESS_ID_H_

#include <sys/types.h>

#include <atomic>

namespace shm {

namespace internal {
extern std::atomic<pid_t> g_cached_pid;
pid_t CachePidSlow();
pid_t CacheTidSlow();
extern thread_local pid_t t_cached_tid;
extern thread_local pid_t t_cached_tid_pid;
}  // namespace internal

inline pid_t CurrentPid() {
  pid_t pid = internal::g_cached_pid.load(std::memory_order_relaxed);
  return pid != 0 ? pid : internal::CachePidSlow();
}

// Whether no process `pid` exists any more (kill(pid, 0) fails with ESRCH). False for a pid <= 0
// (no process to ask about) and for a process this one may not signal: taken for alive. A zombie
// still exists: its parent must reap it.
bool ProcessGone(pid_t pid);

inline pid_t CurrentTid() {
  if (internal::t_cached_tid_pid == CurrentPid()) return internal::t_cached_tid;
  return internal::CacheTidSlow();
}

}  // namespace shm

#endif  // SHM_PROCESS_ID_H_
