// The per-thread blob cache (blob_cache.h): size classes, what free_bytes and cached_bytes say,
// the bounds, the manager's idle trim, a thread's exit, and a full segment.
#include "blob_cache.h"

#include <gtest/gtest.h>

#include <string>
#include <thread>
#include <vector>

#include "common/status_assert.h"
#include "common/test_util.h"
#include "cow.h"
#include "layout.h"
#include "segment_impl.h"
#include "shm/dict.h"
#include "shm/list.h"

namespace shm {
namespace {

TEST(BlobCacheTest, ClassesServeEveryRequestAndTakeEveryBlockTheyCanServe) {
  for (size_t bytes = 1; bytes <= kMaxCachedBlob; ++bytes) {
    size_t c = ClassForRequest(bytes);
    ASSERT_LT(c, kBlobClasses) << bytes;
    EXPECT_GE(kBlobClassSizes[c], bytes) << bytes;
    if (c > 0) {
      EXPECT_LT(kBlobClassSizes[c - 1], bytes) << bytes;  // The smallest that fits.
    }
  }
  for (size_t usable = 0; usable <= 4 * kMaxCachedBlob; ++usable) {
    size_t c = ClassForBlock(usable);
    if (usable < kBlobClassSizes[0] || usable > 2 * kMaxCachedBlob) {
      EXPECT_EQ(c, kBlobClasses) << usable;
      continue;
    }
    ASSERT_LT(c, kBlobClasses) << usable;
    EXPECT_LE(kBlobClassSizes[c], usable) << usable;  // Every request of its class fits.
    if (c + 1 < kBlobClasses) {
      EXPECT_GT(kBlobClassSizes[c + 1], usable) << usable;
    }
  }
}

// Pops only free: once their class is full, each further free spills kSpillBlocks of it to the
// allocator in one call and caches its own block, so the class holds between 32 - 8 + 1 and 32
// blocks, and free_bytes stays exact.
TEST(BlobCacheTest, AFullClassSpillsABatchToTheAllocator) {
  test::ScopedSegment seg;
  const size_t baseline = seg->free_bytes();
  List list;
  ASSERT_OK(List::Open(seg.get(), "l", OpenMode::kCreateIfMissing, {}, &list));
  const int items = static_cast<int>(kMaxBlocksPerClass) * 3;
  // 8 bytes: one more than a slot word holds inline (list_rep.h), so each item is a block.
  for (int i = 0; i < items; ++i) ASSERT_OK(list.Push(List::End::kRight, "item:xyz"));
  const size_t c = ClassForRequest(sizeof(uint64_t) + 8);  // ListItemRep and its bytes.
  auto class_count = [&] {
    const IntentSlot* slot = seg->impl()->MySlot();
    const auto* rep = seg->impl()->Ptr<BlobCacheRep>(slot->cache.load());
    return rep->count[c].load();
  };
  std::vector<uint32_t> counts;
  for (int i = 0; i < items; ++i) {
    std::string item;
    bool got = false;
    ASSERT_OK(list.Pop(List::End::kLeft, std::chrono::milliseconds(0), &item, &got));
    ASSERT_TRUE(got);
    counts.push_back(class_count());
  }
  // The 33rd pop spilled 8 and cached its own: 25; then up to 32 again, and so on.
  EXPECT_EQ(counts[kMaxBlocksPerClass - 1], kMaxBlocksPerClass);
  EXPECT_EQ(counts[kMaxBlocksPerClass], kMaxBlocksPerClass - kSpillBlocks + 1);
  for (size_t i = kMaxBlocksPerClass; i < counts.size(); ++i) {
    EXPECT_GE(counts[i], kMaxBlocksPerClass - kSpillBlocks + 1) << i;
    EXPECT_LE(counts[i], kMaxBlocksPerClass) << i;
  }
  ASSERT_OK(seg->registry().Delete("l"));
  EXPECT_EQ(seg->free_bytes(), baseline) << "leak or double free";
  seg->TrimIdleCaches();
  EXPECT_GT(seg->TrimIdleCaches(), 0u);
  EXPECT_EQ(seg->free_bytes(), baseline);
}

// Segment::free_bytes counts cached blocks at the allocator's own accounting: emptying the
// caches leaves it unchanged (this is what checks Impl::kBlockOverhead).
TEST(BlobCacheTest, FreeBytesCountsCachedBlocksAsFree) {
  test::ScopedSegment seg;
  Dict dict;
  ASSERT_OK(Dict::Open(seg.get(), "d", OpenMode::kCreateIfMissing, {}, &dict));
  for (int i = 0; i < 200; ++i) {
    ASSERT_OK(dict.Set("k" + std::to_string(i % 10), std::string(20 + i, 'v'), {}));
  }
  size_t cached = seg->cached_bytes();
  EXPECT_GT(cached, sizeof(BlobCacheRep));  // The rep and some replaced blobs.
  EXPECT_LE(cached, kMaxCachedBytes + 512);
  size_t free_with_cache = seg->free_bytes();
  seg->TrimIdleCaches();  // Sees every slot for the first time: nothing is idle yet.
  EXPECT_EQ(seg->cached_bytes(), cached);
  EXPECT_GT(seg->TrimIdleCaches(), 0u);  // Nothing written since: the blocks go back.
  EXPECT_LE(seg->cached_bytes(), sizeof(BlobCacheRep) + 32);  // The rep stays.
  EXPECT_EQ(seg->free_bytes(), free_with_cache);
  // The rep stays with the slot until the slot is released; deleting the dict frees the rest.
  ASSERT_OK(seg->registry().Delete("d"));
}

TEST(BlobCacheTest, AWriteReusesTheBlockItsPredecessorFreed) {
  test::ScopedSegment seg;
  Dict dict;
  ASSERT_OK(Dict::Open(seg.get(), "d", OpenMode::kCreateIfMissing, {}, &dict));
  ASSERT_OK(dict.Set("k", std::string(64, 'a'), {}));
  ASSERT_OK(dict.Set("k", std::string(64, 'b'), {}));  // Caches the first blob.
  size_t free_before = seg->impl()->managed().get_free_memory();
  for (int i = 0; i < 1000; ++i) ASSERT_OK(dict.Set("k", std::string(64, 'a' + i % 26), {}));
  // Every set took the block the previous one freed: the allocator saw none of them.
  EXPECT_EQ(seg->impl()->managed().get_free_memory(), free_before);
  DictValue got;
  ASSERT_OK(dict.Get("k", &got));
  EXPECT_EQ(got.data, std::string(64, 'a' + 999 % 26));
}

// Writes that only add (pushes) find their class empty: one allocator call refills it, and the
// next pushes take the refilled blocks without the allocator.
TEST(BlobCacheTest, AnEmptyClassIsRefilledInOneAllocation) {
  test::ScopedSegment seg;
  List list;
  ASSERT_OK(List::Open(seg.get(), "l", OpenMode::kCreateIfMissing, {}, &list));
  // A ring with room for every push below, so that none grows it through the allocator; its
  // items are too large for any cache class.
  bool swapped = false;
  ASSERT_OK(list.Replace(
      nullptr, std::vector<std::string>(2 * kRefillBlocks, std::string(1000, 'y')), &swapped));
  ASSERT_TRUE(swapped);
  ASSERT_OK(list.Push(List::End::kRight, std::string(100, 'x')));  // Refills, takes one.
  const size_t cached = seg->cached_bytes();
  const size_t free_before = seg->impl()->managed().get_free_memory();
  for (uint32_t i = 1; i < kRefillBlocks - 1; ++i) {
    ASSERT_OK(list.Push(List::End::kRight, std::string(100, 'x')));
  }
  EXPECT_EQ(seg->impl()->managed().get_free_memory(), free_before);
  EXPECT_LT(seg->cached_bytes(), cached);
  EXPECT_EQ(seg->free_bytes(), seg->impl()->managed().get_free_memory() + seg->cached_bytes());
  uint64_t length = 0;
  ASSERT_OK(list.Length(&length));
  EXPECT_EQ(length, 2 * kRefillBlocks + kRefillBlocks - 1);
}

// A class that only allocates (pushes) is refilled in batches that double up to a full class,
// so a long run of pushes takes the allocator's lock once per kMaxRefillBlocks; a free into the
// class (a pop) brings its next refill back to kRefillBlocks, so a class that also gets frees,
// or is used once, holds few blocks.
TEST(BlobCacheTest, AClassThatOnlyAllocatesIsRefilledInGrowingBatches) {
  test::ScopedSegment seg;
  List list;
  ASSERT_OK(List::Open(seg.get(), "l", OpenMode::kCreateIfMissing, {}, &list));
  bool swapped = false;  // Room in the ring for every push: no growth reaches the allocator.
  ASSERT_OK(list.Replace(nullptr, std::vector<std::string>(300, std::string(1000, 'y')), &swapped));
  const std::string item(100, 'x');
  // The blocks each push took from the allocator (0 when the cache served it).
  auto push = [&] {
    const size_t before = seg->impl()->managed().get_free_memory();
    EXPECT_TRUE(list.Push(List::End::kRight, item).ok());
    return before - seg->impl()->managed().get_free_memory();
  };
  std::vector<size_t> refills;  // Bytes taken by each push that refilled.
  for (int i = 0; i < 8 + 16 + 32 + 32; ++i) {
    const size_t taken = push();
    if (taken != 0) refills.push_back(taken);
  }
  ASSERT_EQ(refills.size(), 4u);
  EXPECT_EQ(refills[1], 2 * refills[0]);
  EXPECT_EQ(refills[2], 4 * refills[0]);
  EXPECT_EQ(refills[3], 4 * refills[0]);
  EXPECT_EQ(refills[0] / kRefillBlocks, refills[2] / kMaxRefillBlocks);  // One block's bytes.
  // Pops free into the class: the next refill is a small one again.
  std::string out;
  bool got = false;
  ASSERT_OK(list.Pop(List::End::kRight, std::chrono::milliseconds(0), &out, &got));
  ASSERT_TRUE(got);
  size_t taken = 0;
  for (int i = 0; i < 64 && taken == 0; ++i) taken = push();
  EXPECT_EQ(taken, refills[0]);
}

TEST(BlobCacheTest, CachesStayWithinTheirBounds) {
  test::ScopedSegment seg;
  List list;
  ASSERT_OK(List::Open(seg.get(), "l", OpenMode::kCreateIfMissing, {}, &list));
  // Pushes allocate, pops free: 1000 pops would cache 1000 blocks without a bound.
  for (int i = 0; i < 1000; ++i) ASSERT_OK(list.Push(List::End::kRight, std::string(100, 'x')));
  for (int i = 0; i < 1000; ++i) {
    std::string item;
    bool got = false;
    ASSERT_OK(list.Pop(List::End::kLeft, std::chrono::milliseconds(0), &item, &got));
    ASSERT_TRUE(got);
  }
  EXPECT_LE(seg->cached_bytes(), kMaxCachedBytes);
  EXPECT_GT(seg->cached_bytes(), 0u);
}

TEST(BlobCacheTest, AThreadThatExitsGivesItsCacheBack) {
  test::ScopedSegment seg;
  Dict dict;
  ASSERT_OK(Dict::Open(seg.get(), "d", OpenMode::kCreateIfMissing, {}, &dict));
  size_t cached_before = seg->cached_bytes();
  size_t free_before = seg->free_bytes();
  std::thread writer([&] {
    for (int i = 0; i < 100; ++i) {
      EXPECT_TRUE(dict.Set("t" + std::to_string(i % 5), std::string(50, 'w'), {}).ok());
    }
    EXPECT_GT(seg->cached_bytes(), cached_before);
  });
  writer.join();
  EXPECT_EQ(seg->cached_bytes(), cached_before);
  // Five entries stay; their blobs are all that left the free memory.
  DictStats stats;
  ASSERT_OK(dict.Stats(&stats));
  EXPECT_EQ(stats.entries, 5u);
  EXPECT_LT(seg->free_bytes(), free_before);
  ASSERT_OK(seg->registry().Delete("d"));
}

// A write that finds the segment full empties its thread's cache before it answers OutOfSpace,
// so a full segment never keeps free blocks from the allocator.
TEST(BlobCacheTest, AFullSegmentEmptiesTheWritersCache) {
  test::ScopedSegment seg(size_t{1} << 20, 16);
  Dict dict;
  ASSERT_OK(Dict::Open(seg.get(), "d", OpenMode::kCreateIfMissing, {}, &dict));
  size_t rep_only = seg->cached_bytes();
  for (int i = 0; i < 40; ++i) {  // Replaced blobs of several classes fill the cache.
    ASSERT_OK(dict.Set("small" + std::to_string(i % 4), std::string(40 + i * 10, 's'), {}));
  }
  ASSERT_GT(seg->cached_bytes(), rep_only);
  Status s;
  for (int i = 0; s.ok(); ++i) s = dict.Set("big" + std::to_string(i), std::string(4000, 'b'), {});
  ASSERT_TRUE(s.IsOutOfSpace()) << s.ToString();
  EXPECT_EQ(seg->cached_bytes(), rep_only);
  DictValue got;
  ASSERT_OK(dict.Get("small3", &got));
  EXPECT_EQ(got.data, std::string(40 + 39 * 10, 's'));
}

}  // namespace
}  // namespace shm
