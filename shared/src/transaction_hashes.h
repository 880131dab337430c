// A key's hash lent to a keyspace command inside a transaction (Dict::tx_, set by
// ScopedWithHash): the Dict operations the hash commands use route here, so each command keeps
// its one implementation (its DictUpdateFn: HINCRBY's rule, HSETNX's) and stages its writes in
// the transaction. `hash` is the unbound handle. A field's read is recorded (a write by someone
// else before the commit is a Conflict); the hash's field count is read through the key's
// version, which counts every write of the hash's contents.
#ifndef SHM_SRC_TRANSACTION_HASHES_H_
#define SHM_SRC_TRANSACTION_HASHES_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "shm/dict.h"
#include "shm/status.h"

namespace shm {

class Transaction;

// As Dict::Get, seeing the transaction's staged fields.
Status TxHashGet(Transaction* tx, const Dict& hash, std::string_view field, DictValue* value);
// As Dict::Update: `fn` sees the field as the transaction does; what it writes (or erases) is
// staged. Expiry and content type of a field are not staged (hash fields have none).
Status TxHashUpdate(Transaction* tx, const Dict& hash, std::string_view field, DictUpdateRef fn);
// As Dict::Delete (NotFound when absent, as the transaction sees it).
Status TxHashDelete(Transaction* tx, const Dict& hash, std::string_view field);
// As Dict::Stats, of which only `entries` is filled: the fields as the transaction sees them.
Status TxHashStats(Transaction* tx, const Dict& hash, DictStats* stats);
// As Dict::Entries and Dict::ListKeys, of the hash as the transaction sees it: the committed
// fields with its staged writes laid over them (DictOverlay: in Redis's order, as the commit will
// leave them). The key's version, read already, covers the committed fields: a write of the hash
// by someone else before the commit is a Conflict.
Status TxHashEntries(Transaction* tx, const Dict& hash, bool with_values,
                     std::vector<DictItem>* items);
Status TxHashListKeys(Transaction* tx, const Dict& hash, std::string_view prefix, size_t limit,
                      uint64_t cursor, std::vector<std::string>* keys, uint64_t* next_cursor);
// What a lent hash cannot stage (Set, Incr, Read): Conflict marking the scope unsupported.
Status TxHashUnsupported();

}  // namespace shm

#endif  // SHM_SRC_TRANSACTION_HASHES_H_
