#include "shm/counter.h"

#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <string>
#include <thread>

#include "counter_rule.h"
#include "layout.h"
#include "object_guard.h"
#include "segment_impl.h"
#include "shm/integer.h"
#include "transaction_rep.h"

namespace shm {
namespace {

bool NearLimits(int64_t value) {
  return value >= (int64_t{1} << 61) || value <= -(int64_t{1} << 61);
}

}  // namespace

Status CounterSum(int64_t value, int64_t delta, int64_t* next) {
  if (AddInt64(value, delta, next)) return Status::OK();
  return Status::InvalidArgument("counter overflow: " + std::to_string(value) + " + " +
                                 std::to_string(delta) + " does not fit in int64");
}

Counter::Counter(const ObjectRef& ref)
    : ref_(ref), value_(&ref.entry->counter), fast_tag_(&ref.entry->counter_fast_tag) {}

Status Counter::Open(Segment* segment, std::string_view name, const Options& options,
                     Counter* result, bool* created) {
  Registry::OpenSpec spec;
  spec.kind = ObjectKind::kCounter;
  spec.mode = options.mode;
  spec.ttl_ms = options.ttl_ms;
  spec.counter_init = options.init;
  spec.created = created;
  ObjectRef ref;
  SHM_RETURN_IF_ERROR(segment->registry().Open(name, spec, &ref));
  *result = Counter(ref);
  return Status::OK();
}

// Entries are never freed and are reused last-in-line (FIFO), so a handle that passes this check
// touches at worst the word of a counter deleted an instant ago, never freed memory.
Status Counter::CheckLive() const {
  if (!ref_.valid()) return Status::InvalidArgument("counter handle is not open");
  const EntryRep* e = ref_.entry;
  if (e->incarnation.load(std::memory_order_acquire) != ref_.incarnation ||
      e->state.load(std::memory_order_acquire) != static_cast<uint32_t>(EntryState::kLive)) {
    return Status::NotFound("counter was deleted");
  }
  if (e->expires_at_ms.load(std::memory_order_relaxed) != 0 && EntryExpired(e, WallNowMs())) {
    return Status::NotFound("counter has expired");
  }
  return Status::OK();
}

Status Counter::WaitForTx() const {
  EntryRep* e = ref_.entry;
  if (e->counter_tx.load(std::memory_order_seq_cst) == 0) return Status::OK();
  const auto deadline = std::chrono::steady_clock::now() + kDefaultLockTimeout;
  for (int spins = 0;; ++spins) {
    const uint64_t record = e->counter_tx.load(std::memory_order_seq_cst);
    if (record == 0) return Status::OK();
    if (SettleCounterTxIfOwnerDied(ref_.segment->impl(), e, record)) continue;
    if (std::chrono::steady_clock::now() > deadline) {
      return Status::Timeout("counter is held by a transaction commit; try again");
    }
    // A commit holds a counter for microseconds: yield, then sleep a little.
    if (spins < 64) {
      std::this_thread::yield();
    } else {
      std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
  }
}

Status Counter::Get(int64_t* value) const {
  SHM_RETURN_IF_ERROR(CheckLive());
  for (;;) {
    const int64_t seen = ref_.entry->counter.load(std::memory_order_acquire);
    if (seen < kMaybeTxLocked) {
      *value = seen;
      return Status::OK();
    }
    // Held by a transaction (wait), or a value that large (it stays put: answer it).
    if (ref_.entry->counter_tx.load(std::memory_order_seq_cst) == 0) {
      if (ref_.entry->counter.load(std::memory_order_acquire) == seen) {
        *value = seen;
        return Status::OK();
      }
      continue;
    }
    SHM_RETURN_IF_ERROR(WaitForTx());
  }
}

Status Counter::Set(int64_t value) {
  SHM_RETURN_IF_ERROR(CheckLive());
  if (NearLimits(value)) MarkSlowPath();
  std::atomic<int64_t>& word = ref_.entry->counter;
  for (;;) {
    SHM_RETURN_IF_ERROR(WaitForTx());
    int64_t seen = word.load(std::memory_order_acquire);
    // A commit that takes the counter meanwhile changes the word: the exchange fails.
    if (ref_.entry->counter_tx.load(std::memory_order_seq_cst) != 0) continue;
    if (word.compare_exchange_strong(seen, value, std::memory_order_acq_rel)) {
      return Status::OK();
    }
  }
}

Status Counter::AfterFarValue(int64_t old_value, int64_t delta, int64_t* new_value) {
  if (old_value < kMaybeTxLocked) {  // Near the limits: the CAS loop from now on.
    MarkSlowPath();
    *new_value = old_value + delta;
    return Status::OK();
  }
  // Maybe a transaction's lock: take the add back (adds commute, so whatever happened meanwhile
  // stays right) and do it again on the careful path.
  value_->fetch_sub(delta, std::memory_order_acq_rel);
  if (ref_.entry->counter_tx.load(std::memory_order_seq_cst) == 0) MarkSlowPath();
  return AddSlow(delta, new_value);
}

void Counter::MarkSlowPath() { fast_tag_->store(0, std::memory_order_relaxed); }

Status Counter::AddSlow(int64_t delta, int64_t* new_value) {
  SHM_RETURN_IF_ERROR(CheckLive());
  std::atomic<int64_t>& word = *value_;
  int64_t seen = 0;
  int64_t next = 0;
  for (bool done = false; !done;) {
    SHM_RETURN_IF_ERROR(WaitForTx());
    seen = word.load(std::memory_order_relaxed);
    // A commit that takes the counter after this check changes the word: the exchange fails.
    while (ref_.entry->counter_tx.load(std::memory_order_seq_cst) == 0) {
      SHM_RETURN_IF_ERROR(CounterSum(seen, delta, &next));
      if (word.compare_exchange_weak(seen, next, std::memory_order_acq_rel)) {
        done = true;
        break;
      }
    }
  }
  if (NearLimits(next)) MarkSlowPath();
  *new_value = next;
  return Status::OK();
}

Status Counter::CompareAndSet(int64_t expected, int64_t desired, int64_t* actual) {
  SHM_RETURN_IF_ERROR(CheckLive());
  int64_t seen = expected;
  bool swapped = false;
  for (;;) {
    SHM_RETURN_IF_ERROR(WaitForTx());
    seen = expected;
    swapped = ref_.entry->counter.compare_exchange_strong(seen, desired, std::memory_order_acq_rel);
    // A failure that saw a transaction's lock says nothing of the value: wait and try again.
    if (swapped || seen < kMaybeTxLocked || ref_.entry->counter_tx.load() == 0) break;
  }
  if (swapped && NearLimits(desired)) MarkSlowPath();
  if (actual != nullptr) *actual = swapped ? desired : seen;
  if (!swapped) {
    return Status::Conflict("counter is " + std::to_string(seen) + ", expected " +
                            std::to_string(expected));
  }
  return Status::OK();
}

}  // namespace shm
