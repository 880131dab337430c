// BlockLines (shm/block_lines.h): places in Root::block_places.
#include "shm/block_lines.h"

#include <time.h>

#include <atomic>

#include "futex.h"
#include "key_hash.h"
#include "layout.h"
#include "segment_impl.h"
#include "shm/process_id.h"

namespace shm {
namespace {

static_assert(BlockLines::kMaxPlaces == static_cast<int>(kMaxBlockPlaces));
static_assert(BlockLines::kMaxKeys == kMaxBlockKeys);

using State = BlockLines::State;

// The hold this thread took (Hold): its own transaction's pops are not held back by it.
thread_local int t_own_hold = -1;

Root* RootOf(Segment* segment) { return segment->impl()->root(); }

int64_t WallNowNs() {
  timespec now{};
  clock_gettime(CLOCK_REALTIME, &now);
  return static_cast<int64_t>(now.tv_sec) * 1'000'000'000 + now.tv_nsec;
}

// A place's position in its lines: arrival first, then the order places joined.
struct Order {
  int64_t arrival = 0;
  uint64_t ticket = 0;
  bool operator<(const Order& o) const {
    return arrival != o.arrival ? arrival < o.arrival : ticket < o.ticket;
  }
};
Order OrderOf(const BlockPlace& p, uint64_t ticket) {
  return Order{p.arrival_ns.load(std::memory_order_relaxed), ticket};
}

State Load(const BlockPlace& p) {
  return static_cast<State>(p.state.load(std::memory_order_acquire));
}

bool InLine(const BlockPlace& p, int db, uint64_t hash) {
  if (p.db.load(std::memory_order_relaxed) != db) return false;
  const uint32_t keys = p.keys.load(std::memory_order_relaxed);
  for (uint32_t i = 0; i < keys && i < kMaxBlockKeys; ++i) {
    if (p.key_hash[i].load(std::memory_order_relaxed) == hash) return true;
  }
  return false;
}

void Free(Root* root, BlockPlace& p) {
  p.state.store(static_cast<uint32_t>(State::kFree), std::memory_order_release);
  p.ticket.store(0, std::memory_order_relaxed);
  p.keys.store(0, std::memory_order_relaxed);
  if (p.pid.exchange(0, std::memory_order_acq_rel) != 0) {
    root->block_places_taken.fetch_sub(1, std::memory_order_acq_rel);
  }
}

// Frees `p` if it still holds `ticket` and its process is gone; true if it did.
bool ReapIfDead(Root* root, BlockPlace& p, uint64_t ticket) {
  const pid_t pid = p.pid.load(std::memory_order_acquire);
  if (!ProcessGone(pid) || p.ticket.load(std::memory_order_acquire) != ticket) return false;
  pid_t expected = pid;
  // Claimed for the free (-1: no other freer matches it), then freed.
  if (!p.pid.compare_exchange_strong(expected, -1, std::memory_order_acq_rel)) return false;
  Free(root, p);
  return true;
}

// Calls fn(place, ticket, state) for every taken place of `key`'s line in `db` (waiting,
// notified or serving), dead ones freed on the way.
template <typename Fn>
void ForLine(Root* root, int db, uint64_t hash, Fn&& fn) {
  const uint32_t end = root->block_places_in_use.load(std::memory_order_acquire);
  for (uint32_t i = 0; i < end && i < kMaxBlockPlaces; ++i) {
    BlockPlace& p = root->block_places[i];
    if (p.pid.load(std::memory_order_relaxed) == 0) continue;
    const State state = Load(p);
    if (state == State::kFree || !InLine(p, db, hash)) continue;
    const uint64_t ticket = p.ticket.load(std::memory_order_acquire);
    if (ticket == 0 || Load(p) != state) continue;  // Changed under us: not a stable reading.
    fn(static_cast<int>(i), p, ticket, state);
  }
}

}  // namespace

Status BlockLines::Join(int db, std::span<const std::string> keys, int64_t arrival_ns,
                        Place* place) {
  Root* root = RootOf(segment_);
  const pid_t me = CurrentPid();
  for (uint32_t i = 0; i < kMaxBlockPlaces; ++i) {
    BlockPlace& p = root->block_places[i];
    pid_t expected = 0;
    if (p.pid.load(std::memory_order_relaxed) != 0 ||
        !p.pid.compare_exchange_strong(expected, me, std::memory_order_acq_rel)) {
      continue;
    }
    root->block_places_taken.fetch_add(1, std::memory_order_acq_rel);
    uint32_t in_use = root->block_places_in_use.load(std::memory_order_relaxed);
    while (in_use < i + 1 && !root->block_places_in_use.compare_exchange_weak(
                                 in_use, i + 1, std::memory_order_acq_rel)) {
    }
    p.db.store(db, std::memory_order_relaxed);
    p.arrival_ns.store(arrival_ns != 0 ? arrival_ns : WallNowNs(), std::memory_order_relaxed);
    const bool lined = keys.size() <= kMaxBlockKeys;
    for (size_t k = 0; lined && k < keys.size(); ++k) {
      p.key_hash[k].store(KeyHash(keys[k]), std::memory_order_relaxed);
    }
    p.keys.store(lined ? static_cast<uint32_t>(keys.size()) : 0, std::memory_order_relaxed);
    const uint64_t ticket = root->block_tickets.fetch_add(1, std::memory_order_acq_rel) + 1;
    p.ticket.store(ticket, std::memory_order_release);
    p.state.store(static_cast<uint32_t>(State::kWaiting), std::memory_order_release);
    *place = Place{static_cast<int>(i), ticket};
    return Status::OK();
  }
  return Status::OutOfSpace("too many blocked clients (at most " + std::to_string(kMaxPlaces) +
                            " across the server)");
}

void BlockLines::Leave(const Place& place) {
  if (!place.valid()) return;
  if (t_own_hold == place.slot) t_own_hold = -1;
  Root* root = RootOf(segment_);
  BlockPlace& p = root->block_places[place.slot];
  if (p.ticket.load(std::memory_order_acquire) != place.ticket) return;
  Free(root, p);
}

bool BlockLines::MayTake(const Place& place, int db, std::string_view key) {
  Root* root = RootOf(segment_);
  if (root->block_places_taken.load(std::memory_order_acquire) == 0) return true;
  const Order mine = place.valid() ? OrderOf(root->block_places[place.slot], place.ticket)
                                   : Order{INT64_MAX, UINT64_MAX};
  bool may = true;
  ForLine(root, db, KeyHash(key), [&](int, BlockPlace& p, uint64_t ticket, State state) {
    if (!may || ticket == place.ticket || !(OrderOf(p, ticket) < mine) ||
        state == State::kServing || state == State::kHolding) {
      return;
    }
    if (!ReapIfDead(root, p, ticket)) may = false;
  });
  // A notified place takes its turn; others wait while a transaction holds the database.
  if (!may || StateOf(place) == State::kNotified) return may;
  const uint32_t end = root->block_places_in_use.load(std::memory_order_acquire);
  for (uint32_t i = 0; i < end && i < kMaxBlockPlaces && may; ++i) {
    BlockPlace& p = root->block_places[i];
    if (static_cast<int>(i) == t_own_hold || p.pid.load(std::memory_order_relaxed) == 0 ||
        Load(p) != State::kHolding || p.db.load(std::memory_order_relaxed) != db) {
      continue;
    }
    if (!ReapIfDead(root, p, p.ticket.load(std::memory_order_acquire))) may = false;
  }
  return may;
}

Status BlockLines::Hold(int db, Place* place) {
  SHM_RETURN_IF_ERROR(Join(db, {}, 0, place));
  RootOf(segment_)->block_places[place->slot].state.store(static_cast<uint32_t>(State::kHolding),
                                                          std::memory_order_release);
  t_own_hold = place->slot;
  return Status::OK();
}

bool BlockLines::Rearm(const Place& place) {
  if (!place.valid()) return false;
  BlockPlace& p = RootOf(segment_)->block_places[place.slot];
  if (p.ticket.load(std::memory_order_acquire) != place.ticket) return false;
  uint32_t expected = static_cast<uint32_t>(State::kNotified);
  return p.state.compare_exchange_strong(expected, static_cast<uint32_t>(State::kWaiting),
                                         std::memory_order_acq_rel);
}

void BlockLines::Serve(const Place& place) {
  if (!place.valid()) return;
  BlockPlace& p = RootOf(segment_)->block_places[place.slot];
  if (p.ticket.load(std::memory_order_acquire) != place.ticket) return;
  p.state.store(static_cast<uint32_t>(State::kServing), std::memory_order_release);
}

namespace {
bool Swap(BlockPlace& p, uint64_t ticket, State from, State to) {
  if (p.ticket.load(std::memory_order_acquire) != ticket) return false;
  uint32_t expected = static_cast<uint32_t>(from);
  return p.state.compare_exchange_strong(expected, static_cast<uint32_t>(to),
                                         std::memory_order_acq_rel);
}
}  // namespace

bool BlockLines::BeginTake(const Place& place) {
  if (!place.valid()) return false;
  return Swap(RootOf(segment_)->block_places[place.slot], place.ticket, State::kWaiting,
              State::kTaking);
}

void BlockLines::EndTake(const Place& place) {
  if (!place.valid()) return;
  Swap(RootOf(segment_)->block_places[place.slot], place.ticket, State::kTaking, State::kWaiting);
}

BlockLines::Step BlockLines::NotifyNext(int db, std::string_view key, Place* notified,
                                        bool serving_busy) {
  Root* root = RootOf(segment_);
  if (root->block_places_taken.load(std::memory_order_acquire) == 0) return Step::kIdle;
  const uint64_t hash = KeyHash(key);
  for (int attempt = 0; attempt < 64; ++attempt) {
    Place busy_place;
    bool busy = false;
    int first = -1;
    uint64_t first_ticket = 0;
    Order first_order{INT64_MAX, UINT64_MAX};
    ForLine(root, db, hash, [&](int slot, BlockPlace& p, uint64_t ticket, State state) {
      if ((state == State::kServing && !serving_busy) || ReapIfDead(root, p, ticket)) return;
      if (state == State::kNotified || state == State::kTaking || state == State::kServing) {
        busy = true;
        busy_place = Place{slot, ticket};
      }
      if (state == State::kWaiting && OrderOf(p, ticket) < first_order) {
        first = slot;
        first_ticket = ticket;
        first_order = OrderOf(p, ticket);
      }
    });
    if (busy) {
      *notified = busy_place;
      return Step::kBusy;
    }
    if (first < 0) return Step::kIdle;
    BlockPlace& p = root->block_places[first];
    uint32_t expected = static_cast<uint32_t>(State::kWaiting);
    if (p.ticket.load(std::memory_order_acquire) == first_ticket &&
        p.state.compare_exchange_strong(expected, static_cast<uint32_t>(State::kNotified),
                                        std::memory_order_acq_rel)) {
      if (p.ticket.load(std::memory_order_acquire) != first_ticket) continue;  // Reused meanwhile.
      *notified = Place{first, first_ticket};
      return Step::kNotified;
    }
    // The place left or was notified by another pusher meanwhile: look again.
  }
  return Step::kBusy;
}

BlockLines::State BlockLines::StateOf(const Place& place) const {
  if (!place.valid()) return State::kFree;
  const BlockPlace& p = RootOf(segment_)->block_places[place.slot];
  const State state = Load(p);
  return p.ticket.load(std::memory_order_acquire) == place.ticket ? state : State::kFree;
}

bool BlockLines::Pending(const Place& place) {
  if (!place.valid()) return false;
  Root* root = RootOf(segment_);
  BlockPlace& p = root->block_places[place.slot];
  const State state = StateOf(place);
  if (state != State::kNotified && state != State::kServing && state != State::kTaking) {
    return false;
  }
  return !ReapIfDead(root, p, place.ticket);
}

bool BlockLines::AnyTaken() const {
  return RootOf(segment_)->block_places_taken.load(std::memory_order_acquire) != 0;
}

bool BlockLines::HasLine(int db, std::string_view key, bool serving) {
  Root* root = RootOf(segment_);
  if (root->block_places_taken.load(std::memory_order_acquire) == 0) return false;
  bool found = false;
  ForLine(root, db, KeyHash(key), [&](int, BlockPlace&, uint64_t, State state) {
    found = found || state == State::kWaiting || state == State::kNotified ||
            state == State::kTaking || (serving && state == State::kServing);
  });
  return found;
}

int BlockLines::JoinBarrier() {
  Root* root = RootOf(segment_);
  const pid_t me = CurrentPid();
  for (uint32_t i = 0; i < kMaxWorkerSlots; ++i) {
    BlockBarrierAck& a = root->block_barrier_acks[i];
    pid_t expected = 0;
    if (a.pid.load(std::memory_order_relaxed) != 0 ||
        !a.pid.compare_exchange_strong(expected, me, std::memory_order_acq_rel)) {
      continue;
    }
    a.acked.store(root->block_barrier.load(std::memory_order_acquire), std::memory_order_release);
    return static_cast<int>(i);
  }
  return -1;
}

void BlockLines::LeaveBarrier(int slot) {
  if (slot < 0 || slot >= static_cast<int>(kMaxWorkerSlots)) return;
  Root* root = RootOf(segment_);
  root->block_barrier_acks[slot].pid.store(0, std::memory_order_release);
  FutexWakeAll(&root->block_barrier_word);  // A pusher waiting for this worker looks again.
}

uint64_t BlockLines::RequestBarrier() {
  Root* root = RootOf(segment_);
  const uint64_t request = root->block_barrier.fetch_add(1, std::memory_order_acq_rel) + 1;
  FutexWakeAll(&root->block_barrier_word);
  return request;
}

uint64_t BlockLines::BarrierRequested() const {
  return RootOf(segment_)->block_barrier.load(std::memory_order_acquire);
}

void BlockLines::AckBarrier(int slot, uint64_t request) {
  if (slot < 0 || slot >= static_cast<int>(kMaxWorkerSlots)) return;
  Root* root = RootOf(segment_);
  std::atomic<uint64_t>& acked = root->block_barrier_acks[slot].acked;
  uint64_t seen = acked.load(std::memory_order_acquire);
  while (seen < request && !acked.compare_exchange_weak(seen, request, std::memory_order_acq_rel)) {
  }
  FutexWakeAll(&root->block_barrier_word);
}

bool BlockLines::BarrierDone(uint64_t request) {
  Root* root = RootOf(segment_);
  for (uint32_t i = 0; i < kMaxWorkerSlots; ++i) {
    BlockBarrierAck& a = root->block_barrier_acks[i];
    const pid_t pid = a.pid.load(std::memory_order_acquire);
    if (pid <= 0 || a.acked.load(std::memory_order_acquire) >= request) continue;
    if (!ProcessGone(pid)) return false;
    pid_t expected = pid;
    a.pid.compare_exchange_strong(expected, 0, std::memory_order_acq_rel);  // Its slot is free.
  }
  return true;
}

bool BlockLines::BarrierPending() {
  return !BarrierDone(RootOf(segment_)->block_barrier.load(std::memory_order_acquire));
}

int BlockLines::BarrierMembers() const {
  const Root* root = RootOf(segment_);
  int members = 0;
  for (const BlockBarrierAck& a : root->block_barrier_acks) {
    members += a.pid.load(std::memory_order_relaxed) > 0;
  }
  return members;
}

std::atomic<uint32_t>* BlockLines::BarrierWord() const {
  return &RootOf(segment_)->block_barrier_word;
}

int BlockLines::ReleaseOf(pid_t pid) {
  Root* root = RootOf(segment_);
  for (BlockBarrierAck& a : root->block_barrier_acks) {
    pid_t expected = pid;
    if (pid > 0) a.pid.compare_exchange_strong(expected, 0, std::memory_order_acq_rel);
  }
  int freed = 0;
  for (uint32_t i = 0; i < kMaxBlockPlaces; ++i) {
    BlockPlace& p = root->block_places[i];
    pid_t expected = pid;
    if (pid <= 0 || !p.pid.compare_exchange_strong(expected, -1, std::memory_order_acq_rel)) {
      continue;
    }
    Free(root, p);
    ++freed;
  }
  return freed;
}

}  // namespace shm
