#include "shm/dict.h"

#include <unistd.h>

#include <algorithm>
#include <bit>
#include <charconv>
#include <cstring>
#include <new>
#include <optional>
#include <string>
#include <vector>

#include "boundary.h"
#include "byte_io.h"
#include "cow.h"
#include "dict_rep.h"
#include "dict_tx.h"
#include "kind_ops.h"
#include "layout.h"
#include "object_guard.h"
#include "owned_word.h"
#include "prefetch_write.h"
#include "segment_impl.h"
#include "shm/integer.h"
#include "shm/log.h"
#include "shm/process_id.h"
#include "transaction_hashes.h"
#include "transaction_rep.h"

namespace shm {

static_assert(Dict::kEntryOverhead == sizeof(DictEntryBlob));

namespace {

constexpr uint64_t kMinCapacity = 8;                  // Per shard.
constexpr uint64_t kMaxCapacity = uint64_t{1} << 30;  // Cursors keep the slot in 32 bits.
constexpr uint64_t kListChunk = 256;  // Home slots scanned per lock hold (ListKeys).
constexpr int kMaxWriteAttempts = 16;
constexpr uint64_t kMaxMaxBytes = uint64_t{1} << 48;

// ---------------------------------------------------------------------------------------------
// Validation

// The empty key is a key (as in Redis: a Redis key or hash field may be empty).
Status ValidateKey(std::string_view key) {
  if (key.size() > Dict::kMaxKey) {
    return Status::InvalidArgument("key longer than " + std::to_string(Dict::kMaxKey) + " bytes");
  }
  return Status::OK();
}

Status ValidateValue(std::string_view value) {
  if (value.size() > Dict::kMaxValue) {
    return Status::InvalidArgument("value of " + std::to_string(value.size()) +
                                   " bytes is longer than the limit of " +
                                   std::to_string(Dict::kMaxValue));
  }
  return Status::OK();
}

// Content types become HTTP headers: printable ASCII only, so none can inject a header.
Status ValidateContentType(std::string_view content_type) {
  if (content_type.size() > Dict::kMaxContentType) {
    return Status::InvalidArgument("content type longer than " +
                                   std::to_string(Dict::kMaxContentType) + " bytes");
  }
  for (unsigned char c : content_type) {
    if (c < 0x20 || c > 0x7e) {
      return Status::InvalidArgument("content type has a byte outside printable ASCII");
    }
  }
  return Status::OK();
}

Status ValidateOptions(const DictOptions& options) {
  if (options.max_bytes > kMaxMaxBytes) {
    return Status::InvalidArgument("max_bytes larger than " + std::to_string(kMaxMaxBytes));
  }
  if (options.eviction != DictEviction::kNone && options.eviction != DictEviction::kClock) {
    return Status::InvalidArgument("unknown eviction policy (none, clock)");
  }
  if (options.eviction == DictEviction::kClock && options.max_bytes == 0) {
    return Status::InvalidArgument("clock eviction needs max_bytes > 0");
  }
  Status s = DictValidateTtl(options.default_ttl_ms);
  if (!s.ok()) return Status::InvalidArgument("default " + std::string(s.message()));
  return Status::OK();
}

uint64_t HashKey(std::string_view key) { return DictKeyHash(key); }

uint64_t HomeSlot(uint64_t hash, uint64_t capacity) {
  return hash >> (64 - std::countr_zero(capacity));
}

// ---------------------------------------------------------------------------------------------
// The dict as seen while holding its lock.

struct Locked {
  Segment::Impl* seg;
  DictRep* rep;         // Options (constant) and the shards.
  DictShardRep* shard;  // The shard whose lock is held.
  DictTableRep* table;  // Its current table.
  uint64_t entry;       // The lock word of the shard's stripe (names the lock in intents).
  uint32_t shard_index;

  uint64_t mask() const { return table->capacity - 1; }
  // A key's first slot comes from the top bits of its hash below the shard bits, so slot order
  // follows hash order and a ListKeys cursor (a hash) stays meaningful across rebuilds.
  uint64_t home(uint64_t hash) const { return HomeSlot(hash << rep->shard_bits, table->capacity); }
  DictSlot& slot(uint64_t pos) const { return table->slots()[pos]; }
  const DictEntryBlob* blob(uint64_t handle) const { return seg->Ptr<DictEntryBlob>(handle); }
  // The version a write in this shard gives its entry.
  uint64_t NextVersion() const {
    return AddOwned(shard->next_version, 1) * rep->shard_count() + shard_index;
  }
  // The place in insertion order a new key takes (DictEntryBlob::order).
  uint64_t NextOrder() const { return rep->next_order.fetch_add(1, std::memory_order_relaxed); }
};

DictStripeRep* StripeFor(Segment::Impl* seg, uint64_t body, uint32_t shard) {
  Root* root = seg->root();
  const bool keyspace = seg->Ptr<DictRep>(body)->stripe_set != 0;
  return &(keyspace ? root->keyspace_stripes : root->dict_stripes)[DictStripeIndex(body, shard)];
}

void RepairShardLocked(Segment::Impl* seg, DictRep* rep, uint32_t shard_index);

// After the death of a stripe's holder: resolve its intents, then recompute what it may have
// left half-updated. REQUIRES: the stripe's lock, taken with LockResult::kOwnerDied.
void SettleStripeLocked(Segment::Impl* seg, DictStripeRep* stripe) {
  ResolveIntentsLocked(seg, StripeLockWord(seg->Handle(stripe)));
  SettleTxRecordLocked(seg, stripe);  // A transaction's share here (transaction_rep.h).
  uint64_t body = stripe->holder_body.load();
  if (body != 0) RepairShardLocked(seg, seg->Ptr<DictRep>(body), stripe->holder_shard.load());
  stripe->holder_body.store(0);
}

Status StripeBusy(const DictStripeRep* stripe) {
  return Status::Timeout("dict is busy (held by pid " + std::to_string(stripe->mu.owner_pid()) +
                         "); try again");
}

// Takes a stripe lock, first settling what a dead holder left (SettleStripeLocked). False when
// `timeout` ran out, with the lock not held.
bool LockStripe(Segment::Impl* seg, DictStripeRep* stripe, std::chrono::nanoseconds timeout) {
  LockResult result = stripe->mu.LockFor(timeout);
  if (result == LockResult::kTimedOut) return false;
  if (result == LockResult::kOwnerDied) SettleStripeLocked(seg, stripe);
  return true;
}

// The shard of ref's dict holding `hash`. Read without the lock: if the body is gone meanwhile,
// ShardGuard::Lock answers NotFound, whatever this returned.
// The body `body` names if it could be a DictRep: inside the mapping and aligned as one. Read
// without the lock, it may be a freed body or, behind a stale ref, another kind's.
const DictRep* DictRepIfPlausible(Segment::Impl* seg, uint64_t body) {
  if (!seg->Contains(body, sizeof(DictRep)) || body % alignof(DictRep) != 0) return nullptr;
  return seg->Ptr<DictRep>(body);
}

uint32_t ShardFor(const ObjectRef& ref, uint64_t hash) {
  if (!ref.valid()) return 0;
  const DictRep* rep =
      DictRepIfPlausible(ref.segment->impl(), ref.entry->body.load(std::memory_order_acquire));
  return rep == nullptr ? 0 : rep->ShardOf(hash) % kDictShards;
}

// The stripes this thread holds for a batch of commands (DictTxHoldAll), in lock order.
thread_local std::vector<DictStripeRep*> t_held_stripes;

bool HeldByThisThread(const DictStripeRep* stripe) {
  for (const DictStripeRep* held : t_held_stripes) {
    if (held == stripe) return true;
  }
  return false;
}

// Holds the lock of one shard of a live dict: the way every dict operation takes it.
class ShardGuard {
 public:
  ShardGuard() = default;
  ~ShardGuard() { Unlock(); }
  ShardGuard(const ShardGuard&) = delete;
  ShardGuard& operator=(const ShardGuard&) = delete;

  // Locks shard `shard` of ref's dict (after repairing a dead holder's work), then checks the
  // dict is still this live incarnation: NotFound otherwise, so a stale proxy never touches a
  // freed body. The body cannot be freed while the lock is held (DestroyDict waits for it).
  Status Lock(const ObjectRef& ref, uint32_t shard) {
    Unlock();
    if (!ref.valid()) return Status::InvalidArgument("handle is not open");
    Segment::Impl* seg = ref.segment->impl();
    uint64_t body = ref.entry->body.load(std::memory_order_acquire);
    if (!IsCurrent(ref) || body == 0) return Status::NotFound("object was deleted");
    DictStripeRep* stripe = StripeFor(seg, body, shard);
    // A stripe this thread holds for a whole batch (DictTxHoldAll) is not taken again.
    const bool reentrant = HeldByThisThread(stripe);
    if (!reentrant) {
      if (!LockStripe(seg, stripe, kDefaultLockTimeout)) return StripeBusy(stripe);
      stripe_ = stripe;
    }
    if (!IsCurrent(ref) || ref.entry->body.load(std::memory_order_acquire) != body) {
      Unlock();
      return Status::NotFound("object was deleted");
    }
    if (EntryExpiredNow(ref.entry)) {
      Unlock();
      return Status::NotFound("object has expired");
    }
    if (!reentrant) {  // Relaxed: only a later holder of `mu` reads them (layout.h).
      stripe->holder_shard.store(shard, std::memory_order_relaxed);
      stripe->holder_body.store(body, std::memory_order_relaxed);
    }
    auto* rep = seg->Ptr<DictRep>(body);
    DictShardRep* shard_rep = &rep->shards[shard];
    view_ = Locked{seg,
                   rep,
                   shard_rep,
                   seg->Ptr<DictTableRep>(shard_rep->table.load(std::memory_order_acquire)),
                   StripeLockWord(seg->Handle(stripe)),
                   shard};
    return Status::OK();
  }

  void Unlock() {
    if (stripe_ == nullptr) return;
    stripe_->holder_body.store(0, std::memory_order_relaxed);
    stripe_->mu.unlock();
    stripe_ = nullptr;
  }

  // The dict as seen under the lock. REQUIRES: Lock succeeded.
  const Locked& view() const { return view_; }

 private:
  DictStripeRep* stripe_ = nullptr;
  Locked view_{};
};

// Takes and releases each stripe of the dict `body` (repairing dead holders): afterwards no
// writer is inside any of its shards, and none enters again once the dict is not live. False if
// a holder kept a stripe past the wait (a stopped process): the body must then leak, not be freed
// under it.
bool QuiesceShards(Segment::Impl* seg, uint64_t body) {
  constexpr std::chrono::seconds kPatience{10};  // Writers hold a stripe for microseconds.
  auto* rep = seg->Ptr<DictRep>(body);
  bool quiet = true;
  for (uint32_t shard = 0; shard < rep->shard_count(); ++shard) {
    DictStripeRep* stripe = StripeFor(seg, body, shard);
    if (!LockStripe(seg, stripe, kPatience)) {
      quiet = false;
      continue;
    }
    stripe->mu.unlock();
  }
  return quiet;
}

struct Probe {
  int64_t found = -1;  // Slot holding the key (maybe expired).
  int64_t free = -1;   // First tombstone or empty slot on the key's chain: where it would go.
};

// a == b without string_view's out-of-line compare (GCC keeps it a call): the probe's hot path.
inline bool SameBytes(std::string_view a, std::string_view b) {
  return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size()) == 0);
}

Probe FindLocked(const Locked& d, std::string_view key, uint64_t hash) {
  Probe probe;
  uint64_t pos = d.home(hash);
  for (uint64_t n = 0; n < d.table->capacity; ++n, pos = (pos + 1) & d.mask()) {
    uint64_t word = d.slot(pos).blob.load(std::memory_order_acquire);
    if (!IsBlob(word)) {
      if (probe.free < 0) probe.free = static_cast<int64_t>(pos);
      if (word == kNullHandle) return probe;  // End of the chain.
      continue;
    }
    if (d.slot(pos).hash_tag.load(std::memory_order_relaxed) != DictHashTag(hash)) continue;
    const DictEntryBlob* b = d.blob(word);
    if (b->hash == hash && SameBytes(b->key(), key)) {
      probe.found = static_cast<int64_t>(pos);
      return probe;
    }
  }
  return probe;
}

// Whether slot `pos`'s entry names a keyspace's list or hash (DictRep::names_aggregates).
bool NamesAggregateLocked(const Locked& d, uint64_t pos) {
  return d.rep->KeptWhenExpired(d.blob(d.slot(pos).blob.load())->content_type());
}

// The live entry a probe found, or nullptr when absent or expired.
const DictEntryBlob* LiveBlob(const Locked& d, const Probe& probe, int64_t now_ms) {
  if (probe.found < 0) return nullptr;
  const DictEntryBlob* b = d.blob(d.slot(static_cast<uint64_t>(probe.found)).blob.load());
  return b->expired(now_ms) ? nullptr : b;
}

void Account(const Locked& d, uint64_t word, int sign) {
  DictShardRep* rep = d.shard;
  auto add = [sign](std::atomic<uint64_t>& counter, uint64_t amount) {
    if (sign > 0) {
      AddOwned(counter, amount);  // Under the shard's lock; derived (RepairShardLocked).
    } else {
      SubOwned(counter, amount);
    }
  };
  if (word == kTombstoneHandle) add(rep->tombstones, 1);
  if (!IsBlob(word)) return;
  add(rep->entries, 1);
  add(rep->bytes, d.blob(word)->charged_bytes());
  if (d.blob(word)->expires_at_ms != 0) add(rep->expiring, 1);
  if (sign > 0 && d.blob(word)->expires_at_ms != 0 && d.rep->may_expire.load() == 0) {
    d.rep->may_expire.store(1);  // Once: the word is read by every operation of every shard.
  }
}

// The derived counts after slot word `old` became `next` (a blob or a marker each).
void AccountReplaceLocked(const Locked& d, uint64_t old, uint64_t next) {
  if (IsBlob(old) && IsBlob(next) &&
      d.blob(old)->charged_bytes() == d.blob(next)->charged_bytes() &&
      d.blob(old)->expires_at_ms == 0 && d.blob(next)->expires_at_ms == 0) {
    return;  // A rewrite of the same size without expiry (the common overwrite): counts unchanged.
  }
  Account(d, old, -1);
  Account(d, next, +1);
}

// Publishes `next` (a blob or a marker) into slot `pos` and keeps the derived counts. The
// replaced blob is the writer's garbage until its ReleaseGarbage.
void PublishSlotLocked(const Locked& d, CowWriter* writer, uint64_t pos, uint64_t next) {
  AccountReplaceLocked(d, writer->PublishLocked(d.entry, &d.slot(pos).blob, next), next);
}

// Removes the entry at `pos`. A slot whose successor is empty ends no other key's chain, so it
// can become empty rather than a tombstone.
void RemoveLocked(const Locked& d, CowWriter* writer, uint64_t pos) {
  bool chain_ends = d.slot((pos + 1) & d.mask()).blob.load() == kNullHandle;
  d.slot(pos).ref_bit.store(0, std::memory_order_relaxed);
  PublishSlotLocked(d, writer, pos, chain_ends ? kNullHandle : kTombstoneHandle);
}

// Tables are rebuilt (grown, or cleared of tombstones) past 3/4 use, and never filled past 7/8.
bool NeedsRebuildLocked(const Locked& d) {
  uint64_t used = d.shard->entries.load() + d.shard->tombstones.load();
  return used * 4 > d.table->capacity * 3;
}
bool TooFullToInsertLocked(const Locked& d, const Probe& probe) {
  if (probe.found >= 0) return false;  // Replaces in place.
  uint64_t used = d.shard->entries.load() + d.shard->tombstones.load() + 1;
  return probe.free < 0 || used * 8 > d.table->capacity * 7;
}
uint64_t CapacityFor(uint64_t entries) {
  uint64_t capacity = kMinCapacity;
  while (capacity < (entries + 1) * 2) capacity *= 2;
  return capacity;
}

// The wall clock for an operation on the dict, or 0 (before every expiry) when no entry of it can
// have expired: most dicts never use a TTL, and then no operation reads the clock.
int64_t NowFor(const DictRep* rep) {
  return rep->default_ttl_ms > 0 || rep->may_expire.load(std::memory_order_relaxed) != 0
             ? WallNowMs()
             : 0;
}

// `now_ms` is NowFor's answer, so it may be 0 and is read here when a TTL needs it.
int64_t ExpiryFor(int64_t ttl_ms, const DictRep* rep, int64_t now_ms) {
  int64_t ttl = ttl_ms > 0 ? ttl_ms : rep->default_ttl_ms;
  if (ttl <= 0) return 0;
  return (now_ms != 0 ? now_ms : WallNowMs()) + ttl;
}

// Brings bytes + incoming - outgoing under max_bytes, evicting with CLOCK when allowed. Slot
// `keep` (the entry being replaced) is never evicted. Evictions publish tombstones (never empty
// slots), so probes taken before stay valid. REQUIRES: incoming <= max_bytes.
Status MakeRoomLocked(const Locked& d, CowWriter* writer, uint64_t outgoing, uint64_t incoming,
                      int64_t keep, int64_t now_ms) {
  uint64_t max = d.rep->max_bytes;
  auto over = [&] { return max != 0 && d.shard->bytes.load() - outgoing + incoming > max; };
  if (!over()) return Status::OK();
  if (d.rep->eviction != static_cast<uint32_t>(DictEviction::kClock)) {
    return Status::OutOfSpace("dict is full: " + std::to_string(d.shard->bytes.load()) + " of " +
                              std::to_string(max) + " bytes used, " + std::to_string(incoming) +
                              " more needed (eviction is off)");
  }
  // Two turns of the hand clear every reference bit, so everything but `keep` is evictable.
  for (uint64_t step = 0; over() && step <= 2 * d.table->capacity; ++step) {
    uint64_t pos = d.shard->clock_hand.load() & d.mask();
    d.shard->clock_hand.store((pos + 1) & d.mask());
    if (static_cast<int64_t>(pos) == keep) continue;
    DictSlot& slot = d.slot(pos);
    uint64_t word = slot.blob.load();
    if (!IsBlob(word)) continue;
    bool expired = d.blob(word)->expired(now_ms);
    if (!expired && slot.ref_bit.load(std::memory_order_relaxed) != 0) {
      slot.ref_bit.store(0, std::memory_order_relaxed);
      continue;
    }
    slot.ref_bit.store(0, std::memory_order_relaxed);
    PublishSlotLocked(d, writer, pos, kTombstoneHandle);
    writer->ReleaseGarbage();
    (expired ? d.shard->expirations : d.shard->evictions).fetch_add(1, std::memory_order_relaxed);
  }
  if (over()) return Status::Internal("dict eviction could not make room");
  return Status::OK();
}

// Publishes the staged blob `handle` for the key `probe` looked up, after making room.
// REQUIRES: !TooFullToInsertLocked(d, probe); the blob is complete but for its version.
Status CommitLocked(const Locked& d, CowWriter* writer, const Probe& probe, uint64_t handle,
                    int64_t now_ms, bool* rebuild_after) {
  auto* blob = d.seg->Ptr<DictEntryBlob>(handle);
  uint64_t incoming = blob->charged_bytes();
  if (d.rep->max_bytes != 0 && incoming > d.rep->max_bytes) {
    return Status::InvalidArgument("entry of " + std::to_string(incoming) +
                                   " bytes is larger than the dict's max_bytes (" +
                                   std::to_string(d.rep->max_bytes) + ")");
  }
  bool replace = probe.found >= 0;
  const DictEntryBlob* old = replace ? d.blob(d.slot(probe.found).blob.load()) : nullptr;
  uint64_t outgoing = replace ? old->charged_bytes() : 0;
  SHM_RETURN_IF_ERROR(MakeRoomLocked(d, writer, outgoing, incoming, probe.found, now_ms));
  if (replace && old->expired(now_ms)) d.shard->expirations.fetch_add(1, std::memory_order_relaxed);
  blob->version = d.NextVersion();
  // A rewrite keeps the key's place; an expired entry's key is a new one.
  blob->order = replace && !old->expired(now_ms) ? old->order : d.NextOrder();
  uint64_t pos = static_cast<uint64_t>(replace ? probe.found : probe.free);
  // A rewrite counts as a use; a new key must be read to earn protection from the hand.
  d.slot(pos).ref_bit.store(replace ? 1 : 0, std::memory_order_relaxed);
  // Before the publish, which releases it to readers without the lock.
  if (!replace) d.slot(pos).hash_tag.store(DictHashTag(blob->hash), std::memory_order_relaxed);
  PublishSlotLocked(d, writer, pos, handle);
  *rebuild_after = !replace && NeedsRebuildLocked(d);
  return Status::OK();
}

// Fills the blob at `handle` with all of the entry but its version and expiry. No lock needed:
// the blob is unreachable until published.
void FillBlob(Segment::Impl* seg, uint64_t handle, std::string_view key, uint64_t hash,
              std::string_view content_type, std::string_view value) {
  auto* blob = new (seg->Ptr<void>(handle)) DictEntryBlob{};
  blob->hash = hash;
  blob->key_len = static_cast<uint32_t>(key.size()) & 0xffffff;  // Validated: limits.h.
  blob->ctype_len = static_cast<uint32_t>(content_type.size()) & 0xff;
  blob->value_len = static_cast<uint32_t>(value.size());
  char* out = blob->bytes();
  for (std::string_view part : {key, content_type, value}) {
    if (!part.empty()) std::memcpy(out, part.data(), part.size());  // Empty views may be null.
    out += part.size();
  }
}

uint64_t BlobSize(std::string_view key, std::string_view content_type, std::string_view value) {
  return sizeof(DictEntryBlob) + key.size() + content_type.size() + value.size();
}

// Allocates and stages (from the writer's cache when it can) a blob for the entry, and fills it.
Status AllocateBlob(CowWriter* writer, Segment::Impl* seg, std::string_view key, uint64_t hash,
                    std::string_view content_type, std::string_view value, uint64_t* handle) {
  SHM_RETURN_IF_ERROR(writer->AllocateStaged(BlobSize(key, content_type, value), handle));
  FillBlob(seg, *handle, key, hash, content_type, value);
  return Status::OK();
}

void CopyOut(const DictEntryBlob* blob, DictValue* value) {
  value->data.assign(blob->value());
  value->content_type.assign(blob->content_type());
  value->version = blob->version;
  value->expires_at_ms = blob->expires_at_ms;
}

Status CheckSetLocked(const DictEntryBlob* live, const SetOptions& options) {
  if (options.mode == SetMode::kAdd && live != nullptr) {
    return Status::AlreadyExists("key already exists (mode add)");
  }
  if (options.mode == SetMode::kReplace && live == nullptr) {
    return Status::NotFound("key does not exist (mode replace)");
  }
  if (options.if_version.has_value()) {
    if (live == nullptr) {
      return Status::Conflict("key does not exist, expected version " +
                              std::to_string(*options.if_version));
    }
    if (live->version != *options.if_version) {
      return Status::Conflict("key has version " + std::to_string(live->version) + ", expected " +
                              std::to_string(*options.if_version));
    }
  }
  return Status::OK();
}

// Copies the field SetOptions::keep_offset/keep_length names from the current entry `live` into
// the staged, unpublished `blob` (so no lock is needed for the blob, only for `live`); Conflict
// when `live` has no such field.
Status KeepFieldLocked(const DictEntryBlob* live, const SetOptions& options, DictEntryBlob* blob) {
  const std::string_view current = live->value();
  const std::string_view value = blob->value();
  if (current.size() < uint64_t{options.keep_offset} + options.keep_length ||
      current.substr(0, options.keep_offset) != value.substr(0, options.keep_offset)) {
    return Status::Conflict("the current value has no field to keep there");
  }
  std::memcpy(blob->bytes() + blob->key_len + blob->ctype_len + options.keep_offset,
              current.data() + options.keep_offset, options.keep_length);
  return Status::OK();
}

// Copies the live slots of `d.table` into the empty table `fresh`. REQUIRES: the lock.
void CopyTableLocked(const Locked& d, DictTableRep* fresh) {
  uint64_t mask = fresh->capacity - 1;
  for (uint64_t i = 0; i < d.table->capacity; ++i) {
    uint64_t word = d.slot(i).blob.load();
    if (!IsBlob(word)) continue;
    uint64_t pos = HomeSlot(d.blob(word)->hash << d.rep->shard_bits, fresh->capacity);
    while (fresh->slots()[pos].blob.load(std::memory_order_relaxed) != kNullHandle) {
      pos = (pos + 1) & mask;
    }
    fresh->slots()[pos].blob.store(word, std::memory_order_relaxed);
    fresh->slots()[pos].ref_bit.store(d.slot(i).ref_bit.load(), std::memory_order_relaxed);
    fresh->slots()[pos].hash_tag.store(d.slot(i).hash_tag.load(), std::memory_order_relaxed);
  }
}

Status AllocateTable(Segment::Impl* seg, uint64_t capacity, uint64_t* handle) {
  if (capacity > kMaxCapacity) {
    return Status::OutOfSpace("dict has too many entries (table limit " +
                              std::to_string(kMaxCapacity) + " slots)");
  }
  SHM_RETURN_IF_ERROR(seg->Allocate(DictTableRep::AllocationSize(capacity), handle));
  auto* table = new (seg->Ptr<void>(*handle)) DictTableRep{capacity, 0};
  for (uint64_t i = 0; i < capacity; ++i) new (&table->slots()[i]) DictSlot();
  return Status::OK();
}

// Replaces shard `shard`'s table by one sized for its live entries (dropping tombstones) when it
// is past 3/4 use. The new table is allocated outside the lock and filled and published under it.
// REQUIRES: nothing staged in `writer`.
Status RebuildIfNeeded(const ObjectRef& ref, uint32_t shard, CowWriter* writer,
                       uint64_t inserts = 0) {
  Segment::Impl* seg = ref.segment->impl();
  // Past 3/4 use, or (for a transaction) too full to take `inserts` more keys.
  auto needs = [inserts](const Locked& d) {
    uint64_t used = d.shard->entries.load() + d.shard->tombstones.load() + inserts;
    return NeedsRebuildLocked(d) || (inserts != 0 && used * 8 > d.table->capacity * 7);
  };
  for (int attempt = 0; attempt < kMaxWriteAttempts; ++attempt) {
    uint64_t capacity = 0;
    {
      ShardGuard guard;
      SHM_RETURN_IF_ERROR(guard.Lock(ref, shard));
      const Locked& d = guard.view();
      if (!needs(d)) return Status::OK();
      uint64_t entries = d.shard->entries.load();
      capacity =
          CapacityFor(entries + inserts + entries / 4 + 1);  // Headroom for inserts meanwhile.
    }
    uint64_t handle = 0;
    SHM_RETURN_IF_ERROR(AllocateTable(seg, capacity, &handle));
    writer->Stage(handle);
    ShardGuard guard;
    Status s = guard.Lock(ref, shard);
    if (!s.ok()) {
      writer->DiscardStaged();
      return s;
    }
    const Locked& d = guard.view();
    if (!needs(d)) {
      guard.Unlock();
      writer->DiscardStaged();
      return Status::OK();
    }
    if ((d.shard->entries.load() + inserts + 1) * 4 >
        capacity * 3) {  // Outgrown meanwhile: size again.
      guard.Unlock();
      writer->DiscardStaged();
      continue;
    }
    CopyTableLocked(d, seg->Ptr<DictTableRep>(handle));
    writer->PublishLocked(d.entry, &d.shard->table, handle);
    d.shard->tombstones.store(0);
    d.shard->clock_hand.store(0);
    guard.Unlock();
    writer->ReleaseGarbage();  // The old slot array; the blobs now belong to the new table.
    return Status::OK();
  }
  return Status::Timeout("dict is growing faster than it can be rebuilt; try again");
}

// After the death of a shard's lock holder (intents resolved): recompute what is derived from
// the shard's table.
void RepairShardLocked(Segment::Impl* seg, DictRep* rep, uint32_t shard_index) {
  if (shard_index >= rep->shard_count()) return;
  DictShardRep* shard = &rep->shards[shard_index];
  auto* table = seg->Ptr<DictTableRep>(shard->table.load());
  Locked d{seg, rep, shard, table, 0, shard_index};
  uint64_t entries = 0, bytes = 0, tombstones = 0, expiring = 0, max_seq = 0;
  for (uint64_t i = 0; i < table->capacity; ++i) {
    uint64_t word = d.slot(i).blob.load();
    if (word == kTombstoneHandle) ++tombstones;
    if (!IsBlob(word)) continue;
    ++entries;
    expiring += d.blob(word)->expires_at_ms != 0;
    bytes += d.blob(word)->charged_bytes();
    max_seq = std::max(max_seq, d.blob(word)->version / rep->shard_count());
  }
  shard->entries.store(entries);
  shard->bytes.store(bytes);
  shard->tombstones.store(tombstones);
  shard->expiring.store(expiring);
  if (shard->next_version.load() <= max_seq) shard->next_version.store(max_seq + 1);
  shard->clock_hand.store(shard->clock_hand.load() & d.mask());
}

// The entry lock's owner-death repair: a dict's state is guarded by its shards' stripes, which
// repair their own (SettleStripeLocked); the entry lock guards only its delete and snapshots.
void RepairDictLocked(Segment::Impl*, EntryRep*) {}

// Frees a dict body and every blob it owns, once no writer is inside any of its shards.
void DestroyDict(Segment::Impl* seg, uint64_t body) {
  if (!IsBlob(body)) return;
  if (!QuiesceShards(seg, body)) {
    SHM_LOG(kError) << "a deleted dict's shard lock was held for over 10 s; its memory is left "
                       "allocated (the next rebuild or restart reclaims it)";
    return;
  }
  auto* rep = seg->Ptr<DictRep>(body);
  for (uint32_t shard = 0; shard < rep->shard_count(); ++shard) {
    uint64_t table_handle = rep->shards[shard].table.load();
    if (!IsBlob(table_handle)) continue;
    auto* table = seg->Ptr<DictTableRep>(table_handle);
    for (uint64_t i = 0; i < table->capacity; ++i) seg->Free(table->slots()[i].blob.load());
    seg->Free(table_handle);
  }
  seg->Free(body);
}

// A body with its options and shards, each with a table of `capacity` (0: the smallest).
Status AllocateBody(Segment::Impl* seg, const DictOptions& options, uint64_t* body) {
  SHM_RETURN_IF_ERROR(seg->Allocate(sizeof(DictRep), body, alignof(DictRep)));
  auto* rep = new (seg->Ptr<void>(*body)) DictRep();
  rep->max_bytes = options.max_bytes;
  rep->eviction = static_cast<uint32_t>(options.eviction);
  rep->default_ttl_ms = options.default_ttl_ms;
  rep->shard_bits = options.max_bytes == 0 ? kDictShardBits : 0;
  return Status::OK();
}

// Gives every shard of a fresh body a table; on error the caller destroys the body.
Status AllocateShardTables(Segment::Impl* seg, DictRep* rep, uint64_t capacity) {
  for (uint32_t shard = 0; shard < rep->shard_count(); ++shard) {
    uint64_t table = 0;
    SHM_RETURN_IF_ERROR(AllocateTable(seg, capacity, &table));
    rep->shards[shard].table.store(table);
  }
  return Status::OK();
}

Status MakeBody(Segment::Impl* seg, const DictOptions& options, uint64_t* body) {
  SHM_RETURN_IF_ERROR(AllocateBody(seg, options, body));
  Status s = AllocateShardTables(seg, seg->Ptr<DictRep>(*body), kMinCapacity);
  if (!s.ok()) {
    DestroyDict(seg, *body);
    *body = 0;
  }
  return s;
}

struct ListedKey {
  uint64_t hash;
  std::string key;
  uint64_t order = 0;
  std::string value;  // Only for Entries with values.
};

// Collects the live keys starting with `prefix` whose hash is in [from, until), where `until`
// ends a chunk of kListChunk home slots of `from`'s shard; returns `until`, 0 when the chunk
// reaches the end of the hash space. Linear probing never leaves an empty slot between a key's home
// and its slot, so following the last chain to an empty slot finds every key of the chunk.
uint64_t CollectChunkLocked(const Locked& d, uint64_t from, std::string_view prefix, int64_t now_ms,
                            std::vector<ListedKey>* out, bool with_values = false) {
  uint64_t capacity = d.table->capacity;
  uint64_t first = d.home(from);
  uint64_t last = std::min(capacity, first + kListChunk);  // Exclusive.
  uint32_t bits = d.rep->shard_bits;
  uint64_t shard_base = bits == 0 ? 0 : uint64_t{d.shard_index} << (64 - bits);
  uint64_t shard_end =  // The first hash of the next shard, 0 past the last.
      d.shard_index + 1 == d.rep->shard_count() ? 0 : uint64_t{d.shard_index + 1} << (64 - bits);
  uint64_t until = last == capacity
                       ? shard_end
                       : shard_base | (last << (64 - bits - std::countr_zero(capacity)));
  for (uint64_t n = 0; n < capacity; ++n) {
    uint64_t word = d.slot((first + n) & d.mask()).blob.load();
    if (n >= last - first && word == kNullHandle) break;
    if (!IsBlob(word)) continue;
    const DictEntryBlob* b = d.blob(word);
    if (b->hash < from || (until != 0 && b->hash >= until)) continue;
    if (b->expired(now_ms) || !b->key().starts_with(prefix)) continue;
    out->push_back(ListedKey{b->hash, std::string(b->key()), b->order,
                             with_values ? std::string(b->value()) : std::string()});
  }
  return until;
}

// Keeps the first `room` keys of the hash-sorted `chunk` (fewer when the cut would split keys of
// equal hash) and returns the cursor that resumes after them.
uint64_t TakeUpToLimit(std::vector<ListedKey>* chunk, size_t room, bool nothing_yet) {
  uint64_t boundary = (*chunk)[room].hash;
  size_t take = room;
  while (take > 0 && (*chunk)[take - 1].hash == boundary) --take;
  if (take == 0 && nothing_yet) {  // Keys sharing one 64-bit hash: return them all at once.
    while (take < chunk->size() && (*chunk)[take].hash == boundary) ++take;
    boundary += 1;  // 0 after the last hash: the scan is complete.
  }
  chunk->resize(take);
  return boundary;
}

// Snapshot form (snapshots and the rebuild of a segment): options, a bound above every version,
// statistics, then the live entries in insertion order: version, expiry, key, content type,
// value (the order is the entries' order in the snapshot, so the format did not change with it).
// Reads only, each shard under its lock (the caller holds the entry's: lock order entry ->
// stripe).
Status SerializeDictLocked(Segment::Impl* seg, const EntryRep* entry, std::string* out) {
  uint64_t body = entry->body.load();
  auto* rep = seg->Ptr<DictRep>(body);
  int64_t now = WallNowMs();
  std::string entries;
  ByteWriter e(&entries);
  struct Span {
    uint64_t order, offset, length;
  };
  std::vector<Span> spans;  // Where each entry is in `entries`, to write them in order.
  uint64_t count = 0, version_bound = 1;
  uint64_t stats[4] = {entry->unlocked_hits.load(), entry->unlocked_misses.load(), 0, 0};
  for (uint32_t shard = 0; shard < rep->shard_count(); ++shard) {
    DictStripeRep* stripe = StripeFor(seg, body, shard);
    if (!LockStripe(seg, stripe, kDefaultLockTimeout)) return StripeBusy(stripe);
    const DictShardRep& s = rep->shards[shard];
    version_bound = std::max(version_bound, s.next_version.load() * rep->shard_count());
    uint64_t shard_stats[4] = {s.hits.load(), s.misses.load(), s.evictions.load(),
                               s.expirations.load()};
    for (int i = 0; i < 4; ++i) stats[i] += shard_stats[i];
    auto* table = seg->Ptr<DictTableRep>(s.table.load());
    for (uint64_t i = 0; i < table->capacity; ++i) {
      uint64_t word = table->slots()[i].blob.load();
      if (!IsBlob(word)) continue;
      const auto* b = seg->Ptr<DictEntryBlob>(word);
      // An expired list or hash key is kept with its object, for the restored sweep to remove
      // both: skipped, it would leave the object restored and named by no key.
      if (b->expired(now) && !rep->KeptWhenExpired(b->content_type())) continue;
      const uint64_t offset = entries.size();
      e.Put<uint64_t>(b->version);
      e.Put<int64_t>(b->expires_at_ms);
      e.PutBytes(b->key());
      e.PutBytes(b->content_type());
      e.PutBytes(b->value());
      spans.push_back(Span{b->order, offset, entries.size() - offset});
      ++count;
    }
    stripe->mu.unlock();
  }
  std::sort(spans.begin(), spans.end(),
            [](const Span& a, const Span& b) { return a.order < b.order; });
  ByteWriter w(out);
  w.Put<uint64_t>(rep->max_bytes);
  w.Put<uint32_t>(rep->eviction);
  w.Put<int64_t>(rep->default_ttl_ms);
  w.Put<uint64_t>(version_bound);
  for (uint64_t stat : stats) w.Put<uint64_t>(stat);
  w.Put<uint64_t>(count);
  for (const Span& span : spans)
    w.PutRaw(std::string_view(entries).substr(span.offset, span.length));
  return Status::OK();
}

Status MalformedDict(const std::string& what) {
  return Status::InvalidArgument("malformed dict snapshot: " + what);
}

// The unpublished body being filled from a snapshot: its shards as if locked.
Locked RestoreView(Segment::Impl* seg, DictRep* rep, uint32_t shard) {
  DictShardRep* s = &rep->shards[shard];
  return Locked{seg, rep, s, seg->Ptr<DictTableRep>(s->table.load()), 0, shard};
}

struct SnapshotEntry {
  uint64_t version = 0;
  int64_t expires_at_ms = 0;
  std::string_view key, content_type, value;
  uint64_t hash = 0;
};

// Reads and checks one entry of a snapshot whose versions are all below `version_bound`.
Status ReadEntry(ByteReader* r, uint64_t version_bound, SnapshotEntry* entry) {
  if (!r->Get(&entry->version) || !r->Get(&entry->expires_at_ms) || !r->GetBytes(&entry->key) ||
      !r->GetBytes(&entry->content_type) || !r->GetBytes(&entry->value)) {
    return MalformedDict("truncated entry");
  }
  for (const Status& s : {ValidateKey(entry->key), ValidateContentType(entry->content_type),
                          ValidateValue(entry->value)}) {
    if (!s.ok()) return MalformedDict(std::string(s.message()));
  }
  if (entry->version == 0 || entry->version >= version_bound || entry->expires_at_ms < 0) {
    return MalformedDict("entry version or expiry out of range");
  }
  entry->hash = HashKey(entry->key);
  return Status::OK();
}

// Inserts an entry into the unpublished dict `rep`, whose shard tables have room for it, at place
// `order` of the insertion order.
Status RestoreEntry(Segment::Impl* seg, DictRep* rep, const SnapshotEntry& e, uint64_t order) {
  Locked d = RestoreView(seg, rep, rep->ShardOf(e.hash));
  Probe probe = FindLocked(d, e.key, e.hash);
  if (probe.found >= 0) return MalformedDict("duplicate key");
  if (probe.free < 0) return MalformedDict("more entries than announced");
  uint64_t handle = 0;
  SHM_RETURN_IF_ERROR(seg->Allocate(BlobSize(e.key, e.content_type, e.value), &handle));
  FillBlob(seg, handle, e.key, e.hash, e.content_type, e.value);
  auto* blob = seg->Ptr<DictEntryBlob>(handle);
  blob->version = e.version;
  blob->expires_at_ms = e.expires_at_ms;
  blob->order = order;
  d.slot(static_cast<uint64_t>(probe.free)).hash_tag.store(DictHashTag(e.hash));
  d.slot(static_cast<uint64_t>(probe.free)).blob.store(handle);
  Account(d, handle, +1);
  if (d.rep->max_bytes != 0 && d.shard->bytes.load() > d.rep->max_bytes) {
    return MalformedDict("entries exceed max_bytes");
  }
  return Status::OK();
}

// Fills the fresh body `rep` from the entries of a snapshot; on error the caller destroys it.
Status FillDict(Segment::Impl* seg, DictRep* rep, ByteReader* r, uint64_t count,
                uint64_t version_bound) {
  int64_t now = WallNowMs();
  std::vector<SnapshotEntry> entries;
  std::vector<uint64_t> per_shard(rep->shard_count(), 0);
  for (uint64_t i = 0; i < count; ++i) {
    SnapshotEntry e;
    SHM_RETURN_IF_ERROR(ReadEntry(r, version_bound, &e));
    if (e.expires_at_ms != 0 && e.expires_at_ms <= now && !rep->KeptWhenExpired(e.content_type)) {
      continue;  // Expired meanwhile.
    }
    ++per_shard[rep->ShardOf(e.hash)];
    entries.push_back(e);
  }
  if (r->remaining() != 0) return MalformedDict("trailing bytes");
  for (uint32_t shard = 0; shard < rep->shard_count(); ++shard) {
    uint64_t n = per_shard[shard];
    uint64_t table = 0;
    SHM_RETURN_IF_ERROR(AllocateTable(seg, CapacityFor(n + n / 4 + 1), &table));
    rep->shards[shard].table.store(table);
    // New versions, seq * shards + shard, start at the bound.
    rep->shards[shard].next_version.store(version_bound / rep->shard_count() + 1);
  }
  // Snapshots list entries in insertion order (SerializeDictLocked).
  uint64_t order = 1;
  for (const SnapshotEntry& e : entries) SHM_RETURN_IF_ERROR(RestoreEntry(seg, rep, e, order++));
  rep->next_order.store(order);
  return Status::OK();
}

// Builds a body from snapshot bytes, locked by the stripe set `stripe_set` (DictRep). Statistics
// go to shard 0 (they are reported as sums).
Status DeserializeDictBody(Segment::Impl* seg, std::string_view bytes, uint32_t stripe_set,
                           uint64_t* body) {
  *body = 0;
  ByteReader r(bytes);
  uint64_t version_bound = 0, count = 0;
  uint32_t eviction = 0;
  DictOptions options;
  if (!r.Get(&options.max_bytes) || !r.Get(&eviction) || !r.Get(&options.default_ttl_ms) ||
      !r.Get(&version_bound)) {
    return MalformedDict("truncated header");
  }
  options.eviction = static_cast<DictEviction>(eviction);
  Status s = ValidateOptions(options);
  if (!s.ok()) return MalformedDict(std::string(s.message()));
  uint64_t stats[4] = {};
  for (uint64_t& stat : stats) {
    if (!r.Get(&stat)) return MalformedDict("truncated statistics");
  }
  constexpr uint64_t kMinEntryBytes = 2 * 8 + 3 * 8 + 1;
  if (!r.Get(&count) || count > r.remaining() / kMinEntryBytes) {
    return MalformedDict("entry count out of range");
  }
  SHM_RETURN_IF_ERROR(AllocateBody(seg, options, body));
  auto* rep = seg->Ptr<DictRep>(*body);
  rep->stripe_set = stripe_set;  // Unpublished yet: no lock can be held on it.
  DictShardRep& first = rep->shards[0];
  std::atomic<uint64_t>* targets[4] = {&first.hits, &first.misses, &first.evictions,
                                       &first.expirations};
  for (int i = 0; i < 4; ++i) targets[i]->store(stats[i]);
  s = FillDict(seg, rep, &r, count, version_bound);
  if (!s.ok()) {
    DestroyDict(seg, *body);
    *body = 0;
  }
  return s;
}

Status DeserializeDict(Segment::Impl* seg, std::string_view bytes, uint64_t* body) {
  return DeserializeDictBody(seg, bytes, 0, body);
}

void DictUsage(Segment::Impl* seg, const EntryRep* entry, ObjectInfo* info) {
  // The DictRep lives as long as the object (only its tables are replaced); its counts are
  // atomics.
  const auto* rep = seg->Ptr<DictRep>(entry->body.load(std::memory_order_acquire));
  uint64_t bytes = 0, entries = 0;
  for (uint32_t shard = 0; shard < rep->shard_count(); ++shard) {
    bytes += rep->shards[shard].bytes.load(std::memory_order_relaxed);
    entries += rep->shards[shard].entries.load(std::memory_order_relaxed);
  }
  info->size_bytes = bytes;
  info->length = static_cast<int64_t>(entries);
}

}  // namespace

Status SettleDictStripe(Segment::Impl* seg, uint64_t stripe_word) {
  auto* stripe = seg->Ptr<DictStripeRep>(StripeHandleOf(stripe_word));
  if (!LockStripe(seg, stripe, kDefaultLockTimeout)) return StripeBusy(stripe);
  ResolveIntentsLocked(seg, stripe_word);
  stripe->mu.unlock();
  return Status::OK();
}

const KindOps kDictOps = {RepairDictLocked, DestroyDict, SerializeDictLocked, DeserializeDict,
                          DictUsage};

namespace {
// A keyspace's body is a dict's, locked by the keyspace stripes (Root::keyspace_stripes).
Status DeserializeKeyspace(Segment::Impl* seg, std::string_view bytes, uint64_t* body) {
  return DeserializeDictBody(seg, bytes, 1, body);
}
}  // namespace

const KindOps kKeyspaceOps = {RepairDictLocked, DestroyDict, SerializeDictLocked,
                              DeserializeKeyspace, DictUsage};

// ---------------------------------------------------------------------------------------------
// Dict

Status Dict::Open(Segment* segment, std::string_view name, OpenMode mode,
                  const DictOptions& options, Dict* result, bool* created) {
  return OpenKind(segment, name, ObjectKind::kDict, mode, options, result, created);
}

Status Dict::OpenKind(Segment* segment, std::string_view name, ObjectKind kind, OpenMode mode,
                      const DictOptions& options, Dict* result, bool* created) {
  SHM_RETURN_IF_ERROR(ValidateOptions(options));
  return CatchAtBoundary("dict", [&] {
    Segment::Impl* seg = segment->impl();
    Registry::OpenSpec spec;
    spec.kind = kind;
    spec.mode = mode;
    spec.created = created;
    spec.make_body = [&](uint64_t* body) {
      SHM_RETURN_IF_ERROR(MakeBody(seg, options, body));
      if (kind == ObjectKind::kKeyspace) seg->Ptr<DictRep>(*body)->stripe_set = 1;
      return Status::OK();
    };
    ObjectRef ref;
    SHM_RETURN_IF_ERROR(segment->registry().Open(name, spec, &ref));
    *result = Dict(ref);
    return Status::OK();
  });
}

// ---------------------------------------------------------------------------------------------
// Get without the lock.
//
// A hit is answered as an optimistic reader: follow the committed words (body, table, slots, blob)
// as they are, copy the entry out, and keep the answer only if nothing that was read can have been
// freed meanwhile. Blobs and tables are immutable once published and every free of one first bumps
// the entry's reclaim_seq (CowWriter::ReleaseGarbage; the manager's recovery of a dead writer); a
// delete of the dict makes the entry not live before it frees the body. Until that final check the
// words read may come from a freed and reused blob, so every handle and length is bounds-checked
// before it is followed and every loop is bounded.
//
// A miss is answered the same way when the chain from the key's home slot ends (an empty slot)
// before the key. That is sound because, under the lock, every store keeps this invariant: every
// slot from a key's home slot up to the key's own is non-empty (an insert fills an empty slot or
// tombstone; a remove empties a slot only when its successor is empty, else leaves a tombstone;
// keys never move within a table, and a rebuild fills a fresh table that readers of the old one
// never see changing). So a key present for the whole read is found, and an empty slot before it
// means it was absent at some moment of the read. Anything else (an expired entry, a CLOCK
// reference bit still to set, a failed check) takes the locked path, which removes expired entries
// and sets reference bits. ThreadSanitizer would report the racy reads of a discarded attempt, so
// its builds always take the lock.
namespace {

// What a read without the lock concluded.
enum class LockFreeRead { kHit, kAbsent, kUnsure };

constexpr uint64_t kMaxTableCapacity = uint64_t{1} << 40;

// std::has_single_bit is a libgcc call (__popcountdi2) on a baseline x86-64 build, and every read
// without the lock checks its table's capacity.
constexpr bool IsPowerOfTwo(uint64_t n) { return n != 0 && (n & (n - 1)) == 0; }

// Looks for `key` on the chain from its home slot: kHit with the blob (*found) and its header as
// read once (a freed blob's header may change under us, so only `*header` is trusted for
// lengths), its slot and where it is (*found_at), kAbsent when the chain ends first, kUnsure when
// the words read make no sense, which only a concurrent free can cause.
LockFreeRead FindWithoutLock(Segment::Impl* seg, const DictRep* rep, std::string_view key,
                             uint64_t hash, DictEntryBlob* header, const DictEntryBlob** found,
                             const DictSlot** found_slot, DictTxSlotHint* found_at) {
  uint32_t bits = rep->shard_bits;
  if (bits != 0 && bits != kDictShardBits) return LockFreeRead::kUnsure;
  uint64_t table_handle = rep->shards[rep->ShardOf(hash)].table.load(std::memory_order_acquire);
  if (!seg->Contains(table_handle, sizeof(DictTableRep))) return LockFreeRead::kUnsure;
  const auto* table = seg->Ptr<DictTableRep>(table_handle);
  const uint64_t capacity = table->capacity;
  if (capacity < 2 || capacity > kMaxTableCapacity || !IsPowerOfTwo(capacity) ||
      !seg->Contains(table_handle, DictTableRep::AllocationSize(capacity))) {
    return LockFreeRead::kUnsure;
  }
  const DictSlot* slots = const_cast<DictTableRep*>(table)->slots();
  uint64_t pos = HomeSlot(hash << bits, capacity);
  for (uint64_t n = 0; n < capacity; ++n, pos = (pos + 1) & (capacity - 1)) {
    uint64_t word = slots[pos].blob.load(std::memory_order_acquire);
    if (word == kNullHandle) return LockFreeRead::kAbsent;
    if (!IsBlob(word)) continue;
    if (slots[pos].hash_tag.load(std::memory_order_relaxed) != DictHashTag(hash)) continue;
    if (!seg->Contains(word, sizeof(DictEntryBlob)) || word % alignof(DictEntryBlob) != 0) {
      return LockFreeRead::kUnsure;
    }
    const auto* blob = seg->Ptr<DictEntryBlob>(word);
    // Five relaxed word loads, unrolled by hand: GCC makes a 40-byte memcpy a `rep movsl` and
    // keeps a copy loop a loop through the stack; either cost about a third of this read (start-up,
    // store-forwarding stalls). Blobs are 16-byte aligned.
    const auto* source = reinterpret_cast<const uint64_t*>(blob);
    const uint64_t words[] = {__atomic_load_n(&source[0], __ATOMIC_RELAXED),
                              __atomic_load_n(&source[1], __ATOMIC_RELAXED),
                              __atomic_load_n(&source[2], __ATOMIC_RELAXED),
                              __atomic_load_n(&source[3], __ATOMIC_RELAXED),
                              __atomic_load_n(&source[4], __ATOMIC_RELAXED)};
    static_assert(sizeof(words) == sizeof(DictEntryBlob));
    std::memcpy(header, words, sizeof(words));
    if (header->hash != hash || header->key_len != key.size()) continue;
    if (header->ctype_len > Dict::kMaxContentType || header->value_len > Dict::kMaxValue ||
        !seg->Contains(word, header->charged_bytes())) {
      return LockFreeRead::kUnsure;
    }
    if (std::memcmp(blob->bytes(), key.data(), key.size()) != 0) continue;
    *found = blob;
    *found_slot = &slots[pos];
    *found_at = DictTxSlotHint{table_handle, pos, word};
    return LockFreeRead::kHit;
  }
  return LockFreeRead::kUnsure;  // A full table: not a state a writer leaves.
}

// Lock-free hits and misses are statistics. An add per read would make every reader of a dict
// write a line of the entry that all of them read, so readers in several processes would take
// it from each other on every read. Each thread tallies its reads of one dict and adds them in
// batches of kTallyBatch. A tally is added only through the mapping it was made in (the caller's
// Segment::Impl instance, which the client gate keeps mapped during the call), by the process
// that made it (a fork child's copy is dropped), to the incarnation it counted: otherwise it is
// dropped, at most kTallyBatch - 1 reads per thread and dict. Stats() adds the calling thread's.
constexpr uint32_t kTallyBatch = 64;

struct UnlockedReadTally {
  uint64_t instance_id = 0;
  pid_t pid = 0;
  EntryRep* entry = nullptr;
  uint64_t incarnation = 0;
  uint32_t hits = 0;
  uint32_t misses = 0;
};
thread_local UnlockedReadTally t_tally;

void AddTally(UnlockedReadTally* tally) {
  if (tally->entry->incarnation.load(std::memory_order_relaxed) == tally->incarnation) {
    if (tally->hits != 0) tally->entry->unlocked_hits.fetch_add(tally->hits);
    if (tally->misses != 0) tally->entry->unlocked_misses.fetch_add(tally->misses);
  }
  tally->hits = tally->misses = 0;
}

// Adds this thread's tally of `ref` to its entry now (Stats: a thread sees its own reads).
void AddTallyOf(const ObjectRef& ref) {
  UnlockedReadTally& tally = t_tally;
  if (tally.entry == ref.entry && tally.instance_id == ref.segment->impl()->instance_id() &&
      tally.pid == CurrentPid()) {
    AddTally(&tally);
  }
}

[[maybe_unused]] void CountUnlockedRead(const ObjectRef& ref, bool hit) {
  UnlockedReadTally& tally = t_tally;
  const uint64_t instance_id = ref.segment->impl()->instance_id();
  if (tally.entry != ref.entry || tally.incarnation != ref.incarnation ||
      tally.instance_id != instance_id || tally.pid != CurrentPid()) {
    // Another dict's tally: its entry is reachable only through this same, live mapping.
    if (tally.entry != nullptr && tally.instance_id == instance_id && tally.pid == CurrentPid()) {
      AddTally(&tally);
    }
    tally = UnlockedReadTally{instance_id, CurrentPid(), ref.entry, ref.incarnation, 0, 0};
  }
  ++(hit ? tally.hits : tally.misses);
  if (tally.hits + tally.misses >= kTallyBatch) AddTally(&tally);
}

// kHit (the entry copied to *value) or kAbsent when the read was not disturbed; kUnsure for
// anything the locked path must answer.
// *seen gets where the entry was (a transaction's hint for its commit, DictTxSlotHint).
LockFreeRead TryGetWithoutLock(const ObjectRef& ref, std::string_view key, uint64_t hash,
                               DictReader* reader, Status* taken, DictTxSlotHint* seen) {
#if defined(__SANITIZE_THREAD__)
  return LockFreeRead::kUnsure;
#else
  Segment::Impl* seg = ref.segment->impl();
  uint64_t body = ref.entry->body.load(std::memory_order_acquire);
  const DictRep* rep = DictRepIfPlausible(seg, body);
  if (rep == nullptr) return LockFreeRead::kUnsure;
  // The shard's stripe is named by the body handle and the hash: if the body was freed and
  // reused meanwhile, IsCurrent below fails, whatever stripe this read.
  const DictStripeRep* stripe = StripeFor(seg, body, rep->ShardOf(hash) % kDictShards);
  const uint64_t seq = stripe->reclaim_seq.load(std::memory_order_seq_cst);
  if (!IsCurrent(ref) || ref.entry->body.load(std::memory_order_seq_cst) != body) {
    return LockFreeRead::kUnsure;
  }
  DictEntryBlob header;
  const DictEntryBlob* blob = nullptr;
  const DictSlot* slot = nullptr;
  DictTxSlotHint at;
  const LockFreeRead read = FindWithoutLock(seg, rep, key, hash, &header, &blob, &slot, &at);
  if (read == LockFreeRead::kUnsure) return read;
  if (read == LockFreeRead::kHit) {
    if (rep->eviction == static_cast<uint32_t>(DictEviction::kClock) &&
        slot->ref_bit.load(std::memory_order_relaxed) == 0) {
      return LockFreeRead::kUnsure;
    }
    if (header.expires_at_ms != 0 && header.expired(WallNowMs())) return LockFreeRead::kUnsure;
    // Lengths from the header as read once: a freed blob's may change under us.
    const char* bytes = blob->bytes() + header.key_len;
    *taken = reader->Take(std::string_view(bytes + header.ctype_len, header.value_len),
                          std::string_view(bytes, header.ctype_len), header.version,
                          header.expires_at_ms);
    if (!taken->ok()) return LockFreeRead::kUnsure;
  }
  // A transaction commit holds the stripe: what was read may be one side of it. The lock waits
  // for the commit to be whole. Loaded after the slot (acquire), so a reader that saw a
  // transaction's entry sees the mark until every share of it is applied.
  if (stripe->tx_record.load(std::memory_order_relaxed) != 0) return LockFreeRead::kUnsure;
  std::atomic_thread_fence(std::memory_order_acquire);
  if (stripe->reclaim_seq.load(std::memory_order_seq_cst) != seq || !IsCurrent(ref) ||
      ref.entry->body.load(std::memory_order_seq_cst) != body) {
    return LockFreeRead::kUnsure;
  }
  CountUnlockedRead(ref, read == LockFreeRead::kHit);
  if (seen != nullptr) *seen = at;
  return read;
#endif
}

// The home slot of `hash` in its shard's table, or nullptr when the words read make no sense (a
// concurrent free). Used by Prefetch, where a wrong slot costs a useless load and nothing else.
const DictSlot* HomeSlotWithoutLock(Segment::Impl* seg, const DictRep* rep, uint64_t hash) {
  const uint32_t bits = rep->shard_bits;
  if (bits != 0 && bits != kDictShardBits) return nullptr;
  const uint64_t table_handle =
      rep->shards[rep->ShardOf(hash)].table.load(std::memory_order_relaxed);
  if (!seg->Contains(table_handle, sizeof(DictTableRep))) return nullptr;
  auto* table = seg->Ptr<DictTableRep>(table_handle);
  const uint64_t capacity = table->capacity;
  if (capacity < 2 || capacity > kMaxTableCapacity || !IsPowerOfTwo(capacity) ||
      !seg->Contains(table_handle, DictTableRep::AllocationSize(capacity))) {
    return nullptr;
  }
  return &table->slots()[HomeSlot(hash << bits, capacity)];
}

// The rep of ref's dict for prefetch hints, read without the lock: nullptr for a stale handle
// (its body may be another kind's) or an implausible body.
const DictRep* RepForHints(const ObjectRef& ref) {
  if (!ref.valid() || !IsCurrent(ref)) return nullptr;
  return DictRepIfPlausible(ref.segment->impl(), ref.entry->body.load(std::memory_order_acquire));
}

// Starts loading, for a write of the key of `hash`, the slot its probe looks at first (for
// write: the commit stores into it), so that it arrives while the new entry is filled rather
// than under the shard's lock; PrefetchEntry then does the same for the entry that slot names.
// Hints: reads only, and a stale handle or a concurrent writer makes them load the wrong lines.
const DictSlot* PrefetchHomeSlot(const ObjectRef& ref, uint64_t hash) {
#if !defined(__SANITIZE_THREAD__)  // Its reads race with writers by design.
  const DictRep* rep = RepForHints(ref);
  const DictSlot* slot =
      rep == nullptr ? nullptr : HomeSlotWithoutLock(ref.segment->impl(), rep, hash);
  if (slot != nullptr) PrefetchForWrite(slot);
  return slot;
#else
  (void)ref;
  (void)hash;
  return nullptr;
#endif
}
// Starts loading the entry `slot` names, if any (Dict::Prefetch's second pass too).
void PrefetchEntry(Segment::Impl* seg, const DictSlot* slot) {
  if (slot == nullptr) return;
  const uint64_t word = slot->blob.load(std::memory_order_relaxed);
  if (IsBlob(word) && seg->Contains(word, sizeof(DictEntryBlob))) {
    __builtin_prefetch(seg->Ptr<DictEntryBlob>(word));
  }
}

}  // namespace

namespace {

// Dict::Read of a key whose hash is known (DictTxRead: a transaction hashed it already). *seen
// (may be null) gets where a hit was found.
Status ReadHashed(const ObjectRef& ref, std::string_view key, uint64_t hash, DictReader* reader,
                  DictTxSlotHint* seen = nullptr) {
  SHM_RETURN_IF_ERROR(ValidateKey(key));
  return CatchAtBoundary("dict", [&] {
    if (ref.valid()) {
      Status taken;
      const LockFreeRead read = TryGetWithoutLock(ref, key, hash, reader, &taken, seen);
      if (!taken.ok()) return taken;
      if (read == LockFreeRead::kHit) return Status::OK();
      if (read == LockFreeRead::kAbsent) return Status::NotFound("no such key");
    }
    std::optional<CowWriter> writer;  // Only to remove an expired entry.
    ShardGuard guard;
    SHM_RETURN_IF_ERROR(guard.Lock(ref, ShardFor(ref, hash)));
    const Locked& d = guard.view();
    int64_t now = NowFor(d.rep);
    Probe probe = FindLocked(d, key, hash);
    const DictEntryBlob* live = LiveBlob(d, probe, now);
    if (live == nullptr) {
      d.shard->misses.fetch_add(1, std::memory_order_relaxed);
      if (probe.found >= 0 && !NamesAggregateLocked(d, static_cast<uint64_t>(probe.found)) &&
          writer.emplace(d.seg).ok()) {  // Expired: removed lazily.
        RemoveLocked(d, &*writer, static_cast<uint64_t>(probe.found));
        d.shard->expirations.fetch_add(1, std::memory_order_relaxed);
        guard.Unlock();
        writer->ReleaseGarbage();
      }
      return Status::NotFound("no such key");
    }
    DictSlot& slot = d.slot(static_cast<uint64_t>(probe.found));
    if (slot.ref_bit.load(std::memory_order_relaxed) == 0) {
      slot.ref_bit.store(1, std::memory_order_relaxed);
    }
    d.shard->hits.fetch_add(1, std::memory_order_relaxed);
    if (seen != nullptr) {
      *seen = DictTxSlotHint{d.shard->table.load(std::memory_order_relaxed),
                             static_cast<uint64_t>(probe.found), slot.blob.load()};
    }
    return reader->Take(live->value(), live->content_type(), live->version, live->expires_at_ms);
  });
}

Status GetHashed(const ObjectRef& ref, std::string_view key, uint64_t hash, DictValue* value) {
  DictValueReader reader(value);
  return ReadHashed(ref, key, hash, &reader);
}

}  // namespace

Status DictValueReader::Take(std::string_view data, std::string_view content_type, uint64_t version,
                             int64_t expires_at_ms) {
  if (skip_untyped_data_ && content_type.empty()) {
    value_->data.clear();
  } else {
    value_->data.assign(data);
  }
  value_->content_type.assign(content_type);
  value_->version = version;
  value_->expires_at_ms = expires_at_ms;
  return Status::OK();
}

void BindDictToTransaction(Dict* dict, Transaction* tx) { dict->tx_ = tx; }

Status Dict::Get(std::string_view key, DictValue* value) const {
  if (tx_ != nullptr) return TxHashGet(tx_, Unbound(), key, value);
  return GetHashed(ref_, key, HashKey(key), value);
}

Status Dict::Read(std::string_view key, DictReader* reader) const {
  if (tx_ != nullptr) return TxHashUnsupported();
  return ReadHashed(ref_, key, HashKey(key), reader);
}

void Dict::Prefetch(std::span<const std::string_view> keys) const {
#if !defined(__SANITIZE_THREAD__)  // Its reads race with writers by design.
  const DictRep* rep = RepForHints(ref_);
  if (rep == nullptr) return;
  Segment::Impl* seg = ref_.segment->impl();
  const size_t n = std::min(keys.size(), kMaxPrefetch);
  const DictSlot* slots[kMaxPrefetch];
  // Two passes, so that the loads of one pass are in flight together: the slots, then the
  // entries they name (the key is compared at the entry's start).
  for (size_t i = 0; i < n; ++i) {
    slots[i] =
        keys[i].size() <= kMaxKey ? HomeSlotWithoutLock(seg, rep, HashKey(keys[i])) : nullptr;
    if (slots[i] != nullptr) __builtin_prefetch(slots[i]);
  }
  for (size_t i = 0; i < n; ++i) PrefetchEntry(seg, slots[i]);
#else
  (void)keys;
#endif
}

Status Dict::Set(std::string_view key, std::string_view value, const SetOptions& options,
                 uint64_t* version) {
  if (tx_ != nullptr) {  // A hash field has no expiry, content type or version to ask for.
    if (options.ttl_ms != 0 || options.if_version.has_value() || !options.content_type.empty() ||
        options.keep_length != 0 || version != nullptr) {
      return TxHashUnsupported();
    }
    return TxHashUpdate(tx_, Unbound(), key, [&](const DictValue* current, DictUpdate* update) {
      if (options.mode == SetMode::kAdd && current != nullptr) {
        return Status::AlreadyExists("key already exists (mode add)");
      }
      if (options.mode == SetMode::kReplace && current == nullptr) {
        return Status::NotFound("key does not exist (mode replace)");
      }
      update->data.assign(value);
      return Status::OK();
    });
  }
  SHM_RETURN_IF_ERROR(ValidateKey(key));
  SHM_RETURN_IF_ERROR(ValidateValue(value));
  SHM_RETURN_IF_ERROR(ValidateContentType(options.content_type));
  SHM_RETURN_IF_ERROR(DictValidateTtl(options.ttl_ms));
  if (uint64_t{options.keep_offset} + options.keep_length > value.size()) {
    return Status::InvalidArgument("the kept field lies outside the value");
  }
  return CatchAtBoundary("dict", [&] { return SetImpl(key, value, options, version); });
}

Status Dict::SetImpl(std::string_view key, std::string_view value, const SetOptions& options,
                     uint64_t* version) {
  if (!ref_.valid()) return Status::InvalidArgument("dict handle is not open");
  Segment::Impl* seg = ref_.segment->impl();
  CowWriter writer(seg);
  if (!writer.ok()) return NoIntentSlot();
  const uint64_t hash = HashKey(key);
  const uint32_t shard = ShardFor(ref_, hash);
  const DictSlot* home = PrefetchHomeSlot(ref_, hash);
  for (int attempt = 0; attempt < kMaxWriteAttempts; ++attempt) {
    uint64_t handle = 0;
    SHM_RETURN_IF_ERROR(
        AllocateBlob(&writer, seg, key, hash, options.content_type, value, &handle));
    if (attempt == 0) PrefetchEntry(seg, home);
    bool rebuild_first = false;
    bool rebuild_after = false;
    {
      ShardGuard guard;
      SHM_RETURN_IF_ERROR(guard.Lock(ref_, shard));  // The writer frees the staged blob.
      const Locked& d = guard.view();
      int64_t now = NowFor(d.rep);
      Probe probe = FindLocked(d, key, hash);
      const DictEntryBlob* live = LiveBlob(d, probe, now);
      SHM_RETURN_IF_ERROR(CheckSetLocked(live, options));
#ifdef SHM_NEGATIVE_CONTROL_IN_PLACE
      // NEGATIVE CONTROL ONLY (scripts/negative-control): overwrite a value of equal size in
      // place instead of copy-on-write, so a writer killed mid-copy leaves it torn. The kill
      // loop must catch that. Never enable this in a real build.
      if (live != nullptr && live->value().size() == value.size()) {
        std::memcpy(const_cast<char*>(live->value().data()), value.data(), value.size());
        if (version != nullptr) *version = live->version;
        return Status::OK();  // ~CowWriter frees the staged blob.
      }
#endif
      rebuild_first = TooFullToInsertLocked(d, probe);
      if (!rebuild_first) {
        auto* blob = seg->Ptr<DictEntryBlob>(handle);
        if (live != nullptr && options.keep_length != 0) {
          SHM_RETURN_IF_ERROR(KeepFieldLocked(live, options, blob));
        }
        blob->expires_at_ms = options.keep_expiry && live != nullptr
                                  ? live->expires_at_ms
                                  : ExpiryFor(options.ttl_ms, d.rep, now);
        SHM_RETURN_IF_ERROR(CommitLocked(d, &writer, probe, handle, now, &rebuild_after));
        if (version != nullptr) *version = blob->version;
      }
    }
    if (rebuild_first) {
      writer.DiscardStaged();
      SHM_RETURN_IF_ERROR(RebuildIfNeeded(ref_, shard, &writer));
      continue;
    }
    writer.ReleaseGarbage();
    // The write is done; a failed rebuild (e.g. segment full) is retried by the next insert.
    if (rebuild_after) RebuildIfNeeded(ref_, shard, &writer);
    return Status::OK();
  }
  return Status::Timeout("dict is being resized by other writers; try again");
}

Status Dict::Update(std::string_view key, DictUpdateRef fn, uint64_t* version) {
  // A view's copy, for callbacks that keep the entry or read it as std::strings.
  auto copied = [&fn](const DictEntryView* current, DictUpdate* update) {
    if (current == nullptr) return fn(nullptr, update);
    const DictValue value = current->ToValue();
    return fn(&value, update);
  };
  return UpdateView(key, copied, version);
}

Status Dict::UpdateView(std::string_view key, DictViewUpdateRef fn, uint64_t* version) {
  SHM_RETURN_IF_ERROR(ValidateKey(key));
  if (tx_ != nullptr) {
    if (version != nullptr) return TxHashUnsupported();  // Not known before the commit.
    // The transaction's entry is its own copy: shown to fn as a view of it.
    auto viewed = [&fn](const DictValue* current, DictUpdate* update) {
      if (current == nullptr) return fn(nullptr, update);
      const DictEntryView view = DictEntryView::Of(*current);
      return fn(&view, update);
    };
    return TxHashUpdate(tx_, Unbound(), key, viewed);
  }
  return CatchAtBoundary("dict", [&] { return UpdateImpl(key, fn, version); });
}

Status Dict::UpdateImpl(std::string_view key, DictViewUpdateRef fn, uint64_t* version) {
  if (!ref_.valid()) return Status::InvalidArgument("dict handle is not open");
  Segment::Impl* seg = ref_.segment->impl();
  // Made when the update turns out to write: one that only reads (the keyspace's commands on a
  // list or hash mostly) claims no intent slot and no blob cache.
  std::optional<CowWriter> lazy_writer;
  auto writer_for = [&]() -> CowWriter* {
    if (!lazy_writer) lazy_writer.emplace(seg);
    return lazy_writer->ok() ? &*lazy_writer : nullptr;
  };
  const uint64_t hash = HashKey(key);
  const uint32_t shard = ShardFor(ref_, hash);
  for (int attempt = 0; attempt < kMaxWriteAttempts; ++attempt) {
    bool rebuild_after = false;
    {
      ShardGuard guard;
      SHM_RETURN_IF_ERROR(guard.Lock(ref_, shard));
      const Locked& d = guard.view();
      int64_t now = NowFor(d.rep);
      Probe probe = FindLocked(d, key, hash);
      if (TooFullToInsertLocked(d, probe)) {
        guard.Unlock();
        CowWriter* writer = writer_for();
        if (writer == nullptr) return NoIntentSlot();
        SHM_RETURN_IF_ERROR(RebuildIfNeeded(ref_, shard, writer));
        continue;
      }
      const DictEntryBlob* live = LiveBlob(d, probe, now);
      DictEntryView current;
      if (live != nullptr) {
        current = {live->value(), live->content_type(), live->version, live->expires_at_ms};
      }
      DictUpdate update;
      if (live == nullptr && probe.found >= 0) {
        const DictEntryBlob* expired =
            d.blob(d.slot(static_cast<uint64_t>(probe.found)).blob.load());
        update.expired_data = expired->value();
        update.expired_content_type = expired->content_type();
      }
      SHM_RETURN_IF_ERROR(fn(live != nullptr ? &current : nullptr, &update));
      if (update.erase) {
        if (version != nullptr) *version = 0;
        if (probe.found < 0) return Status::OK();
        CowWriter* writer = writer_for();
        if (writer == nullptr) return NoIntentSlot();
        if (live == nullptr) d.shard->expirations.fetch_add(1, std::memory_order_relaxed);
        RemoveLocked(d, writer, static_cast<uint64_t>(probe.found));
        guard.Unlock();
        writer->ReleaseGarbage();
        return Status::OK();
      }
      if (!update.write) {
        if (version != nullptr) *version = live != nullptr ? live->version : 0;
        return Status::OK();
      }
      SHM_RETURN_IF_ERROR(ValidateValue(update.data));
      SHM_RETURN_IF_ERROR(ValidateContentType(update.content_type));
      SHM_RETURN_IF_ERROR(DictValidateTtl(update.ttl_ms));
      if (writer_for() == nullptr) return NoIntentSlot();
      // The size depends on the current value, so this blob is allocated under the lock (the
      // allocator's lock is innermost; see the lock order in docs/design.md).
      uint64_t handle = 0;
      SHM_RETURN_IF_ERROR(
          AllocateBlob(&*lazy_writer, seg, key, hash, update.content_type, update.data, &handle));
      auto* blob = seg->Ptr<DictEntryBlob>(handle);
      if (update.expires_at_ms >= 0) {
        blob->expires_at_ms = update.expires_at_ms;  // Account() sets may_expire.
      } else {
        blob->expires_at_ms = update.keep_expiry && live != nullptr
                                  ? live->expires_at_ms
                                  : ExpiryFor(update.ttl_ms, d.rep, now);
      }
      SHM_RETURN_IF_ERROR(CommitLocked(d, &*lazy_writer, probe, handle, now, &rebuild_after));
      if (version != nullptr) *version = blob->version;
    }
    lazy_writer->ReleaseGarbage();
    if (rebuild_after) RebuildIfNeeded(ref_, shard, &*lazy_writer);
    return Status::OK();
  }
  return Status::Timeout("dict is being resized by other writers; try again");
}

Status Dict::SweepExpired(
    uint32_t shard, size_t budget,
    const std::function<void(std::string_view key, const DictValue&)>& removed, size_t* count,
    uint32_t* shards) {
  *count = 0;
  return CatchAtBoundary("dict", [&] {
    if (!ref_.valid()) return Status::InvalidArgument("dict handle is not open");
    CowWriter writer(ref_.segment->impl());
    if (!writer.ok()) return NoIntentSlot();
    ShardGuard guard;
    SHM_RETURN_IF_ERROR(guard.Lock(ref_, shard % kDictShards));
    const Locked& d = guard.view();
    if (shards != nullptr) *shards = d.rep->shard_count();
    if (shard >= d.rep->shard_count() || d.rep->may_expire.load() == 0) return Status::OK();
    const int64_t now = WallNowMs();
    // The sweep's cursor is the shard's clock hand: a keyspace never evicts (no max_bytes).
    uint64_t pos = d.shard->clock_hand.load() & d.mask();
    const uint64_t looks = std::min<uint64_t>(d.table->capacity, 16 * budget);
    for (uint64_t n = 0; n < looks && *count < budget; ++n, pos = (pos + 1) & d.mask()) {
      uint64_t word = d.slot(pos).blob.load();
      if (!IsBlob(word) || !d.blob(word)->expired(now)) continue;
      if (removed) {
        DictValue value;
        CopyOut(d.blob(word), &value);
        removed(d.blob(word)->key(), value);
      }
      d.shard->expirations.fetch_add(1, std::memory_order_relaxed);
      // A tombstone, never an empty slot: this sweep goes on along chains it may be inside.
      PublishSlotLocked(d, &writer, pos, kTombstoneHandle);
      writer.ReleaseGarbage();
      ++*count;
    }
    d.shard->clock_hand.store(pos);
    return Status::OK();
  });
}

Status Dict::Delete(std::string_view key, std::optional<uint64_t> if_version) {
  SHM_RETURN_IF_ERROR(ValidateKey(key));
  if (tx_ != nullptr) {
    if (if_version.has_value()) return TxHashUnsupported();
    return TxHashDelete(tx_, Unbound(), key);
  }
  return CatchAtBoundary("dict", [&] {
    if (!ref_.valid()) return Status::InvalidArgument("dict handle is not open");
    CowWriter writer(ref_.segment->impl());
    if (!writer.ok()) return NoIntentSlot();
    const uint64_t hash = HashKey(key);
    ShardGuard guard;
    SHM_RETURN_IF_ERROR(guard.Lock(ref_, ShardFor(ref_, hash)));
    const Locked& d = guard.view();
    int64_t now = NowFor(d.rep);
    Probe probe = FindLocked(d, key, hash);
    const DictEntryBlob* live = LiveBlob(d, probe, now);
    Status result;
    if (live == nullptr && if_version.has_value()) {
      result =
          Status::Conflict("key does not exist, expected version " + std::to_string(*if_version));
    } else if (live == nullptr) {
      result = Status::NotFound("no such key");
    } else if (if_version.has_value() && live->version != *if_version) {
      return Status::Conflict("key has version " + std::to_string(live->version) + ", expected " +
                              std::to_string(*if_version));
    }
    if (probe.found < 0) return result;
    if (live == nullptr) d.shard->expirations.fetch_add(1, std::memory_order_relaxed);
    RemoveLocked(d, &writer, static_cast<uint64_t>(probe.found));  // Live, or expired: lazily.
    guard.Unlock();
    writer.ReleaseGarbage();
    return result;
  });
}

Status DictValidateTtl(int64_t ttl_ms) {
  if (ttl_ms < 0 || ttl_ms > Dict::kMaxTtlMs) {
    return Status::InvalidArgument("ttl must be between 0 (default) and " +
                                   std::to_string(Dict::kMaxTtlMs) + " ms");
  }
  return Status::OK();
}

Status DictIncrNext(const DictValue* current, int64_t by, int64_t init, int64_t* next) {
  int64_t base = init;
  if (current != nullptr && !ParseInt64(current->data, &base)) {
    return Status::InvalidArgument("value is not a decimal int64, cannot increment it");
  }
  if (!AddInt64(base, by, next)) {
    return Status::InvalidArgument("increment overflow: " + std::to_string(base) + " + " +
                                   std::to_string(by) + " does not fit in int64");
  }
  return Status::OK();
}

Status Dict::Incr(std::string_view key, int64_t by, int64_t init, int64_t ttl_ms, int64_t* result) {
  if (tx_ != nullptr) return TxHashUnsupported();
  SHM_RETURN_IF_ERROR(DictValidateTtl(ttl_ms));
  struct Args {
    int64_t by, init, ttl_ms, next;
  } args{by, init, ttl_ms, 0};
  auto add = [&args](const DictValue* current, DictUpdate* update) {
    SHM_RETURN_IF_ERROR(DictIncrNext(current, args.by, args.init, &args.next));
    if (current != nullptr) {
      update->content_type = current->content_type;
      update->keep_expiry = true;
    } else {
      update->content_type = kDictIncrContentType;
      update->ttl_ms = args.ttl_ms;
    }
    update->data = std::to_string(args.next);
    return Status::OK();
  };
  SHM_RETURN_IF_ERROR(Update(key, add));
  *result = args.next;
  return Status::OK();
}

std::vector<const DictOverlay::Write*> DictOverlay::Appended() const {
  std::vector<const Write*> out;
  for (const auto& [key, write] : writes_) {
    if (!write.erase && write.last != 0) out.push_back(&write);
  }
  std::sort(out.begin(), out.end(),
            [](const Write* a, const Write* b) { return a->last < b->last; });
  return out;
}

namespace {

// Lays `overlay` over one chunk of committed keys whose hashes are in [from, until) (until 0:
// to the end of the hash space): erased keys go, the puts of that range not listed yet come in.
void OverlayChunk(const DictOverlay& overlay, uint64_t from, uint64_t until,
                  std::string_view prefix, std::vector<ListedKey>* chunk) {
  std::erase_if(*chunk, [&](const ListedKey& listed) {
    const DictOverlay::Write* write = overlay.Find(listed.key);
    return write != nullptr && write->erase;
  });
  std::vector<std::string_view> listed;
  listed.reserve(chunk->size());
  for (const ListedKey& k : *chunk) listed.emplace_back(k.key);
  std::sort(listed.begin(), listed.end());
  overlay.ForEachPut([&](const DictOverlay::Write& write) {
    if (write.hash < from || (until != 0 && write.hash >= until)) return;
    if (!write.key.starts_with(prefix)) return;
    if (std::binary_search(listed.begin(), listed.end(), write.key)) return;
    chunk->push_back(ListedKey{write.hash, std::string(write.key)});
  });
}

}  // namespace

Status DictListKeys(const ObjectRef& ref, std::string_view prefix, size_t limit, uint64_t cursor,
                    const DictOverlay* overlay, std::vector<std::string>* keys,
                    uint64_t* next_cursor) {
  return CatchAtBoundary("dict", [&] {
    // Keys come in hash order and the cursor is the next hash to visit, so a rebuild between
    // chunks (or calls) neither repeats nor skips a key.
    uint64_t from = cursor;
    while (true) {
      std::vector<ListedKey> chunk;
      uint64_t until = 0;
      {
        ShardGuard guard;  // Per chunk, so writers interleave with a long scan.
        SHM_RETURN_IF_ERROR(guard.Lock(ref, ShardFor(ref, from)));
        const Locked& d = guard.view();
        until = CollectChunkLocked(d, from, prefix, NowFor(d.rep), &chunk);
      }
      if (overlay != nullptr) OverlayChunk(*overlay, from, until, prefix, &chunk);
      std::sort(chunk.begin(), chunk.end(),
                [](const ListedKey& a, const ListedKey& b) { return a.hash < b.hash; });
      size_t room = limit - keys->size();
      if (chunk.size() > room) {
        *next_cursor = TakeUpToLimit(&chunk, room, keys->empty());
        for (ListedKey& listed : chunk) keys->push_back(std::move(listed.key));
        return Status::OK();
      }
      for (ListedKey& listed : chunk) keys->push_back(std::move(listed.key));
      if (until == 0) return Status::OK();  // The whole hash space is done: next_cursor 0.
      from = until;
      if (keys->size() == limit) {
        *next_cursor = from;
        return Status::OK();
      }
    }
  });
}

Status DictListEntries(const ObjectRef& ref, bool with_values, const DictOverlay* overlay,
                       std::vector<DictItem>* items) {
  return CatchAtBoundary("dict", [&] {
    std::vector<ListedKey> all;
    uint64_t from = 0;
    do {
      ShardGuard guard;  // Per chunk, as ListKeys.
      SHM_RETURN_IF_ERROR(guard.Lock(ref, ShardFor(ref, from)));
      const Locked& d = guard.view();
      from = CollectChunkLocked(d, from, "", NowFor(d.rep), &all, with_values);
    } while (from != 0);
    if (overlay != nullptr) {  // Rewrites in place; erased keys and the ones that go last out.
      std::erase_if(all, [&](ListedKey& listed) {
        const DictOverlay::Write* write = overlay->Find(listed.key);
        if (write == nullptr) return false;
        if (write->erase || write->last != 0) return true;
        if (with_values) listed.value.assign(write->value);
        return false;
      });
    }
    std::sort(all.begin(), all.end(),
              [](const ListedKey& a, const ListedKey& b) { return a.order < b.order; });
    items->reserve(all.size());
    for (ListedKey& listed : all) {
      items->push_back(DictItem{std::move(listed.key), std::move(listed.value)});
    }
    if (overlay != nullptr) {
      for (const DictOverlay::Write* write : overlay->Appended()) {
        items->push_back(
            DictItem{std::string(write->key), with_values ? std::string(write->value) : ""});
      }
    }
    return Status::OK();
  });
}

Status Dict::ListKeys(std::string_view prefix, size_t limit, uint64_t cursor,
                      std::vector<std::string>* keys, uint64_t* next_cursor) const {
  if (prefix.size() > kMaxKey) return Status::InvalidArgument("prefix longer than the key limit");
  if (limit < 1 || limit > kMaxListLimit) {
    return Status::InvalidArgument("limit must be between 1 and " + std::to_string(kMaxListLimit));
  }
  keys->clear();
  *next_cursor = 0;
  if (tx_ != nullptr)
    return TxHashListKeys(tx_, Unbound(), prefix, limit, cursor, keys, next_cursor);
  return DictListKeys(ref_, prefix, limit, cursor, nullptr, keys, next_cursor);
}

Status Dict::Entries(bool with_values, std::vector<DictItem>* items) const {
  items->clear();
  if (tx_ != nullptr) return TxHashEntries(tx_, Unbound(), with_values, items);
  return DictListEntries(ref_, with_values, nullptr, items);
}

Status Dict::Stats(DictStats* stats) const {
  if (tx_ != nullptr) return TxHashStats(tx_, Unbound(), stats);
  return CatchAtBoundary("dict", [&] {
    *stats = DictStats{};
    if (ref_.valid()) AddTallyOf(ref_);
    stats->hits = ref_.valid() ? ref_.entry->unlocked_hits.load() : 0;
    stats->misses = ref_.valid() ? ref_.entry->unlocked_misses.load() : 0;
    for (uint32_t shard = 0;; ++shard) {  // Each shard under its lock, one at a time.
      ShardGuard guard;
      SHM_RETURN_IF_ERROR(guard.Lock(ref_, shard));
      const Locked& d = guard.view();
      stats->hits += d.shard->hits.load();
      stats->misses += d.shard->misses.load();
      stats->evictions += d.shard->evictions.load();
      stats->expirations += d.shard->expirations.load();
      stats->entries += d.shard->entries.load();
      stats->expiring += d.shard->expiring.load();
      stats->bytes += d.shard->bytes.load();
      stats->capacity += d.table->capacity;
      stats->max_bytes = d.rep->max_bytes;
      if (shard + 1 >= d.rep->shard_count()) return Status::OK();
    }
  });
}

Status Dict::GetOptions(DictOptions* options) const {
  ShardGuard guard;  // The options are constant; the lock tells a live dict from a deleted one.
  SHM_RETURN_IF_ERROR(guard.Lock(ref_, 0));
  const Locked& d = guard.view();
  options->max_bytes = d.rep->max_bytes;
  options->eviction = static_cast<DictEviction>(d.rep->eviction);
  options->default_ttl_ms = d.rep->default_ttl_ms;
  return Status::OK();
}

// ---------------------------------------------------------------------------------------------
// What a transaction commit uses (dict_tx.h).

namespace {

// The slot `hint` names when it is in d's current table and still holds the blob it names, else
// -1. Under the lock, that blob is the entry the hint was taken from.
int64_t HintedSlotLocked(const Locked& d, const DictTxSlotHint& hint) {
  if (hint.table == 0 || !IsBlob(hint.blob) ||
      d.shard->table.load(std::memory_order_relaxed) != hint.table ||
      hint.pos >= d.table->capacity || d.slot(hint.pos).blob.load() != hint.blob) {
    return -1;
  }
  return static_cast<int64_t>(hint.pos);
}

// The shard a change names, as if its stripe were locked by ShardGuard.
Locked TxView(Segment::Impl* seg, DictStripeRep* stripe, uint64_t body, uint32_t shard) {
  auto* rep = seg->Ptr<DictRep>(body);
  DictShardRep* shard_rep = &rep->shards[shard];
  return Locked{seg,
                rep,
                shard_rep,
                seg->Ptr<DictTableRep>(shard_rep->table.load(std::memory_order_acquire)),
                StripeLockWord(seg->Handle(stripe)),
                shard};
}

}  // namespace

namespace {

uint64_t KeySetDigestLocked(const Locked& d) {
  const int64_t now_ms = NowFor(d.rep);
  uint64_t sum = 0, count = 0;
  for (uint64_t i = 0; i < d.table->capacity; ++i) {
    const uint64_t word = d.slot(i).blob.load();
    if (!IsBlob(word) || d.blob(word)->expired(now_ms)) continue;
    uint64_t mixed = d.blob(word)->hash + 0x9e3779b97f4a7c15ull;  // splitmix64
    mixed = (mixed ^ (mixed >> 30)) * 0xbf58476d1ce4e5b9ull;
    mixed = (mixed ^ (mixed >> 27)) * 0x94d049bb133111ebull;
    sum += mixed ^ (mixed >> 31);
    ++count;
  }
  return sum + count * 0xd1b54a32d192ed03ull;
}

}  // namespace

Status DictTxKeySetDigests(const ObjectRef& ref, std::vector<uint64_t>* digests) {
  digests->clear();
  return CatchAtBoundary("dict", [&] {
    for (uint32_t shard = 0;; ++shard) {
      ShardGuard guard;
      SHM_RETURN_IF_ERROR(guard.Lock(ref, shard));
      const Locked& d = guard.view();
      digests->push_back(KeySetDigestLocked(d));
      if (shard + 1 >= d.rep->shard_count()) return Status::OK();
    }
  });
}

Status DictTxKeySetDigestLocked(const ObjectRef& ref, const DictTxTarget& target,
                                uint64_t* digest) {
  if (!IsCurrent(ref) || ref.entry->body.load(std::memory_order_acquire) != target.body) {
    return Status::NotFound("object was deleted");
  }
  *digest =
      KeySetDigestLocked(TxView(ref.segment->impl(), target.stripe, target.body, target.shard));
  return Status::OK();
}

Status DictTxLocate(const ObjectRef& ref, std::string_view key, DictTxTarget* target) {
  return DictTxLocate(ref, HashKey(key), target);
}

Status DictTxLocate(const ObjectRef& ref, uint64_t hash, DictTxTarget* target) {
  if (!ref.valid()) return Status::InvalidArgument("handle is not open");
  Segment::Impl* seg = ref.segment->impl();
  const uint64_t body = ref.entry->body.load(std::memory_order_acquire);
  if (!IsCurrent(ref) || body == 0) return Status::NotFound("object was deleted");
  target->hash = hash;
  target->body = body;
  // The body read before IsCurrent: a delete since is caught under the lock (body compared).
  target->shard = seg->Ptr<DictRep>(body)->ShardOf(hash) % kDictShards;
  target->stripe = StripeFor(seg, body, target->shard);
  return Status::OK();
}

bool DictTxLockStripe(Segment::Impl* seg, DictStripeRep* stripe, std::chrono::nanoseconds timeout) {
  return LockStripe(seg, stripe, timeout);
}

Status DictTxReadLocked(const ObjectRef& ref, const DictTxTarget& target, std::string_view key,
                        DictValue* value, bool* found) {
  *found = false;
  if (!IsCurrent(ref) || ref.entry->body.load(std::memory_order_acquire) != target.body) {
    return Status::NotFound("object was deleted");
  }
  if (EntryExpiredNow(ref.entry)) return Status::NotFound("object has expired");
  Segment::Impl* seg = ref.segment->impl();
  const Locked d = TxView(seg, target.stripe, target.body, target.shard);
  const Probe probe = FindLocked(d, key, target.hash);
  const DictEntryBlob* live = LiveBlob(d, probe, NowFor(d.rep));
  if (live == nullptr) return Status::OK();
  CopyOut(live, value);
  *found = true;
  return Status::OK();
}

Status DictTxProbeLocked(const ObjectRef& ref, const DictTxTarget& target, std::string_view key,
                         const DictTxSlotHint* seen, uint64_t seen_version, uint64_t* version,
                         int64_t* expires_at_ms, DictTxSlotHint* at, DictTxHeld* held) {
  *version = 0;
  *expires_at_ms = 0;
  if (at != nullptr) *at = DictTxSlotHint{};
  if (held != nullptr) *held = DictTxHeld{};
  if (!IsCurrent(ref) || ref.entry->body.load(std::memory_order_acquire) != target.body) {
    return Status::NotFound("object was deleted");
  }
  if (EntryExpiredNow(ref.entry)) return Status::NotFound("object has expired");
  Segment::Impl* seg = ref.segment->impl();
  const Locked d = TxView(seg, target.stripe, target.body, target.shard);
  Probe probe;
  const int64_t hinted = seen != nullptr ? HintedSlotLocked(d, *seen) : -1;
  if (hinted >= 0 && d.blob(seen->blob)->version == seen_version) {
    probe.found = hinted;  // The very write the read saw: no other entry has its version.
  } else {
    probe = FindLocked(d, key, target.hash);
  }
  const DictEntryBlob* live = LiveBlob(d, probe, NowFor(d.rep));
  if (held != nullptr && probe.found >= 0) {
    const DictEntryBlob* b = d.blob(d.slot(static_cast<uint64_t>(probe.found)).blob.load());
    *held = {{b->value(), b->content_type(), b->version, b->expires_at_ms}, live == nullptr};
  }
  if (live == nullptr) return Status::OK();
  *version = live->version;
  *expires_at_ms = live->expires_at_ms;
  if (at != nullptr) {
    *at = DictTxSlotHint{d.shard->table.load(std::memory_order_relaxed),
                         static_cast<uint64_t>(probe.found),
                         d.slot(static_cast<uint64_t>(probe.found)).blob.load()};
  }
  return Status::OK();
}

bool DictTxRoomLocked(Segment::Impl* seg, const DictTxTarget& target, uint64_t inserts) {
  const Locked d = TxView(seg, target.stripe, target.body, target.shard);
  const uint64_t used = d.shard->entries.load() + d.shard->tombstones.load() + inserts;
  return used * 8 <= d.table->capacity * 7;
}

Status DictTxGrow(const ObjectRef& ref, uint32_t shard, uint64_t inserts, CowWriter* writer) {
  return RebuildIfNeeded(ref, shard, writer, inserts);
}

int64_t DictTxExpiryLocked(Segment::Impl* seg, const DictTxTarget& target, int64_t ttl_ms) {
  const auto* rep = seg->Ptr<DictRep>(target.body);
  return ExpiryFor(ttl_ms, rep, NowFor(rep));
}

Status DictTxRead(const Dict& dict, std::string_view key, uint64_t hash, DictReader* reader,
                  DictTxSlotHint* seen) {
  return ReadHashed(dict.ref(), key, hash, reader, seen);
}

Status DictTxAllocateBlob(Segment::Impl* seg, CowWriter* writer, std::string_view key,
                          std::string_view content_type, std::string_view value,
                          int64_t expires_at_ms, uint64_t* handle) {
  return DictTxAllocateBlob(seg, writer, key, HashKey(key), content_type, value, expires_at_ms,
                            handle);
}

Status DictTxAllocateBlob(Segment::Impl* seg, CowWriter* writer, std::string_view key,
                          uint64_t hash, std::string_view content_type, std::string_view value,
                          int64_t expires_at_ms, uint64_t* handle) {
  SHM_RETURN_IF_ERROR(writer->AllocateOwned(BlobSize(key, content_type, value), handle));
  FillBlob(seg, *handle, key, hash, content_type, value);
  seg->Ptr<DictEntryBlob>(*handle)->expires_at_ms = expires_at_ms;
  return Status::OK();
}

Status DictTxApplyLocked(Segment::Impl* seg, const TxChangeRep& change, CowWriter* evictor,
                         bool* rebuild_after, const DictTxSlotHint* at) {
  if (rebuild_after != nullptr) *rebuild_after = false;
  auto* stripe = seg->Ptr<DictStripeRep>(change.stripe);
  const Locked d = TxView(seg, stripe, change.body, change.shard);
  auto* blob = seg->Ptr<DictEntryBlob>(change.blob);
  Probe probe;
  probe.found = at != nullptr ? HintedSlotLocked(d, *at) : -1;
  if (probe.found < 0) probe = FindLocked(d, blob->key(), blob->hash);
  uint64_t pos = 0, next = 0;
  if (change.erase != 0) {
    if (probe.found < 0) return Status::OK();  // Absent, or removed before its committer died.
    pos = static_cast<uint64_t>(probe.found);
    next = d.slot((pos + 1) & d.mask()).blob.load() == kNullHandle ? kNullHandle : kTombstoneHandle;
    d.slot(pos).ref_bit.store(0, std::memory_order_relaxed);
  } else {
    const bool replace = probe.found >= 0;
    if (replace && d.slot(static_cast<uint64_t>(probe.found)).blob.load() == change.blob) {
      return Status::OK();  // Applied before its committer died.
    }
    if (!replace && probe.free < 0) return Status::Internal("no room for a committed entry");
    if (evictor != nullptr && d.rep->max_bytes != 0) {
      // Evictions publish tombstones, so the probe stays valid. Past max_bytes at worst when
      // nothing can be evicted (the commit checked the entry fits the bound alone).
      const uint64_t outgoing =
          replace ? d.blob(d.slot(probe.found).blob.load())->charged_bytes() : 0;
      MakeRoomLocked(d, evictor, outgoing, blob->charged_bytes(), probe.found, NowFor(d.rep));
    }
    pos = static_cast<uint64_t>(replace ? probe.found : probe.free);
    blob->version = d.NextVersion();
    const DictEntryBlob* replaced = replace ? d.blob(d.slot(pos).blob.load()) : nullptr;
    // A rewrite keeps the key's place, unless the transaction deleted the key first.
    const bool keep =
        replaced != nullptr && !replaced->expired(NowFor(d.rep)) && blob->order != kDictTxOrderLast;
    blob->order = keep ? replaced->order : d.NextOrder();
    d.slot(pos).ref_bit.store(replace ? 1 : 0, std::memory_order_relaxed);
    if (!replace) d.slot(pos).hash_tag.store(DictHashTag(blob->hash), std::memory_order_relaxed);
    next = change.blob;
  }
  // Plain stores, not CowWriter::PublishLocked: an intent slot would name the record's blob as
  // the dead thread's garbage, while the record (not the slot) decides whether it is live. The
  // replaced blob is freed after readers without the lock are told; a death in between leaks it.
  const uint64_t old = d.slot(pos).blob.load();
  d.slot(pos).blob.store(next, std::memory_order_seq_cst);
  AccountReplaceLocked(d, old, next);
  if (rebuild_after != nullptr && change.erase == 0 && !IsBlob(old)) {
    *rebuild_after = NeedsRebuildLocked(d);  // An insert filled the table past 3/4.
  }
  if (!IsBlob(old)) return Status::OK();
  if (evictor != nullptr) {
    evictor->FreeGarbage(d.entry, old);  // Through its blob cache: no allocator lock.
  } else {
    seg->NoteReclaim(d.entry);
    seg->Free(old);
  }
  return Status::OK();
}

void DictTxRepairShardLocked(Segment::Impl* seg, uint64_t body, uint32_t shard) {
  RepairShardLocked(seg, seg->Ptr<DictRep>(body), shard);
}

void DictTxRebuildIfNeeded(const ObjectRef& ref, uint32_t shard, CowWriter* writer) {
  RebuildIfNeeded(ref, shard, writer);  // A failure is retried by the next insert.
}

Status DictTxHoldAll(const ObjectRef& ref, std::vector<DictStripeRep*>* held, uint64_t* record) {
  if (!ref.valid()) return Status::InvalidArgument("handle is not open");
  if (!t_held_stripes.empty()) return Status::InvalidArgument("this thread holds a batch already");
  Segment::Impl* seg = ref.segment->impl();
  const uint64_t body = ref.entry->body.load(std::memory_order_acquire);
  if (!IsCurrent(ref) || body == 0) return Status::NotFound("object was deleted");
  std::vector<DictStripeRep*> stripes;
  for (uint32_t shard = 0; shard < seg->Ptr<DictRep>(body)->shard_count(); ++shard) {
    stripes.push_back(StripeFor(seg, body, shard));
  }
  std::sort(stripes.begin(), stripes.end());
  stripes.erase(std::unique(stripes.begin(), stripes.end()), stripes.end());
  // A record without changes: readers without the lock see it and take the lock (so they wait
  // for the batch), and a holder's death is settled like a transaction's that did not commit.
  SHM_RETURN_IF_ERROR(seg->Allocate(TxRecordRep::AllocationSize(0), record));
  auto* rec = new (seg->Ptr<void>(*record)) TxRecordRep();
  rec->owner = CurrentPid();
  rec->shares_left.store(static_cast<uint32_t>(stripes.size()));
  for (DictStripeRep* stripe : stripes) {
    if (!LockStripe(seg, stripe, kDefaultLockTimeout)) {
      DictTxReleaseAll(seg, held, *record);
      *record = 0;
      return StripeBusy(stripe);
    }
    stripe->tx_record.store(*record, std::memory_order_seq_cst);
    held->push_back(stripe);
  }
  if (!IsCurrent(ref) || ref.entry->body.load(std::memory_order_acquire) != body) {
    DictTxReleaseAll(seg, held, *record);
    *record = 0;
    return Status::NotFound("object was deleted");
  }
  t_held_stripes = *held;
  return Status::OK();
}

bool DictTxHoldingAll() { return !t_held_stripes.empty(); }

bool DictTxHeldByThisThread(const DictStripeRep* stripe) { return HeldByThisThread(stripe); }

void DictTxReleaseAll(Segment::Impl* seg, std::vector<DictStripeRep*>* held, uint64_t record) {
  t_held_stripes.clear();
  for (auto it = held->rbegin(); it != held->rend(); ++it) {
    (*it)->tx_record.store(0, std::memory_order_seq_cst);
    (*it)->mu.unlock();
  }
  held->clear();
  if (record != 0) seg->Free(record);
}

}  // namespace shm
