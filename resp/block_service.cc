// Blocked pops served in the order they blocked, before the pusher's reply (docs/resp.md,
// "Blocked pops"): the pusher's side of shm/block_lines.h.
#include <algorithm>

#include "internal.h"
#include "shm/wake_word.h"

namespace shm::resp {

bool LinesObject(Segment* segment, int db, ObjectRef* ref) {
  Keyspace* ks = KeyspaceOf(segment, db, true);
  if (ks == nullptr) return false;
  *ref = ks->ref();
  return true;
}

void RingLines(Segment* segment, int db) {
  if (Keyspace* ks = KeyspaceOf(segment, db, true)) ks->WakeBlockedPops();
}

namespace {

// Whether the list at `key` of `db` has an item (a pop waiting on it could be served).
bool HasItems(Segment* segment, int db, const std::string& key) {
  Keyspace* ks = KeyspaceOf(segment, db, false);
  if (ks == nullptr) return false;
  uint64_t length = 0;
  return ks->WithList(key, Keyspace::Access::kRead, [&](List& l) { return l.Length(&length); })
             .ok() &&
         length > 0;
}

}  // namespace

bool LineService::Step() {
  if (segment_ == nullptr || std::chrono::steady_clock::now() >= until_) return true;
  BlockLines lines(segment_);
  if (barrier_ == 0) {
    // A line to serve: first every worker runs what reached it before this push, so a pop that
    // arrived before it takes its place (by arrival) before the line is served.
    bool any = false;
    for (const auto& [db, key] : keys_) any = any || lines.HasLine(db, key, !chain_);
    if (!any) return true;
    barrier_ = lines.RequestBarrier();
  }
  if (!lines.BarrierDone(barrier_)) return false;
  std::erase_if(notified_, [&](const BlockLines::Place& p) { return !lines.Pending(p); });
  if (!notified_.empty()) return false;
  bool idle = true;
  for (const auto& [db, key] : keys_) {
    BlockLines::Place place;
    const bool items = HasItems(segment_, db, key);
    // No item: nothing to serve, but a command still waits for a chain moving one (kBusy).
    if (!items && chain_) continue;
    switch (lines.NotifyNext(db, key, &place, !chain_)) {
      case BlockLines::Step::kIdle:
        break;
      case BlockLines::Step::kBusy:  // A pop takes its turn (another pusher's, or its own try):
        idle = false;                // its chain, if any, completes before this reply too.
        if (place.valid() &&
            std::none_of(notified_.begin(), notified_.end(), [&](const BlockLines::Place& p) {
              return p.slot == place.slot && p.ticket == place.ticket;
            })) {
          notified_.push_back(place);
        }
        break;
      case BlockLines::Step::kNotified:
        if (!items) {  // Notified for nothing: back in line at once.
          lines.Rearm(place);
          break;
        }
        notified_.push_back(place);
        RingLines(segment_, db);
        return false;  // One pop at a time: the next after this one is done.
    }
  }
  return idle;
}

}  // namespace shm::resp
