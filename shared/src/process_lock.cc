#include "shm/process_lock.h"

#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "crash_point.h"
#include "futex.h"
#include "layout.h"
#include "object_guard.h"
#include "process_lock_rep.h"
#include "shm/process_id.h"

namespace shm {
namespace {

// A waiter's longest single sleep: it checks whether the holder is still alive after each one
// that ends with the word unchanged (a dead holder wakes nobody).
constexpr std::chrono::milliseconds kLivenessPeriod{500};

// The low 32 bits of the start time of `pid` (clock ticks after boot: field 22 of
// /proc/<pid>/stat), which with the pid names one process; false if it cannot be read (gone).
bool StartTag(pid_t pid, uint32_t* tag) {
  char path[64];
  std::snprintf(path, sizeof(path), "/proc/%d/stat", static_cast<int>(pid));
  const int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  char buf[1024];
  const ssize_t n = read(fd, buf, sizeof(buf) - 1);
  close(fd);
  if (n <= 0) return false;
  buf[n] = '\0';
  const char* p = std::strrchr(buf, ')');  // The command name may hold spaces and parentheses.
  if (p == nullptr) return false;
  for (int field = 2; field < 22; ++field) {  // p is at the end of field 2.
    p = std::strchr(p + 1, ' ');
    if (p == nullptr) return false;
  }
  *tag = static_cast<uint32_t>(std::strtoull(p + 1, nullptr, 10));
  return true;
}

uint64_t WordOf(pid_t pid, uint32_t tag) {
  return (uint64_t{tag} << 32) | (static_cast<uint64_t>(pid) & ProcessLock::kPidMask);
}

// Whether the process a holder word names is gone: no pid, no such pid, or a pid now of another
// process (another start time). A process this one cannot see is taken for alive.
bool HolderGone(uint64_t word) {
  const auto pid = static_cast<pid_t>(word & ProcessLock::kPidMask);
  if (pid == 0) return true;  // No process (a word restored from a damaged snapshot, say).
  if (pid == CurrentPid()) return false;
  if (ProcessGone(pid)) return true;
  uint32_t tag = 0;
  if (!StartTag(pid, &tag)) return ProcessGone(pid);
  return tag != static_cast<uint32_t>(word >> 32);
}

// Takes the lock from a holder found dead (`seen`, the word as read): true if this call took it.
// The waiters flag stays, so that this holder's release wakes the others.
bool TakeOverIfGone(std::atomic<int64_t>* word, int64_t seen, uint64_t mine) {
  if (seen == 0 || !HolderGone(static_cast<uint64_t>(seen))) return false;
  const auto flag = static_cast<uint64_t>(seen) & ProcessLock::kWaiters;
  return word->compare_exchange_strong(seen, static_cast<int64_t>(mine | flag),
                                       std::memory_order_acquire, std::memory_order_relaxed);
}

}  // namespace

void WakeDeletedProcessLock(EntryRep* entry) {
  std::atomic<int64_t>* word = ProcessLockWord(entry);
  word->store(0, std::memory_order_seq_cst);
  FutexWakeSleepers(ProcessLockFutex(word));
}

uint64_t ProcessLock::MyWord() {
  static std::atomic<uint64_t> mine{0};  // Recomputed in a fork child (another pid).
  const pid_t pid = CurrentPid();
  uint64_t word = mine.load(std::memory_order_relaxed);
  if (word != 0 && static_cast<pid_t>(word & kPidMask) == pid) return word;
  uint32_t tag = 0;
  StartTag(pid, &tag);  // Our own: readable; a tag of 0 otherwise, still a valid word.
  word = WordOf(pid, tag);
  mine.store(word, std::memory_order_relaxed);
  return word;
}

ProcessLock::ProcessLock(const ObjectRef& ref) : ref_(ref), word_(ProcessLockWord(ref.entry)) {}

Status ProcessLock::Open(Segment* segment, std::string_view name, OpenMode mode,
                         ProcessLock* result, bool* created) {
  Registry::OpenSpec spec;
  spec.kind = ObjectKind::kProcessLock;
  spec.mode = mode;
  spec.created = created;
  ObjectRef ref;
  SHM_RETURN_IF_ERROR(segment->registry().Open(name, spec, &ref));
  *result = ProcessLock(ref);
  return Status::OK();
}

// Entries are never freed and are reused last-in-line (FIFO), so a handle that passes this check
// touches at worst the word of a lock deleted an instant ago, never freed memory (Counter's
// argument); AfterTake gives back a take that raced with the deletion.
Status ProcessLock::CheckLive() const {
  if (!ref_.valid()) return Status::InvalidArgument("process lock handle is not open");
  const EntryRep* e = ref_.entry;
  if (e->incarnation.load(std::memory_order_acquire) != ref_.incarnation ||
      e->state.load(std::memory_order_acquire) != static_cast<uint32_t>(EntryState::kLive)) {
    return Status::NotFound("lock was deleted");
  }
  return Status::OK();
}

Status ProcessLock::AfterTake(bool* acquired) {
  CrashPoint("process_lock_taken");
  Status live = CheckLive();
  if (!live.ok()) {
    *acquired = false;
    int64_t mine = word_->load(std::memory_order_relaxed);
    if ((static_cast<uint64_t>(mine) & ~kWaiters) == MyWord() &&
        word_->compare_exchange_strong(mine, 0, std::memory_order_release) &&
        (static_cast<uint64_t>(mine) & kWaiters) != 0) {
      FutexWakeSleepers(ProcessLockFutex(word_));
    }
  }
  return live;
}

Status ProcessLock::Acquire(std::chrono::nanoseconds timeout, bool* acquired, bool* owner_died) {
  *acquired = false;
  *owner_died = false;
  SHM_RETURN_IF_ERROR(CheckLive());
  const uint64_t mine = MyWord();
  using Clock = std::chrono::steady_clock;
  const Clock::time_point start = Clock::now();
  const Clock::time_point deadline =
      timeout >= std::chrono::hours(24 * 365) ? Clock::time_point::max() : start + timeout;
  bool spun = false;
  while (true) {
    int64_t seen = word_->load(std::memory_order_acquire);
    if (seen == 0) {
      CrashPoint("process_lock_before_take");
      if (word_->compare_exchange_weak(seen, static_cast<int64_t>(mine), std::memory_order_acquire,
                                       std::memory_order_relaxed)) {
        *acquired = true;
        return AfterTake(acquired);
      }
      continue;
    }
    const Clock::duration remaining = deadline - Clock::now();
    if (remaining.count() <= 0) {  // A wait about to fail looks for a dead holder first.
      if (TakeOverIfGone(word_, seen, mine)) {
        *acquired = *owner_died = true;
        return AfterTake(acquired);
      }
      return Status::OK();
    }
    if (!spun) {  // A holder that runs releases within a few microseconds: watch, no flag.
      spun = true;
      std::chrono::nanoseconds spent;
      if (BoundedSpin(
              word_, remaining, [&] { return word_->load(std::memory_order_relaxed) != seen; },
              &spent)) {
        continue;
      }
    }
    if ((static_cast<uint64_t>(seen) & kWaiters) == 0) {
      if (!word_->compare_exchange_weak(seen, seen | static_cast<int64_t>(kWaiters),
                                        std::memory_order_relaxed)) {
        continue;
      }
      seen |= static_cast<int64_t>(kWaiters);
      CrashPoint("process_lock_flagged");
    }
    FutexSleep(ProcessLockFutex(word_), ProcessLockFutexValue(seen),
               std::min<Clock::duration>(remaining, kLivenessPeriod));
    SHM_RETURN_IF_ERROR(CheckLive());
    if (word_->load(std::memory_order_acquire) == seen && TakeOverIfGone(word_, seen, mine)) {
      *acquired = *owner_died = true;
      return AfterTake(acquired);
    }
  }
}

Status ProcessLock::Release() {
  SHM_RETURN_IF_ERROR(CheckLive());
  const int64_t held = word_->exchange(0, std::memory_order_release);
  if (held == 0) return Status::Conflict("release unlocked lock");
  CrashPoint("process_lock_released");
  if ((static_cast<uint64_t>(held) & kWaiters) != 0) FutexWakeSleepers(ProcessLockFutex(word_));
  return Status::OK();
}

Status ProcessLock::Locked(bool* locked) const {
  SHM_RETURN_IF_ERROR(CheckLive());
  *locked = word_->load(std::memory_order_acquire) != 0;
  return Status::OK();
}

Status ProcessLock::Holder(pid_t* pid) const {
  SHM_RETURN_IF_ERROR(CheckLive());
  *pid =
      static_cast<pid_t>(static_cast<uint64_t>(word_->load(std::memory_order_acquire)) & kPidMask);
  return Status::OK();
}

}  // namespace shm
