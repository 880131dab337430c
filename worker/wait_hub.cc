#include "wait_hub.h"

#include <algorithm>
#include <exception>
#include <set>
#include <utility>

#include "shm/log.h"

namespace shm {
namespace {

// A throwing attempt or give_up is a bug in a handler: its request gets a 500, the hub goes on.
template <typename Fn>
bool Guarded(const Fn& fn, Status* status) {
  try {
    return fn();
  } catch (const std::exception& e) {
    *status = Status::Internal(std::string("wait failed: ") + e.what());
  } catch (...) {
    *status = Status::Internal("wait failed");
  }
  return true;
}

}  // namespace

WaitHub::WaitHub(boost::asio::io_context* ioc) : timer_(*ioc) {}

bool WaitHub::Submit(ParkedWait wait, Done done, Status* status, HttpResponse* response,
                     uint64_t* id) {
  MutexLock lock(&mu_);
  auto it = per_key_.find(wait.key);
  const bool behind_others = it != per_key_.end() && it->second > 0;
  if (!behind_others && Guarded([&] { return wait.attempt(response, status); }, status)) {
    return true;
  }
  if (stopped_ || (!behind_others && wait.deadline <= Clock::now())) {
    Guarded(
        [&] {
          *status = wait.give_up(response, stopped_);
          return true;
        },
        status);
    return true;
  }
  *id = next_id_++;
  ++per_key_[wait.key];
  waiters_.push_back(Waiter{*id, std::move(wait), std::move(done)});
  queued_.store(waiters_.size(), std::memory_order_relaxed);
  poll_ = kMinPoll;
  // Queued behind others: what they wait for may be there already, so look now.
  ArmLocked(behind_others ? Clock::now() : Clock::now() + kMinPoll);
  return false;
}

void WaitHub::Cancel(uint64_t id) {
  Done dropped;  // Released after the mutex: it may own the connection.
  MutexLock lock(&mu_);
  for (auto it = waiters_.begin(); it != waiters_.end(); ++it) {
    if (it->id != id) continue;
    dropped = std::move(it->done);
    if (--per_key_[it->wait.key] == 0) per_key_.erase(it->wait.key);
    waiters_.erase(it);
    queued_.store(waiters_.size(), std::memory_order_relaxed);
    return;
  }
}

void WaitHub::Kick() {
  if (queued() == 0) return;
  MutexLock lock(&mu_);
  poll_ = kMinPoll;
  ArmLocked(Clock::now());
}

void WaitHub::Stop() {
  std::vector<Answer> answers;
  {
    MutexLock lock(&mu_);
    stopped_ = true;
    for (Waiter& w : waiters_) {
      Answer& a = answers.emplace_back(Answer{std::move(w.done), Status::OK(), {}});
      Guarded(
          [&] {
            a.status = w.wait.give_up(&a.response, true);
            return true;
          },
          &a.status);
    }
    waiters_.clear();
    per_key_.clear();
    queued_.store(0, std::memory_order_relaxed);
    ++generation_;
    armed_ = false;
    timer_.cancel();
  }
  Deliver(&answers);
}

void WaitHub::RoundLocked(std::vector<Answer>* answers) {
  const Clock::time_point now = Clock::now();
  std::set<std::string, std::less<>> empty_keys;  // Their first waiter found nothing this round.
  for (auto it = waiters_.begin(); it != waiters_.end();) {
    Waiter& w = *it;
    Answer answer{nullptr, Status::OK(), {}};
    bool answered = false;
    if (!empty_keys.contains(w.wait.key)) {
      answered =
          Guarded([&] { return w.wait.attempt(&answer.response, &answer.status); }, &answer.status);
      if (!answered) empty_keys.insert(w.wait.key);
    }
    if (!answered && w.wait.deadline <= now) {
      answered = true;
      Guarded(
          [&] {
            answer.status = w.wait.give_up(&answer.response, false);
            return true;
          },
          &answer.status);
    }
    if (!answered) {
      ++it;
      continue;
    }
    answer.done = std::move(w.done);
    answers->push_back(std::move(answer));
    if (--per_key_[w.wait.key] == 0) per_key_.erase(w.wait.key);
    it = waiters_.erase(it);
  }
  queued_.store(waiters_.size(), std::memory_order_relaxed);
}

void WaitHub::ArmLocked(Clock::time_point when) {
  if (stopped_ || (armed_ && armed_at_ <= when)) return;
  armed_ = true;
  armed_at_ = when;
  const uint64_t generation = ++generation_;
  timer_.expires_at(when);  // Cancels the earlier wait, whose handler then does nothing.
  timer_.async_wait([this, generation](const boost::system::error_code& ec) {
    if (!ec) OnTimer(generation);
  });
}

void WaitHub::OnTimer(uint64_t generation) {
  std::vector<Answer> answers;
  {
    MutexLock lock(&mu_);
    if (generation != generation_ || stopped_) return;
    armed_ = false;
    RoundLocked(&answers);
    if (!waiters_.empty()) {
      Clock::time_point next = Clock::now() + poll_;
      for (const Waiter& w : waiters_) next = std::min(next, w.wait.deadline);
      poll_ = std::min<Clock::duration>(poll_ * 2, kMaxPoll);
      ArmLocked(next);
    }
  }
  Deliver(&answers);
}

void WaitHub::Deliver(std::vector<Answer>* answers) {
  for (Answer& a : *answers) a.done(std::move(a.status), std::move(a.response));
}

}  // namespace shm
