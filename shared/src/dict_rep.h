// DictRep: the in-segment body of a dict (and of a sessions object), and its hash table.
//
// The table is open addressing with linear probing over a power-of-two array of slots. A slot's
// `blob` word is the commit point of every write: 0 (empty), kTombstoneHandle (deleted) or the
// handle of an immutable DictEntryBlob. Writers build a new blob, then publish it with
// CowWriter::PublishLocked under the entry's lock; the replaced blob becomes garbage. Growth and
// tombstone cleanup build a new table (sharing the blobs) and publish it into DictRep::table the
// same way. Nothing is ever mutated in place except single atomic words, so the committed state is
// whole at every instant and a dead writer's half-done work is resolved by its intent slot.
//
// The lock of a shard is a DictStripeRep in Root (layout.h), never freed, so a writer waiting on
// it or the manager's recovery taking it never touches freed memory; a delete waits out every
// holder of its shards' stripes (DestroyDict) before it frees the body.
//
// Everything here follows the rules of the segment: handles, not pointers; always-lock-free
// atomics only. Changes to these types must bump kLayoutVersion (layout.h).
#ifndef SHM_SRC_DICT_REP_H_
#define SHM_SRC_DICT_REP_H_

#include <atomic>
#include <cstdint>
#include <string_view>

#include "key_hash.h"
#include "layout.h"
#include "segment_impl.h"
#include "shm/limits.h"

namespace shm {

// One entry, immutable once published: the header then key, content type and value bytes.
struct DictEntryBlob {
  uint64_t version;
  int64_t expires_at_ms;  // Wall clock; 0 = never.
  uint64_t hash;          // Of the key, so a rebuild never re-reads keys.
  // The key's place in insertion order (Dict::Entries): drawn from DictRep::next_order when the
  // key is first written, copied by every rewrite of it, so a rewrite keeps the place and a key
  // deleted and written again goes last, as in Redis's small hashes.
  uint64_t order;
  // Lengths, packed so the header stays 40 bytes (limits.h bounds each well inside its field).
  uint32_t value_len;
  uint32_t key_len : 24;
  uint32_t ctype_len : 8;

  char* bytes() { return reinterpret_cast<char*>(this + 1); }
  const char* bytes() const { return reinterpret_cast<const char*>(this + 1); }
  std::string_view key() const { return {bytes(), key_len}; }
  std::string_view content_type() const { return {bytes() + key_len, ctype_len}; }
  std::string_view value() const { return {bytes() + key_len + ctype_len, value_len}; }
  // What the entry is charged against max_bytes.
  uint64_t charged_bytes() const { return sizeof(DictEntryBlob) + key_len + ctype_len + value_len; }
  bool expired(int64_t now_ms) const { return expires_at_ms != 0 && now_ms >= expires_at_ms; }
};

struct DictSlot {
  std::atomic<uint64_t> blob{0};     // 0, kTombstoneHandle or a DictEntryBlob handle. Commit word.
  std::atomic<uint32_t> ref_bit{0};  // CLOCK reference bit: set by reads, cleared by the hand.
  // DictHashTag of the key of `blob`, written before the blob is published into this slot, so a
  // probe compares keys only where the tag matches instead of reading every blob on the chain.
  // Invariant: whenever `blob` holds a blob, hash_tag is its key's tag (a blob only ever enters a
  // free slot, or replaces one of the same key). A reader without the lock may see a stale tag:
  // that is a miss, which it answers under the lock.
  std::atomic<uint32_t> hash_tag{0};
};
inline uint32_t DictHashTag(uint64_t hash) { return static_cast<uint32_t>(hash); }

// The hash of a key: its shard (top bits), home slot (the next bits) and tag (the low 32).
inline uint64_t DictKeyHash(std::string_view key) { return KeyHash(key); }

// A table: this header then `capacity` slots. Capacity is a power of two, constant.
struct DictTableRep {
  uint64_t capacity;
  uint64_t reserved;

  DictSlot* slots() { return reinterpret_cast<DictSlot*>(this + 1); }
  static uint64_t AllocationSize(uint64_t capacity) {
    return sizeof(DictTableRep) + capacity * sizeof(DictSlot);
  }
};

// Dicts without max_bytes are split by the top bits of the key's hash into kDictShards shards,
// each with its own lock, table, counts and version sequence, on lines of their own: writes of
// different keys from different processes do not queue on one mutex or bounce one line. A dict
// with max_bytes has one shard, so its bound and its CLOCK eviction stay exact.
inline constexpr uint32_t kDictShardBits = 4;
inline constexpr uint32_t kDictShards = 1u << kDictShardBits;

// Everything here is written only under the shard's lock (its DictStripeRep, layout.h);
// atomics so that a reader without the lock or a dead writer never sees a torn word.
struct alignas(64) DictShardRep {
  std::atomic<uint64_t> table{0};  // Handle of the current DictTableRep. Commit word.
  // Versions of this shard are seq * shard_count + shard index: unique in the dict.
  std::atomic<uint64_t> next_version{1};
  std::atomic<uint64_t> clock_hand{0};  // Next slot the CLOCK sweep looks at.

  // Derived from the table; recomputed by the owner-death repair (RepairShardLocked).
  std::atomic<uint64_t> entries{0};     // Slots holding a blob.
  std::atomic<uint64_t> bytes{0};       // Sum of their charged_bytes().
  std::atomic<uint64_t> tombstones{0};  // Slots holding kTombstoneHandle.
  std::atomic<uint64_t> expiring{0};    // Blobs with an expiry (expired ones included).

  // Statistics (monotonic; a dead writer may lose an increment).
  std::atomic<uint64_t> hits{0};
  std::atomic<uint64_t> misses{0};
  std::atomic<uint64_t> evictions{0};
  std::atomic<uint64_t> expirations{0};
};

struct DictRep {
  // Options: constant after creation.
  uint64_t max_bytes = 0;   // 0 = no bound but the segment.
  uint32_t eviction = 0;    // DictEviction.
  uint32_t shard_bits = 0;  // 0 (one shard) or kDictShardBits.
  int64_t default_ttl_ms = 0;
  // 1 once an entry with an expiry was published: until then no operation needs the clock.
  std::atomic<uint32_t> may_expire{0};
  // Which stripes lock the shards: 0 Root::dict_stripes, 1 Root::keyspace_stripes (a keyspace).
  // Constant after creation.
  uint32_t stripe_set = 0;
  // A keyspace's index, whose entries with a content type name a list or hash: such an entry,
  // expired, is removed only with what it names (Keyspace::SweepExpired, or a write replacing
  // it), never by a read.
  bool names_aggregates() const { return stripe_set != 0; }
  // Whether an expired entry of this content type stays until the sweep (one naming a list or
  // hash, above); any other expired entry is as good as absent, to reads and to snapshots alike.
  bool KeptWhenExpired(std::string_view content_type) const {
    return names_aggregates() && !content_type.empty();
  }

  DictShardRep shards[kDictShards];

  // The next DictEntryBlob::order: one counter for every shard, so the order is the dict's, not a
  // shard's. Taken (fetch_add) only by the insert of a new key; a writer killed after taking one
  // leaves a gap, never a repeat. On a line of its own: readers of the options above never miss
  // because of an insert.
  alignas(64) std::atomic<uint64_t> next_order{1};

  uint32_t shard_count() const { return shard_bits == kDictShardBits ? kDictShards : 1; }
  uint32_t ShardOf(uint64_t hash) const {
    return shard_bits == kDictShardBits ? static_cast<uint32_t>(hash >> (64 - kDictShardBits)) : 0;
  }
};

// The stripe lock guarding shard `shard` of the dict whose body is `body` (several shards, of
// any dicts, may share one).
inline uint32_t DictStripeIndex(uint64_t body, uint32_t shard) {
  uint64_t mixed = ((body >> 6) * kDictShards + shard) * 0x9e3779b97f4a7c15ull;
  return static_cast<uint32_t>(mixed >> 32) % kDictStripes;
}

// For the manager's recovery of a dead writer whose intent names a shard's stripe: takes the
// stripe (which repairs a dead holder's shard) and resolves the intents on it.
Status SettleDictStripe(Segment::Impl* segment, uint64_t stripe_word);

static_assert(std::atomic<uint64_t>::is_always_lock_free);
static_assert(std::atomic<uint32_t>::is_always_lock_free);
static_assert(sizeof(DictSlot) == 16);
static_assert(sizeof(DictEntryBlob) == 40);
static_assert(limits::kMaxKey < (size_t{1} << 24) && limits::kMaxContentType < 256 &&
              limits::kMaxValue <= UINT32_MAX);

}  // namespace shm

#endif  // SHM_SRC_DICT_REP_H_
