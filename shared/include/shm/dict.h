// Dict: a named map from byte-string keys to byte-string values, each with a content type, a
// version (for compare-and-set) and an optional expiry, shared by every attached process.
//
// Crash safety: every entry is an immutable blob in the segment, published into an open-addressing
// slot with one atomic store under the dict's lock (copy-on-write, see docs/crash-protocol.md), so
// a process killed at any instruction leaves each key with its old or its new value, whole.
// Optional CLOCK eviction keeps the dict under max_bytes.
//
// Process-safety: a Dict is a cheap process-local handle; copy it freely and use it from any
// thread. Every call takes the dict's lock (a robust mutex) briefly, except a Get or Read, which
// is first tried without it (docs/crash-protocol.md, "The reclaim sequence"); ListKeys takes it per
// chunk.
// Once the dict is deleted (or expires), every call answers NotFound; open it again.
#ifndef SHM_DICT_H_
#define SHM_DICT_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "shm/function_ref.h"
#include "shm/limits.h"
#include "shm/registry.h"
#include "shm/status.h"

namespace shm {

class Keyspace;
class Sessions;
class Transaction;

enum class DictEviction : uint32_t {
  kNone = 0,   // A write that would pass max_bytes fails with OutOfSpace and changes nothing.
  kClock = 1,  // Such a write first evicts expired, then least recently read entries (CLOCK).
};

// Fixed when the dict is created; ignored when opening an existing one.
struct DictOptions {
  // Bound on the bytes of all entries (keys, content types, values and a 40-byte header each);
  // 0 = bounded only by the segment. Required (> 0) with kClock.
  uint64_t max_bytes = 0;
  DictEviction eviction = DictEviction::kNone;
  // Expiry of entries written without a TTL; 0 = never.
  int64_t default_ttl_ms = 0;
};

struct DictValue {
  std::string data;
  std::string content_type;
  uint64_t version = 0;       // Unique per write within this dict, increasing.
  int64_t expires_at_ms = 0;  // Wall clock; 0 = never.
};

enum class SetMode {
  kSet,      // Create or replace.
  kAdd,      // Only if absent: AlreadyExists otherwise.
  kReplace,  // Only if present: NotFound otherwise.
};

struct SetOptions {
  SetMode mode = SetMode::kSet;
  int64_t ttl_ms = 0;  // 0: the dict's default TTL.
  // Write only if the entry exists with this version; Conflict otherwise (absent included).
  std::optional<uint64_t> if_version;
  std::string_view content_type;  // <= kMaxContentType bytes of printable ASCII.
  // true: a rewrite keeps the current entry's expiry (ignores ttl_ms), as Redis's SET KEEPTTL.
  bool keep_expiry = false;
  // keep_length > 0: a rewrite takes bytes [keep_offset, keep_offset + keep_length) of the value
  // written from the current value, in place of `value`'s: a field the writer cannot know without
  // reading the entry (the Manager's insertion order), kept in the same commit, with no read
  // before it. The current value must be at least that long and equal `value` on the bytes before
  // keep_offset (a tag saying what it is); else Conflict and nothing changes. An absent key is
  // written with `value` as given (mode kReplace: NotFound). The range must lie inside `value`.
  uint32_t keep_offset = 0;
  uint32_t keep_length = 0;
};

struct DictStats {
  uint64_t hits = 0;         // Gets that found the key.
  uint64_t misses = 0;       // Gets that did not.
  uint64_t evictions = 0;    // Entries removed by CLOCK to make room.
  uint64_t expirations = 0;  // Expired entries removed (lazily, or to make room).
  uint64_t entries = 0;      // Stored entries (expired ones not yet removed included).
  uint64_t expiring = 0;     // Of those, entries with an expiry (Redis's INFO "expires=").
  uint64_t bytes = 0;        // Bytes charged against max_bytes.
  uint64_t max_bytes = 0;    // 0 = no bound but the segment.
  uint64_t capacity = 0;     // Slots of the hash table.
};

// Receives the entry of a Dict::Read straight from the segment, so a front end builds its answer
// (a Python bytes, a response body) with one copy and no temporary.
class DictReader {
 public:
  virtual ~DictReader() = default;
  // `data` and `content_type` point into the segment and are valid only during the call: copy
  // what you keep. A read without the lock that turns out to be disturbed is retried under the
  // lock, so Take may run twice for one Read: the last call's copy is the answer. A non-OK
  // return ends the Read with that status.
  virtual Status Take(std::string_view data, std::string_view content_type, uint64_t version,
                      int64_t expires_at_ms) = 0;
};

// One entry as Dict::Entries lists it.
struct DictItem {
  std::string key;
  std::string value;  // Empty unless values were asked for.
};

// What an Update callback wants written.
struct DictUpdate {
  bool write = true;  // false: leave the entry as it is (Update answers OK, version unchanged).
  std::string data;
  std::string content_type;
  int64_t ttl_ms = 0;        // 0: the dict's default TTL.
  bool keep_expiry = false;  // true: keep the current entry's expiry (ignores ttl_ms).
  // >= 0: the expiry as an absolute wall-clock time (0 = never), overriding ttl_ms and
  // keep_expiry; any time is allowed (an absolute time needs no cap to stay in range).
  int64_t expires_at_ms = -1;
  bool erase = false;  // true: remove the entry (NotFound-free: absent stays absent).
  // Set by UpdateView before its callback, which sees the key as absent: the entry the key still
  // holds though it expired (views valid during the callback; empty content and data when none).
  // A write or erase replaces it, so the caller may release what it names (the keyspace: a list
  // or hash).
  std::string_view expired_data;
  std::string_view expired_content_type;
};
// Runs under the dict's lock: `current` is the entry (nullptr when absent or expired). A non-OK
// return aborts the update and is returned by Update. Keep it short; never touch a Dict from it.
using DictUpdateFn = std::function<Status(const DictValue* current, DictUpdate* update)>;
// What Update takes: any such callable, by reference (shm/function_ref.h), so a lambda passed to
// it is neither copied nor wrapped.
using DictUpdateRef = FunctionRef<Status(const DictValue* current, DictUpdate* update)>;

// The current entry as Dict::UpdateView shows it: views into the segment, valid only during the
// callback (the entry is immutable and the dict's lock keeps it from being replaced meanwhile).
struct DictEntryView {
  std::string_view data;
  std::string_view content_type;
  uint64_t version = 0;
  int64_t expires_at_ms = 0;

  static DictEntryView Of(const DictValue& value) {
    return {value.data, value.content_type, value.version, value.expires_at_ms};
  }
  DictValue ToValue() const {
    return {std::string(data), std::string(content_type), version, expires_at_ms};
  }
};
// Update's callback on a view: no copy of the current entry (a caller that overwrites it, or reads
// a few bytes of it, pays nothing for the rest).
using DictViewUpdateRef = FunctionRef<Status(const DictEntryView* current, DictUpdate* update)>;

class Dict {
 public:
  static constexpr size_t kMaxKey = limits::kMaxKey;
  static constexpr size_t kMaxValue = limits::kMaxValue;
  static constexpr size_t kMaxContentType = limits::kMaxContentType;
  static constexpr size_t kMaxListLimit = limits::kMaxPage;
  static constexpr int64_t kMaxTtlMs = limits::kMaxTtlMs;
  // Bytes charged per entry on top of key, content type and value.
  static constexpr size_t kEntryOverhead = 40;

  Dict() = default;

  // Opens the dict `name`, creating it with `options` when missing and `mode` allows.
  // WrongType if the name holds another kind; InvalidArgument for bad options.
  static Status Open(Segment* segment, std::string_view name, OpenMode mode,
                     const DictOptions& options, Dict* result, bool* created = nullptr);

  // NotFound if absent or expired. Marks the entry as recently used (CLOCK).
  Status Get(std::string_view key, DictValue* value) const;
  // Get into `reader` (DictReader): NotFound, with Take not called, if absent or expired.
  Status Read(std::string_view key, DictReader* reader) const;
  // Writes `value` as the options say; `version` (may be null) gets the new version.
  Status Set(std::string_view key, std::string_view value, const SetOptions& options,
             uint64_t* version = nullptr);
  // NotFound if absent; with `if_version`, Conflict unless the entry exists with that version.
  Status Delete(std::string_view key, std::optional<uint64_t> if_version = std::nullopt);
  // Adds `by` to the entry's decimal int64 text, creating it at `init` (then adding `by`) with
  // `ttl_ms` (0: default) when absent; an existing entry keeps its expiry. InvalidArgument when
  // the value is not a decimal int64 or on overflow (nothing changes).
  Status Incr(std::string_view key, int64_t by, int64_t init, int64_t ttl_ms, int64_t* result);
  // Computes the entry's next value from its current one under the lock (atomic
  // read-modify-write). `version` (may be null) gets the version written, or the current one.
  Status Update(std::string_view key, DictUpdateRef fn, uint64_t* version = nullptr);
  // The same, showing `fn` the current entry in place (DictEntryView) rather than a copy of it.
  Status UpdateView(std::string_view key, DictViewUpdateRef fn, uint64_t* version = nullptr);

  // A hint, for a batch of operations that follows (a pipeline's): starts loading the table
  // slots of `keys`, then the entries those slots name, into the CPU cache, so that the batch
  // waits on memory about once rather than once per key. Reads only, takes no lock, changes
  // nothing and reports nothing; a stale handle or a concurrent writer makes it load the wrong
  // lines at worst. At most kMaxPrefetch keys are used.
  static constexpr size_t kMaxPrefetch = 64;
  void Prefetch(std::span<const std::string_view> keys) const;

  // Keys starting with `prefix`, at most `limit` (1..kMaxListLimit), resuming at `cursor` (0:
  // from the start); `next_cursor` is 0 when the scan is complete. Keys come in hash order and
  // the cursor is a position in hash space, so, unlike Redis SCAN, a key present for the whole
  // scan is returned exactly once even if the table is rebuilt meanwhile. Takes the lock per
  // chunk, so writers are never stalled for long.
  Status ListKeys(std::string_view prefix, size_t limit, uint64_t cursor,
                  std::vector<std::string>* keys, uint64_t* next_cursor) const;

  // Every live entry, in insertion order: the order keys were first written. A rewrite keeps a
  // key's place; a key deleted (or expired) and written again goes last. This is the order of
  // Redis's small hashes (its listpack encoding), kept here at every size. Takes the lock per
  // chunk, as ListKeys, so a dict written meanwhile may give a listing no single instant had.
  // O(n log n); `with_values` false leaves every value empty.
  Status Entries(bool with_values, std::vector<DictItem>* items) const;

  Status Stats(DictStats* stats) const;
  // The options the dict was created with.
  Status GetOptions(DictOptions* options) const;

  const ObjectRef& ref() const { return ref_; }

 private:
  friend class Keyspace;
  friend class Sessions;
  explicit Dict(const ObjectRef& ref) : ref_(ref) {}
  // Lends a key's hash to a keyspace command inside a transaction (KeyspaceTransactionScope).
  friend void BindDictToTransaction(Dict* dict, Transaction* tx);
  // This handle without the transaction: what the transaction's own reads of the hash use.
  Dict Unbound() const { return Dict(ref_); }

  // Opens a dict-bodied object of `kind` (kDict or kSessions).
  static Status OpenKind(Segment* segment, std::string_view name, ObjectKind kind, OpenMode mode,
                         const DictOptions& options, Dict* result, bool* created);
  Status SetImpl(std::string_view key, std::string_view value, const SetOptions& options,
                 uint64_t* version);
  Status UpdateImpl(std::string_view key, DictViewUpdateRef fn, uint64_t* version);
  // Removes up to `budget` expired entries of shard `shard`, resuming where the last sweep of the
  // shard stopped, and looks at no more than 16 * budget slots (Redis's sampling, bounded work per
  // call). `removed(value)` runs under the shard's lock for each, before it is unlinked.
  // `shards` (may be null) gets the dict's shard count.
  Status SweepExpired(uint32_t shard, size_t budget,
                      const std::function<void(std::string_view key, const DictValue&)>& removed,
                      size_t* count, uint32_t* shards = nullptr);

  ObjectRef ref_;
  // Set on a handle lent to a keyspace command inside a transaction: Get, Update, Delete and
  // Stats go through the transaction; Entries and ListKeys list the hash as the transaction sees
  // it; what it cannot stage answers Conflict and marks the scope unsupported.
  Transaction* tx_ = nullptr;
};

}  // namespace shm

#endif  // SHM_DICT_H_
