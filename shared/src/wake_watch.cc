#include "shm/wake_watch.h"

#include <errno.h>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <vector>

#include "futex.h"
#include "layout.h"
#include "list_rep.h"
#include "object_guard.h"
#include "segment_impl.h"

namespace shm {
namespace {

std::atomic<uint32_t>* WordOf(const ObjectRef& ref) { return &ref.entry->wake_seq; }

// A list wakes its waiters on a push only while it counts some (ListRep::waiters): the watch
// counts as one. Other kinds wake whoever sleeps on the word.
Status CountListWaiter(const ObjectRef& ref, bool add) {
  if (static_cast<ObjectKind>(ref.entry->kind.load()) != ObjectKind::kList) return Status::OK();
  ObjectGuard guard;
  SHM_RETURN_IF_ERROR(guard.Lock(ref));
  Segment::Impl* seg = ref.segment->impl();
  ListRep* rep = seg->Ptr<ListRep>(ref.entry->body.load(std::memory_order_acquire));
  if (add) {
    rep->waiters.fetch_add(1);
  } else if (rep->waiters.load() > 0) {
    rep->waiters.fetch_sub(1);
  }
  return Status::OK();
}

}  // namespace

WakeWatch::~WakeWatch() {
  MutexLock lock(&mu_);
  for (auto& [entry, w] : watched_) CountListWaiter(w.ref, false).ok();
  watched_.clear();
}

bool WakeWatch::Watch(const ObjectRef& ref) {
  if (!ref.valid()) return false;
  MutexLock lock(&mu_);
  if (watched_.contains(ref.entry)) return true;
  if (watched_.size() >= kMaxWatched) return false;
  const uint32_t seen = WordOf(ref)->load(std::memory_order_acquire);
  if (!CountListWaiter(ref, true).ok()) return false;
  watched_.emplace(ref.entry, Watched{ref, seen});
  return true;
}

void WakeWatch::Unwatch(const ObjectRef& ref) {
  MutexLock lock(&mu_);
  auto it = watched_.find(ref.entry);
  if (it == watched_.end()) return;
  CountListWaiter(it->second.ref, false).ok();  // NotFound: the list is gone, and its count.
  watched_.erase(it);
}

void WakeWatch::WatchWord(std::atomic<uint32_t>* word) {
  MutexLock lock(&mu_);
  word_ = word;
  if (word != nullptr) word_seen_ = word->load(std::memory_order_acquire);
}

size_t WakeWatch::watched() const {
  MutexLock lock(&mu_);
  return watched_.size() + (word_ != nullptr ? 1 : 0);
}

void WakeWatch::Interrupt() {
  interrupt_.fetch_add(1, std::memory_order_seq_cst);
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(&interrupt_), FUTEX_WAKE | FUTEX_PRIVATE_FLAG, 1,
          nullptr, nullptr, 0);
}

bool WakeWatch::Wait(std::chrono::nanoseconds timeout) {
  static_assert(sizeof(std::atomic<uint32_t>) == sizeof(uint32_t));
  std::vector<futex_waitv> words;
  uint32_t interrupt_seen = 0;
  {
    MutexLock lock(&mu_);
    interrupt_seen = interrupt_seen_;
    words.reserve(watched_.size() + 2);
    words.push_back(futex_waitv{interrupt_seen_, reinterpret_cast<uintptr_t>(&interrupt_),
                                FUTEX_32 | FUTEX_PRIVATE_FLAG, 0});
    for (auto& [entry, w] : watched_) {
      // A lock's release wakes only a wanted word (futex.h); set after `seen` was consumed, so a
      // release in between shows as a changed word and the sleep returns at once.
      MarkWakeWanted(&w.ref.entry->wake_wanted);
      words.push_back(futex_waitv{w.seen, reinterpret_cast<uintptr_t>(WordOf(w.ref)), FUTEX_32, 0});
    }
    if (word_ != nullptr) {
      words.push_back(futex_waitv{word_seen_, reinterpret_cast<uintptr_t>(word_), FUTEX_32, 0});
    }
  }
  timespec deadline{};
  clock_gettime(CLOCK_MONOTONIC, &deadline);
  const int64_t nanos = deadline.tv_nsec + timeout.count() % 1'000'000'000;
  deadline.tv_sec += static_cast<time_t>(timeout.count() / 1'000'000'000 + nanos / 1'000'000'000);
  deadline.tv_nsec = static_cast<long>(nanos % 1'000'000'000);
  long rc = syscall(SYS_futex_waitv, words.data(), static_cast<unsigned>(words.size()), 0u,
                    &deadline, CLOCK_MONOTONIC);
  const bool timed_out = rc < 0 && errno == ETIMEDOUT;
  if (rc < 0 && errno == ENOSYS) {
    // No futex_waitv: sleep on the interrupt word alone; the caller's poll finds the changes.
    timespec relative{static_cast<time_t>(timeout.count() / 1'000'000'000),
                      static_cast<long>(timeout.count() % 1'000'000'000)};
    syscall(SYS_futex, reinterpret_cast<uint32_t*>(&interrupt_), FUTEX_WAIT | FUTEX_PRIVATE_FLAG,
            interrupt_seen, &relative, nullptr, 0);
  }
  // Consume what woke us: a change after this read makes the next Wait return at once. A change
  // between the timeout and this read is consumed too, so it counts as a wake (else it is lost).
  MutexLock lock(&mu_);
  bool changed = false;
  auto consume = [&changed](uint32_t* seen, uint32_t now) {
    changed = changed || now != *seen;
    *seen = now;
  };
  consume(&interrupt_seen_, interrupt_.load(std::memory_order_acquire));
  for (auto& [entry, w] : watched_)
    consume(&w.seen, WordOf(w.ref)->load(std::memory_order_acquire));
  if (word_ != nullptr) consume(&word_seen_, word_->load(std::memory_order_acquire));
  return !timed_out || changed;
}

}  // namespace shm
