// Crash tests for the registry and object locks: a process dies holding a lock, inside a create,
// or inside the allocator; afterwards nothing deadlocks, acknowledged state is intact and a
// poisoned allocator is reported as Poisoned rather than used.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <random>
#include <set>
#include <thread>

#include "common/test_util.h"
#include "crash_point.h"
#include "object_guard.h"
#include "segment_impl.h"
#include "shm/counter.h"
#include "shm/dict.h"

namespace shm {
namespace {

constexpr Counter::Options kCreate{OpenMode::kCreateIfMissing, 0, 0};

void ExpectCrashedAtPoint(pid_t pid) {
  test::ChildExit exit = test::WaitChild(pid);
  ASSERT_TRUE(exit.exited);
  ASSERT_EQ(exit.code, kCrashPointExitCode);
}

TEST(RegistryCrashTest, ObjectLockOfADeadOwnerIsRecovered) {
  test::ScopedSegment seg;
  Counter c;
  ASSERT_TRUE(Counter::Open(seg.get(), "c", kCreate, &c).ok());
  int64_t v = 0;
  ASSERT_TRUE(c.Add(5, &v).ok());
  pid_t pid = test::ForkChild([&] {
    ObjectGuard guard;
    if (!guard.Lock(c.ref()).ok()) return 1;
    _exit(kCrashPointExitCode);  // Dies holding the lock.
  });
  ExpectCrashedAtPoint(pid);
  ObjectGuard guard;
  ASSERT_TRUE(guard.Lock(c.ref(), std::chrono::milliseconds(2000)).ok());
  EXPECT_TRUE(guard.owner_died());
  guard.Unlock();
  ASSERT_TRUE(c.Get(&v).ok());
  EXPECT_EQ(v, 5);
}

TEST(RegistryCrashTest, RegistryLockOfADeadOwnerIsRecovered) {
  test::ScopedSegment seg;
  Counter c;
  ASSERT_TRUE(Counter::Open(seg.get(), "before", kCreate, &c).ok());
  pid_t pid = test::ForkChild([&] {
    RegistryGuard guard;
    if (!guard.Lock(seg->impl()).ok()) return 1;
    _exit(kCrashPointExitCode);
  });
  ExpectCrashedAtPoint(pid);
  ASSERT_TRUE(Counter::Open(seg.get(), "after", kCreate, &c).ok());
  ObjectInfo info;
  EXPECT_TRUE(seg->registry().Lookup("before", &info).ok());
  EXPECT_EQ(seg->registry().live(), 2u);
}

TEST(RegistryCrashTest, CreateThatDiesBeforeItsCommitLeavesNothing) {
  test::ScopedSegment seg(4 << 20, 8);
  pid_t pid = test::ForkChild([&] {
    SetCrashPoint("before_create_commit");
    Counter c;
    Counter::Open(seg.get(), "half", kCreate, &c);
    return 1;  // Not reached.
  });
  ExpectCrashedAtPoint(pid);
  ObjectInfo info;
  EXPECT_TRUE(seg->registry().Lookup("half", &info).IsNotFound());
  EXPECT_EQ(seg->registry().live(), 0u);
  RecoveryReport report;
  ASSERT_TRUE(seg->RecoverDeadProcess(pid, &report).ok());
  EXPECT_EQ(report.slots_released, 1);
  // Every one of the 8 entries is still usable: none was lost by the half-done create.
  for (int i = 0; i < 8; ++i) {
    Counter c;
    ASSERT_TRUE(Counter::Open(seg.get(), "n" + std::to_string(i), kCreate, &c).ok()) << i;
  }
}

TEST(RegistryCrashTest, DeathInsideTheAllocatorPoisonsInsteadOfCorrupting) {
  test::ScopedSegment seg;
  Counter c;
  ASSERT_TRUE(Counter::Open(seg.get(), "survivor", kCreate, &c).ok());
  int64_t v = 0;
  ASSERT_TRUE(c.Add(7, &v).ok());
  size_t free_before = seg->free_bytes();
  pid_t pid = test::ForkChild([&] {
    SetCrashPoint("inside_allocator");
    seg->Probe();
    return 1;  // Not reached.
  });
  ExpectCrashedAtPoint(pid);
  Status probe = seg->Probe();
  EXPECT_TRUE(probe.IsPoisoned()) << probe.ToString();
  EXPECT_TRUE(seg->poisoned());
  uint64_t handle = 0;
  EXPECT_TRUE(seg->impl()->Allocate(64, &handle).IsPoisoned());
  // Committed state stays readable and lock-free objects keep working.
  ASSERT_TRUE(c.Add(1, &v).ok());
  EXPECT_EQ(v, 8);
  EXPECT_EQ(seg->free_bytes(), free_before);
}

// A delete that dies right after detaching the body leaves the whole body (a dict's rep, table and
// entry blobs) as garbage in its intent slot; recovery frees all of it with the kind's destroy.
TEST(RegistryCrashTest, DeleteThatDiesAfterDetachingTheBodyLeaksNothing) {
  test::ScopedSegment seg;
  size_t baseline = seg->free_bytes();
  Dict dict;
  ASSERT_TRUE(Dict::Open(seg.get(), "d", OpenMode::kCreateIfMissing, {}, &dict).ok());
  for (int i = 0; i < 200; ++i) {
    ASSERT_TRUE(dict.Set("key" + std::to_string(i), std::string(100, 'v'), {}).ok());
  }
  ASSERT_LT(seg->free_bytes(), baseline);
  pid_t pid = test::ForkChild([&] {
    SetCrashPoint("after_commit");
    seg->registry().Delete("d");
    return 1;  // Not reached.
  });
  ExpectCrashedAtPoint(pid);
  ObjectInfo info;
  EXPECT_TRUE(seg->registry().Lookup("d", &info).IsNotFound());
  RecoveryReport report;
  ASSERT_TRUE(seg->RecoverDeadProcess(pid, &report).ok());
  EXPECT_EQ(report.intents_resolved, 1);
  EXPECT_EQ(seg->free_bytes(), baseline);
  DictValue value;
  EXPECT_TRUE(dict.Get("key1", &value).IsNotFound());
}

// A child creates, deletes and increments in a loop and is SIGKILLed at random moments. After
// each kill: no deadlock, the acknowledged count is never lost, the registry stays consistent.
TEST(RegistryCrashTest, SigkillLoopKeepsCountersAndRegistryConsistent) {
  test::ScopedSegment seg(8 << 20, 64);
  Counter total;
  ASSERT_TRUE(Counter::Open(seg.get(), "total", kCreate, &total).ok());
  std::mt19937 rng(20261125);
  int kills = 0;
  int poisoned = 0;
  for (int round = 0; round < 40; ++round) {
    int64_t acked = 0;  // The last value the child acknowledged (or the value before it ran).
    ASSERT_TRUE(total.Get(&acked).ok());
    int fds[2];
    ASSERT_EQ(pipe(fds), 0);
    pid_t pid = test::ForkChild([&] {
      close(fds[0]);
      for (uint64_t i = 0;; ++i) {
        Counter scratch;
        std::string name = "scratch" + std::to_string(i % 16);
        if (Counter::Open(seg.get(), name, kCreate, &scratch).ok()) {
          seg->registry().Delete(name);
        }
        int64_t value = 0;
        if (!total.Add(1, &value).ok()) return 1;
        if (write(fds[1], &value, sizeof value) != sizeof value) return 1;  // The ack.
      }
    });
    close(fds[1]);
    std::this_thread::sleep_for(std::chrono::microseconds(200 + rng() % 3000));
    kill(pid, SIGKILL);
    test::ChildExit exit = test::WaitChild(pid);
    ASSERT_TRUE(exit.signaled) << "child failed with code " << exit.code;
    ++kills;
    int64_t value = 0;
    while (read(fds[0], &value, sizeof value) == sizeof value) acked = value;
    close(fds[0]);
    Status recovered = seg->RecoverDeadProcess(pid, nullptr);
    int64_t now = 0;
    ASSERT_TRUE(total.Get(&now).ok());
    EXPECT_GE(now, acked);
    EXPECT_LE(now, acked + 1);
    if (recovered.IsPoisoned() || seg->Probe().IsPoisoned()) {
      ++poisoned;  // A kill inside the allocator: reported, never used. The rebuild is elsewhere.
      break;
    }
    // The registry answers (no deadlock) and names are unique.
    std::vector<ObjectInfo> objects;
    ASSERT_TRUE(seg->registry().List("", ObjectKind::kNone, 1000, "", &objects).ok());
    std::set<std::string> names;
    for (const auto& o : objects) EXPECT_TRUE(names.insert(o.name).second) << o.name;
    EXPECT_EQ(objects.size(), seg->registry().live());
    EXPECT_TRUE(names.count("total"));
  }
  EXPECT_GT(kills, 0);
  RecordProperty("kills", kills);
  RecordProperty("poisoned", poisoned);
}

}  // namespace
}  // namespace shm
