// Crash tests of ProcessLock (shm/process_lock.h): a process dies at each step of an acquire or a
// release (crash points) or is SIGKILLed while it holds the lock, and the lock is never stuck: a
// waiter in another process takes a dead holder's lock over and is told so (owner_died).
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <string>

#include "common/status_assert.h"
#include "common/test_util.h"
#include "crash_point.h"
#include "layout.h"
#include "shm/process_lock.h"

namespace shm {
namespace {

constexpr auto kLong = std::chrono::seconds(30);  // Bounds a wait that must succeed.

// In a forked child: the lock `name` in a fresh attachment of `seg`.
Status OpenAttached(const test::ScopedSegment& seg, std::unique_ptr<Segment>* segment,
                    ProcessLock* lock) {
  SHM_RETURN_IF_ERROR(Segment::Attach(seg.shm_name(), segment));
  return ProcessLock::Open(segment->get(), "l", OpenMode::kOpenExisting, lock);
}

// A waiter in its own process: exit 0 if it got the lock with owner_died == `died`.
int WaiterExpecting(const test::ScopedSegment& seg, bool died) {
  std::unique_ptr<Segment> segment;
  ProcessLock lock;
  if (!OpenAttached(seg, &segment, &lock).ok()) return 10;
  bool got = false, owner_died = false;
  if (!lock.Acquire(kLong, &got, &owner_died).ok() || !got) return 11;
  if (owner_died != died) return 12;
  return lock.Release().ok() ? 0 : 13;
}

void ExpectExit(pid_t pid, int code) {
  test::ChildExit exit = test::WaitChild(pid);
  EXPECT_TRUE(exit.exited) << "signal " << exit.signal;
  EXPECT_EQ(exit.code, code);
}

// The real thing: a holder SIGKILLed at an arbitrary moment while it holds the lock.
TEST(ProcessLockCrashTest, HolderKilledWhileHoldingIsTakenOverByAWaiterOfAnotherProcess) {
  test::ScopedSegment seg;
  ProcessLock lock;
  ASSERT_OK(ProcessLock::Open(seg.get(), "l", OpenMode::kCreateIfMissing, &lock));
  int ready[2];
  ASSERT_EQ(pipe(ready), 0);
  pid_t holder = test::ForkChild([&] {
    std::unique_ptr<Segment> segment;
    ProcessLock mine;
    bool got = false;
    if (!OpenAttached(seg, &segment, &mine).ok() || !mine.TryAcquire(&got).ok() || !got) return 1;
    if (write(ready[1], "x", 1) != 1) return 2;
    pause();  // Holds it until killed.
    return 3;
  });
  char c;
  ASSERT_EQ(read(ready[0], &c, 1), 1);
  close(ready[0]);
  close(ready[1]);
  // A waiter sleeps on the held lock before the holder dies; it must not stay asleep.
  pid_t waiter = test::ForkChild([&] { return WaiterExpecting(seg, /*died=*/true); });
  ASSERT_TRUE(test::WaitUntilInFutex(waiter, 30000));
  ASSERT_EQ(kill(holder, SIGKILL), 0);
  test::ChildExit killed = test::WaitChild(holder);
  EXPECT_TRUE(killed.signaled && killed.signal == SIGKILL);
  ExpectExit(waiter, 0);
  bool locked = true;
  ASSERT_OK(lock.Locked(&locked));
  EXPECT_FALSE(locked);  // The waiter released it: the next taker is told nothing died.
  bool got = false, died = true;
  ASSERT_OK(lock.Acquire(kLong, &got, &died));
  EXPECT_TRUE(got);
  EXPECT_FALSE(died);
}

// A non-blocking attempt that finds a dead holder takes the lock over too.
TEST(ProcessLockCrashTest, AnAttemptWithoutWaitTakesOverADeadHolder) {
  test::ScopedSegment seg;
  ProcessLock lock;
  ASSERT_OK(ProcessLock::Open(seg.get(), "l", OpenMode::kCreateIfMissing, &lock));
  pid_t holder = test::ForkChild([&] {
    std::unique_ptr<Segment> segment;
    ProcessLock mine;
    bool got = false;
    if (!OpenAttached(seg, &segment, &mine).ok() || !mine.TryAcquire(&got).ok() || !got) return 1;
    kill(getpid(), SIGKILL);
    return 2;
  });
  test::ChildExit killed = test::WaitChild(holder);
  ASSERT_TRUE(killed.signaled);
  bool got = false, died = false;
  ASSERT_OK(lock.TryAcquire(&got));
  EXPECT_FALSE(got) << "TryAcquire is one compare-and-swap: it does not look for the dead";
  ASSERT_OK(lock.Acquire(std::chrono::nanoseconds(0), &got, &died));
  EXPECT_TRUE(got);
  EXPECT_TRUE(died);
}

// A pid now used by another process (another start time) is not the holder.
TEST(ProcessLockCrashTest, AReusedPidIsNotTakenForTheHolder) {
  test::ScopedSegment seg;
  ProcessLock lock;
  ASSERT_OK(ProcessLock::Open(seg.get(), "l", OpenMode::kCreateIfMissing, &lock));
  int done[2];
  ASSERT_EQ(pipe(done), 0);
  pid_t alive = test::ForkChild([&] {
    char c;
    return read(done[0], &c, 1) == 1 ? 0 : 1;  // Lives until the parent is done.
  });
  // The word of a holder with the living child's pid but another start time: a dead process
  // whose pid was reused.
  const uint64_t real_tag = ProcessLock::MyWord() >> 32;
  const uint64_t forged = ((real_tag + 12345) << 32) | static_cast<uint64_t>(alive);
  lock.ref().entry->counter.store(static_cast<int64_t>(forged));
  bool got = false, died = false;
  ASSERT_OK(lock.Acquire(std::chrono::nanoseconds(0), &got, &died));
  EXPECT_TRUE(got);
  EXPECT_TRUE(died);
  ASSERT_OK(lock.Release());
  // A holder that exited (holding) is gone.
  pid_t child_holder = test::ForkChild([&] {
    std::unique_ptr<Segment> segment;
    ProcessLock mine;
    bool taken = false;
    if (!OpenAttached(seg, &segment, &mine).ok() || !mine.TryAcquire(&taken).ok()) return 1;
    return taken ? 0 : 2;  // Exits holding it: dead from now on.
  });
  ExpectExit(child_holder, 0);
  ASSERT_OK(lock.Acquire(std::chrono::nanoseconds(0), &got, &died));
  EXPECT_TRUE(got && died);
  ASSERT_OK(lock.Release());
  // And a living holder with its own start time keeps the lock.
  int held[2];
  ASSERT_EQ(pipe(held), 0);
  pid_t living = test::ForkChild([&] {
    std::unique_ptr<Segment> segment;
    ProcessLock mine;
    bool taken = false;
    if (!OpenAttached(seg, &segment, &mine).ok() || !mine.TryAcquire(&taken).ok() || !taken) {
      return 1;
    }
    char c;
    if (write(held[1], "x", 1) != 1 || read(done[0], &c, 1) != 1) return 2;
    return mine.Release().ok() ? 0 : 3;
  });
  char c;
  ASSERT_EQ(read(held[0], &c, 1), 1);
  close(held[0]);
  close(held[1]);
  pid_t holder_pid = 0;
  ASSERT_OK(lock.Holder(&holder_pid));
  EXPECT_EQ(holder_pid, living);
  ASSERT_OK(lock.Acquire(std::chrono::milliseconds(1), &got, &died));
  EXPECT_FALSE(got);
  EXPECT_FALSE(died);
  ASSERT_EQ(write(done[1], "xx", 2), 2);  // Ends both children.
  ExpectExit(living, 0);
  ExpectExit(alive, 0);
  close(done[0]);
  close(done[1]);
}

// A word that names no process (restored from a damaged snapshot) is not a holder that lives.
TEST(ProcessLockCrashTest, AWordWithoutAPidIsTakenOver) {
  test::ScopedSegment seg;
  ProcessLock lock;
  ASSERT_OK(ProcessLock::Open(seg.get(), "l", OpenMode::kCreateIfMissing, &lock));
  lock.ref().entry->counter.store(int64_t{0x1234} << 32);
  bool got = false, died = false;
  ASSERT_OK(lock.Acquire(std::chrono::nanoseconds(0), &got, &died));
  EXPECT_TRUE(got);
  EXPECT_TRUE(died);
  pid_t holder = 0;
  ASSERT_OK(lock.Holder(&holder));
  EXPECT_EQ(holder, getpid());
}

struct CrashCase {
  const char* point;
  bool holding;    // The crashed process is the one taking (else: a waiter of a held lock).
  bool died_held;  // It died holding the lock: the next taker is told owner_died.
};

class ProcessLockCrashPointTest : public testing::TestWithParam<CrashCase> {};

// A process dies at each step: before its take (the lock stays free), right after it (held by
// the dead: taken over), after flagging the word as a waiter (a spare wake at most), right after
// its release (free). In every case a waiter of another process gets the lock, and owner_died
// says exactly whether the dead process held it.
TEST_P(ProcessLockCrashPointTest, DeathAtEachStepLeavesTheLockUsable) {
  const CrashCase& c = GetParam();
  test::ScopedSegment seg;
  ProcessLock lock;
  ASSERT_OK(ProcessLock::Open(seg.get(), "l", OpenMode::kCreateIfMissing, &lock));
  bool got = false;
  if (!c.holding) {
    ASSERT_OK(lock.TryAcquire(&got));  // The crashing child will wait for it.
    ASSERT_TRUE(got);
  }
  pid_t child = test::ForkChild([&] {
    std::unique_ptr<Segment> segment;
    ProcessLock mine;
    if (!OpenAttached(seg, &segment, &mine).ok()) return 1;
    SetCrashPoint(c.point);
    bool taken = false, owner_died = false;
    if (!mine.Acquire(kLong, &taken, &owner_died).ok()) return 2;
    if (std::string(c.point) == "process_lock_released") (void)mine.Release();
    return 3;  // The crash point was not reached.
  });
  test::ChildExit exit = test::WaitChild(child);
  ASSERT_TRUE(exit.exited);
  ASSERT_EQ(exit.code, kCrashPointExitCode) << "the crash point " << c.point << " was not reached";
  if (!c.holding) {
    const auto word = static_cast<uint64_t>(lock.ref().entry->counter.load());
    EXPECT_NE(word & ProcessLock::kWaiters, 0u) << "the dead waiter flagged the word";
    ASSERT_OK(lock.Release());  // Its spare wake: nobody sleeps.
  }
  pid_t waiter = test::ForkChild([&] { return WaiterExpecting(seg, c.died_held); });
  ExpectExit(waiter, 0);
  bool locked = true;
  ASSERT_OK(lock.Locked(&locked));
  EXPECT_FALSE(locked);
}

INSTANTIATE_TEST_SUITE_P(Points, ProcessLockCrashPointTest,
                         testing::Values(CrashCase{"process_lock_before_take", true, false},
                                         CrashCase{"process_lock_taken", true, true},
                                         CrashCase{"process_lock_flagged", false, false},
                                         CrashCase{"process_lock_released", true, false}),
                         [](const testing::TestParamInfo<CrashCase>& param_info) {
                           return std::string(param_info.param.point);
                         });

}  // namespace
}  // namespace shm
