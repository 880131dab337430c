#include "shm/lease_lock.h"

#include <gtest/gtest.h>
#include <sched.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <fstream>
#include <string>
#include <thread>

#include "common/test_util.h"
#include "crash_point.h"
#include "layout.h"
#include "lease_lock_rep.h"
#include "object_guard.h"
#include "shm/counter.h"
#include "shm/registry.h"
#include "shm/snapshot.h"

namespace shm {
namespace {

using std::chrono::milliseconds;

LeaseLock OpenLock(Segment* seg, std::string_view name) {
  LeaseLock lock;
  Status s = LeaseLock::Open(seg, name, OpenMode::kCreateIfMissing, &lock);
  EXPECT_TRUE(s.ok()) << s.ToString();
  return lock;
}

TEST(LeaseLockTest, AcquireGetReleaseWithTokens) {
  test::ScopedSegment seg;
  LeaseLock lock = OpenLock(seg.get(), "deploy");
  uint64_t token = 0;
  int64_t expires = 0;
  int64_t before = WallNowMs();
  ASSERT_TRUE(lock.Acquire(60000, milliseconds(0), "alice", &token, &expires).ok());
  EXPECT_NE(token, 0u);
  EXPECT_GE(expires, before + 60000);
  LeaseInfo info;
  ASSERT_TRUE(lock.Get(&info).ok());
  EXPECT_TRUE(info.held);
  EXPECT_EQ(info.owner, "alice");
  EXPECT_EQ(info.expires_at_ms, expires);
  EXPECT_GT(info.remaining_ms, 0);
  EXPECT_EQ(info.acquisitions, 1u);

  uint64_t other = 0;
  int64_t other_expires = 0;
  Status s = lock.Acquire(1000, milliseconds(0), "bob", &other, &other_expires);
  EXPECT_TRUE(s.IsConflict()) << s.ToString();
  EXPECT_NE(s.message().find("held by 'alice' for another"), std::string_view::npos)
      << s.ToString();
  EXPECT_NE(s.message().find("'deploy'"), std::string_view::npos);

  EXPECT_TRUE(lock.Release(token + 1).IsConflict());
  EXPECT_TRUE(lock.Release(0).IsConflict());
  ASSERT_TRUE(lock.Get(&info).ok());
  EXPECT_TRUE(info.held);
  ASSERT_TRUE(lock.Release(token).ok());
  ASSERT_TRUE(lock.Get(&info).ok());
  EXPECT_FALSE(info.held);
  EXPECT_TRUE(lock.Release(token).IsConflict());
  ASSERT_TRUE(lock.Acquire(60000, milliseconds(0), "bob", &other, &other_expires).ok());
  EXPECT_NE(other, token);
  ASSERT_TRUE(lock.Get(&info).ok());
  EXPECT_EQ(info.owner, "bob");
  EXPECT_EQ(info.acquisitions, 2u);
}

TEST(LeaseLockTest, RefreshExtendsOnlyForTheHolder) {
  test::ScopedSegment seg;
  LeaseLock lock = OpenLock(seg.get(), "r");
  uint64_t token = 0;
  int64_t expires = 0;
  ASSERT_TRUE(lock.Acquire(60000, milliseconds(0), "me", &token, &expires).ok());
  int64_t extended = 0;
  ASSERT_TRUE(lock.Refresh(token, 3'600'000, &extended).ok());
  EXPECT_GT(extended, expires);
  LeaseInfo info;
  ASSERT_TRUE(lock.Get(&info).ok());
  EXPECT_EQ(info.expires_at_ms, extended);
  EXPECT_TRUE(lock.Refresh(token ^ 1, 1000).IsConflict());
  EXPECT_TRUE(lock.Refresh(token, 0).IsInvalidArgument());
  ASSERT_TRUE(lock.Get(&info).ok());
  EXPECT_EQ(info.expires_at_ms, extended);
}

TEST(LeaseLockTest, BadArgumentsAreRefusedAndChangeNothing) {
  test::ScopedSegment seg;
  LeaseLock lock = OpenLock(seg.get(), "args");
  uint64_t token = 0;
  int64_t expires = 0;
  EXPECT_TRUE(lock.Acquire(0, milliseconds(0), "x", &token, &expires).IsInvalidArgument());
  EXPECT_TRUE(lock.Acquire(LeaseLock::kMaxTtlMs + 1, milliseconds(0), "x", &token, &expires)
                  .IsInvalidArgument());
  EXPECT_TRUE(lock.Acquire(1000, milliseconds(0), std::string(65, 'o'), &token, &expires)
                  .IsInvalidArgument());
  EXPECT_TRUE(
      lock.Acquire(1000, milliseconds(0), "bad\nowner", &token, &expires).IsInvalidArgument());
  EXPECT_TRUE(lock.Acquire(1000, milliseconds(-5), "x", &token, &expires).IsInvalidArgument());
  LeaseInfo info;
  ASSERT_TRUE(lock.Get(&info).ok());
  EXPECT_FALSE(info.held);
  EXPECT_EQ(info.acquisitions, 0u);
  ASSERT_TRUE(lock.Acquire(1000, milliseconds(0), std::string(64, 'o'), &token, &expires).ok());
  LeaseLock missing;
  EXPECT_TRUE(LeaseLock::Open(seg.get(), "absent", OpenMode::kOpenExisting, &missing).IsNotFound());
}

TEST(LeaseLockTest, WaiterInAnotherProcessGetsItAfterRelease) {
  test::ScopedSegment seg;
  LeaseLock lock = OpenLock(seg.get(), "handoff");
  uint64_t token = 0;
  int64_t expires = 0;
  ASSERT_TRUE(lock.Acquire(60000, milliseconds(0), "parent", &token, &expires).ok());
  pid_t child = test::ForkChild([&] {
    uint64_t mine = 0;
    int64_t until = 0;
    if (!lock.Acquire(1000, milliseconds(0), "child", &mine, &until).IsConflict()) return 2;
    Status s = lock.Acquire(60000, milliseconds(30000), "child", &mine, &until);
    return s.ok() && mine != token ? 0 : 1;
  });
  test::WaitUntilInFutex(child);
  ASSERT_TRUE(lock.Release(token).ok());
  test::ChildExit exit = test::WaitChild(child);
  EXPECT_TRUE(exit.exited && exit.code == 0) << exit.code;
  LeaseInfo info;
  ASSERT_TRUE(lock.Get(&info).ok());
  EXPECT_TRUE(info.held);
  EXPECT_EQ(info.owner, "child");
}

// A release makes the wake system call only when a waiter marked the lock's word wanted
// (src/futex.h). A waiter killed in its sleep leaves the mark: the next release clears it (one
// spare wake), and releases after that find it clear again.
TEST(LeaseLockTest, AKilledWaitersMarkCostsOneSpareWake) {
  test::ScopedSegment seg;
  LeaseLock lock = OpenLock(seg.get(), "marked");
  const std::atomic<uint32_t>& wanted = lock.ref().entry->wake_wanted;
  uint64_t token = 0;
  int64_t expires = 0;
  ASSERT_TRUE(lock.Acquire(60000, milliseconds(0), "parent", &token, &expires).ok());
  ASSERT_TRUE(lock.Release(token).ok());
  EXPECT_EQ(wanted.load(), 0u);  // Nobody waited.
  ASSERT_TRUE(lock.Acquire(60000, milliseconds(0), "parent", &token, &expires).ok());
  pid_t child = test::ForkChild([&] {
    uint64_t mine = 0;
    int64_t until = 0;
    lock.Acquire(60000, milliseconds(30000), "doomed", &mine, &until).ok();
    return 1;  // Killed before the release.
  });
  ASSERT_TRUE(test::WaitUntilInFutex(child));
  EXPECT_EQ(wanted.load(), 1u);
  kill(child, SIGKILL);
  EXPECT_TRUE(test::WaitChild(child).signaled);
  ASSERT_TRUE(lock.Release(token).ok());
  EXPECT_EQ(wanted.load(), 0u);  // The spare wake cleared it.
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(lock.Acquire(60000, milliseconds(0), "parent", &token, &expires).ok());
    ASSERT_TRUE(lock.Release(token).ok());
    EXPECT_EQ(wanted.load(), 0u);
  }
}

// Two processes hand the lock back and forth, in strict turns: the holder lets the other one
// start its Acquire (`asked`), sees it announced (`trying`), then releases, so each release races
// the waiter's mark-then-sleep (src/futex.h) at a different point. A lost wake would leave the
// waiter asleep until its 10 s wait ends, every round if the protocol were wrong: the children
// are killed after 60 s and the test fails. The spins wait for the other process's step.
TEST(LeaseLockTest, HandoffsBetweenProcessesLoseNoWake) {
  test::ScopedSegment seg;
  LeaseLock lock = OpenLock(seg.get(), "pingpong");
  Counter asked, trying;
  ASSERT_TRUE(Counter::Open(seg.get(), "asked", {OpenMode::kCreateIfMissing, 0, 0}, &asked).ok());
  ASSERT_TRUE(Counter::Open(seg.get(), "trying", {OpenMode::kCreateIfMissing, 0, 0}, &trying).ok());
  constexpr int64_t kSteps = 1000;
  auto wait_for = [](Counter& counter, int64_t value) {
    int64_t now = 0;
    while (counter.Get(&now).ok() && now < value) sched_yield();
    return now == value;
  };
  // Process `me` holds the lock at the steps of its parity, and waits for it at the others.
  auto take_turns = [&](int64_t me, uint64_t token) {
    int64_t expires = 0;
    for (int64_t step = 0; step < kSteps; ++step) {
      if (step % 2 == me) {
        if (!asked.Set(step + 1).ok() || !wait_for(trying, step + 1)) return 1;
        if (!lock.Release(token).ok()) return 2;
      } else {
        if (!wait_for(asked, step + 1) || !trying.Set(step + 1).ok()) return 3;
        if (!lock.Acquire(60000, milliseconds(10000), "turn", &token, &expires).ok()) return 4;
      }
    }
    return 0;
  };
  uint64_t first = 0;
  int64_t expires = 0;
  ASSERT_TRUE(lock.Acquire(60000, milliseconds(0), "turn", &first, &expires).ok());
  pid_t a = test::ForkChild([&] { return take_turns(0, first); });
  pid_t b = test::ForkChild([&] { return take_turns(1, 0); });
  test::ChildExit exit_a = test::WaitChild(a), exit_b = test::WaitChild(b);
  EXPECT_TRUE(exit_a.exited && exit_a.code == 0) << exit_a.code << " " << exit_a.signal;
  EXPECT_TRUE(exit_b.exited && exit_b.code == 0) << exit_b.code << " " << exit_b.signal;
  LeaseInfo info;
  ASSERT_TRUE(lock.Get(&info).ok());
  EXPECT_EQ(info.acquisitions, 1u + kSteps);
}

TEST(LeaseLockTest, ExpiryLetsAnotherTakeItAndVoidsTheOldToken) {
  test::ScopedSegment seg;
  LeaseLock lock = OpenLock(seg.get(), "short");
  uint64_t first = 0;
  int64_t expires = 0;
  ASSERT_TRUE(lock.Acquire(50, milliseconds(0), "first", &first, &expires).ok());
  uint64_t second = 0;
  ASSERT_TRUE(lock.Acquire(60000, milliseconds(20000), "second", &second, &expires).ok());
  EXPECT_NE(second, first);
  EXPECT_TRUE(lock.Release(first).IsConflict());
  EXPECT_TRUE(lock.Refresh(first, 1000).IsConflict());
  LeaseInfo info;
  ASSERT_TRUE(lock.Get(&info).ok());
  EXPECT_EQ(info.owner, "second");
}

TEST(LeaseLockTest, KilledHolderBlocksOthersOnlyUntilItsTtl) {
  test::ScopedSegment seg;
  LeaseLock lock = OpenLock(seg.get(), "victim");
  int ready[2];
  ASSERT_EQ(pipe(ready), 0);
  pid_t child = test::ForkChild([&] {
    uint64_t token = 0;
    int64_t expires = 0;
    if (!lock.Acquire(300, milliseconds(0), "doomed", &token, &expires).ok()) return 1;
    char byte = 1;
    if (write(ready[1], &byte, 1) != 1) return 1;
    pause();  // Holds the lease until killed.
    return 0;
  });
  char byte = 0;
  ASSERT_EQ(read(ready[0], &byte, 1), 1);
  close(ready[0]);
  close(ready[1]);
  kill(child, SIGKILL);
  test::ChildExit exit = test::WaitChild(child);
  EXPECT_TRUE(exit.signaled);
  uint64_t token = 0;
  int64_t expires = 0;
  Status s = lock.Acquire(1000, milliseconds(20000), "survivor", &token, &expires);
  ASSERT_TRUE(s.ok()) << s.ToString();
  LeaseInfo info;
  ASSERT_TRUE(lock.Get(&info).ok());
  EXPECT_EQ(info.owner, "survivor");
}

// A process dies holding the object lock with a record half written (token set, no expiry): the
// next holder's repair frees the lease instead of leaving it held forever.
TEST(LeaseLockTest, HalfWrittenRecordIsRepairedAfterOwnerDeath) {
  test::ScopedSegment seg;
  LeaseLock lock = OpenLock(seg.get(), "torn");
  pid_t child = test::ForkChild([&] {
    ObjectGuard guard;
    if (!guard.Lock(lock.ref()).ok()) return 1;
    auto* rep = seg->impl()->Ptr<LeaseRep>(lock.ref().entry->body.load());
    rep->token.store(12345);
    rep->expires_at_ms.store(0);
    _exit(kCrashPointExitCode);  // The lock is still held.
  });
  test::ChildExit exit = test::WaitChild(child);
  ASSERT_TRUE(exit.exited && exit.code == kCrashPointExitCode);
  LeaseInfo info;
  ASSERT_TRUE(lock.Get(&info).ok());
  EXPECT_FALSE(info.held);
  auto* rep = seg->impl()->Ptr<LeaseRep>(lock.ref().entry->body.load());
  EXPECT_EQ(rep->token.load(), 0u);
  uint64_t token = 0;
  int64_t expires = 0;
  EXPECT_TRUE(lock.Acquire(1000, milliseconds(0), "next", &token, &expires).ok());
}

// Dying inside an acquire, just before its commit, leaves the lease free.
TEST(LeaseLockTest, DeathBeforeTheCommitLeavesItFree) {
  test::ScopedSegment seg;
  LeaseLock lock = OpenLock(seg.get(), "midway");
  pid_t child = test::ForkChild([&] {
    SetCrashPoint("lease_before_commit");
    uint64_t token = 0;
    int64_t expires = 0;
    lock.Acquire(60000, milliseconds(0), "ghost", &token, &expires);
    return 0;
  });
  test::ChildExit exit = test::WaitChild(child);
  ASSERT_TRUE(exit.exited && exit.code == kCrashPointExitCode);
  LeaseInfo info;
  ASSERT_TRUE(lock.Get(&info).ok());
  EXPECT_FALSE(info.held);
  uint64_t token = 0;
  int64_t expires = 0;
  EXPECT_TRUE(lock.Acquire(1000, milliseconds(0), "next", &token, &expires).ok());
}

TEST(LeaseLockTest, DeletingTheLockWakesWaitersWithNotFound) {
  test::ScopedSegment seg;
  LeaseLock lock = OpenLock(seg.get(), "gone");
  uint64_t token = 0;
  int64_t expires = 0;
  ASSERT_TRUE(lock.Acquire(60000, milliseconds(0), "holder", &token, &expires).ok());
  pid_t child = test::ForkChild([&] {
    uint64_t mine = 0;
    int64_t until = 0;
    return lock.Acquire(1000, milliseconds(30000), "waiter", &mine, &until).IsNotFound() ? 0 : 1;
  });
  test::WaitUntilInFutex(child);
  ASSERT_TRUE(seg->registry().Delete("gone").ok());
  test::ChildExit exit = test::WaitChild(child, 20000);
  EXPECT_TRUE(exit.exited && exit.code == 0);
  EXPECT_TRUE(lock.Release(token).IsNotFound());
}

TEST(LeaseLockTest, SnapshotKeepsTheLeaseAndItsToken) {
  test::ScopedSegment seg;
  LeaseLock lock = OpenLock(seg.get(), "kept");
  uint64_t token = 0;
  int64_t expires = 0;
  ASSERT_TRUE(lock.Acquire(600000, milliseconds(0), "holder", &token, &expires).ok());
  std::string bytes;
  ASSERT_TRUE(SerializeSegment(seg.get(), &bytes, nullptr).ok());
  test::ScopedSegment fresh;
  ASSERT_TRUE(RestoreSegment(bytes, fresh.get(), nullptr).ok());
  LeaseLock restored;
  ASSERT_TRUE(LeaseLock::Open(fresh.get(), "kept", OpenMode::kOpenExisting, &restored).ok());
  LeaseInfo info;
  ASSERT_TRUE(restored.Get(&info).ok());
  EXPECT_TRUE(info.held);
  EXPECT_EQ(info.owner, "holder");
  EXPECT_EQ(info.expires_at_ms, expires);
  EXPECT_TRUE(restored.Release(token + 1).IsConflict());
  EXPECT_TRUE(restored.Release(token).ok());
}

}  // namespace
}  // namespace shm
