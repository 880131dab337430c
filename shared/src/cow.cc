#include "cow.h"

#include "crash_point.h"

namespace shm {

void CowWriter::Stage(uint64_t new_blob) {
  slot_->new_off.store(new_blob, std::memory_order_seq_cst);
  CrashPoint("after_allocate");
}

uint64_t CowWriter::PublishLocked(uint64_t entry, std::atomic<uint64_t>* cell, uint64_t new_value) {
  slot_->new_off.store(new_value, std::memory_order_relaxed);
  slot_->entry.store(entry, std::memory_order_relaxed);
  slot_->cell.store(segment_->Handle(cell), std::memory_order_relaxed);
  slot_->in_cs.store(1, std::memory_order_seq_cst);
  uint64_t old_value = cell->load(std::memory_order_acquire);
  slot_->old_off.store(old_value, std::memory_order_seq_cst);
  CrashPoint("after_intent");
  cell->store(new_value, std::memory_order_seq_cst);  // The commit.
  CrashPoint("after_commit");
  slot_->new_off.store(0, std::memory_order_seq_cst);
  slot_->in_cs.store(0, std::memory_order_seq_cst);
  return old_value;
}

uint64_t CowWriter::PublishBodyLocked(uint64_t entry, std::atomic<uint64_t>* cell,
                                      uint64_t new_value, uint32_t kind) {
  slot_->old_kind.store(kind, std::memory_order_seq_cst);
  return PublishLocked(entry, cell, new_value);
}

void CowWriter::ReleaseGarbage(void (*destroy)(Segment::Impl*, uint64_t)) {
  uint64_t old_value = slot_->old_off.exchange(0, std::memory_order_seq_cst);
  slot_->old_kind.store(0, std::memory_order_seq_cst);
  CrashPoint("before_free");
  if (!IsBlob(old_value)) return;
  segment_->NoteReclaim(slot_->entry.load(std::memory_order_relaxed));
  if (destroy != nullptr) {
    destroy(segment_, old_value);
  } else {
    segment_->Free(old_value);
  }
}

void CowWriter::DiscardStaged() {
  if (slot_ == nullptr) return;
  uint64_t staged = slot_->new_off.exchange(0, std::memory_order_seq_cst);
  if (IsBlob(staged)) segment_->Free(staged);
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
