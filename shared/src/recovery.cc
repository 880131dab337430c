// Segment::RecoverDeadProcess: what the manager does for a process that died (a worker it
// reaped, an attached client that is gone). See docs/crash-protocol.md, "The manager's recovery
// of a dead process".
#include "blob_cache.h"
#include "cow.h"
#include "dict_rep.h"
#include "kind_ops.h"
#include "layout.h"
#include "list_rep.h"
#include "object_guard.h"
#include "segment_impl.h"
#include "shm/block_lines.h"
#include "shm/client_table.h"
#include "shm/registry.h"
#include "shm/segment.h"

namespace shm {
namespace {

// The dead process's places in the lines of waiting pops: anyone who sees its pid gone already
// skips them; this frees them before the pid can be reused.
Status DropLinePlaces(Segment::Impl* impl, pid_t pid) {
  const uint32_t capacity = impl->root()->registry.capacity;
  for (uint32_t i = 0; i < capacity; ++i) {
    EntryRep* entry = impl->Entry(i);
    if (entry->state.load() != static_cast<uint32_t>(EntryState::kLive) ||
        entry->kind.load() != static_cast<uint32_t>(ObjectKind::kList)) {
      continue;
    }
    ObjectGuard guard;
    SHM_RETURN_IF_ERROR(guard.LockEntry(impl, entry));
    // Deleted or reused meanwhile: only a live list has a line.
    if (entry->state.load() == static_cast<uint32_t>(EntryState::kLive) &&
        entry->kind.load() == static_cast<uint32_t>(ObjectKind::kList) && entry->body.load() != 0) {
      DropListPlacesOf(impl, entry, pid);
    }
  }
  return Status::OK();
}

}  // namespace

Status Segment::RecoverDeadProcess(pid_t pid, RecoveryReport* report) {
  RecoveryReport local;
  if (report == nullptr) report = &local;
  Impl* impl = impl_.get();
  for (IntentSlot& slot : impl->root()->intents) {
    if (slot.owner_pid.load() != pid) continue;
    if (slot.in_cs.load()) {
      // Taking the lock runs the owner-death repair, which resolves this slot.
      uint64_t entry = slot.entry.load();
      if (entry == 0) {
        RegistryGuard guard;
        SHM_RETURN_IF_ERROR(guard.Lock(impl));
        ResolveIntentsLocked(impl, 0);
      } else if (IsStripeLockWord(entry)) {
        SHM_RETURN_IF_ERROR(SettleDictStripe(impl, entry));  // Stripes are never freed.
      } else {
        ObjectGuard guard;
        SHM_RETURN_IF_ERROR(guard.LockEntry(impl, impl->Ptr<EntryRep>(entry)));
        ResolveIntentsLocked(impl, entry);
      }
      ++report->intents_resolved;  // By the lock's owner-death repair, or just now.
    }
    // A handle recorded while it was also the head of a cache class (a death inside
    // BlobCache::Take or Put) is the cache's: DropSlotCache frees it below.
    uint64_t unpublished = slot.new_off.exchange(0);
    if (IsBlob(unpublished) && !SlotCacheHolds(impl, slot, unpublished)) {
      impl->Free(unpublished);
      ++report->blobs_freed;
    }
    uint64_t replaced = slot.old_off.exchange(0);
    auto replaced_kind = static_cast<ObjectKind>(slot.old_kind.exchange(0));
    if (IsBlob(replaced) && !SlotCacheHolds(impl, slot, replaced)) {
      impl->NoteReclaim(slot.entry.load());
      // A whole object body (a delete that died) is freed with everything it owns.
      if (replaced_kind != ObjectKind::kNone) {
        KindOpsFor(replaced_kind).destroy(impl, replaced);
      } else {
        impl->Free(replaced);
      }
      ++report->blobs_freed;
    }
    report->cached_blocks_freed += DropSlotCache(impl, slot);
    ReleaseIntentSlot(impl, slot, /*owner_alive=*/false);
    ++report->slots_released;
  }
  ClientTable(this).ReleaseRowsOf(pid);  // Its Redis connections died with it.
  BlockLines(this).ReleaseOf(pid);       // And their places in the blocked pops' lines.
  SHM_RETURN_IF_ERROR(DropLinePlaces(impl, pid));
  return impl->root()->poisoned.load() ? Status::Poisoned("segment allocator is poisoned")
                                       : Status::OK();
}

}  // namespace shm
