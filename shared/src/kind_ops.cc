#include "kind_ops.h"

namespace shm {
namespace {

void DestroyNothing(Segment::Impl*, uint64_t) {}

void CounterUsage(Segment::Impl*, const EntryRep* entry, ObjectInfo* info) {
  info->size_bytes = sizeof(int64_t);
  info->counter_value = entry->counter.load(std::memory_order_acquire);
}

}  // namespace

// Counters keep their value in the entry itself: no body, nothing to repair.
const KindOps kCounterOps = {nullptr, DestroyNothing, nullptr, nullptr, CounterUsage};
// So do process locks (process_lock_rep.h): one word, nothing to repair or free.
const KindOps kProcessLockOps = {nullptr, DestroyNothing, nullptr, nullptr, nullptr};

const KindOps& KindOpsFor(ObjectKind kind) {
  static const KindOps kNoOps = {nullptr, DestroyNothing};
  switch (kind) {
    case ObjectKind::kCounter:
      return kCounterOps;
    case ObjectKind::kDict:
    case ObjectKind::kSessions:
      return kDictOps;
    case ObjectKind::kList:
      return kListOps;
    case ObjectKind::kLock:
      return kLockOps;
    case ObjectKind::kArray:
      return kArrayOps;
    case ObjectKind::kKeyspace:
      return kKeyspaceOps;
    case ObjectKind::kProcessLock:
      return kProcessLockOps;
    case ObjectKind::kNone:
      break;
  }
  return kNoOps;
}

}  // namespace shm
