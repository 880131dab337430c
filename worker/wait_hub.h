// WaitHub: the parked waits of one worker (an HTTP pop waiting for a push, an acquire waiting
// for a release), retried on the worker's event loop instead of holding one of its threads.
//
// A wait is tried at once when no earlier wait of its key is queued; otherwise it queues behind
// them, so within a worker the waits of one key are served strictly in arrival order. Queued
// waits are tried in that order in rounds: at once when a write of this worker may have freed
// them (Kick), and otherwise on a timer that polls every 1 ms, doubling up to 20 ms while
// nothing changes. Another process's push reaches this worker through that poll (the RESP
// BLPOP polls the same way). In a round, once the first waiter of a key found nothing, the
// waiters behind it are not tried: a round costs one try per key, and an item never goes to a
// later waiter of this worker while an earlier one still waits.
//
// Thread-safety: every member may be called from any thread. Attempts run under the hub's
// mutex (they never block); `done` callbacks run after it is released, on the hub's timer or
// the caller of Stop, so they must hand the answer to their connection's executor.
#ifndef SHM_WORKER_WAIT_HUB_H_
#define SHM_WORKER_WAIT_HUB_H_

#include <atomic>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <list>
#include <map>
#include <string>
#include <vector>

#include "shm/mutex.h"
#include "shm/router.h"
#include "shm/status.h"

namespace shm {

class WaitHub {
 public:
  using Clock = std::chrono::steady_clock;
  // The wait's outcome: the handler's status and response (Router::Finish makes the answer).
  using Done = std::function<void(Status status, HttpResponse response)>;

  static constexpr std::chrono::milliseconds kMinPoll{1};
  static constexpr std::chrono::milliseconds kMaxPoll{20};

  explicit WaitHub(boost::asio::io_context* ioc);
  WaitHub(const WaitHub&) = delete;
  WaitHub& operator=(const WaitHub&) = delete;

  // Answers now (true, with *status and *response) when the wait's first try answers, its
  // deadline has passed, or the hub is stopped. Otherwise queues it (false): `done` is then
  // called exactly once, unless Cancel(*id) removes it first.
  bool Submit(ParkedWait wait, Done done, Status* status, HttpResponse* response, uint64_t* id);
  // The waiting client went away: the wait is dropped without an answer (it takes nothing).
  void Cancel(uint64_t id);
  // Something this worker did (a push, a release, a delete) may answer queued waits: try them
  // now rather than at the next poll. Cheap when nothing waits.
  void Kick();
  // The worker is stopping: every queued wait gives up (`stopping`), and so does every later
  // Submit that would have to wait.
  void Stop();
  size_t queued() const { return queued_.load(std::memory_order_relaxed); }

 private:
  struct Waiter {
    uint64_t id;
    ParkedWait wait;
    Done done;
  };
  // An answer to deliver once the mutex is released.
  struct Answer {
    Done done;
    Status status;
    HttpResponse response;
  };

  // Tries every queued wait in arrival order; collects the answered and expired ones.
  void RoundLocked(std::vector<Answer>* answers) REQUIRES(mu_);
  // Makes the timer fire by `when` (never later than already armed).
  void ArmLocked(Clock::time_point when) REQUIRES(mu_);
  void OnTimer(uint64_t generation);
  static void Deliver(std::vector<Answer>* answers);

  Mutex mu_;
  std::list<Waiter> waiters_ GUARDED_BY(mu_);                           // Arrival order.
  std::map<std::string, size_t, std::less<>> per_key_ GUARDED_BY(mu_);  // Queued waits per key.
  boost::asio::steady_timer timer_ GUARDED_BY(mu_);
  bool armed_ GUARDED_BY(mu_) = false;
  Clock::time_point armed_at_ GUARDED_BY(mu_);
  uint64_t generation_ GUARDED_BY(mu_) = 0;  // Of the armed timer wait; older ones do nothing.
  Clock::duration poll_ GUARDED_BY(mu_) = kMinPoll;
  uint64_t next_id_ GUARDED_BY(mu_) = 1;
  bool stopped_ GUARDED_BY(mu_) = false;
  std::atomic<size_t> queued_{0};
};

}  // namespace shm

#endif  // SHM_WORKER_WAIT_HUB_H_
