// The line of waiting pops (shm/list.h, ListPlace): places are served oldest first, across
// processes; a place that leaves, expires or whose process dies holds up nobody; a full line
// degrades to pops without a place. Other processes are real forked children, waited for by
// their state (blocked in a futex), never by a time.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "common/test_util.h"
#include "shm/list.h"

namespace shm {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using std::chrono::steady_clock;
using End = List::End;

List OpenList(Segment* seg, std::string_view name) {
  List list;
  Status s = List::Open(seg, name, OpenMode::kCreateIfMissing, ListOptions(), &list);
  EXPECT_TRUE(s.ok()) << s.ToString();
  return list;
}

steady_clock::time_point Far() { return steady_clock::now() + seconds(600); }

// Pops once without waiting, as `place` (may be null); "" when it got nothing.
std::string TryPop(List& list, ListPlace* place) {
  std::string item;
  bool got = false;
  Status s = list.Pop(End::kLeft, milliseconds(0), &item, &got, place);
  EXPECT_TRUE(s.ok()) << s.ToString();
  return got ? item : "";
}

// Blocks the calling child in a futex (a pop of an empty list) so the parent can wait for it.
int ParkChild(Segment* seg) {
  List park = OpenList(seg, "park");
  std::string item;
  bool got = false;
  return park.Pop(End::kLeft, milliseconds(60000), &item, &got).ok() ? 0 : 1;
}

TEST(ListLineTest, PlacesAreServedOldestFirst) {
  test::ScopedSegment seg;
  List list = OpenList(seg.get(), "line");
  ListPlace older(Far());
  ListPlace newer(Far());
  ASSERT_TRUE(list.Join(&older).ok());
  ASSERT_TRUE(list.Join(&newer).ok());
  ASSERT_TRUE(older.in_line() && newer.in_line());
  EXPECT_LT(older.ticket(), newer.ticket());
  ASSERT_TRUE(list.Push(End::kRight, "x").ok());
  ASSERT_TRUE(list.Push(End::kRight, "y").ok());
  EXPECT_EQ(TryPop(list, &newer), "");
  EXPECT_TRUE(newer.in_line());  // Still waiting.
  EXPECT_EQ(TryPop(list, &older), "x");
  EXPECT_FALSE(older.in_line());  // Served: it left the line.
  EXPECT_EQ(TryPop(list, &newer), "y");
}

TEST(ListLineTest, LeavingPassesTheTurn) {
  test::ScopedSegment seg;
  List list = OpenList(seg.get(), "line");
  ListPlace older(Far());
  ListPlace newer(Far());
  ASSERT_TRUE(list.Join(&older).ok());
  ASSERT_TRUE(list.Join(&newer).ok());
  ASSERT_TRUE(list.Push(End::kRight, "x").ok());
  EXPECT_EQ(TryPop(list, &newer), "");
  older.Leave();
  EXPECT_EQ(TryPop(list, &newer), "x");
}

// Another process's older waiter comes first, for a newer place and for a pop without one, until
// its process dies.
TEST(ListLineTest, AnotherProcesssWaiterComesFirstUntilItDies) {
  test::ScopedSegment seg;
  List list = OpenList(seg.get(), "line");
  pid_t child = test::ForkChild([&] {
    ListPlace place(Far());
    if (!list.Join(&place).ok() || !place.in_line()) return 2;
    return ParkChild(seg.get());
  });
  ASSERT_TRUE(test::WaitUntilInFutex(child));
  ASSERT_TRUE(list.Push(End::kRight, "x").ok());
  ListPlace mine(Far());
  EXPECT_EQ(TryPop(list, &mine), "");
  EXPECT_TRUE(mine.in_line());
  EXPECT_EQ(TryPop(list, nullptr), "");
  ASSERT_EQ(kill(child, SIGKILL), 0);
  test::ChildExit exit = test::WaitChild(child);
  ASSERT_TRUE(exit.signaled);
  EXPECT_EQ(TryPop(list, &mine), "x");
}

// A pop without a place yields to other processes' waiters, not to its own process's: that
// process's front end orders its own pops (a worker's WaitQueue).
TEST(ListLineTest, PopWithoutAPlaceYieldsOnlyToOtherProcesses) {
  test::ScopedSegment seg;
  List list = OpenList(seg.get(), "line");
  ListPlace mine(Far());
  ASSERT_TRUE(list.Join(&mine).ok());
  ASSERT_TRUE(list.Push(End::kRight, "x").ok());
  EXPECT_EQ(TryPop(list, nullptr), "x");
  EXPECT_TRUE(mine.in_line());
}

TEST(ListLineTest, ExpiredPlaceHoldsUpNobody) {
  test::ScopedSegment seg;
  List list = OpenList(seg.get(), "line");
  pid_t child = test::ForkChild([&] {
    ListPlace place(steady_clock::now() - milliseconds(1));
    if (!list.Join(&place).ok() || !place.in_line()) return 2;
    return ParkChild(seg.get());
  });
  ASSERT_TRUE(test::WaitUntilInFutex(child));
  ASSERT_TRUE(list.Push(End::kRight, "x").ok());
  EXPECT_EQ(TryPop(list, nullptr), "x");
  kill(child, SIGKILL);
  test::WaitChild(child);
}

// The line is full (another process holds every place): a new waiter is not in line and waits as
// a pop without a place, behind all of them; once they are gone it is served.
TEST(ListLineTest, FullLineDegradesToAPopWithoutAPlace) {
  test::ScopedSegment seg;
  List list = OpenList(seg.get(), "line");
  pid_t child = test::ForkChild([&] {
    std::vector<std::unique_ptr<ListPlace>> places;
    for (size_t i = 0; i < List::kLineSlots; ++i) {
      places.push_back(std::make_unique<ListPlace>(Far()));
      if (!list.Join(places.back().get()).ok() || !places.back()->in_line()) return 2;
    }
    return ParkChild(seg.get());
  });
  ASSERT_TRUE(test::WaitUntilInFutex(child));
  ListPlace late(Far());
  ASSERT_TRUE(list.Join(&late).ok());
  EXPECT_FALSE(late.in_line());
  ASSERT_TRUE(list.Push(End::kRight, "x").ok());
  EXPECT_EQ(TryPop(list, &late), "");
  EXPECT_FALSE(late.in_line());  // Still full.
  ASSERT_EQ(kill(child, SIGKILL), 0);
  ASSERT_TRUE(test::WaitChild(child).signaled);
  EXPECT_EQ(TryPop(list, &late), "x");
}

// Blocking pops of two processes: the one that started waiting first gets the first push, though
// both wake on it.
TEST(ListLineTest, BlockingPopsOfTwoProcessesAreServedInArrivalOrder) {
  test::ScopedSegment seg;
  List list = OpenList(seg.get(), "line");
  auto waiter = [&](const std::string& expected) {
    return test::ForkChild([&list, expected] {
      std::string item;
      bool got = false;
      Status s = list.Pop(End::kLeft, milliseconds(60000), &item, &got);
      return s.ok() && got && item == expected ? 0 : 1;
    });
  };
  pid_t first = waiter("first");
  ASSERT_TRUE(test::WaitUntilInFutex(first));
  pid_t second = waiter("second");
  ASSERT_TRUE(test::WaitUntilInFutex(second));
  ASSERT_TRUE(list.Push(End::kRight, "first").ok());
  ASSERT_TRUE(list.Push(End::kRight, "second").ok());
  test::ChildExit a = test::WaitChild(first);
  test::ChildExit b = test::WaitChild(second);
  EXPECT_TRUE(a.exited && a.code == 0);
  EXPECT_TRUE(b.exited && b.code == 0);
}

}  // namespace
}  // namespace shm
