#include "cow.h"

#include "crash_point.h"
#include "prefetch_write.h"

namespace shm {

CowWriter::CowWriter(Segment::Impl* segment)
    : segment_(segment), slot_(segment->MySlot()), cache_(segment, slot_) {
  if (slot_ != nullptr) cache_.Acquire();
}

CowWriter::~CowWriter() {
  DiscardStaged();
  cache_.Release();
}

Status CowWriter::AllocateStaged(size_t bytes, uint64_t* handle) {
  if (cache_.held() && bytes <= kMaxCachedBlob) {
    // A poisoned segment takes no write, whether or not this one would touch the allocator.
    if (segment_->root()->poisoned.load(std::memory_order_acquire) != 0) {
      return Status::Poisoned("segment allocator is poisoned; the manager is rebuilding it");
    }
    *handle = cache_.Take(bytes, &slot_->new_off);
    if (*handle == 0) {
      cache_.Refill(bytes);
      *handle = cache_.Take(bytes, &slot_->new_off);
    }
    if (*handle != 0) {
      CrashPoint("after_allocate");
      return Status::OK();
    }
    // Allocated at the class size, so the block comes back to this class when freed.
    bytes = kBlobClassSizes[ClassForRequest(bytes)];
  }
  Status s = segment_->Allocate(bytes, handle);
  if (s.IsOutOfSpace() && cache_.held()) {
    cache_.Empty();  // Blocks of other classes may make room once coalesced.
    s = segment_->Allocate(bytes, handle);
  }
  SHM_RETURN_IF_ERROR(s);
  Stage(*handle);
  return Status::OK();
}

void CowWriter::FreeRecorded(uint64_t blob, std::atomic<uint64_t>* record) {
  if (cache_.held() && cache_.Put(blob, record)) return;
  record->store(0, std::memory_order_release);
  segment_->Free(blob);
}

Status CowWriter::AllocateOwned(size_t bytes, uint64_t* handle) {
  SHM_RETURN_IF_ERROR(AllocateStaged(bytes, handle));
  slot_->new_off.store(0, std::memory_order_release);
  return Status::OK();
}

void CowWriter::FreeGarbage(uint64_t entry, uint64_t blob) {
  slot_->entry.store(entry, std::memory_order_relaxed);
  slot_->old_off.store(blob, std::memory_order_release);
  ReleaseGarbage();
}

void CowWriter::Stage(uint64_t new_blob) {
  slot_->new_off.store(new_blob, std::memory_order_release);
  CrashPoint("after_allocate");
}

uint64_t CowWriter::PublishLocked(uint64_t entry, std::atomic<uint64_t>* cell, uint64_t new_value) {
  PrefetchForWrite(cell);  // Read, then written: arrives while the intent is written.
  slot_->new_off.store(new_value, std::memory_order_relaxed);
  slot_->entry.store(entry, std::memory_order_relaxed);
  slot_->cell.store(segment_->Handle(cell), std::memory_order_relaxed);
  slot_->in_cs.store(1, std::memory_order_release);
  uint64_t old_value = cell->load(std::memory_order_acquire);
  slot_->old_off.store(old_value, std::memory_order_release);
  CrashPoint("after_intent");
  cell->store(new_value, std::memory_order_release);  // The commit.
  CrashPoint("after_commit");
  slot_->new_off.store(0, std::memory_order_release);
  slot_->in_cs.store(0, std::memory_order_release);
  return old_value;
}

uint64_t CowWriter::PublishBodyLocked(uint64_t entry, std::atomic<uint64_t>* cell,
                                      uint64_t new_value, uint32_t kind) {
  slot_->old_kind.store(kind, std::memory_order_release);
  return PublishLocked(entry, cell, new_value);
}

void CowWriter::ReleaseGarbage(void (*destroy)(Segment::Impl*, uint64_t)) {
  uint64_t old_value = slot_->old_off.load(std::memory_order_seq_cst);
  bool blob = IsBlob(old_value);
  // Readers that follow handles without the lock learn of the reuse before anything is written.
  if (blob) segment_->NoteReclaim(slot_->entry.load(std::memory_order_relaxed));
  if (blob && destroy == nullptr && cache_.held()) {
    CrashPoint("before_free");  // Still recorded: whoever settles this slot frees it.
    slot_->old_kind.store(0, std::memory_order_release);  // A plain blob, as recovery sees it.
    FreeRecorded(old_value, &slot_->old_off);
    return;
  }
  slot_->old_off.store(0, std::memory_order_release);
  slot_->old_kind.store(0, std::memory_order_release);
  CrashPoint("before_free");  // Dying here leaks old_value: never a double free.
  if (!blob) return;
  if (destroy != nullptr) {
    destroy(segment_, old_value);
  } else {
    segment_->Free(old_value);
  }
}

void CowWriter::DiscardStaged() {
  if (slot_ == nullptr) return;
  uint64_t staged = slot_->new_off.load(std::memory_order_seq_cst);
  if (IsBlob(staged)) {
    FreeRecorded(staged, &slot_->new_off);
  } else {
    slot_->new_off.store(0, std::memory_order_release);
  }
}

int ResolveIntentsLocked(Segment::Impl* segment, uint64_t entry) {
  int resolved = 0;
  for (IntentSlot& slot : segment->root()->intents) {
    if (slot.in_cs.load(std::memory_order_seq_cst) == 0) continue;
    if (slot.entry.load(std::memory_order_seq_cst) != entry) continue;
    auto* cell = segment->Ptr<std::atomic<uint64_t>>(slot.cell.load(std::memory_order_seq_cst));
    uint64_t staged = slot.new_off.load(std::memory_order_seq_cst);
    if (cell->load(std::memory_order_seq_cst) == staged) {
      slot.new_off.store(0, std::memory_order_seq_cst);  // Published: old_off is garbage.
    } else {
      slot.old_off.store(0, std::memory_order_seq_cst);  // Not published: old is still live.
    }
    slot.in_cs.store(0, std::memory_order_seq_cst);
    ++resolved;
  }
  return resolved;
}

}  // namespace shm
