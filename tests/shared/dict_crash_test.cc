// Crash tests of the dict's copy-on-write protocol: a writer dies at each named step of a Set
// (crash points), or is SIGKILLed at random moments, and the survivors find every value whole.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "common/status_assert.h"
#include "common/test_util.h"
#include "crash_point.h"
#include "dict_rep.h"
#include "segment_impl.h"
#include "shm/dict.h"
#include "shm/snapshot.h"

namespace shm {
namespace {

// The handle of the blob holding `key` (white-box: to account for the protocol's one leak).
uint64_t BlobHandleOf(Segment* seg, const Dict& dict, std::string_view key) {
  Segment::Impl* impl = seg->impl();
  auto* rep = impl->Ptr<DictRep>(dict.ref().entry->body.load());
  for (uint32_t shard = 0; shard < rep->shard_count(); ++shard) {
    auto* table = impl->Ptr<DictTableRep>(rep->shards[shard].table.load());
    for (uint64_t i = 0; i < table->capacity; ++i) {
      uint64_t word = table->slots()[i].blob.load();
      if (IsBlob(word) && impl->Ptr<DictEntryBlob>(word)->key() == key) return word;
    }
  }
  return 0;
}

// The lock of the shard holding `key` (white-box: which lock a writer died holding).
const DictStripeRep& StripeOf(Segment* seg, const Dict& dict, std::string_view key) {
  Segment::Impl* impl = seg->impl();
  uint64_t body = dict.ref().entry->body.load();
  uint32_t shard = impl->Ptr<DictRep>(body)->ShardOf(DictKeyHash(key));
  return impl->root()->dict_stripes[DictStripeIndex(body, shard)];
}

struct CrashCase {
  const char* point;
  bool committed;     // The new value is the one found after the crash.
  bool lock_held;     // The child died holding the dict's lock.
  int blobs_to_free;  // Garbage RecoverDeadProcess finds in the dead child's intent slot.
};

class DictCrashPointTest : public testing::TestWithParam<CrashCase> {};

TEST_P(DictCrashPointTest, WriterDyingMidSetLeavesOldOrNewWholeAndNoLeak) {
  const CrashCase& c = GetParam();
  test::ScopedSegment seg;
  size_t baseline = seg->free_bytes();
  Dict dict;
  ASSERT_OK(Dict::Open(seg.get(), "d", OpenMode::kCreateIfMissing, {}, &dict));
  std::mt19937_64 rng(7);
  std::vector<std::string> acked;
  for (int i = 0; i < 8; ++i) {
    acked.push_back(test::MakeCheckedValue(rng, 100 + i));
    ASSERT_OK(dict.Set("ack" + std::to_string(i), acked.back(), {}));
  }
  std::string old_value = test::MakeCheckedValue(rng, 300);
  std::string new_value = test::MakeCheckedValue(rng, 500);
  ASSERT_OK(dict.Set("target", old_value, {}));
  uint64_t old_blob = BlobHandleOf(seg.get(), dict, "target");
  ASSERT_NE(old_blob, 0u);

  pid_t child = test::ForkChild([&] {
    SetCrashPoint(c.point);
    dict.Set("target", new_value, {});
    return 0;  // The crash point was not reached.
  });
  test::ChildExit exit = test::WaitChild(child, 30000);
  ASSERT_TRUE(exit.exited);
  ASSERT_EQ(exit.code, kCrashPointExitCode) << c.point;
  EXPECT_EQ(StripeOf(seg.get(), dict, "target").mu.owner_pid() == child, c.lock_held);

  // Bounded: the dead owner's lock is repaired, not waited for.
  DictValue got;
  ASSERT_OK(dict.Get("target", &got));
  EXPECT_EQ(got.data, c.committed ? new_value : old_value);
  for (int i = 0; i < 8; ++i) {
    ASSERT_OK(dict.Get("ack" + std::to_string(i), &got));
    EXPECT_EQ(got.data, acked[i]);
  }
  DictStats stats;
  ASSERT_OK(dict.Stats(&stats));
  EXPECT_EQ(stats.entries, 9u);
  uint64_t bytes = 9 * Dict::kEntryOverhead + 6 + (c.committed ? new_value : old_value).size();
  for (int i = 0; i < 8; ++i) bytes += 4 + acked[i].size();
  EXPECT_EQ(stats.bytes, bytes);

  RecoveryReport report;
  ASSERT_OK(seg->RecoverDeadProcess(child, &report));
  EXPECT_EQ(report.slots_released, 1);
  if (std::string_view(c.point) == "before_free" && report.blobs_freed == 0) {
    // CowWriter::ReleaseGarbage takes the old blob out of the intent slot before this crash
    // point (so a free is never repeated): dying there leaks exactly the replaced blob, by
    // design. Free it by hand so the check below sees any other leak.
    seg->impl()->Free(old_blob);
  } else {
    EXPECT_EQ(report.blobs_freed, c.blobs_to_free);
  }
  ASSERT_OK(seg->Probe());
  // The dict still works, and deleting it frees everything: no leak, no double free.
  ASSERT_OK(dict.Set("target", "after", {}));
  ASSERT_OK(dict.Get("target", &got));
  EXPECT_EQ(got.data, "after");
  ASSERT_OK(seg->registry().Delete("d"));
  EXPECT_EQ(seg->free_bytes(), baseline);
}

// The same for a rewrite that keeps a field of the current value and its expiry (the Manager's
// d[str_key] = v, SetOptions::keep_offset): the field is copied into the staged blob under the
// lock, so a death at any step leaves the old entry or the new one with the old field, whole,
// its expiry and the shard's counts as they were.
TEST_P(DictCrashPointTest, WriterDyingMidRewriteKeepingAFieldLeavesOldOrNewWhole) {
  const CrashCase& c = GetParam();
  test::ScopedSegment seg;
  size_t baseline = seg->free_bytes();
  Dict dict;
  ASSERT_OK(Dict::Open(seg.get(), "d", OpenMode::kCreateIfMissing, {}, &dict));
  std::mt19937_64 rng(9);
  const std::string old_value = "E12345678" + test::MakeCheckedValue(rng, 291);
  const std::string new_value = "E________" + test::MakeCheckedValue(rng, 291);
  const std::string kept = old_value.substr(0, 9) + new_value.substr(9);
  SetOptions ttl;
  ttl.ttl_ms = 3'600'000;
  ASSERT_OK(dict.Set("target", old_value, ttl));
  DictValue before;
  ASSERT_OK(dict.Get("target", &before));
  const uint64_t old_blob = BlobHandleOf(seg.get(), dict, "target");
  DictStats stats_before;
  ASSERT_OK(dict.Stats(&stats_before));

  pid_t child = test::ForkChild([&] {
    SetCrashPoint(c.point);
    SetOptions keep;
    keep.mode = SetMode::kReplace;
    keep.keep_expiry = true;
    keep.keep_offset = 1;
    keep.keep_length = 8;
    dict.Set("target", new_value, keep);
    return 0;
  });
  test::ChildExit exit = test::WaitChild(child, 30000);
  ASSERT_TRUE(exit.exited);
  ASSERT_EQ(exit.code, kCrashPointExitCode) << c.point;

  DictValue got;
  ASSERT_OK(dict.Get("target", &got));
  EXPECT_EQ(got.data, c.committed ? kept : old_value);
  EXPECT_EQ(got.expires_at_ms, before.expires_at_ms);
  DictStats stats;
  ASSERT_OK(dict.Stats(&stats));
  EXPECT_EQ(stats.entries, 1u);
  EXPECT_EQ(stats.bytes, stats_before.bytes);
  EXPECT_EQ(stats.expiring, 1u);

  RecoveryReport report;
  ASSERT_OK(seg->RecoverDeadProcess(child, &report));
  if (std::string_view(c.point) == "before_free" && report.blobs_freed == 0) {
    seg->impl()->Free(old_blob);  // The protocol's one leak, as above.
  } else {
    EXPECT_EQ(report.blobs_freed, c.blobs_to_free);
  }
  ASSERT_OK(seg->Probe());
  ASSERT_OK(seg->registry().Delete("d"));
  EXPECT_EQ(seg->free_bytes(), baseline);
}

INSTANTIATE_TEST_SUITE_P(
    Points, DictCrashPointTest,
    testing::Values(CrashCase{"after_allocate", false, false, 1},  // Frees the new blob.
                    CrashCase{"after_intent", false, true, 1},     // Frees the new blob.
                    CrashCase{"after_commit", true, true, 1},      // Frees the old blob.
                    CrashCase{"before_free", true, false, 1}),     // Frees the old blob.
    [](const testing::TestParamInfo<CrashCase>& param_info) {
      return std::string(param_info.param.point);
    });

// A writer dies holding a shard's lock, and the dict is deleted before the manager settles the
// dead writer: the delete's DestroyDict takes that shard's stripe (settling the dead holder)
// before it frees the body, and the recovery afterwards frees the garbage once, without touching
// the freed shard (its intent names the stripe, which lives in Root).
class DictDeleteAfterDeathTest : public testing::TestWithParam<const char*> {};

TEST_P(DictDeleteAfterDeathTest, DeleteSettlesTheDeadShardHolderBeforeFreeing) {
  test::ScopedSegment seg;
  size_t baseline = seg->free_bytes();
  Dict dict;
  ASSERT_OK(Dict::Open(seg.get(), "d", OpenMode::kCreateIfMissing, {}, &dict));
  std::mt19937_64 rng(11);
  for (int i = 0; i < 40; ++i) {
    ASSERT_OK(dict.Set("k" + std::to_string(i), test::MakeCheckedValue(rng, 600 + i), {}));
  }
  pid_t child = test::ForkChild([&] {
    SetCrashPoint(GetParam());
    dict.Set("k7", std::string(700, 'n'), {});
    return 0;
  });
  test::ChildExit exit = test::WaitChild(child, 30000);
  ASSERT_TRUE(exit.exited);
  ASSERT_EQ(exit.code, kCrashPointExitCode);
  ASSERT_EQ(StripeOf(seg.get(), dict, "k7").mu.owner_pid(), child);  // Died holding it.

  ASSERT_OK(seg->registry().Delete("d"));
  // Reuse the freed body, tables and blobs, so that a recovery reading them would go wrong.
  Dict other;
  ASSERT_OK(Dict::Open(seg.get(), "other", OpenMode::kCreateIfMissing, {}, &other));
  std::vector<std::string> values;
  for (int i = 0; i < 60; ++i) {
    values.push_back(test::MakeCheckedValue(rng, 640 + i));
    ASSERT_OK(other.Set("o" + std::to_string(i), values.back(), {}));
  }
  RecoveryReport report;
  ASSERT_OK(seg->RecoverDeadProcess(child, &report));
  EXPECT_EQ(report.slots_released, 1);
  EXPECT_EQ(report.blobs_freed, 1);  // The unpublished new blob, or the replaced old one.
  ASSERT_OK(seg->Probe());
  DictValue got;
  for (int i = 0; i < 60; ++i) {
    ASSERT_OK(other.Get("o" + std::to_string(i), &got));
    EXPECT_EQ(got.data, values[i]);
  }
  ASSERT_OK(seg->registry().Delete("other"));
  EXPECT_EQ(seg->free_bytes(), baseline) << "leak or double free";
  // The stripe is usable again: a new dict of the same name works.
  ASSERT_OK(Dict::Open(seg.get(), "d", OpenMode::kCreateIfMissing, {}, &dict));
  ASSERT_OK(dict.Set("k7", "again", {}));
  ASSERT_OK(dict.Get("k7", &got));
  EXPECT_EQ(got.data, "again");
}

INSTANTIATE_TEST_SUITE_P(Points, DictDeleteAfterDeathTest,
                         testing::Values("after_intent", "after_commit"),
                         [](const testing::TestParamInfo<const char*>& param_info) {
                           return std::string(param_info.param);
                         });

// What a writer child tells the parent, through memory that survives its SIGKILL: per key, the
// checksum of the last acknowledged state and of the write in flight (0 = absent).
struct KeyLog {
  std::atomic<uint64_t> acked;
  std::atomic<uint64_t> in_flight;
};

constexpr int kLogKeys = 200;

std::string LogKey(int k) { return "key" + std::to_string(k); }

// A child that writes and deletes random keys until it is killed.
int WriterLoop(Dict dict, KeyLog* log, uint64_t seed) {
  std::mt19937_64 rng(seed);
  DictValue got;
  while (true) {
    int k = static_cast<int>(rng() % kLogKeys);
    uint64_t op = rng() % 10;
    if (op < 7) {
      std::string value = test::MakeCheckedValue(rng, rng() % 1500);
      uint64_t sum = test::WholeChecksum(value);
      log[k].in_flight.store(sum);
      SetOptions options;
      options.ttl_ms = rng() % 2 == 0 ? 3600 * 1000 : 0;  // Half expire (far off): `expiring`.
      Status s = dict.Set(LogKey(k), value, options);
      if (!s.ok()) return 2;
      log[k].acked.store(sum);
    } else if (op < 9) {
      log[k].in_flight.store(0);
      Status s = dict.Delete(LogKey(k));
      if (!s.ok() && !s.IsNotFound()) return 3;
      log[k].acked.store(0);
    } else {
      Status s = dict.Get(LogKey(k), &got);
      if (s.ok() && test::WholeChecksum(got.data) == 0) return 4;
    }
  }
}

// Checks every key against the log (acknowledged or in-flight state, whole) and the stats
// against the table, then makes the found state the acknowledged one.
void VerifyAfterKill(Dict& dict, KeyLog* log, int kill) {
  DictValue got;
  uint64_t present = 0;
  uint64_t bytes = 0;
  uint64_t expiring = 0;
  for (int k = 0; k < kLogKeys; ++k) {
    Status s = dict.Get(LogKey(k), &got);
    ASSERT_TRUE(s.ok() || s.IsNotFound()) << s.ToString();
    uint64_t found = 0;
    if (s.ok()) {
      found = test::WholeChecksum(got.data);
      ASSERT_NE(found, 0u) << "torn value at key " << k << " after kill " << kill;
      ++present;
      expiring += got.expires_at_ms != 0;
      bytes += Dict::kEntryOverhead + LogKey(k).size() + got.data.size();
    }
    ASSERT_TRUE(found == log[k].acked.load() || found == log[k].in_flight.load())
        << "key " << k << " lost an acknowledged write after kill " << kill;
    log[k].acked.store(found);
    log[k].in_flight.store(found);
  }
  DictStats stats;
  ASSERT_TRUE(dict.Stats(&stats).ok());
  EXPECT_EQ(stats.entries, present);
  EXPECT_EQ(stats.bytes, bytes);
  EXPECT_EQ(stats.expiring, expiring);
}

// Removes the segments the rebuilds create.
struct RemoveSegmentsAtExit {
  std::vector<std::string> names;
  ~RemoveSegmentsAtExit() {
    for (const std::string& name : names) Segment::Remove(name);
  }
};

// A writer is SIGKILLed at 50 random moments (fixed seed). After each kill the parent recovers it
// and checks every key: whole, and either the acknowledged or the in-flight state. When the kill
// landed inside the allocator (Probe answers Poisoned: counted, not a failure), the segment is
// rebuilt into its next generation as the manager does, and the copy must hold the same state.
TEST(DictCrashTest, SigkilledWritersNeverTearValuesOrLoseAcknowledgedWrites) {
  constexpr int kKills = 50;
  constexpr size_t kSize = size_t{32} << 20;
  constexpr uint32_t kObjects = 64;
  void* memory = mmap(nullptr, sizeof(KeyLog) * kLogKeys, PROT_READ | PROT_WRITE,
                      MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(memory, MAP_FAILED);
  auto* log = new (memory) KeyLog[kLogKeys]();
  std::mt19937_64 rng(20240601);
  test::ScopedSegment first(kSize, kObjects);
  const size_t empty_free = first->free_bytes();  // Any empty segment of this shape.
  const std::string prefix = first.shm_name().substr(0, first.shm_name().rfind('.'));
  RemoveSegmentsAtExit cleanup;
  std::unique_ptr<Segment> rebuilt;  // The current generation once the first was rebuilt.
  Segment* seg = first.get();
  int kills_on_segment = 0;
  int poisoned = 0;
  Dict dict;
  ASSERT_OK(Dict::Open(seg, "d", OpenMode::kCreateIfMissing, {}, &dict));
  for (int kill = 0; kill < kKills; ++kill) {
    pid_t child = test::ForkChild([&] { return WriterLoop(dict, log, 1000 + kill); });
    std::this_thread::sleep_for(std::chrono::microseconds(500 + rng() % 15000));  // The moment.
    ::kill(child, SIGKILL);
    test::ChildExit exit = test::WaitChild(child, 30000);
    ASSERT_TRUE(exit.signaled) << "writer exited by itself with code " << exit.code;
    ++kills_on_segment;
    Status recovered = seg->RecoverDeadProcess(child, nullptr);
    ASSERT_TRUE(recovered.ok() || recovered.IsPoisoned()) << recovered.ToString();
    // Committed state is readable without the allocator, poisoned or not.
    VerifyAfterKill(dict, log, kill);
    if (HasFatalFailure()) return;
    if (!seg->Probe().IsPoisoned()) continue;
    ++poisoned;
    SegmentOptions options;
    options.name = prefix;
    options.generation = seg->generation() + 1;
    options.size = kSize;
    options.max_objects = kObjects;
    std::unique_ptr<Segment> next;
    ASSERT_OK(CopyIntoNewSegment(seg, options, &next, nullptr));
    cleanup.names.push_back(next->shm_name());
    rebuilt = std::move(next);
    first.Reset();
    seg = rebuilt.get();
    kills_on_segment = 0;
    ASSERT_OK(Dict::Open(seg, "d", OpenMode::kOpenExisting, {}, &dict));
    VerifyAfterKill(dict, log, kill);  // The rebuild kept every acknowledged write.
    if (HasFatalFailure()) return;
  }
  RecordProperty("poisoned", poisoned);
  // Whatever leaked is bounded by one blob or table per kill (a kill between an allocation and
  // its intent record, or between clearing the intent and the free).
  ASSERT_OK(seg->registry().Delete("d"));
  auto leaked = static_cast<int64_t>(empty_free) - static_cast<int64_t>(seg->free_bytes());
  RecordProperty("leaked_bytes", static_cast<int>(leaked));
  EXPECT_GE(leaked, 0);
  EXPECT_LE(leaked, int64_t{kills_on_segment} * 16 * 1024);
  munmap(memory, sizeof(KeyLog) * kLogKeys);
}

}  // namespace
}  // namespace shm
