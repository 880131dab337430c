// LeaseLock: a named lock that any process can take for a limited time and give back by token.
//
// A lease is a record {token, owner label, expiry}, not a mutex: an HTTP client's acquire and
// release may land on different workers, and a holder that dies (or forgets) stops blocking
// others once its ttl runs out. Holding it is proved by the random token Acquire returns.
// Expiry uses the wall clock, which callers can compare with their own.
//
// Process-safety: a LeaseLock is a cheap process-local handle; copy it freely and use it from any
// thread. It never lives in shared memory. Once the lock object is deleted, every call answers
// NotFound and waiting acquirers wake up with NotFound.
#ifndef SHM_LEASE_LOCK_H_
#define SHM_LEASE_LOCK_H_

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "shm/registry.h"
#include "shm/status.h"

namespace shm {

struct LeaseInfo {
  bool held = false;
  std::string owner;          // Label of the holder, when held.
  int64_t expires_at_ms = 0;  // Wall clock, when held.
  int64_t remaining_ms = 0;   // When held.
  uint64_t acquisitions = 0;  // Times taken since the lock was created.
};

class LeaseLock {
 public:
  static constexpr int64_t kMinTtlMs = 1;
  static constexpr int64_t kMaxTtlMs = 24 * 3600 * 1000;
  static constexpr size_t kMaxOwnerBytes = 64;  // Printable ASCII.
  // Longest an Acquire may wait.
  static constexpr std::chrono::milliseconds kMaxWait = std::chrono::hours(24);

  LeaseLock() = default;

  static Status Open(Segment* segment, std::string_view name, OpenMode mode, LeaseLock* result,
                     bool* created = nullptr);

  // Takes the lease for `ttl_ms` if it is free or expired, with a fresh random non-zero `token`.
  // If it is held, waits up to `wait` for a release or the expiry, then answers Conflict naming
  // the holder and the milliseconds it still holds it.
  Status Acquire(int64_t ttl_ms, std::chrono::milliseconds wait, std::string_view owner,
                 uint64_t* token, int64_t* expires_at_ms);
  // Gives the lease back. Conflict if `token` is not the current holder's (or it expired).
  Status Release(uint64_t token);
  // Extends the holder's lease to now + ttl_ms. Conflict as for Release.
  Status Refresh(uint64_t token, int64_t ttl_ms, int64_t* expires_at_ms = nullptr);
  Status Get(LeaseInfo* info) const;

  const ObjectRef& ref() const { return ref_; }

 private:
  explicit LeaseLock(const ObjectRef& ref) : ref_(ref) {}

  Status DoAcquire(int64_t ttl_ms, std::chrono::milliseconds wait, std::string_view owner,
                   uint64_t* token, int64_t* expires_at_ms);

  ObjectRef ref_;
};

}  // namespace shm

#endif  // SHM_LEASE_LOCK_H_
