#include <gtest/gtest.h>

#include "shm/crash_backoff.h"

namespace shm {
namespace {

TEST(BackoffDelayTest, ImmediateUpToTheBurstThenDoublingUpToTheCap) {
  BackoffPolicy p;  // burst 5, base 100 ms, cap 3000 ms.
  for (int crashes = 0; crashes <= 5; ++crashes) EXPECT_EQ(BackoffDelayMs(p, crashes), 0);
  EXPECT_EQ(BackoffDelayMs(p, 6), 100);
  EXPECT_EQ(BackoffDelayMs(p, 7), 200);
  EXPECT_EQ(BackoffDelayMs(p, 8), 400);
  EXPECT_EQ(BackoffDelayMs(p, 10), 1600);
  EXPECT_EQ(BackoffDelayMs(p, 11), 3000);
  EXPECT_EQ(BackoffDelayMs(p, 1000), 3000);  // No overflow, never above the cap.
}

TEST(CrashBackoffTest, CrashLoopBacksOffAndAQuietWindowResetsIt) {
  CrashBackoff backoff;
  int64_t now = 1'000'000;
  for (int i = 0; i < 5; ++i) EXPECT_EQ(backoff.RecordCrash(now + i), 0) << i;
  EXPECT_EQ(backoff.RecordCrash(now + 5), 100);
  EXPECT_EQ(backoff.RecordCrash(now + 6), 200);
  EXPECT_EQ(backoff.CrashesInWindow(now + 6), 7);
  // Ten seconds later the old crashes no longer count.
  EXPECT_EQ(backoff.CrashesInWindow(now + 10'006), 0);
  EXPECT_EQ(backoff.RecordCrash(now + 10'006), 0);
}

TEST(CrashBackoffTest, SpreadOutCrashesNeverBackOff) {
  CrashBackoff backoff;
  for (int i = 0; i < 100; ++i) EXPECT_EQ(backoff.RecordCrash(int64_t{i} * 2'500), 0) << i;
}

TEST(CrashBackoffTest, MemoryStaysBoundedInALongLoop) {
  CrashBackoff backoff;
  for (int i = 0; i < 100'000; ++i) EXPECT_LE(backoff.RecordCrash(i), 3000);
  EXPECT_LE(backoff.CrashesInWindow(100'000), 5 + 64);
}

TEST(CrashBackoffTest, CustomPolicy) {
  BackoffPolicy p;
  p.burst = 1;
  p.window_ms = 1000;
  p.base_delay_ms = 10;
  p.max_delay_ms = 25;
  CrashBackoff backoff(p);
  EXPECT_EQ(backoff.RecordCrash(0), 0);
  EXPECT_EQ(backoff.RecordCrash(1), 10);
  EXPECT_EQ(backoff.RecordCrash(2), 20);
  EXPECT_EQ(backoff.RecordCrash(3), 25);
}

}  // namespace
}  // namespace shm
