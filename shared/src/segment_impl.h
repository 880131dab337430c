// Segment::Impl: the process-local state behind a Segment handle, and the internal interface the
// object kinds use: handles <-> addresses, allocation that reports OutOfSpace/Poisoned instead of
// throwing, and this thread's intent slot.
#ifndef SHM_SRC_SEGMENT_IMPL_H_
#define SHM_SRC_SEGMENT_IMPL_H_

#include <boost/interprocess/indexes/iset_index.hpp>
#include <boost/interprocess/managed_shared_memory.hpp>
#include <boost/interprocess/mem_algo/rbtree_best_fit.hpp>
#include <chrono>
#include <string>
#include <vector>

#include "layout.h"
#include "shm/segment.h"

namespace shm {

namespace bip = boost::interprocess;

using ManagedSegment = bip::basic_managed_shared_memory<
    char, bip::rbtree_best_fit<RobustMutexFamily, bip::offset_ptr<void>>, bip::iset_index>;

// How long a request path waits for an object or registry lock before answering Timeout.
inline constexpr std::chrono::milliseconds kDefaultLockTimeout{2000};

class Segment::Impl {
 public:
  // rbtree_best_fit's size header, less the next block's size field a block may use: a block's
  // footprint is UsableSize + this (checked by a test against get_free_memory).
  static constexpr size_t kBlockOverhead = 8;

  Impl(ManagedSegment&& managed, std::string shm_name);
  ~Impl();
  Impl(const Impl&) = delete;
  Impl& operator=(const Impl&) = delete;

  template <class T>
  T* Ptr(uint64_t handle) const {
    return reinterpret_cast<T*>(base_ + handle);
  }
  // Whether [handle, handle + bytes) lies inside the mapping: for readers that follow handles
  // without a lock and may read a freed, reused blob (see EntryRep::reclaim_seq).
  bool Contains(uint64_t handle, uint64_t bytes) const {
    return handle >= kFirstBlobHandle && handle <= size_ && bytes <= size_ - handle;
  }
  // Tells readers that follow the object's handles without its lock (EntryRep::reclaim_seq)
  // that a blob it guards is about to be freed. `entry` names the lock (0: the registry's, which
  // guards nothing such readers follow; a dict shard's stripe word: that stripe's sequence).
  // Call before every free of a replaced blob.
  void NoteReclaim(uint64_t entry) const {
    if (IsStripeLockWord(entry)) {
      Ptr<DictStripeRep>(StripeHandleOf(entry))
          ->reclaim_seq.fetch_add(1, std::memory_order_seq_cst);
    } else if (entry != 0) {
      Ptr<EntryRep>(entry)->reclaim_seq.fetch_add(1, std::memory_order_seq_cst);
    }
  }
  uint64_t Handle(const void* address) const {
    return static_cast<uint64_t>(static_cast<const char*>(address) - base_);
  }

  // Allocates `bytes` aligned to `alignment` (a power of two, >= 16). OutOfSpace when the segment
  // is full, Poisoned when the allocator is. Never throws.
  Status Allocate(size_t bytes, uint64_t* handle, size_t alignment = 16);
  // Allocates up to `n` blocks of `bytes` each with one allocator call (one lock, one split of
  // one free block) into handles[0..*got); none when the segment cannot give them all. Status as
  // Allocate's. Never throws.
  Status AllocateMany(size_t bytes, size_t n, uint64_t* handles, size_t* got);
  // Writes in the page tables of the `kPopulateWindow` bytes after `to` when [from, to) (the
  // blocks of one AllocateMany) crossed into a new window: a segment that grows (list pushes)
  // then takes one system call per window instead of one page fault per page, a tenth of a
  // push's time. The pages are taken a window early; nothing else changes.
  void PopulateAhead(uint64_t from, uint64_t to);
  static constexpr uint64_t kPopulateWindow = 128 * 1024;
  // Writes in the page tables of the pages of [handle, handle + bytes) with one system call, for
  // a large fresh blob about to be written whole (a list's new ring). Best effort.
  void Populate(uint64_t handle, uint64_t bytes);

  // Frees a blob allocated by Allocate. Never throws; a poisoned allocator leaks it.
  void Free(uint64_t handle);
  // Frees handles[0..n) with one allocator call (one lock). As Free otherwise.
  void FreeMany(const uint64_t* handles, size_t n);
  // What a blob allocated by Allocate can hold (at least what was asked for), and what the
  // allocator's free memory grows by when it is freed. No lock: a block's size is its owner's.
  size_t UsableSize(uint64_t handle) const {
    return managed_.get_segment_manager()->size(Ptr<void>(handle));
  }
  size_t BlockBytes(uint64_t handle) const { return UsableSize(handle) + kBlockOverhead; }

  // Empties the blob caches (blob_cache.h) of slots that did not write since the last call and
  // that no thread holds; returns the bytes given back. For the manager's periodic tick.
  uint64_t TrimIdleCaches();

  // This thread's intent slot, claimed on first use (and again after fork).
  // nullptr when every slot is taken (the caller answers OutOfSpace).
  IntentSlot* MySlot();
  IntentSlot* MySlotSlow();  // MySlot past its one-entry cache.
  // Releases every slot held by this process (called on detach).
  void ReleaseSlotsOfThisProcess();

  EntryRep* Entry(uint32_t index) const { return Ptr<EntryRep>(root_->registry.entries) + index; }
  std::atomic<uint32_t>* IndexWords() const {
    return Ptr<std::atomic<uint32_t>>(root_->registry.index);
  }

  Root* root() const { return root_; }
  ManagedSegment& managed() { return managed_; }
  const std::string& shm_name() const { return shm_name_; }
  uint64_t instance_id() const { return instance_id_; }
  void MarkPoisoned() { root_->poisoned.store(1, std::memory_order_release); }

 private:
  ManagedSegment managed_;
  std::string shm_name_;
  char* base_;
  uint64_t size_;  // Of the mapping; constant.
  Root* root_;
  uint64_t instance_id_;  // Distinguishes this mapping in thread-local slot caches.
  // The manager's view of each slot's cache_uses at its last trim (TrimIdleCaches).
  std::vector<uint32_t> cache_uses_seen_;
};

// Gives a slot with no commit in flight back to the pool, with its blob cache emptied; the owner
// pid goes last, as the CAS that claims a slot looks at it first. With `owner_alive` (the slot's
// own process) the cache is taken from a trimmer first; false if that never happened.
bool ReleaseIntentSlot(Segment::Impl* segment, IntentSlot& slot, bool owner_alive);

}  // namespace shm

#endif  // SHM_SRC_SEGMENT_IMPL_H_
