// Crash tests of the blob cache's two moves (blob_cache.h): a writer that dies inside Take (its
// intent slot names a block that is still the head of its cache class) or inside Put (the
// replaced blob is already cached but still recorded as garbage) loses nothing acknowledged, and
// the recovery frees that block exactly once, with the rest of the cache and its rep.
#include <gtest/gtest.h>
#include <unistd.h>

#include <string>

#include "blob_cache.h"
#include "common/status_assert.h"
#include "common/test_util.h"
#include "crash_point.h"
#include "list_rep.h"
#include "segment_impl.h"
#include "shm/dict.h"
#include "shm/list.h"

namespace shm {
namespace {

struct CacheCrashCase {
  const char* point;
  int hit;
  // What the child's writes leave committed: the value of its `committed_writes`-th set.
  int committed_writes;
};

class BlobCacheCrashTest : public testing::TestWithParam<CacheCrashCase> {};

// The child sets "k" three times with small values: the first set refills the child's empty
// cache, takes a block and replaces the parent's value (its blob goes into the cache: Put), the
// second takes that block (Take, the class's head).
TEST_P(BlobCacheCrashTest, DeathInsideACacheMoveFreesTheBlockOnce) {
  const CacheCrashCase& c = GetParam();
  test::ScopedSegment seg;
  size_t baseline = seg->free_bytes();
  Dict dict;
  ASSERT_OK(Dict::Open(seg.get(), "d", OpenMode::kCreateIfMissing, {}, &dict));
  auto value = [](int write) { return std::string(60, static_cast<char>('a' + write)); };
  ASSERT_OK(dict.Set("k", value(0), {}));
  ASSERT_OK(dict.Set("other", "kept", {}));

  pid_t child = test::ForkChild([&] {
    SetCrashPoint(c.point, c.hit);
    for (int write = 1; write <= 3; ++write) {
      if (!dict.Set("k", value(write), {}).ok()) return 1;
    }
    return 0;  // The crash point was not reached.
  });
  test::ChildExit exit = test::WaitChild(child, 30000);
  ASSERT_TRUE(exit.exited);
  ASSERT_EQ(exit.code, kCrashPointExitCode) << c.point;

  DictValue got;
  ASSERT_OK(dict.Get("k", &got));
  EXPECT_EQ(got.data, value(c.committed_writes));
  ASSERT_OK(dict.Get("other", &got));
  EXPECT_EQ(got.data, "kept");

  RecoveryReport report;
  ASSERT_OK(seg->RecoverDeadProcess(child, &report));
  EXPECT_EQ(report.slots_released, 1);
  EXPECT_EQ(report.blobs_freed, 0);  // The recorded block was the cache's...
  // ... and freed with it, once: the cache held its class, filled by the first set's refill.
  EXPECT_EQ(report.cached_blocks_freed, static_cast<int>(kRefillBlocks));
  ASSERT_OK(seg->Probe());
  ASSERT_OK(dict.Set("k", "after", {}));
  ASSERT_OK(seg->registry().Delete("d"));
  EXPECT_EQ(seg->free_bytes(), baseline) << "leak or double free";
}

INSTANTIATE_TEST_SUITE_P(
    Moves, BlobCacheCrashTest,
    testing::Values(CacheCrashCase{"cache_put", 1, 1},  // Set 1 replaced value 0: cached.
                                                        // Take 1 is set 1's, from the refill; take
                                                        // 2 is set 2's of value 0's block.
                    CacheCrashCase{"cache_take", 2, 1}),
    [](const testing::TestParamInfo<CacheCrashCase>& param_info) {
      return std::string(param_info.param.point);
    });

// The same for a list: pops cache the items they remove, pushes take them.
TEST(BlobCacheCrashTest, ListPushDyingInsideTakeLosesNoItem) {
  test::ScopedSegment seg;
  size_t baseline = seg->free_bytes();
  List list;
  ASSERT_OK(List::Open(seg.get(), "l", OpenMode::kCreateIfMissing, {}, &list));
  // Items of 8 bytes and more are blocks (smaller ones live in their slot word: list_rep.h).
  for (int i = 0; i < 4; ++i)
    ASSERT_OK(list.Push(List::End::kRight, "item-blk" + std::to_string(i)));
  pid_t child = test::ForkChild([&] {
    std::string item;
    bool got = false;
    if (!list.Pop(List::End::kLeft, std::chrono::milliseconds(0), &item, &got).ok()) return 1;
    SetCrashPoint("cache_take");
    list.Push(List::End::kRight, "pushed-blk");
    return 0;
  });
  test::ChildExit exit = test::WaitChild(child, 30000);
  ASSERT_TRUE(exit.exited);
  ASSERT_EQ(exit.code, kCrashPointExitCode);
  uint64_t length = 0;
  ASSERT_OK(list.Length(&length));
  EXPECT_EQ(length, 3u);  // The pop was acknowledged; the push never committed.
  RecoveryReport report;
  ASSERT_OK(seg->RecoverDeadProcess(child, &report));
  EXPECT_EQ(report.cached_blocks_freed, 1);
  ASSERT_OK(seg->registry().Delete("l"));
  EXPECT_EQ(seg->free_bytes(), baseline) << "leak or double free";
}

// A run of pops only frees: once the items' class holds kMaxBlocksPerClass blocks, the next pop's
// free spills the class's top kSpillBlocks to the allocator (Spill). A death between unlinking
// them and freeing them leaks exactly those blocks: the pops stay acknowledged, the item being
// freed is freed once (as recorded garbage), the rest of the cache once with it.
TEST(BlobCacheCrashTest, PopsDyingInsideASpillLeakOnlyTheSpilledBlocks) {
  test::ScopedSegment seg;
  const std::string item = "item:xyz";  // Every item the same size: one class; not inline.
  const int items = static_cast<int>(kMaxBlocksPerClass) + 8;
  const size_t baseline = seg->free_bytes();
  List list;
  ASSERT_OK(List::Open(seg.get(), "l", OpenMode::kCreateIfMissing, {}, &list));
  for (int i = 0; i < items; ++i) ASSERT_OK(list.Push(List::End::kRight, item));
  pid_t child = test::ForkChild([&] {
    SetCrashPoint("cache_spill");
    for (int i = 0; i < items; ++i) {
      std::string got_item;
      bool got = false;
      if (!list.Pop(List::End::kLeft, std::chrono::milliseconds(0), &got_item, &got).ok()) {
        return 1;
      }
    }
    return 0;  // No spill happened.
  });
  test::ChildExit exit = test::WaitChild(child, 30000);
  ASSERT_TRUE(exit.exited);
  ASSERT_EQ(exit.code, kCrashPointExitCode);
  uint64_t length = 0;
  ASSERT_OK(list.Length(&length));
  // Pops 1..32 filled the class; pop 33 committed, then its free found the class full.
  EXPECT_EQ(length, static_cast<uint64_t>(items) - kMaxBlocksPerClass - 1);
  // What one item's block takes from the allocator: a block the dead child's class still holds
  // (every item came from the same refills, so the spilled ones are as large).
  size_t item_block = 0;
  Segment::Impl* impl = seg->impl();
  for (uint32_t i = 0; i < impl->root()->intents_in_use.load(); ++i) {
    const IntentSlot& slot = impl->root()->intents[i];
    if (slot.owner_pid.load() != child || slot.cache.load() == 0) continue;
    const auto* rep = impl->Ptr<BlobCacheRep>(slot.cache.load());
    const uint64_t head = rep->head[ClassForRequest(sizeof(ListItemRep) + item.size())].load();
    ASSERT_NE(head, 0u);
    item_block = impl->BlockBytes(head);
  }
  ASSERT_NE(item_block, 0u) << "the child's cache";
  RecoveryReport report;
  ASSERT_OK(seg->RecoverDeadProcess(child, &report));
  EXPECT_EQ(report.blobs_freed, 1);  // Pop 33's item, still recorded as garbage.
  EXPECT_EQ(report.cached_blocks_freed, static_cast<int>(kMaxBlocksPerClass - kSpillBlocks));
  ASSERT_OK(seg->Probe());
  // With the list gone, every block is free again but the spilled ones.
  ASSERT_OK(seg->registry().Delete("l"));
  EXPECT_EQ(seg->free_bytes() + kSpillBlocks * item_block, baseline)
      << "a spilled block was freed twice, or another leaked";
}

}  // namespace
}  // namespace shm
