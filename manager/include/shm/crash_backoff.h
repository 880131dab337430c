// CrashBackoff: how long the manager waits before replacing a worker that keeps crashing.
//
// A crash is replaced at once, unless the same worker slot crashed more than `burst` times within
// `window`: then the delay doubles per extra crash, from `base` up to `cap` (a few seconds, so a
// fixed bug or a passing overload is picked up quickly). Pure bookkeeping: the caller supplies
// the clock. Process-safety: a plain value, used by the single-threaded manager only.
#ifndef SHM_CRASH_BACKOFF_H_
#define SHM_CRASH_BACKOFF_H_

#include <cstdint>
#include <deque>

namespace shm {

struct BackoffPolicy {
  int burst = 5;                // Crashes within the window that are replaced at once.
  int64_t window_ms = 10000;    // How far back crashes count.
  int64_t base_delay_ms = 100;  // Delay after the first crash beyond the burst.
  int64_t max_delay_ms = 3000;  // Never wait longer than this.
};

// The delay for the `crashes_in_window`-th crash (counting the one being handled).
int64_t BackoffDelayMs(const BackoffPolicy& policy, int crashes_in_window);

class CrashBackoff {
 public:
  explicit CrashBackoff(const BackoffPolicy& policy = BackoffPolicy()) : policy_(policy) {}

  // Records a crash at `now_ms` and returns how long to wait before the replacement starts.
  int64_t RecordCrash(int64_t now_ms);
  // Crashes within the window before `now_ms`.
  int CrashesInWindow(int64_t now_ms);

 private:
  void ForgetOld(int64_t now_ms);

  BackoffPolicy policy_;
  std::deque<int64_t> crashes_ms_;  // Ascending; at most burst + 64 entries are kept.
};

}  // namespace shm

#endif  // SHM_CRASH_BACKOFF_H_
