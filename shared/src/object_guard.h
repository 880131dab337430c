// ObjectGuard: holds one object's lock, the way every proxy operation takes it.
//
// Lock() waits at most the lock timeout (Timeout otherwise, naming the holder's pid); after an
// owner death it first resolves the dead writer's intents and repairs the body (KindOps), then
// checks that the ObjectRef still names the live incarnation (NotFound otherwise), so a stale
// proxy never touches a freed body.
#ifndef SHM_SRC_OBJECT_GUARD_H_
#define SHM_SRC_OBJECT_GUARD_H_

#include <atomic>
#include <chrono>
#include <cstdint>

#include "layout.h"
#include "segment_impl.h"
#include "shm/registry.h"

namespace shm {

class ObjectGuard {
 public:
  ObjectGuard() = default;
  ~ObjectGuard() { Unlock(); }
  ObjectGuard(const ObjectGuard&) = delete;
  ObjectGuard& operator=(const ObjectGuard&) = delete;

  // Locks ref's object and checks it is still live and of the ref's incarnation.
  Status Lock(const ObjectRef& ref, std::chrono::milliseconds timeout = kDefaultLockTimeout);
  // Locks an entry whatever its state (registry and manager use). Repairs after owner death.
  Status LockEntry(Segment::Impl* segment, EntryRep* entry,
                   std::chrono::milliseconds timeout = kDefaultLockTimeout);
  void Unlock();

  bool owner_died() const { return owner_died_; }
  Segment::Impl* segment() const { return segment_; }
  EntryRep* entry() const { return entry_; }

 private:
  Segment::Impl* segment_ = nullptr;
  EntryRep* entry_ = nullptr;
  bool owner_died_ = false;
};

// Holds the registry lock; rebuilds the registry's derived state after an owner death.
class RegistryGuard {
 public:
  RegistryGuard() = default;
  ~RegistryGuard() { Unlock(); }
  RegistryGuard(const RegistryGuard&) = delete;
  RegistryGuard& operator=(const RegistryGuard&) = delete;

  Status Lock(Segment::Impl* segment, std::chrono::milliseconds timeout = kDefaultLockTimeout);
  void Unlock();

 private:
  Segment::Impl* segment_ = nullptr;
};

// Whether `ref` still names the live incarnation of its entry. Safe without the lock (entries are
// never freed): readers that follow an entry's handles without it check before and after. Inline,
// as are the expiry checks below: every keyed operation asks them under its locks (always: GCC
// kept a call in Dict's read path, ReadHashed, whose body is over its inlining budget).
[[gnu::always_inline]] inline bool IsCurrent(const ObjectRef& ref) {
  return ref.entry->state.load(std::memory_order_seq_cst) ==
             static_cast<uint32_t>(EntryState::kLive) &&
         ref.entry->incarnation.load(std::memory_order_seq_cst) == ref.incarnation;
}

// Runs the owner-death repair of an entry whose lock the caller holds.
void RepairEntryLocked(Segment::Impl* segment, EntryRep* entry);
// Rebuilds the registry's index and free list from the entries' states. REQUIRES: registry lock.
void RepairRegistryLocked(Segment::Impl* segment);
// True when the entry is live and past its expiry.
inline bool EntryExpired(const EntryRep* entry, int64_t now_ms) {
  int64_t expires = entry->expires_at_ms.load(std::memory_order_relaxed);
  return expires != 0 && now_ms >= expires;
}
// The same, reading the wall clock only when the entry has an expiry.
inline bool EntryExpiredNow(const EntryRep* entry) {
  int64_t expires = entry->expires_at_ms.load(std::memory_order_relaxed);
  return expires != 0 && WallNowMs() >= expires;  // The clock is read only for objects with a TTL.
}

}  // namespace shm

#endif  // SHM_SRC_OBJECT_GUARD_H_
