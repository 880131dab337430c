#include "futex.h"

#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <climits>
#include <ctime>

namespace shm {

static_assert(sizeof(std::atomic<uint32_t>) == sizeof(uint32_t));

void FutexWait(std::atomic<uint32_t>* word, uint32_t seen, std::chrono::nanoseconds timeout) {
  if (timeout.count() <= 0) return;
  timespec relative;
  relative.tv_sec = static_cast<time_t>(timeout.count() / 1'000'000'000);
  relative.tv_nsec = static_cast<long>(timeout.count() % 1'000'000'000);
  // Not FUTEX_PRIVATE_FLAG: the word is shared between processes.
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAIT, seen, &relative, nullptr, 0);
}

void FutexWakeAll(std::atomic<uint32_t>* word) {
  word->fetch_add(1, std::memory_order_seq_cst);
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAKE, INT_MAX, nullptr, nullptr, 0);
}

// Always a store, even over a set flag: a waker may be clearing it meanwhile, and only this
// thread's own store orders its sleep's read of the word after the waker's bump.
void MarkWakeWanted(std::atomic<uint32_t>* wanted) { wanted->store(1, std::memory_order_seq_cst); }

void FutexWaitWanted(std::atomic<uint32_t>* word, std::atomic<uint32_t>* wanted, uint32_t seen,
                     std::chrono::nanoseconds timeout) {
  if (timeout.count() <= 0) return;
  MarkWakeWanted(wanted);
  FutexWait(word, seen, timeout);
}

void FutexWakeIfWanted(std::atomic<uint32_t>* word, std::atomic<uint32_t>* wanted) {
  word->fetch_add(1, std::memory_order_seq_cst);
  if (wanted->load(std::memory_order_seq_cst) == 0) return;
  if (wanted->exchange(0, std::memory_order_seq_cst) == 0) return;  // Another waker took it.
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAKE, INT_MAX, nullptr, nullptr, 0);
}

}  // namespace shm
