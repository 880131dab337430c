#include "blob_cache.h"

#include <algorithm>

#include "crash_point.h"
#include "owned_word.h"

namespace shm {
namespace {

// Class lookups by size in 16-byte steps: every class size is a multiple of 16.
constexpr size_t kSteps = kMaxCachedBlob / 16 + 1;
constexpr std::array<uint8_t, kSteps> MakeRequestTable() {
  std::array<uint8_t, kSteps> table{};
  for (size_t step = 0; step < kSteps; ++step) {
    size_t c = 0;
    while (kBlobClassSizes[c] < step * 16) ++c;
    table[step] = static_cast<uint8_t>(c);
  }
  return table;
}
constexpr std::array<uint8_t, kSteps> MakeBlockTable() {
  std::array<uint8_t, kSteps> table{};
  for (size_t step = 0; step < kSteps; ++step) {
    size_t c = kBlobClasses;  // Smaller than every class: not cached.
    for (size_t k = 0; k < kBlobClasses; ++k) {
      if (kBlobClassSizes[k] <= step * 16) c = k;
    }
    table[step] = static_cast<uint8_t>(c);
  }
  return table;
}
constexpr std::array<uint8_t, kSteps> kRequestClass = MakeRequestTable();
constexpr std::array<uint8_t, kSteps> kBlockClass = MakeBlockTable();

// A cached block's first word links it to the next one of its class. Lock-free readers may
// still read a block after it was freed (they check EntryRep::reclaim_seq), hence an atomic.
std::atomic<uint64_t>& Link(Segment::Impl* segment, uint64_t block) {
  return *segment->Ptr<std::atomic<uint64_t>>(block);
}

BlobCacheRep* RepOf(Segment::Impl* segment, const IntentSlot& slot) {
  uint64_t handle = slot.cache.load(std::memory_order_acquire);
  return handle == 0 ? nullptr : segment->Ptr<BlobCacheRep>(handle);
}

// Frees every block of `rep`, head first. A death between unlinking a block and freeing it
// leaks that block (the protocol's safe direction, as at "before_free").
int EmptyRep(Segment::Impl* segment, IntentSlot& slot, BlobCacheRep* rep) {
  int freed = 0;
  for (size_t c = 0; c < kBlobClasses; ++c) {
    // Bounded: a cache never holds more than kMaxBlocksPerClass, whatever a dead thread left.
    for (uint32_t n = 0; n <= kMaxBlocksPerClass; ++n) {
      uint64_t block = rep->head[c].load(std::memory_order_acquire);
      if (block == 0) break;
      rep->head[c].store(Link(segment, block).load(std::memory_order_relaxed),
                         std::memory_order_release);
      slot.cached_bytes.fetch_sub(segment->BlockBytes(block), std::memory_order_relaxed);
      segment->Free(block);
      ++freed;
    }
    // Set, not counted down: a thread that died inside Take or Put may have left it off by one.
    rep->count[c].store(0, std::memory_order_relaxed);
    rep->refill_shift[c].store(0, std::memory_order_relaxed);
  }
  return freed;
}

}  // namespace

size_t ClassForRequest(size_t bytes) { return kRequestClass[(bytes + 15) / 16]; }

size_t ClassForBlock(size_t usable) {
  if (usable > 2 * kMaxCachedBlob) return kBlobClasses;
  // The allocator may hand out a little more than the largest class asked for.
  return usable >= kMaxCachedBlob ? kBlobClasses - 1 : kBlockClass[usable / 16];
}

bool BlobCache::Acquire() {
  uint32_t expected = kCacheFree;
  if (!slot_->cache_owner.compare_exchange_strong(expected, kCacheOwnerThread,
                                                  std::memory_order_acquire)) {
    return false;
  }
  slot_->cache_uses.store(slot_->cache_uses.load(std::memory_order_relaxed) + 1,
                          std::memory_order_relaxed);
  rep_ = RepOf(segment_, *slot_);
  if (rep_ == nullptr) {
    // First write through this slot. A death between the allocation and the store below leaks
    // the rep: once per slot claim, a few hundred bytes.
    uint64_t handle = 0;
    if (!segment_->Allocate(sizeof(BlobCacheRep), &handle).ok()) {
      slot_->cache_owner.store(kCacheFree, std::memory_order_release);
      return false;
    }
    rep_ = new (segment_->Ptr<void>(handle)) BlobCacheRep();
    slot_->cached_bytes.fetch_add(segment_->BlockBytes(handle), std::memory_order_relaxed);
    slot_->cache.store(handle, std::memory_order_release);
  }
  return true;
}

void BlobCache::Release() {
  if (rep_ == nullptr) return;
  rep_ = nullptr;
  slot_->cache_owner.store(kCacheFree, std::memory_order_release);
}

uint64_t BlobCache::Take(size_t bytes, std::atomic<uint64_t>* record) {
  size_t c = ClassForRequest(bytes);
  uint64_t block = rep_->head[c].load(std::memory_order_relaxed);
  if (block == 0) return 0;
  record->store(block, std::memory_order_release);
  CrashPoint("cache_take");
  rep_->head[c].store(Link(segment_, block).load(std::memory_order_relaxed),
                      std::memory_order_release);
  SubOwned(rep_->count[c], 1);  // This thread holds cache_owner: the counts are its own.
  SubOwned(slot_->cached_bytes, segment_->BlockBytes(block));
  return block;
}

void BlobCache::Refill(size_t bytes) {
  const size_t c = ClassForRequest(bytes);
  const uint64_t footprint = kBlobClassSizes[c] + Segment::Impl::kBlockOverhead;
  const uint64_t cached = slot_->cached_bytes.load(std::memory_order_relaxed);
  const uint32_t count = rep_->count[c].load(std::memory_order_relaxed);
  if (count != 0 || cached + 2 * footprint > kMaxCachedBytes) return;
  const uint32_t shift = rep_->refill_shift[c].load(std::memory_order_relaxed);
  const uint64_t want = std::min<uint64_t>(kMaxRefillBlocks, uint64_t{kRefillBlocks} << shift);
  const size_t n = std::min<uint64_t>(want, (kMaxCachedBytes - cached) / footprint);
  if (want < kMaxRefillBlocks) rep_->refill_shift[c].store(shift + 1, std::memory_order_relaxed);
  uint64_t blocks[kMaxRefillBlocks];
  size_t got = 0;
  if (!segment_->AllocateMany(kBlobClassSizes[c], n, blocks, &got).ok()) return;
  // Each block is named by nothing until it is linked (see Refill's contract), so no crash point.
  for (size_t i = 0; i < got; ++i) {
    if (!Push(blocks[i], nullptr)) segment_->Free(blocks[i]);
  }
}

bool BlobCache::Put(uint64_t handle, std::atomic<uint64_t>* record) {
  if (!Push(handle, "cache_put")) {
    const size_t c = ClassForBlock(segment_->UsableSize(handle));
    if (c == kBlobClasses || rep_->count[c].load(std::memory_order_relaxed) < kMaxBlocksPerClass) {
      return false;  // Too large, or the cache's byte bound: spilling this class may not help.
    }
    Spill(c);
    if (!Push(handle, "cache_put")) return false;
  }
  record->store(0, std::memory_order_release);
  return true;
}

void BlobCache::Spill(size_t c) {
  uint64_t blocks[kSpillBlocks];
  size_t n = 0;
  uint64_t bytes = 0;
  uint64_t next = rep_->head[c].load(std::memory_order_relaxed);
  for (; n < kSpillBlocks && next != 0; ++n) {
    blocks[n] = next;
    bytes += segment_->BlockBytes(next);
    next = Link(segment_, next).load(std::memory_order_relaxed);
  }
  rep_->head[c].store(next, std::memory_order_release);  // Unlinked: from here they are ours.
  CrashPoint("cache_spill");                             // Dying here leaks them.
  SubOwned(rep_->count[c], static_cast<uint32_t>(n));
  SubOwned(slot_->cached_bytes, bytes);
  segment_->FreeMany(blocks, n);
}

bool BlobCache::Push(uint64_t handle, const char* crash_point) {
  size_t usable = segment_->UsableSize(handle);
  size_t c = ClassForBlock(usable);
  if (c == kBlobClasses) return false;
  uint64_t footprint = usable + Segment::Impl::kBlockOverhead;
  if (rep_->count[c].load(std::memory_order_relaxed) >= kMaxBlocksPerClass ||
      slot_->cached_bytes.load(std::memory_order_relaxed) + footprint > kMaxCachedBytes) {
    return false;
  }
  Link(segment_, handle)
      .store(rep_->head[c].load(std::memory_order_relaxed), std::memory_order_relaxed);
  rep_->head[c].store(handle, std::memory_order_release);
  if (crash_point != nullptr) CrashPoint(crash_point);
  // A free (not a refill's link): the class is not one that only allocates.
  if (crash_point != nullptr && rep_->refill_shift[c].load(std::memory_order_relaxed) != 0) {
    rep_->refill_shift[c].store(0, std::memory_order_relaxed);
  }
  AddOwned(rep_->count[c], 1);  // This thread holds cache_owner: the counts are its own.
  AddOwned(slot_->cached_bytes, footprint);
  return true;
}

void BlobCache::Empty() {
  if (rep_ != nullptr) EmptyRep(segment_, *slot_, rep_);
}

bool SlotCacheHolds(Segment::Impl* segment, const IntentSlot& slot, uint64_t handle) {
  const BlobCacheRep* rep = RepOf(segment, slot);
  if (rep == nullptr || !IsBlob(handle)) return false;
  for (const auto& head : rep->head) {
    if (head.load(std::memory_order_seq_cst) == handle) return true;
  }
  return false;
}

int DropSlotCache(Segment::Impl* segment, IntentSlot& slot) {
  BlobCacheRep* rep = RepOf(segment, slot);
  if (rep == nullptr) return 0;
  int freed = EmptyRep(segment, slot, rep);
  uint64_t handle = slot.cache.exchange(0, std::memory_order_seq_cst);
  slot.cached_bytes.store(0, std::memory_order_relaxed);
  segment->Free(handle);
  return freed;
}

uint64_t CachedBytes(Segment::Impl* segment) {
  const Root* root = segment->root();
  uint32_t in_use = root->intents_in_use.load(std::memory_order_acquire);
  uint64_t bytes = 0;
  for (uint32_t i = 0; i < in_use && i < kMaxIntentSlots; ++i) {
    bytes += root->intents[i].cached_bytes.load(std::memory_order_relaxed);
  }
  return bytes;
}

uint64_t Segment::Impl::TrimIdleCaches() {
  cache_uses_seen_.resize(kMaxIntentSlots);
  uint32_t in_use = root_->intents_in_use.load(std::memory_order_acquire);
  uint64_t trimmed = 0;
  for (uint32_t i = 0; i < in_use && i < kMaxIntentSlots; ++i) {
    IntentSlot& slot = root_->intents[i];
    uint32_t uses = slot.cache_uses.load(std::memory_order_relaxed);
    bool idle = uses == cache_uses_seen_[i];
    cache_uses_seen_[i] = uses;
    BlobCacheRep* rep = RepOf(this, slot);
    if (!idle || rep == nullptr) continue;
    uint32_t expected = kCacheFree;
    if (!slot.cache_owner.compare_exchange_strong(expected, kCacheTrimmer,
                                                  std::memory_order_acquire)) {
      continue;
    }
    rep = RepOf(this, slot);  // Again: the slot may have been released in between.
    if (rep != nullptr) {
      uint64_t before = slot.cached_bytes.load(std::memory_order_relaxed);
      EmptyRep(this, slot, rep);
      trimmed += before - slot.cached_bytes.load(std::memory_order_relaxed);
    }
    slot.cache_owner.store(kCacheFree, std::memory_order_release);
  }
  return trimmed;
}

}  // namespace shm
