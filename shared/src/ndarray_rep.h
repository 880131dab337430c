// NdArrayRep: an n-d array in the segment, and the undo record of a write in flight.
//
// One blob holds the Rep followed (at kArrayDataOffset, 64-byte aligned) by the C-contiguous data.
// dtype, ndim, shape and nbytes never change after creation, so they are read without the lock.
//
// Crash safety of in-place writes (docs/crash-protocol.md, "The undo record"): before the first
// byte of a slice write changes, the writer saves the old bytes of the slice in an undo blob (its
// strided view plus the bytes in C order, i.e. the "offset runs" and the saved bytes) and publishes
// the blob's handle into `undo` with the COW intent protocol (cow.h); `undo != 0` is the "valid"
// flag. After the write it publishes 0 (the commit) and frees the blob. A holder that gets the lock
// with owner-died sees `undo != 0` exactly when a write may be half done, copies the saved bytes
// back and frees the blob (kArrayOps.repair_locked).
//
// Lock-free atomics and reads pin the entry in their thread's intent slot (IntentSlot::pinned)
// while they touch the data, so whoever frees a body (kArrayOps.destroy, a whole-array swap)
// waits for them first.
#ifndef SHM_SRC_NDARRAY_REP_H_
#define SHM_SRC_NDARRAY_REP_H_

#include <atomic>
#include <cstdint>

#include "shm/slice.h"

namespace shm {

inline constexpr uint32_t kNdArrayMagic = 0x4e444152;  // "NDAR".

struct NdArrayRep {
  uint32_t magic = kNdArrayMagic;
  uint32_t dtype = 0;  // DType. Constant.
  uint32_t ndim = 0;   // 1..kMaxDims. Constant.
  uint32_t itemsize = 0;
  int64_t shape[kMaxDims] = {};  // Constant.
  uint64_t nbytes = 0;           // Data bytes. Constant.
  uint64_t entry = 0;  // Handle of the EntryRep, which pins name; 0 until the first open sets it.
  std::atomic<uint64_t> version{0};  // Bumped by every write.
  std::atomic<uint64_t> undo{0};     // Handle of the UndoRep of a write in flight. GUARDED_BY(mu).
};

// Where the data starts, from the start of the Rep's blob (the blob is 64-byte aligned).
inline constexpr uint64_t kArrayDataOffset = 128;
static_assert(sizeof(NdArrayRep) <= kArrayDataOffset);
static_assert(kArrayDataOffset % 64 == 0);

// The undo record: the view that was about to be written and its old bytes (at kUndoDataOffset,
// C order). Complete before its handle is published; never changed after.
struct UndoRep {
  int64_t offset = 0;  // In elements, from the array's data.
  uint32_t ndim = 0;
  uint32_t itemsize = 0;
  int64_t shape[kMaxDims] = {};
  int64_t strides[kMaxDims] = {};
  uint64_t saved_bytes = 0;
};
inline constexpr uint64_t kUndoDataOffset = 192;
static_assert(sizeof(UndoRep) <= kUndoDataOffset);

static_assert(std::atomic<uint64_t>::is_always_lock_free);

}  // namespace shm

#endif  // SHM_SRC_NDARRAY_REP_H_
