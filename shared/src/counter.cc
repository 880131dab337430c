#include "shm/counter.h"

#include <string>

#include "layout.h"
#include "object_guard.h"
#include "shm/integer.h"

namespace shm {
namespace {

bool NearLimits(int64_t value) {
  return value >= (int64_t{1} << 61) || value <= -(int64_t{1} << 61);
}

Status Overflow(int64_t value, int64_t delta) {
  return Status::InvalidArgument("counter overflow: " + std::to_string(value) + " + " +
                                 std::to_string(delta) + " does not fit in int64");
}

}  // namespace

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

Status Counter::Get(int64_t* value) const {
  SHM_RETURN_IF_ERROR(CheckLive());
  *value = ref_.entry->counter.load(std::memory_order_acquire);
  return Status::OK();
}

Status Counter::Set(int64_t value) {
  SHM_RETURN_IF_ERROR(CheckLive());
  if (NearLimits(value)) MarkSlowPath();
  ref_.entry->counter.store(value, std::memory_order_release);
  return Status::OK();
}

void Counter::MarkSlowPath() { fast_tag_->store(0, std::memory_order_relaxed); }

Status Counter::AddSlow(int64_t delta, int64_t* new_value) {
  SHM_RETURN_IF_ERROR(CheckLive());
  std::atomic<int64_t>& word = *value_;
  int64_t seen = word.load(std::memory_order_relaxed);
  int64_t next = 0;
  do {
    if (!AddInt64(seen, delta, &next)) return Overflow(seen, delta);
  } while (!word.compare_exchange_weak(seen, next, std::memory_order_acq_rel));
  if (NearLimits(next)) MarkSlowPath();
  *new_value = next;
  return Status::OK();
}

Status Counter::CompareAndSet(int64_t expected, int64_t desired, int64_t* actual) {
  SHM_RETURN_IF_ERROR(CheckLive());
  int64_t seen = expected;
  bool swapped =
      ref_.entry->counter.compare_exchange_strong(seen, desired, std::memory_order_acq_rel);
  if (swapped && NearLimits(desired)) MarkSlowPath();
  if (actual != nullptr) *actual = swapped ? desired : seen;
  if (!swapped) {
    return Status::Conflict("counter is " + std::to_string(seen) + ", expected " +
                            std::to_string(expected));
  }
  return Status::OK();
}

}  // namespace shm
