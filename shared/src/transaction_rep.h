// TxRecordRep: the redo record of a transaction commit (shm/transaction.h), in the segment.
//
// The committer allocates the record and every new entry blob before it takes any lock, names
// the record in the tx_record word of each stripe it locks, validates, then stores 1 into
// `committed`: that one store is the commit of the whole transaction. It applies each stripe's
// share, clears that stripe's tx_record, and frees the record once every share is settled.
//
// A committer killed at any instruction leaves its stripes locked by a dead owner. Whoever takes
// such a stripe next (LockResult::kOwnerDied) settles the record's share on it
// (SettleTxRecordLocked): if `committed` is 1 it applies the share's changes (idempotently: a
// change already in its slot is skipped), else it applies nothing. The last share settled frees
// the record, with the blobs no slot took. docs/crash-protocol.md, "Transactions".
//
// Everything here follows the rules of the segment: handles, not pointers; always-lock-free
// atomics only. Changes to these types must bump kLayoutVersion (layout.h).
#ifndef SHM_SRC_TRANSACTION_REP_H_
#define SHM_SRC_TRANSACTION_REP_H_

#include <sys/types.h>

#include <atomic>
#include <cstdint>

#include "cow.h"
#include "layout.h"
#include "segment_impl.h"

namespace shm {

// One staged change of a dict entry (a registry dict's or a keyspace's).
struct TxChangeRep {
  uint64_t stripe;       // Handle of the DictStripeRep guarding the shard.
  uint64_t entry;        // Handle of the dict's EntryRep.
  uint64_t incarnation;  // The dict's, when the change was staged.
  uint64_t body;         // Its DictRep.
  // A DictEntryBlob, complete but for its version: the new entry, or (erase) one whose key is
  // the key to remove.
  uint64_t blob;
  uint32_t shard;
  uint32_t erase;  // 1: remove the key; 0: publish `blob` as its entry; kTxCounter: see below.
};
// A counter's change: `entry` and `incarnation` name it, `stripe` is 0, `body` is the new value;
// the value it had when the commit took it is what the commit's lock add leaves to subtract.
inline constexpr uint32_t kTxCounter = 2;

struct TxRecordRep {
  std::atomic<uint32_t> committed{0};    // The commit word: 1 once every change is staged.
  std::atomic<uint32_t> shares_left{0};  // Stripes whose share is not yet settled.
  pid_t owner = 0;
  uint32_t count = 0;  // Changes that follow.

  TxChangeRep* changes() { return reinterpret_cast<TxChangeRep*>(this + 1); }
  static uint64_t AllocationSize(uint32_t count) {
    return sizeof(TxRecordRep) + uint64_t{count} * sizeof(TxChangeRep);
  }
};

// Settles the share of the record named by stripe->tx_record (if any) on `stripe`: applies it
// if the record is committed, frees the record once its last share is settled, and clears
// tx_record. REQUIRES: the stripe's lock, taken with LockResult::kOwnerDied, intents resolved.
void SettleTxRecordLocked(Segment::Impl* seg, DictStripeRep* stripe);
// If the record a counter's counter_tx names belongs to a dead process, settles the counter under
// its entry lock (rolls its change forward if the record is committed, else takes the lock
// off) and answers true; false when the owner lives (or the word changed).
bool SettleCounterTxIfOwnerDied(Segment::Impl* seg, EntryRep* entry, uint64_t record);
// Frees the record and the blobs it owns (all new blobs when uncommitted; the key-only blobs of
// erases when committed), through `writer`'s blob cache when given (the committer's).
// REQUIRES: no stripe names it.
void FreeTxRecord(Segment::Impl* seg, uint64_t record, CowWriter* writer = nullptr);

static_assert(sizeof(TxChangeRep) == 48);
static_assert(std::atomic<uint32_t>::is_always_lock_free);

}  // namespace shm

#endif  // SHM_SRC_TRANSACTION_REP_H_
