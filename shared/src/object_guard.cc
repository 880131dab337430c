#include "object_guard.h"

#include <string>

#include "cow.h"
#include "kind_ops.h"

namespace shm {
namespace {

Status LockTimeout(const char* what, pid_t holder) {
  return Status::Timeout(std::string(what) + " is busy (held by pid " + std::to_string(holder) +
                         "); try again");
}

}  // namespace

void RepairEntryLocked(Segment::Impl* segment, EntryRep* entry) {
  ResolveIntentsLocked(segment, segment->Handle(entry));
  if (entry->body.load() == 0) return;
  auto kind = static_cast<ObjectKind>(entry->kind.load());
  const KindOps& ops = KindOpsFor(kind);
  if (ops.repair_locked != nullptr) ops.repair_locked(segment, entry);
}

Status ObjectGuard::LockEntry(Segment::Impl* segment, EntryRep* entry,
                              std::chrono::milliseconds timeout) {
  Unlock();
  LockResult result = entry->mu.LockFor(timeout);
  if (result == LockResult::kTimedOut) return LockTimeout("object", entry->mu.owner_pid());
  segment_ = segment;
  entry_ = entry;
  owner_died_ = result == LockResult::kOwnerDied;
  if (owner_died_) RepairEntryLocked(segment, entry);
  return Status::OK();
}

Status ObjectGuard::Lock(const ObjectRef& ref, std::chrono::milliseconds timeout) {
  if (!ref.valid()) return Status::InvalidArgument("handle is not open");
  SHM_RETURN_IF_ERROR(LockEntry(ref.segment->impl(), ref.entry, timeout));
  if (!IsCurrent(ref)) {
    Unlock();
    return Status::NotFound("object was deleted");
  }
  if (EntryExpiredNow(ref.entry)) {
    Unlock();
    return Status::NotFound("object has expired");
  }
  return Status::OK();
}

void ObjectGuard::Unlock() {
  if (entry_ == nullptr) return;
  entry_->mu.unlock();
  entry_ = nullptr;
  segment_ = nullptr;
}

Status RegistryGuard::Lock(Segment::Impl* segment, std::chrono::milliseconds timeout) {
  Unlock();
  RegistryRep& reg = segment->root()->registry;
  LockResult result = reg.mu.LockFor(timeout);
  if (result == LockResult::kTimedOut) return LockTimeout("registry", reg.mu.owner_pid());
  segment_ = segment;
  if (result == LockResult::kOwnerDied) {
    ResolveIntentsLocked(segment, 0);
    RepairRegistryLocked(segment);
  }
  return Status::OK();
}

void RegistryGuard::Unlock() {
  if (segment_ == nullptr) return;
  segment_->root()->registry.mu.unlock();
  segment_ = nullptr;
}

}  // namespace shm
