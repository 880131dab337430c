#include "shm/list.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <deque>
#include <fstream>
#include <map>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "common/test_util.h"
#include "shm/counter.h"
#include "shm/registry.h"
#include "shm/snapshot.h"

namespace shm {
namespace {

using std::chrono::milliseconds;
using End = List::End;

List OpenList(Segment* seg, std::string_view name, const ListOptions& options = {}) {
  List list;
  Status s = List::Open(seg, name, OpenMode::kCreateIfMissing, options, &list);
  EXPECT_TRUE(s.ok()) << s.ToString();
  return list;
}

std::vector<std::string> All(const List& list) {
  std::vector<std::string> items;
  Status s = list.Range(0, -1, &items);
  EXPECT_TRUE(s.ok()) << s.ToString();
  return items;
}

std::vector<std::string> Items(std::initializer_list<const char*> items) {
  return std::vector<std::string>(items.begin(), items.end());
}

TEST(ListTest, PushPopBothEndsMatchADequeModel) {
  test::ScopedSegment seg;
  List list = OpenList(seg.get(), "model");
  std::deque<std::string> model;
  std::mt19937 rng(20261125);
  for (int op = 0; op < 6000; ++op) {
    // Mostly pushes for the first half (the ring grows), mostly pops after (it shrinks).
    bool push = rng() % 100 < (op < 3000 ? 70u : 30u);
    End end = rng() % 2 ? End::kLeft : End::kRight;
    if (push) {
      std::string item = "i" + std::to_string(op) + std::string(rng() % 40, 'x');
      uint64_t length = 0;
      ASSERT_TRUE(list.Push(end, item, &length).ok());
      end == End::kLeft ? model.push_front(item) : model.push_back(item);
      ASSERT_EQ(length, model.size());
    } else {
      std::string item;
      bool got = false;
      ASSERT_TRUE(list.Pop(end, milliseconds(0), &item, &got).ok());
      ASSERT_EQ(got, !model.empty());
      if (got) {
        ASSERT_EQ(item, end == End::kLeft ? model.front() : model.back());
        end == End::kLeft ? model.pop_front() : model.pop_back();
      }
    }
    if (op % 97 == 0) {
      ASSERT_EQ(All(list), std::vector<std::string>(model.begin(), model.end())) << op;
    }
  }
  uint64_t length = 0;
  ASSERT_TRUE(list.Length(&length).ok());
  EXPECT_EQ(length, model.size());
  EXPECT_EQ(All(list), std::vector<std::string>(model.begin(), model.end()));
}

// left_by_last_pop: what the handle's last successful pop left, 0 when it emptied the list or
// when nothing is known (before a pop, after an empty pop, after a Replace); another handle's
// pops are its own.
TEST(ListTest, LeftByLastPopIsWhatThatPopLeft) {
  test::ScopedSegment seg;
  List list = OpenList(seg.get(), "left");
  List other = list;
  EXPECT_EQ(list.left_by_last_pop(), 0u);
  for (const char* item : {"a", "b", "c"}) ASSERT_TRUE(list.Push(List::End::kRight, item).ok());
  std::string item;
  bool got = false;
  ASSERT_TRUE(list.Pop(List::End::kLeft, std::chrono::milliseconds(0), &item, &got).ok());
  EXPECT_TRUE(got);
  EXPECT_EQ(list.left_by_last_pop(), 2u);
  ASSERT_TRUE(other.Pop(List::End::kRight, std::chrono::milliseconds(0), &item, &got).ok());
  EXPECT_EQ(other.left_by_last_pop(), 1u);
  EXPECT_EQ(list.left_by_last_pop(), 2u);  // A hint of this handle's own last pop.
  bool swapped = false;
  ASSERT_TRUE(list.Replace(nullptr, {"x", "y"}, &swapped).ok());
  EXPECT_EQ(list.left_by_last_pop(), 0u);
  ASSERT_TRUE(list.Pop(List::End::kLeft, std::chrono::milliseconds(0), &item, &got).ok());
  EXPECT_EQ(list.left_by_last_pop(), 1u);
  ASSERT_TRUE(list.Pop(List::End::kLeft, std::chrono::milliseconds(0), &item, &got).ok());
  EXPECT_EQ(item, "y");
  EXPECT_EQ(list.left_by_last_pop(), 0u);
  ASSERT_TRUE(list.Push(List::End::kRight, "z").ok());
  ASSERT_TRUE(list.Pop(List::End::kLeft, std::chrono::milliseconds(0), &item, &got).ok());
  ASSERT_TRUE(list.Pop(List::End::kLeft, std::chrono::milliseconds(0), &item, &got).ok());
  EXPECT_FALSE(got);
  EXPECT_EQ(list.left_by_last_pop(), 0u);
}

TEST(ListTest, RangeFollowsLrangeIndexSemantics) {
  test::ScopedSegment seg;
  List list = OpenList(seg.get(), "abc");
  std::vector<std::string> got;
  ASSERT_TRUE(list.Range(0, -1, &got).ok());
  EXPECT_TRUE(got.empty());
  for (const char* item : {"a", "b", "c", "d", "e"}) ASSERT_TRUE(list.Push(End::kRight, item).ok());
  struct Case {
    int64_t start, stop;
    std::vector<std::string> want;
  };
  const Case cases[] = {
      {0, -1, Items({"a", "b", "c", "d", "e"})},
      {0, 0, Items({"a"})},
      {1, 3, Items({"b", "c", "d"})},
      {-2, -1, Items({"d", "e"})},
      {2, -3, Items({"c"})},
      {-100, 100, Items({"a", "b", "c", "d", "e"})},
      {-6, -5, Items({"a"})},
      {4, 4, Items({"e"})},
      {5, 10, {}},
      {3, 1, {}},
      {-1, -2, {}},
      {0, -6, {}},
      {INT64_MIN, INT64_MAX, Items({"a", "b", "c", "d", "e"})},
      {INT64_MAX, INT64_MIN, {}},
  };
  for (const Case& c : cases) {
    bool truncated = true;
    ASSERT_TRUE(list.Range(c.start, c.stop, &got, &truncated).ok());
    EXPECT_EQ(got, c.want) << "start=" << c.start << " stop=" << c.stop;
    EXPECT_FALSE(truncated);
  }
}

TEST(ListTest, RangeIsCappedAndSaysSo) {
  test::ScopedSegment seg(64 << 20);
  List list = OpenList(seg.get(), "long");
  for (size_t i = 0; i < List::kMaxRangeItems + 5; ++i) {
    ASSERT_TRUE(list.Push(End::kRight, std::to_string(i)).ok());
  }
  std::vector<std::string> got;
  bool truncated = false;
  ASSERT_TRUE(list.Range(0, -1, &got, &truncated).ok());
  EXPECT_TRUE(truncated);
  ASSERT_EQ(got.size(), List::kMaxRangeItems);
  EXPECT_EQ(got.back(), std::to_string(List::kMaxRangeItems - 1));
  ASSERT_TRUE(list.Range(List::kMaxRangeItems, -1, &got, &truncated).ok());
  EXPECT_FALSE(truncated);
  EXPECT_EQ(got.size(), 5u);
}

// Collects what List::VisitRange shows, stopping after `stop_after` items when given.
class CollectingVisitor final : public List::RangeVisitor {
 public:
  explicit CollectingVisitor(size_t stop_after = SIZE_MAX) : stop_after_(stop_after) {}
  void Begin(uint64_t count) override {
    ++begins;
    announced = count;
    items.clear();
  }
  bool Item(std::string_view item) override {
    items.emplace_back(item);
    return items.size() < stop_after_;
  }
  int begins = 0;
  uint64_t announced = 0;
  std::vector<std::string> items;

 private:
  size_t stop_after_;
};

TEST(ListTest, VisitRangeShowsWhatRangeCopiesInlineAndBlobItems) {
  test::ScopedSegment seg;
  List list = OpenList(seg.get(), "visit");
  CollectingVisitor empty;
  ASSERT_TRUE(list.VisitRange(0, -1, &empty).ok());
  EXPECT_EQ(empty.begins, 1);
  EXPECT_EQ(empty.announced, 0u);
  // Items of 7 bytes or less live in their slot, longer ones in a block (list_rep.h).
  const std::vector<std::string> pushed = {"",  "a", "1234567", "12345678", std::string(300, 'z'),
                                           "bc"};
  for (const std::string& item : pushed) ASSERT_TRUE(list.Push(End::kRight, item).ok());
  const int64_t bounds[] = {INT64_MIN, -100, -7, -6, -2, -1, 0, 1, 3, 5, 6, 100, INT64_MAX};
  for (int64_t start : bounds) {
    for (int64_t stop : bounds) {
      std::vector<std::string> want;
      ASSERT_TRUE(list.Range(start, stop, &want).ok());
      CollectingVisitor visitor;
      ASSERT_TRUE(list.VisitRange(start, stop, &visitor).ok());
      EXPECT_EQ(visitor.begins, 1);
      EXPECT_EQ(visitor.announced, want.size()) << "start=" << start << " stop=" << stop;
      EXPECT_EQ(visitor.items, want) << "start=" << start << " stop=" << stop;
    }
  }
  CollectingVisitor first_two(2);  // Item answering false stops the visit.
  ASSERT_TRUE(list.VisitRange(0, -1, &first_two).ok());
  EXPECT_EQ(first_two.announced, 6u);
  EXPECT_EQ(first_two.items, Items({"", "a"}));
}

TEST(ListTest, VisitRangeIsNotCappedAsRangeIs) {
  test::ScopedSegment seg(64 << 20);
  List list = OpenList(seg.get(), "long");
  for (size_t i = 0; i < List::kMaxRangeItems + 5; ++i) {
    ASSERT_TRUE(list.Push(End::kRight, std::to_string(i)).ok());
  }
  CollectingVisitor visitor;
  ASSERT_TRUE(list.VisitRange(0, -1, &visitor).ok());
  EXPECT_EQ(visitor.announced, List::kMaxRangeItems + 5);
  ASSERT_EQ(visitor.items.size(), List::kMaxRangeItems + 5);
  EXPECT_EQ(visitor.items.back(), std::to_string(List::kMaxRangeItems + 4));
}

TEST(ListTest, LimitsAnswerClearlyAndChangeNothing) {
  test::ScopedSegment seg;
  List list;
  EXPECT_TRUE(
      List::Open(seg.get(), "bad", OpenMode::kCreateIfMissing, {0, 10}, &list).IsInvalidArgument());
  EXPECT_TRUE(List::Open(seg.get(), "bad", OpenMode::kCreateIfMissing,
                         {List::kMaxItemsLimit + 1, 10}, &list)
                  .IsInvalidArgument());
  EXPECT_TRUE(
      List::Open(seg.get(), "bad", OpenMode::kCreateIfMissing, {10, 0}, &list).IsInvalidArgument());
  ObjectInfo info;
  EXPECT_TRUE(seg->registry().Lookup("bad", &info).IsNotFound());
  EXPECT_TRUE(List::Open(seg.get(), "nope", OpenMode::kOpenExisting, {}, &list).IsNotFound());

  list = OpenList(seg.get(), "small", {3, 4});
  for (const char* item : {"a", "bb", ""}) ASSERT_TRUE(list.Push(End::kRight, item).ok());
  size_t free_before = seg->free_bytes();
  Status s = list.Push(End::kLeft, "x");
  EXPECT_TRUE(s.IsOutOfSpace()) << s.ToString();
  EXPECT_NE(s.message().find("max_items"), std::string_view::npos);
  EXPECT_EQ(seg->free_bytes(), free_before);
  std::string popped;
  bool popped_one = false;
  ASSERT_TRUE(list.Pop(End::kRight, milliseconds(0), &popped, &popped_one).ok());
  EXPECT_TRUE(popped_one);
  EXPECT_EQ(popped, "");
  free_before = seg->free_bytes();
  s = list.Push(End::kRight, "toolong");
  EXPECT_TRUE(s.IsInvalidArgument()) << s.ToString();
  EXPECT_EQ(seg->free_bytes(), free_before);
  EXPECT_EQ(All(list), Items({"a", "bb"}));
  std::string item;
  bool got = true;
  EXPECT_TRUE(list.Pop(End::kLeft, milliseconds(-1), &item, &got).IsInvalidArgument());
  EXPECT_FALSE(got);
  EXPECT_TRUE(
      list.Pop(End::kLeft, List::kMaxWait + milliseconds(1), &item, &got).IsInvalidArgument());
  EXPECT_EQ(All(list), Items({"a", "bb"}));
  // Reopening with other options keeps the list's own limits.
  List again = OpenList(seg.get(), "small", {100, 100});
  EXPECT_EQ(again.max_items(), 3u);
  EXPECT_EQ(again.max_item_bytes(), 4u);
}

TEST(ListTest, FullSegmentIsOutOfSpaceAndChangesNothing) {
  test::ScopedSegment seg(1 << 20, 16);
  List list = OpenList(seg.get(), "big", {1000, 1 << 20});
  const std::string chunk(64 << 10, 'z');
  Status s;
  int pushed = 0;
  while ((s = list.Push(End::kRight, chunk)).ok()) ++pushed;
  EXPECT_TRUE(s.IsOutOfSpace()) << s.ToString();
  EXPECT_GT(pushed, 0);
  size_t free_before = seg->free_bytes();
  EXPECT_TRUE(list.Push(End::kLeft, chunk).IsOutOfSpace());
  EXPECT_EQ(seg->free_bytes(), free_before);
  uint64_t length = 0;
  ASSERT_TRUE(list.Length(&length).ok());
  EXPECT_EQ(length, static_cast<uint64_t>(pushed));
  std::string item;
  bool got = false;
  ASSERT_TRUE(list.Pop(End::kLeft, milliseconds(0), &item, &got).ok());
  EXPECT_TRUE(got);
  EXPECT_EQ(item, chunk);
  EXPECT_TRUE(list.Push(End::kRight, "small again").ok());
}

TEST(ListTest, WrongTypeIsNotACast) {
  test::ScopedSegment seg;
  Counter counter;
  ASSERT_TRUE(Counter::Open(seg.get(), "n", {OpenMode::kCreateIfMissing}, &counter).ok());
  List list;
  Status s = List::Open(seg.get(), "n", OpenMode::kCreateIfMissing, {}, &list);
  EXPECT_TRUE(s.IsWrongType()) << s.ToString();
  EXPECT_EQ(s.message(), "'n' is a counter, not a list");
  OpenList(seg.get(), "q");
  EXPECT_TRUE(Counter::Open(seg.get(), "q", {OpenMode::kCreateIfMissing}, &counter).IsWrongType());
}

TEST(ListTest, HandleIsStaleAfterDeleteEvenIfTheNameIsReused) {
  test::ScopedSegment seg;
  size_t baseline = seg->free_bytes();
  List old_list = OpenList(seg.get(), "jobs");
  for (int i = 0; i < 100; ++i) ASSERT_TRUE(old_list.Push(End::kRight, "job").ok());
  ASSERT_TRUE(seg->registry().Delete("jobs").ok());
  EXPECT_EQ(seg->free_bytes(), baseline);  // Items, ring and rep all freed.
  uint64_t length = 0;
  std::string item;
  bool got = false;
  std::vector<std::string> items;
  EXPECT_TRUE(old_list.Push(End::kRight, "x").IsNotFound());
  EXPECT_TRUE(old_list.Pop(End::kLeft, milliseconds(0), &item, &got).IsNotFound());
  EXPECT_TRUE(old_list.Length(&length).IsNotFound());
  EXPECT_TRUE(old_list.Range(0, -1, &items).IsNotFound());
  List new_list = OpenList(seg.get(), "jobs");
  EXPECT_TRUE(old_list.Push(End::kRight, "x").IsNotFound());
  ASSERT_TRUE(new_list.Length(&length).ok());
  EXPECT_EQ(length, 0u);
}

TEST(ListTest, AnotherMappingSeesTheSameList) {
  test::ScopedSegment seg;
  List here = OpenList(seg.get(), "shared");
  ASSERT_TRUE(here.Push(End::kRight, "from the first mapping").ok());
  std::unique_ptr<Segment> attached;  // Same process, another address: offsets only.
  ASSERT_TRUE(Segment::Attach(seg.shm_name(), &attached).ok());
  List there;
  ASSERT_TRUE(List::Open(attached.get(), "shared", OpenMode::kOpenExisting, {}, &there).ok());
  for (int i = 0; i < 50; ++i) ASSERT_TRUE(there.Push(End::kLeft, std::to_string(i)).ok());
  std::vector<std::string> items = All(here);
  ASSERT_EQ(items.size(), 51u);
  EXPECT_EQ(items.front(), "49");
  EXPECT_EQ(items.back(), "from the first mapping");
}

TEST(ListTest, PopWithoutAPushReturnsGotFalseAfterTheWait) {
  test::ScopedSegment seg;
  List list = OpenList(seg.get(), "empty");
  std::string item = "unchanged";
  bool got = true;
  ASSERT_TRUE(list.Pop(End::kLeft, milliseconds(0), &item, &got).ok());
  EXPECT_FALSE(got);
  got = true;
  ASSERT_TRUE(list.Pop(End::kRight, milliseconds(30), &item, &got).ok());
  EXPECT_FALSE(got);
  EXPECT_EQ(item, "unchanged");
}

TEST(ListTest, BlockingPopIsReleasedByAPushFromAnotherProcess) {
  test::ScopedSegment seg;
  List list = OpenList(seg.get(), "wake");
  const pid_t parent = getpid();
  pid_t child = test::ForkChild([&] {
    test::WaitUntilInFutex(parent);
    return list.Push(End::kRight, "hello from the child").ok() ? 0 : 1;
  });
  std::string item;
  bool got = false;
  ASSERT_TRUE(list.Pop(End::kLeft, milliseconds(30000), &item, &got).ok());
  EXPECT_TRUE(got);
  EXPECT_EQ(item, "hello from the child");
  test::ChildExit exit = test::WaitChild(child);
  EXPECT_TRUE(exit.exited && exit.code == 0);
}

TEST(ListTest, DeletingAListWakesItsBlockedPopsWithNotFound) {
  test::ScopedSegment seg;
  List list = OpenList(seg.get(), "doomed");
  pid_t child = test::ForkChild([&] {
    std::string item;
    bool got = false;
    Status s = list.Pop(End::kLeft, milliseconds(30000), &item, &got);
    return s.IsNotFound() && !got ? 0 : 1;
  });
  test::WaitUntilInFutex(child);
  ASSERT_TRUE(seg->registry().Delete("doomed").ok());
  test::ChildExit exit = test::WaitChild(child, 20000);
  EXPECT_TRUE(exit.exited && exit.code == 0);
}

// 4 producers push tagged items while 2 consumers pop (blocking): every item arrives exactly once.
TEST(ListTest, ProducersAndConsumersExchangeEveryItemExactlyOnce) {
  test::ScopedSegment seg(32 << 20);
  List list = OpenList(seg.get(), "queue");
  Counter received;
  ASSERT_TRUE(Counter::Open(seg.get(), "received", {OpenMode::kCreateIfMissing}, &received).ok());
  constexpr int kProducers = 4;
  constexpr int kConsumers = 2;
  constexpr int kItemsEach = 2000;
  constexpr int kTotal = kProducers * kItemsEach;
  std::vector<std::string> outputs;
  std::vector<pid_t> consumers;
  for (int c = 0; c < kConsumers; ++c) {
    outputs.push_back(::testing::TempDir() + "list_consumer_" + std::to_string(getpid()) + "_" +
                      std::to_string(c));
    consumers.push_back(test::ForkChild([&, c] {
      std::ofstream out(outputs[c]);
      auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
      int64_t total = 0;
      while (received.Get(&total).ok() && total < kTotal) {
        if (std::chrono::steady_clock::now() > deadline) return 2;
        std::string item;
        bool got = false;
        if (!list.Pop(c == 0 ? End::kLeft : End::kRight, milliseconds(100), &item, &got).ok()) {
          return 1;
        }
        if (!got) continue;
        out << item << "\n";
        if (!received.Add(1, &total).ok()) return 1;
      }
      return out.good() ? 0 : 3;
    }));
  }
  std::vector<pid_t> producers;
  for (int p = 0; p < kProducers; ++p) {
    producers.push_back(test::ForkChild([&, p] {
      for (int i = 0; i < kItemsEach; ++i) {
        End end = (i + p) % 3 == 0 ? End::kLeft : End::kRight;
        if (!list.Push(end, "p" + std::to_string(p) + ":" + std::to_string(i)).ok()) return 1;
      }
      return 0;
    }));
  }
  for (pid_t pid : producers) {
    test::ChildExit exit = test::WaitChild(pid);
    EXPECT_TRUE(exit.exited && exit.code == 0);
  }
  for (pid_t pid : consumers) {
    test::ChildExit exit = test::WaitChild(pid);
    EXPECT_TRUE(exit.exited && exit.code == 0) << exit.code;
  }
  std::multiset<std::string> seen;
  for (const std::string& path : outputs) {
    std::ifstream in(path);
    for (std::string line; std::getline(in, line);) seen.insert(line);
    std::remove(path.c_str());
  }
  EXPECT_EQ(seen.size(), static_cast<size_t>(kTotal));
  for (int p = 0; p < kProducers; ++p) {
    for (int i = 0; i < kItemsEach; ++i) {
      ASSERT_EQ(seen.count("p" + std::to_string(p) + ":" + std::to_string(i)), 1u) << p << ":" << i;
    }
  }
  uint64_t length = 1;
  ASSERT_TRUE(list.Length(&length).ok());
  EXPECT_EQ(length, 0u);
}

TEST(ListTest, SnapshotRoundTripKeepsItemsOrderAndLimits) {
  test::ScopedSegment seg;
  List list = OpenList(seg.get(), "saved", {50, 1000});
  std::vector<std::string> want;
  for (int i = 0; i < 20; ++i) {
    std::string item = i == 7 ? std::string() : std::string("item\0", 5) + std::to_string(i);
    ASSERT_TRUE(list.Push(i % 2 ? End::kLeft : End::kRight, item).ok());
    if (i % 2) {
      want.insert(want.begin(), item);
    } else {
      want.push_back(item);
    }
  }
  std::string bytes;
  ASSERT_TRUE(SerializeSegment(seg.get(), &bytes, nullptr).ok());
  test::ScopedSegment fresh;
  ASSERT_TRUE(RestoreSegment(bytes, fresh.get(), nullptr).ok());
  List restored;
  ASSERT_TRUE(List::Open(fresh.get(), "saved", OpenMode::kOpenExisting, {}, &restored).ok());
  EXPECT_EQ(All(restored), want);
  EXPECT_EQ(restored.max_items(), 50u);
  EXPECT_EQ(restored.max_item_bytes(), 1000u);
  ASSERT_TRUE(restored.Push(End::kRight, "more").ok());
  std::string item;
  bool got = false;
  ASSERT_TRUE(restored.Pop(End::kLeft, milliseconds(0), &item, &got).ok());
  EXPECT_EQ(item, want.front());
}

}  // namespace
}  // namespace shm
