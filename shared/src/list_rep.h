// ListRep: the in-segment layout of a List (a deque of byte strings), and its commit protocol.
//
// Each item is one ring slot word, addressed by logical position: slot index = pos & (capacity -
// 1). An item of at most kInlineItemBytes bytes lives in the word itself (an inline word: its
// low bit set, which no block handle has, see IsInlineItem); a bigger one is an immutable blob
// {size, bytes} whose handle is the word. Either way the item is that one word, so pushes and
// pops of small items allocate and free nothing and the commit stays one word. head and tail are
// logical positions ([head, tail) holds the items); they start at kListOrigin so pushes on the left
// never make them negative.
//
// Invariants, under the entry's lock (EntryRep::mu):
//  (1) every slot outside [head, tail) is 0; every slot inside holds an item;
//  (2) tail - head <= capacity - 1: one slot always stays free, so after a crash the slot at
//      tail and the slot at head - 1 are never the same word and repair knows which end grew;
//  (3) head, tail and bytes are derived data: the slots are the truth. Every operation commits by
//      publishing ONE slot word (CowWriter::PublishLocked) and only then moves head or tail, so
//      repair_locked re-derives them from the slots after an owner death.
// A ring is replaced whole (grow or shrink) by publishing a new one into `ring`, copy-on-write.
//
// The line of waiting pops (arrival order across processes, see shm/list.h's ListPlace): a waiter
// takes ticket next_ticket++ and records it in a free ListPlaceRep of `line`, under the lock. A
// pop holding a place succeeds only when its place is the oldest live one; a pop without one,
// when no place is live or the oldest is its own process's. A place is void, and is freed by
// whoever sees it so, once its owner process is gone or its deadline passed; the manager's recovery
// of a dead pid frees that pid's places. The ticket word is written last when joining and is the
// place's only truth: a death between the writes leaves a free place (ticket 0) or a whole one
// whose dead owner voids it. `places` counts the taken places for pops that find none (see
// there); a death between a ticket and the count over-counts, and the owner-death repair recounts.
#ifndef SHM_SRC_LIST_REP_H_
#define SHM_SRC_LIST_REP_H_

#include <sys/types.h>

#include <atomic>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string_view>

#include "layout.h"
#include "shm/segment.h"

namespace shm {

inline constexpr int64_t kListOrigin = int64_t{1} << 62;

// An item: `size` bytes follow the header.
struct ListItemRep {
  uint64_t size = 0;
};
inline char* ItemData(ListItemRep* item) { return reinterpret_cast<char*>(item + 1); }

// An inline item's word: byte 0 (the least significant) is (size << 1) | kInlineItemTag, bytes
// 1..size the item, the rest 0. Never 0 (an empty item is the word 1), never a blob handle: the
// allocator hands out 16-byte aligned blocks, so a handle's low bit is 0 (IsBlob says so).
inline constexpr size_t kInlineItemBytes = 7;
static_assert(kInlineTagBit == 1, "inline words are the odd ones");
static_assert(std::endian::native == std::endian::little, "byte 0 is the low byte");

inline bool FitsInline(std::string_view bytes) { return bytes.size() <= kInlineItemBytes; }
inline bool IsInlineItem(uint64_t word) { return (word & kInlineTagBit) != 0; }
inline uint64_t InlineItemSize(uint64_t word) { return (word >> 1) & 7; }
// REQUIRES: FitsInline(bytes).
inline uint64_t InlineItemWord(std::string_view bytes) {
  uint64_t word = (uint64_t{bytes.size()} << 1) | kInlineTagBit;
  if (!bytes.empty()) std::memcpy(reinterpret_cast<char*>(&word) + 1, bytes.data(), bytes.size());
  return word;
}
// The bytes of the inline item in `*slot`, viewed in place: valid while the slot keeps it (under
// the list's lock).
inline std::string_view InlineItemView(const std::atomic<uint64_t>* slot, uint64_t word) {
  return {reinterpret_cast<const char*>(slot) + 1, InlineItemSize(word)};
}

// The ring array: `capacity` atomic slot words follow the header. Immutable capacity. The header
// fills a cache line (the ring is allocated 64-byte aligned) so that pushes writing the first
// slots do not take the line every push reads the capacity from.
struct ListRingRep {
  uint64_t capacity = 0;  // Power of two.
  uint64_t reserved[7] = {};
};
inline std::atomic<uint64_t>* RingSlots(ListRingRep* ring) {
  return reinterpret_cast<std::atomic<uint64_t>*>(ring + 1);
}

inline constexpr uint32_t kListLineSlots = 64;

// One waiting pop's place in the list's line. GUARDED_BY(entry mu).
struct ListPlaceRep {
  std::atomic<uint64_t> ticket{0};      // 0: free. Written last on join.
  std::atomic<int64_t> deadline_ns{0};  // CLOCK_MONOTONIC (one clock for every process).
  std::atomic<int32_t> pid{0};          // The owner: a gone pid voids the place.
  uint32_t reserved = 0;
};

// The first cache line holds every word a push or pop reads or writes under the lock (the ring's
// handle, the ends, the byte count, the write count, the waiters' and places' counts, the limits),
// so that of the rep only that line moves between two cores taking turns on the list; the line
// of waiting pops follows. Allocated 64-byte aligned (AllocateListRep).
struct ListRep {
  std::atomic<uint64_t> ring{0};           // Handle of the ListRingRep; 0 until the first push.
  std::atomic<int64_t> head{kListOrigin};  // GUARDED_BY(entry mu). Derived (invariant 3).
  std::atomic<int64_t> tail{kListOrigin};  // GUARDED_BY(entry mu). Derived (invariant 3).
  std::atomic<uint64_t> bytes{0};          // Sum of item sizes. Derived.
  // Bumped under the lock before every change of the items (push, pop, set, replace, a
  // transaction's share): a transaction that read the list checks it under the commit's lock.
  // A death between the bump and the change shows a change that did not happen, never hides one.
  std::atomic<uint64_t> writes{0};
  std::atomic<uint32_t> waiters{0};  // Blocked pops (may over-count after a waiter died:
                                     // that costs a spare wake, never a lost one).
  // Places of `line` holding a ticket, or more: GUARDED_BY(entry mu). Raised before a ticket is
  // written and lowered after one is cleared, so a death between the two over-counts (pops then
  // scan the line, as when a place is taken) and never under-counts; RepairListLocked recounts.
  // 0 lets a pop skip the scan of the line's 64 places.
  std::atomic<uint32_t> places{0};
  uint64_t max_items = 0;                            // Constant after creation.
  uint64_t max_item_bytes = 0;                       // Constant after creation.
  alignas(64) std::atomic<uint64_t> next_ticket{1};  // GUARDED_BY(entry mu). The next ticket.
  ListPlaceRep line[kListLineSlots];                 // Places of waiting pops, in no order.
};
static_assert(offsetof(ListRep, next_ticket) == 64, "a push's words fill the rep's first line");

struct EntryRep;

// Frees the places of `pid` in the line of the list `entry` (locked by the caller): the manager's
// recovery of a dead process. Wakes the list's waiters when that lets the next one pop.
void DropListPlacesOf(Segment::Impl* seg, EntryRep* entry, pid_t pid);

static_assert(std::atomic<uint64_t>::is_always_lock_free);
static_assert(std::atomic<int64_t>::is_always_lock_free);
static_assert(std::atomic<uint32_t>::is_always_lock_free);
static_assert(sizeof(ListRingRep) == 64);

}  // namespace shm

#endif  // SHM_SRC_LIST_REP_H_
