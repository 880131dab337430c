// WaitQueue: the waits of one process's front end on shared objects (a pop waiting for a push, a
// lock acquire waiting for a release), kept without a thread and retried in arrival order.
//
// A front end (the HTTP worker's sessions, the Redis protocol's) describes each wait: the object
// it waits on (its key), a deadline, one try that never blocks, and the answer when it gives up.
// The queue holds the rule every front end shares:
//  - A wait is tried at once only when no earlier wait of its key is queued; otherwise it queues
//    behind them. Each key's waits are tried in arrival order, and once one finds nothing in a
//    round, the waits behind it are not tried in that round. So within one queue, an object's
//    waiters are served strictly first come, first served, and a round costs one try per key
//    (plus one per answer and per expired wait), however many wait.
//  - Rounds run when the owner calls Poll at the time NextPoll tells: at once after Kick (this
//    process changed something a waiter may want), else 1 ms after the last change, doubling up
//    to 20 ms while nothing is answered, and at the earliest deadline. Another process's change is
//    seen by that poll.
//  - Past its deadline a wait gives up (`stopping` false); after Stop every queued wait, and every
//    later one that would have to wait, gives up with `stopping` true.
// The queue has no clock or timer of its own: the owner's event loop drives it, told by the
// `on_sooner` callback when NextPoll moves earlier, so a front end that only submits and
// cancels needs nothing but the queue.
//
// Thread-safety: every member may be called from any thread. The callbacks run under the queue's
// mutex, in Submit, Poll or Stop, and must not call the queue; they never block (hand the answer
// to the waiter's own thread or executor). Process-local: never in shared memory.
#ifndef SHM_WAIT_QUEUE_H_
#define SHM_WAIT_QUEUE_H_

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <list>
#include <map>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>

#include "shm/mutex.h"
#include "shm/thread_annotations.h"

namespace shm {

class WaitQueue {
 public:
  using Clock = std::chrono::steady_clock;

  struct Wait {
    std::string key;  // The object waited on, e.g. "list:jobs".
    Clock::time_point deadline;
    // One try that never blocks: true when it answered (the waiter has its answer).
    std::function<bool()> attempt;
    // The wait ends unanswered: the deadline passed (`stopping` false) or the queue stopped.
    std::function<void(bool stopping)> give_up;
    // Optional: runs first in Submit, under the queue's mutex, before the first try. A wait that
    // takes a place in a line across processes (shm/list.h's ListPlace) takes it here, so the
    // line's order and this queue's order of the key agree.
    std::function<void()> arrive;
  };

  static constexpr std::chrono::milliseconds kMinPoll{1};
  static constexpr std::chrono::milliseconds kMaxPoll{20};

  // `on_sooner` (may be empty) runs, without the queue's mutex held, when NextPoll moved earlier
  // in Submit or Kick: the owner re-arms its timer.
  explicit WaitQueue(std::function<void()> on_sooner = {}) : on_sooner_(std::move(on_sooner)) {}
  WaitQueue(const WaitQueue&) = delete;
  WaitQueue& operator=(const WaitQueue&) = delete;

  // Answers `wait` now (true) when its first try answers, its deadline has passed or the queue
  // is stopped; else queues it (false) and sets *id, and NextPoll may have moved earlier.
  bool Submit(Wait wait, uint64_t* id);
  // The waiter went away: its wait is dropped without running a callback. False when it is not
  // queued (it was answered, or gave up, already).
  bool Cancel(uint64_t id);
  // Something this process did may answer queued waits: NextPoll becomes now.
  void Kick();
  // Runs a round if one is due at `now`.
  void Poll(Clock::time_point now);
  // When Poll should run next; Clock::time_point::max() when nothing waits.
  Clock::time_point NextPoll() const;
  // Every queued wait gives up (`stopping`), and so does every later Submit that would wait.
  void Stop();
  size_t size() const { return size_.load(std::memory_order_relaxed); }
  // Whether a wait of `key` is queued.
  bool HasKey(std::string_view key) const;

 private:
  struct Waiter {
    uint64_t id;
    Wait wait;
  };
  using KeyMap = std::map<std::string, std::list<Waiter>, std::less<>>;
  using DeadlineMap = std::multimap<Clock::time_point, uint64_t>;
  // Where a queued wait is, for Cancel and expiry.
  struct Where {
    KeyMap::iterator key;
    std::list<Waiter>::iterator waiter;
    DeadlineMap::iterator deadline;
  };

  bool SubmitLocked(Wait wait, uint64_t* id) REQUIRES(mu_);
  void RoundLocked(Clock::time_point now) REQUIRES(mu_);
  // Removes a queued wait; its callbacks are destroyed with it.
  void EraseLocked(uint64_t id) REQUIRES(mu_);

  const std::function<void()> on_sooner_;
  mutable Mutex mu_;
  // A round costs one try per key (plus one per answer and per expiry), however many wait.
  KeyMap by_key_ GUARDED_BY(mu_);  // Each key's waits in arrival order; no empty lists.
  DeadlineMap by_deadline_ GUARDED_BY(mu_);
  std::unordered_map<uint64_t, Where> by_id_ GUARDED_BY(mu_);
  Clock::time_point next_poll_ GUARDED_BY(mu_) = Clock::time_point::max();
  Clock::duration backoff_ GUARDED_BY(mu_) = kMinPoll;
  uint64_t next_id_ GUARDED_BY(mu_) = 1;
  bool stopped_ GUARDED_BY(mu_) = false;
  std::atomic<size_t> size_{0};
};

}  // namespace shm

#endif  // SHM_WAIT_QUEUE_H_
