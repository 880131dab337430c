// Transaction: several operations on several objects, committed all or nothing, serializable,
// and crash-safe.
//
// Reads go to the committed state and record the version they saw; writes are staged in this
// handle and touch nothing shared until Commit. Commit then
//   1. locks every shard or object read or written, in one global order (the address of each
//      lock word in the segment, ascending), so two commits never deadlock;
//   2. checks that every version read is unchanged: otherwise Status::Conflict, nothing applied;
//   3. writes one redo record in the segment naming every staged change, and makes it count with
//      a single atomic store (the record's commit word);
//   4. applies the changes and releases the locks.
// A process killed at any instruction leaves all of the transaction visible or none of it: the
// next holder of any of its locks rolls a committed record forward (its own share of it) and
// discards an uncommitted one (docs/crash-protocol.md, "Transactions").
//
// Isolation: a committed transaction, read-only ones included, saw and changed the state of one
// instant (serializable). What reads return before a failed Commit may be inconsistent; such a
// run is thrown away (Run retries it). While a commit holds a shard, single-object operations on
// it wait (lock-free readers see a pending mark and take the lock), so no one sees part of it.
// Single-object operations on objects no transaction touches keep their speed (one relaxed load
// of the pending mark at most).
//
// Covered: registry dicts' entries (Dict), counters (Counter), registry lists' and keyspace
// lists' push and pop at both ends (List), and keyspace keys: strings, hash fields, and delete
// and rename of whole keys of every type. A key's list or hash is created with its first element
// and removed with its last, in the same commit. Not covered: arrays (NDArray), sessions, a
// registry list's middle (List::Set, Replace); their operations keep their own single-object
// atomicity and cannot join a transaction.
//
// A counter held by a commit carries a lock mark in its value for a few microseconds: plain adds
// that meet it undo themselves and wait (Counter::AfterFarValue), so a counter some transaction
// touched keeps its one-fetch_add fast path. A transaction takes a counter only while its value
// is within +-2^59, and leaves it within +-2^61 (InvalidArgument otherwise).
//
// Staged writes are seen by later reads of the same transaction (read your own writes).
// Bad input (a key too long, a value too large, a wrong type) is reported by the operation that
// stages it and aborts nothing else; Commit reports only Conflict (validation failed, nothing
// applied), Timeout (a lock not obtained in time, nothing applied), OutOfSpace, or an error of
// the segment, and in every non-OK case nothing was applied.
//
// Process-safety: a Transaction is a process-local handle used by one thread at a time; any
// number of transactions in any processes may run at once. It holds no lock between calls
// except inside Commit. Its staging is process-local memory that a thread keeps, once the
// transaction is destroyed, for the next one it begins (one spare per thread): a transaction of
// the usual size allocates nothing on the heap. Objects it names must outlive it (a deleted object
// makes Commit answer NotFound and apply nothing).
#ifndef SHM_TRANSACTION_H_
#define SHM_TRANSACTION_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "shm/counter.h"
#include "shm/dict.h"
#include "shm/keyspace.h"
#include "shm/list.h"
#include "shm/status.h"

namespace shm {

class Segment;
struct DictStripeRep;  // In the segment (layout.h).

class Transaction {
 public:
  // Limits on one transaction (bad input is refused with InvalidArgument when staged).
  // Staged writes and reads: a bound on the staging's memory (a few hundred bytes an operation
  // in the process), far above what a command or a queued batch holds (MSET of 90,000 keys in
  // a 4 MiB command); a batch past it runs under the keyspace's locks instead (docs/resp.md).
  static constexpr size_t kMaxOps = size_t{1} << 18;
  static constexpr size_t kMaxStagedBytes = size_t{64} << 20;  // Keys and values staged.
  // Keys a keyspace's flush inside a transaction (FLUSHDB in MULTI/EXEC) removes at most, on
  // top of kMaxOps: more is refused (InvalidArgument) with nothing staged.
  static constexpr size_t kMaxFlushKeys = size_t{1} << 18;

  explicit Transaction(Segment* segment);
  ~Transaction();
  Transaction(Transaction&&) noexcept;
  Transaction& operator=(Transaction&&) noexcept;
  Transaction(const Transaction&) = delete;
  Transaction& operator=(const Transaction&) = delete;

  // ---- Registry dicts' entries --------------------------------------------------------------
  // As Dict::Get, seeing this transaction's staged writes. Absence is recorded too (a later
  // insert by someone else is a conflict).
  Status Get(const Dict& dict, std::string_view key, DictValue* value);
  // As Dict::Set (mode, ttl, if_version, content type): the options are checked against the
  // state this transaction sees now and again at Commit (if_version and mode become read
  // preconditions: a failed one at Commit is Conflict). `version` is not known before Commit.
  Status Set(const Dict& dict, std::string_view key, std::string_view value,
             const SetOptions& options = {});
  // As Dict::Delete: NotFound when absent (as this transaction sees it).
  Status Delete(const Dict& dict, std::string_view key,
                std::optional<uint64_t> if_version = std::nullopt);
  // As Dict::Incr.
  Status Incr(const Dict& dict, std::string_view key, int64_t by, int64_t init, int64_t ttl_ms,
              int64_t* result);
  // A precondition without a read of the value: the entry has `version` (nullopt: is absent)
  // at Commit, else Conflict. Checked now too: Conflict at once when it already fails.
  Status Expect(const Dict& dict, std::string_view key, std::optional<uint64_t> version);

  // ---- Counters ------------------------------------------------------------------------------
  Status Get(const Counter& counter, int64_t* value);
  // Adds `delta` (InvalidArgument on overflow of the value this transaction sees).
  Status Add(const Counter& counter, int64_t delta, int64_t* new_value);
  Status Set(const Counter& counter, int64_t value);

  // ---- Registry lists ---------------------------------------------------------------------
  // A push at `end` (limits as List::Push; max_items is checked again at Commit: OutOfSpace); a
  // pop never waits: *got false when the list (as this transaction sees it) is empty; it takes
  // this transaction's own pushes at that end first. A pop, Length, and a push that reports
  // `length` are reads of the list (another write to it before Commit is a Conflict); a push
  // without `length` reads nothing. A pop also waits its turn behind blocked pops of other
  // processes (Conflict at Commit while one is in line).
  Status Push(const List& list, List::End end, std::string_view item, uint64_t* length = nullptr);
  Status Pop(const List& list, List::End end, std::string* item, bool* got);
  Status Length(const List& list, uint64_t* length);

  // ---- Keyspace keys (Redis database `keyspace.db()`) ----------------------------------------
  Status Type(const Keyspace& keyspace, std::string_view key, KeyType* type);
  // The key's version (Keyspace::Version) recorded as read: WATCH. Conflict at Commit when the
  // key was written meanwhile (any type, its list's or hash's contents included).
  Status Watch(const Keyspace& keyspace, std::string_view key, uint64_t version);
  // Strings: as the Keyspace operations of the same names.
  Status Get(const Keyspace& keyspace, std::string_view key, std::string* value);
  Status Set(const Keyspace& keyspace, std::string_view key, std::string_view value,
             const StringSet& options, StringSetResult* result);
  Status IncrBy(const Keyspace& keyspace, std::string_view key, int64_t by, int64_t* result);
  // Any type: *existed says whether the key was there.
  Status Delete(const Keyspace& keyspace, std::string_view key, bool* existed);
  // As Keyspace::Rename (any type, with its expiry), in this transaction's one commit.
  Status Rename(const Keyspace& keyspace, std::string_view from, std::string_view to,
                bool only_if_absent, bool* renamed);
  // Lists: push (creating the key), pop (removing the key with its last item; *got false when
  // absent or empty), length.
  Status Push(const Keyspace& keyspace, std::string_view key, List::End end, std::string_view item,
              uint64_t* length = nullptr);
  Status Pop(const Keyspace& keyspace, std::string_view key, List::End end, std::string* item,
             bool* got);
  Status Length(const Keyspace& keyspace, std::string_view key, uint64_t* length);
  // Hash fields: get (NotFound when absent), set (*created: the field was new), delete
  // (*existed), the last field deleted removes the key.
  Status HashGet(const Keyspace& keyspace, std::string_view key, std::string_view field,
                 std::string* value);
  Status HashSet(const Keyspace& keyspace, std::string_view key, std::string_view field,
                 std::string_view value, bool* created = nullptr);
  Status HashDelete(const Keyspace& keyspace, std::string_view key, std::string_view field,
                    bool* existed);

  // ---- Outcome ---------------------------------------------------------------------------------
  // Applies everything staged, or nothing (see the top of this file). A transaction commits at
  // most once; afterwards (whatever the outcome) it is empty again and may be reused.
  Status Commit();
  // Drops everything staged and read. Nothing shared is touched.
  void Reset();
  // Staged writes (0: a read-only transaction, whose Commit only validates).
  size_t staged_writes() const;

  // Runs fn(tx) then Commit, up to `attempts` times while either answers Conflict (a fresh
  // transaction each time). fn's own non-OK status aborts (nothing applied) and is returned;
  // after the last attempt, Conflict. A template, not a std::function: a lambda capturing more
  // than two words would be copied to the heap by every call.
  template <typename Fn>
  requires std::is_invocable_r_v<Status, Fn&, Transaction&>
  static Status Run(Segment* segment, int attempts, Fn&& fn) {
    Status last;  // Built only when needed: a Status with a message allocates it.
    for (int i = 0; i < attempts; ++i) {
      Transaction tx(segment);
      last = fn(tx);
      if (last.ok()) last = tx.Commit();
      if (!last.IsConflict()) return last;
    }
    return attempts > 0 ? last : NotAttempted();
  }

  struct State;  // Staged operations and reads (transaction.cc).

 private:
  friend struct TransactionAccess;  // The keyspace's routing into a transaction (keyspace.cc).
  void DropCreated();
  static Status NotAttempted();
  Segment* segment_ = nullptr;
  std::unique_ptr<State> state_;
};

// While one lives, this thread's Keyspace operations join `tx` (MULTI/EXEC, multi-key commands):
// the commands of strings and whole keys (get, set, incr, delete, rename, expire, ...) read
// through the transaction (recorded, seeing its staged writes) and stage their writes in it, with
// exactly their usual semantics; nothing is visible until tx.Commit(). A list's ends join too:
// WithList lends `fn` a handle whose Push, Pop (without a wait), Length and Range go through the
// transaction, and RewriteList (a list's middle, any length) stages the key naming a new list
// built with the edited items, the old one deleted after the commit; and a hash's
// fields: WithHash lends a handle whose Get, Update, Delete and Stats (its field count) go
// through it, and whose Entries and ListKeys list the hash as the transaction left it (its
// staged fields over the committed ones, in Redis's order). ListKeys, Count (without its
// expiring count) and Flush see the keys as the transaction does and record every shard's key
// set as read (a key added or removed meanwhile is a Conflict at the commit); Flush stages the
// deletion of every key (kMaxFlushKeys at most). An operation that cannot be staged (a sweep,
// replacing a list the transaction did not build) answers
// Conflict and sets unsupported(): the caller then runs the batch under a KeyspaceExclusive
// instead. Scopes do not nest. Thread-local; use from the thread that made it.
class KeyspaceTransactionScope {
 public:
  explicit KeyspaceTransactionScope(Transaction* tx);
  ~KeyspaceTransactionScope();
  KeyspaceTransactionScope(const KeyspaceTransactionScope&) = delete;
  KeyspaceTransactionScope& operator=(const KeyspaceTransactionScope&) = delete;

  // Also true once the transaction ran past its limits (kMaxOps, kMaxStagedBytes): a command
  // then answered an error for what the batch as a whole, run under the locks, can do.
  bool unsupported() const;
  // Whether a scope is active on this thread.
  static bool Active();

 private:
  friend struct TransactionAccess;
  Transaction* tx_;
  KeyspaceTransactionScope* outer_;
  bool unsupported_ = false;
};

// Holds every shard lock of one keyspace for this thread until Unlock or destruction: the
// keyspace operations this thread runs meanwhile (of every type) do not take those locks again,
// and every other process's wait, lock-free readers included. So a batch run under it is
// isolated (no one sees part of it). It is not atomic across a crash: a holder killed mid-batch
// leaves the operations it completed. What MULTI/EXEC uses for what a transaction cannot stage.
class KeyspaceExclusive {
 public:
  KeyspaceExclusive() = default;
  ~KeyspaceExclusive() { Unlock(); }
  KeyspaceExclusive(const KeyspaceExclusive&) = delete;
  KeyspaceExclusive& operator=(const KeyspaceExclusive&) = delete;

  // Timeout when a lock is not obtained in time (none held then); InvalidArgument when this
  // thread holds one already.
  Status Lock(const Keyspace& keyspace);
  void Unlock();
  // Whether this thread holds one (its operations are isolated already).
  static bool HeldByThisThread();

 private:
  Segment* segment_ = nullptr;
  std::vector<DictStripeRep*> held_;  // In lock order.
  uint64_t record_ = 0;
};

}  // namespace shm

#endif  // SHM_TRANSACTION_H_
