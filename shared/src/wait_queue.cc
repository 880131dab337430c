#include "shm/wait_queue.h"

#include <algorithm>
#include <set>
#include <utility>

namespace shm {

bool WaitQueue::Submit(Wait wait, uint64_t* id) {
  {
    MutexLock lock(&mu_);
    if (SubmitLocked(std::move(wait), id)) return true;
  }
  if (on_sooner_) on_sooner_();
  return false;
}

bool WaitQueue::SubmitLocked(Wait wait, uint64_t* id) {
  auto it = per_key_.find(wait.key);
  const bool behind_others = it != per_key_.end();
  if (!behind_others && wait.attempt()) return true;
  if (stopped_ || (!behind_others && wait.deadline <= Clock::now())) {
    wait.give_up(stopped_);
    return true;
  }
  *id = next_id_++;
  ++per_key_[wait.key];
  waiters_.push_back(Waiter{*id, std::move(wait)});
  size_.store(waiters_.size(), std::memory_order_relaxed);
  backoff_ = kMinPoll;
  // Queued behind others: what they wait for may be there already, so look now.
  const Clock::time_point now = Clock::now();
  next_poll_ =
      std::min({next_poll_, behind_others ? now : now + kMinPoll, waiters_.back().wait.deadline});
  return false;
}

bool WaitQueue::Cancel(uint64_t id) {
  Wait dropped;  // Destroyed after the mutex is released: it may own the waiter's connection.
  MutexLock lock(&mu_);
  for (auto it = waiters_.begin(); it != waiters_.end(); ++it) {
    if (it->id != id) continue;
    dropped.attempt = std::move(it->wait.attempt);
    dropped.give_up = std::move(it->wait.give_up);
    EraseLocked(it);
    return true;
  }
  return false;
}

void WaitQueue::Kick() {
  if (size() == 0) return;
  {
    MutexLock lock(&mu_);
    if (waiters_.empty()) return;
    backoff_ = kMinPoll;
    next_poll_ = Clock::now();
  }
  if (on_sooner_) on_sooner_();
}

void WaitQueue::Poll(Clock::time_point now) {
  MutexLock lock(&mu_);
  if (waiters_.empty() || now < next_poll_) return;
  RoundLocked(now);
  if (waiters_.empty()) {
    next_poll_ = Clock::time_point::max();
    return;
  }
  next_poll_ = now + backoff_;
  for (const Waiter& w : waiters_) next_poll_ = std::min(next_poll_, w.wait.deadline);
  backoff_ = std::min<Clock::duration>(backoff_ * 2, kMaxPoll);
}

bool WaitQueue::HasKey(std::string_view key) const {
  MutexLock lock(&mu_);
  return per_key_.find(key) != per_key_.end();
}

WaitQueue::Clock::time_point WaitQueue::NextPoll() const {
  MutexLock lock(&mu_);
  return next_poll_;
}

void WaitQueue::Stop() {
  MutexLock lock(&mu_);
  stopped_ = true;
  for (Waiter& w : waiters_) w.wait.give_up(true);
  waiters_.clear();
  per_key_.clear();
  size_.store(0, std::memory_order_relaxed);
  next_poll_ = Clock::time_point::max();
}

void WaitQueue::RoundLocked(Clock::time_point now) {
  std::set<std::string, std::less<>> found_empty;  // Keys whose first waiter found nothing.
  for (auto it = waiters_.begin(); it != waiters_.end();) {
    Wait& w = it->wait;
    const bool tried = !found_empty.contains(w.key);
    if (tried && w.attempt()) {
      EraseLocked(it++);
      continue;
    }
    if (tried) found_empty.insert(w.key);
    if (w.deadline <= now) {
      w.give_up(false);
      EraseLocked(it++);
      continue;
    }
    ++it;
  }
}

void WaitQueue::EraseLocked(std::list<Waiter>::iterator it) {
  auto count = per_key_.find(it->wait.key);
  if (count != per_key_.end() && --count->second == 0) per_key_.erase(count);
  waiters_.erase(it);
  size_.store(waiters_.size(), std::memory_order_relaxed);
}

}  // namespace shm
