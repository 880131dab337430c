// BlobCache: a per-thread cache of freed small blobs, so that the common write (allocate a
// copy-on-write blob, publish it, free the one it replaced) takes no allocator lock.
//
// Every process shares one Boost allocator behind one robust mutex; a dict set used to take it
// twice, and from two processes the writes queued on it (docs/benchmarks.md). Now each intent
// slot may own a cache: per size class, a stack of freed blocks linked through their first word,
// its head in a BlobCacheRep allocated for the slot on first use. A replaced blob is pushed onto
// its class; the next write of that class pops it. A write that finds its class empty refills it
// with up to kRefillBlocks blocks from one allocator call (Refill), so writes that only add (list
// pushes, new keys) take the allocator's lock once per refill. Blocks leave the cache only to the
// allocator.
//
// The invariant (docs/crash-safety.md): a block is in exactly one of the allocator's free lists,
// one slot's cache, one slot's intent record (new_off / old_off), or a committed value. The two
// moves between a cache and a record keep it across a death at any instruction:
//
//   Take (allocate):  record = head   then  head = next        (a death between: record == head)
//   Put (free):       link = head; head = block   then  record = 0   (death between: the same)
//
// so whoever settles a dead slot (Segment::RecoverDeadProcess) frees a recorded handle only if it
// is not the head of a class of that slot's cache, then returns the whole cache to the allocator.
//
// Ownership: only the thread that holds `IntentSlot::cache_owner` touches a slot's cache. The
// slot's thread takes it for the life of a CowWriter (one CAS on its own cache line); the manager
// takes it to trim a cache left idle for a tick, and the owner of a dead slot is dead. A thread
// that cannot take it (the manager is trimming, a nested writer) just uses the allocator.
//
// Bounds: at most kMaxBlocksPerClass blocks per class and kMaxCachedBytes per slot; frees past
// them go to the allocator. Segment::free_bytes counts cached blocks as free, cached_bytes
// reports them, and an allocation that finds the segment full empties its own cache and retries.
#ifndef SHM_SRC_BLOB_CACHE_H_
#define SHM_SRC_BLOB_CACHE_H_

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>

#include "layout.h"
#include "segment_impl.h"

namespace shm {

// Size classes: 16-byte steps to 128, then four steps per power of two to 512. A request is
// served from the smallest class that holds it; a freed block joins the largest class it holds.
inline constexpr std::array<uint32_t, 15> kBlobClassSizes = {32,  48,  64,  80,  96,  112, 128, 160,
                                                             192, 224, 256, 320, 384, 448, 512};
inline constexpr size_t kBlobClasses = kBlobClassSizes.size();
inline constexpr size_t kMaxCachedBlob = kBlobClassSizes.back();
// A class holds what one batch of writes frees: a transaction (Redis MSET of 10 keys, EXEC)
// allocates its blobs before the commit and frees the replaced ones after it, so with 8 a
// class, 8 of MSET's 10 frees went to the allocator (44% of a worker's time under
// redis-benchmark MSET -P 16). kMaxCachedBytes still bounds the whole cache.
inline constexpr uint32_t kMaxBlocksPerClass = 32;
inline constexpr uint64_t kMaxCachedBytes = 8 * 1024;
// A class's first refill takes kRefillBlocks; each further refill of a class that nothing was
// freed into since doubles it, up to kMaxRefillBlocks (a full class). Writes that only add to
// one class (list pushes) then take the allocator's lock once per 32 (with 8, a Manager list
// append from Python spent a tenth of its time in the allocator's call: 222 -> 200 ns), while a
// class that also gets frees (a dict set frees what it replaces), or is used once, holds no more
// than 8 of the cache's 8 KiB: 32 for every class filled the byte bound, and a dict set's frees
// then went to the allocator one by one (twice the time per set).
inline constexpr uint32_t kRefillBlocks = 8;
inline constexpr uint32_t kMaxRefillBlocks = kMaxBlocksPerClass;
// A free that finds its class full (a run of pops, which only free) gives the class's top
// kSpillBlocks blocks back to the allocator in one call (one lock), then caches its block: the
// allocator's lock is taken once per kSpillBlocks frees instead of once per free.
inline constexpr uint32_t kSpillBlocks = 8;

// In the segment, one per slot that has written (IntentSlot::cache). GUARDED_BY(slot.cache_owner).
struct BlobCacheRep {
  std::atomic<uint64_t> head[kBlobClasses] = {};  // Handle of the first block; 0 = empty.
  std::atomic<uint32_t> count[kBlobClasses] = {};
  // The class's next refill takes kRefillBlocks << refill_shift; a free into the class resets it.
  std::atomic<uint32_t> refill_shift[kBlobClasses] = {};
};

// The class serving a request of `bytes` (<= kMaxCachedBlob).
size_t ClassForRequest(size_t bytes);
// The class a freed block of `usable` bytes joins, or kBlobClasses if it is not cached.
size_t ClassForBlock(size_t usable);

// A slot's cache, for the thread that holds its cache_owner. Cheap; lives as long as a CowWriter.
class BlobCache {
 public:
  BlobCache() = default;
  BlobCache(Segment::Impl* segment, IntentSlot* slot) : segment_(segment), slot_(slot) {}

  // Takes the slot's cache for this thread (allocating the slot's BlobCacheRep on first use).
  // False if another thread holds it: then this writer goes to the allocator.
  bool Acquire();
  void Release();
  bool held() const { return rep_ != nullptr; }

  // Pops a block of the class serving `bytes` into `*record` (the slot's new_off); 0 if the
  // class is empty.
  uint64_t Take(size_t bytes, std::atomic<uint64_t>* record);
  // Fills the (empty) class serving `bytes` with up to kRefillBlocks blocks from one
  // AllocateMany, within the cache's bounds, so that writes that only add (list pushes, new
  // keys) take the allocator's lock once per refill rather than once per write. A death before
  // the last block is linked leaks the blocks not yet linked: the allocate-to-record window of a
  // single Allocate, a few instructions wider.
  void Refill(size_t bytes);
  // Pushes `handle` (a block the caller owns, named by `*record`) and then clears `*record`. A
  // full class first spills kSpillBlocks blocks to the allocator (Spill). False (and `*record`
  // unchanged) if the block is too large or the cache is at its bounds all the same.
  bool Put(uint64_t handle, std::atomic<uint64_t>* record);
  // Returns every cached block to the allocator (the BlobCacheRep stays with the slot).
  void Empty();

 private:
  // Links `handle` onto its class within the bounds (false, and nothing changed, past them),
  // stopping at `crash_point` (may be null) once it is linked.
  bool Push(uint64_t handle, const char* crash_point);
  // Unlinks the top kSpillBlocks blocks of class `c` (one store of its head), then frees them
  // with one allocator call. A death between the two leaks them (at most kSpillBlocks): the
  // cache-to-allocator direction, as EmptyRep's, never a double free.
  void Spill(size_t c);

  Segment::Impl* segment_ = nullptr;
  IntentSlot* slot_ = nullptr;
  BlobCacheRep* rep_ = nullptr;  // Non-null while held.
};

// For whoever settles a slot whose thread is gone or done (the slot's owner, or the manager for a
// dead process): whether `handle` is the head of a class of the slot's cache (see above).
bool SlotCacheHolds(Segment::Impl* segment, const IntentSlot& slot, uint64_t handle);
// Returns the slot's cached blocks and its BlobCacheRep to the allocator. REQUIRES: no other
// thread uses the slot's cache (its owner is gone, or is the caller). Returns the blocks freed.
int DropSlotCache(Segment::Impl* segment, IntentSlot& slot);
// The bytes held in every slot's cache, counting each cache's own rep.
uint64_t CachedBytes(Segment::Impl* segment);

}  // namespace shm

#endif  // SHM_SRC_BLOB_CACHE_H_
