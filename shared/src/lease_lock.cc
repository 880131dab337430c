#include "shm/lease_lock.h"

#include <sys/random.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <exception>
#include <new>
#include <string>

#include "boundary.h"
#include "byte_io.h"
#include "crash_point.h"
#include "futex.h"
#include "kind_ops.h"
#include "layout.h"
#include "lease_lock_rep.h"
#include "object_guard.h"
#include "segment_impl.h"
#include "shm/process_id.h"

namespace shm {
namespace {

static_assert(LeaseLock::kMaxOwnerBytes == kLeaseOwnerMax);

LeaseRep* RepOf(Segment::Impl* seg, const EntryRep* entry) {
  return seg->Ptr<LeaseRep>(entry->body.load(std::memory_order_acquire));
}

bool HeldLocked(const LeaseRep* rep, int64_t now_ms) {
  return rep->token.load() != 0 && rep->expires_at_ms.load() > now_ms;
}

std::string OwnerLocked(const LeaseRep* rep) {
  uint32_t length = std::min<uint32_t>(rep->owner_length.load(), kLeaseOwnerMax);
  return std::string(rep->owner, length);
}

std::string ObjectName(const EntryRep* entry) {
  return std::string(entry->name, std::min<size_t>(entry->name_length, kMaxNameLength));
}

// Kernel randomness, drawn kTokenBatch tokens per getrandom call (one call per token was half
// of an uncontended acquire): each token is used once. The batch belongs to the thread and the
// process that drew it: a fork child, which inherits the thread's copy, draws its own (a token
// handed out by both would repeat).
constexpr int kTokenBatch = 32;
struct TokenBatch {
  uint64_t tokens[kTokenBatch];
  int next = kTokenBatch;
  pid_t pid = 0;
};
thread_local TokenBatch t_tokens;

uint64_t FreshToken() {
  TokenBatch& batch = t_tokens;
  pid_t pid = CurrentPid();
  while (true) {
    if (batch.pid != pid || batch.next == kTokenBatch) {
      batch.pid = pid;
      batch.next = 0;
      if (getrandom(batch.tokens, sizeof batch.tokens, 0) !=
          static_cast<ssize_t>(sizeof batch.tokens)) {
        batch.next = kTokenBatch;  // Not filled: this token the old way, the next call retries.
        uint64_t token = static_cast<uint64_t>(SteadyNowMs()) * 0x9e3779b97f4a7c15ull ^
                         (static_cast<uint64_t>(getpid()) << 32) ^
                         reinterpret_cast<uintptr_t>(&token);
        if (token != 0) return token;
        continue;
      }
    }
    uint64_t token = batch.tokens[batch.next];
    batch.tokens[batch.next++] = 0;  // Used once; not left in memory.
    if (token != 0) return token;
  }
}

// Takes the lease in the order of lease_lock_rep.h: free, then filled, then committed.
uint64_t TakeLocked(LeaseRep* rep, std::string_view owner, int64_t expires_at_ms) {
  rep->token.store(0);
  rep->expires_at_ms.store(expires_at_ms);
  std::memcpy(rep->owner, owner.data(), owner.size());
  rep->owner_length.store(static_cast<uint32_t>(owner.size()));
  CrashPoint("lease_before_commit");
  uint64_t token = FreshToken();
  rep->token.store(token);  // The commit.
  rep->acquisitions.fetch_add(1);
  return token;
}

void ClearLocked(LeaseRep* rep) {
  rep->token.store(0);  // The commit.
  rep->expires_at_ms.store(0);
  rep->owner_length.store(0);
}

Status CheckTtl(int64_t ttl_ms) {
  if (ttl_ms < LeaseLock::kMinTtlMs || ttl_ms > LeaseLock::kMaxTtlMs) {
    return Status::InvalidArgument("ttl must be between " + std::to_string(LeaseLock::kMinTtlMs) +
                                   " and " + std::to_string(LeaseLock::kMaxTtlMs) + " ms");
  }
  return Status::OK();
}

Status CheckOwner(std::string_view owner) {
  if (owner.size() > LeaseLock::kMaxOwnerBytes) {
    return Status::InvalidArgument("owner longer than " +
                                   std::to_string(LeaseLock::kMaxOwnerBytes) + " bytes");
  }
  for (unsigned char c : owner) {
    if (c < 0x20 || c > 0x7e) return Status::InvalidArgument("owner is not printable ASCII");
  }
  return Status::OK();
}

// The holder's token must match and its lease must not have run out.
Status CheckHolderLocked(const LeaseRep* rep, uint64_t token, int64_t now_ms) {
  if (token == 0 || rep->token.load() != token) {
    return Status::Conflict("token does not hold this lock");
  }
  if (rep->expires_at_ms.load() <= now_ms) return Status::Conflict("lease has expired");
  return Status::OK();
}

// Owner-death repair: a record that breaks the invariant of lease_lock_rep.h is a take that did
// not finish, so the lease is free.
void RepairLeaseLocked(Segment::Impl* seg, EntryRep* entry) {
  LeaseRep* rep = RepOf(seg, entry);
  if (rep->token.load() == 0) return;
  if (rep->expires_at_ms.load() == 0 || rep->owner_length.load() > kLeaseOwnerMax) {
    ClearLocked(rep);
  }
}

void DestroyLease(Segment::Impl* seg, uint64_t body) { seg->Free(body); }

// Snapshot form: token, expires_at_ms, acquisitions, owner (length-prefixed). A lease survives a
// rebuild with its token, so its holder can still release it.
Status SerializeLeaseLocked(Segment::Impl* seg, const EntryRep* entry, std::string* out) {
  const LeaseRep* rep = RepOf(seg, entry);
  ByteWriter w(out);
  w.Put<uint64_t>(rep->token.load());
  w.Put<int64_t>(rep->expires_at_ms.load());
  w.Put<uint64_t>(rep->acquisitions.load());
  w.PutBytes(OwnerLocked(rep));
  return Status::OK();
}

Status DeserializeLease(Segment::Impl* seg, std::string_view bytes, uint64_t* body) {
  ByteReader r(bytes);
  uint64_t token = 0;
  int64_t expires = 0;
  uint64_t acquisitions = 0;
  std::string_view owner;
  if (!r.Get(&token) || !r.Get(&expires) || !r.Get(&acquisitions) || !r.GetBytes(&owner) ||
      r.remaining() != 0 || !CheckOwner(owner).ok() || (token != 0 && expires <= 0)) {
    return Status::InvalidArgument("malformed lock snapshot");
  }
  SHM_RETURN_IF_ERROR(seg->Allocate(sizeof(LeaseRep), body));
  auto* rep = new (seg->Ptr<void>(*body)) LeaseRep();
  rep->expires_at_ms.store(token == 0 ? 0 : expires);
  std::memcpy(rep->owner, owner.data(), owner.size());
  rep->owner_length.store(token == 0 ? 0 : static_cast<uint32_t>(owner.size()));
  rep->acquisitions.store(acquisitions);
  rep->token.store(token);
  return Status::OK();
}

}  // namespace

const KindOps kLockOps = {RepairLeaseLocked, DestroyLease, SerializeLeaseLocked, DeserializeLease};

Status LeaseLock::Open(Segment* segment, std::string_view name, OpenMode mode, LeaseLock* result,
                       bool* created) {
  return CatchAtBoundary("lock open", [&]() -> Status {
    Segment::Impl* seg = segment->impl();
    Registry::OpenSpec spec;
    spec.kind = ObjectKind::kLock;
    spec.mode = mode;
    spec.created = created;
    spec.make_body = [&](uint64_t* body) {
      SHM_RETURN_IF_ERROR(seg->Allocate(sizeof(LeaseRep), body));
      new (seg->Ptr<void>(*body)) LeaseRep();
      return Status::OK();
    };
    ObjectRef ref;
    SHM_RETURN_IF_ERROR(segment->registry().Open(name, spec, &ref));
    *result = LeaseLock(ref);
    return Status::OK();
  });
}

Status LeaseLock::Acquire(int64_t ttl_ms, std::chrono::milliseconds wait, std::string_view owner,
                          uint64_t* token, int64_t* expires_at_ms) {
  if (!ref_.valid()) return Status::InvalidArgument("lock handle is not open");
  SHM_RETURN_IF_ERROR(CheckTtl(ttl_ms));
  SHM_RETURN_IF_ERROR(CheckOwner(owner));
  if (wait.count() < 0 || wait > kMaxWait) {
    return Status::InvalidArgument("wait must be between 0 and " +
                                   std::to_string(kMaxWait.count()) + " ms");
  }
  return CatchAtBoundary("lock acquire",
                         [&] { return DoAcquire(ttl_ms, wait, owner, token, expires_at_ms); });
}

// Waits on the entry's futex word, which Release bumps; also wakes when the holder's lease runs
// out, so a dead holder blocks others for at most its ttl.
Status LeaseLock::DoAcquire(int64_t ttl_ms, std::chrono::milliseconds wait, std::string_view owner,
                            uint64_t* token, int64_t* expires_at_ms) {
  EntryRep* entry = ref_.entry;
  const auto deadline = std::chrono::steady_clock::now() + wait;
  while (true) {
    const uint32_t seen = entry->wake_seq.load(std::memory_order_acquire);
    ObjectGuard guard;
    SHM_RETURN_IF_ERROR(guard.Lock(ref_));
    LeaseRep* rep = RepOf(ref_.segment->impl(), entry);
    const int64_t now = WallNowMs();
    if (!HeldLocked(rep, now)) {
      *expires_at_ms = now + ttl_ms;
      *token = TakeLocked(rep, owner, *expires_at_ms);
      return Status::OK();
    }
    const std::string holder = OwnerLocked(rep);
    const int64_t held_for_ms = rep->expires_at_ms.load() - now;
    guard.Unlock();
    const auto remaining = deadline - std::chrono::steady_clock::now();
    if (remaining.count() <= 0) {
      return Status::Conflict("lock '" + ObjectName(entry) + "' is held by '" + holder +
                              "' for another " + std::to_string(held_for_ms) + " ms");
    }
    const auto until_expiry = std::chrono::milliseconds(held_for_ms);
    FutexWaitWanted(&entry->wake_seq, &entry->wake_wanted, seen,
                    std::min<std::chrono::nanoseconds>(remaining, until_expiry));
  }
}

Status LeaseLock::Release(uint64_t token) {
  if (!ref_.valid()) return Status::InvalidArgument("lock handle is not open");
  return CatchAtBoundary("lock release", [&]() -> Status {
    ObjectGuard guard;
    SHM_RETURN_IF_ERROR(guard.Lock(ref_));
    LeaseRep* rep = RepOf(ref_.segment->impl(), ref_.entry);
    SHM_RETURN_IF_ERROR(CheckHolderLocked(rep, token, WallNowMs()));
    ClearLocked(rep);
    guard.Unlock();
    // No system call unless someone sleeps on the word (a blocked Acquire, a parked HTTP wait).
    FutexWakeIfWanted(&ref_.entry->wake_seq, &ref_.entry->wake_wanted);
    return Status::OK();
  });
}

Status LeaseLock::Refresh(uint64_t token, int64_t ttl_ms, int64_t* expires_at_ms) {
  if (!ref_.valid()) return Status::InvalidArgument("lock handle is not open");
  SHM_RETURN_IF_ERROR(CheckTtl(ttl_ms));
  return CatchAtBoundary("lock refresh", [&]() -> Status {
    ObjectGuard guard;
    SHM_RETURN_IF_ERROR(guard.Lock(ref_));
    LeaseRep* rep = RepOf(ref_.segment->impl(), ref_.entry);
    const int64_t now = WallNowMs();
    SHM_RETURN_IF_ERROR(CheckHolderLocked(rep, token, now));
    rep->expires_at_ms.store(now + ttl_ms);  // One word: the commit.
    if (expires_at_ms != nullptr) *expires_at_ms = now + ttl_ms;
    return Status::OK();
  });
}

Status LeaseLock::Get(LeaseInfo* info) const {
  if (!ref_.valid()) return Status::InvalidArgument("lock handle is not open");
  return CatchAtBoundary("lock get", [&]() -> Status {
    ObjectGuard guard;
    SHM_RETURN_IF_ERROR(guard.Lock(ref_));
    LeaseRep* rep = RepOf(ref_.segment->impl(), ref_.entry);
    const int64_t now = WallNowMs();
    *info = LeaseInfo();
    info->acquisitions = rep->acquisitions.load();
    if (!HeldLocked(rep, now)) return Status::OK();
    info->held = true;
    info->owner = OwnerLocked(rep);
    info->expires_at_ms = rep->expires_at_ms.load();
    info->remaining_ms = info->expires_at_ms - now;
    return Status::OK();
  });
}

}  // namespace shm
