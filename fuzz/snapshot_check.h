// The all-or-nothing contract of RestoreSegment (shm/snapshot.h), checked by the snapshot
// fuzzers: a refused snapshot leaves the segment as it was (no object, no memory kept), a restored
// one holds exactly the objects it reports and serializes again without error.
// Single-threaded, like the fuzzers.
#ifndef SHM_FUZZ_SNAPSHOT_CHECK_H_
#define SHM_FUZZ_SNAPSHOT_CHECK_H_

#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_util.h"
#include "shm/snapshot.h"

namespace shm::fuzz {

inline bool StrictSnapshot() {
  static const bool strict = std::getenv("SHM_FUZZ_STRICT_SNAPSHOT") != nullptr;
  return strict;
}

// An empty scratch segment to restore into, and its free bytes when empty.
class RestoreTarget {
 public:
  RestoreTarget() : segment_(CreateScratchSegment("snap", size_t{4} << 20)) {
    empty_free_bytes_ = segment_->free_bytes();
  }

  // Restores `snapshot`, checks the contract, then empties the segment again.
  void RestoreAndCheck(std::string_view snapshot) {
    SnapshotStats stats;
    Status s = RestoreSegment(snapshot, segment_.get(), &stats);
    std::vector<std::string> names = LiveNames(segment_.get());
    if (s.ok()) {
      Check(names.size() == stats.objects, "restored count differs from the registry",
            std::to_string(stats.objects) + " reported, " + std::to_string(names.size()) + " live");
      std::string again;
      SnapshotStats again_stats;
      Status reserialized = SerializeSegment(segment_.get(), &again, &again_stats);
      Check(reserialized.ok(), "a restored segment does not serialize", reserialized.ToString());
    } else {
      Check(s.IsInvalidArgument() || s.IsOutOfSpace() || s.IsAlreadyExists() || s.IsWrongType(),
            "unexpected status from RestoreSegment", s.ToString());
      // Known issue (docs/fuzzing.md): only the framing is checked before restoring, so a bad
      // payload in a later record leaves the earlier ones restored. Strict mode aborts on it.
      if (!names.empty() && StrictSnapshot()) {
        Fail("a refused snapshot left objects behind",
             s.ToString() + "; first left: " + names.front());
      }
    }
    DeleteAllObjects(segment_.get());
    Check(segment_->free_bytes() == empty_free_bytes_, "segment memory leaked by a restore",
          std::to_string(empty_free_bytes_ - segment_->free_bytes()) + " bytes; status " +
              s.ToString());
  }

 private:
  std::unique_ptr<Segment> segment_;
  size_t empty_free_bytes_ = 0;
};

}  // namespace shm::fuzz

#endif  // SHM_FUZZ_SNAPSHOT_CHECK_H_
