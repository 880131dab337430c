#include "futex.h"

#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <climits>
#include <ctime>

#include "cpu_relax.h"

namespace shm {

static_assert(sizeof(std::atomic<uint32_t>) == sizeof(uint32_t));

namespace {

// Watches *word for at most min(kSpinBudget, timeout) when the advisor says so: true if it
// changed from `seen`. *spent is the time spun.
bool SpinWhileUnchanged(std::atomic<uint32_t>* word, uint32_t seen,
                        std::chrono::nanoseconds timeout, std::chrono::nanoseconds* spent) {
  return BoundedSpin(
      word, timeout, [&] { return word->load(std::memory_order_acquire) != seen; }, spent);
}

void Sleep(std::atomic<uint32_t>* word, uint32_t seen, std::chrono::nanoseconds timeout) {
  if (timeout.count() <= 0) return;
  timespec relative;
  relative.tv_sec = static_cast<time_t>(timeout.count() / 1'000'000'000);
  relative.tv_nsec = static_cast<long>(timeout.count() % 1'000'000'000);
  // Not FUTEX_PRIVATE_FLAG: the word is shared between processes.
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAIT, seen, &relative, nullptr, 0);
}

}  // namespace

// One online CPU: the waker cannot run while the waiter spins, so a spin can only delay it.
bool SeveralCpus() {
  static const bool several = sysconf(_SC_NPROCESSORS_ONLN) > 1;
  return several;
}

void FutexSleep(const void* word, uint32_t seen, std::chrono::nanoseconds timeout) {
  Sleep(static_cast<std::atomic<uint32_t>*>(const_cast<void*>(word)), seen, timeout);
}

void FutexWakeSleepers(const void* word) {
  syscall(SYS_futex, static_cast<uint32_t*>(const_cast<void*>(word)), FUTEX_WAKE, INT_MAX, nullptr,
          nullptr, 0);
}

SpinAdvisor& SpinAdvisor::Get() {
  static SpinAdvisor advisor;
  return advisor;
}

SpinAdvisor::Place& SpinAdvisor::PlaceOf(const void* word) {
  // Fibonacci hashing of the address (words are 4-byte aligned): neighbours spread out.
  const uint64_t key = static_cast<uint64_t>(reinterpret_cast<uintptr_t>(word)) >> 2;
  return places_[(key * 0x9E3779B97F4A7C15ull) >> (64 - 6)];
}
static_assert(SpinAdvisor::kFullCredit >= SpinAdvisor::kFreshCredit);

bool SpinAdvisor::ShouldSpin(const void* word) {
  static_assert(kPlaces == 64, "PlaceOf keeps 6 bits");
  Place& place = PlaceOf(word);
  const auto address = reinterpret_cast<uintptr_t>(word);
  if (place.word.load(std::memory_order_relaxed) != address) {  // New here: give it a chance.
    place.word.store(address, std::memory_order_relaxed);
    place.credit.store(kFreshCredit, std::memory_order_relaxed);
    place.skipped.store(0, std::memory_order_relaxed);
    place.probe_every.store(kProbeEvery, std::memory_order_relaxed);
    return true;
  }
  if (place.credit.load(std::memory_order_relaxed) > 0) return true;
  if (place.skipped.fetch_add(1, std::memory_order_relaxed) + 1 <
      place.probe_every.load(std::memory_order_relaxed)) {
    return false;
  }
  place.skipped.store(0, std::memory_order_relaxed);  // A probe.
  return true;
}

void SpinAdvisor::Record(const void* word, bool paid) {
  Place& place = PlaceOf(word);
  if (place.word.load(std::memory_order_relaxed) != reinterpret_cast<uintptr_t>(word)) return;
  if (paid) {
    place.credit.store(kFullCredit, std::memory_order_relaxed);
    place.probe_every.store(kProbeEvery, std::memory_order_relaxed);
    return;
  }
  const int32_t credit = place.credit.load(std::memory_order_relaxed);
  if (credit > 0) {
    place.credit.store(credit - 1, std::memory_order_relaxed);
    return;
  }
  const uint32_t every = place.probe_every.load(std::memory_order_relaxed);  // A failed probe.
  place.probe_every.store(std::min(every * 2, kMaxProbeEvery), std::memory_order_relaxed);
}

void FutexWait(std::atomic<uint32_t>* word, uint32_t seen, std::chrono::nanoseconds timeout) {
  if (timeout.count() <= 0) return;
  std::chrono::nanoseconds spent;
  if (SpinWhileUnchanged(word, seen, timeout, &spent)) return;
  Sleep(word, seen, timeout - spent);
}

void FutexWakeAll(std::atomic<uint32_t>* word) {
  word->fetch_add(1, std::memory_order_seq_cst);
  FutexWakeSleepers(word);
}

// Always a store, even over a set flag: a waker may be clearing it meanwhile, and only this
// thread's own store orders its sleep's read of the word after the waker's bump.
void MarkWakeWanted(std::atomic<uint32_t>* wanted) { wanted->store(1, std::memory_order_seq_cst); }

// The spin comes before the mark: a waker that bumps the word while it is not marked skips its
// system call, and the spinner sees the bump. The mark then the sleep keep the usual protocol.
void FutexWaitWanted(std::atomic<uint32_t>* word, std::atomic<uint32_t>* wanted, uint32_t seen,
                     std::chrono::nanoseconds timeout) {
  if (timeout.count() <= 0) return;
  std::chrono::nanoseconds spent;
  if (SpinWhileUnchanged(word, seen, timeout, &spent)) return;
  MarkWakeWanted(wanted);
  Sleep(word, seen, timeout - spent);
}

void FutexWakeIfWanted(std::atomic<uint32_t>* word, std::atomic<uint32_t>* wanted) {
  word->fetch_add(1, std::memory_order_seq_cst);
  if (wanted->load(std::memory_order_seq_cst) == 0) return;
  if (wanted->exchange(0, std::memory_order_seq_cst) == 0) return;  // Another waker took it.
  FutexWakeSleepers(word);
}

}  // namespace shm
