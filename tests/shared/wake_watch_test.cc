// WakeWatch: a push to a watched list or a release of a watched lock by another process ends a
// Wait (bounded by a long timeout: the answer is whether it was woken, never how fast), a
// change made before the Wait is not lost, and a watch counts as one waiter of its list.
#include "shm/wake_watch.h"

#include <gtest/gtest.h>

#include <chrono>
#include <string>

#include "common/test_util.h"
#include "layout.h"
#include "list_rep.h"
#include "segment_impl.h"
#include "shm/lease_lock.h"
#include "shm/list.h"

namespace shm {
namespace {

using std::chrono::seconds;

constexpr auto kLong = std::chrono::seconds(60);

List OpenList(Segment* seg, std::string_view name) {
  List list;
  EXPECT_TRUE(List::Open(seg, name, OpenMode::kCreateIfMissing, ListOptions(), &list).ok());
  return list;
}

uint32_t WaitersOf(const List& list) {
  const ObjectRef& ref = list.ref();
  return ref.segment->impl()
      ->Ptr<ListRep>(ref.entry->body.load(std::memory_order_acquire))
      ->waiters.load();
}

TEST(WakeWatchTest, APushByAnotherProcessEndsTheWait) {
  test::ScopedSegment seg;
  List list = OpenList(seg.get(), "jobs");
  WakeWatch watch;
  ASSERT_TRUE(watch.Watch(list.ref()));
  EXPECT_EQ(WaitersOf(list), 1u);  // So that pushes wake.
  pid_t child = test::ForkChild([&] {
    List mine = OpenList(seg.get(), "jobs");
    return mine.Push(List::End::kRight, "x").ok() ? 0 : 1;
  });
  EXPECT_TRUE(watch.Wait(kLong));
  EXPECT_EQ(test::WaitChild(child).code, 0);
  watch.Unwatch(list.ref());
  EXPECT_EQ(WaitersOf(list), 0u);
}

TEST(WakeWatchTest, AChangeBeforeTheWaitIsNotLostAndIsConsumedOnce) {
  test::ScopedSegment seg;
  List list = OpenList(seg.get(), "q");
  WakeWatch watch;
  ASSERT_TRUE(watch.Watch(list.ref()));
  ASSERT_TRUE(list.Push(List::End::kRight, "early").ok());
  EXPECT_TRUE(watch.Wait(kLong));  // Returns at once: the word moved since the watch began.
  EXPECT_FALSE(watch.Wait(std::chrono::milliseconds(1)));  // Nothing new: times out.
}

TEST(WakeWatchTest, AReleaseEndsTheWaitAndInterruptToo) {
  test::ScopedSegment seg;
  LeaseLock lock;
  ASSERT_TRUE(LeaseLock::Open(seg.get(), "l", OpenMode::kCreateIfMissing, &lock).ok());
  uint64_t token = 0;
  int64_t expires = 0;
  ASSERT_TRUE(lock.Acquire(60000, std::chrono::milliseconds(0), "t", &token, &expires).ok());
  WakeWatch watch;
  ASSERT_TRUE(watch.Watch(lock.ref()));
  pid_t child = test::ForkChild([&] {
    LeaseLock mine;
    if (!LeaseLock::Open(seg.get(), "l", OpenMode::kOpenExisting, &mine).ok()) return 1;
    return mine.Release(token).ok() ? 0 : 2;
  });
  EXPECT_TRUE(watch.Wait(kLong));
  EXPECT_EQ(test::WaitChild(child).code, 0);
  watch.Interrupt();
  EXPECT_TRUE(watch.Wait(kLong));
}

TEST(WakeWatchTest, AWatchOfADeletedListCountsNothingAndEndsTheWait) {
  test::ScopedSegment seg;
  List list = OpenList(seg.get(), "gone");
  WakeWatch watch;
  ASSERT_TRUE(watch.Watch(list.ref()));
  ASSERT_TRUE(seg->registry().Delete("gone").ok());
  EXPECT_TRUE(watch.Wait(kLong));  // A delete wakes its waiters.
  watch.Unwatch(list.ref());       // The list is gone: nothing to uncount, no crash.
  EXPECT_EQ(watch.watched(), 0u);
  EXPECT_FALSE(watch.Watch(list.ref()));  // A stale handle is not watched.
}

}  // namespace
}  // namespace shm
