// The in-segment layout: Root and the tables it holds directly.
//
// Everything here lives in shared memory and follows the rules of the segment: no raw pointers
// (offsets from the segment base, "handles", instead), no virtuals, only always-lock-free atomics.
// A handle of 0 means "none"; handles below kFirstBlobHandle are markers, never blobs.
// Changes to any type in this file must bump kLayoutVersion.
#ifndef SHM_SRC_LAYOUT_H_
#define SHM_SRC_LAYOUT_H_

#include <sys/types.h>

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "robust_mutex.h"
#include "shm/limits.h"

namespace shm {

inline constexpr uint64_t kSegmentMagic = 0x4554415453484d53ull;  // "SHMSTATE" little endian.
inline constexpr uint32_t kLayoutVersion = 19;
inline constexpr uint32_t kMaxIntentSlots = 1024;
inline constexpr uint32_t kMaxWorkerSlots = 256;
inline constexpr size_t kMaxNameLength = limits::kMaxObjectName;

inline constexpr uint64_t kNullHandle = 0;
inline constexpr uint64_t kTombstoneHandle = 1;  // A deleted dict slot.
inline constexpr uint64_t kFirstBlobHandle = 64;
// Blocks are 16-byte aligned, so a blob handle is even; an odd word is a value held in the word
// itself (a list's inline item, list_rep.h), which nothing frees.
inline constexpr uint64_t kInlineTagBit = 1;
inline bool IsBlob(uint64_t handle) {
  return handle >= kFirstBlobHandle && (handle & kInlineTagBit) == 0;
}

// One per thread that writes. Records a copy-on-write commit in flight so that whoever next takes
// the lock after this thread's death can tell garbage from live data (see cow.h).
struct alignas(64) IntentSlot {
  std::atomic<pid_t> owner_pid{0};  // 0 = free. Claimed by CAS.
  std::atomic<pid_t> owner_tid{0};
  // The lock that guards the commit: an EntryRep's handle, a StripeLockWord (a dict shard's), or
  // 0 (the registry's).
  std::atomic<uint64_t> entry{0};
  std::atomic<uint64_t> cell{0};      // Handle of the atomic word the commit stores into.
  std::atomic<uint32_t> in_cs{0};     // 1 between "old recorded" and "intent cleared".
  std::atomic<uint64_t> new_off{0};   // Allocated blob, maybe published.
  std::atomic<uint64_t> old_off{0};   // Replaced blob, garbage once the commit is done.
  std::atomic<uint32_t> old_kind{0};  // ObjectKind when old_off is a whole object body, else 0.
  // 1 while a thread of a process the manager did not fork (the Python module, a tool) is inside
  // one operation (Segment::EnterClientOp): the manager waits for it to be 0 before it copies the
  // segment into its successor, so no such write lands in a segment already copied.
  std::atomic<uint32_t> client_op{0};
  // Handle of the EntryRep whose body this thread touches without the lock (array atomics and
  // lock-free reads), else 0: whoever frees an array body first waits until no live thread's
  // slot names its entry. A dead thread's pin names nothing it can still touch.
  std::atomic<uint64_t> pinned{0};
  // This slot's cache of freed small blobs (blob_cache.h): the handle of its BlobCacheRep, or 0
  // before the slot's first write. Freed with the slot's claim (ReleaseIntentSlot).
  std::atomic<uint64_t> cache{0};
  // Bytes the allocator would get back if the cache were emptied: its blocks and its rep.
  std::atomic<uint64_t> cached_bytes{0};
  // Who may touch the cache: kCacheFree, kCacheOwnerThread (the slot's thread, for the life of a
  // CowWriter) or kCacheTrimmer (the manager emptying an idle cache). Taken by CAS.
  std::atomic<uint32_t> cache_owner{0};
  // Bumped by the slot's thread each time it takes the cache: unchanged over a manager tick means
  // the cache sat idle, and the manager returns its blocks.
  std::atomic<uint32_t> cache_uses{0};
};
inline constexpr uint32_t kCacheFree = 0;
inline constexpr uint32_t kCacheOwnerThread = 1;
inline constexpr uint32_t kCacheTrimmer = 2;

// The locks of dict shards (dict_rep.h): in Root, never freed. A shard's lock is the stripe
// DictStripeIndex(body, shard); an intent slot names it by StripeLockWord (odd, unlike an entry's
// handle), and its reclaim sequence is what readers without the lock check.
inline constexpr uint32_t kDictStripes = 256;
struct alignas(64) DictStripeRep {
  ObjectMutex mu;
  // The dict body and shard whose derived state the holder changes, set once it holds `mu` and
  // saw the dict live, 0 otherwise: what the owner-death repair recomputes. Written and read
  // only by holders of `mu`, so relaxed: the mutex orders them (and a dead holder's stores, made
  // before its death, are seen by the next holder, which takes `mu` after the kernel marked it).
  std::atomic<uint64_t> holder_body{0};
  std::atomic<uint32_t> holder_shard{0};
  // Bumped before any blob a shard on this stripe guards is freed or reused.
  std::atomic<uint64_t> reclaim_seq{0};
  // Handle of the TxRecordRep (transaction_rep.h) of a transaction commit that holds this stripe
  // and has not yet applied its changes here, else 0. Set and cleared under `mu`; readers without
  // the lock that see it set take the lock (so no one sees part of a transaction), and the next
  // holder after the committer's death settles the record's share here.
  std::atomic<uint64_t> tx_record{0};
};
inline uint64_t StripeLockWord(uint64_t stripe_handle) { return stripe_handle | 1; }
inline bool IsStripeLockWord(uint64_t word) { return (word & 1) != 0; }
inline uint64_t StripeHandleOf(uint64_t word) { return word & ~uint64_t{1}; }

// One per worker process, written by that worker, read by anyone (stats, heartbeat).
struct alignas(64) WorkerSlot {
  std::atomic<pid_t> pid{0};
  std::atomic<uint32_t> restarts{0};
  std::atomic<int64_t> heartbeat_ms{0};  // Steady-clock ms; the manager kills a stale worker.
  std::atomic<int64_t> started_ms{0};    // Wall-clock ms.
  std::atomic<uint64_t> requests{0};
  std::atomic<uint64_t> errors{0};         // Responses with status >= 500.
  std::atomic<uint64_t> client_errors{0};  // Responses with status 4xx.
};

// One Redis-protocol connection of any worker (shm/client_table.h). Written by the thread that
// serves the connection, read by anyone; freed by that thread or, for a dead process, by the
// manager's recovery. The text words are guarded by `seq`, a seqlock (odd while written), so a
// reader never waits and a writer that died mid-write leaves a row readers skip.
inline constexpr uint32_t kMaxClientSlots = 512;
inline constexpr uint32_t kClientTextWords = 26;  // addr 48, laddr 48, name 64, cmd 48 bytes.
struct alignas(64) ClientSlot {
  std::atomic<uint64_t> id{0};  // 0: free. Claimed by compare-and-swap.
  std::atomic<pid_t> pid{0};
  std::atomic<int32_t> fd{-1};
  std::atomic<int64_t> connected_ms{0};  // Wall clock.
  std::atomic<int64_t> last_ms{0};       // Wall clock, the last command's start.
  std::atomic<uint32_t> seq{0};
  std::atomic<uint32_t> flags{0};  // ClientRow::kInMulti | kBlocked | kKillRequested.
  std::atomic<int32_t> resp{2};
  std::atomic<int32_t> db{0};
  std::atomic<uint64_t> text[kClientTextWords];
};

// One Redis blocked pop's place in the lines of its keys (shm/block_lines.h). Claimed by a
// compare-and-swap of `pid` from 0; `ticket` (the blocking order) and the keys are written before
// `state` leaves kFree, and read only after it did. Freed by its owner, by whoever finds its pid
// dead, or by the manager's recovery of that pid.
// The table lives in Root, which every segment pays for: 512 places of one cache line each (so
// four key hashes) keep the documented minimum --size (1 MiB) at 128 registry objects.
inline constexpr uint32_t kMaxBlockPlaces = 512;
inline constexpr uint32_t kMaxBlockKeys = 4;
// A worker's answer to barriers (BlockLines::RequestBarrier): the last request it answered.
// Written only when a barrier is answered, so four to a cache line costs nothing that matters.
struct BlockBarrierAck {
  std::atomic<pid_t> pid{0};  // 0: free.
  std::atomic<uint64_t> acked{0};
};
struct alignas(64) BlockPlace {
  std::atomic<pid_t> pid{0};  // 0: free.
  std::atomic<uint32_t> state{0};
  std::atomic<uint64_t> ticket{0};
  std::atomic<int64_t> arrival_ns{0};  // When the pop's command arrived: the line's order.
  std::atomic<int32_t> db{0};
  std::atomic<uint32_t> keys{0};  // Hashes used in key_hash; 0: in no line (too many keys).
  std::atomic<uint64_t> key_hash[kMaxBlockKeys];
};
static_assert(sizeof(BlockPlace) == 64, "a place is one cache line");

enum class EntryState : uint32_t { kFree = 0, kCreating = 1, kLive = 2 };

// One registry slot. The array of entries is allocated once at creation and never freed, so a
// stale proxy never points into freed memory; `incarnation` tells it the object is gone.
struct EntryRep {
  std::atomic<uint32_t> state{0};         // EntryState. kLive is the commit of a create.
  std::atomic<uint32_t> kind{0};          // ObjectKind; written before state becomes kLive.
  std::atomic<uint64_t> incarnation{0};   // Bumped on every create and delete.
  std::atomic<int64_t> expires_at_ms{0};  // Wall-clock ms; 0 = never.
  // Equal to `incarnation` while a counter may use a plain fetch_add (live, no TTL, value far from
  // the int64 limits); 0 otherwise, for good. One word, so the fast path checks one load.
  std::atomic<uint64_t> counter_fast_tag{0};
  // For a counter: the TxRecordRep of a transaction commit that holds it (its value then carries
  // Counter::kTxLock, counter.h), else 0. Set before the lock is added, cleared after it is taken
  // off; a waiter that finds the record's owner dead settles it (SettleCounterTxIfOwnerDied).
  // For a list: the record of a commit that holds its `mu` and changes it (list_tx.h), else 0;
  // the next holder after the committer's death settles it (SettleListTxLocked).
  std::atomic<uint64_t> counter_tx{0};
  std::atomic<uint64_t> body{0};  // Handle of the kind's Rep (none for counters).
  // Bumped before any blob this object's lock guards is freed (CowWriter::ReleaseGarbage, and the
  // manager's recovery of a dead writer): readers that follow handles without the lock (Dict::Get)
  // keep what they read only if it did not change.
  std::atomic<uint64_t> reclaim_seq{0};
  std::atomic<uint64_t> unlocked_hits{0};    // Dict hits answered without the lock (statistics).
  std::atomic<uint64_t> unlocked_misses{0};  // Dict misses answered without the lock.
  std::atomic<uint64_t> next_free{0};        // Free-list link (index+1), under the registry lock.
  std::atomic<uint32_t> wake_seq{0};  // Futex word: bumped to wake blocked pops and lock waits.
  // Set by whoever may sleep on wake_seq for a lock's release (FutexWaitWanted), cleared by the
  // release that wakes them (FutexWakeIfWanted), so an uncontended release makes no system call.
  std::atomic<uint32_t> wake_wanted{0};
  int64_t created_ms = 0;
  uint32_t name_length = 0;
  char name[kMaxNameLength] = {};
  // Guards body contents; see each kind's Rep. On a cache line of its own with the word below:
  // unaligned, it straddled two lines (glibc writes the lock word at one end and the robust
  // list's links at the other), so each hand-off of the lock between two cores moved both.
  alignas(64) ObjectMutex mu;
  // Bumped by every write through a keyspace to the list or hash this entry holds, before the
  // write (a death in between shows a change that did not happen, never hides one): with the
  // key's entry version it makes the key's version (Keyspace::Version). Next to `mu`, whose
  // line such a write takes anyway.
  std::atomic<uint64_t> keyspace_writes{0};
  // The value, for counters, alone in its 128-byte block: adders contend on it, while the fields
  // above are read on every add and must stay in every reader's cache. For a process lock, its
  // whole state (process_lock_rep.h), for the same reason.
  alignas(128) std::atomic<int64_t> counter{0};
  char counter_padding[120] = {};  // Adjacent-line prefetch pairs 128-byte blocks.
};
static_assert(offsetof(EntryRep, mu) % 64 == 0 &&
                  offsetof(EntryRep, keyspace_writes) + sizeof(uint64_t) <=
                      offsetof(EntryRep, mu) + 64,
              "an entry's lock and keyspace_writes share one cache line");

// The registry: a fixed table of entries plus an open-addressing name index.
// Invariants (all under `mu`):
//  (1) names of kLive entries are unique;
//  (2) an entry is in the index iff it is kLive; index words are entry index + 1, 0 empty,
//      kIndexTombstone deleted;
//  (3) the index and the free list are derived data: after an owner death they are rebuilt from
//      the entries' states (RepairRegistryLocked).
// Lock order: registry mu -> object mu -> allocator.
inline constexpr uint32_t kIndexTombstone = 0xffffffffu;
struct RegistryRep {
  ObjectMutex mu;
  uint32_t capacity = 0;                // Constant after creation.
  uint32_t index_size = 0;              // Power of two >= 2 * capacity. Constant.
  uint64_t entries = 0;                 // Handle of EntryRep[capacity]. Constant.
  uint64_t index = 0;                   // Handle of std::atomic<uint32_t>[index_size]. Constant.
  std::atomic<uint32_t> live{0};        // GUARDED_BY(mu) for writes.
  std::atomic<uint64_t> free_head{0};   // Index+1 of the first free entry; GUARDED_BY(mu).
  std::atomic<uint64_t> free_tail{0};   // FIFO, so a freed entry is reused last.
  std::atomic<uint32_t> tombstones{0};  // Index tombstones; the index is rebuilt past a bound.
};

// The first three fields are frozen across layout versions (static_asserts below): every build
// can read them in any segment and refuse a segment of another version with a clear message.
struct Root {
  uint64_t magic = 0;
  uint32_t layout_version = 0;
  uint32_t boost_version = 0;
  uint64_t generation = 0;
  uint64_t size = 0;
  pid_t creator_pid = 0;
  int64_t created_ms = 0;
  std::atomic<uint32_t> poisoned{0};  // Set by whoever sees the allocator poisoned.
  // Set by the manager before it copies the state into the next generation or stops; client
  // operations that see it leave the segment alone (Segment::EnterClientOp).
  std::atomic<uint32_t> draining{0};
  // The generation the state was copied into, once that copy is complete; 0 before (and when the
  // manager stopped instead). Attached clients follow it.
  std::atomic<uint64_t> successor_generation{0};
  // Set by the manager once this segment holds the state it serves (restored at start, or the
  // whole copy of a rebuild): clients never attach to a segment still being filled.
  std::atomic<uint32_t> serving{0};
  RegistryRep registry;
  // Slots are claimed lowest first, and never beyond this mark: scans of every thread's slot
  // (pins) stop here instead of reading all kMaxIntentSlots.
  std::atomic<uint32_t> intents_in_use{0};
  IntentSlot intents[kMaxIntentSlots];
  WorkerSlot workers[kMaxWorkerSlots];
  DictStripeRep dict_stripes[kDictStripes];
  ClientSlot clients[kMaxClientSlots];
  // The shard locks of keyspaces (keyspace.h), a set apart from dicts' so that a keyspace
  // command may take the lock of a hash's shard while it holds its key's: the order is keyspace
  // stripe -> registry -> object (a dict's stripe included) -> allocator, and no dict stripe is
  // ever held while a keyspace stripe is taken.
  DictStripeRep keyspace_stripes[kDictStripes];
  // Redis blocked pops of every worker (shm/block_lines.h): places are claimed lowest first and
  // never beyond block_places_in_use, so a scan stops there.
  std::atomic<uint64_t> block_tickets{0};
  std::atomic<uint32_t> block_places_in_use{0};
  std::atomic<uint32_t> block_places_taken{0};  // Claimed now: 0 lets a push skip the scan.
  std::atomic<uint32_t> block_barrier_word{0};  // Futex word: a barrier asked or answered.
  std::atomic<uint64_t> block_barrier{0};       // Barriers asked.
  BlockBarrierAck block_barrier_acks[kMaxWorkerSlots];
  BlockPlace block_places[kMaxBlockPlaces];
};

static_assert(offsetof(Root, magic) == 0 && offsetof(Root, layout_version) == 8 &&
                  offsetof(Root, boost_version) == 12,
              "Root's version fields must keep their place in every layout version");
static_assert(std::atomic<uint64_t>::is_always_lock_free);
static_assert(std::atomic<int64_t>::is_always_lock_free);
static_assert(std::atomic<pid_t>::is_always_lock_free);

}  // namespace shm

#endif  // SHM_SRC_LAYOUT_H_
