// What the registry needs to know about each object kind: how to repair a body after its lock's
// owner died, and how to free a body with everything it owns. Each kind's .cc defines its ops.
#ifndef SHM_SRC_KIND_OPS_H_
#define SHM_SRC_KIND_OPS_H_

#include <cstdint>
#include <string>
#include <string_view>

#include "segment_impl.h"
#include "shm/registry.h"

namespace shm {

struct KindOps {
  // Called with the entry's lock held after an owner death, after the intents on that lock were
  // resolved. Brings derived state (lengths, byte counts, half-done in-place writes) back in line
  // with the committed state. Must not allocate.
  void (*repair_locked)(Segment::Impl* segment, EntryRep* entry);
  // Frees a body that is no longer reachable, and every blob it owns.
  void (*destroy)(Segment::Impl* segment, uint64_t body);
  // Appends the committed state of the entry's body to `out` (format private to the kind).
  // Called with the entry's lock held (after any owner-death repair). Used by snapshots and by
  // the rebuild of a poisoned or growing segment, so it must not allocate in the segment.
  Status (*serialize_locked)(Segment::Impl* segment, const EntryRep* entry, std::string* out);
  // Builds a new body in `segment` from serialize_locked's bytes; InvalidArgument if they are
  // malformed (never trust them: they come from a file). Returns the body's handle unpublished;
  // on error it has freed whatever it allocated.
  Status (*deserialize)(Segment::Impl* segment, std::string_view bytes, uint64_t* body);
  // Fills info->size_bytes and info->length from the body's atomics, without the entry's lock
  // (listings must not slow writers). Called with the registry lock held, so a delete cannot
  // free the body meanwhile. May be null (nothing to report).
  void (*usage)(Segment::Impl* segment, const EntryRep* entry, ObjectInfo* info);
};

extern const KindOps kCounterOps;
extern const KindOps kDictOps;  // Also used by kSessions: a sessions object is a dict of JSON.
extern const KindOps kListOps;
// A keyspace is a dict body on the keyspace stripes whose entries name their aggregates; its
// destroy also deletes those aggregates.
extern const KindOps kKeyspaceOps;
extern const KindOps kLockOps;
extern const KindOps kArrayOps;
extern const KindOps kProcessLockOps;

// Whether the kind keeps its whole state in its registry entry (EntryRep::counter), with no body:
// a snapshot record's counter field carries it, and there is no payload.
inline bool StateInEntry(ObjectKind kind) {
  return kind == ObjectKind::kCounter || kind == ObjectKind::kProcessLock;
}

const KindOps& KindOpsFor(ObjectKind kind);

}  // namespace shm

#endif  // SHM_SRC_KIND_OPS_H_
