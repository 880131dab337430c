// BlockLines: the Redis blocked pops of every worker, each with its place in the line of every
// key it waits on, in the order the pops blocked (a ticket from one counter in the segment).
//
// The rule every front end shares (docs/resp.md, "Blocked pops"): a blocked pop may take an item
// of a key only when no earlier place of that key's line is still waiting or notified (MayTake);
// a command that pushed to a key serves the key's line before it replies: it notifies the line's
// earliest waiting place (NotifyNext), waits until that place is done (Pending false), and goes
// on while the key has items and the line has places. A notified pop that finds nothing goes
// back to waiting (Rearm); one that took its item but must itself serve the line of the key it
// pushed to (BLMOVE) is kServing: out of every line, still pending for whoever notified it.
// The table only orders and signals: it holds no items, so a crash loses none.
//
// Process-safety: lock-free (compare-and-swap on each place's pid and state). A place whose
// process died is freed by whoever meets it (a kill(pid, 0) probe) and by the manager's recovery
// of the pid (ReleaseOf), so a killed worker never leaves a line stuck. Bounded: kMaxPlaces
// places; Join answers OutOfSpace when every one is taken. A key is known by a 64-bit hash, so
// two keys of one database share a line with probability 2^-64 per pair (that costs order
// between them, never an item). A pop of more than kMaxKeys keys joins no line: it is served by
// its own retries, unordered (documented).
#ifndef SHM_BLOCK_LINES_H_
#define SHM_BLOCK_LINES_H_

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "shm/segment.h"
#include "shm/status.h"

namespace shm {

class BlockLines {
 public:
  static constexpr int kMaxPlaces = 512;
  static constexpr size_t kMaxKeys = 4;

  enum class State : uint32_t {
    kFree = 0,
    kWaiting = 1,
    kNotified = 2,  // A pusher gave it its turn.
    kServing = 3,   // Took its item; serves its destination's line (BLMOVE).
    kHolding = 4,   // EXEC's hold of a database (Hold).
    kTaking = 5,    // Tries on its own (a retry): a pusher waits for it as for a notified one.
  };
  // A place and the ticket it was claimed with (a freed and reclaimed slot has another).
  struct Place {
    int slot = -1;
    uint64_t ticket = 0;
    bool valid() const { return slot >= 0; }
  };
  enum class Step { kIdle, kBusy, kNotified };

  explicit BlockLines(Segment* segment) : segment_(segment) {}

  // Takes a place in the lines of `keys` of database `db`, waiting. Places are ordered by
  // `arrival_ns` (wall-clock ns when the pop's command arrived: the kernel's receive timestamp,
  // so pops that reached two workers are ordered as they reached the server, whichever worker
  // ran first), then by the order they joined. 0: now. OutOfSpace when every place is taken.
  Status Join(int db, std::span<const std::string> keys, int64_t arrival_ns, Place* place);
  // Frees the place (its pop answered, timed out, or its client left); no-op if not ours.
  void Leave(const Place& place);
  // Whether `place` may take an item of `key` now: no earlier place of the key's line is waiting
  // or notified, and, unless `place` is notified, no transaction holds the database. With an
  // invalid place: whether the line is empty (a pop that has not blocked).
  bool MayTake(const Place& place, int db, std::string_view key);
  // Holds database `db` for a transaction (EXEC): until it leaves, no pop takes an item of the
  // db unless notified (a pusher's turn), so no pop sees the transaction half done. A place of
  // no line, freed like the others (Leave, dead process).
  Status Hold(int db, Place* place);
  // A waiting place's own try begins (true: it is kTaking) and ends without an item (waiting
  // again). While it tries, a pusher of its keys waits, so none replies with an item in transit.
  bool BeginTake(const Place& place);
  void EndTake(const Place& place);
  // The place was notified: true, and it is waiting again (it found nothing to take).
  bool Rearm(const Place& place);
  // The place took its item and now serves the line of the key it pushed to.
  void Serve(const Place& place);
  // For a command that pushed to `key` of `db`: kBusy while a place of the line is notified or
  // taking (*notified: that place, to wait for as for one it notified); else notifies the
  // earliest waiting place (kNotified, *notified) or finds none (kIdle).
  // With `serving_busy`, a serving place (a BLMOVE's chain) is busy too: what a command's own
  // reply waits for, never a chain's (two chains may serve each other's keys).
  Step NotifyNext(int db, std::string_view key, Place* notified, bool serving_busy = false);
  // Whether the place has not finished its turn: notified, taking or serving, and its process
  // alive.
  bool Pending(const Place& place);
  State StateOf(const Place& place) const;
  // Whether any place is taken (a push checks this one word before anything else).
  bool AnyTaken() const;
  // Whether the line of `key` has a place waiting, notified or taking (or, with `serving`,
  // serving).
  bool HasLine(int db, std::string_view key, bool serving = false);
  // Frees every place (and barrier slot) of `pid` (the manager's recovery of a dead process);
  // how many places.
  int ReleaseOf(pid_t pid);

  // Barriers: before a pusher serves a line, every worker runs what reached it before the push
  // (a pop that arrived first but whose worker had not run yet then takes its place in line
  // first). A worker joins once (a slot; -1 when full) and answers each request it sees on
  // BarrierWord() from its event loop once its pending input ran (AckBarrier); a request is
  // done when every live joined worker answered it. A dead worker's slot is skipped and freed.
  int JoinBarrier();
  void LeaveBarrier(int slot);
  uint64_t RequestBarrier();
  uint64_t BarrierRequested() const;
  void AckBarrier(int slot, uint64_t request);
  bool BarrierDone(uint64_t request);
  // Whether a barrier is asked and not yet answered by every live member: a pop's own retry
  // waits it out (a pusher is about to serve in arrival order, a command that arrived before
  // the push first).
  bool BarrierPending();
  // How many workers answer barriers (a barrier is moot with one).
  int BarrierMembers() const;
  std::atomic<uint32_t>* BarrierWord() const;

 private:
  Segment* segment_;
};

}  // namespace shm

#endif  // SHM_BLOCK_LINES_H_
