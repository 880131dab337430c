// A process-local offset on WallNowMs(), so tests of TTL and idle expiry move time forward
// instead of sleeping and racing a loaded machine. Nothing outside tests calls this.
//
// Process-safety: affects only the calling process; other attached processes keep the real clock.
#ifndef SHM_SHARED_SRC_TEST_CLOCK_H_
#define SHM_SHARED_SRC_TEST_CLOCK_H_

#include <cstdint>

namespace shm {

// Makes every later WallNowMs() of this process read `ms` further ahead (cumulative).
void AdvanceWallClockForTesting(int64_t ms);

// Undoes every advance (the RAII form below calls it).
void ResetWallClockForTesting();

class ScopedWallClockForTesting {
 public:
  ScopedWallClockForTesting() = default;
  ~ScopedWallClockForTesting() { ResetWallClockForTesting(); }
  ScopedWallClockForTesting(const ScopedWallClockForTesting&) = delete;
  ScopedWallClockForTesting& operator=(const ScopedWallClockForTesting&) = delete;
  void Advance(int64_t ms) { AdvanceWallClockForTesting(ms); }
};

}  // namespace shm

#endif  // SHM_SHARED_SRC_TEST_CLOCK_H_
