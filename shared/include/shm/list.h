// List: a named deque of byte strings with Redis LPUSH/RPUSH/LPOP/RPOP/LLEN/LRANGE semantics; a
// pop can block until another process pushes.
//
// Every push and pop commits by publishing one word under the list's robust lock, so a process
// killed at any instruction leaves each acknowledged item exactly once and the in-flight one
// either fully present or absent; the next process to take the lock repairs the rest.
//
// Arrival order: pops that wait take a place in the list's line, kept in the segment, and a
// waiting pop gets an item only when no older waiter of any process is in line. A pop without a
// place (one that does not wait, one tried by a front end that keeps no place, a wait that found
// the line full) gets one only when no waiter is in line or the oldest is of its own process,
// whose front end orders its own pops (a worker's WaitQueue). So waiters are served first come,
// first served across processes. A waiter whose process died, or whose deadline passed, loses
// its place at once (see ListPlace).
//
// Process-safety: a List is a cheap process-local handle; copy it freely and use it from any
// thread. It never lives in shared memory. Once the list is deleted (or expires), every call
// answers NotFound and blocked pops wake up with NotFound.
#ifndef SHM_LIST_H_
#define SHM_LIST_H_

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "shm/limits.h"
#include "shm/registry.h"
#include "shm/status.h"

namespace shm {

class Transaction;

// Limits of a list, fixed when it is created (opening an existing list keeps its own).
struct ListOptions {
  uint64_t max_items = uint64_t{1} << 20;       // 1 .. List::kMaxItemsLimit.
  uint64_t max_item_bytes = uint64_t{1} << 20;  // 1 .. List::kMaxItemBytesLimit.
};

class List;

// A waiting pop's place in a list's line (arrival order across processes). A caller that waits
// across several Pop calls (a parked wait retried on an event loop, a wait cut into slices) keeps
// one ListPlace for the whole wait: it joins the line at its first Pop (or Join) and leaves it
// when a Pop gets an item, on Leave, or when destroyed. A place is void once `deadline` passes or
// its process is gone (a process that is a zombie still counts: its parent must reap it).
// It must not outlive the Segment of the list it is in; a Pop in another segment (a caller that
// followed the state into a new generation) forgets the old place without touching it.
// Thread-compatible: one waiter uses it. Process-local.
class ListPlace {
 public:
  explicit ListPlace(std::chrono::steady_clock::time_point deadline) : deadline_(deadline) {}
  ~ListPlace() { Leave(); }
  ListPlace(const ListPlace&) = delete;
  ListPlace& operator=(const ListPlace&) = delete;

  // Gives the place up (best effort: a list already gone has no line).
  void Leave();
  // Whether the place is in a line (false before joining, after leaving, or when it found the
  // line full).
  bool in_line() const { return ticket_ != 0; }
  uint64_t ticket() const { return ticket_; }

 private:
  friend class List;
  std::chrono::steady_clock::time_point deadline_;
  ObjectRef ref_;  // The list whose line it is in.
  uint64_t ticket_ = 0;
  uint32_t slot_ = 0;
};

class List {
 public:
  // Places in one list's line; waiters beyond it wait as pops that do not wait.
  static constexpr size_t kLineSlots = 64;

  enum class End { kLeft, kRight };

  static constexpr uint64_t kMaxItemsLimit = limits::kMaxListItems;
  static constexpr uint64_t kMaxItemBytesLimit = limits::kMaxListItemBytes;
  // Range returns at most this many items and bytes (but always at least one item).
  static constexpr size_t kMaxRangeItems = limits::kMaxPage;
  static constexpr size_t kMaxRangeBytes = limits::kMaxValue;
  // Longest a Pop may block.
  static constexpr std::chrono::milliseconds kMaxWait = std::chrono::hours(24);

  List() = default;

  static Status Open(Segment* segment, std::string_view name, OpenMode mode,
                     const ListOptions& options, List* result, bool* created = nullptr);

  // Adds `item` at `end`; `length` (optional) gets the new length. OutOfSpace when the list holds
  // max_items or the segment is full; InvalidArgument past max_item_bytes. Either way the list is
  // unchanged.
  Status Push(End end, std::string_view item, uint64_t* length = nullptr);
  // Removes the item at `end` into `item`. When the list is empty (or older waiters are in line),
  // blocks up to `wait` for a push; `got` is false when the wait ran out (the status is still OK).
  // A pop with `wait` > 0 waits in line (in its own place, or in `place` when given); with
  // `place`, the pop takes its turn as that place, joining the line first if it is not in it,
  // and the place stays in line when `got` is false.
  Status Pop(End end, std::chrono::milliseconds wait, std::string* item, bool* got,
             ListPlace* place = nullptr);
  // Puts `place` in this list's line now (at the back) unless it is in it already, leaving any
  // other line it was in. OK with place->in_line() false when the line is full.
  Status Join(ListPlace* place);
  Status Length(uint64_t* length) const;
  // Items start..stop inclusive, as LRANGE: negative indices count from the end (-1 is the last
  // item), out-of-range bounds are clamped, start > stop is empty. At most kMaxRangeItems items
  // and kMaxRangeBytes bytes; `truncated` (optional) tells whether the range was cut short.
  Status Range(int64_t start, int64_t stop, std::vector<std::string>* items,
               bool* truncated = nullptr) const;
  // Every item, left to right, appended to *items: Range's chunks one after another, so without
  // its bounds (a list a command rewrites or copies whole).
  Status All(std::vector<std::string>* items) const;

  // Index access for sequence front ends (shmstate.Manager().list()).
  //
  // Replaces the item at `index` (negative counts from the end, as in Python): one slot publish,
  // like a push. NotFound ("list index out of range") when there is no such item.
  Status Set(int64_t index, std::string_view item);
  // Replaces the whole content by `items` in one commit (a new ring, published with one store;
  // the old ring and its items are then garbage), if the list still holds exactly `*expected`
  // (nullptr: unconditionally); `swapped` says whether it did. Inserts, deletes, sorts and
  // slice assignments of a front end are read, compute, Replace: a compare-and-set on the
  // content, so a concurrent push is never lost. OutOfSpace past max_items, InvalidArgument
  // past max_item_bytes; the list is unchanged then.
  Status Replace(const std::vector<std::string>* expected, const std::vector<std::string>& items,
                 bool* swapped);

  // The items this handle's last successful Pop left, as the list's lock saw them; 0 when that
  // left the list empty, or when unknown (no pop yet, a pop through a transaction, a Replace
  // since). A hint for a caller that must know whether its pops emptied the list (a key's list
  // goes with its last item): above 0, they did not, and no second lock is needed to say so.
  uint64_t left_by_last_pop() const { return left_by_last_pop_; }

  const ObjectRef& ref() const { return ref_; }
  uint64_t max_items() const { return max_items_; }
  uint64_t max_item_bytes() const { return max_item_bytes_; }

  // What VisitRange calls: Begin once with the number of items, then Item for each in order
  // (false stops the visit). A view is valid only during its call.
  class RangeVisitor {
   public:
    virtual void Begin(uint64_t count) = 0;
    virtual bool Item(std::string_view item) = 0;

   protected:
    ~RangeVisitor() = default;
  };
  // Items start..stop as Range counts them, without its kMaxRange limits and without copying
  // them: the visitor sees the list of one instant, under its lock (LRANGE writes its reply from
  // there). The visitor must not use this list or block. Inside a transaction (a handle lent by
  // Keyspace::WithList), the list as the transaction sees it, copied once.
  Status VisitRange(int64_t start, int64_t stop, RangeVisitor* visitor) const;

 private:
  List(const ObjectRef& ref, uint64_t max_items, uint64_t max_item_bytes)
      : ref_(ref), max_items_(max_items), max_item_bytes_(max_item_bytes) {}

  Status DoPush(End end, std::string_view item, uint64_t* length);
  Status DoPop(End end, std::chrono::milliseconds wait, std::string* item, bool* got,
               ListPlace* place);
  Status DoRange(int64_t start, int64_t stop, std::vector<std::string>* items,
                 bool* truncated) const;
  Status DoVisitRange(int64_t start, int64_t stop, RangeVisitor* visitor) const;
  void LeaveOtherLine(ListPlace* place) const;
  Status DoSet(int64_t index, std::string_view item);
  Status DoReplace(const std::vector<std::string>* expected, const std::vector<std::string>& items,
                   bool* swapped);
  // Replaces the ring by one of `capacity` slots if that is still what the list needs (with
  // `at_least`: if its ring has fewer slots).
  Status ResizeRing(uint64_t capacity, bool at_least = false);
  friend struct ListTxAccess;  // A transaction's commit (list_tx.h).
  // Lends a handle to a keyspace command inside a transaction (KeyspaceTransactionScope).
  friend void BindListToTransaction(List* list, Transaction* tx);

  ObjectRef ref_;
  uint64_t max_items_ = 0;  // Copied from the list at Open: constant per incarnation.
  uint64_t max_item_bytes_ = 0;
  // Set on a handle lent to a keyspace command inside a transaction: Push, Pop (without a wait),
  // Length and Range go through the transaction; what it cannot stage answers Conflict and
  // marks the scope unsupported.
  Transaction* tx_ = nullptr;
  uint64_t left_by_last_pop_ = 0;
};

}  // namespace shm

#endif  // SHM_LIST_H_
