// Crash points: named steps where a test can make this process die on purpose.
//
// SHM_CRASH_POINT=<name>[:<n>] in the environment (or SetCrashPoint in a forked child) makes the
// n-th (default first) arrival at CrashPoint(<name>) call _exit(kCrashPointExitCode) at once, with
// every lock still held. Used by the crash tests to stop a writer at each step of the commit
// protocol. Costs one relaxed load when disabled. Thread-safe.
#ifndef SHM_SRC_CRASH_POINT_H_
#define SHM_SRC_CRASH_POINT_H_

#include <atomic>

namespace shm {

inline constexpr int kCrashPointExitCode = 86;

namespace internal {
extern std::atomic<bool> g_crash_points_armed;
void CrashPointSlow(const char* name);
}  // namespace internal

inline void CrashPoint(const char* name) {
  if (internal::g_crash_points_armed.load(std::memory_order_relaxed)) {
    internal::CrashPointSlow(name);
  }
}

// Arms `name` (nullptr disarms) for this process; `hit` is 1-based.
void SetCrashPoint(const char* name, int hit = 1);

}  // namespace shm

#endif  // SHM_SRC_CRASH_POINT_H_
