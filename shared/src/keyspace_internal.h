// What a transaction (transaction.cc) needs of the keyspace's entry encoding (keyspace.cc).
#ifndef SHM_SRC_KEYSPACE_INTERNAL_H_
#define SHM_SRC_KEYSPACE_INTERNAL_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "shm/dict.h"
#include "shm/keyspace.h"
#include "shm/transaction.h"

namespace shm {

// InvalidArgument for a key longer than Keyspace::kMaxKey: every keyspace operation's first check,
// the transaction's too.
Status ValidateKeyspaceKey(std::string_view key);
// The type an entry stands for (its content type's tag).
KeyType KeyTypeOfEntry(const DictValue& entry);
KeyType KeyTypeOfEntry(const DictEntryView& entry);
// Whether an aggregate entry's list or hash still exists and is not empty (strings: true).
bool KeyEntryLive(Segment* segment, const DictValue& entry);
// Keyspace::Version of a key holding `entry`: the entry's version, mixed with its list's or
// hash's write count. Takes the registry lock on a cache miss, no object lock.
uint64_t KeyVersionOfEntry(Segment* segment, const DictValue& entry);
// Deletes the list or hash `name` (once no key names it).
void DeleteKeyAggregate(Segment* segment, const std::string& name, KeyType type);
// INCRBY's rule, one for the keyspace and its transactions: the string `current` (null for a
// missing key, which counts as 0) parsed Redis-strict, plus `by`, without overflow.
Status IncrementedValue(std::optional<std::string_view> current, int64_t by, int64_t* result);
// The keyspace's index (its dict of entries).
const Dict& KeyspaceIndex(const Keyspace& keyspace);
// The list or hash an aggregate entry names (NotFound when it is gone).
Status KeyListOf(Segment* segment, const std::string& name, List* list);
Status KeyHashOf(Segment* segment, const std::string& name, Dict* hash);
// A new, empty list or hash under a fresh name, and the entry a key naming it holds (no expiry).
// No key names it yet: the caller deletes it (DeleteKeyAggregate) if none will.
Status NewKeyList(const Keyspace& keyspace, List* list, DictValue* entry);
Status NewKeyHash(const Keyspace& keyspace, Dict* hash, DictValue* entry);
// A new list holding `items` (not empty), built whole before any key names it (RewriteList's
// replacement, in or out of a transaction), and the entry a key naming it holds (no expiry).
// On error nothing is left. No key names it yet: the caller deletes it if none will.
Status NewKeyListOf(const Keyspace& keyspace, const std::vector<std::string>& items,
                    DictValue* entry);

// A List calls this after every commit that added items (a push, a replace), outside its lock.
// Inside a keyspace's operation on the list (a ListFillScope) it only marks the scope: the
// keyspace reports the key once its own commit is done. Otherwise (HTTP, Python, any direct user
// of a key's list object, named "redis:<db>:..."), while some pop is blocked, it wakes the blocked
// pops of that database (Keyspace::WakeBlockedPops).
void NoteListFilled(const ObjectRef& list);
// A list key of `keyspace` may be non-empty now, its write committed (a transaction's push):
// its blocked pops' turn (into this thread's ReadyListSink when there is one).
void ReportListReady(const Keyspace& keyspace, std::string_view key);

// Marks, on this thread, a keyspace operation that pushes to a key's list (or builds one aside):
// pushes meanwhile set `filled` instead of waking anyone (NoteListFilled).
class ListFillScope {
 public:
  ListFillScope();
  ~ListFillScope();
  ListFillScope(const ListFillScope&) = delete;
  ListFillScope& operator=(const ListFillScope&) = delete;
  bool filled = false;

 private:
  ListFillScope* previous_;
};

// The routing of a KeyspaceTransactionScope (transaction.cc). nullptr when none is active on
// this thread.
KeyspaceTransactionScope* ActiveKeyspaceScope();
// Through the scope's transaction: the key's entry (NotFound when absent), and an update of it
// staged with Dict::Update's semantics.
Status ScopedGetEntry(KeyspaceTransactionScope* scope, const Dict& index, std::string_view key,
                      DictValue* entry);
Status ScopedUpdateEntry(KeyspaceTransactionScope* scope, const Dict& index, std::string_view key,
                         DictUpdateRef fn);
// A list or hash to delete once the scope's transaction commits.
void ScopedDeferOrphan(KeyspaceTransactionScope* scope, const std::string& name, KeyType type);
// Marks the scope unsupported() and answers Conflict: the operation cannot be staged.
Status ScopedUnsupported(KeyspaceTransactionScope* scope);
// Whether the scope's transaction staged a write (not a removal) of `key`'s entry.
bool ScopedEntryStaged(KeyspaceTransactionScope* scope, const Dict& index, std::string_view key);
// Keyspace::WithList through the scope's transaction: `fn` gets a handle whose pushes, pops
// (without a wait), length and range are staged or read there; the key is created with its
// first item and goes with its last, as outside transactions.
Status ScopedWithList(KeyspaceTransactionScope* scope, const Keyspace& keyspace,
                      std::string_view key, Keyspace::Access access, FunctionRef<Status(List&)> fn);
// Keyspace::RewriteList through the scope's transaction: `fn` edits the list as the transaction
// sees it; the result is built as a new list (NewKeyListOf) and the key's entry naming it is
// staged, the old list an orphan: one change of the record, whatever the length (the key goes
// when the result is empty). A list this transaction built already is replaced in place.
Status ScopedRewriteList(KeyspaceTransactionScope* scope, const Keyspace& keyspace,
                         std::string_view key,
                         const std::function<Status(std::vector<std::string>* items)>& fn);
// Keyspace::ListKeys and Count through the scope's transaction: the keys as it sees them (its
// staged keys laid over the committed ones, DictOverlay); the key set of every shard is recorded
// as read (a key added or removed by someone else before the commit is a Conflict).
Status ScopedListKeys(KeyspaceTransactionScope* scope, const Dict& index, std::string_view prefix,
                      size_t limit, uint64_t cursor, std::vector<std::string>* keys,
                      uint64_t* next_cursor);
Status ScopedCountKeys(KeyspaceTransactionScope* scope, const Dict& index, uint64_t* count);
// Keyspace::Flush through the scope's transaction: every key it sees staged for deletion
// (Transaction::kMaxFlushKeys at most: InvalidArgument, nothing staged, past it).
Status ScopedFlush(KeyspaceTransactionScope* scope, const Keyspace& keyspace);
// Keyspace::WithHash through the scope's transaction: `fn` gets a handle whose field reads and
// writes are read or staged there (transaction_hashes.h); the key is created with its first
// field and goes with its last, as outside transactions.
Status ScopedWithHash(KeyspaceTransactionScope* scope, const Keyspace& keyspace,
                      std::string_view key, Keyspace::Access access, FunctionRef<Status(Dict&)> fn);

}  // namespace shm

#endif  // SHM_SRC_KEYSPACE_INTERNAL_H_
