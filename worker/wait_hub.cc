#include "wait_hub.h"

#include <exception>
#include <memory>
#include <string>
#include <utility>

namespace shm {
namespace {

// A throwing attempt or give_up is a handler bug: its request gets a 500, the others go on.
template <typename Fn>
Status Guarded(const Fn& fn) {
  try {
    return fn();
  } catch (const std::exception& e) {
    return Status::Internal(std::string("wait failed: ") + e.what());
  } catch (...) {
    return Status::Internal("wait failed");
  }
}

// The watcher's longest sleep: how soon it stops watching objects nobody waits on any more.
constexpr std::chrono::milliseconds kWatchSlice{100};
constexpr std::chrono::seconds kIdleSlice{3600};

}  // namespace

WaitHub::WaitHub(boost::asio::io_context* ioc)
    : queue_([this] { Arm(); }), timer_(*ioc), watcher_([this] { RunWatcher(); }) {}

WaitHub::~WaitHub() {
  stopping_.store(true);
  watch_.Interrupt();
  watcher_.join();
}

void WaitHub::WatchObject(const std::string& key, const ObjectRef& object) {
  MutexLock lock(&watch_mu_);
  if (watched_.contains(key) || !watch_.Watch(object)) return;
  watched_.emplace(key, object);
  watch_.Interrupt();  // The watcher sleeps on the new word from now on.
}

void WaitHub::RunWatcher() {
  while (!stopping_.load()) {
    // Nothing watched: nothing to reconcile, and a new watch interrupts the sleep.
    const auto slice = watch_.watched() == 0 ? kIdleSlice : kWatchSlice;
    if (watch_.Wait(slice) && !stopping_.load()) {
      queue_.Kick();
      MutexLock lock(&watch_mu_);
      if (on_word_) on_word_();
    }
    MutexLock lock(&watch_mu_);
    for (auto it = watched_.begin(); it != watched_.end();) {
      if (queue_.HasKey(it->first)) {
        ++it;
        continue;
      }
      const ObjectRef object = it->second;
      it = watched_.erase(it);
      // Several keys may watch one object (a keyspace): it stays watched while one is left.
      bool shared = false;
      for (const auto& [key, other] : watched_) shared = shared || other.entry == object.entry;
      if (!shared) watch_.Unwatch(object);
    }
  }
}

void WaitHub::WatchWord(std::atomic<uint32_t>* word, std::function<void()> on_change) {
  MutexLock lock(&watch_mu_);
  on_word_ = std::move(on_change);
  watch_.WatchWord(word);
  watch_.Interrupt();
}

bool WaitHub::SubmitHttp(ParkedWait wait, Done done, uint64_t* id) {
  struct Call {
    ParkedWait wait;
    Done done;
  };
  auto call = std::make_shared<Call>(Call{std::move(wait), std::move(done)});
  auto attempt = [call] {
    HttpResponse response;
    bool answered = true;
    Status status = Guarded([&] {
      Status s;
      answered = call->wait.attempt(&response, &s);
      return s;
    });
    if (answered) call->done(std::move(status), std::move(response));
    return answered;
  };
  auto give_up = [call](bool stopping) {
    HttpResponse response;
    Status status = Guarded([&] { return call->wait.give_up(&response, stopping); });
    call->done(std::move(status), std::move(response));
  };
  auto arrive = [call] {
    if (!call->wait.arrive) return;
    Guarded([&] {
      call->wait.arrive();
      return Status::OK();
    }).ok();
  };
  WaitQueue::Wait queued{call->wait.key, call->wait.deadline, std::move(attempt),
                         std::move(give_up), std::move(arrive)};
  const ObjectRef object = call->wait.object;
  const std::string key = call->wait.key;
  if (queue_.Submit(std::move(queued), id)) return true;
  if (object.valid()) WatchObject(key, object);
  return false;
}

void WaitHub::Stop() {
  stopping_.store(true);
  watch_.Interrupt();
  queue_.Stop();
  MutexLock lock(&mu_);
  ++generation_;
  armed_ = false;
  timer_.cancel();
}

void WaitHub::Arm() {
  MutexLock lock(&mu_);
  const Clock::time_point when = queue_.NextPoll();
  if (when == Clock::time_point::max() || (armed_ && armed_at_ <= when)) return;
  armed_ = true;
  armed_at_ = when;
  const uint64_t generation = ++generation_;
  timer_.expires_at(when);  // Cancels the earlier wait, whose handler then does nothing.
  timer_.async_wait([this, generation](const boost::system::error_code& ec) {
    if (!ec) OnTimer(generation);
  });
}

void WaitHub::OnTimer(uint64_t generation) {
  {
    MutexLock lock(&mu_);
    if (generation != generation_) return;
    armed_ = false;
  }
  queue_.Poll(Clock::now());
  Arm();
}

}  // namespace shm
