// List::Set and List::Replace (index access for shmstate.Manager().list()): their semantics, and
// a writer dying at each step of their commit protocol with the list's lock held: the parent
// sees the list before or after the operation, never a mix, the list stays usable, and what a
// death costs is a bounded leak, never a double free (Probe).
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <vector>

#include "common/test_util.h"
#include "crash_point.h"
#include "shm/list.h"
#include "shm/registry.h"

namespace shm {
namespace {

using Items = std::vector<std::string>;

List OpenList(Segment* seg, std::string_view name, uint64_t max_items = 1 << 20) {
  List list;
  ListOptions options;
  options.max_items = max_items;
  Status s = List::Open(seg, name, OpenMode::kCreateIfMissing, options, &list);
  EXPECT_TRUE(s.ok()) << s.ToString();
  return list;
}

Items All(const List& list) {
  Items items;
  Status s = list.Range(0, -1, &items);
  EXPECT_TRUE(s.ok()) << s.ToString();
  return items;
}

TEST(ListIndexTest, SetReplacesOneItemByPythonIndex) {
  test::ScopedSegment seg;
  List list = OpenList(seg.get(), "l");
  for (const char* item : {"a", "b", "c"}) ASSERT_TRUE(list.Push(List::End::kRight, item).ok());
  ASSERT_TRUE(list.Set(1, "B").ok());
  ASSERT_TRUE(list.Set(-1, "C").ok());
  EXPECT_EQ(All(list), (Items{"a", "B", "C"}));
  EXPECT_TRUE(list.Set(3, "x").IsNotFound());
  EXPECT_TRUE(list.Set(-4, "x").IsNotFound());
  EXPECT_EQ(All(list), (Items{"a", "B", "C"}));
}

TEST(ListIndexTest, ReplaceIsACompareAndSetOnTheContent) {
  test::ScopedSegment seg;
  const size_t baseline = seg->free_bytes();
  List list = OpenList(seg.get(), "l", 40);
  bool swapped = false;
  Items first{"x", "y"};
  ASSERT_TRUE(list.Replace(nullptr, first, &swapped).ok());
  EXPECT_TRUE(swapped);
  Items stale{"x"};
  ASSERT_TRUE(list.Replace(&stale, Items{"no"}, &swapped).ok());
  EXPECT_FALSE(swapped);
  EXPECT_EQ(All(list), first);
  Items many;
  for (int i = 0; i < 33; ++i) many.push_back("item" + std::to_string(i));  // Grows the ring.
  ASSERT_TRUE(list.Replace(&first, many, &swapped).ok());
  EXPECT_TRUE(swapped);
  EXPECT_EQ(All(list), many);
  ASSERT_TRUE(list.Push(List::End::kLeft, "front").ok());
  many.insert(many.begin(), "front");
  EXPECT_EQ(All(list), many);
  Items too_many(41, "z");
  EXPECT_TRUE(list.Replace(nullptr, too_many, &swapped).IsOutOfSpace());
  EXPECT_EQ(All(list), many);
  ASSERT_TRUE(list.Replace(&many, Items{}, &swapped).ok());
  EXPECT_TRUE(All(list).empty());
  ASSERT_TRUE(seg->registry().Delete("l").ok());
  EXPECT_EQ(seg->free_bytes(), baseline);
}

struct CrashCase {
  bool replace;  // Replace (else Set).
  const char* point;
  const char* item = "new-item";  // Set's: 8 bytes, a blob; "new" is inline (list_rep.h).
};

class ListIndexCrashTest : public ::testing::TestWithParam<CrashCase> {};

TEST_P(ListIndexCrashTest, DeathMidProtocolLeavesBeforeOrAfter) {
  const CrashCase c = GetParam();
  test::ScopedSegment seg;
  const size_t baseline = seg->free_bytes();
  List list = OpenList(seg.get(), "crashy");
  Items before{"a0", "a1", "a2", "a3"};
  for (const auto& item : before) ASSERT_TRUE(list.Push(List::End::kRight, item).ok());
  Items after = before;
  if (c.replace) {
    after.insert(after.begin() + 2, "inserted");
  } else {
    after[1] = c.item;
  }
  pid_t child = test::ForkChild([&] {
    SetCrashPoint(c.point, 1);
    bool swapped = false;
    return (c.replace ? list.Replace(&before, after, &swapped) : list.Set(1, c.item)).ok() ? 0 : 1;
  });
  test::ChildExit exit = test::WaitChild(child, 20000);
  ASSERT_TRUE(exit.exited);
  ASSERT_EQ(exit.code, kCrashPointExitCode) << "the crash point was never reached";

  Items now = All(list);  // The first lock after the death repairs.
  EXPECT_TRUE(now == before || now == after) << "length " << now.size();
  uint64_t length = 0;
  ASSERT_TRUE(list.Length(&length).ok());
  EXPECT_EQ(length, now.size());
  RecoveryReport report;
  ASSERT_TRUE(seg->RecoverDeadProcess(child, &report).ok());
  EXPECT_TRUE(seg->Probe().ok());

  ASSERT_TRUE(list.Push(List::End::kRight, "later").ok());
  now.push_back("later");
  ASSERT_TRUE(list.Set(0, "first").ok());
  now[0] = "first";
  EXPECT_EQ(All(list), now);
  ASSERT_TRUE(seg->registry().Delete("crashy").ok());
  // A death leaks at most the blobs of one operation (items and a ring), by design.
  EXPECT_LE(baseline - seg->free_bytes(), size_t{2048});
  EXPECT_TRUE(seg->Probe().ok());
}

std::string CaseName(const ::testing::TestParamInfo<CrashCase>& info) {
  return std::string(info.param.replace ? "Replace_" : "Set_") + info.param.point +
         (std::string_view(info.param.item).size() <= 7 ? "_inline" : "");
}

INSTANTIATE_TEST_SUITE_P(
    EveryStep, ListIndexCrashTest,
    ::testing::Values(CrashCase{false, "after_allocate"}, CrashCase{false, "after_intent"},
                      CrashCase{false, "after_commit"}, CrashCase{false, "before_free"},
                      CrashCase{false, "after_intent", "new"},
                      CrashCase{false, "after_commit", "new"}, CrashCase{true, "after_allocate"},
                      CrashCase{true, "after_intent"}, CrashCase{true, "after_commit"},
                      CrashCase{true, "before_free"}),
    CaseName);

}  // namespace
}  // namespace shm
