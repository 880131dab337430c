// ObjectRef::live: the liveness query the proxies' users need without seeing an EntryRep.
#include "object_guard.h"
#include "shm/registry.h"

namespace shm {

bool ObjectRef::live() const {
  if (!valid()) return false;
  return entry->incarnation.load(std::memory_order_acquire) == incarnation &&
         entry->state.load(std::memory_order_acquire) == static_cast<uint32_t>(EntryState::kLive) &&
         !EntryExpiredNow(entry);
}

}  // namespace shm
