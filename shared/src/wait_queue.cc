#include "shm/wait_queue.h"

#include <algorithm>
#include <utility>
#include <vector>

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
  if (wait.arrive) wait.arrive();
  auto key = by_key_.find(wait.key);
  const bool behind_others = key != by_key_.end();
  if (!behind_others && wait.attempt()) return true;
  if (stopped_ || (!behind_others && wait.deadline <= Clock::now())) {
    wait.give_up(stopped_);
    return true;
  }
  *id = next_id_++;
  if (!behind_others) key = by_key_.try_emplace(wait.key).first;
  const Clock::time_point deadline = wait.deadline;
  key->second.push_back(Waiter{*id, std::move(wait)});
  by_id_.emplace(*id,
                 Where{key, std::prev(key->second.end()), by_deadline_.emplace(deadline, *id)});
  size_.store(by_id_.size(), std::memory_order_relaxed);
  backoff_ = kMinPoll;
  // Queued behind others: what they wait for may be there already, so look now.
  const Clock::time_point now = Clock::now();
  next_poll_ = std::min({next_poll_, behind_others ? now : now + kMinPoll, deadline});
  return false;
}

bool WaitQueue::Cancel(uint64_t id) {
  Wait dropped;  // Destroyed after the mutex is released: it may own the waiter's connection.
  MutexLock lock(&mu_);
  auto it = by_id_.find(id);
  if (it == by_id_.end()) return false;
  dropped.attempt = std::move(it->second.waiter->wait.attempt);
  dropped.give_up = std::move(it->second.waiter->wait.give_up);
  EraseLocked(id);
  return true;
}

void WaitQueue::Kick() {
  if (size() == 0) return;
  {
    MutexLock lock(&mu_);
    if (by_id_.empty()) return;
    backoff_ = kMinPoll;
    next_poll_ = Clock::now();
  }
  if (on_sooner_) on_sooner_();
}

void WaitQueue::Poll(Clock::time_point now) {
  MutexLock lock(&mu_);
  if (by_id_.empty() || now < next_poll_) return;
  RoundLocked(now);
  if (by_id_.empty()) {
    next_poll_ = Clock::time_point::max();
    return;
  }
  next_poll_ = std::min(now + backoff_, by_deadline_.begin()->first);
  backoff_ = std::min<Clock::duration>(backoff_ * 2, kMaxPoll);
}

bool WaitQueue::HasKey(std::string_view key) const {
  MutexLock lock(&mu_);
  return by_key_.find(key) != by_key_.end();
}

WaitQueue::Clock::time_point WaitQueue::NextPoll() const {
  MutexLock lock(&mu_);
  return next_poll_;
}

void WaitQueue::Stop() {
  MutexLock lock(&mu_);
  stopped_ = true;
  std::vector<Waiter*> all;  // In arrival order.
  for (auto& [key, waiters] : by_key_) {
    for (Waiter& w : waiters) all.push_back(&w);
  }
  std::sort(all.begin(), all.end(), [](Waiter* a, Waiter* b) { return a->id < b->id; });
  for (Waiter* w : all) w->wait.give_up(true);
  by_key_.clear();
  by_deadline_.clear();
  by_id_.clear();
  size_.store(0, std::memory_order_relaxed);
  next_poll_ = Clock::time_point::max();
}

void WaitQueue::RoundLocked(Clock::time_point now) {
  // Each key's waits in order, until one finds nothing.
  for (auto key = by_key_.begin(); key != by_key_.end();) {
    const auto next = std::next(key);  // Stays valid: only `key` may be erased.
    while (true) {
      std::list<Waiter>& waiters = key->second;
      if (!waiters.front().wait.attempt()) break;
      const bool last = waiters.size() == 1;
      EraseLocked(waiters.front().id);
      if (last) break;  // The key went with its last wait.
    }
    key = next;
  }
  // Then whatever is past its deadline gives up.
  while (!by_deadline_.empty() && by_deadline_.begin()->first <= now) {
    const uint64_t id = by_deadline_.begin()->second;
    by_id_.at(id).waiter->wait.give_up(false);
    EraseLocked(id);
  }
}

void WaitQueue::EraseLocked(uint64_t id) {
  auto it = by_id_.find(id);
  if (it == by_id_.end()) return;
  Where where = it->second;
  by_id_.erase(it);
  by_deadline_.erase(where.deadline);
  where.key->second.erase(where.waiter);
  if (where.key->second.empty()) by_key_.erase(where.key);
  size_.store(by_id_.size(), std::memory_order_relaxed);
}

}  // namespace shm
