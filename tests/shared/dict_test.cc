#include "shm/dict.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <limits>
#include <map>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "common/status_assert.h"
#include "common/test_util.h"
#include "kind_ops.h"
#include "object_guard.h"
#include "segment_impl.h"
#include "shm/counter.h"
#include "shm/sessions.h"
#include "shm/snapshot.h"
#include "test_clock.h"

namespace shm {
namespace {

Dict OpenDict(Segment* seg, std::string_view name, const DictOptions& options = {}) {
  Dict dict;
  Status s = Dict::Open(seg, name, OpenMode::kCreateIfMissing, options, &dict);
  EXPECT_TRUE(s.ok()) << s.ToString();
  return dict;
}

SetOptions Mode(SetMode mode) {
  SetOptions options;
  options.mode = mode;
  return options;
}

DictStats StatsOf(Dict& dict) {
  DictStats stats;
  EXPECT_OK(dict.Stats(&stats));
  return stats;
}

TEST(DictTest, SetGetKeepsBytesContentTypeAndIncreasingVersions) {
  test::ScopedSegment seg;
  Dict dict = OpenDict(seg.get(), "d");
  std::string binary_key("k\0\xff", 3);
  std::string binary_value("v\0\x01\x80", 4);
  SetOptions options;
  options.content_type = "application/octet-stream";
  uint64_t v1 = 0, v2 = 0;
  ASSERT_OK(dict.Set(binary_key, binary_value, options, &v1));
  ASSERT_OK(dict.Set("other", "", {}, &v2));
  EXPECT_GT(v2, v1);
  DictValue got;
  ASSERT_OK(dict.Get(binary_key, &got));
  EXPECT_EQ(got.data, binary_value);
  EXPECT_EQ(got.content_type, "application/octet-stream");
  EXPECT_EQ(got.version, v1);
  EXPECT_EQ(got.expires_at_ms, 0);
  ASSERT_OK(dict.Get("other", &got));
  EXPECT_EQ(got.data, "");
  EXPECT_EQ(got.content_type, "");
  uint64_t v3 = 0;
  ASSERT_OK(dict.Set(binary_key, "new", {}, &v3));
  EXPECT_GT(v3, v2);
  ASSERT_OK(dict.Get(binary_key, &got));
  EXPECT_EQ(got.data, "new");
  EXPECT_TRUE(dict.Get("missing", &got).IsNotFound());
  DictStats stats = StatsOf(dict);
  EXPECT_EQ(stats.entries, 2u);
  EXPECT_EQ(stats.bytes, 2 * Dict::kEntryOverhead + binary_key.size() + 3 + 5);
  EXPECT_EQ(stats.hits, 3u);
  EXPECT_EQ(stats.misses, 1u);
}

// Lock-free reads are tallied per thread and added in batches (dict.cc, UnlockedReadTally): a
// thread's own Stats sees all its reads, another thread's at most a batch less of each thread's.
TEST(DictTest, ReadsOfOtherThreadsReachTheStatsInBatches) {
  test::ScopedSegment seg;
  Dict dict = OpenDict(seg.get(), "d");
  ASSERT_OK(dict.Set("k", "v", {}, nullptr));
  constexpr uint64_t kReads = 1000;
  std::thread reader([&] {
    DictValue got;
    for (uint64_t i = 0; i < kReads; ++i) ASSERT_OK(dict.Get("k", &got));
    for (uint64_t i = 0; i < kReads; ++i) ASSERT_TRUE(dict.Get("absent", &got).IsNotFound());
  });
  reader.join();
  const DictStats seen = StatsOf(dict);
  EXPECT_LE(seen.hits, kReads);
  EXPECT_GE(seen.hits, kReads - 63);
  EXPECT_LE(seen.misses, kReads);
  EXPECT_GE(seen.misses, kReads - 63);
}

TEST(DictTest, AddAndReplaceModes) {
  test::ScopedSegment seg;
  Dict dict = OpenDict(seg.get(), "d");
  EXPECT_TRUE(dict.Set("k", "x", Mode(SetMode::kReplace)).IsNotFound());
  ASSERT_OK(dict.Set("k", "one", Mode(SetMode::kAdd)));
  EXPECT_TRUE(dict.Set("k", "two", Mode(SetMode::kAdd)).IsAlreadyExists());
  DictValue got;
  ASSERT_OK(dict.Get("k", &got));
  EXPECT_EQ(got.data, "one");
  ASSERT_OK(dict.Set("k", "three", Mode(SetMode::kReplace)));
  ASSERT_OK(dict.Get("k", &got));
  EXPECT_EQ(got.data, "three");
  EXPECT_EQ(StatsOf(dict).entries, 1u);
}

TEST(DictTest, CompareAndSetOnVersion) {
  test::ScopedSegment seg;
  Dict dict = OpenDict(seg.get(), "d");
  SetOptions cas;
  cas.if_version = 1234;
  EXPECT_TRUE(dict.Set("k", "x", cas).IsConflict());  // Absent.
  uint64_t version = 0;
  ASSERT_OK(dict.Set("k", "a", {}, &version));
  cas.if_version = version + 1;
  EXPECT_TRUE(dict.Set("k", "b", cas).IsConflict());
  EXPECT_TRUE(dict.Delete("k", version + 1).IsConflict());
  DictValue got;
  ASSERT_OK(dict.Get("k", &got));
  EXPECT_EQ(got.data, "a");
  cas.if_version = version;
  uint64_t next = 0;
  ASSERT_OK(dict.Set("k", "b", cas, &next));
  EXPECT_NE(next, version);
  EXPECT_TRUE(dict.Set("k", "c", cas).IsConflict());  // The old version is spent.
  EXPECT_TRUE(dict.Delete("k", version).IsConflict());
  ASSERT_OK(dict.Delete("k", next));
  EXPECT_TRUE(dict.Get("k", &got).IsNotFound());
  EXPECT_TRUE(dict.Delete("k").IsNotFound());
  EXPECT_TRUE(dict.Delete("k", next).IsConflict());
}

// SetOptions::keep_offset/keep_length: a rewrite keeps a field of the current value (the
// Manager's insertion order) in the same commit; a value without that field is a Conflict.
TEST(DictTest, RewriteKeepsAFieldOfTheCurrentValue) {
  test::ScopedSegment seg;
  Dict dict = OpenDict(seg.get(), "d");
  SetOptions keep = Mode(SetMode::kReplace);
  keep.keep_offset = 1;
  keep.keep_length = 3;
  EXPECT_TRUE(dict.Set("k", "E___new", keep).IsNotFound());  // Absent, with kReplace.
  ASSERT_OK(dict.Set("k", "E123old", {}));
  uint64_t version = 0;
  ASSERT_OK(dict.Set("k", "E___new", keep, &version));
  DictValue got;
  ASSERT_OK(dict.Get("k", &got));
  EXPECT_EQ(got.data, "E123new");
  EXPECT_EQ(got.version, version);
  ASSERT_OK(dict.Set("k", "E___longer value", keep));
  ASSERT_OK(dict.Get("k", &got));
  EXPECT_EQ(got.data, "E123longer value");
  // The tag before the field differs, or the current value is too short: nothing changes.
  EXPECT_TRUE(dict.Set("k", "X___", keep).IsConflict());
  ASSERT_OK(dict.Set("short", "E1", {}));
  EXPECT_TRUE(dict.Set("short", "E___", keep).IsConflict());
  ASSERT_OK(dict.Get("k", &got));
  EXPECT_EQ(got.data, "E123longer value");
  ASSERT_OK(dict.Get("short", &got));
  EXPECT_EQ(got.data, "E1");
  // Mode kSet writes an absent key as given.
  keep.mode = SetMode::kSet;
  ASSERT_OK(dict.Set("new", "E___v", keep));
  ASSERT_OK(dict.Get("new", &got));
  EXPECT_EQ(got.data, "E___v");
  // A field outside the value is refused before anything is looked at.
  keep.keep_length = 8;
  EXPECT_TRUE(dict.Set("k", "E__", keep).IsInvalidArgument());
  ASSERT_OK(dict.Get("k", &got));
  EXPECT_EQ(got.data, "E123longer value");
}

// A rewrite of the same size without expiry leaves the shard's counts unstored; every other
// rewrite recounts them: either way they stay exact.
TEST(DictTest, CountsStayExactAcrossRewritesOfEverySize) {
  test::ScopedSegment seg;
  ScopedWallClockForTesting clock;
  Dict dict = OpenDict(seg.get(), "d");
  SetOptions ttl;
  ttl.ttl_ms = 60'000;
  const std::string sizes[] = {"aaaa", "bbbb", "cc", "dddddddd", "eeeeeeee"};
  for (const std::string& value : sizes) {
    ASSERT_OK(dict.Set("k", value, {}));
    DictStats stats = StatsOf(dict);
    EXPECT_EQ(stats.entries, 1u);
    EXPECT_EQ(stats.bytes, Dict::kEntryOverhead + 1 + value.size());
    EXPECT_EQ(stats.expiring, 0u);
  }
  ASSERT_OK(dict.Set("k", "ffffffff", ttl));  // Same size, now with an expiry.
  EXPECT_EQ(StatsOf(dict).expiring, 1u);
  ASSERT_OK(dict.Set("k", "gggggggg", ttl));
  EXPECT_EQ(StatsOf(dict).expiring, 1u);
  ASSERT_OK(dict.Set("k", "hhhhhhhh", {}));  // Same size, the expiry dropped.
  DictStats stats = StatsOf(dict);
  EXPECT_EQ(stats.expiring, 0u);
  EXPECT_EQ(stats.entries, 1u);
  EXPECT_EQ(stats.bytes, Dict::kEntryOverhead + 1 + 8);
}

// SetOptions::keep_expiry: a rewrite keeps the current entry's expiry (Redis's SET KEEPTTL); an
// absent key gets the TTL asked for.
TEST(DictTest, RewriteKeepsTheExpiryWhenAsked) {
  test::ScopedSegment seg;
  ScopedWallClockForTesting clock;
  Dict dict = OpenDict(seg.get(), "d");
  SetOptions ttl;
  ttl.ttl_ms = 60'000;
  ASSERT_OK(dict.Set("k", "a", ttl));
  DictValue first;
  ASSERT_OK(dict.Get("k", &first));
  ASSERT_NE(first.expires_at_ms, 0);
  clock.Advance(1'000);
  SetOptions keep;
  keep.keep_expiry = true;
  keep.ttl_ms = 5'000;  // Ignored for a rewrite.
  ASSERT_OK(dict.Set("k", "b", keep));
  DictValue got;
  ASSERT_OK(dict.Get("k", &got));
  EXPECT_EQ(got.data, "b");
  EXPECT_EQ(got.expires_at_ms, first.expires_at_ms);
  const int64_t before = WallNowMs();
  ASSERT_OK(dict.Set("fresh", "c", keep));
  const int64_t after = WallNowMs();
  ASSERT_OK(dict.Get("fresh", &got));
  EXPECT_GE(got.expires_at_ms, before + 5'000);
  EXPECT_LE(got.expires_at_ms, after + 5'000);
  keep.ttl_ms = 0;
  ASSERT_OK(dict.Set("plain", "d", keep));
  ASSERT_OK(dict.Set("plain", "e", keep));
  ASSERT_OK(dict.Get("plain", &got));
  EXPECT_EQ(got.expires_at_ms, 0);
  // The kept expiry still expires the entry.
  clock.Advance(first.expires_at_ms - WallNowMs());
  EXPECT_TRUE(dict.Get("k", &got).IsNotFound());
}

// The empty key is a key (a Redis key or hash field may be empty).
TEST(DictTest, TheEmptyKeyIsAKey) {
  test::ScopedSegment seg;
  Dict dict = OpenDict(seg.get(), "d");
  ASSERT_OK(dict.Set("", "v", {}));
  DictValue got;
  ASSERT_OK(dict.Get("", &got));
  EXPECT_EQ(got.data, "v");
  EXPECT_EQ(StatsOf(dict).entries, 1u);
  ASSERT_OK(dict.Delete(""));
  EXPECT_TRUE(dict.Get("", &got).IsNotFound());
}

TEST(DictTest, BadInputIsInvalidArgumentAndChangesNothing) {
  test::ScopedSegment seg;
  Dict dict = OpenDict(seg.get(), "d");
  ASSERT_OK(dict.Set("k", "v", {}));
  DictStats before = StatsOf(dict);
  DictValue got;
  std::string long_key(Dict::kMaxKey + 1, 'k');
  EXPECT_TRUE(dict.Set(long_key, "v", {}).IsInvalidArgument());
  ASSERT_OK(dict.Set(std::string(Dict::kMaxKey, 'k'), "v", {}));
  ASSERT_OK(dict.Delete(std::string(Dict::kMaxKey, 'k')));
  std::string huge(Dict::kMaxValue + 1, 'v');
  Status s = dict.Set("k", huge, {});
  EXPECT_TRUE(s.IsInvalidArgument());
  EXPECT_NE(s.message().find("longer than the limit"), std::string_view::npos);
  SetOptions options;
  options.content_type = std::string(Dict::kMaxContentType + 1, 't');
  EXPECT_TRUE(dict.Set("k", "x", options).IsInvalidArgument());
  options.content_type = "text/plain\r\nX-Evil: 1";
  EXPECT_TRUE(dict.Set("k", "x", options).IsInvalidArgument());
  options = {};
  options.ttl_ms = -1;
  EXPECT_TRUE(dict.Set("k", "x", options).IsInvalidArgument());
  std::vector<std::string> keys;
  uint64_t cursor = 0;
  EXPECT_TRUE(dict.ListKeys("", 0, 0, &keys, &cursor).IsInvalidArgument());
  EXPECT_TRUE(dict.ListKeys("", Dict::kMaxListLimit + 1, 0, &keys, &cursor).IsInvalidArgument());
  ASSERT_OK(dict.Get("k", &got));
  EXPECT_EQ(got.data, "v");
  DictStats after = StatsOf(dict);
  EXPECT_EQ(after.entries, before.entries);
  EXPECT_EQ(after.bytes, before.bytes);

  Dict other;
  DictOptions bad;
  bad.eviction = DictEviction::kClock;  // Without max_bytes.
  EXPECT_TRUE(
      Dict::Open(seg.get(), "e", OpenMode::kCreateIfMissing, bad, &other).IsInvalidArgument());
  bad = {};
  bad.default_ttl_ms = -5;
  EXPECT_TRUE(
      Dict::Open(seg.get(), "e", OpenMode::kCreateIfMissing, bad, &other).IsInvalidArgument());
  ObjectInfo info;
  EXPECT_TRUE(seg->registry().Lookup("e", &info).IsNotFound());
}

TEST(DictTest, OptionsApplyOnCreateOnly) {
  test::ScopedSegment seg;
  DictOptions options;
  options.max_bytes = 4096;
  options.eviction = DictEviction::kClock;
  options.default_ttl_ms = 60000;
  Dict dict;
  bool created = false;
  ASSERT_OK(Dict::Open(seg.get(), "d", OpenMode::kCreateIfMissing, options, &dict, &created));
  EXPECT_TRUE(created);
  Dict again;
  ASSERT_OK(Dict::Open(seg.get(), "d", OpenMode::kOpenExisting, {}, &again, &created));
  EXPECT_FALSE(created);
  DictOptions got;
  ASSERT_OK(again.GetOptions(&got));
  EXPECT_EQ(got.max_bytes, 4096u);
  EXPECT_EQ(got.eviction, DictEviction::kClock);
  EXPECT_EQ(got.default_ttl_ms, 60000);
  EXPECT_TRUE(Dict::Open(seg.get(), "nope", OpenMode::kOpenExisting, {}, &again).IsNotFound());
}

TEST(DictTest, TtlExpiryIsObservedOnTheClockAndCounted) {
  test::ScopedSegment seg;
  ScopedWallClockForTesting clock;
  constexpr int64_t kMinute = 60 * 1000;
  DictOptions options;
  options.default_ttl_ms = 2 * kMinute;
  Dict dict = OpenDict(seg.get(), "d", options);
  SetOptions ttl;
  ttl.ttl_ms = kMinute;
  const int64_t before = WallNowMs();
  ASSERT_OK(dict.Set("short", "s", ttl));
  ASSERT_OK(dict.Set("default", "d", {}));
  ttl.ttl_ms = 3600 * 1000;
  ASSERT_OK(dict.Set("long", "l", ttl));
  const int64_t after = WallNowMs();
  DictValue short_value, default_value;
  ASSERT_OK(dict.Get("short", &short_value));
  ASSERT_OK(dict.Get("default", &default_value));
  EXPECT_GE(short_value.expires_at_ms, before + kMinute);
  EXPECT_LE(short_value.expires_at_ms, after + kMinute);
  EXPECT_GE(default_value.expires_at_ms, before + 2 * kMinute);
  EXPECT_LE(default_value.expires_at_ms, after + 2 * kMinute);
  // Seconds before the expiry the entry reads (a margin the real clock cannot cross meanwhile);
  // from the expiry on it does not.
  clock.Advance(short_value.expires_at_ms - 10'000 - WallNowMs());
  DictValue got;
  ASSERT_OK(dict.Get("short", &got));
  clock.Advance(short_value.expires_at_ms - WallNowMs());
  EXPECT_TRUE(dict.Get("short", &got).IsNotFound());
  // An expired key is absent for every operation.
  clock.Advance(default_value.expires_at_ms - WallNowMs());
  EXPECT_TRUE(dict.Set("default", "x", Mode(SetMode::kReplace)).IsNotFound());
  ASSERT_OK(dict.Set("default", "again", Mode(SetMode::kAdd)));
  ASSERT_OK(dict.Get("default", &got));
  EXPECT_EQ(got.data, "again");
  ASSERT_OK(dict.Get("long", &got));
  DictStats stats = StatsOf(dict);
  EXPECT_EQ(stats.expirations, 2u);  // "short" on read, "default" on rewrite.
  EXPECT_EQ(stats.entries, 2u);
}

// A dict without a default TTL reads no clock until its first entry with an expiry: from then on
// that entry expires for every operation, and entries without one never do.
TEST(DictTest, FirstEntryWithATtlInADictWithoutDefaultTtlExpires) {
  test::ScopedSegment seg;
  ScopedWallClockForTesting clock;
  Dict dict = OpenDict(seg.get(), "d");
  ASSERT_OK(dict.Set("plain", "p", {}));
  SetOptions ttl;
  ttl.ttl_ms = 60 * 1000;
  ASSERT_OK(dict.Set("short", "s", ttl));
  clock.Advance(60 * 1000);
  DictValue got;
  EXPECT_TRUE(dict.Get("short", &got).IsNotFound());
  std::vector<std::string> keys;
  uint64_t next = 0;
  ASSERT_OK(dict.ListKeys("", 10, 0, &keys, &next));
  EXPECT_EQ(keys, std::vector<std::string>{"plain"});
  ASSERT_OK(dict.Set("short", "again", ttl));
  clock.Advance(60 * 1000);
  EXPECT_TRUE(dict.Set("short", "x", Mode(SetMode::kReplace)).IsNotFound());
  ASSERT_OK(dict.Set("short", "added", Mode(SetMode::kAdd)));  // Replaces the expired entry.
  clock.Advance(int64_t{3650} * 24 * 3600 * 1000);
  for (const char* key : {"plain", "short"}) ASSERT_OK(dict.Get(key, &got));
  EXPECT_EQ(got.data, "added");
  EXPECT_EQ(StatsOf(dict).expirations, 2u);  // On the read, then on the rewrite.
}

// Entries of exactly `each` charged bytes: 3-byte keys, values filling the rest.
std::string Key(int i) {
  char text[8];
  snprintf(text, sizeof text, "k%02d", i);
  return text;
}

TEST(DictTest, ClockEvictionKeepsMaxBytesAndEvictsUnreferencedFirst) {
  test::ScopedSegment seg;
  constexpr uint64_t kEach = 104;
  const std::string value(kEach - Dict::kEntryOverhead - 3, 'v');
  DictOptions options;
  options.max_bytes = 10 * kEach;
  options.eviction = DictEviction::kClock;
  Dict dict = OpenDict(seg.get(), "cache", options);
  for (int i = 0; i < 10; ++i) ASSERT_OK(dict.Set(Key(i), value, {}));
  EXPECT_EQ(StatsOf(dict).bytes, 10 * kEach);
  DictValue got;
  for (int i = 0; i < 5; ++i) ASSERT_OK(dict.Get(Key(i), &got));  // Referenced.
  ASSERT_OK(dict.Set(Key(10), value, {}));
  DictStats stats = StatsOf(dict);
  EXPECT_EQ(stats.evictions, 1u);
  EXPECT_EQ(stats.bytes, 10 * kEach);
  EXPECT_LE(stats.bytes, options.max_bytes);
  for (int i = 0; i < 5; ++i) EXPECT_TRUE(dict.Get(Key(i), &got).ok()) << Key(i);
  ASSERT_OK(dict.Get(Key(10), &got));
  int unreferenced_left = 0;
  for (int i = 5; i < 10; ++i) unreferenced_left += dict.Get(Key(i), &got).ok() ? 1 : 0;
  EXPECT_EQ(unreferenced_left, 4);
  // Many more writes: the bound always holds.
  for (int i = 11; i < 60; ++i) {
    ASSERT_OK(dict.Set(Key(i), value, {}));
    ASSERT_LE(StatsOf(dict).bytes, options.max_bytes);
  }
  EXPECT_EQ(StatsOf(dict).entries, 10u);
  // An entry larger than the whole dict can never fit.
  EXPECT_TRUE(dict.Set("big", std::string(options.max_bytes, 'b'), {}).IsInvalidArgument());
  EXPECT_EQ(StatsOf(dict).entries, 10u);
}

TEST(DictTest, ClockEvictsExpiredEntriesEvenIfReferenced) {
  test::ScopedSegment seg;
  constexpr uint64_t kEach = 104;
  const std::string value(kEach - Dict::kEntryOverhead - 3, 'v');
  DictOptions options;
  options.max_bytes = 4 * kEach;
  options.eviction = DictEviction::kClock;
  Dict dict = OpenDict(seg.get(), "cache", options);
  ScopedWallClockForTesting clock;
  SetOptions short_ttl;
  short_ttl.ttl_ms = 60 * 1000;
  ASSERT_OK(dict.Set(Key(0), value, short_ttl));
  for (int i = 1; i < 4; ++i) ASSERT_OK(dict.Set(Key(i), value, {}));
  DictValue got;
  for (int i = 0; i < 4; ++i) ASSERT_OK(dict.Get(Key(i), &got));  // All referenced.
  ASSERT_OK(dict.Get(Key(0), &got));
  clock.Advance(got.expires_at_ms - WallNowMs());
  ASSERT_OK(dict.Set(Key(4), value, {}));
  DictStats stats = StatsOf(dict);
  EXPECT_EQ(stats.expirations, 1u);
  EXPECT_EQ(stats.evictions, 0u);
  for (int i = 1; i < 5; ++i) EXPECT_TRUE(dict.Get(Key(i), &got).ok()) << Key(i);
}

TEST(DictTest, IncrIntoAFullClockDictEvicts) {
  test::ScopedSegment seg;
  constexpr uint64_t kEach = 104;
  const std::string value(kEach - Dict::kEntryOverhead - 3, 'v');
  DictOptions options;
  options.max_bytes = 4 * kEach;
  options.eviction = DictEviction::kClock;
  Dict dict = OpenDict(seg.get(), "cache", options);
  for (int i = 0; i < 4; ++i) ASSERT_OK(dict.Set(Key(i), value, {}));
  int64_t result = 0;
  ASSERT_OK(dict.Incr("n", 1, 0, 0, &result));
  DictStats stats = StatsOf(dict);
  EXPECT_EQ(stats.evictions, 1u);
  EXPECT_EQ(stats.entries, 4u);
  EXPECT_LE(stats.bytes, options.max_bytes);
  DictValue got;
  ASSERT_OK(dict.Get("n", &got));
  EXPECT_EQ(got.data, "1");
}

TEST(DictTest, FullDictWithoutEvictionIsOutOfSpaceAndChangesNothing) {
  test::ScopedSegment seg;
  constexpr uint64_t kEach = 104;
  const std::string value(kEach - Dict::kEntryOverhead - 3, 'v');
  DictOptions options;
  options.max_bytes = 3 * kEach;
  Dict dict = OpenDict(seg.get(), "d", options);
  std::vector<uint64_t> versions(3);
  for (int i = 0; i < 3; ++i) ASSERT_OK(dict.Set(Key(i), value, {}, &versions[i]));
  DictStats before = StatsOf(dict);
  Status s = dict.Set(Key(3), value, {});
  EXPECT_TRUE(s.IsOutOfSpace()) << s.ToString();
  EXPECT_TRUE(dict.Set(Key(0), value + "x", {}).IsOutOfSpace());  // Growing an entry too.
  DictStats after = StatsOf(dict);
  EXPECT_EQ(after.entries, before.entries);
  EXPECT_EQ(after.bytes, before.bytes);
  EXPECT_EQ(after.evictions, 0u);
  DictValue got;
  for (int i = 0; i < 3; ++i) {
    ASSERT_OK(dict.Get(Key(i), &got));
    EXPECT_EQ(got.version, versions[i]);
  }
  EXPECT_TRUE(dict.Get(Key(3), &got).IsNotFound());
  ASSERT_OK(dict.Set(Key(0), value, {}));  // Same size: fits.
  ASSERT_OK(dict.Delete(Key(1)));
  ASSERT_OK(dict.Set(Key(3), value, {}));
}

TEST(DictTest, FullSegmentIsOutOfSpaceAndChangesNothing) {
  test::ScopedSegment seg(size_t{4} << 20, 16);
  Dict dict = OpenDict(seg.get(), "d");
  ASSERT_OK(dict.Set("k", "small", {}));
  std::string big(size_t{1} << 20, 'b');
  Status s;
  int stored = 0;
  for (int i = 0; i < 16 && s.ok(); ++i) {
    s = dict.Set("big" + std::to_string(i), big, {});
    if (s.ok()) ++stored;
  }
  EXPECT_TRUE(s.IsOutOfSpace()) << s.ToString();
  EXPECT_GT(stored, 0);
  DictValue got;
  ASSERT_OK(dict.Get("k", &got));
  EXPECT_EQ(got.data, "small");
  EXPECT_EQ(StatsOf(dict).entries, static_cast<uint64_t>(stored) + 1);
}

TEST(DictTest, GrowsToThousandsOfKeysAndDeletesHalf) {
  test::ScopedSegment seg(size_t{32} << 20);
  Dict dict = OpenDict(seg.get(), "d");
  constexpr int kKeys = 5000;
  for (int i = 0; i < kKeys; ++i)
    ASSERT_OK(dict.Set("key" + std::to_string(i), std::to_string(i), {}));
  DictStats stats = StatsOf(dict);
  EXPECT_EQ(stats.entries, static_cast<uint64_t>(kKeys));
  EXPECT_GE(stats.capacity, static_cast<uint64_t>(kKeys) * 4 / 3);
  DictValue got;
  for (int i = 0; i < kKeys; ++i) {
    ASSERT_OK(dict.Get("key" + std::to_string(i), &got));
    ASSERT_EQ(got.data, std::to_string(i));
  }
  for (int i = 0; i < kKeys; i += 2) ASSERT_OK(dict.Delete("key" + std::to_string(i)));
  for (int i = 0; i < kKeys; ++i) {
    Status s = dict.Get("key" + std::to_string(i), &got);
    ASSERT_EQ(s.ok(), i % 2 == 1) << i;
  }
}

TEST(DictTest, ChurnThroughManyKeysKeepsTheTableSmall) {
  test::ScopedSegment seg;
  Dict dict = OpenDict(seg.get(), "d");
  constexpr int kAlive = 50;
  for (int i = 0; i < 20000; ++i) {
    ASSERT_OK(dict.Set("churn" + std::to_string(i), "x", {}));
    if (i >= kAlive) ASSERT_OK(dict.Delete("churn" + std::to_string(i - kAlive)));
  }
  DictStats stats = StatsOf(dict);
  EXPECT_EQ(stats.entries, static_cast<uint64_t>(kAlive));
  // Tombstones are reused or cleared by rebuilds: 16 shards of at most 32 slots for 50 keys.
  EXPECT_LE(stats.capacity, 512u);
  DictValue got;
  for (int i = 20000 - kAlive; i < 20000; ++i) {
    ASSERT_OK(dict.Get("churn" + std::to_string(i), &got));
  }
  EXPECT_TRUE(dict.Get("churn0", &got).IsNotFound());
}

TEST(DictTest, ListKeysPagingVisitsEveryKeyOnce) {
  test::ScopedSegment seg;
  Dict dict = OpenDict(seg.get(), "d");
  std::set<std::string> expected;
  for (int i = 0; i < 3000; ++i) {
    std::string key = (i % 3 == 0 ? "b:" : "a:") + std::to_string(i);
    ASSERT_OK(dict.Set(key, "v", {}));
    if (key.starts_with("a:")) expected.insert(key);
  }
  std::multiset<std::string> seen;
  uint64_t cursor = 0;
  int pages = 0;
  do {
    std::vector<std::string> keys;
    ASSERT_OK(dict.ListKeys("a:", 7, cursor, &keys, &cursor));
    EXPECT_LE(keys.size(), 7u);
    seen.insert(keys.begin(), keys.end());
    ASSERT_LT(++pages, 1000);
  } while (cursor != 0);
  EXPECT_EQ(seen.size(), expected.size());
  EXPECT_EQ(std::set<std::string>(seen.begin(), seen.end()), expected);

  std::vector<std::string> all;
  ASSERT_OK(dict.ListKeys("", Dict::kMaxListLimit, 0, &all, &cursor));
  EXPECT_EQ(all.size(), 3000u);
  EXPECT_EQ(cursor, 0u);
}

// The cursor is a position in hash space: growth and tombstone cleanup between pages neither
// repeat nor skip a key that is present throughout.
TEST(DictTest, ListKeysPagingSurvivesTableRebuildsBetweenPages) {
  test::ScopedSegment seg(size_t{32} << 20);
  Dict dict = OpenDict(seg.get(), "d");
  std::set<std::string> expected;
  for (int i = 0; i < 400; ++i) {
    expected.insert("a:" + std::to_string(i));
    ASSERT_OK(dict.Set("a:" + std::to_string(i), "v", {}));
  }
  uint64_t capacity_before = StatsOf(dict).capacity;
  std::multiset<std::string> seen;
  uint64_t cursor = 0;
  int pages = 0;
  int filler = 0;
  do {
    std::vector<std::string> keys;
    ASSERT_OK(dict.ListKeys("a:", 9, cursor, &keys, &cursor));
    seen.insert(keys.begin(), keys.end());
    for (int i = 0; i < 150; ++i) ASSERT_OK(dict.Set("b:" + std::to_string(filler++), "v", {}));
    for (int i = filler - 150; i < filler - 20; ++i) {
      ASSERT_OK(dict.Delete("b:" + std::to_string(i)));
    }
    ASSERT_LT(++pages, 1000);
  } while (cursor != 0);
  EXPECT_GT(StatsOf(dict).capacity, capacity_before);  // The table was rebuilt meanwhile.
  EXPECT_EQ(seen.size(), expected.size());
  EXPECT_EQ(std::set<std::string>(seen.begin(), seen.end()), expected);
}

TEST(DictTest, IncrCountsInDecimalText) {
  test::ScopedSegment seg;
  Dict dict = OpenDict(seg.get(), "d");
  int64_t result = 0;
  ASSERT_OK(dict.Incr("n", 5, 100, 0, &result));
  EXPECT_EQ(result, 105);
  ASSERT_OK(dict.Incr("n", -10, 0, 0, &result));
  EXPECT_EQ(result, 95);
  DictValue got;
  ASSERT_OK(dict.Get("n", &got));
  EXPECT_EQ(got.data, "95");
  EXPECT_EQ(got.content_type, "text/plain");
  ASSERT_OK(dict.Set("text", "12abc", {}));
  EXPECT_TRUE(dict.Incr("text", 1, 0, 0, &result).IsInvalidArgument());
  ASSERT_OK(dict.Set("max", std::to_string(std::numeric_limits<int64_t>::max()), {}));
  EXPECT_TRUE(dict.Incr("max", 1, 0, 0, &result).IsInvalidArgument());
  ASSERT_OK(dict.Get("max", &got));
  EXPECT_EQ(got.data, std::to_string(std::numeric_limits<int64_t>::max()));
  // A created entry takes the TTL; an existing one keeps its expiry.
  ASSERT_OK(dict.Incr("ttl", 1, 0, 60000, &result));
  DictValue first;
  ASSERT_OK(dict.Get("ttl", &first));
  EXPECT_GT(first.expires_at_ms, 0);
  ASSERT_OK(dict.Incr("ttl", 1, 0, 0, &result));
  ASSERT_OK(dict.Get("ttl", &got));
  EXPECT_EQ(got.expires_at_ms, first.expires_at_ms);
  EXPECT_EQ(got.data, "2");
  EXPECT_TRUE(dict.Incr("n", 1, 0, -1, &result).IsInvalidArgument());
}

TEST(DictTest, UpdateAbortsOnErrorAndCanLeaveTheEntry) {
  test::ScopedSegment seg;
  Dict dict = OpenDict(seg.get(), "d");
  uint64_t version = 0;
  ASSERT_OK(dict.Set("k", "a", {}, &version));
  Status s =
      dict.Update("k", [](const DictValue*, DictUpdate*) { return Status::Conflict("no thanks"); });
  EXPECT_TRUE(s.IsConflict());
  uint64_t seen = 0;
  ASSERT_OK(dict.Update(
      "k",
      [](const DictValue* current, DictUpdate* update) {
        EXPECT_EQ(current->data, "a");
        update->write = false;
        return Status::OK();
      },
      &seen));
  EXPECT_EQ(seen, version);
  ASSERT_OK(dict.Update(
      "k",
      [](const DictValue* current, DictUpdate* update) {
        update->data = current->data + "b";
        return Status::OK();
      },
      &seen));
  DictValue got;
  ASSERT_OK(dict.Get("k", &got));
  EXPECT_EQ(got.data, "ab");
  EXPECT_EQ(got.version, seen);
  EXPECT_TRUE(dict.Update("k",
                          [](const DictValue*, DictUpdate* update) {
                            update->content_type = "bad\n";
                            return Status::OK();
                          })
                  .IsInvalidArgument());
}

// UpdateView shows the entry in place (what the keyspace's commands use): the same entry Update
// copies, nullptr when absent, and what it writes commits as Update's does.
TEST(DictTest, UpdateViewSeesTheEntryInPlace) {
  test::ScopedSegment seg;
  Dict dict = OpenDict(seg.get(), "d");
  SetOptions typed;
  typed.content_type = "text/plain";
  typed.ttl_ms = 60000;
  uint64_t version = 0;
  ASSERT_OK(dict.Set("k", "abc", typed, &version));
  DictValue copy;
  ASSERT_OK(dict.Get("k", &copy));
  ASSERT_OK(dict.UpdateView("k", [&](const DictEntryView* current, DictUpdate* update) {
    EXPECT_NE(current, nullptr);
    EXPECT_EQ(current->data, "abc");
    EXPECT_EQ(current->content_type, "text/plain");
    EXPECT_EQ(current->version, version);
    EXPECT_EQ(current->expires_at_ms, copy.expires_at_ms);
    DictValue kept = current->ToValue();
    EXPECT_EQ(kept.data, copy.data);
    EXPECT_EQ(kept.content_type, copy.content_type);
    update->data.assign(current->data);
    update->data += "d";
    update->keep_expiry = true;
    return Status::OK();
  }));
  DictValue got;
  ASSERT_OK(dict.Get("k", &got));
  EXPECT_EQ(got.data, "abcd");
  EXPECT_EQ(got.expires_at_ms, copy.expires_at_ms);
  bool saw_absent = false;
  ASSERT_OK(dict.UpdateView("absent", [&](const DictEntryView* current, DictUpdate* update) {
    saw_absent = current == nullptr;
    update->write = false;
    return Status::OK();
  }));
  EXPECT_TRUE(saw_absent);
  EXPECT_TRUE(dict.Get("absent", &got).IsNotFound());
  EXPECT_TRUE(dict.UpdateView(std::string(Dict::kMaxKey + 1, 'k'),
                              [](const DictEntryView*, DictUpdate*) { return Status::OK(); })
                  .IsInvalidArgument());
}

TEST(DictTest, WrongTypeOpenAndStaleHandleAfterDelete) {
  test::ScopedSegment seg;
  Counter counter;
  ASSERT_OK(Counter::Open(seg.get(), "c", {OpenMode::kCreateIfMissing, 0, 0}, &counter));
  Dict dict;
  Status s = Dict::Open(seg.get(), "c", OpenMode::kCreateIfMissing, {}, &dict);
  EXPECT_TRUE(s.IsWrongType()) << s.ToString();
  Sessions sessions;
  ASSERT_OK(Sessions::Open(seg.get(), "s", OpenMode::kCreateIfMissing, 1000, &sessions));
  EXPECT_TRUE(Dict::Open(seg.get(), "s", OpenMode::kCreateIfMissing, {}, &dict).IsWrongType());

  size_t baseline = seg->free_bytes();
  dict = OpenDict(seg.get(), "d");
  for (int i = 0; i < 1000; ++i) ASSERT_OK(dict.Set("k" + std::to_string(i), "value", {}));
  ASSERT_OK(seg->registry().Delete("d"));
  EXPECT_EQ(seg->free_bytes(), baseline);  // Every blob, the table and the rep were freed.
  DictValue got;
  EXPECT_TRUE(dict.Get("k1", &got).IsNotFound());
  EXPECT_TRUE(dict.Set("k1", "x", {}).IsNotFound());
  EXPECT_TRUE(dict.Delete("k1").IsNotFound());
  DictStats stats;
  EXPECT_TRUE(dict.Stats(&stats).IsNotFound());
  EXPECT_EQ(seg->free_bytes(), baseline);  // The failed Set freed its blob.
  Dict fresh = OpenDict(seg.get(), "d");
  EXPECT_TRUE(fresh.Get("k1", &got).IsNotFound());
  EXPECT_TRUE(dict.Get("k1", &got).IsNotFound());  // Still stale: a new incarnation.
}

TEST(DictTest, SecondMappingAtAnotherAddressSeesTheSameEntries) {
  test::ScopedSegment seg;
  Dict dict = OpenDict(seg.get(), "d");
  for (int i = 0; i < 200; ++i) ASSERT_OK(dict.Set("k" + std::to_string(i), std::to_string(i), {}));
  std::unique_ptr<Segment> other;
  ASSERT_OK(Segment::Attach(seg.shm_name(), &other));
  ASSERT_NE(other->impl()->root(), seg->impl()->root());
  Dict there;
  ASSERT_OK(Dict::Open(other.get(), "d", OpenMode::kOpenExisting, {}, &there));
  DictValue got;
  for (int i = 0; i < 200; ++i) {
    ASSERT_OK(there.Get("k" + std::to_string(i), &got));
    EXPECT_EQ(got.data, std::to_string(i));
  }
  ASSERT_OK(there.Set("from-there", "x", {}));
  ASSERT_OK(dict.Get("from-there", &got));
}

// The keys of `dict` as Entries lists them, with their values ("key=value").
std::vector<std::string> EntriesOf(const Dict& dict) {
  std::vector<DictItem> items;
  EXPECT_OK(dict.Entries(true, &items));
  std::vector<std::string> out;
  for (const DictItem& item : items) out.push_back(item.key + "=" + item.value);
  return out;
}

// Entries lists keys in the order they were first written, across shards and table rebuilds: a
// rewrite (Set, Update, Incr) keeps a key's place, a delete ends it, a key written again goes
// last. Checked against a model over a seeded random history, for a sharded dict and a one-shard
// one (the hashes of a keyspace).
TEST(DictTest, EntriesComeInInsertionOrder) {
  for (uint64_t max_bytes : {uint64_t{0}, uint64_t{1} << 30}) {
    SCOPED_TRACE(max_bytes);
    test::ScopedSegment seg;
    DictOptions options;
    options.max_bytes = max_bytes;
    Dict dict = OpenDict(seg.get(), "d", options);
    std::vector<std::pair<std::string, std::string>> model;  // In insertion order.
    auto find = [&](const std::string& key) {
      return std::find_if(model.begin(), model.end(),
                          [&](const auto& e) { return e.first == key; });
    };
    std::mt19937 rng(23);
    for (int step = 0; step < 3000; ++step) {
      const std::string key = "k" + std::to_string(rng() % 700);
      const std::string value = std::to_string(rng() % 1000);
      auto at = find(key);
      switch (rng() % 4) {
        case 0:  // Delete.
          if (at == model.end()) {
            EXPECT_TRUE(dict.Delete(key).IsNotFound());
          } else {
            ASSERT_OK(dict.Delete(key));
            model.erase(at);
          }
          break;
        case 1:  // Update.
          ASSERT_OK(dict.Update(key, [&](const DictValue*, DictUpdate* update) {
            update->data = value;
            return Status::OK();
          }));
          if (at == model.end()) {
            model.emplace_back(key, value);
          } else {
            at->second = value;
          }
          break;
        default:
          ASSERT_OK(dict.Set(key, value, {}));
          if (at == model.end()) {
            model.emplace_back(key, value);
          } else {
            at->second = value;
          }
      }
    }
    std::vector<std::string> expected;
    for (const auto& [key, value] : model) expected.push_back(key + "=" + value);
    ASSERT_GT(expected.size(), 200u);
    EXPECT_EQ(EntriesOf(dict), expected);
    std::vector<DictItem> keys_only;
    ASSERT_OK(dict.Entries(false, &keys_only));
    ASSERT_EQ(keys_only.size(), model.size());
    EXPECT_EQ(keys_only.front().key, model.front().first);
    EXPECT_TRUE(keys_only.front().value.empty());

    // A snapshot (and so a segment rebuild) keeps the order; a key written after goes last.
    std::string bytes;
    ASSERT_OK(SerializeSegment(seg.get(), &bytes, nullptr));
    test::ScopedSegment into;
    ASSERT_OK(RestoreSegment(bytes, into.get(), nullptr));
    Dict copy;
    ASSERT_OK(Dict::Open(into.get(), "d", OpenMode::kOpenExisting, {}, &copy));
    int64_t n = 0;
    ASSERT_OK(copy.Incr(model.front().first + "-new", 1, 0, 0, &n));
    ASSERT_OK(copy.Set(model.front().first, "again", {}));  // A rewrite keeps its place.
    expected.front() = model.front().first + "=again";
    expected.push_back(model.front().first + "-new=1");
    EXPECT_EQ(EntriesOf(copy), expected);
  }
}

// An expired entry's key is a new key when written again: it goes last.
TEST(DictTest, AnExpiredKeyWrittenAgainGoesLast) {
  test::ScopedSegment seg;
  ScopedWallClockForTesting clock;
  Dict dict = OpenDict(seg.get(), "d");
  SetOptions ttl;
  ttl.ttl_ms = 60 * 1000;
  ASSERT_OK(dict.Set("a", "1", ttl));
  ASSERT_OK(dict.Set("b", "2", {}));
  EXPECT_EQ(EntriesOf(dict), (std::vector<std::string>{"a=1", "b=2"}));
  clock.Advance(ttl.ttl_ms);
  EXPECT_EQ(EntriesOf(dict), (std::vector<std::string>{"b=2"}));
  ASSERT_OK(dict.Set("a", "3", {}));
  EXPECT_EQ(EntriesOf(dict), (std::vector<std::string>{"b=2", "a=3"}));
}

// Snapshots and segment rebuilds carry a dict whole: options, entries, versions, expiries.
TEST(DictTest, SnapshotRoundTripKeepsEntriesVersionsAndOptions) {
  test::ScopedSegment from;
  DictOptions options;
  options.max_bytes = 1 << 20;
  options.eviction = DictEviction::kClock;
  options.default_ttl_ms = 3600 * 1000;
  Dict dict = OpenDict(from.get(), "d", options);
  std::map<std::string, DictValue> written;
  for (int i = 0; i < 300; ++i) {
    SetOptions set;
    set.content_type = i % 2 ? "text/plain" : "";
    set.ttl_ms = i % 3 ? 0 : 7200 * 1000;
    std::string key = "k" + std::to_string(i);
    ASSERT_OK(dict.Set(key, std::string(i, 'x'), set));
    ASSERT_OK(dict.Get(key, &written[key]));
  }
  ScopedWallClockForTesting clock;
  SetOptions short_ttl;
  short_ttl.ttl_ms = 60 * 1000;
  ASSERT_OK(dict.Set("gone", "soon", short_ttl));
  Sessions sessions;
  ASSERT_OK(Sessions::Open(from.get(), "s", OpenMode::kCreateIfMissing, 600000, &sessions));
  std::string id;
  ASSERT_OK(Sessions::NewId(&id));
  int64_t visits = 0;
  ASSERT_OK(sessions.Incr(id, "visits", 3, &visits));
  DictValue gone;
  ASSERT_OK(dict.Get("gone", &gone));
  clock.Advance(gone.expires_at_ms - WallNowMs());  // Expired, still taking its bytes.

  const uint64_t hits = StatsOf(dict).hits;
  EXPECT_EQ(hits, written.size() + 1);  // With or without the lock, every hit counts.
  std::string bytes;
  ASSERT_OK(SerializeSegment(from.get(), &bytes, nullptr));
  test::ScopedSegment into;
  ASSERT_OK(RestoreSegment(bytes, into.get(), nullptr));
  Dict copy;
  ASSERT_OK(Dict::Open(into.get(), "d", OpenMode::kOpenExisting, {}, &copy));
  EXPECT_EQ(StatsOf(copy).hits, hits);
  DictOptions got_options;
  ASSERT_OK(copy.GetOptions(&got_options));
  EXPECT_EQ(got_options.max_bytes, options.max_bytes);
  EXPECT_EQ(got_options.eviction, options.eviction);
  EXPECT_EQ(got_options.default_ttl_ms, options.default_ttl_ms);
  DictValue got;
  for (const auto& [key, value] : written) {
    ASSERT_OK(copy.Get(key, &got));
    EXPECT_EQ(got.data, value.data);
    EXPECT_EQ(got.content_type, value.content_type);
    EXPECT_EQ(got.version, value.version);
    EXPECT_EQ(got.expires_at_ms, value.expires_at_ms);
  }
  EXPECT_TRUE(copy.Get("gone", &got).IsNotFound());
  EXPECT_EQ(StatsOf(copy).entries, written.size());
  EXPECT_EQ(StatsOf(copy).bytes, StatsOf(dict).bytes - Dict::kEntryOverhead - 4 - 4);
  uint64_t version = 0;
  ASSERT_OK(copy.Set("new", "v", {}, &version));
  EXPECT_GT(version, written["k299"].version);  // Versions stay unique after a restore.
  Sessions sessions_copy;
  ASSERT_OK(Sessions::Open(into.get(), "s", OpenMode::kOpenExisting, 1, &sessions_copy));
  EXPECT_EQ(sessions_copy.idle_ttl_ms(), 600000);
  ASSERT_OK(sessions_copy.Incr(id, "visits", 1, &visits));
  EXPECT_EQ(visits, 4);
}

// The snapshot bytes come from a file: every truncation is refused and frees what it built.
TEST(DictTest, MalformedSnapshotBytesAreRefusedWithoutALeak) {
  test::ScopedSegment seg;
  Dict dict = OpenDict(seg.get(), "d");
  for (int i = 0; i < 20; ++i) ASSERT_OK(dict.Set("k" + std::to_string(i), "value", {}));
  std::string bytes;
  {
    ObjectGuard guard;
    ASSERT_OK(guard.Lock(dict.ref()));
    ASSERT_OK(kDictOps.serialize_locked(seg->impl(), dict.ref().entry, &bytes));
  }
  size_t baseline = seg->free_bytes();
  uint64_t body = 0;
  ASSERT_OK(kDictOps.deserialize(seg->impl(), bytes, &body));
  kDictOps.destroy(seg->impl(), body);
  EXPECT_EQ(seg->free_bytes(), baseline);
  for (size_t cut = 0; cut < bytes.size(); cut += 7) {
    Status s = kDictOps.deserialize(seg->impl(), bytes.substr(0, cut), &body);
    ASSERT_TRUE(s.IsInvalidArgument()) << cut << ": " << s.ToString();
    ASSERT_EQ(seg->free_bytes(), baseline) << cut;
  }
  std::string bad_eviction = bytes;
  bad_eviction[8] = 7;  // The eviction policy follows max_bytes.
  EXPECT_TRUE(kDictOps.deserialize(seg->impl(), bad_eviction, &body).IsInvalidArgument());
  EXPECT_TRUE(kDictOps.deserialize(seg->impl(), bytes + "x", &body).IsInvalidArgument());
  EXPECT_EQ(seg->free_bytes(), baseline);
}

// Threads of one process each get their own intent slot: concurrent increments are exact.
TEST(DictTest, ThreadsIncrementExactly) {
  test::ScopedSegment seg;
  Dict dict = OpenDict(seg.get(), "d");
  constexpr int kThreads = 4;
  constexpr int kIncrements = 2000;
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      int64_t result = 0;
      for (int i = 0; i < kIncrements; ++i) {
        if (!dict.Incr("n", 1, 0, 0, &result).ok()) ++failures;
        if (!dict.Set("t" + std::to_string(t) + ":" + std::to_string(i), "x", {}).ok()) {
          ++failures;
        }
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  EXPECT_EQ(failures.load(), 0);
  DictValue got;
  ASSERT_OK(dict.Get("n", &got));
  EXPECT_EQ(got.data, std::to_string(kThreads * kIncrements));
  EXPECT_EQ(StatsOf(dict).entries, static_cast<uint64_t>(kThreads * kIncrements + 1));
}

// 4 forked processes write, read and delete the same keys; values carry a checksum, so a torn
// or mixed value is caught; the final state is consistent with the stats.
TEST(DictTest, ForkedWritersAndReadersNeverSeeATornValue) {
  test::ScopedSegment seg(size_t{64} << 20);
  Dict dict = OpenDict(seg.get(), "shared");
  constexpr int kProcesses = 4;
  constexpr int kOps = 3000;
  constexpr int kKeys = 24;
  std::vector<pid_t> children;
  for (int p = 0; p < kProcesses; ++p) {
    children.push_back(test::ForkChild([&, p] {
      std::mt19937_64 rng(1000 + p);
      DictValue got;
      for (int i = 0; i < kOps; ++i) {
        std::string key = "key" + std::to_string(rng() % kKeys);
        uint64_t op = rng() % 10;
        if (op < 4) {
          if (!dict.Set(key, test::MakeCheckedValue(rng, rng() % 3000), {}).ok()) return 2;
        } else if (op < 9) {
          Status s = dict.Get(key, &got);
          if (s.ok() && test::WholeChecksum(got.data) == 0) return 3;
          if (!s.ok() && !s.IsNotFound()) return 4;
        } else {
          Status s = dict.Delete(key);
          if (!s.ok() && !s.IsNotFound()) return 5;
        }
      }
      return 0;
    }));
  }
  for (pid_t pid : children) {
    test::ChildExit exit = test::WaitChild(pid);
    EXPECT_TRUE(exit.exited) << "signal " << exit.signal;
    EXPECT_EQ(exit.code, 0);
  }
  uint64_t present = 0, bytes = 0;
  DictValue got;
  for (int k = 0; k < kKeys; ++k) {
    std::string key = "key" + std::to_string(k);
    Status s = dict.Get(key, &got);
    if (s.IsNotFound()) continue;
    ASSERT_OK(s);
    EXPECT_NE(test::WholeChecksum(got.data), 0u);
    ++present;
    bytes += Dict::kEntryOverhead + key.size() + got.data.size();
  }
  DictStats stats = StatsOf(dict);
  EXPECT_EQ(stats.entries, present);
  EXPECT_EQ(stats.bytes, bytes);
}

// Get answers hits without the lock while other processes overwrite, delete and re-insert keys
// (freeing blobs that are at once reused for other keys' values of the same size) and grow and
// clean the table (freeing whole tables). Every answer must be a whole value written for that key:
// values are their key, "=", then a self-checking body (test::MakeCheckedValue).
TEST(DictTest, GetsWithoutTheLockNeverSeeAFreedOrForeignValue) {
  test::ScopedSegment seg(size_t{64} << 20);
  Dict dict = OpenDict(seg.get(), "shared");
  constexpr int kWriters = 2, kReaders = 2, kWriterOps = 20000, kMaxReads = 2000000;
  constexpr int kKeys = 64;
  auto key_of = [](uint64_t k) { return "key" + std::to_string(k); };
  auto value_of = [](const std::string& key, std::mt19937_64& rng) {
    return key + "=" + test::MakeCheckedValue(rng, 2000 + rng() % 2000);
  };
  for (uint64_t k = 0; k < kKeys; ++k) {
    std::mt19937_64 rng(k);
    ASSERT_OK(dict.Set(key_of(k), value_of(key_of(k), rng), {}));
  }
  Counter writers_done;
  ASSERT_OK(
      Counter::Open(seg.get(), "writers-done", {OpenMode::kCreateIfMissing, 0, 0}, &writers_done));
  std::vector<pid_t> children;
  for (int w = 0; w < kWriters; ++w) {
    children.push_back(test::ForkChild([&, w] {
      std::mt19937_64 rng(77 + w);
      int64_t done = 0;
      for (int i = 0; i < kWriterOps; ++i) {
        uint64_t op = rng() % 100;
        if (op < 70) {
          std::string key = key_of(rng() % kKeys);
          if (!dict.Set(key, value_of(key, rng), {}).ok()) return 2;
        } else if (op < 95) {
          Status s = dict.Delete(key_of(rng() % kKeys));
          if (!s.ok() && !s.IsNotFound()) return 3;
        } else {
          // A burst of fresh keys grows the table; deleting them leaves tombstones to clean.
          for (int j = 0; j < 40; ++j) {
            std::string key = "burst" + std::to_string(w) + "-" + std::to_string(j);
            if (!dict.Set(key, value_of(key, rng), {}).ok()) return 4;
          }
          for (int j = 0; j < 40; ++j) {
            if (!dict.Delete("burst" + std::to_string(w) + "-" + std::to_string(j)).ok()) return 5;
          }
        }
      }
      return writers_done.Add(1, &done).ok() ? 0 : 6;
    }));
  }
  for (int r = 0; r < kReaders; ++r) {
    children.push_back(test::ForkChild([&, r] {
      std::mt19937_64 rng(500 + r);
      DictValue got;
      int64_t done = 0;
      for (int i = 0; i < kMaxReads && writers_done.Get(&done).ok() && done < kWriters; ++i) {
        std::string key = key_of(rng() % kKeys);
        Status s = dict.Get(key, &got);
        if (s.IsNotFound()) continue;
        if (!s.ok()) return 7;
        if (got.data.compare(0, key.size() + 1, key + "=") != 0) return 8;  // Another key's.
        if (test::WholeChecksum(std::string_view(got.data).substr(key.size() + 1)) == 0) {
          return 9;  // Torn, or read from a freed blob.
        }
      }
      return 0;
    }));
  }
  for (pid_t pid : children) {
    test::ChildExit exit = test::WaitChild(pid);
    EXPECT_TRUE(exit.exited) << "signal " << exit.signal;
    EXPECT_EQ(exit.code, 0);
  }
  DictStats stats = StatsOf(dict);
  EXPECT_GT(stats.hits, 0u);
}

// A miss is answered without the lock when the key's chain ends before it: that must never hide
// a key that is there. Other processes churn the same dict meanwhile: bursts of fresh keys grow
// the table, their deletes leave tombstones (or empty a slot whose successor is empty), re-inserts
// fill tombstones, and rebuilds replace whole tables. Keys set before and never touched must be
// found on every read; keys never set must never be.
TEST(DictTest, MissesWithoutTheLockNeverHideAKeyThatIsThere) {
  test::ScopedSegment seg(size_t{64} << 20);
  Dict dict = OpenDict(seg.get(), "shared");
  constexpr int kWriters = 2, kReaders = 2, kWriterOps = 3000, kMaxReads = 2000000;
  constexpr int kStay = 200, kChurn = 400;
  for (int k = 0; k < kStay; ++k) ASSERT_OK(dict.Set("stay" + std::to_string(k), "v", {}));
  Counter writers_done;
  ASSERT_OK(
      Counter::Open(seg.get(), "writers-done", {OpenMode::kCreateIfMissing, 0, 0}, &writers_done));
  std::vector<pid_t> children;
  for (int w = 0; w < kWriters; ++w) {
    children.push_back(test::ForkChild([&, w] {
      std::mt19937_64 rng(300 + w);
      int64_t done = 0;
      for (int i = 0; i < kWriterOps; ++i) {
        const int first = static_cast<int>(rng() % kChurn);
        const int count = 1 + static_cast<int>(rng() % 60);
        for (int j = first; j < first + count; ++j) {
          if (!dict.Set("churn" + std::to_string(w) + "-" + std::to_string(j), "x", {}).ok()) {
            return 2;
          }
        }
        for (int j = first; j < first + count; ++j) {
          if (!dict.Delete("churn" + std::to_string(w) + "-" + std::to_string(j)).ok()) return 3;
        }
      }
      return writers_done.Add(1, &done).ok() ? 0 : 4;
    }));
  }
  for (int r = 0; r < kReaders; ++r) {
    children.push_back(test::ForkChild([&, r] {
      std::mt19937_64 rng(700 + r);
      DictValue got;
      int64_t done = 0;
      for (int i = 0; i < kMaxReads && writers_done.Get(&done).ok() && done < kWriters; ++i) {
        const bool stay = rng() % 2 == 0;
        const std::string key = (stay ? "stay" : "never") + std::to_string(rng() % kStay);
        Status s = dict.Get(key, &got);
        if (stay && !s.ok()) return 5;           // Hidden (or an error).
        if (!stay && !s.IsNotFound()) return 6;  // Found a key never set.
      }
      return 0;
    }));
  }
  for (pid_t pid : children) {
    test::ChildExit exit = test::WaitChild(pid);
    EXPECT_TRUE(exit.exited) << "signal " << exit.signal;
    EXPECT_EQ(exit.code, 0);
  }
  DictStats stats = StatsOf(dict);
  EXPECT_GT(stats.misses, 0u);
  EXPECT_EQ(stats.entries, static_cast<uint64_t>(kStay));
}

// Records every Take of a Read; fails with `fail` (when set) to show its error ends the Read.
class RecordingReader : public DictReader {
 public:
  Status Take(std::string_view data, std::string_view content_type, uint64_t version,
              int64_t expires_at_ms) override {
    ++takes;
    value = DictValue{std::string(data), std::string(content_type), version, expires_at_ms};
    return fail;
  }
  int takes = 0;
  DictValue value;
  Status fail;
};

// Read hands the reader what Get copies out, answers NotFound without calling it for an absent,
// expired or rejected key, and ends with the reader's error when it has one (changing nothing).
TEST(DictTest, ReadHandsTheReaderWhatGetCopies) {
  test::ScopedSegment seg;
  ScopedWallClockForTesting clock;
  Dict dict = OpenDict(seg.get(), "d");
  SetOptions options;
  options.content_type = "text/x";
  options.ttl_ms = 60'000;
  uint64_t version = 0;
  ASSERT_OK(dict.Set("k", std::string("v\0w", 3), options, &version));
  DictValue got;
  ASSERT_OK(dict.Get("k", &got));
  RecordingReader reader;
  ASSERT_OK(dict.Read("k", &reader));
  EXPECT_GE(reader.takes, 1);
  EXPECT_EQ(reader.value.data, got.data);
  EXPECT_EQ(reader.value.content_type, "text/x");
  EXPECT_EQ(reader.value.version, version);
  EXPECT_EQ(reader.value.expires_at_ms, got.expires_at_ms);

  RecordingReader absent;
  EXPECT_TRUE(dict.Read("absent", &absent).IsNotFound());
  EXPECT_TRUE(dict.Read(std::string(Dict::kMaxKey + 1, 'k'), &absent).IsInvalidArgument());
  EXPECT_EQ(absent.takes, 0);

  RecordingReader failing;
  failing.fail = Status::OutOfSpace("the reader's own");
  Status s = dict.Read("k", &failing);
  EXPECT_TRUE(s.IsOutOfSpace()) << s.ToString();
  EXPECT_EQ(failing.takes, 1);
  ASSERT_OK(dict.Get("k", &got));
  EXPECT_EQ(got.version, version);

  clock.Advance(got.expires_at_ms - WallNowMs());  // Expired: the locked path answers.
  RecordingReader expired;
  EXPECT_TRUE(dict.Read("k", &expired).IsNotFound());
  EXPECT_EQ(expired.takes, 0);
}

TEST(DictTest, EveryMissIsCountedWithOrWithoutTheLock) {
  test::ScopedSegment seg;
  Dict dict = OpenDict(seg.get(), "d");
  ASSERT_OK(dict.Set("present", "v", {}));
  const DictStats before = StatsOf(dict);
  DictValue got;
  for (int i = 0; i < 5; ++i)
    EXPECT_TRUE(dict.Get("absent" + std::to_string(i), &got).IsNotFound());
  ASSERT_OK(dict.Get("present", &got));
  const DictStats after = StatsOf(dict);
  EXPECT_EQ(after.misses - before.misses, 5u);
  EXPECT_EQ(after.hits - before.hits, 1u);
}

// Prefetch is a hint: whatever it is given (absent, over-long or empty keys, more than
// kMaxPrefetch of them, a handle whose dict was deleted, a handle never opened), it changes no
// entry and no statistic, and the reads that follow answer as without it.
TEST(DictTest, PrefetchChangesNothing) {
  test::ScopedSegment seg;
  Dict dict = OpenDict(seg.get(), "d");
  std::vector<std::string> names;
  for (int k = 0; k < 100; ++k) {
    names.push_back("key" + std::to_string(k));
    ASSERT_OK(dict.Set(names.back(), "value" + std::to_string(k), {}));
  }
  names.push_back("absent");
  names.push_back("");
  names.push_back(std::string(Dict::kMaxKey + 1, 'k'));
  std::vector<std::string_view> keys(names.begin(), names.end());
  const DictStats before = StatsOf(dict);
  dict.Prefetch(keys);
  dict.Prefetch({});
  const DictStats after = StatsOf(dict);
  EXPECT_EQ(after.hits, before.hits);
  EXPECT_EQ(after.misses, before.misses);
  EXPECT_EQ(after.entries, before.entries);
  EXPECT_EQ(after.bytes, before.bytes);
  DictValue got;
  for (int k = 0; k < 100; ++k) {
    ASSERT_OK(dict.Get(names[k], &got));
    EXPECT_EQ(got.data, "value" + std::to_string(k));
  }
  EXPECT_TRUE(dict.Get("absent", &got).IsNotFound());

  Dict stale = dict;
  ASSERT_OK(seg.get()->registry().Delete("d"));
  stale.Prefetch(keys);
  EXPECT_TRUE(stale.Get("key1", &got).IsNotFound());
  Dict never_opened;
  never_opened.Prefetch(keys);
}

}  // namespace
}  // namespace shm
