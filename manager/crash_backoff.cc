#include "shm/crash_backoff.h"

#include <algorithm>

namespace shm {

int64_t BackoffDelayMs(const BackoffPolicy& policy, int crashes_in_window) {
  int extra = crashes_in_window - policy.burst;
  if (extra <= 0) return 0;
  int64_t delay = policy.base_delay_ms;
  for (int i = 1; i < extra && delay < policy.max_delay_ms; ++i) delay *= 2;
  return std::min(delay, policy.max_delay_ms);
}

int64_t CrashBackoff::RecordCrash(int64_t now_ms) {
  ForgetOld(now_ms);
  crashes_ms_.push_back(now_ms);
  // Bounded memory: beyond this many, the delay is at its cap anyway.
  while (crashes_ms_.size() > static_cast<size_t>(std::max(policy_.burst, 0)) + 64) {
    crashes_ms_.pop_front();
  }
  return BackoffDelayMs(policy_, static_cast<int>(crashes_ms_.size()));
}

int CrashBackoff::CrashesInWindow(int64_t now_ms) {
  ForgetOld(now_ms);
  return static_cast<int>(crashes_ms_.size());
}

void CrashBackoff::ForgetOld(int64_t now_ms) {
  while (!crashes_ms_.empty() && now_ms - crashes_ms_.front() >= policy_.window_ms) {
    crashes_ms_.pop_front();
  }
}

}  // namespace shm
