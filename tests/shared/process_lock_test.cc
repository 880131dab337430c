// ProcessLock (shm/process_lock.h): one word, taken and freed by compare-and-swap, waited for on
// its futex, released by any process; tested across forked processes that attach the segment
// again by name (their own mapping, at another address).
#include "shm/process_lock.h"

#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <string>

#include "common/status_assert.h"
#include "common/test_util.h"
#include "layout.h"
#include "shm/counter.h"
#include "shm/snapshot.h"

namespace shm {
namespace {

using std::chrono::seconds;

constexpr auto kLong = std::chrono::seconds(30);  // Bounds a wait that must succeed.

// The lock `name` in a fresh attachment of `seg` (the caller is a forked child).
struct Attached {
  std::unique_ptr<Segment> segment;
  ProcessLock lock;
  Status status;
  Attached(const test::ScopedSegment& seg, const std::string& name) {
    status = Segment::Attach(seg.shm_name(), &segment);
    if (status.ok())
      status = ProcessLock::Open(segment.get(), name, OpenMode::kOpenExisting, &lock);
  }
};

// A pipe a parent and its child order their steps with (one byte a step).
struct Steps {
  int fds[2];
  Steps() { EXPECT_EQ(pipe(fds), 0); }
  ~Steps() {
    close(fds[0]);
    close(fds[1]);
  }
  void Signal() { EXPECT_EQ(write(fds[1], "x", 1), 1); }
  bool Await() {
    char c;
    return read(fds[0], &c, 1) == 1;
  }
};

TEST(ProcessLockTest, AcquireReleaseLockedAndTheErrors) {
  test::ScopedSegment seg;
  ProcessLock lock;
  bool created = false;
  ASSERT_OK(ProcessLock::Open(seg.get(), "l", OpenMode::kCreateIfMissing, &lock, &created));
  EXPECT_TRUE(created);
  bool locked = true, acquired = false, died = true;
  ASSERT_OK(lock.Locked(&locked));
  EXPECT_FALSE(locked);
  ASSERT_OK(lock.TryAcquire(&acquired));
  EXPECT_TRUE(acquired);
  pid_t holder = 0;
  ASSERT_OK(lock.Holder(&holder));
  EXPECT_EQ(holder, getpid());
  ASSERT_OK(lock.TryAcquire(&acquired));  // Not reentrant.
  EXPECT_FALSE(acquired);
  ASSERT_OK(lock.Acquire(std::chrono::milliseconds(0), &acquired, &died));
  EXPECT_FALSE(acquired);
  EXPECT_FALSE(died);
  ASSERT_OK(lock.Locked(&locked));
  EXPECT_TRUE(locked);
  ASSERT_OK(lock.Release());
  Status again = lock.Release();
  EXPECT_TRUE(again.IsConflict()) << again.ToString();
  EXPECT_NE(again.ToString().find("release unlocked lock"), std::string::npos);
  ASSERT_OK(lock.Acquire(kLong, &acquired, &died));
  EXPECT_TRUE(acquired);
  EXPECT_FALSE(died);
  ASSERT_OK(lock.Release());

  Counter counter;
  ASSERT_OK(Counter::Open(seg.get(), "c", {OpenMode::kCreateIfMissing, 0, 0}, &counter));
  ProcessLock wrong;
  EXPECT_TRUE(ProcessLock::Open(seg.get(), "c", OpenMode::kOpenExisting, &wrong).IsWrongType());
  EXPECT_TRUE(ProcessLock::Open(seg.get(), "none", OpenMode::kOpenExisting, &wrong).IsNotFound());
  EXPECT_TRUE(
      ProcessLock::Open(seg.get(), "../x", OpenMode::kCreateIfMissing, &wrong).IsInvalidArgument());
}

// CPython's TestSyncManagerTypes.test_lock: a child takes the lock and exits; the parent
// releases it.
TEST(ProcessLockTest, AnotherProcessMayRelease) {
  test::ScopedSegment seg;
  ProcessLock lock;
  ASSERT_OK(ProcessLock::Open(seg.get(), "l", OpenMode::kCreateIfMissing, &lock));
  pid_t child = test::ForkChild([&] {
    Attached a(seg, "l");
    bool acquired = false;
    return a.status.ok() && a.lock.TryAcquire(&acquired).ok() && acquired ? 0 : 1;
  });
  test::ChildExit exit = test::WaitChild(child);
  ASSERT_TRUE(exit.exited);
  ASSERT_EQ(exit.code, 0);
  bool locked = false;
  ASSERT_OK(lock.Locked(&locked));
  EXPECT_TRUE(locked);
  pid_t holder = 0;
  ASSERT_OK(lock.Holder(&holder));
  EXPECT_EQ(holder, child);
  ASSERT_OK(lock.Release());
  ASSERT_OK(lock.Locked(&locked));
  EXPECT_FALSE(locked);
}

TEST(ProcessLockTest, AWaiterTimesOutOnALiveHolderThenGetsTheReleasedLock) {
  test::ScopedSegment seg;
  ProcessLock lock;
  ASSERT_OK(ProcessLock::Open(seg.get(), "l", OpenMode::kCreateIfMissing, &lock));
  Steps held, release;
  pid_t child = test::ForkChild([&] {
    Attached a(seg, "l");
    bool acquired = false;
    if (!a.status.ok() || !a.lock.TryAcquire(&acquired).ok() || !acquired) return 1;
    held.Signal();
    if (!release.Await()) return 2;
    return a.lock.Release().ok() ? 0 : 3;
  });
  ASSERT_TRUE(held.Await());
  bool acquired = true, died = true;
  ASSERT_OK(lock.Acquire(std::chrono::milliseconds(20), &acquired, &died));
  EXPECT_FALSE(acquired);  // The holder lives: no take-over.
  EXPECT_FALSE(died);
  release.Signal();
  ASSERT_OK(lock.Acquire(kLong, &acquired, &died));
  EXPECT_TRUE(acquired);
  EXPECT_FALSE(died);
  test::ChildExit exit = test::WaitChild(child);
  EXPECT_TRUE(exit.exited && exit.code == 0);
  ASSERT_OK(lock.Release());
}

// A sleeper flags the word; the release sees the flag, clears it and wakes the sleeper.
TEST(ProcessLockTest, ASleepingWaiterFlagsTheWordAndIsWokenByTheRelease) {
  test::ScopedSegment seg;
  ProcessLock lock;
  ASSERT_OK(ProcessLock::Open(seg.get(), "l", OpenMode::kCreateIfMissing, &lock));
  bool acquired = false, died = false;
  ASSERT_OK(lock.TryAcquire(&acquired));
  ASSERT_TRUE(acquired);
  pid_t child = test::ForkChild([&] {
    Attached a(seg, "l");
    bool got = false, owner_died = true;
    if (!a.status.ok() || !a.lock.Acquire(kLong, &got, &owner_died).ok() || !got) return 1;
    if (owner_died) return 2;
    return a.lock.Release().ok() ? 0 : 3;
  });
  ASSERT_TRUE(test::WaitUntilInFutex(child, 30000));
  const auto word = static_cast<uint64_t>(lock.ref().entry->counter.load());
  EXPECT_NE(word & ProcessLock::kWaiters, 0u) << "a sleeper flags the word before it sleeps";
  EXPECT_EQ(word & ~ProcessLock::kWaiters, ProcessLock::MyWord());
  ASSERT_OK(lock.Release());
  test::ChildExit exit = test::WaitChild(child);
  EXPECT_TRUE(exit.exited && exit.code == 0) << exit.code;
  ASSERT_OK(lock.Acquire(kLong, &acquired, &died));
  EXPECT_TRUE(acquired);
  EXPECT_EQ(static_cast<uint64_t>(lock.ref().entry->counter.load()), ProcessLock::MyWord())
      << "the waiter's release cleared the flag";
  ASSERT_OK(lock.Release());
}

TEST(ProcessLockTest, DeletingTheLockWakesItsSleepersWithNotFound) {
  test::ScopedSegment seg;
  ProcessLock lock;
  ASSERT_OK(ProcessLock::Open(seg.get(), "l", OpenMode::kCreateIfMissing, &lock));
  bool acquired = false;
  ASSERT_OK(lock.TryAcquire(&acquired));
  pid_t child = test::ForkChild([&] {
    Attached a(seg, "l");
    bool got = false, owner_died = false;
    if (!a.status.ok()) return 1;
    Status s = a.lock.Acquire(kLong, &got, &owner_died);
    return s.IsNotFound() && !got ? 0 : 2;
  });
  ASSERT_TRUE(test::WaitUntilInFutex(child, 30000));
  ASSERT_OK(seg->registry().Delete("l"));
  test::ChildExit exit = test::WaitChild(child);
  EXPECT_TRUE(exit.exited && exit.code == 0) << exit.code;
  EXPECT_TRUE(lock.Release().IsNotFound());
  // A new lock of the same name is free, whatever the old one's word was.
  ProcessLock fresh;
  ASSERT_OK(ProcessLock::Open(seg.get(), "l", OpenMode::kCreateIfMissing, &fresh));
  bool locked = true;
  ASSERT_OK(fresh.Locked(&locked));
  EXPECT_FALSE(locked);
}

// Two processes increment a plain (non-atomic) shared count under the lock: no increment lost.
TEST(ProcessLockTest, ExcludesAcrossProcesses) {
  test::ScopedSegment seg;
  ProcessLock lock;
  ASSERT_OK(ProcessLock::Open(seg.get(), "l", OpenMode::kCreateIfMissing, &lock));
  void* shared = mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(shared, MAP_FAILED);
  auto* count = static_cast<volatile int64_t*>(shared);
  *count = 0;
  constexpr int kRounds = 20000;
  constexpr int kProcs = 3;
  pid_t children[kProcs];
  for (pid_t& child : children) {
    child = test::ForkChild([&] {
      Attached a(seg, "l");
      if (!a.status.ok()) return 1;
      for (int i = 0; i < kRounds; ++i) {
        bool got = false, died = false;
        if (!a.lock.Acquire(kLong, &got, &died).ok() || !got || died) return 2;
        const int64_t seen = *count;
        if (i % 64 == 0) sched_yield();  // Invites the others in while it holds the lock.
        *count = seen + 1;
        if (!a.lock.Release().ok()) return 3;
      }
      return 0;
    });
  }
  for (pid_t child : children) {
    test::ChildExit exit = test::WaitChild(child);
    EXPECT_TRUE(exit.exited && exit.code == 0) << exit.code;
  }
  EXPECT_EQ(*count, int64_t{kProcs} * kRounds);
  bool locked = true;
  ASSERT_OK(lock.Locked(&locked));
  EXPECT_FALSE(locked);
  munmap(shared, 4096);
}

// A snapshot (and so the copy into a grown or rebuilt segment) keeps who holds the lock.
TEST(ProcessLockTest, ASnapshotKeepsTheHolder) {
  test::ScopedSegment seg;
  ProcessLock lock;
  ASSERT_OK(ProcessLock::Open(seg.get(), "held", OpenMode::kCreateIfMissing, &lock));
  ProcessLock free_lock;
  ASSERT_OK(ProcessLock::Open(seg.get(), "free", OpenMode::kCreateIfMissing, &free_lock));
  bool acquired = false;
  ASSERT_OK(lock.TryAcquire(&acquired));
  std::string bytes;
  ASSERT_OK(SerializeSegment(seg.get(), &bytes, nullptr));
  test::ScopedSegment copy;
  ASSERT_OK(RestoreSegment(bytes, copy.get(), nullptr));
  ProcessLock restored, restored_free;
  ASSERT_OK(ProcessLock::Open(copy.get(), "held", OpenMode::kOpenExisting, &restored));
  ASSERT_OK(ProcessLock::Open(copy.get(), "free", OpenMode::kOpenExisting, &restored_free));
  pid_t holder = 0;
  ASSERT_OK(restored.Holder(&holder));
  EXPECT_EQ(holder, getpid());
  ASSERT_OK(restored.TryAcquire(&acquired));
  EXPECT_FALSE(acquired);
  ASSERT_OK(restored.Release());
  ASSERT_OK(restored_free.TryAcquire(&acquired));
  EXPECT_TRUE(acquired);
}

}  // namespace
}  // namespace shm
