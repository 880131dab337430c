// WaitHub: a worker's parked waits (a pop waiting for a push, an acquire waiting for a release):
// the library's WaitQueue (shm/wait_queue.h: arrival order, backoff, deadlines) driven by a
// timer on the worker's event loop. One per worker, shared by its HTTP sessions (SubmitHttp,
// with a request's ParkedWait) and its Redis-protocol sessions (queue()), so the waiters of one
// list are served in arrival order whichever protocol they came by.
//
// A wait that names its object (ParkedWait::object) is also retried at once when any process
// changes that object: a watcher thread sleeps on the objects' futex words (shm/wake_watch.h)
// and kicks the queue; the poll remains for what it cannot watch.
//
// Thread-safety: every member may be called from any thread. `done` is called once per
// submitted wait (unless cancelled), from whichever thread answers it, under the queue's mutex:
// it must only hand the answer to its connection's executor.
#ifndef SHM_WORKER_WAIT_HUB_H_
#define SHM_WORKER_WAIT_HUB_H_

#include <atomic>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <thread>

#include "shm/mutex.h"
#include "shm/router.h"
#include "shm/status.h"
#include "shm/wait_queue.h"
#include "shm/wake_watch.h"

namespace shm {

class WaitHub {
 public:
  using Clock = WaitQueue::Clock;
  // The wait's outcome: the handler's status and response (Router::Finish makes the answer).
  using Done = std::function<void(Status status, HttpResponse response)>;

  // Starts the watcher thread: construct after fork.
  explicit WaitHub(boost::asio::io_context* ioc);
  ~WaitHub();
  WaitHub(const WaitHub&) = delete;
  WaitHub& operator=(const WaitHub&) = delete;

  // Queues `wait` (WaitQueue::Submit). True when it was answered at once (`done` has run);
  // false when it waits, as *id.
  bool SubmitHttp(ParkedWait wait, Done done, uint64_t* id);
  // The queue itself, for waits of other front ends (and Cancel, Kick: see WaitQueue).
  WaitQueue* queue() { return &queue_; }
  // Retries the queue at once when `object` changes, while a wait of `key` is queued (the Redis
  // side's waits watch their keyspace, whose word the blocked pops' lines ring).
  void WatchObject(const std::string& key, const ObjectRef& object);
  // Watches `word` (a futex word in the segment) for the hub's life: each change kicks the queue
  // and runs `on_change` on the watcher thread (it must only post work to the loop).
  void WatchWord(std::atomic<uint32_t>* word, std::function<void()> on_change);
  // The worker is stopping: every wait gives up now (a pop 204, an acquire 503), and so does
  // every later one that would have to wait.
  void Stop();

 private:
  // Makes the timer fire at the queue's NextPoll.
  void Arm();
  void OnTimer(uint64_t generation);
  // The watcher thread: kicks the queue when a watched object changes, and stops watching the
  // objects nobody waits on any more.
  void RunWatcher();

  WaitQueue queue_;
  Mutex mu_;  // The timer's state.
  boost::asio::steady_timer timer_ GUARDED_BY(mu_);
  bool armed_ GUARDED_BY(mu_) = false;
  Clock::time_point armed_at_ GUARDED_BY(mu_);
  uint64_t generation_ GUARDED_BY(mu_) = 0;  // Of the armed wait; older ones do nothing.

  WakeWatch watch_;
  Mutex watch_mu_;
  std::map<std::string, ObjectRef> watched_ GUARDED_BY(watch_mu_);  // By wait key.
  std::function<void()> on_word_ GUARDED_BY(watch_mu_);
  std::atomic<bool> stopping_{false};
  std::thread watcher_;  // Last: started once everything it uses exists.
};

}  // namespace shm

#endif  // SHM_WORKER_WAIT_HUB_H_
