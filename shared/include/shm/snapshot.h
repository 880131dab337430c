// Snapshot: the committed state of a segment as bytes, and back.
//
// One serialization serves both the snapshot file (--snapshot) and the rebuild of a segment into
// its next generation (poisoned allocator, online growth). Every object is copied under its own
// lock (after any owner-death repair), so each object is consistent; objects are not copied at one
// single instant. The reader checks the whole input (magic, version, per-record CRC32, trailer
// with count and checksum) before restoring anything: a corrupt or truncated snapshot is refused,
// never half-loaded. Thread-safe; the segments may be in use by other processes meanwhile.
#ifndef SHM_SNAPSHOT_H_
#define SHM_SNAPSHOT_H_

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "shm/segment.h"
#include "shm/status.h"

namespace shm {

struct SnapshotStats {
  uint64_t objects = 0;  // Objects written or restored.
  uint64_t expired = 0;  // Objects skipped because they expired.
  uint64_t bytes = 0;    // Size of the serialized form.
};

// Serializes every live object of `segment` into `out`.
Status SerializeSegment(Segment* segment, std::string* out, SnapshotStats* stats);
// Restores a serialized form into `into`, which should be empty (existing names -> AlreadyExists).
Status RestoreSegment(std::string_view snapshot, Segment* into, SnapshotStats* stats);

// The rebuild: creates a new segment with `options` (normally the next generation, maybe bigger)
// and copies every live object of `from` into it. `from` may be poisoned: copying reads committed
// state and takes only object locks, never the allocator. On error nothing is left behind.
Status CopyIntoNewSegment(Segment* from, const SegmentOptions& options,
                          std::unique_ptr<Segment>* result, SnapshotStats* stats);

// Writes `data` to `path` atomically: a 0600 temporary file in the same folder, fsync, rename,
// fsync of the folder.
Status WriteFileAtomically(const std::string& path, std::string_view data);
// Reads a whole file; NotFound when it does not exist.
Status ReadWholeFile(const std::string& path, std::string* data);

}  // namespace shm

#endif  // SHM_SNAPSHOT_H_
