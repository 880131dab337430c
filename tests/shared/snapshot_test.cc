#include "shm/snapshot.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/test_util.h"
#include "shm/counter.h"

namespace shm {
namespace {

void MakeCounter(Segment* seg, const std::string& name, int64_t value, int64_t ttl_ms = 0) {
  Counter c;
  ASSERT_TRUE(Counter::Open(seg, name, {OpenMode::kCreateIfMissing, value, ttl_ms}, &c).ok());
}

int64_t CounterValue(Segment* seg, const std::string& name) {
  Counter c;
  int64_t v = -1;
  EXPECT_TRUE(Counter::Open(seg, name, {}, &c).ok()) << name;
  EXPECT_TRUE(c.Get(&v).ok());
  return v;
}

TEST(SnapshotTest, CountersRoundTripWithTheirExpiry) {
  test::ScopedSegment from;
  MakeCounter(from.get(), "a", 1);
  MakeCounter(from.get(), "b", -42);
  MakeCounter(from.get(), "c", int64_t{1} << 62, /*ttl_ms=*/600000);
  std::string bytes;
  SnapshotStats stats;
  ASSERT_TRUE(SerializeSegment(from.get(), &bytes, &stats).ok());
  EXPECT_EQ(stats.objects, 3u);
  EXPECT_EQ(stats.bytes, bytes.size());

  test::ScopedSegment into;
  ASSERT_TRUE(RestoreSegment(bytes, into.get(), &stats).ok());
  EXPECT_EQ(stats.objects, 3u);
  EXPECT_EQ(CounterValue(into.get(), "a"), 1);
  EXPECT_EQ(CounterValue(into.get(), "b"), -42);
  EXPECT_EQ(CounterValue(into.get(), "c"), int64_t{1} << 62);
  ObjectInfo info;
  ASSERT_TRUE(into->registry().Lookup("c", &info).ok());
  EXPECT_GT(info.expires_at_ms, WallNowMs() + 500000);
  ASSERT_TRUE(into->registry().Lookup("a", &info).ok());
  EXPECT_EQ(info.expires_at_ms, 0);
}

TEST(SnapshotTest, EveryTruncationAndEveryFlippedByteIsRefusedAndRestoresNothing) {
  test::ScopedSegment from;
  MakeCounter(from.get(), "x", 7);
  MakeCounter(from.get(), "y", 8);
  std::string bytes;
  ASSERT_TRUE(SerializeSegment(from.get(), &bytes, nullptr).ok());
  test::ScopedSegment into;
  for (size_t cut = 0; cut < bytes.size(); ++cut) {
    Status s = RestoreSegment(std::string_view(bytes).substr(0, cut), into.get(), nullptr);
    ASSERT_TRUE(s.IsInvalidArgument()) << "cut at " << cut << ": " << s.ToString();
  }
  for (size_t i = 0; i < bytes.size(); ++i) {
    std::string damaged = bytes;
    damaged[i] ^= 0x20;
    Status s = RestoreSegment(damaged, into.get(), nullptr);
    ASSERT_TRUE(s.IsInvalidArgument()) << "byte " << i << ": " << s.ToString();
  }
  EXPECT_EQ(into->registry().live(), 0u);
}

TEST(SnapshotTest, NotASnapshotSaysSo) {
  test::ScopedSegment into;
  Status s = RestoreSegment(std::string(100, 'x'), into.get(), nullptr);
  EXPECT_TRUE(s.IsInvalidArgument());
  EXPECT_NE(s.message().find("not a shmstate snapshot"), std::string_view::npos) << s.ToString();
}

TEST(SnapshotTest, RestoringOverAnExistingNameIsAlreadyExists) {
  test::ScopedSegment from;
  MakeCounter(from.get(), "dup", 1);
  std::string bytes;
  ASSERT_TRUE(SerializeSegment(from.get(), &bytes, nullptr).ok());
  test::ScopedSegment into;
  MakeCounter(into.get(), "dup", 5);
  EXPECT_TRUE(RestoreSegment(bytes, into.get(), nullptr).IsAlreadyExists());
  EXPECT_EQ(CounterValue(into.get(), "dup"), 5);
}

TEST(SnapshotTest, FilesAreWrittenAtomicallyWithMode0600) {
  std::string path = testing::TempDir() + "/snap-" + std::to_string(getpid());
  ASSERT_TRUE(WriteFileAtomically(path, "first").ok());
  ASSERT_TRUE(WriteFileAtomically(path, std::string("second\0bytes", 12)).ok());
  struct stat st;
  ASSERT_EQ(stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  std::string data;
  ASSERT_TRUE(ReadWholeFile(path, &data).ok());
  EXPECT_EQ(data, std::string("second\0bytes", 12));
  unlink(path.c_str());
  EXPECT_TRUE(ReadWholeFile(path, &data).IsNotFound());
  EXPECT_TRUE(WriteFileAtomically("/nonexistent-dir/x", "y").IsInternal());
}

}  // namespace
}  // namespace shm
