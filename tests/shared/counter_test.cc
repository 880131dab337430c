#include "shm/counter.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <limits>
#include <vector>

#include "common/test_util.h"
#include "segment_impl.h"

namespace shm {
namespace {

constexpr Counter::Options kCreate{OpenMode::kCreateIfMissing, 0, 0};

TEST(CounterTest, AddGetSetCas) {
  test::ScopedSegment seg;
  Counter c;
  bool created = false;
  ASSERT_TRUE(
      Counter::Open(seg.get(), "hits", {OpenMode::kCreateIfMissing, 10, 0}, &c, &created).ok());
  EXPECT_TRUE(created);
  int64_t v = 0;
  ASSERT_TRUE(c.Add(5, &v).ok());
  EXPECT_EQ(v, 15);
  ASSERT_TRUE(c.Add(-20, &v).ok());
  EXPECT_EQ(v, -5);
  ASSERT_TRUE(c.Set(100).ok());
  ASSERT_TRUE(c.Get(&v).ok());
  EXPECT_EQ(v, 100);
  int64_t actual = 0;
  EXPECT_TRUE(c.CompareAndSet(99, 1, &actual).IsConflict());
  EXPECT_EQ(actual, 100);
  ASSERT_TRUE(c.CompareAndSet(100, 1, &actual).ok());
  EXPECT_EQ(actual, 1);
  Counter again;
  ASSERT_TRUE(
      Counter::Open(seg.get(), "hits", {OpenMode::kCreateIfMissing, 10, 0}, &again, &created).ok());
  EXPECT_FALSE(created);
  ASSERT_TRUE(again.Get(&v).ok());
  EXPECT_EQ(v, 1);
}

TEST(CounterTest, OverflowIsAnErrorAndLeavesTheValue) {
  test::ScopedSegment seg;
  Counter c;
  ASSERT_TRUE(Counter::Open(seg.get(), "big", kCreate, &c).ok());
  const int64_t max = std::numeric_limits<int64_t>::max();
  ASSERT_TRUE(c.Set(max - 1).ok());
  int64_t v = 0;
  ASSERT_TRUE(c.Add(1, &v).ok());
  EXPECT_EQ(v, max);
  EXPECT_TRUE(c.Add(1, &v).IsInvalidArgument());
  ASSERT_TRUE(c.Get(&v).ok());
  EXPECT_EQ(v, max);
  ASSERT_TRUE(c.Set(std::numeric_limits<int64_t>::min()).ok());
  EXPECT_TRUE(c.Add(-1, &v).IsInvalidArgument());
  ASSERT_TRUE(c.Set(0).ok());
  EXPECT_TRUE(c.Add(std::numeric_limits<int64_t>::min(), &v).ok());
  EXPECT_TRUE(c.Add(-1, &v).IsInvalidArgument());
}

TEST(CounterTest, WrongTypeIsNotACast) {
  test::ScopedSegment seg;
  Registry::OpenSpec spec;
  spec.kind = ObjectKind::kList;
  spec.mode = OpenMode::kCreateIfMissing;
  spec.make_body = [&](uint64_t* body) { return seg->impl()->Allocate(64, body); };
  ObjectRef ref;
  ASSERT_TRUE(seg->registry().Open("q", spec, &ref).ok());
  Counter c;
  Status s = Counter::Open(seg.get(), "q", kCreate, &c);
  EXPECT_TRUE(s.IsWrongType());
  EXPECT_EQ(s.message(), "'q' is a list, not a counter");
}

// N forked processes each add 10,000: the total is exact.
TEST(CounterTest, ForkedProcessesAddExactly) {
  test::ScopedSegment seg;
  Counter c;
  ASSERT_TRUE(Counter::Open(seg.get(), "shared", kCreate, &c).ok());
  constexpr int kProcesses = 4;
  constexpr int kAdds = 10000;
  std::vector<pid_t> children;
  for (int p = 0; p < kProcesses; ++p) {
    children.push_back(test::ForkChild([&] {
      int64_t v = 0;
      for (int i = 0; i < kAdds; ++i) {
        if (!c.Add(1, &v).ok()) return 1;
      }
      return 0;
    }));
  }
  for (pid_t pid : children) {
    test::ChildExit exit = test::WaitChild(pid);
    EXPECT_TRUE(exit.exited && exit.code == 0);
  }
  int64_t v = 0;
  ASSERT_TRUE(c.Get(&v).ok());
  EXPECT_EQ(v, kProcesses * kAdds);
}

}  // namespace
}  // namespace shm
