// The rebuild: after a process dies inside the allocator, the committed state of every kind is
// copied into the next generation, which is healthy, while the poisoned one is refused.
#include <gtest/gtest.h>

#include "common/test_util.h"
#include "crash_point.h"
#include "shm/counter.h"
#include "shm/dict.h"
#include "shm/lease_lock.h"
#include "shm/list.h"
#include "shm/ndarray.h"
#include "shm/slice.h"
#include "shm/snapshot.h"

namespace shm {
namespace {

TEST(RebuildCrashTest, PoisonedSegmentIsCopiedWholeIntoTheNextGeneration) {
  test::ScopedSegment old_segment(16 << 20, 64);
  Segment* seg = old_segment.get();
  Counter counter;
  ASSERT_TRUE(Counter::Open(seg, "hits", {OpenMode::kCreateIfMissing, 41, 0}, &counter).ok());
  Dict dict;
  ASSERT_TRUE(Dict::Open(seg, "cache", OpenMode::kCreateIfMissing, {}, &dict).ok());
  SetOptions text;
  text.content_type = "text/plain";
  for (int i = 0; i < 100; ++i) {
    ASSERT_TRUE(dict.Set("k" + std::to_string(i), "value-" + std::to_string(i), text).ok());
  }
  List list;
  ASSERT_TRUE(List::Open(seg, "jobs", OpenMode::kCreateIfMissing, {}, &list).ok());
  for (int i = 0; i < 10; ++i)
    ASSERT_TRUE(list.Push(List::End::kRight, "job" + std::to_string(i)).ok());
  NdArray array;
  ASSERT_TRUE(NdArray::Create(seg, "grid", DType::kInt32, {4, 5}, Scalar::Int(3), &array).ok());
  Slice corner;
  ASSERT_TRUE(Slice::Parse("0,0", &corner).ok());
  ASSERT_TRUE(array.Fill(corner, Scalar::Int(-9)).ok());

  pid_t pid = test::ForkChild([&] {
    SetCrashPoint("inside_allocator");
    dict.Set("doomed", "never acknowledged", text);
    return 1;
  });
  test::ChildExit exit = test::WaitChild(pid);
  ASSERT_TRUE(exit.exited && exit.code == kCrashPointExitCode);
  ASSERT_TRUE(seg->Probe().IsPoisoned());
  EXPECT_TRUE(dict.Set("later", "x", text).IsPoisoned());
  seg->RecoverDeadProcess(pid, nullptr);

  SegmentOptions next;
  next.name = old_segment.shm_name().substr(0, old_segment.shm_name().rfind('.'));
  next.generation = 2;
  next.size = 32 << 20;  // The rebuild is also how a segment grows.
  next.max_objects = 64;
  std::unique_ptr<Segment> fresh;
  SnapshotStats stats;
  Status copied = CopyIntoNewSegment(seg, next, &fresh, &stats);
  ASSERT_TRUE(copied.ok()) << copied.ToString();
  EXPECT_EQ(stats.objects, 4u);
  EXPECT_EQ(fresh->generation(), 2u);
  EXPECT_EQ(fresh->size(), size_t{32} << 20);
  EXPECT_TRUE(fresh->Probe().ok());

  int64_t v = 0;
  ASSERT_TRUE(Counter::Open(fresh.get(), "hits", {}, &counter).ok());
  ASSERT_TRUE(counter.Get(&v).ok());
  EXPECT_EQ(v, 41);
  ASSERT_TRUE(Dict::Open(fresh.get(), "cache", OpenMode::kOpenExisting, {}, &dict).ok());
  for (int i = 0; i < 100; ++i) {
    DictValue value;
    ASSERT_TRUE(dict.Get("k" + std::to_string(i), &value).ok()) << i;
    EXPECT_EQ(value.data, "value-" + std::to_string(i));
    EXPECT_EQ(value.content_type, "text/plain");
  }
  DictValue doomed;
  EXPECT_TRUE(dict.Get("doomed", &doomed).IsNotFound());
  ASSERT_TRUE(dict.Set("later", "works", text).ok());
  ASSERT_TRUE(List::Open(fresh.get(), "jobs", OpenMode::kOpenExisting, {}, &list).ok());
  std::vector<std::string> items;
  ASSERT_TRUE(list.Range(0, -1, &items).ok());
  ASSERT_EQ(items.size(), 10u);
  EXPECT_EQ(items.front(), "job0");
  EXPECT_EQ(items.back(), "job9");
  ASSERT_TRUE(NdArray::Open(fresh.get(), "grid", &array).ok());
  ArrayData data;
  Slice all;
  ASSERT_TRUE(Slice::Parse("...", &all).ok());
  ASSERT_TRUE(array.ReadSlice(all, &data).ok());
  ASSERT_EQ(data.size(), 20);
  EXPECT_EQ(data.Get(0).i, -9);
  EXPECT_EQ(data.Get(19).i, 3);

  std::string fresh_name = fresh->shm_name();
  fresh.reset();
  Segment::Remove(fresh_name);
}

}  // namespace
}  // namespace shm
