// Keyspace: the typed keys of one Redis database, as one library object.
//
// A key maps to exactly one typed entry: a string (its bytes), or a list or hash that the entry
// owns. The entry also holds the key's expiry and a version. Every operation takes the lock of
// the key's shard, checks the type and commits under that one lock, so two types for one key can
// never exist, not even for an instant, whatever processes race on it. A list or hash is removed
// with its last element; every type expires, persists, renames and is deleted the same way.
// Expired keys read as absent at once, and SweepExpired (the manager's tick) removes them in the
// background, so Count() converges on the live keys as Redis's DBSIZE does.
//
// Mapping (docs/resp.md): database n is the registry object "redis:<n>" of kind keyspace; a list
// or hash key owns the registry list or dict "redis:<n>:<16 hex digits>" named in its entry, which
// HTTP and Python read like any other list or dict. Its expiry lives in the keyspace entry.
//
// Crash safety: entries are dict entries (immutable blobs, one atomic publish under the shard's
// lock; docs/crash-protocol.md, "Keyspace"). A process killed mid-command leaves every key with
// its old or its new type and value, whole.
//
// Process-safety: a Keyspace is a cheap process-local handle; use it from any thread. Lock order:
// keyspace shard -> registry -> object (a list's lock, a hash's shard) -> allocator.
#ifndef SHM_KEYSPACE_H_
#define SHM_KEYSPACE_H_

#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "shm/dict.h"
#include "shm/function_ref.h"
#include "shm/list.h"
#include "shm/registry.h"
#include "shm/status.h"

namespace shm {

enum class KeyType : uint8_t { kNone, kString, kList, kHash };
// "none", "string", "list", "hash" (Redis's TYPE).
std::string_view KeyTypeName(KeyType type);

// Conditions of EXPIRE and friends (Redis 7.0): NX only without expiry, XX only with one,
// GT/LT only to a later/earlier time (no expiry counts as infinitely late).
enum class ExpireIf : uint8_t { kAlways, kNx, kXx, kGt, kLt };

struct StringSet {
  enum class Cond : uint8_t { kAlways, kIfAbsent, kIfPresent } cond = Cond::kAlways;
  // The expiry written: nullopt clears it (SET's default), else an absolute wall-clock ms.
  std::optional<int64_t> expires_at_ms;
  bool keep_ttl = false;  // Keep the existing expiry (SET KEEPTTL); overrides expires_at_ms.
  bool get = false;       // Report the old string (SET GET): WRONGTYPE if the key is another type.
};

struct StringSetResult {
  bool written = false;
  std::optional<std::string> old;  // With `get`: the old value, nullopt when absent.
};

// What a string read-modify-write wants done (UpdateString).
struct StringUpdate {
  enum class Action : uint8_t { kKeep, kWrite, kErase } action = Action::kKeep;
  std::string value;
  std::optional<int64_t> expires_at_ms;  // nullopt: keep the key's expiry (0 clears it).
};
// Runs under the key's lock: `current` is the string (nullptr when absent); `expires_at_ms` its
// expiry (0 none). A non-OK return aborts the update and is returned. Any such callable, by
// reference (shm/function_ref.h).
using StringUpdateFn =
    FunctionRef<Status(const std::string* current, int64_t expires_at_ms, StringUpdate* update)>;

class Keyspace {
 public:
  static constexpr int kDatabases = 16;  // SELECT 0..15.
  static constexpr size_t kMaxKey = Dict::kMaxKey;
  static constexpr size_t kMaxValue = Dict::kMaxValue;

  Keyspace() = default;

  // Opens database `db` (0..kDatabases-1), creating it when missing and `mode` allows.
  static Status Open(Segment* segment, int db, Keyspace* result,
                     OpenMode mode = OpenMode::kCreateIfMissing);

  // The key's type (kNone when absent or expired).
  Status Type(std::string_view key, KeyType* type) const;

  // Strings. NotFound if absent, WrongType if the key holds another type.
  Status Get(std::string_view key, std::string* value, int64_t* expires_at_ms = nullptr) const;
  // SET and its options: a plain SET replaces a key of any type (its list or hash is deleted).
  Status Set(std::string_view key, std::string_view value, const StringSet& options,
             StringSetResult* result);
  // INCRBY: absent counts as 0; InvalidArgument "value is not an integer or out of range" when
  // the string is not a Redis-strict int64, "increment or decrement would overflow" on overflow.
  Status IncrBy(std::string_view key, int64_t by, int64_t* result);
  // A read-modify-write of the string at `key` under its lock (APPEND, SETRANGE, GETDEL, GETEX,
  // INCRBYFLOAT...). WrongType if the key holds a list or hash.
  Status UpdateString(std::string_view key, StringUpdateFn fn);

  // Generic key operations, every type alike.
  // *existed: the key was there (and is now gone).
  Status Delete(std::string_view key, bool* existed);
  // Sets the expiry to the absolute time `at_ms` if `cond` allows; a time not in the future
  // deletes the key (as Redis does). *applied: the key existed and the condition held.
  Status Expire(std::string_view key, int64_t at_ms, ExpireIf cond, bool* applied);
  // Removes the expiry; *removed: the key had one.
  Status Persist(std::string_view key, bool* removed);
  // The key's expiry: NotFound when absent; 0 when it has none.
  Status ExpiryOf(std::string_view key, int64_t* at_ms) const;
  // Moves `from` (any type, with its expiry) to `to`, replacing what `to` held unless
  // `only_if_absent` (then *renamed is false and nothing changes). NotFound when `from` is absent.
  Status Rename(std::string_view from, std::string_view to, bool only_if_absent, bool* renamed);
  // The key's version: changes with every write of the key, of any type (its list's or hash's
  // contents included, when written through a keyspace); 0 when absent. A string's is its
  // entry's version; a list's or hash's mixes its entry's with its object's write count (64-bit
  // mix: two different states share a version with probability 2^-64). What WATCH compares and
  // a transaction's read set records (issue 24).
  Status Version(std::string_view key, uint64_t* version) const;

  // Aggregates. Runs `fn` on the key's list (or hash) under the key's lock: WrongType if the key
  // holds another type. kRead and kWrite answer NotFound for an absent key without calling fn;
  // kCreate gives fn a new empty one, and is for fns that add (a push, a field set): the
  // emptiness check after it runs only when fn failed. After a kWrite or kCreate the key's version
  // moves on, a list or hash left empty is removed with its key, and a new one fn did not fill is
  // never created. `fn` must not block and must not use this keyspace.
  // `fn` is any callable, taken by reference (shm/function_ref.h): nothing is copied or
  // allocated per call.
  enum class Access : uint8_t { kRead, kWrite, kCreate };
  Status WithList(std::string_view key, Access access, FunctionRef<Status(List&)> fn);
  Status WithHash(std::string_view key, Access access, FunctionRef<Status(Dict&)> fn);

  // Replaces the key's list by `fn`'s edit of its items (LSET, LINSERT, LREM, LTRIM): the new
  // list is built aside and published by one commit of the key's entry, so a crash leaves the
  // old list or the new one, whole (at worst the unpublished copy leaks). O(length). NotFound if
  // absent, WrongType if another type; an empty result removes the key. Inside a
  // KeyspaceTransactionScope, `fn` edits the list as the transaction sees it and the result is
  // staged in the transaction (transaction.h).
  Status RewriteList(std::string_view key,
                     const std::function<Status(std::vector<std::string>* items)>& fn);

  // The bytes of the key's value: a string's length, or what its list's or hash's object holds
  // (ObjectInfo::size_bytes). NotFound when absent.
  Status Usage(std::string_view key, uint64_t* bytes) const;

  // Keys present, expired ones not yet swept included (as Redis's DBSIZE); *expiring (optional)
  // gets how many of them have an expiry (INFO keyspace's expires=). Inside a transaction
  // (shm/transaction.h), without `expiring`: the live keys as the transaction sees them; with
  // it, the committed counts (statistics, not a read of the transaction).
  Status Count(uint64_t* keys, uint64_t* expiring = nullptr) const;
  // Keys in hash order, a page at a time (SCAN, KEYS): as Dict::ListKeys; expired keys skipped.
  Status ListKeys(std::string_view prefix, size_t limit, uint64_t cursor,
                  std::vector<std::string>* keys, uint64_t* next_cursor) const;
  // Removes expired keys (and what they own): looks at a bounded sample of each shard, as Redis's
  // active expiry does. *removed gets how many. Called by the manager's tick.
  Status SweepExpired(size_t budget_per_shard, size_t* removed);
  // Deletes every key (FLUSHDB). Inside a transaction: staged, Transaction::kMaxFlushKeys at
  // most.
  Status Flush();
  // A hint for a batch of operations on `keys` that follows (Dict::Prefetch).
  void Prefetch(std::span<const std::string_view> keys) const { index_.Prefetch(keys); }
  // The same for operations on `fields` of the hash at `key` (nothing when the key holds no
  // hash): reads the key's entry to find the hash, then Dict::Prefetch on it.
  void PrefetchFields(std::string_view key, std::span<const std::string_view> fields) const;

  // Wakes every blocked pop of this database (shm/block_lines.h): the keyspace's futex word,
  // which every worker's wait hub watches. Each pop then tries its keys in its line's turn.
  void WakeBlockedPops() const;

  const ObjectRef& ref() const { return index_.ref(); }
  int db() const { return db_; }

 private:
  friend const Dict& KeyspaceIndex(const Keyspace& keyspace);  // For transactions.
  Keyspace(const Dict& index, int db) : index_(index), db_(db) {}

  template <typename Proxy>
  Status WithAggregate(std::string_view key, Access access, FunctionRef<Status(Proxy&)> fn);

  Dict index_;  // Kind kKeyspace: a dict body on the keyspace stripes.
  int db_ = 0;
};

// Blocked pops and the writes that can serve them. Every write that may make a list key non-empty
// reports the key once it committed: a push through the keyspace (WithList), a list published at
// a key whole (RENAME, and COPY, MOVE, RESTORE, LINSERT...'s lists built aside), and a push made
// to a key's list object directly (HTTP, Python: the keyspace's lists are named "redis:<db>:...").
// Only while some pop is blocked (BlockLines::AnyTaken, one load) does a report cost anything.
// By default a report wakes the database's blocked pops at once (WakeBlockedPops): they take the
// item in their line's order. A front end that serves the pops in line before it replies (the
// Redis protocol's LineService) installs a ReadyListSink around a command instead: the keys the
// command's writes reported are collected there (database, key; each once), for it to serve.
// Process-local, per thread; a sink restores the previous one when it goes.
class ReadyListSink {
 public:
  explicit ReadyListSink(std::vector<std::pair<int, std::string>>* keys);
  ~ReadyListSink();
  ReadyListSink(const ReadyListSink&) = delete;
  ReadyListSink& operator=(const ReadyListSink&) = delete;

  void Add(int db, std::string_view key);

 private:
  std::vector<std::pair<int, std::string>>* keys_;
  ReadyListSink* previous_;
};

}  // namespace shm

#endif  // SHM_KEYSPACE_H_
