// A transaction's staged list operations (transaction.cc): what it pushed and popped at each end
// of each list, and the list as the transaction sees it. The commit writes them as each list's
// share of the redo record (list_tx.h).
#ifndef SHM_SRC_TRANSACTION_LISTS_H_
#define SHM_SRC_TRANSACTION_LISTS_H_

#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "shm/list.h"
#include "shm/status.h"

namespace shm {

struct EntryRep;

// One list as a transaction sees it: the committed items it has not popped, between the items
// it pushed on the left and on the right. Pops take from the nearest staged pushes first.
struct TxListOp {
  List list;
  bool keyspace = false;                // A key's list: the commit counts keyspace_writes too.
  std::optional<uint64_t> writes_seen;  // Set once read (a commit checks it); unset: blind pushes.
  uint64_t length = 0;                  // Committed length when read.
  uint64_t pops_left = 0, pops_right = 0;  // Committed items popped at each end.
  std::deque<std::string> left, right;     // Staged pushes, leftmost first.

  uint64_t ViewLength() const {
    return length - pops_left - pops_right + left.size() + right.size();
  }
  uint64_t Changes() const { return left.size() + right.size() + pops_left + pops_right; }
};

class TxLists {
 public:
  using Key = std::pair<const EntryRep*, uint64_t>;  // Entry and incarnation: lock order.

  // The list's op, made on first use.
  TxListOp* Of(const List& list);
  // Reads the committed length and write count once (a second read that differs: Conflict).
  Status EnsureRead(TxListOp* op);
  Status Push(TxListOp* op, List::End end, std::string_view item, uint64_t* length);
  Status Pop(TxListOp* op, List::End end, std::string* item, bool* got);
  Status Length(TxListOp* op, uint64_t* length);
  // Every item of the list as this transaction sees it, in order (the committed ones read now
  // and checked unchanged, as Pop's).
  Status View(TxListOp* op, std::vector<std::string>* items);
  // Drops the op's staged pushes and pops: the list is only read (its write count checked at
  // the commit), as when a middle edit replaced it by another list.
  void KeepReadOnly(TxListOp* op);
  // Forgets the op altogether (a list no one else sees, replaced in place).
  void Drop(TxListOp* op);
  // As List::Range, of the list as this transaction sees it.
  Status Range(TxListOp* op, int64_t start, int64_t stop, std::vector<std::string>* items,
               bool* truncated);

  std::map<Key, TxListOp>& ops() { return ops_; }
  bool empty() const { return ops_.empty(); }
  void clear() { ops_.clear(); }
  size_t staged() const;  // Pushes and pops staged.

 private:
  std::map<Key, TxListOp> ops_;
};

// A List handle lent to a keyspace command inside a transaction (List::tx_) routes here: its
// range, and what it cannot stage (Conflict, marking the thread's scope unsupported).
Status TxListRange(Transaction* tx, const List& list, int64_t start, int64_t stop,
                   std::vector<std::string>* items, bool* truncated);
// List::Replace of a lent list: in place when the transaction built the list (a key it created,
// COPY/MOVE/RESTORE), as the list's own replace (`expected` compared with the transaction's
// view); else what cannot be staged.
Status TxListReplace(Transaction* tx, const List& list, const std::vector<std::string>* expected,
                     const std::vector<std::string>& items, bool* swapped);
Status TxListUnsupported();

}  // namespace shm

#endif  // SHM_SRC_TRANSACTION_LISTS_H_
