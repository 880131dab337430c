#include "shm/process_id.h"

#include <pthread.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <mutex>

namespace shm::internal {

std::atomic<pid_t> g_cached_pid{0};
thread_local pid_t t_cached_tid = 0;
thread_local pid_t t_cached_tid_pid = 0;

namespace {
void RefreshInChild() { g_cached_pid.store(getpid(), std::memory_order_relaxed); }
}  // namespace

pid_t CachePidSlow() {
  static std::once_flag registered;
  std::call_once(registered, [] { pthread_atfork(nullptr, nullptr, RefreshInChild); });
  pid_t pid = getpid();
  g_cached_pid.store(pid, std::memory_order_relaxed);
  return pid;
}

pid_t CacheTidSlow() {
  t_cached_tid = static_cast<pid_t>(syscall(SYS_gettid));
  t_cached_tid_pid = CurrentPid();
  return t_cached_tid;
}

}  // namespace shm::internal

namespace shm {

bool ProcessGone(pid_t pid) { return pid > 0 && kill(pid, 0) != 0 && errno == ESRCH; }

}  // namespace shm
