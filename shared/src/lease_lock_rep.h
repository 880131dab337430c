// LeaseRep: the in-segment record of a LeaseLock, {token, owner, expiry}.
//
// A lease is a record, not a mutex: the HTTP request that takes it and the one that gives it back
// may land on different workers, and a holder that dies simply lets it expire. The record is
// written in place under the entry's lock (EntryRep::mu) in an order that is consistent at every
// instant, with `token` as the commit word:
//   take:    token = 0; expires_at_ms, owner; token = fresh   <- the commit
//   release: token = 0                                         <- the commit; then the rest cleared
//   refresh: expires_at_ms = later                             (one word)
// Invariant: token != 0 implies expires_at_ms != 0 and owner_length <= kLeaseOwnerMax. After an
// owner death, repair_locked frees a record that breaks it.
#ifndef SHM_SRC_LEASE_LOCK_REP_H_
#define SHM_SRC_LEASE_LOCK_REP_H_

#include <atomic>
#include <cstddef>
#include <cstdint>

namespace shm {

inline constexpr size_t kLeaseOwnerMax = 64;

struct LeaseRep {
  std::atomic<uint64_t> token{0};         // 0 = free. GUARDED_BY(entry mu) for writes.
  std::atomic<int64_t> expires_at_ms{0};  // Wall clock; the lease is free once it has passed.
  std::atomic<uint32_t> owner_length{0};
  uint32_t reserved = 0;
  char owner[kLeaseOwnerMax] = {};        // A label for messages, not an identity (the token is).
  std::atomic<uint64_t> acquisitions{0};  // Times taken since creation (stats).
};

static_assert(std::atomic<uint64_t>::is_always_lock_free);
static_assert(std::atomic<int64_t>::is_always_lock_free);
static_assert(std::atomic<uint32_t>::is_always_lock_free);

}  // namespace shm

#endif  // SHM_SRC_LEASE_LOCK_REP_H_
