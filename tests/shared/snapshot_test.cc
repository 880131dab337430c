#include "shm/snapshot.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <boost/crc.hpp>
#include <cstring>

#include "common/test_util.h"
#include "shm/counter.h"
#include "shm/ndarray.h"

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

uint32_t Crc32(std::string_view bytes) {
  boost::crc_32_type crc;
  crc.process_bytes(bytes.data(), bytes.size());
  return crc.checksum();
}

// Breaks the payload of the first record of `kind` while keeping every checksum right, as a
// fuzzer would (the framing is the one of shared/src/snapshot.cc: 24-byte header, records of
// [u64 size][u32 crc][body], trailer [magic][u64 count][u32 crc of everything before]).
std::string BreakPayloadOfFirst(std::string bytes, uint32_t kind) {
  size_t pos = 24;
  while (pos + 12 < bytes.size() - 20) {
    uint64_t size;
    std::memcpy(&size, bytes.data() + pos, 8);
    size_t body = pos + 12;
    uint32_t record_kind;
    std::memcpy(&record_kind, bytes.data() + body, 4);
    if (record_kind == kind) {
      uint64_t name_length;
      std::memcpy(&name_length, bytes.data() + body + 20, 8);
      size_t payload = body + 28 + name_length + 8;
      bytes[payload] ^= 0x5a;  // The .npy magic of an array, the first byte of other kinds.
      uint32_t crc = Crc32(std::string_view(bytes).substr(body, size));
      std::memcpy(bytes.data() + pos + 8, &crc, 4);
      uint32_t total = Crc32(std::string_view(bytes).substr(0, bytes.size() - 4));
      std::memcpy(bytes.data() + bytes.size() - 4, &total, 4);
      return bytes;
    }
    pos = body + size;
  }
  ADD_FAILURE() << "no record of kind " << kind;
  return bytes;
}

// A record whose framing and checksums are fine but whose payload its kind refuses (found by the
// fuzzer) must not leave the records before it restored.
TEST(SnapshotTest, AMalformedPayloadUndoesEverythingRestoredBeforeIt) {
  test::ScopedSegment from;
  MakeCounter(from.get(), "a-first", 1);
  NdArray array;
  ASSERT_TRUE(
      NdArray::Create(from.get(), "b-array", DType::kInt32, {3}, Scalar::Int(1), &array).ok());
  MakeCounter(from.get(), "c-last", 3);
  std::string bytes;
  ASSERT_TRUE(SerializeSegment(from.get(), &bytes, nullptr).ok());
  std::string broken = BreakPayloadOfFirst(bytes, static_cast<uint32_t>(ObjectKind::kArray));

  test::ScopedSegment into;
  size_t baseline = into->free_bytes();
  SnapshotStats stats;
  Status s = RestoreSegment(broken, into.get(), &stats);
  EXPECT_TRUE(s.IsInvalidArgument()) << s.ToString();
  EXPECT_EQ(into->registry().live(), 0u);
  EXPECT_EQ(stats.objects, 0u);
  EXPECT_EQ(into->free_bytes(), baseline);
  ASSERT_TRUE(RestoreSegment(bytes, into.get(), &stats).ok());  // The intact one still loads.
  EXPECT_EQ(stats.objects, 3u);
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
