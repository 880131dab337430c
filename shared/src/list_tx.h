// The list internals a transaction commit uses (transaction_lists.cc, transaction_rep.h): a read
// of a list with its write count, and the steps of one list's share of a commit. Functions marked
// "Under the lock" REQUIRE the list's entry lock (ListTxLock).
//
// A list's share in a TxRecordRep is a run of changes (TxChangeRep::erase is the tag):
//   kTxList        entry, incarnation; under the lock: body = ring, blob = head, shard = length;
//   kTxListBytes   body = the list's item bytes once the share is applied;
//   kTxPushLeft    blob = a new item, leftmost first (the record owns it until committed);
//   kTxPushRight   blob = a new item, in push order;
//   kTxPopLeft     blob = the item at head + i, filled under the lock (garbage once committed);
//   kTxPopRight    blob = the item at tail - 1 - i, filled under the lock.
// Applying it writes every slot of the positions it touches from those values alone, then head,
// tail and bytes: idempotent, so a share rolled forward twice is the share applied once. The
// committer names the record in the entry's counter_tx word while it holds the lock; the next
// holder after its death settles it (SettleListTxLocked, from the list's owner-death repair).
#ifndef SHM_SRC_LIST_TX_H_
#define SHM_SRC_LIST_TX_H_

#include <algorithm>
#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "layout.h"
#include "segment_impl.h"
#include "shm/list.h"
#include "shm/registry.h"
#include "shm/status.h"
#include "transaction_rep.h"

namespace shm {

inline constexpr uint32_t kTxList = 3;
inline constexpr uint32_t kTxListBytes = 4;
inline constexpr uint32_t kTxPushLeft = 5;
inline constexpr uint32_t kTxPushRight = 6;
inline constexpr uint32_t kTxPopLeft = 7;
inline constexpr uint32_t kTxPopRight = 8;
inline bool IsListTxTag(uint32_t tag) { return tag >= kTxList && tag <= kTxPopRight; }

struct ListTxView {
  uint64_t writes = 0;  // ListRep::writes: what a commit checks.
  uint64_t length = 0;
};
// Under the list's own lock, briefly: its write count and length and, when 0 <= index < length,
// the item at `index` (from the left) into *item.
Status ListTxRead(const ObjectRef& ref, int64_t index, ListTxView* view, std::string* item);

// Copies a range's items under List::Range's caps (kMaxRangeItems, kMaxRangeBytes; the first
// item always): the item past them sets *truncated (may be null) and ends the visit.
class RangeCollector final : public List::RangeVisitor {
 public:
  RangeCollector(std::vector<std::string>* items, bool* truncated)
      : items_(items), truncated_(truncated) {}
  void Begin(uint64_t) override {}
  bool Item(std::string_view item) override {
    if (!items_->empty() &&
        (items_->size() >= List::kMaxRangeItems || bytes_ + item.size() > List::kMaxRangeBytes)) {
      if (truncated_ != nullptr) *truncated_ = true;
      return false;
    }
    bytes_ += item.size();
    items_->emplace_back(item);
    return true;
  }

 private:
  std::vector<std::string>* items_;
  bool* truncated_;
  size_t bytes_ = 0;
};

// The changes one list's share takes in the record.
inline uint32_t ListTxChangeCount(size_t pushes, uint64_t pops) {
  return 2 + static_cast<uint32_t>(pushes + pops);
}
// Before any lock: writes the share's changes from `first` on, allocating the pushed items.
Status ListTxFillRecord(Segment::Impl* seg, TxRecordRep* rec, uint32_t first, const ObjectRef& ref,
                        const std::deque<std::string>& left, const std::deque<std::string>& right,
                        uint64_t pops_left, uint64_t pops_right);
// LRANGE's bounds on a list of `length` items: *start..*stop from the left, within the list
// (empty when *start > *stop). Lengths are < 2^28, so no overflow once clamped.
inline void ClampRange(int64_t length, int64_t* start, int64_t* stop) {
  if (*start < 0) *start = std::max<int64_t>(*start, -length) + length;
  if (*stop < 0) *stop = std::max<int64_t>(*stop, -length - 1) + length;
  *stop = std::min(*stop, length - 1);
}
// LRANGE's rule on a list of `length` items, the one List::Range and a transaction's view of a
// list it changed both use: ClampRange's bounds, RangeCollector's caps. item_at(i) returns the
// i-th item (a string_view).
template <typename ItemAt>
void CollectRange(int64_t length, int64_t start, int64_t stop, ItemAt&& item_at,
                  std::vector<std::string>* items, bool* truncated) {
  ClampRange(length, &start, &stop);
  RangeCollector collector(items, truncated);
  for (int64_t i = start; i <= stop && collector.Item(item_at(i)); ++i) {
  }
}

// Takes the list's lock as every list operation does (settling a dead holder's work first).
// NotFound when the list was deleted or expired, Timeout; the lock is not held then.
Status ListTxLock(const ObjectRef& ref);
void ListTxUnlock(const ObjectRef& ref);
// Under the lock: the list still has the write count the transaction read (when it read it:
// else Conflict), no older waiter of another process is in line for its pops (else Conflict),
// max_items holds (else OutOfSpace). *grow_to > 0 when the ring needs that many slots first
// (nothing filled then); else fills the header and the popped items' handles. With `rec`
// nullptr (a list only read), checks the write count alone.
Status ListTxPrepareLocked(const ObjectRef& ref, std::optional<uint64_t> writes_seen,
                           TxRecordRep* rec, uint32_t first, uint64_t* grow_to);
// Under the lock, before the commit word: counts the write (ListRep::writes and, for a key's
// list, EntryRep::keyspace_writes) so that readers of the old state conflict.
void ListTxCountWriteLocked(const ObjectRef& ref, bool keyspace);
// Under the lock: applies the share at `first` of a committed record. Whether blocked pops
// should be woken (the list has items and waiters).
bool ListTxApplyLocked(Segment::Impl* seg, const TxRecordRep* rec, uint32_t first);
// Without locks: gives the list a ring of `capacity` slots at least.
Status ListTxGrow(const ObjectRef& ref, uint64_t capacity);
// Under the lock, after an owner death: settles the record entry->counter_tx names (applies
// this list's share if committed), clears the word, frees the record with its last share.
void SettleListTxLocked(Segment::Impl* seg, EntryRep* entry);

}  // namespace shm

#endif  // SHM_SRC_LIST_TX_H_
