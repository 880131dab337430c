#include "shm/wake_word.h"

#include "futex.h"
#include "layout.h"

namespace shm {

Status WakeWord::Open(Segment* segment, std::string_view name, ObjectKind kind, WakeWord* result) {
  Registry registry(segment);
  Registry::OpenSpec spec;
  spec.kind = kind;
  spec.mode = OpenMode::kOpenExisting;
  ObjectRef ref;
  SHM_RETURN_IF_ERROR(registry.Open(name, spec, &ref));
  *result = WakeWord(ref);
  return Status::OK();
}

uint32_t WakeWord::Sequence() const { return ref_.entry->wake_seq.load(std::memory_order_seq_cst); }

void WakeWord::Wait(uint32_t seen, std::chrono::nanoseconds timeout) const {
  FutexWaitWanted(&ref_.entry->wake_seq, &ref_.entry->wake_wanted, seen, timeout);
}

void WakeWord::WakeAll() const { FutexWakeAll(&ref_.entry->wake_seq); }

void WakeWord::WakeWaiters() const {
  FutexWakeIfWanted(&ref_.entry->wake_seq, &ref_.entry->wake_wanted);
}

}  // namespace shm
