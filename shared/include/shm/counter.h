// Counter: a named signed 64-bit integer that any worker can change atomically.
//
// Every operation is one atomic read-modify-write on the word in the segment, so a process killed
// at any instruction leaves either the old or the new value, never a torn one, and nothing to
// repair. Overflow is an error (InvalidArgument), never a silent wrap.
//
// Process-safety: a Counter is a cheap process-local handle; copy it freely and use it from any
// thread. It never lives in shared memory. Once the counter is deleted (or expires), every call
// answers NotFound; open it again to get the new incarnation.
#ifndef SHM_COUNTER_H_
#define SHM_COUNTER_H_

#include <atomic>
#include <cstdint>
#include <string_view>

#include "shm/registry.h"
#include "shm/status.h"

namespace shm {

class Counter {
 public:
  struct Options {
    OpenMode mode = OpenMode::kOpenExisting;
    int64_t init = 0;    // Value of a counter this call creates.
    int64_t ttl_ms = 0;  // Expiry of a counter this call creates; 0 = never.
  };

  Counter() = default;

  static Status Open(Segment* segment, std::string_view name, const Options& options,
                     Counter* result, bool* created = nullptr);

  Status Get(int64_t* value) const;
  Status Set(int64_t value);
  // Adds `delta` and returns the new value. InvalidArgument on overflow (value unchanged).
  // The common case is inline: one check of words no one writes, then one fetch_add.
  Status Add(int64_t delta, int64_t* new_value) {
    if (FastAddAllowed(delta)) {
      int64_t old_value = value_->fetch_add(delta, std::memory_order_acq_rel);
      if (old_value >= kSlowPathAt || old_value <= -kSlowPathAt) {
        return AfterFarValue(old_value, delta, new_value);
      }
      *new_value = old_value + delta;
      return Status();
    }
    return AddSlow(delta, new_value);
  }
  // Sets `desired` if the value is `expected`. Conflict otherwise; `actual` gets the value seen.
  Status CompareAndSet(int64_t expected, int64_t desired, int64_t* actual);

  const ObjectRef& ref() const { return ref_; }

 private:
  // While the value stays within +-kSlowPathAt, a fetch_add with |delta| < kMaxFastDelta cannot
  // overflow, even with every thread of the machine adding between check and add. The first add
  // that sees the value past the threshold switches the counter to a CAS loop for good.
  static constexpr int64_t kSlowPathAt = int64_t{1} << 61;
  static constexpr int64_t kMaxFastDelta = int64_t{1} << 32;

  // A transaction commit holding the counter (shm/transaction.h) adds kTxLock to its value, which
  // it takes only while |value| < kTxLockableBelow: a held value is above kMaybeTxLocked, where
  // no value a fast add can meet lies. A fast add that lands on one undoes itself and waits.
 public:
  static constexpr int64_t kTxLock = int64_t{1} << 62;
  static constexpr int64_t kTxLockableBelow = int64_t{1} << 59;
  static constexpr int64_t kMaybeTxLocked = (int64_t{3} << 60);
  // A transaction may leave a counter at most this far from 0 (so a settled one never looks held).
  static constexpr int64_t kTxMaxValue = int64_t{1} << 61;

 private:
  explicit Counter(const ObjectRef& ref);
  // A fast add that met a value past kSlowPathAt: near the limits (switch to the slow path for
  // good), or held by a transaction (undo, then the slow path, which waits for it).
  Status AfterFarValue(int64_t old_value, int64_t delta, int64_t* new_value);
  // Waits until no transaction holds the counter (settling one whose committer died).
  Status WaitForTx() const;
  bool FastAddAllowed(int64_t delta) const {
    return fast_tag_ != nullptr && fast_tag_->load(std::memory_order_relaxed) == ref_.incarnation &&
           delta > -kMaxFastDelta && delta < kMaxFastDelta;
  }
  void MarkSlowPath();
  Status AddSlow(int64_t delta, int64_t* new_value);
  // NotFound once the object this handle opened is gone or expired.
  Status CheckLive() const;

  ObjectRef ref_;
  // Words of this counter's entry in this process's mapping (never stored in shared memory).
  std::atomic<int64_t>* value_ = nullptr;
  std::atomic<uint64_t>* fast_tag_ = nullptr;  // EntryRep::counter_fast_tag.
};

}  // namespace shm

#endif  // SHM_COUNTER_H_
