// The copy-on-write commit protocol, and its repair after an owner death.
//
// A write that replaces a blob publishes the new one with a single atomic store into a `cell`
// word while holding the lock that guards the cell. Around that store this thread's IntentSlot
// records {entry, cell, in_cs, new_off, old_off}, in this order:
//
//   Stage(new)              slot.new_off = new                (before the lock; new is unreachable)
//   PublishLocked(cell,new) slot.entry, slot.cell; in_cs = 1; slot.old_off = *cell;
//                           *cell = new  <- the commit;  slot.new_off = 0; in_cs = 0
//   ReleaseGarbage()        old = slot.old_off.exchange(0); free(old)    (after or under the lock)
//
// Blobs come from and go back to this thread's BlobCache when they fit it; its moves keep the
// same rule (blob_cache.h). If the thread dies anywhere in between, whoever next takes the lock
// (owner died) calls ResolveIntentsLocked before anything else: for a slot still in_cs on that
// lock, if *cell == new the commit happened and old_off is garbage, otherwise new_off is garbage
// and old_off is live. After that, every handle left in a dead thread's slot is garbage and the
// manager frees it (Segment::RecoverDeadProcess). Worst case a blob leaks; never a torn value or a
// double free. The whole protocol (every commit word, repair routine and the test that proves it)
// is on one page: docs/crash-protocol.md.
//
// The writer's stores (here and in the blob cache's moves) are release stores: what the protocol
// needs is that they land in program order, which release gives (a killed thread's retired stores
// still reach memory, in order). None is followed by a load that must see another process's store
// (the cell is read under its lock), so sequentially consistent stores only added a full fence
// each: nine per push, a third of a push's time in the library (bench/RESULTS.md).
#ifndef SHM_SRC_COW_H_
#define SHM_SRC_COW_H_

#include <atomic>
#include <cstdint>

#include "blob_cache.h"
#include "segment_impl.h"

namespace shm {

class CowWriter {
 public:
  // Claims this thread's slot and, for the writer's life, the slot's blob cache (blob_cache.h);
  // ok() is false when every slot is taken.
  explicit CowWriter(Segment::Impl* segment);
  // Frees a staged blob that was never published (error paths).
  ~CowWriter();
  CowWriter(const CowWriter&) = delete;
  CowWriter& operator=(const CowWriter&) = delete;

  bool ok() const { return slot_ != nullptr; }

  // Allocates a blob of `bytes` (16-byte aligned) and stages it: from this thread's cache when
  // its size class has a block, else from the segment. OutOfSpace or Poisoned as Allocate.
  Status AllocateStaged(size_t bytes, uint64_t* handle);
  // Records a freshly allocated blob before the lock is taken.
  void Stage(uint64_t new_blob);
  // Publishes `new_value` (a blob or a marker) into `cell`; `entry` names the lock held (the
  // EntryRep's handle, 0 for the registry lock). Returns the value replaced, which becomes garbage
  // owned by this writer until ReleaseGarbage.
  uint64_t PublishLocked(uint64_t entry, std::atomic<uint64_t>* cell, uint64_t new_value);
  // Like PublishLocked, for a cell holding a whole object body of `kind` (a registry delete):
  // should the writer die, the manager frees the replaced body with the kind's destroy.
  uint64_t PublishBodyLocked(uint64_t entry, std::atomic<uint64_t>* cell, uint64_t new_value,
                             uint32_t kind);
  // Frees the blob replaced by the last publish, if any. `destroy` frees a structured blob (and
  // everything it owns); by default the blob alone is freed.
  void ReleaseGarbage(void (*destroy)(Segment::Impl*, uint64_t) = nullptr);
  // Frees the staged blob if it was not published.
  void DiscardStaged();

  // For a transaction's redo record (transaction_rep.h), which owns its blobs itself: allocates
  // like AllocateStaged, then hands the blob to the caller (the slot no longer names it, so a
  // death before the caller records it leaks it; never a double free).
  Status AllocateOwned(size_t bytes, uint64_t* handle);
  // Frees `blob`, garbage no committed word names any more, as ReleaseGarbage frees a replaced
  // blob: readers without the lock named by `entry` (0: none follow it) are told first, and a
  // death midway leaves it to the slot's settler.
  void FreeGarbage(uint64_t entry, uint64_t blob);

 private:
  // Frees a blob this writer owns, named by `*record`: into the cache when it takes it.
  void FreeRecorded(uint64_t blob, std::atomic<uint64_t>* record);

  Segment::Impl* const segment_;
  IntentSlot* const slot_;
  BlobCache cache_;  // Held (cache_.held()) for the writer's life, when the slot's is free.
};

// Resolves the intents of a dead holder of the lock named `entry` (see above). REQUIRES: that lock
// is held by the caller, who got it with LockResult::kOwnerDied. Idempotent. Returns the number of
// slots resolved.
int ResolveIntentsLocked(Segment::Impl* segment, uint64_t entry);

}  // namespace shm

#endif  // SHM_SRC_COW_H_
