#include "shm/transaction.h"

#include <unistd.h>

#include <algorithm>
#include <bit>
#include <charconv>
#include <chrono>
#include <map>
#include <set>
#include <thread>
#include <type_traits>
#include <utility>

#include "boundary.h"
#include "counter_rule.h"
#include "cow.h"
#include "crash_point.h"
#include "dict_tx.h"
#include "futex.h"
#include "keyspace_internal.h"
#include "layout.h"
#include "list_tx.h"
#include "object_guard.h"
#include "segment_impl.h"
#include "shm/integer.h"
#include "shm/log.h"
#include "shm/process_id.h"
#include "transaction_hashes.h"
#include "transaction_lists.h"
#include "transaction_rep.h"

namespace shm {

namespace {

constexpr int kMaxGrowRounds = 8;  // Commits retried after growing a table too full for them.

Status WrongType() {
  return Status::WrongType("Operation against a key holding the wrong kind of value");
}

// How a staged put's expiry is decided at commit, under the lock.
enum class Expiry : uint8_t { kAbsolute, kTtl, kKeep };

// Lookups of a transaction's entries scan them up to this many, then use State::index.
constexpr size_t kScanEntries = 8;

uint64_t MixIdentity(const EntryRep* object, uint64_t incarnation, uint64_t hash) {
  return (hash ^ (reinterpret_cast<uintptr_t>(object) * 0x9e3779b97f4a7c15ull)) + incarnation;
}

}  // namespace

// A transaction's staging. Run builds a fresh Transaction per attempt and a service runs one per
// request, so a State is reused (one spare per thread, see TakeState): its vectors, keys and
// values keep their capacity, and a transaction in the steady state allocates nothing on the heap.
struct Transaction::State {
  // One dict entry (a registry dict's or a keyspace's) this transaction read, wrote or both,
  // identified by its object's incarnation (a recreated object is another) and key.
  struct Entry {
    ObjectRef ref;
    uint64_t hash = 0;  // DictKeyHash(key): the lookup's filter, and where the commit finds it.
    std::string key;
    bool keyspace = false;
    bool read = false;
    uint64_t version = 0;  // Read: 0 absent. For a keyspace key, Keyspace::Version's.
    // Read a keyspace key's list or hash: its version needs the entry's content at the commit
    // (a string's or an absent key's is the entry's own, which a probe checks).
    bool read_aggregate = false;
    DictTxSlotHint seen;  // Read and found: where (the commit checks that slot first).
    // Invariant: a keyspace entry written without being read (a blind overwrite, BlindKeyWrite)
    // replaces whatever the key holds at the commit: the commit finds, under the key's stripe
    // lock, the list or hash the old entry names and deletes it after the commit (a read one's
    // goes to State::orphans at staging instead).
    bool written = false;
    bool erase = false;
    DictValue value;  // Written: what a later read sees (version 0: not yet known).
    Expiry expiry = Expiry::kAbsolute;
    int64_t ttl_ms = 0;
    // A hash field's put that (re)creates it (new, or deleted by this transaction first): its
    // rank among such puts, the order they take at the end of the hash's insertion order.
    // 0: the field keeps its place.
    uint64_t appended = 0;
  };
  // The first `used` are this transaction's; the ones after keep their strings' capacity.
  std::vector<Entry> entries;
  size_t used = 0;
  size_t recent = 0;  // The entry looked up or added last (Lookup).
  // Past kScanEntries entries: open addressing over entry index + 1 (0: empty), by MixIdentity.
  std::vector<uint32_t> index;
  size_t reads = 0;      // Entries read.
  size_t writes = 0;     // Entries written.
  uint64_t appends = 0;  // Hash fields (re)created so far (Entry::appended).

  // Counters by entry: the value read (recorded, checked at commit), the value to leave.
  struct CounterOp {
    ObjectRef ref;
    std::optional<int64_t> read;
    std::optional<int64_t> write;
    int lock_state = 0;  // At commit: 0 free, 1 named in counter_tx, 2 value locked.
  };
  std::vector<CounterOp> counters;  // Few per transaction: looked up by a scan.
  // Lists and hashes to delete once the commit removed or replaced the keys naming them.
  std::vector<std::pair<std::string, KeyType>> orphans;
  // Lists pushed and popped (transaction_lists.h).
  TxLists lists;
  // Hashes of keys whose fields this transaction writes: their keyspace_writes count the commit.
  std::map<std::pair<const EntryRep*, uint64_t>, ObjectRef> hash_writes;
  // Fields in each such hash as this transaction sees them (its key goes with the last one).
  std::map<std::pair<const EntryRep*, uint64_t>, uint64_t> hash_sizes;
  // Lists and hashes this transaction created for new keys: deleted unless it commits.
  std::vector<std::pair<std::string, KeyType>> created;
  // The lists among them (no one else sees one before the commit: replaced in place).
  std::set<std::pair<const EntryRep*, uint64_t>> built_lists;
  bool refilled = false;  // A built list replaced in place by the command running now.
  // List keys it pushed to: reported ready (their blocked pops' turn) once it commits.
  std::vector<std::pair<Keyspace, std::string>> ready;
  size_t staged_bytes = 0;
  // Keyspaces whose keys it listed or counted: the digest of each shard's key set when it did
  // (DictTxKeySetDigests), checked again under the commit's locks (a key added or removed
  // meanwhile is a Conflict).
  struct KeyListing {
    ObjectRef index;
    uint64_t body = 0;
    std::vector<uint64_t> digests;
  };
  std::vector<KeyListing> listings;
  size_t flush_room = 0;     // Operations a flush added to kMaxOps (kMaxFlushKeys).
  bool over_limits = false;  // CheckRoom refused something.

  // The commit's working lists (Committer), kept here for their capacity.
  struct Located {
    DictTxTarget target;
    // Its stripe's place in the lock order: keyspace stripes first, then by address.
    uint64_t lock_rank = 0;
    uint32_t change = 0;  // Written: its index in the record.
    DictTxSlotHint at;    // Where the check under the lock found it (the apply looks there).
  };
  std::vector<Located> located;  // Per entry.
  std::vector<uint32_t> order;   // Entry indices in lock order.
  // One lock a commit takes: the entries order[begin, end) are validated and changed under it.
  struct Share {
    DictStripeRep* stripe;
    bool keyspace;  // A keyspace stripe: taken before every dict stripe (layout.h).
    uint32_t begin;
    uint32_t end;
    bool changes;  // Some entry of it is written.
    bool held;
    bool marked;  // Its stripe's tx_record names the record.
    // Held already by this thread's KeyspaceExclusive: used without locking, and its tx_record
    // gets back the batch's mark (`restore`) instead of 0.
    bool borrowed = false;
    uint64_t restore = 0;
  };
  std::vector<Share> shares;  // In lock order.

  Status CheckRoom(size_t bytes) {
    const size_t list_ops = lists.empty() ? 0 : lists.staged();
    if (reads + writes + counters.size() + list_ops >= kMaxOps + flush_room) {
      over_limits = true;
      return Status::InvalidArgument("transaction has more than " + std::to_string(kMaxOps) +
                                     " operations");
    }
    if (staged_bytes + bytes > kMaxStagedBytes) {
      over_limits = true;
      return Status::InvalidArgument("transaction stages more than " +
                                     std::to_string(kMaxStagedBytes) + " bytes");
    }
    return Status::OK();
  }

  bool empty() const { return used == 0 && counters.empty() && lists.empty() && listings.empty(); }

  void Clear() {
    used = reads = writes = staged_bytes = recent = 0;
    appends = flush_room = 0;
    over_limits = false;
    listings.clear();
    index.clear();
    counters.clear();
    orphans.clear();
    // A tree's clear is an out-of-line call even when empty, and a transaction of dict entries
    // (the common one) leaves these empty; it is cleared twice (Commit, then the destructor).
    if (!lists.empty()) lists.clear();
    if (!hash_writes.empty()) hash_writes.clear();
    if (!hash_sizes.empty()) hash_sizes.clear();
    created.clear();
    if (!built_lists.empty()) built_lists.clear();
    refilled = false;
    ready.clear();
  }

  // The entry of key in ref's dict, or nullptr; *hash gets DictKeyHash(key). The entry looked up
  // last is tried first, without hashing: an operation reads a key, then writes it.
  Entry* Lookup(const ObjectRef& ref, std::string_view key, uint64_t* hash) {
    if (recent < used) {
      Entry& e = entries[recent];
      if (e.ref.entry == ref.entry && e.ref.incarnation == ref.incarnation && e.key == key) {
        *hash = e.hash;
        return &e;
      }
    }
    *hash = DictKeyHash(key);
    Entry* e = Find(ref, *hash, key);
    if (e != nullptr) recent = static_cast<size_t>(e - entries.data());
    return e;
  }

  // The entry of key in ref's dict, or nullptr.
  Entry* Find(const ObjectRef& ref, uint64_t hash, std::string_view key) {
    auto same = [&](const Entry& e) {
      return e.hash == hash && e.ref.entry == ref.entry && e.ref.incarnation == ref.incarnation &&
             e.key == key;
    };
    if (index.empty()) {
      for (size_t i = 0; i < used; ++i) {
        if (same(entries[i])) return &entries[i];
      }
      return nullptr;
    }
    const size_t mask = index.size() - 1;
    for (size_t pos = MixIdentity(ref.entry, ref.incarnation, hash) & mask;;
         pos = (pos + 1) & mask) {
      if (index[pos] == 0) return nullptr;
      if (same(entries[index[pos] - 1])) return &entries[index[pos] - 1];
    }
  }

  // A new entry (REQUIRES: Find answered nullptr), reusing a spare one's strings.
  Entry* Add(const ObjectRef& ref, uint64_t hash, std::string_view key, bool keyspace) {
    if (used == entries.size()) entries.emplace_back();
    recent = used;
    Entry& e = entries[used++];
    e.ref = ref;
    e.hash = hash;
    e.key.assign(key);
    e.keyspace = keyspace;
    e.read = e.written = e.erase = e.read_aggregate = false;
    e.version = 0;
    e.seen = DictTxSlotHint{};
    e.expiry = Expiry::kAbsolute;
    e.ttl_ms = 0;
    e.appended = 0;
    if (!index.empty() && used * 2 <= index.size()) {
      Place(used - 1);
    } else if (used > kScanEntries) {
      Reindex();
    }
    return &e;
  }

 private:
  void Place(size_t i) {
    const Entry& e = entries[i];
    const size_t mask = index.size() - 1;
    size_t pos = MixIdentity(e.ref.entry, e.ref.incarnation, e.hash) & mask;
    while (index[pos] != 0) pos = (pos + 1) & mask;
    index[pos] = static_cast<uint32_t>(i + 1);
  }
  void Reindex() {
    index.assign(std::bit_ceil(used * 4), 0);
    for (size_t i = 0; i < used; ++i) Place(i);
  }
};

namespace {

using State = Transaction::State;

// Up to one spare State per thread (its capacity is what a transaction reuses).
thread_local std::unique_ptr<State> t_spare_state;

std::unique_ptr<State> TakeState() {
  if (t_spare_state != nullptr) return std::move(t_spare_state);
  return std::make_unique<State>();
}

void ReturnState(std::unique_ptr<State> state) {
  if (state == nullptr) return;
  state->Clear();
  if (t_spare_state == nullptr) t_spare_state = std::move(state);
}

// The entry of `key` as this transaction sees it: a staged write, else the committed state (the
// version read is recorded; a second read that differs is a conflict at once). *found false
// when absent. Without `string_bytes`, a keyspace string's committed bytes are not copied (out's
// data is empty then).
Status ViewEntry(State* st, const Dict& dict, bool keyspace, std::string_view key, DictValue* out,
                 bool* found, bool string_bytes = true) {
  uint64_t hash = 0;
  State::Entry* e = st->Lookup(dict.ref(), key, &hash);
  if (e != nullptr && e->written) {
    *found = !e->erase;
    if (*found) *out = e->value;
    return Status::OK();
  }
  SHM_RETURN_IF_ERROR(st->CheckRoom(key.size()));
  DictTxSlotHint seen;
  DictValueReader reader(out, keyspace && !string_bytes);
  Status s = DictTxRead(dict, key, hash, &reader, &seen);
  if (!s.ok() && !s.IsNotFound()) return s;
  *found = s.ok();
  uint64_t version = 0;
  if (*found) version = keyspace ? KeyVersionOfEntry(dict.ref().segment, *out) : out->version;
  if (e == nullptr) e = st->Add(dict.ref(), hash, key, keyspace);
  if (!e->read) {
    e->read = true;
    e->read_aggregate = keyspace && *found && KeyTypeOfEntry(*out) != KeyType::kString;
    e->version = version;
    e->seen = seen;
    ++st->reads;
    st->staged_bytes += key.size();
  } else if (e->version != version) {
    return Status::Conflict("key changed while the transaction read it");
  }
  return Status::OK();
}

// The entry a write of `key` staging `bytes` goes to, marked written (its value the caller's to
// fill). `unseen_hash` (may be null): the key is one the transaction has no entry of, with this
// hash.
Status StageEntry(State* st, const Dict& dict, bool keyspace, std::string_view key, bool erase,
                  size_t bytes, Expiry expiry, int64_t ttl_ms, const uint64_t* unseen_hash,
                  State::Entry** staged) {
  uint64_t hash = unseen_hash != nullptr ? *unseen_hash : 0;
  State::Entry* e = unseen_hash != nullptr ? nullptr : st->Lookup(dict.ref(), key, &hash);
  if (e == nullptr || !e->written) SHM_RETURN_IF_ERROR(st->CheckRoom(bytes));
  if (e == nullptr) e = st->Add(dict.ref(), hash, key, keyspace);
  if (!e->written) ++st->writes;
  e->written = true;
  e->keyspace = keyspace;
  e->erase = erase;
  e->expiry = expiry;
  e->ttl_ms = ttl_ms;
  st->staged_bytes += bytes;
  *staged = e;
  return Status::OK();
}

// `value` is moved from (a reference, not a copy: a transfer stages two per commit).
Status Stage(State* st, const Dict& dict, bool keyspace, std::string_view key, bool erase,
             DictValue&& value, Expiry expiry, int64_t ttl_ms) {
  const size_t bytes = key.size() + value.data.size() + value.content_type.size();
  State::Entry* e = nullptr;
  SHM_RETURN_IF_ERROR(
      StageEntry(st, dict, keyspace, key, erase, bytes, expiry, ttl_ms, nullptr, &e));
  e->value = std::move(value);
  e->value.version = 0;
  return Status::OK();
}

// A keyspace entry as this transaction sees it, with an entry whose list or hash is gone shown
// as absent (as Keyspace does). `string_bytes` as ViewEntry's.
Status ViewKey(State* st, const Keyspace& ks, std::string_view key, DictValue* entry, KeyType* type,
               bool string_bytes = true) {
  SHM_RETURN_IF_ERROR(ValidateKeyspaceKey(key));
  bool found = false;
  SHM_RETURN_IF_ERROR(ViewEntry(st, KeyspaceIndex(ks), true, key, entry, &found, string_bytes));
  *type = found ? KeyTypeOfEntry(*entry) : KeyType::kNone;
  if (!found || *type == KeyType::kString) return Status::OK();
  // An aggregate this transaction named stands: it stages a key's list or hash only non-empty.
  // (ViewEntry looked the key up last, so Lookup finds it without hashing it again.)
  uint64_t hash = 0;
  const State::Entry* e = st->Lookup(KeyspaceIndex(ks).ref(), key, &hash);
  const bool staged = e != nullptr && e->written;
  if (!staged && !KeyEntryLive(ks.ref().segment, *entry)) *type = KeyType::kNone;
  return Status::OK();
}

// Whether a string write of `key` with `options` may skip reading the old entry: it needs
// nothing of it (no GET, condition or KEEPTTL), and the transaction has not seen the key yet (a
// key it read keeps its read's validation; one it wrote has its staged entry replaced). The
// commit then finds what the write replaces (Entry's invariant): one probe under the lock
// instead of a read at staging and its validation.
// *hash gets the key's hash (Stage's `unseen_hash`).
bool BlindKeyWrite(State* st, const Keyspace& ks, std::string_view key, const StringSet& options,
                   uint64_t* hash) {
  if (options.get || options.keep_ttl || options.cond != StringSet::Cond::kAlways) return false;
  return st->Lookup(KeyspaceIndex(ks).ref(), key, hash) == nullptr;
}

void NoteOrphan(State* st, const DictValue& entry, KeyType type) {
  if (type == KeyType::kList || type == KeyType::kHash) st->orphans.emplace_back(entry.data, type);
}

// Copied into the staged entry's own string: a spare entry's capacity serves it.
Status StageKeyString(State* st, const Keyspace& ks, std::string_view key, std::string_view value,
                      int64_t expires_at_ms, const uint64_t* unseen_hash = nullptr) {
  if (value.size() > Keyspace::kMaxValue) {
    return Status::InvalidArgument("string exceeds maximum allowed size (" +
                                   std::to_string(Keyspace::kMaxValue) + " bytes)");
  }
  State::Entry* e = nullptr;
  SHM_RETURN_IF_ERROR(StageEntry(st, KeyspaceIndex(ks), true, key, false, key.size() + value.size(),
                                 Expiry::kAbsolute, 0, unseen_hash, &e));
  e->value.data.assign(value);
  e->value.content_type.clear();
  e->value.version = 0;
  e->value.expires_at_ms = expires_at_ms;
  return Status::OK();
}

// ---- Commit ----------------------------------------------------------------------------------

// Above every address of a process's mapping (x86-64 and AArch64 user space: under 2^57).
constexpr uint64_t kDictRank = uint64_t{1} << 63;

bool InKeyspace(Segment::Impl* seg, const DictStripeRep* stripe) {
  const DictStripeRep* keyspace = seg->root()->keyspace_stripes;
  return stripe >= keyspace && stripe < keyspace + kDictStripes;
}

// New keys one share inserts into one shard.
struct Inserts {
  uint64_t body;
  uint32_t shard;
  uint64_t count;
  const State::Entry* first;  // One of them, naming the dict to grow.
};

// A list a commit takes, after every stripe.
struct ListLock {
  TxListOp* op;
  uint32_t first;  // Its share's first change in the record.
  bool changed;    // Pushed or popped (else only its write count is checked).
  bool held;
  bool named;  // The record is in its counter_tx.
};

class Committer {
 public:
  Committer(Segment* segment, State* st)
      : segment_(segment), seg_(segment->impl()), st_(st), writer_(seg_) {}
  ~Committer() {
    ReleaseAll();
    if (record_ != 0) FreeTxRecord(seg_, record_, &writer_);
  }

  Status Run() {
    if (!writer_.ok()) return NoIntentSlot();
    SHM_RETURN_IF_ERROR(Plan());
    SHM_RETURN_IF_ERROR(BuildRecord());
    for (int round = 0;; ++round) {
      grow_.clear();
      list_grow_.clear();
      Status s = LockAndValidate();
      if (s.ok() && grow_.empty() && list_grow_.empty()) break;
      ReleaseAll();
      SHM_RETURN_IF_ERROR(s);
      if (round == kMaxGrowRounds) return Status::Timeout("tables keep filling; try again");
      for (const Inserts& g : grow_) {
        SHM_RETURN_IF_ERROR(DictTxGrow(g.first->ref, g.shard, g.count, &writer_));
      }
      for (const auto& [ref, capacity] : list_grow_) SHM_RETURN_IF_ERROR(ListTxGrow(ref, capacity));
    }
    Apply();
    ReleaseAll();
    for (EntryRep* entry : wake_) FutexWakeAll(&entry->wake_seq);
    for (const ListLock& l : lists_) {  // A key's list is reported by its key, after the commit.
      if (!l.op->keyspace && (!l.op->left.empty() || !l.op->right.empty())) {
        NoteListFilled(l.op->list.ref());
      }
    }
    if (record_ != 0) FreeTxRecord(seg_, record_, &writer_);
    record_ = 0;
    for (const auto* orphans : {&st_->orphans, &replaced_}) {
      for (const auto& [name, type] : *orphans) {
        CrashPoint("tx_before_orphan_delete");
        DeleteKeyAggregate(segment_, name, type);
      }
    }
    for (const auto& [ref, shard] : inserted_) DictTxRebuildIfNeeded(ref, shard, &writer_);
    return Status::OK();
  }

 private:
  State::Entry& EntryAt(uint32_t i) { return st_->entries[i]; }
  State::Located& Where(uint32_t i) { return st_->located[i]; }

  // Where every entry lives; the entries in lock order, cut into one share per stripe.
  Status Plan() {
    const auto n = static_cast<uint32_t>(st_->used);
    st_->located.resize(n);
    st_->order.resize(n);
    for (uint32_t i = 0; i < n; ++i) {
      State::Located& where = Where(i);
      SHM_RETURN_IF_ERROR(DictTxLocate(EntryAt(i).ref, EntryAt(i).hash, &where.target));
      // Lock order: keyspace stripes before every dict stripe (layout.h), then by address.
      const auto address = reinterpret_cast<uintptr_t>(where.target.stripe);
      where.lock_rank = InKeyspace(seg_, where.target.stripe) ? address : address | kDictRank;
      st_->order[i] = i;
    }
    auto before = [this](uint32_t a, uint32_t b) {
      const uint64_t sa = Where(a).lock_rank, sb = Where(b).lock_rank;
      if (sa == sb) {  // Staging order, but a hash's (re)created fields last, in their order.
        const uint64_t ra = EntryAt(a).appended, rb = EntryAt(b).appended;
        return ra != rb ? ra < rb : a < b;
      }
      return sa < sb;
    };
    if (n == 2) {  // A transfer: two keys, no sort needed.
      if (before(1, 0)) std::swap(st_->order[0], st_->order[1]);
    } else {
      std::sort(st_->order.begin(), st_->order.end(), before);
    }
    st_->shares.clear();
    for (uint32_t k = 0; k < n; ++k) {
      DictStripeRep* stripe = Where(st_->order[k]).target.stripe;
      if (st_->shares.empty() || st_->shares.back().stripe != stripe) {
        st_->shares.push_back(
            State::Share{stripe, InKeyspace(seg_, stripe), k, k, false, false, false});
      }
      st_->shares.back().end = k + 1;
      st_->shares.back().changes |= EntryAt(st_->order[k]).written;
    }
    SHM_RETURN_IF_ERROR(PlanListings());
    std::sort(st_->counters.begin(), st_->counters.end(),
              [](const State::CounterOp& a, const State::CounterOp& b) {
                return a.ref.entry < b.ref.entry;
              });
    for (State::CounterOp& op : st_->counters) op.lock_state = 0;
    for (auto& [key, op] : st_->lists.ops()) {  // In lock order (entry address) already.
      lists_.push_back(ListLock{&op, 0, op.Changes() > 0, false, false});
    }
    return Status::OK();
  }

  // The shards whose key sets the transaction listed: each checked under its stripe, which joins
  // the shares (without entries when no key of it is read or written).
  Status PlanListings() {
    listing_checks_.clear();
    bool added = false;
    for (const State::KeyListing& listing : st_->listings) {
      for (uint32_t shard = 0; shard < listing.digests.size(); ++shard) {
        ListingCheck check{&listing, {}, listing.digests[shard]};
        SHM_RETURN_IF_ERROR(DictTxLocate(listing.index, DictTxShardHash(shard), &check.target));
        if (check.target.body != listing.body) return KeysChanged();
        listing_checks_.push_back(check);
        const bool shared =
            std::any_of(st_->shares.begin(), st_->shares.end(),
                        [&](const State::Share& s) { return s.stripe == check.target.stripe; });
        if (shared) continue;
        st_->shares.push_back(State::Share{
            check.target.stripe, InKeyspace(seg_, check.target.stripe), 0, 0, false, false, false});
        added = true;
      }
    }
    if (added) {
      std::sort(st_->shares.begin(), st_->shares.end(),
                [](const State::Share& a, const State::Share& b) {
                  return a.keyspace != b.keyspace ? a.keyspace : a.stripe < b.stripe;
                });
    }
    return Status::OK();
  }

  static Status KeysChanged() {
    return Status::Conflict("keys listed by the transaction changed before its commit");
  }

  // The record and every new blob, allocated before any lock is taken. The changes follow the
  // lock order, so each share's are contiguous.
  Status BuildRecord() {
    const auto writes = static_cast<uint32_t>(st_->writes);
    auto count = writes + static_cast<uint32_t>(st_->counters.size());
    const uint32_t lists_first = count;
    uint32_t changed_lists = 0;
    for (ListLock& l : lists_) {
      if (!l.changed) continue;
      l.first = count;
      count += ListTxChangeCount(l.op->left.size() + l.op->right.size(),
                                 l.op->pops_left + l.op->pops_right);
      ++changed_lists;
    }
    if (count == 0) return Status::OK();
    SHM_RETURN_IF_ERROR(writer_.AllocateOwned(TxRecordRep::AllocationSize(count), &record_));
    auto* rec = new (seg_->Ptr<void>(record_)) TxRecordRep();
    rec->owner = CurrentPid();
    for (uint32_t i = 0; i < count; ++i) new (&rec->changes()[i]) TxChangeRep{};
    rec->count = count;  // Set once every change is zeroed: FreeTxRecord reads this many.
    CrashPoint("tx_after_record");
    for (uint32_t j = 0; j < st_->counters.size(); ++j) {
      TxChangeRep& c = rec->changes()[writes + j];
      c.entry = seg_->Handle(st_->counters[j].ref.entry);
      c.incarnation = st_->counters[j].ref.incarnation;
      c.erase = kTxCounter;
    }
    uint32_t next = 0;
    uint32_t shares = 0;
    for (const State::Share& share : st_->shares) {
      shares += share.changes ? 1 : 0;
      for (uint32_t k = share.begin; k < share.end; ++k) {
        const State::Entry& e = EntryAt(st_->order[k]);
        if (!e.written) continue;
        const DictTxTarget& target = Where(st_->order[k]).target;
        Where(st_->order[k]).change = next;
        TxChangeRep& c = rec->changes()[next++];
        c.stripe = seg_->Handle(target.stripe);
        c.entry = seg_->Handle(e.ref.entry);
        c.incarnation = e.ref.incarnation;
        c.body = target.body;
        c.shard = target.shard;
        c.erase = e.erase ? 1 : 0;
        // Views: `erase ? "" : string` would copy the string into a temporary.
        const std::string_view content_type = e.erase ? std::string_view() : e.value.content_type;
        const std::string_view data = e.erase ? std::string_view() : e.value.data;
        SHM_RETURN_IF_ERROR(DictTxAllocateBlob(seg_, &writer_, e.key, e.hash, content_type, data,
                                               e.value.expires_at_ms, &c.blob));
        if (!e.erase && e.appended != 0) seg_->Ptr<DictEntryBlob>(c.blob)->order = kDictTxOrderLast;
      }
    }
    for (const ListLock& l : lists_) {
      if (!l.changed) continue;
      const TxListOp& op = *l.op;
      SHM_RETURN_IF_ERROR(ListTxFillRecord(seg_, rec, l.first, op.list.ref(), op.left, op.right,
                                           op.pops_left, op.pops_right));
    }
    if (lists_first < count) CrashPoint("tx_after_list_record");
    rec->shares_left.store(shares + static_cast<uint32_t>(st_->counters.size()) + changed_lists);
    return Status::OK();
  }

  TxRecordRep* record() { return seg_->Ptr<TxRecordRep>(record_); }

  Status LockShare(State::Share& share) {
    share.restore = 0;
    if (DictTxHeldByThisThread(share.stripe)) {
      share.borrowed = true;
      share.restore = share.stripe->tx_record.load(std::memory_order_seq_cst);
    } else if (!DictTxLockStripe(seg_, share.stripe, kDefaultLockTimeout)) {
      return Status::Timeout("a transaction's key is busy (held by pid " +
                             std::to_string(share.stripe->mu.owner_pid()) + "); try again");
    } else {
      share.held = true;
    }
    if (share.changes) {
      share.stripe->tx_record.store(record_, std::memory_order_seq_cst);
      share.marked = true;
    }
    return Status::OK();
  }

  // Under the share's lock, one look at each of its entries: a read still sees the version it
  // recorded; a write gets its expiry and is checked against its dict's bound; inserts are
  // counted for the room check.
  Status CheckEntryLocked(uint32_t i) {
    const State::Entry& e = EntryAt(i);
    const DictTxTarget& target = Where(i).target;
    uint64_t version = 0;
    int64_t expires_at_ms = 0;
    Status s;
    Where(i).at = DictTxSlotHint{};
    if (e.read && e.read_aggregate) {  // A list's or hash's version needs the entry's content.
      DictValue value;
      bool found = false;
      s = DictTxReadLocked(e.ref, target, e.key, &value, &found);
      if (s.ok() && found) {
        version = value.version;
        expires_at_ms = value.expires_at_ms;
        if (KeyVersionOfEntry(segment_, value) != e.version) return ReadChanged();
      } else if (s.ok() && e.version != 0) {
        return ReadChanged();
      }
    } else {
      const bool replaces = e.keyspace && e.written;
      DictTxHeld held;
      s = DictTxProbeLocked(e.ref, target, e.key, e.read ? &e.seen : nullptr, e.version, &version,
                            &expires_at_ms, &Where(i).at, replaces ? &held : nullptr);
      if (s.ok() && e.read && version != e.version) return ReadChanged();
      // A blind write's (Entry's invariant), or an expired entry any write replaces (a read saw
      // the key absent); a read's live list or hash is in State::orphans already.
      if (s.ok() && replaces && (!e.read || held.expired)) NoteReplaced(held.entry);
    }
    if (s.IsNotFound()) return Status::Conflict("object was deleted");
    SHM_RETURN_IF_ERROR(s);
    if (!e.written || e.erase) return Status::OK();
    const bool found = version != 0;
    if (!found) CountInsert(e, target);
    auto* blob = seg_->Ptr<DictEntryBlob>(record()->changes()[Where(i).change].blob);
    if (e.expiry == Expiry::kKeep) {
      blob->expires_at_ms = found ? expires_at_ms : DictTxExpiryLocked(seg_, target, e.ttl_ms);
    } else if (e.expiry == Expiry::kTtl) {
      blob->expires_at_ms = DictTxExpiryLocked(seg_, target, e.ttl_ms);
    }
    const uint64_t max_bytes = seg_->Ptr<DictRep>(target.body)->max_bytes;
    if (max_bytes != 0 && blob->charged_bytes() > max_bytes) {
      return Status::InvalidArgument("entry of " + std::to_string(blob->charged_bytes()) +
                                     " bytes is larger than the dict's max_bytes (" +
                                     std::to_string(max_bytes) + ")");
    }
    return Status::OK();
  }

  // A replaced entry's list or hash, if any, deleted after the commit.
  void NoteReplaced(const DictEntryView& replaced) {
    const KeyType type = KeyTypeOfEntry(replaced);
    if (type == KeyType::kList || type == KeyType::kHash) {
      replaced_.emplace_back(std::string(replaced.data), type);
    }
  }

  static Status ReadChanged() {
    return Status::Conflict("a key read by the transaction changed before its commit");
  }

  void CountInsert(const State::Entry& e, const DictTxTarget& target) {
    for (Inserts& ins : inserts_) {
      if (ins.body == target.body && ins.shard == target.shard) {
        ++ins.count;
        return;
      }
    }
    inserts_.push_back(Inserts{target.body, target.shard, 1, &e});
  }

  // Under the share's lock: each of its entries checked, and room for its inserts.
  Status ValidateShare(const State::Share& share) {
    inserts_.clear();
    for (uint32_t k = share.begin; k < share.end; ++k) {
      SHM_RETURN_IF_ERROR(CheckEntryLocked(st_->order[k]));
    }
    for (const Inserts& ins : inserts_) {
      if (!DictTxRoomLocked(seg_, DictTxTarget{share.stripe, ins.body, ins.shard, 0}, ins.count)) {
        grow_.push_back(ins);
      }
    }
    for (const ListingCheck& check : listing_checks_) {
      if (check.target.stripe != share.stripe) continue;
      uint64_t digest = 0;
      Status s = DictTxKeySetDigestLocked(check.listing->index, check.target, &digest);
      if (s.IsNotFound() || (s.ok() && digest != check.digest)) return KeysChanged();
      SHM_RETURN_IF_ERROR(s);
    }
    return Status::OK();
  }

  // Keyspace stripes first, validated before any dict stripe is taken: a keyspace read's
  // version may look up its list or hash in the registry, which comes before dict stripes in
  // the lock order.
  Status LockAndValidate() {
    replaced_.clear();  // Found again by this round's validation.
    for (State::Share& share : st_->shares) {
      SHM_RETURN_IF_ERROR(LockShare(share));
      SHM_RETURN_IF_ERROR(ValidateShare(share));
    }
    for (ListLock& l : lists_) SHM_RETURN_IF_ERROR(LockList(l));
    for (size_t j = 0; j < st_->counters.size(); ++j) SHM_RETURN_IF_ERROR(LockCounter(j));
    return Status::OK();
  }

  // Lists come after every stripe, by entry address. Taking one: its lock, the record named in
  // its counter_tx (when it changes), the write count read checked, the share prepared.
  Status LockList(ListLock& l) {
    const ObjectRef& ref = l.op->list.ref();
    SHM_RETURN_IF_ERROR(ListTxLock(ref));
    l.held = true;
    if (!l.changed) return ListTxPrepareLocked(ref, l.op->writes_seen, nullptr, 0, nullptr);
    ref.entry->counter_tx.store(record_, std::memory_order_seq_cst);
    l.named = true;
    uint64_t grow_to = 0;
    SHM_RETURN_IF_ERROR(ListTxPrepareLocked(ref, l.op->writes_seen, record(), l.first, &grow_to));
    if (grow_to != 0) list_grow_.emplace_back(ref, grow_to);
    return Status::OK();
  }

  // Counters come last in the lock order, by entry address. Taking one: name the record in its
  // counter_tx (waiting for, or settling, another commit's), then add kTxLock to its value,
  // which fixes the value it had (*v): fast adds that land meanwhile undo themselves.
  Status LockCounter(size_t j) {
    State::CounterOp& op = st_->counters[j];
    EntryRep* e = op.ref.entry;
    TxChangeRep& change = record()->changes()[st_->writes + j];
    const auto deadline = std::chrono::steady_clock::now() + kDefaultLockTimeout;
    for (int spins = 0;; ++spins) {
      uint64_t holder = 0;
      if (e->counter_tx.compare_exchange_strong(holder, record_, std::memory_order_seq_cst)) break;
      if (SettleCounterTxIfOwnerDied(seg_, e, holder)) continue;
      if (std::chrono::steady_clock::now() > deadline) {
        return Status::Timeout("a transaction's counter is busy; try again");
      }
      std::this_thread::yield();
    }
    op.lock_state = 1;
    if (e->incarnation.load() != op.ref.incarnation ||
        e->state.load() != static_cast<uint32_t>(EntryState::kLive) || EntryExpiredNow(e)) {
      return Status::NotFound("counter was deleted");
    }
    int64_t v = e->counter.load(std::memory_order_acquire);
    do {
      if (v >= Counter::kTxLockableBelow || v <= -Counter::kTxLockableBelow) {
        return Status::InvalidArgument("counter is too far from 0 for a transaction");
      }
    } while (!e->counter.compare_exchange_weak(v, v + Counter::kTxLock, std::memory_order_acq_rel));
    op.lock_state = 2;
    change.blob = static_cast<uint64_t>(v);
    if (op.read.has_value() && *op.read != v) {
      return Status::Conflict("a counter read by the transaction changed before its commit");
    }
    change.body = static_cast<uint64_t>(op.write.value_or(v));
    return Status::OK();
  }

  void Apply() {
    if (record_ == 0) return;
    TxRecordRep* rec = record();
    for (const ListLock& l : lists_) {
      if (l.changed) ListTxCountWriteLocked(l.op->list.ref(), l.op->keyspace);
    }
    for (const auto& [key, ref] : st_->hash_writes) ref.entry->keyspace_writes.fetch_add(1);
    CrashPoint("tx_before_commit");
    rec->committed.store(1, std::memory_order_seq_cst);  // The commit of the whole transaction.
    CrashPoint("tx_after_commit");
    for (size_t j = 0; j < st_->counters.size(); ++j) {
      const TxChangeRep& change = rec->changes()[st_->writes + j];
      EntryRep* e = st_->counters[j].ref.entry;
      // One add takes the lock off and leaves the new value: applied and released at once.
      e->counter.fetch_add(
          static_cast<int64_t>(change.body) - static_cast<int64_t>(change.blob) - Counter::kTxLock,
          std::memory_order_acq_rel);
      CrashPoint("tx_after_counter");
      e->counter_tx.store(0, std::memory_order_seq_cst);
      st_->counters[j].lock_state = 0;
      rec->shares_left.fetch_sub(1, std::memory_order_seq_cst);
    }
    for (ListLock& l : lists_) {
      if (!l.changed) continue;
      EntryRep* entry = l.op->list.ref().entry;
      if (ListTxApplyLocked(seg_, rec, l.first)) wake_.push_back(entry);
      CrashPoint("tx_after_list");
      entry->counter_tx.store(0, std::memory_order_seq_cst);
      l.named = false;
      rec->shares_left.fetch_sub(1, std::memory_order_seq_cst);
    }
    for (State::Share& share : st_->shares) {
      if (!share.changes) continue;
      for (uint32_t k = share.begin; k < share.end; ++k) {
        const uint32_t i = st_->order[k];
        if (!EntryAt(i).written) continue;
        const TxChangeRep& change = rec->changes()[Where(i).change];
        // Cannot fail but for a broken invariant: room was checked under these locks.
        bool rebuild = false;
        Status s = DictTxApplyLocked(seg_, change, &writer_, &rebuild, &Where(i).at);
        if (!s.ok()) {
          SHM_LOG(kError) << "transaction apply: " << s.ToString();
        }
        CrashPoint("tx_after_apply");
        if (rebuild) inserted_.emplace_back(EntryAt(i).ref, change.shard);
      }
      share.stripe->tx_record.store(share.restore, std::memory_order_seq_cst);
      share.marked = false;
      rec->shares_left.fetch_sub(1, std::memory_order_seq_cst);
    }
    CrashPoint("tx_after_apply_all");
  }

  void ReleaseAll() {
    for (size_t j = st_->counters.size(); j-- > 0;) {
      State::CounterOp& op = st_->counters[j];
      EntryRep* e = op.ref.entry;
      if (op.lock_state == 2) e->counter.fetch_sub(Counter::kTxLock, std::memory_order_acq_rel);
      if (op.lock_state >= 1) e->counter_tx.store(0, std::memory_order_seq_cst);
      op.lock_state = 0;
    }
    for (auto it = lists_.rbegin(); it != lists_.rend(); ++it) {
      if (it->named) it->op->list.ref().entry->counter_tx.store(0, std::memory_order_seq_cst);
      if (it->held) ListTxUnlock(it->op->list.ref());
      it->named = it->held = false;
    }
    for (auto it = st_->shares.rbegin(); it != st_->shares.rend(); ++it) {
      if (!it->held && !it->borrowed) continue;
      if (it->marked) it->stripe->tx_record.store(it->restore, std::memory_order_seq_cst);
      if (it->held) it->stripe->mu.unlock();
      it->held = it->borrowed = it->marked = false;
    }
  }

  Segment* const segment_;
  Segment::Impl* const seg_;
  State* const st_;
  uint64_t record_ = 0;
  std::vector<Inserts> inserts_;  // One share's (ValidateShare).
  std::vector<Inserts> grow_;     // Shards too full for the inserts: grown, then retried.
  std::vector<std::pair<ObjectRef, uint32_t>> inserted_;
  CowWriter writer_;             // This thread's: its blob cache serves the record and the blobs.
  std::vector<ListLock> lists_;  // In lock order.
  std::vector<std::pair<ObjectRef, uint64_t>> list_grow_;  // Rings to grow, then retry.
  std::vector<EntryRep*> wake_;  // Lists with blocked pops to wake after the release.
  // Blind writes' replaced lists and hashes (NoteReplaced), deleted after the commit.
  std::vector<std::pair<std::string, KeyType>> replaced_;
  struct ListingCheck {
    const State::KeyListing* listing;
    DictTxTarget target;  // Its shard.
    uint64_t digest;      // As the transaction listed it.
  };
  std::vector<ListingCheck> listing_checks_;
};

}  // namespace

// ---- The record's repair (transaction_rep.h) ---------------------------------------------------

void SettleTxRecordLocked(Segment::Impl* seg, DictStripeRep* stripe) {
  const uint64_t handle = stripe->tx_record.load(std::memory_order_seq_cst);
  if (handle == 0) return;
  auto* rec = seg->Ptr<TxRecordRep>(handle);
  const bool committed = rec->committed.load(std::memory_order_seq_cst) == 1;
  const uint64_t mine = seg->Handle(stripe);
  for (uint32_t i = 0; i < rec->count; ++i) {
    const TxChangeRep& change = rec->changes()[i];
    if (change.stripe != mine) continue;
    if (committed) DictTxApplyLocked(seg, change, nullptr);
    CrashPoint("tx_settle_after_apply");
  }
  for (uint32_t i = 0; i < rec->count; ++i) {
    const TxChangeRep& change = rec->changes()[i];
    if (change.stripe == mine) DictTxRepairShardLocked(seg, change.body, change.shard);
  }
  stripe->tx_record.store(0, std::memory_order_seq_cst);
  // The last share settled frees the record; a death before this leaks it, never frees twice.
  if (rec->shares_left.fetch_sub(1, std::memory_order_seq_cst) == 1) FreeTxRecord(seg, handle);
}

bool SettleCounterTxIfOwnerDied(Segment::Impl* seg, EntryRep* e, uint64_t record) {
  if (record == 0 || !seg->Contains(record, sizeof(TxRecordRep))) return false;
  auto* rec = seg->Ptr<TxRecordRep>(record);
  const pid_t owner = rec->owner;
  if (owner == CurrentPid() || !ProcessGone(owner)) return false;
  // One repairer at a time, under the entry's robust lock; a repairer's death is repaired again
  // (every step below is idempotent).
  const LockResult locked = e->mu.LockFor(kDefaultLockTimeout);
  if (locked == LockResult::kTimedOut) return false;
  if (locked == LockResult::kOwnerDied) RepairEntryLocked(seg, e);
  if (e->counter_tx.load(std::memory_order_seq_cst) == record && rec->owner == owner) {
    const bool committed = rec->committed.load(std::memory_order_seq_cst) == 1;
    const uint64_t mine = seg->Handle(e);
    const TxChangeRep* change = nullptr;
    for (uint32_t i = 0; i < rec->count; ++i) {
      if (rec->changes()[i].erase == kTxCounter && rec->changes()[i].entry == mine) {
        change = &rec->changes()[i];
      }
    }
    // Still locked: the change (committed) or the lock alone (not) is left to undo.
    if (e->counter.load(std::memory_order_acquire) >= Counter::kMaybeTxLocked) {
      const int64_t undo = committed && change != nullptr
                               ? static_cast<int64_t>(change->body) -
                                     static_cast<int64_t>(change->blob) - Counter::kTxLock
                               : -Counter::kTxLock;
      e->counter.fetch_add(undo, std::memory_order_acq_rel);
    }
    CrashPoint("tx_settle_counter");
    e->counter_tx.store(0, std::memory_order_seq_cst);
    if (rec->shares_left.fetch_sub(1, std::memory_order_seq_cst) == 1) FreeTxRecord(seg, record);
  }
  e->mu.unlock();
  return true;
}

void FreeTxRecord(Segment::Impl* seg, uint64_t handle, CowWriter* writer) {
  auto* rec = seg->Ptr<TxRecordRep>(handle);
  const bool committed = rec->committed.load(std::memory_order_seq_cst) == 1;
  auto free = [&](uint64_t blob) {  // No reader without a lock follows these: entry 0.
    writer != nullptr ? writer->FreeGarbage(0, blob) : seg->Free(blob);
  };
  for (uint32_t i = 0; i < rec->count; ++i) {
    const TxChangeRep& change = rec->changes()[i];
    // A committed put's blob is its entry now; an erase's only carried the key. A list's pushed
    // items are its slots' once committed; its popped ones are garbage then.
    if (change.erase == kTxPushLeft || change.erase == kTxPushRight) {
      if (!committed && IsBlob(change.blob)) free(change.blob);
      continue;
    }
    if (change.erase == kTxPopLeft || change.erase == kTxPopRight) {
      if (committed && IsBlob(change.blob)) free(change.blob);
      continue;
    }
    if (change.erase >= kTxCounter) continue;  // Holds values, not blobs.
    if (IsBlob(change.blob) && (!committed || change.erase != 0)) free(change.blob);
  }
  free(handle);
}

// ---- Keyspace routing (keyspace_internal.h) ----------------------------------------------------

namespace {
thread_local KeyspaceTransactionScope* t_scope = nullptr;
}  // namespace

struct TransactionAccess {
  static State* StateOf(KeyspaceTransactionScope* scope) { return scope->tx_->state_.get(); }
  static State* StateOf(Transaction* tx) { return tx->state_.get(); }
  static Transaction* TxOf(KeyspaceTransactionScope* scope) { return scope->tx_; }
  static void MarkUnsupported(KeyspaceTransactionScope* scope) { scope->unsupported_ = true; }
};

KeyspaceTransactionScope::KeyspaceTransactionScope(Transaction* tx) : tx_(tx), outer_(t_scope) {
  t_scope = this;
}
KeyspaceTransactionScope::~KeyspaceTransactionScope() { t_scope = outer_; }

KeyspaceTransactionScope* ActiveKeyspaceScope() { return t_scope; }
bool KeyspaceTransactionScope::unsupported() const {
  return unsupported_ || TransactionAccess::StateOf(tx_)->over_limits;
}
bool KeyspaceTransactionScope::Active() { return t_scope != nullptr; }

Status ScopedGetEntry(KeyspaceTransactionScope* scope, const Dict& index, std::string_view key,
                      DictValue* entry) {
  bool found = false;
  SHM_RETURN_IF_ERROR(
      ViewEntry(TransactionAccess::StateOf(scope), index, true, key, entry, &found));
  return found ? Status::OK() : Status::NotFound("no such key");
}

Status ScopedUpdateEntry(KeyspaceTransactionScope* scope, const Dict& index, std::string_view key,
                         DictUpdateRef fn) {
  State* st = TransactionAccess::StateOf(scope);
  DictValue current;
  bool found = false;
  SHM_RETURN_IF_ERROR(ViewEntry(st, index, true, key, &current, &found));
  DictUpdate update;
  SHM_RETURN_IF_ERROR(fn(found ? &current : nullptr, &update));
  if (update.erase) {
    if (!found) return Status::OK();
    return Stage(st, index, true, key, true, DictValue(), Expiry::kAbsolute, 0);
  }
  if (!update.write) return Status::OK();
  if (update.data.size() > Dict::kMaxValue) {
    return Status::InvalidArgument("value larger than " + std::to_string(Dict::kMaxValue) +
                                   " bytes");
  }
  DictValue next;
  next.data = std::move(update.data);
  next.content_type = std::move(update.content_type);
  Expiry expiry = Expiry::kAbsolute;
  if (update.expires_at_ms >= 0) {
    next.expires_at_ms = update.expires_at_ms;
  } else if (update.keep_expiry) {
    next.expires_at_ms = found ? current.expires_at_ms : 0;
  } else {
    expiry = Expiry::kTtl;
  }
  return Stage(st, index, true, key, false, std::move(next), expiry, update.ttl_ms);
}

void ScopedDeferOrphan(KeyspaceTransactionScope* scope, const std::string& name, KeyType type) {
  TransactionAccess::StateOf(scope)->orphans.emplace_back(name, type);
}

bool ScopedEntryStaged(KeyspaceTransactionScope* scope, const Dict& index, std::string_view key) {
  State* st = TransactionAccess::StateOf(scope);
  const State::Entry* e = st->Find(index.ref(), DictKeyHash(key), key);
  return e != nullptr && e->written && !e->erase;
}

Status ScopedUnsupported(KeyspaceTransactionScope* scope) {
  TransactionAccess::MarkUnsupported(scope);
  return Status::Conflict("this operation cannot join a transaction; run the batch exclusively");
}

// ---- KeyspaceExclusive -------------------------------------------------------------------------

Status KeyspaceExclusive::Lock(const Keyspace& keyspace) {
  Unlock();
  const ObjectRef& ref = keyspace.ref();
  return CatchAtBoundary("keyspace", [&] {
    SHM_RETURN_IF_ERROR(DictTxHoldAll(ref, &held_, &record_));
    segment_ = ref.segment;
    return Status::OK();
  });
}

bool KeyspaceExclusive::HeldByThisThread() { return DictTxHoldingAll(); }

void KeyspaceExclusive::Unlock() {
  if (segment_ == nullptr) return;
  DictTxReleaseAll(segment_->impl(), &held_, record_);
  record_ = 0;
  segment_ = nullptr;
}

// ---- Transaction -------------------------------------------------------------------------------

Transaction::Transaction(Segment* segment) : segment_(segment), state_(TakeState()) {}
Transaction::~Transaction() {
  DropCreated();
  ReturnState(std::move(state_));
}
Transaction::Transaction(Transaction&&) noexcept = default;
Transaction& Transaction::operator=(Transaction&&) noexcept = default;

Status Transaction::Get(const Dict& dict, std::string_view key, DictValue* value) {
  if (key.size() > Dict::kMaxKey) return Status::InvalidArgument("key longer than the key limit");
  bool found = false;
  SHM_RETURN_IF_ERROR(ViewEntry(state_.get(), dict, false, key, value, &found));
  return found ? Status::OK() : Status::NotFound("no such key");
}

Status Transaction::Set(const Dict& dict, std::string_view key, std::string_view value,
                        const SetOptions& options) {
  if (key.size() > Dict::kMaxKey) return Status::InvalidArgument("key longer than the key limit");
  if (value.size() > Dict::kMaxValue) {
    return Status::InvalidArgument("value larger than " + std::to_string(Dict::kMaxValue) +
                                   " bytes");
  }
  if (options.content_type.size() > Dict::kMaxContentType) {
    return Status::InvalidArgument("content type too long");
  }
  for (char ch : options.content_type) {
    if (ch < 0x20 || ch > 0x7e) return Status::InvalidArgument("content type must be printable");
  }
  SHM_RETURN_IF_ERROR(DictValidateTtl(options.ttl_ms));
  if (options.mode != SetMode::kSet || options.if_version.has_value()) {
    DictValue current;
    bool found = false;
    SHM_RETURN_IF_ERROR(ViewEntry(state_.get(), dict, false, key, &current, &found));
    if (options.mode == SetMode::kAdd && found) {
      return Status::AlreadyExists("key already exists (mode add)");
    }
    if (options.mode == SetMode::kReplace && !found) {
      return Status::NotFound("key does not exist (mode replace)");
    }
    if (options.if_version.has_value() && (!found || current.version != *options.if_version)) {
      return Status::Conflict("key does not have version " + std::to_string(*options.if_version));
    }
  }
  DictValue v;
  v.data.assign(value);
  v.content_type.assign(options.content_type);
  return Stage(state_.get(), dict, false, key, false, std::move(v), Expiry::kTtl, options.ttl_ms);
}

Status Transaction::Delete(const Dict& dict, std::string_view key,
                           std::optional<uint64_t> if_version) {
  DictValue current;
  SHM_RETURN_IF_ERROR(Get(dict, key, &current));
  if (if_version.has_value() && current.version != *if_version) {
    return Status::Conflict("key does not have version " + std::to_string(*if_version));
  }
  return Stage(state_.get(), dict, false, key, true, DictValue(), Expiry::kAbsolute, 0);
}

Status Transaction::Incr(const Dict& dict, std::string_view key, int64_t by, int64_t init,
                         int64_t ttl_ms, int64_t* result) {
  SHM_RETURN_IF_ERROR(DictValidateTtl(ttl_ms));
  if (key.size() > Dict::kMaxKey) return Status::InvalidArgument("key longer than the key limit");
  // The value read becomes the value staged: its content type and expiry carry over.
  DictValue v;
  bool found = false;
  SHM_RETURN_IF_ERROR(ViewEntry(state_.get(), dict, false, key, &v, &found));
  int64_t next = 0;
  SHM_RETURN_IF_ERROR(DictIncrNext(found ? &v : nullptr, by, init, &next));
  char digits[24];
  v.data.assign(digits, std::to_chars(digits, digits + sizeof digits, next).ptr);
  if (!found) v.content_type.assign(kDictIncrContentType);
  SHM_RETURN_IF_ERROR(Stage(state_.get(), dict, false, key, false, std::move(v),
                            found ? Expiry::kKeep : Expiry::kTtl, ttl_ms));
  *result = next;
  return Status::OK();
}

Status Transaction::Expect(const Dict& dict, std::string_view key,
                           std::optional<uint64_t> version) {
  DictValue current;
  Status s = Get(dict, key, &current);
  if (!s.ok() && !s.IsNotFound()) return s;
  if (s.ok() != version.has_value() || (s.ok() && current.version != *version)) {
    return Status::Conflict(version.has_value()
                                ? "key does not have version " + std::to_string(*version)
                                : std::string("key exists"));
  }
  return Status::OK();
}

namespace {

State::CounterOp* FindCounter(State* st, const ObjectRef& ref) {
  for (State::CounterOp& op : st->counters) {
    if (op.ref.entry == ref.entry && op.ref.incarnation == ref.incarnation) return &op;
  }
  return nullptr;
}

State::CounterOp* CounterOf(State* st, const Counter& counter) {
  State::CounterOp* op = FindCounter(st, counter.ref());
  if (op != nullptr) return op;
  st->counters.push_back(State::CounterOp{counter.ref(), std::nullopt, std::nullopt, 0});
  return &st->counters.back();
}

// The counter's value as this transaction sees it (its staged value, else a read it records).
Status CounterView(State* st, const Counter& counter, int64_t* value) {
  if (!counter.ref().valid()) return Status::InvalidArgument("counter handle is not open");
  if (FindCounter(st, counter.ref()) == nullptr) SHM_RETURN_IF_ERROR(st->CheckRoom(0));
  State::CounterOp* op = CounterOf(st, counter);
  if (op->write.has_value()) {
    *value = *op->write;
    return Status::OK();
  }
  int64_t seen = 0;
  SHM_RETURN_IF_ERROR(counter.Get(&seen));
  if (op->read.has_value() && *op->read != seen) {
    return Status::Conflict("counter changed while the transaction read it");
  }
  op->read = seen;
  *value = seen;
  return Status::OK();
}

Status StageCounter(State* st, const Counter& counter, int64_t value) {
  if (value >= Counter::kTxMaxValue || value <= -Counter::kTxMaxValue) {
    return Status::InvalidArgument("a transaction leaves a counter within +-2^61");
  }
  if (!counter.ref().valid()) return Status::InvalidArgument("counter handle is not open");
  CounterOf(st, counter)->write = value;
  return Status::OK();
}

}  // namespace

Status Transaction::Get(const Counter& counter, int64_t* value) {
  return CounterView(state_.get(), counter, value);
}

Status Transaction::Add(const Counter& counter, int64_t delta, int64_t* new_value) {
  int64_t value = 0;
  SHM_RETURN_IF_ERROR(CounterView(state_.get(), counter, &value));
  int64_t next = 0;
  SHM_RETURN_IF_ERROR(CounterSum(value, delta, &next));
  SHM_RETURN_IF_ERROR(StageCounter(state_.get(), counter, next));
  *new_value = next;
  return Status::OK();
}

Status Transaction::Set(const Counter& counter, int64_t value) {
  return StageCounter(state_.get(), counter, value);
}

namespace {

Status ListOf(State* st, const List& list, TxListOp** op) {
  if (!list.ref().valid()) return Status::InvalidArgument("list handle is not open");
  *op = st->lists.Of(list);
  return Status::OK();
}

Status PushItem(State* st, TxListOp* op, List::End end, std::string_view item, uint64_t* length) {
  SHM_RETURN_IF_ERROR(st->CheckRoom(item.size()));
  SHM_RETURN_IF_ERROR(st->lists.Push(op, end, item, length));
  st->staged_bytes += item.size();
  return Status::OK();
}

}  // namespace

Status Transaction::Push(const List& list, List::End end, std::string_view item, uint64_t* length) {
  TxListOp* op = nullptr;
  SHM_RETURN_IF_ERROR(ListOf(state_.get(), list, &op));
  return PushItem(state_.get(), op, end, item, length);
}

Status Transaction::Pop(const List& list, List::End end, std::string* item, bool* got) {
  *got = false;
  TxListOp* op = nullptr;
  SHM_RETURN_IF_ERROR(ListOf(state_.get(), list, &op));
  SHM_RETURN_IF_ERROR(state_->CheckRoom(0));
  return state_->lists.Pop(op, end, item, got);
}

Status Transaction::Length(const List& list, uint64_t* length) {
  TxListOp* op = nullptr;
  SHM_RETURN_IF_ERROR(ListOf(state_.get(), list, &op));
  return state_->lists.Length(op, length);
}

Status Transaction::Type(const Keyspace& ks, std::string_view key, KeyType* type) {
  DictValue entry;
  return ViewKey(state_.get(), ks, key, &entry, type);
}

Status Transaction::Watch(const Keyspace& ks, std::string_view key, uint64_t version) {
  if (key.size() > Keyspace::kMaxKey) return Status::InvalidArgument("key too long");
  DictValue entry;
  bool found = false;
  SHM_RETURN_IF_ERROR(ViewEntry(state_.get(), KeyspaceIndex(ks), true, key, &entry, &found));
  const State::Entry* e = state_->Find(KeyspaceIndex(ks).ref(), DictKeyHash(key), key);
  const uint64_t seen = e != nullptr && e->read ? e->version : 0;
  if (seen != version) return Status::Conflict("watched key changed");
  return Status::OK();
}

Status Transaction::Get(const Keyspace& ks, std::string_view key, std::string* value) {
  DictValue entry;
  KeyType type = KeyType::kNone;
  SHM_RETURN_IF_ERROR(ViewKey(state_.get(), ks, key, &entry, &type));
  if (type == KeyType::kNone) return Status::NotFound("no such key");
  if (type != KeyType::kString) return WrongType();
  *value = std::move(entry.data);
  return Status::OK();
}

Status Transaction::Set(const Keyspace& ks, std::string_view key, std::string_view value,
                        const StringSet& options, StringSetResult* result) {
  *result = StringSetResult{};
  if (uint64_t hash = 0; BlindKeyWrite(state_.get(), ks, key, options, &hash)) {  // MSET's pairs.
    SHM_RETURN_IF_ERROR(ValidateKeyspaceKey(key));
    SHM_RETURN_IF_ERROR(
        StageKeyString(state_.get(), ks, key, value, options.expires_at_ms.value_or(0), &hash));
    result->written = true;
    return Status::OK();
  }
  DictValue entry;
  KeyType type = KeyType::kNone;
  // The old string's bytes only for GET: an overwrite needs its type and version alone.
  SHM_RETURN_IF_ERROR(ViewKey(state_.get(), ks, key, &entry, &type, options.get));
  if (options.get && type != KeyType::kNone) {
    if (type != KeyType::kString) return WrongType();
    result->old = entry.data;
  }
  using Cond = StringSet::Cond;
  if ((options.cond == Cond::kIfAbsent && type != KeyType::kNone) ||
      (options.cond == Cond::kIfPresent && type == KeyType::kNone)) {
    return Status::OK();
  }
  const int64_t expiry = options.keep_ttl ? (type != KeyType::kNone ? entry.expires_at_ms : 0)
                                          : options.expires_at_ms.value_or(0);
  SHM_RETURN_IF_ERROR(StageKeyString(state_.get(), ks, key, value, expiry));
  NoteOrphan(state_.get(), entry, type);
  result->written = true;
  return Status::OK();
}

Status Transaction::IncrBy(const Keyspace& ks, std::string_view key, int64_t by, int64_t* result) {
  DictValue entry;
  KeyType type = KeyType::kNone;
  SHM_RETURN_IF_ERROR(ViewKey(state_.get(), ks, key, &entry, &type));
  if (type != KeyType::kNone && type != KeyType::kString) return WrongType();
  SHM_RETURN_IF_ERROR(IncrementedValue(
      type == KeyType::kString ? std::optional<std::string_view>(entry.data) : std::nullopt, by,
      result));
  return StageKeyString(state_.get(), ks, key, std::to_string(*result),
                        type == KeyType::kNone ? 0 : entry.expires_at_ms);
}

Status Transaction::Delete(const Keyspace& ks, std::string_view key, bool* existed) {
  DictValue entry;
  KeyType type = KeyType::kNone;
  SHM_RETURN_IF_ERROR(ViewKey(state_.get(), ks, key, &entry, &type));
  *existed = type != KeyType::kNone;
  if (!*existed) return Status::OK();
  SHM_RETURN_IF_ERROR(
      Stage(state_.get(), KeyspaceIndex(ks), true, key, true, DictValue(), Expiry::kAbsolute, 0));
  NoteOrphan(state_.get(), entry, type);
  return Status::OK();
}

Status Transaction::Rename(const Keyspace& ks, std::string_view from, std::string_view to,
                           bool only_if_absent, bool* renamed) {
  *renamed = false;
  DictValue moving, target;
  KeyType from_type = KeyType::kNone, to_type = KeyType::kNone;
  SHM_RETURN_IF_ERROR(ViewKey(state_.get(), ks, from, &moving, &from_type));
  if (from_type == KeyType::kNone) return Status::NotFound("no such key");
  SHM_RETURN_IF_ERROR(ViewKey(state_.get(), ks, to, &target, &to_type));
  if (from == to) {
    *renamed = !only_if_absent;
    return Status::OK();
  }
  if (only_if_absent && to_type != KeyType::kNone) return Status::OK();
  const Dict& index = KeyspaceIndex(ks);
  SHM_RETURN_IF_ERROR(
      Stage(state_.get(), index, true, from, true, DictValue(), Expiry::kAbsolute, 0));
  SHM_RETURN_IF_ERROR(
      Stage(state_.get(), index, true, to, false, std::move(moving), Expiry::kAbsolute, 0));
  NoteOrphan(state_.get(), target, to_type);
  *renamed = true;
  return Status::OK();
}

namespace {

Status AggregateOf(Segment* seg, const std::string& name, List* list) {
  return KeyListOf(seg, name, list);
}
Status AggregateOf(Segment* seg, const std::string& name, Dict* hash) {
  return KeyHashOf(seg, name, hash);
}
Status NewAggregate(const Keyspace& ks, List* list, DictValue* entry) {
  return NewKeyList(ks, list, entry);
}
Status NewAggregate(const Keyspace& ks, Dict* hash, DictValue* entry) {
  return NewKeyHash(ks, hash, entry);
}

// A key's list or hash as this transaction sees it. *proxy_found false when the key is absent
// (and not created); with `create`, an absent key gets a new aggregate, named by a staged entry.
// *entry: the key's entry (for the orphan when the key goes with its last element).
template <typename Proxy>
Status KeyAggregate(State* st, const Keyspace& ks, std::string_view key, bool create, Proxy* proxy,
                    bool* proxy_found, DictValue* entry) {
  constexpr bool kList = std::is_same_v<Proxy, List>;
  constexpr KeyType kType = kList ? KeyType::kList : KeyType::kHash;
  *proxy_found = false;
  KeyType type = KeyType::kNone;
  SHM_RETURN_IF_ERROR(ViewKey(st, ks, key, entry, &type));
  Segment* seg = ks.ref().segment;
  if (type == kType) {
    Status s = AggregateOf(seg, entry->data, proxy);
    if (s.IsNotFound()) return Status::Conflict("the key's list or hash went away");
    SHM_RETURN_IF_ERROR(s);
    *proxy_found = true;
    return Status::OK();
  }
  if (type != KeyType::kNone) return WrongType();
  if (!create) return Status::OK();
  // A stale entry (its aggregate gone or empty) is replaced; its aggregate, if any, goes.
  if (!entry->content_type.empty()) NoteOrphan(st, *entry, KeyTypeOfEntry(*entry));
  DictValue fresh;
  SHM_RETURN_IF_ERROR(NewAggregate(ks, proxy, &fresh));
  st->created.emplace_back(fresh.data, kType);
  if constexpr (kList) st->built_lists.emplace(proxy->ref().entry, proxy->ref().incarnation);
  *entry = fresh;
  SHM_RETURN_IF_ERROR(
      Stage(st, KeyspaceIndex(ks), true, key, false, std::move(fresh), Expiry::kAbsolute, 0));
  if constexpr (!kList) {
    st->hash_sizes[{proxy->ref().entry, proxy->ref().incarnation}] = 0;
  }
  *proxy_found = true;
  return Status::OK();
}

Status KeyList(State* st, const Keyspace& ks, std::string_view key, bool create, TxListOp** op,
               DictValue* entry) {
  *op = nullptr;
  List list;
  bool found = false;
  SHM_RETURN_IF_ERROR(KeyAggregate(st, ks, key, create, &list, &found, entry));
  if (!found) return Status::OK();
  *op = st->lists.Of(list);
  (*op)->keyspace = true;
  return Status::OK();
}

void NoteReady(State* st, const Keyspace& ks, std::string_view key) {
  for (const auto& [k, name] : st->ready) {
    if (name == key && k.db() == ks.db()) return;
  }
  st->ready.emplace_back(ks, std::string(key));
}

// The key goes with the last element of its list or hash, as outside transactions.
Status RemoveEmptyKey(State* st, const Keyspace& ks, std::string_view key, const DictValue& entry,
                      KeyType type) {
  SHM_RETURN_IF_ERROR(
      Stage(st, KeyspaceIndex(ks), true, key, true, DictValue(), Expiry::kAbsolute, 0));
  NoteOrphan(st, entry, type);
  return Status::OK();
}

// The fields of a key's hash as this transaction sees them.
Status HashSize(State* st, const Dict& hash, uint64_t** size) {
  auto [it, inserted] = st->hash_sizes.try_emplace({hash.ref().entry, hash.ref().incarnation}, 0);
  if (inserted) {  // The key's version, read already, covers the hash's contents.
    DictStats stats;
    Status s = hash.Stats(&stats);
    if (!s.ok()) {
      st->hash_sizes.erase(it);
      return s;
    }
    it->second = stats.entries;
  }
  *size = &it->second;
  return Status::OK();
}

void NoteHashWrite(State* st, const Dict& hash) {
  st->hash_writes.try_emplace({hash.ref().entry, hash.ref().incarnation}, hash.ref());
}

// Stages `field` of a key's hash as `value`, or its removal (value nullptr; nothing when absent),
// keeping the hash's field count. *existed: the field was there, as this transaction saw it.
Status StageField(State* st, const Dict& hash, std::string_view field, std::string* value,
                  bool* existed) {
  if (field.size() > Dict::kMaxKey) return Status::InvalidArgument("field longer than the limit");
  if (value != nullptr && value->size() > Dict::kMaxValue) {
    return Status::InvalidArgument("value larger than " + std::to_string(Dict::kMaxValue) +
                                   " bytes");
  }
  uint64_t* size = nullptr;
  SHM_RETURN_IF_ERROR(HashSize(st, hash, &size));
  DictValue current;
  SHM_RETURN_IF_ERROR(ViewEntry(st, hash, false, field, &current, existed));
  if (value == nullptr && !*existed) return Status::OK();
  DictValue v;
  if (value != nullptr) v.data = std::move(*value);
  SHM_RETURN_IF_ERROR(
      Stage(st, hash, false, field, value == nullptr, std::move(v), Expiry::kAbsolute, 0));
  NoteHashWrite(st, hash);
  // Redis's order: a field written anew goes last (DictOverlay); a rewrite keeps its place.
  State::Entry* e = st->Find(hash.ref(), DictKeyHash(field), field);
  if (value == nullptr) {
    e->appended = 0;
  } else if (!*existed) {
    e->appended = ++st->appends;
  }
  if (value == nullptr) {
    --*size;
  } else if (!*existed) {
    ++*size;
  }
  return Status::OK();
}

}  // namespace

Status Transaction::Push(const Keyspace& ks, std::string_view key, List::End end,
                         std::string_view item, uint64_t* length) {
  TxListOp* op = nullptr;
  DictValue entry;
  SHM_RETURN_IF_ERROR(KeyList(state_.get(), ks, key, true, &op, &entry));
  SHM_RETURN_IF_ERROR(PushItem(state_.get(), op, end, item, length));
  NoteReady(state_.get(), ks, key);
  return Status::OK();
}

Status Transaction::Pop(const Keyspace& ks, std::string_view key, List::End end, std::string* item,
                        bool* got) {
  *got = false;
  TxListOp* op = nullptr;
  DictValue entry;
  SHM_RETURN_IF_ERROR(KeyList(state_.get(), ks, key, false, &op, &entry));
  if (op == nullptr) return Status::OK();
  SHM_RETURN_IF_ERROR(state_->CheckRoom(0));
  SHM_RETURN_IF_ERROR(state_->lists.Pop(op, end, item, got));
  if (*got && op->ViewLength() == 0) {
    return RemoveEmptyKey(state_.get(), ks, key, entry, KeyType::kList);
  }
  return Status::OK();
}

Status Transaction::Length(const Keyspace& ks, std::string_view key, uint64_t* length) {
  *length = 0;
  TxListOp* op = nullptr;
  DictValue entry;
  SHM_RETURN_IF_ERROR(KeyList(state_.get(), ks, key, false, &op, &entry));
  return op == nullptr ? Status::OK() : state_->lists.Length(op, length);
}

Status Transaction::HashGet(const Keyspace& ks, std::string_view key, std::string_view field,
                            std::string* value) {
  Dict hash;
  bool found = false;
  DictValue entry;
  SHM_RETURN_IF_ERROR(KeyAggregate(state_.get(), ks, key, false, &hash, &found, &entry));
  if (!found) return Status::NotFound("no such key");
  DictValue v;
  SHM_RETURN_IF_ERROR(Get(hash, field, &v));
  *value = std::move(v.data);
  return Status::OK();
}

Status Transaction::HashSet(const Keyspace& ks, std::string_view key, std::string_view field,
                            std::string_view value, bool* created) {
  if (field.size() > Dict::kMaxKey) return Status::InvalidArgument("field longer than the limit");
  if (value.size() > Dict::kMaxValue) return Status::InvalidArgument("value larger than the limit");
  State* st = state_.get();
  Dict hash;
  bool found = false;
  DictValue entry;
  SHM_RETURN_IF_ERROR(KeyAggregate(st, ks, key, true, &hash, &found, &entry));
  std::string copy(value);
  bool exists = false;
  SHM_RETURN_IF_ERROR(StageField(st, hash, field, &copy, &exists));
  if (created != nullptr) *created = !exists;
  return Status::OK();
}

Status Transaction::HashDelete(const Keyspace& ks, std::string_view key, std::string_view field,
                               bool* existed) {
  *existed = false;
  if (field.size() > Dict::kMaxKey) return Status::InvalidArgument("field longer than the limit");
  State* st = state_.get();
  Dict hash;
  bool found = false;
  DictValue entry;
  SHM_RETURN_IF_ERROR(KeyAggregate(st, ks, key, false, &hash, &found, &entry));
  if (!found) return Status::OK();
  SHM_RETURN_IF_ERROR(StageField(st, hash, field, nullptr, existed));
  uint64_t* size = nullptr;
  SHM_RETURN_IF_ERROR(HashSize(st, hash, &size));
  if (*existed && *size == 0) return RemoveEmptyKey(st, ks, key, entry, KeyType::kHash);
  return Status::OK();
}

Status Transaction::Commit() {
  State* st = state_.get();
  if (st->empty()) return Status::OK();
  Status s = CatchAtBoundary("transaction", [&] {
    Committer committer(segment_, st);
    return committer.Run();
  });
  if (s.ok()) {
    st->created.clear();  // Named by their keys now (or orphans, deleted already).
    for (const auto& [ks, key] : st->ready) ReportListReady(ks, key);
  }
  Reset();
  return s;
}

// The lists and hashes made for new keys of a transaction that did not commit: no key names them.
void Transaction::DropCreated() {
  if (state_ == nullptr) return;
  for (const auto& [name, type] : state_->created) {
    try {
      DeleteKeyAggregate(segment_, name, type);
    } catch (...) {  // Best effort: an empty list or hash no key names is a leak, not a fault.
    }
  }
  state_->created.clear();
}

void Transaction::Reset() {
  DropCreated();
  if (state_ == nullptr) {
    state_ = TakeState();  // A moved-from transaction made usable again.
  } else {
    state_->Clear();
  }
}

size_t Transaction::staged_writes() const {
  size_t n = state_->writes + state_->lists.staged();
  for (const State::CounterOp& op : state_->counters) n += op.write.has_value() ? 1 : 0;
  return n;
}

Status Transaction::NotAttempted() { return Status::Conflict("the transaction was not attempted"); }

// ---- Keyspace listings, counts and flushes in a transaction (keyspace_internal.h) ------------

namespace {

void StagedOverlay(const State* st, const Dict& dict, DictOverlay* overlay);

// Records the digest of every shard's key set of the keyspace, once per transaction.
Status RecordListing(State* st, const Dict& index) {
  for (const State::KeyListing& listing : st->listings) {
    if (listing.index.entry == index.ref().entry &&
        listing.index.incarnation == index.ref().incarnation) {
      return Status::OK();
    }
  }
  State::KeyListing listing;
  listing.index = index.ref();
  listing.body = index.ref().entry->body.load(std::memory_order_acquire);
  SHM_RETURN_IF_ERROR(DictTxKeySetDigests(index.ref(), &listing.digests));
  st->listings.push_back(std::move(listing));
  return Status::OK();
}

Status ListKeysIn(State* st, const Dict& index, std::string_view prefix, size_t limit,
                  uint64_t cursor, std::vector<std::string>* keys, uint64_t* next_cursor) {
  keys->clear();
  *next_cursor = 0;
  SHM_RETURN_IF_ERROR(RecordListing(st, index));
  DictOverlay overlay;
  StagedOverlay(st, index, &overlay);
  return DictListKeys(index.ref(), prefix, limit, cursor, &overlay, keys, next_cursor);
}

// Every key of the keyspace as the transaction sees it.
Status AllKeysIn(State* st, const Dict& index, std::vector<std::string>* all) {
  all->clear();
  uint64_t cursor = 0;
  do {
    std::vector<std::string> keys;
    SHM_RETURN_IF_ERROR(ListKeysIn(st, index, "", Dict::kMaxListLimit, cursor, &keys, &cursor));
    for (std::string& key : keys) all->push_back(std::move(key));
  } while (cursor != 0);
  return Status::OK();
}

}  // namespace

Status ScopedListKeys(KeyspaceTransactionScope* scope, const Dict& index, std::string_view prefix,
                      size_t limit, uint64_t cursor, std::vector<std::string>* keys,
                      uint64_t* next_cursor) {
  return ListKeysIn(TransactionAccess::StateOf(scope), index, prefix, limit, cursor, keys,
                    next_cursor);
}

Status ScopedCountKeys(KeyspaceTransactionScope* scope, const Dict& index, uint64_t* count) {
  std::vector<std::string> all;
  SHM_RETURN_IF_ERROR(AllKeysIn(TransactionAccess::StateOf(scope), index, &all));
  *count = all.size();
  return Status::OK();
}

Status ScopedFlush(KeyspaceTransactionScope* scope, const Keyspace& ks) {
  State* st = TransactionAccess::StateOf(scope);
  std::vector<std::string> all;
  SHM_RETURN_IF_ERROR(AllKeysIn(st, KeyspaceIndex(ks), &all));
  // Refused whole, before anything is staged, when the transaction could not hold it.
  size_t bytes = 0;
  for (const std::string& key : all) bytes += key.size();
  if (all.size() > Transaction::kMaxFlushKeys ||
      st->staged_bytes + bytes > Transaction::kMaxStagedBytes) {
    return Status::InvalidArgument("a flush inside a transaction removes at most " +
                                   std::to_string(Transaction::kMaxFlushKeys) +
                                   " keys (this one has " + std::to_string(all.size()) +
                                   "); flush outside MULTI/EXEC");
  }
  st->flush_room += 2 * all.size();  // A read and a write per key.
  const Dict& index = KeyspaceIndex(ks);
  for (const std::string& key : all) {
    // Every entry goes, one whose list or hash is gone (a key that reads as absent) included.
    DictValue entry;
    bool found = false;
    SHM_RETURN_IF_ERROR(ViewEntry(st, index, true, key, &entry, &found));
    if (!found) continue;
    SHM_RETURN_IF_ERROR(Stage(st, index, true, key, true, DictValue(), Expiry::kAbsolute, 0));
    NoteOrphan(st, entry, KeyTypeOfEntry(entry));
  }
  return Status::OK();
}

// ---- Keyspace lists lent to commands in a transaction (keyspace_internal.h) -------------------

Status ScopedWithList(KeyspaceTransactionScope* scope, const Keyspace& ks, std::string_view key,
                      Keyspace::Access access, FunctionRef<Status(List&)> fn) {
  State* st = TransactionAccess::StateOf(scope);
  TxListOp* op = nullptr;
  DictValue entry;
  SHM_RETURN_IF_ERROR(KeyList(st, ks, key, access == Keyspace::Access::kCreate, &op, &entry));
  if (op == nullptr) return Status::NotFound("no such key");
  List bound = op->list;
  BindListToTransaction(&bound, TransactionAccess::TxOf(scope));
  const size_t pushed = op->left.size() + op->right.size();
  st->refilled = false;
  Status outcome = fn(bound);
  if (access == Keyspace::Access::kRead) return outcome;
  if (op->left.size() + op->right.size() > pushed || st->refilled) NoteReady(st, ks, key);
  uint64_t length = 0;
  SHM_RETURN_IF_ERROR(st->lists.Length(op, &length));
  if (length == 0) SHM_RETURN_IF_ERROR(RemoveEmptyKey(st, ks, key, entry, KeyType::kList));
  return outcome;
}

Status ScopedRewriteList(KeyspaceTransactionScope* scope, const Keyspace& ks, std::string_view key,
                         const std::function<Status(std::vector<std::string>* items)>& fn) {
  State* st = TransactionAccess::StateOf(scope);
  TxListOp* op = nullptr;
  DictValue entry;
  SHM_RETURN_IF_ERROR(KeyList(st, ks, key, false, &op, &entry));
  if (op == nullptr) return Status::NotFound("no such key");
  std::vector<std::string> items;
  SHM_RETURN_IF_ERROR(st->lists.View(op, &items));
  Status outcome = fn(&items);
  if (!outcome.ok()) return outcome;
  // The list this transaction built already (no one else sees it): replaced in place, its
  // staged pushes and pops dropped with it.
  if (st->built_lists.count({op->list.ref().entry, op->list.ref().incarnation}) != 0 &&
      !items.empty()) {
    List list = op->list;
    st->lists.Drop(op);
    bool swapped = false;
    SHM_RETURN_IF_ERROR(list.Replace(nullptr, items, &swapped));
    NoteReady(st, ks, key);
    return outcome;
  }
  // The committed list stays as it is, only read (its write count checked at the commit); the
  // key is staged to name its replacement, built whole now, or removed when nothing is left.
  st->lists.KeepReadOnly(op);
  if (items.empty()) return RemoveEmptyKey(st, ks, key, entry, KeyType::kList);
  DictValue fresh;
  SHM_RETURN_IF_ERROR(NewKeyListOf(ks, items, &fresh));
  st->created.emplace_back(fresh.data, KeyType::kList);
  List built;
  if (KeyListOf(ks.ref().segment, fresh.data, &built).ok()) {
    st->built_lists.emplace(built.ref().entry, built.ref().incarnation);
  }
  CrashPoint("tx_after_list_replacement");
  fresh.expires_at_ms = entry.expires_at_ms;  // LSET, LINSERT... keep the key's expiry.
  SHM_RETURN_IF_ERROR(
      Stage(st, KeyspaceIndex(ks), true, key, false, std::move(fresh), Expiry::kAbsolute, 0));
  NoteOrphan(st, entry, KeyType::kList);
  NoteReady(st, ks, key);
  return outcome;
}

Status TxListRange(Transaction* tx, const List& list, int64_t start, int64_t stop,
                   std::vector<std::string>* items, bool* truncated) {
  State* st = TransactionAccess::StateOf(tx);
  return st->lists.Range(st->lists.Of(list), start, stop, items, truncated);
}

Status TxListReplace(Transaction* tx, const List& list, const std::vector<std::string>* expected,
                     const std::vector<std::string>& items, bool* swapped) {
  *swapped = false;
  State* st = TransactionAccess::StateOf(tx);
  if (st->built_lists.count({list.ref().entry, list.ref().incarnation}) == 0) {
    return TxListUnsupported();
  }
  TxListOp* op = st->lists.Of(list);
  if (expected != nullptr) {
    std::vector<std::string> view;
    SHM_RETURN_IF_ERROR(st->lists.View(op, &view));
    if (view != *expected) return Status::OK();
  }
  // No one else sees it: its content is replaced now, its staged pushes and pops dropped.
  st->lists.KeepReadOnly(op);
  op->writes_seen.reset();
  List unbound = op->list;
  SHM_RETURN_IF_ERROR(unbound.Replace(nullptr, items, swapped));
  st->refilled = *swapped && !items.empty();
  return Status::OK();
}

Status TxListUnsupported() {
  if (KeyspaceTransactionScope* scope = ActiveKeyspaceScope(); scope != nullptr) {
    return ScopedUnsupported(scope);
  }
  return Status::InvalidArgument("this list operation cannot join a transaction");
}

// ---- Keyspace hashes lent to commands in a transaction (transaction_hashes.h) ----------------

namespace {

// The dict's staged entries (a hash's fields, a keyspace's keys), as its listings see them.
void StagedOverlay(const State* st, const Dict& dict, DictOverlay* overlay) {
  for (size_t i = 0; i < st->used; ++i) {
    const State::Entry& e = st->entries[i];
    if (!e.written || e.ref.entry != dict.ref().entry ||
        e.ref.incarnation != dict.ref().incarnation) {
      continue;
    }
    overlay->Add(DictOverlay::Write{e.key, e.hash, e.erase, e.appended, e.value.data});
  }
}

}  // namespace

Status ScopedWithHash(KeyspaceTransactionScope* scope, const Keyspace& ks, std::string_view key,
                      Keyspace::Access access, FunctionRef<Status(Dict&)> fn) {
  State* st = TransactionAccess::StateOf(scope);
  Dict hash;
  bool found = false;
  DictValue entry;
  SHM_RETURN_IF_ERROR(
      KeyAggregate(st, ks, key, access == Keyspace::Access::kCreate, &hash, &found, &entry));
  if (!found) return Status::NotFound("no such key");
  Dict bound = hash;
  BindDictToTransaction(&bound, TransactionAccess::TxOf(scope));
  Status outcome = fn(bound);
  if (access == Keyspace::Access::kRead) return outcome;
  // The key goes with its last field, as outside transactions (a new key whose first field
  // failed too: its staged entry is erased again).
  uint64_t* size = nullptr;
  SHM_RETURN_IF_ERROR(HashSize(st, hash, &size));
  if (*size == 0) SHM_RETURN_IF_ERROR(RemoveEmptyKey(st, ks, key, entry, KeyType::kHash));
  return outcome;
}

Status TxHashGet(Transaction* tx, const Dict& hash, std::string_view field, DictValue* value) {
  bool found = false;
  SHM_RETURN_IF_ERROR(ViewEntry(TransactionAccess::StateOf(tx), hash, false, field, value, &found));
  return found ? Status::OK() : Status::NotFound("no such key");
}

Status TxHashUpdate(Transaction* tx, const Dict& hash, std::string_view field, DictUpdateRef fn) {
  State* st = TransactionAccess::StateOf(tx);
  DictValue current;
  bool found = false;
  SHM_RETURN_IF_ERROR(ViewEntry(st, hash, false, field, &current, &found));
  DictUpdate update;
  SHM_RETURN_IF_ERROR(fn(found ? &current : nullptr, &update));
  bool existed = false;
  if (update.erase) return StageField(st, hash, field, nullptr, &existed);
  if (!update.write) return Status::OK();
  return StageField(st, hash, field, &update.data, &existed);
}

Status TxHashDelete(Transaction* tx, const Dict& hash, std::string_view field) {
  bool existed = false;
  SHM_RETURN_IF_ERROR(StageField(TransactionAccess::StateOf(tx), hash, field, nullptr, &existed));
  return existed ? Status::OK() : Status::NotFound("no such key");
}

Status TxHashStats(Transaction* tx, const Dict& hash, DictStats* stats) {
  *stats = DictStats{};
  uint64_t* size = nullptr;
  SHM_RETURN_IF_ERROR(HashSize(TransactionAccess::StateOf(tx), hash, &size));
  stats->entries = *size;
  return Status::OK();
}

namespace {

// The hash's staged fields, as its listings see them.
void HashOverlay(const State* st, const Dict& hash, DictOverlay* overlay) {
  if (st->hash_writes.count({hash.ref().entry, hash.ref().incarnation}) == 0) return;
  StagedOverlay(st, hash, overlay);
}

}  // namespace

Status TxHashEntries(Transaction* tx, const Dict& hash, bool with_values,
                     std::vector<DictItem>* items) {
  DictOverlay overlay;
  HashOverlay(TransactionAccess::StateOf(tx), hash, &overlay);
  return DictListEntries(hash.ref(), with_values, &overlay, items);
}

Status TxHashListKeys(Transaction* tx, const Dict& hash, std::string_view prefix, size_t limit,
                      uint64_t cursor, std::vector<std::string>* keys, uint64_t* next_cursor) {
  DictOverlay overlay;
  HashOverlay(TransactionAccess::StateOf(tx), hash, &overlay);
  return DictListKeys(hash.ref(), prefix, limit, cursor, &overlay, keys, next_cursor);
}

Status TxHashUnsupported() {
  if (KeyspaceTransactionScope* scope = ActiveKeyspaceScope(); scope != nullptr) {
    return ScopedUnsupported(scope);
  }
  return Status::InvalidArgument("this hash operation cannot join a transaction");
}

}  // namespace shm
