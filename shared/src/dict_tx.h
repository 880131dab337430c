// The dict internals a transaction commit uses (transaction.cc, transaction_rep.h): where a key
// lives, its entry read under the shard's lock, room for inserts, and the idempotent apply of one
// staged change. Functions marked "Under the lock" REQUIRE the stripe of `target` held.
#ifndef SHM_SRC_DICT_TX_H_
#define SHM_SRC_DICT_TX_H_

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "cow.h"
#include "dict_rep.h"
#include "shm/dict.h"
#include "transaction_rep.h"

namespace shm {

// A time to live in ms, for Dict's writes and Transaction's: 0 (the dict's default) up to
// Dict::kMaxTtlMs, else InvalidArgument.
Status DictValidateTtl(int64_t ttl_ms);

// The dict's increment rule, one implementation for Dict::Incr and Transaction::Incr: *next is
// the value `current` holds (init when absent) plus `by`; InvalidArgument when it is not a decimal
// int64 or the sum overflows. A value incr creates has the content type kDictIncrContentType.
inline constexpr std::string_view kDictIncrContentType = "text/plain";
Status DictIncrNext(const DictValue* current, int64_t by, int64_t init, int64_t* next);

struct DictTxTarget {
  DictStripeRep* stripe = nullptr;
  uint64_t body = 0;
  uint32_t shard = 0;
  uint64_t hash = 0;
};

// The entry a key's slot holds under the lock, live or expired: views into the segment, valid
// while the lock is held (empty when the key has no entry).
struct DictTxHeld {
  DictEntryView entry;
  bool expired = false;
};

// Where a key's entry was found: its shard's table, the slot, and the blob the slot held. A hint
// only: under the lock it is used when that slot of the current table still holds that blob
// (else the key is looked up), so it spares a commit its second and third look-up of a key.
struct DictTxSlotHint {
  uint64_t table = 0;  // 0: none.
  uint64_t pos = 0;
  uint64_t blob = 0;
};

// Where `key` of ref's dict lives, read without the lock (DictTxReadLocked checks it again).
// NotFound when the dict is gone.
Status DictTxLocate(const ObjectRef& ref, std::string_view key, DictTxTarget* target);
// As above, for a key whose DictKeyHash is `hash`.
Status DictTxLocate(const ObjectRef& ref, uint64_t hash, DictTxTarget* target);
// Takes a stripe as every dict operation does, settling a dead holder's work first. False when
// `timeout` ran out, with the lock not held.
bool DictTxLockStripe(Segment::Impl* seg, DictStripeRep* stripe, std::chrono::nanoseconds timeout);
// Under the lock: NotFound when the dict is no longer the live incarnation with target.body;
// else *found says whether the key has a live (unexpired) entry, copied to *value.
Status DictTxReadLocked(const ObjectRef& ref, const DictTxTarget& target, std::string_view key,
                        DictValue* value, bool* found);
// Under the lock: as DictTxReadLocked, without copying the entry out: its version (0 when
// absent or expired) and expiry; *at (may be null) where it is (table 0: absent). `seen` (may
// be null): where a read found the entry with version `seen_version`; when its slot holds the
// same blob with that version (versions are unique per write within a dict), that is the entry.
// *held (may be null): what the key's slot holds, live or expired (a write replaces either).
Status DictTxProbeLocked(const ObjectRef& ref, const DictTxTarget& target, std::string_view key,
                         const DictTxSlotHint* seen, uint64_t seen_version, uint64_t* version,
                         int64_t* expires_at_ms, DictTxSlotHint* at, DictTxHeld* held = nullptr);
// Under the lock: whether `inserts` new keys fit the shard's table without a rebuild.
bool DictTxRoomLocked(Segment::Impl* seg, const DictTxTarget& target, uint64_t inserts);
// Without any lock held: rebuilds the shard's table with room for `inserts` more keys.
Status DictTxGrow(const ObjectRef& ref, uint32_t shard, uint64_t inserts, CowWriter* writer);
// Under the lock: the absolute expiry of an entry written with `ttl_ms` (0: the dict's default).
int64_t DictTxExpiryLocked(Segment::Impl* seg, const DictTxTarget& target, int64_t ttl_ms);
// A fresh blob (from the writer's cache or the segment; owned by the caller until published)
// holding the entry but its version: its expiry `expires_at_ms`.
Status DictTxAllocateBlob(Segment::Impl* seg, CowWriter* writer, std::string_view key,
                          std::string_view content_type, std::string_view value,
                          int64_t expires_at_ms, uint64_t* handle);
// As above, for a key whose DictKeyHash is `hash`.
Status DictTxAllocateBlob(Segment::Impl* seg, CowWriter* writer, std::string_view key,
                          uint64_t hash, std::string_view content_type, std::string_view value,
                          int64_t expires_at_ms, uint64_t* handle);
// Dict::Read of a key whose DictKeyHash is `hash` (a transaction's read: it hashed the key),
// through `reader`, which keeps what it needs of the entry. *seen (may be null) gets where a hit
// was found, untouched otherwise.
Status DictTxRead(const Dict& dict, std::string_view key, uint64_t hash, DictReader* reader,
                  DictTxSlotHint* seen = nullptr);
// Copies an entry into *value, reusing its strings' buffers (Dict::Get's reader). With
// `skip_untyped_data`, an entry without a content type (a keyspace string) leaves value->data
// empty: a write replacing the string needs its type, version and expiry, not its bytes.
class DictValueReader final : public DictReader {
 public:
  explicit DictValueReader(DictValue* value, bool skip_untyped_data = false)
      : value_(value), skip_untyped_data_(skip_untyped_data) {}
  Status Take(std::string_view data, std::string_view content_type, uint64_t version,
              int64_t expires_at_ms) override;

 private:
  DictValue* value_;
  bool skip_untyped_data_;
};
// Under the lock: applies `change` with plain stores (the record, not an intent slot, owns its
// blobs), freeing the blob it replaces. With `evictor` (the committer's writer) a dict with
// max_bytes first evicts to make room; a repair passes none. Idempotent: a put whose blob is in
// its slot, or an erase of an absent key, is skipped.
// *rebuild_after (may be null) says whether an insert left the shard's table due a rebuild.
// `at` (may be null): where the commit's check under this same lock hold found the key.
Status DictTxApplyLocked(Segment::Impl* seg, const TxChangeRep& change, CowWriter* evictor,
                         bool* rebuild_after = nullptr, const DictTxSlotHint* at = nullptr);
// Under the lock: recomputes what is derived from the shard's table (after a repair's apply).
void DictTxRepairShardLocked(Segment::Impl* seg, uint64_t body, uint32_t shard);
// Takes every shard lock of ref's dict in lock order and marks each with a fresh record without
// changes (*record), for a batch of operations run by this thread meanwhile: its dict operations
// on those shards do not take the locks again (re-entrant), everyone else's wait. Refused while
// this thread holds a batch already.
Status DictTxHoldAll(const ObjectRef& ref, std::vector<DictStripeRep*>* held, uint64_t* record);
// Whether this thread is inside a DictTxHoldAll batch.
bool DictTxHoldingAll();
// Whether `stripe` is one this thread's DictTxHoldAll batch holds (a commit inside the batch
// uses it without taking it again).
bool DictTxHeldByThisThread(const DictStripeRep* stripe);
// Ends DictTxHoldAll's batch: clears the marks, releases the locks, frees the record.
void DictTxReleaseAll(Segment::Impl* seg, std::vector<DictStripeRep*>* held, uint64_t record);
// After the commit, without locks: grows the shard's table if the inserts filled it.
void DictTxRebuildIfNeeded(const ObjectRef& ref, uint32_t shard, CowWriter* writer);

// The set of live keys of one shard, as a number that changes when a key comes or goes (a sum
// over the keys' hashes, mixed, and their count): what a transaction that listed or counted a
// dict's keys checks again under the commit's lock, so a key added or removed meanwhile (expired
// included) is a Conflict. Values and versions do not count.
// The shards of ref's dict and, for each, its digest taken under its lock.
Status DictTxKeySetDigests(const ObjectRef& ref, std::vector<uint64_t>* digests);
// Under the lock: the digest of target's shard (its body and shard; any hash). NotFound when
// ref's dict is no longer the live incarnation with target.body.
Status DictTxKeySetDigestLocked(const ObjectRef& ref, const DictTxTarget& target, uint64_t* digest);
// The hash that DictTxLocate maps to shard `shard` of a sharded dict (any shard of another).
inline uint64_t DictTxShardHash(uint32_t shard) { return uint64_t{shard} << (64 - kDictShardBits); }

// A staged put's blob whose key takes a new place at the end of the insertion order when the
// commit publishes it, even over a live entry of the key (a key the transaction deleted and
// wrote again). Stored in the blob's `order` until then; an apply replaces it.
inline constexpr uint64_t kDictTxOrderLast = ~uint64_t{0};

// What a transaction staged in one dict, laid over the committed entries by the dict's own
// listings (DictListEntries, DictListKeys), so a listing inside a transaction follows the same
// rules as one outside it and as the commit will leave the dict: a rewrite keeps the key's
// place, an erase drops the key, a put marked `last` (a new key, or one deleted and written
// again) comes after every committed key, in `last` order. Views into the transaction's staging:
// valid while it is unchanged.
class DictOverlay {
 public:
  struct Write {
    std::string_view key;
    uint64_t hash = 0;  // DictKeyHash(key).
    bool erase = false;
    uint64_t last = 0;  // 0: keeps the key's place; else its rank among the puts that go last.
    std::string_view value;
  };
  void Add(const Write& write) { writes_.emplace(write.key, write); }
  const Write* Find(std::string_view key) const {
    auto it = writes_.find(key);
    return it == writes_.end() ? nullptr : &it->second;
  }
  bool empty() const { return writes_.empty(); }
  // The puts marked `last`, in their order.
  std::vector<const Write*> Appended() const;
  // Every put (a key the overlay makes present), in no particular order.
  template <typename Fn>
  void ForEachPut(Fn&& fn) const {
    for (const auto& [key, write] : writes_) {
      if (!write.erase) fn(write);
    }
  }

 private:
  std::unordered_map<std::string_view, Write> writes_;
};

// Dict::Entries and Dict::ListKeys of the committed dict with `overlay` (may be null) laid over
// it: the one implementation of both listings.
Status DictListEntries(const ObjectRef& ref, bool with_values, const DictOverlay* overlay,
                       std::vector<DictItem>* items);
Status DictListKeys(const ObjectRef& ref, std::string_view prefix, size_t limit, uint64_t cursor,
                    const DictOverlay* overlay, std::vector<std::string>* keys,
                    uint64_t* next_cursor);

}  // namespace shm

#endif  // SHM_SRC_DICT_TX_H_
