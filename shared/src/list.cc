#include "shm/list.h"

#include <algorithm>
#include <cstring>
#include <exception>
#include <new>
#include <optional>
#include <string>
#include <utility>

#include "boundary.h"
#include "byte_io.h"
#include "cow.h"
#include "crash_point.h"
#include "futex.h"
#include "keyspace_internal.h"
#include "kind_ops.h"
#include "layout.h"
#include "list_rep.h"
#include "list_tx.h"
#include "object_guard.h"
#include "owned_word.h"
#include "prefetch_write.h"
#include "segment_impl.h"
#include "shm/log.h"
#include "shm/process_id.h"
#include "shm/transaction.h"
#include "transaction_lists.h"
#include "transaction_rep.h"

namespace shm {
namespace {

constexpr uint64_t kInitialCapacity = 8;
// Pops shrink a ring bigger than this once it is at most 1/8 full.
constexpr uint64_t kShrinkAbove = 64;
// Each failed attempt grows the ring, so a push needs a handful at most.
constexpr int kMaxPushAttempts = 64;

ListRep* RepOf(Segment::Impl* seg, const EntryRep* entry) {
  return seg->Ptr<ListRep>(entry->body.load(std::memory_order_acquire));
}

uint64_t CapacityOf(Segment::Impl* seg, const ListRep* rep) {
  uint64_t ring = rep->ring.load(std::memory_order_acquire);
  return ring == 0 ? 0 : seg->Ptr<ListRingRep>(ring)->capacity;
}

std::atomic<uint64_t>* SlotAt(Segment::Impl* seg, uint64_t ring, int64_t pos) {
  auto* r = seg->Ptr<ListRingRep>(ring);
  return RingSlots(r) + (static_cast<uint64_t>(pos) & (r->capacity - 1));
}

uint64_t LengthOf(const ListRep* rep) {
  return static_cast<uint64_t>(rep->tail.load() - rep->head.load());
}

// Invariant (2): one slot always stays free.
bool HasRoom(uint64_t length, uint64_t capacity) { return length + 1 < capacity; }

std::string_view BlobItemView(Segment::Impl* seg, uint64_t handle) {
  auto* item = seg->Ptr<ListItemRep>(handle);
  return {ItemData(item), item->size};
}

// The item in `*slot` (inline or a blob), valid while the slot keeps it (under the lock).
std::string_view ItemView(Segment::Impl* seg, const std::atomic<uint64_t>* slot) {
  const uint64_t word = slot->load();
  return IsInlineItem(word) ? InlineItemView(slot, word) : BlobItemView(seg, word);
}

uint64_t ItemSize(Segment::Impl* seg, uint64_t word) {
  return IsInlineItem(word) ? InlineItemSize(word) : seg->Ptr<ListItemRep>(word)->size;
}

void FillItem(Segment::Impl* seg, uint64_t handle, std::string_view bytes) {
  auto* item = new (seg->Ptr<void>(handle)) ListItemRep();
  item->size = bytes.size();
  if (!bytes.empty()) std::memcpy(ItemData(item), bytes.data(), bytes.size());
}

// The slot word of an item holding `bytes`: inline when it fits, else a blob allocated and staged
// (from the writer's cache when it can).
Status MakeItem(CowWriter* writer, Segment::Impl* seg, std::string_view bytes, uint64_t* word) {
  if (FitsInline(bytes)) {
    *word = InlineItemWord(bytes);
    return Status::OK();
  }
  SHM_RETURN_IF_ERROR(writer->AllocateStaged(sizeof(ListItemRep) + bytes.size(), word));
  FillItem(seg, *word, bytes);
  return Status::OK();
}

// Like MakeItem for a blob nobody stages (snapshots, replaced rings, transaction records).
Status MakeUnstagedItem(Segment::Impl* seg, std::string_view bytes, uint64_t* word) {
  if (FitsInline(bytes)) {
    *word = InlineItemWord(bytes);
    return Status::OK();
  }
  SHM_RETURN_IF_ERROR(seg->Allocate(sizeof(ListItemRep) + bytes.size(), word));
  FillItem(seg, *word, bytes);
  return Status::OK();
}

// Publishes `word` (an item or 0) into `slot`: the commit of a push or pop. With a writer, under
// its intent (a blob is staged, or one is replaced); without one, a plain store, for an inline
// item replacing 0 or 0 replacing one (nothing to free either way; repair reads the slots).
void PublishItemLocked(CowWriter* writer, uint64_t entry, std::atomic<uint64_t>* slot,
                       uint64_t word) {
  if (writer != nullptr) {
    writer->PublishLocked(entry, slot, word);
    return;
  }
  slot->store(word, std::memory_order_release);
  CrashPoint("list_inline_published");
}

// A fresh rep, on its own cache lines (list_rep.h).
Status AllocateListRep(Segment::Impl* seg, uint64_t* body, ListRep** rep) {
  SHM_RETURN_IF_ERROR(seg->Allocate(sizeof(ListRep), body, alignof(ListRep)));
  *rep = new (seg->Ptr<void>(*body)) ListRep();
  return Status::OK();
}

Status AllocateRing(Segment::Impl* seg, uint64_t capacity, uint64_t* handle) {
  const uint64_t bytes = sizeof(ListRingRep) + capacity * sizeof(std::atomic<uint64_t>);
  SHM_RETURN_IF_ERROR(seg->Allocate(bytes, handle, 64));
  if (bytes >= Segment::Impl::kPopulateWindow) seg->Populate(*handle, bytes);  // Written whole.
  auto* ring = new (seg->Ptr<void>(*handle)) ListRingRep();
  ring->capacity = capacity;
  std::atomic<uint64_t>* slots = RingSlots(ring);
  for (uint64_t i = 0; i < capacity; ++i) new (&slots[i]) std::atomic<uint64_t>(0);
  return Status::OK();
}

// Whether a list of `length` items in a ring of `capacity` should move to one of `target`.
bool WantsCapacity(uint64_t length, uint64_t capacity, uint64_t target) {
  if (target > capacity) return !HasRoom(length, capacity);  // Grow only when full.
  if (target < capacity) return length <= target / 2;        // Shrink with room to spare.
  return false;
}

static_assert(List::kLineSlots == kListLineSlots);

int64_t MonotonicNs(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
}

bool OwnerGone(pid_t pid) { return pid != CurrentPid() && (pid <= 0 || ProcessGone(pid)); }

// Frees a taken place: the ticket first, then the count (list_rep.h: a death in between
// over-counts, never under-counts).
void FreePlaceLocked(ListRep* rep, ListPlaceRep& place) {
  place.ticket.store(0);
  CrashPoint("list_place_freed");
  const uint32_t places = rep->places.load(std::memory_order_relaxed);
  if (places > 0) rep->places.store(places - 1, std::memory_order_relaxed);
}

// Whether `place` holds a turn; frees it when its owner is gone or its deadline passed.
bool PlaceLiveLocked(ListRep* rep, ListPlaceRep& place, int64_t now_ns) {
  if (place.ticket.load() == 0) return false;
  if (place.deadline_ns.load() >= now_ns && !OwnerGone(place.pid.load())) return true;
  FreePlaceLocked(rep, place);
  return false;
}

// Whether a pop holding `ticket` may take an item: its place is the oldest live one. A pop
// without a place (`ticket` 0) may when no place is live or the oldest is its own process's: that
// process's front end orders its own pops (a worker's WaitQueue), and the process of the oldest
// waiter can always make progress.
bool MayPopLocked(ListRep* rep, uint64_t ticket) {
  if (rep->places.load(std::memory_order_relaxed) == 0) return true;  // Never under-counts.
  int64_t now_ns = -1;  // The clock is read only when a place must be judged.
  while (true) {
    ListPlaceRep* oldest = nullptr;
    for (ListPlaceRep& place : rep->line) {
      const uint64_t t = place.ticket.load(std::memory_order_relaxed);  // Under the lock.
      if (t != 0 && (oldest == nullptr || t < oldest->ticket.load())) oldest = &place;
    }
    if (oldest == nullptr || oldest->ticket.load() == ticket) return true;
    if (now_ns < 0) now_ns = MonotonicNs(std::chrono::steady_clock::now());
    if (!PlaceLiveLocked(rep, *oldest, now_ns)) continue;  // Freed it: look again.
    return ticket == 0 && oldest->pid.load() == CurrentPid();
  }
}

bool AnyoneInLineLocked(const ListRep* rep) {
  if (rep->places.load(std::memory_order_relaxed) == 0) return false;
  return std::any_of(std::begin(rep->line), std::end(rep->line),
                     [](const ListPlaceRep& p) { return p.ticket.load() != 0; });
}

// Claims a free place (or a void one) for `pid`: the new ticket, or 0 when the line is full.
uint64_t JoinLocked(ListRep* rep, pid_t pid, int64_t deadline_ns, uint32_t* slot) {
  const int64_t now_ns = MonotonicNs(std::chrono::steady_clock::now());
  for (uint32_t i = 0; i < kListLineSlots; ++i) {
    ListPlaceRep& place = rep->line[i];
    if (PlaceLiveLocked(rep, place, now_ns)) continue;
    place.pid.store(pid);
    place.deadline_ns.store(deadline_ns);
    const uint64_t ticket = rep->next_ticket.fetch_add(1);
    AddOwned(rep->places, 1);  // The list's lock is held: the count is the holder's to write.
    CrashPoint("list_place_counted");
    place.ticket.store(ticket);  // The commit.
    *slot = i;
    return ticket;
  }
  return 0;
}

// A place left the line (or its waiter was served): the next in line may now take an item that
// is already there, so wake the waiters when there is one.
bool LeaveLocked(ListRep* rep, uint32_t slot, uint64_t ticket) {
  ListPlaceRep& place = rep->line[slot];
  if (place.ticket.load() == ticket) FreePlaceLocked(rep, place);
  return LengthOf(rep) > 0 && AnyoneInLineLocked(rep);
}

Status CheckWait(std::chrono::milliseconds wait) {
  if (wait.count() < 0 || wait > List::kMaxWait) {
    return Status::InvalidArgument("wait must be between 0 and " +
                                   std::to_string(List::kMaxWait.count()) + " ms");
  }
  return Status::OK();
}

// Owner-death repair (see list_rep.h, invariant 3): the slots are the truth. An interrupted push
// left a published slot just outside [head, tail); an interrupted pop left a zero slot just
// inside. Invariant (2) guarantees the two ends never name the same slot.
void RepairListSlotsLocked(Segment::Impl* seg, EntryRep* entry) {
  ListRep* rep = RepOf(seg, entry);
  uint64_t ring = rep->ring.load();
  int64_t head = rep->head.load();
  int64_t tail = rep->tail.load();
  if (ring == 0) {
    rep->tail.store(head);
    rep->bytes.store(0);
    return;
  }
  auto cap = static_cast<int64_t>(CapacityOf(seg, rep));
  if (tail < head || tail - head >= cap) tail = head;  // Cannot happen; rescan from head.
  while (tail - head < cap - 1 && SlotAt(seg, ring, tail)->load() != 0) ++tail;
  while (tail - head < cap - 1 && SlotAt(seg, ring, head - 1)->load() != 0) --head;
  while (head < tail && SlotAt(seg, ring, head)->load() == 0) ++head;
  while (tail > head && SlotAt(seg, ring, tail - 1)->load() == 0) --tail;
  uint64_t bytes = 0;
  for (int64_t pos = head; pos < tail; ++pos) {
    bytes += ItemSize(seg, SlotAt(seg, ring, pos)->load());
  }
  rep->head.store(head);
  rep->tail.store(tail);
  rep->bytes.store(bytes);
}

void RepairListLocked(Segment::Impl* seg, EntryRep* entry) {
  RepairListSlotsLocked(seg, entry);
  ListRep* rep = RepOf(seg, entry);  // A death between a ticket and `places` over-counted.
  rep->places.store(static_cast<uint32_t>(
      std::count_if(std::begin(rep->line), std::end(rep->line),
                    [](const ListPlaceRep& p) { return p.ticket.load() != 0; })));
  SettleListTxLocked(seg, entry);  // A dead committer's share of this list (list_tx.h).
}

// Frees every item, the ring and the rep. Slots, not head/tail, say what is owned (Free skips 0
// and inline words).
void DestroyList(Segment::Impl* seg, uint64_t body) {
  auto* rep = seg->Ptr<ListRep>(body);
  uint64_t ring = rep->ring.load();
  if (ring != 0) {
    auto* r = seg->Ptr<ListRingRep>(ring);
    std::atomic<uint64_t>* slots = RingSlots(r);
    for (uint64_t i = 0; i < r->capacity; ++i) seg->Free(slots[i].load());
    seg->Free(ring);
  }
  seg->Free(body);
}

// Snapshot form: max_items, max_item_bytes, count, then each item (length-prefixed), left first.
Status SerializeListLocked(Segment::Impl* seg, const EntryRep* entry, std::string* out) {
  const ListRep* rep = RepOf(seg, entry);
  ByteWriter w(out);
  w.Put<uint64_t>(rep->max_items);
  w.Put<uint64_t>(rep->max_item_bytes);
  w.Put<uint64_t>(LengthOf(rep));
  const uint64_t ring = rep->ring.load();
  for (int64_t pos = rep->head.load(); pos < rep->tail.load(); ++pos) {
    w.PutBytes(ItemView(seg, SlotAt(seg, ring, pos)));
  }
  return Status::OK();
}

Status Malformed(const char* what) {
  return Status::InvalidArgument(std::string("malformed list snapshot: ") + what);
}

// Fills a fresh rep from snapshot bytes. On error the caller destroys the partial body.
Status FillListFromBytes(Segment::Impl* seg, ListRep* rep, std::string_view bytes) {
  ByteReader r(bytes);
  uint64_t count = 0;
  if (!r.Get(&rep->max_items) || !r.Get(&rep->max_item_bytes) || !r.Get(&count)) {
    return Malformed("truncated header");
  }
  if (rep->max_items < 1 || rep->max_items > List::kMaxItemsLimit || rep->max_item_bytes < 1 ||
      rep->max_item_bytes > List::kMaxItemBytesLimit || count > rep->max_items ||
      count > r.remaining() / sizeof(uint64_t)) {
    return Malformed("limits out of range");
  }
  uint64_t capacity = kInitialCapacity;
  while (!HasRoom(count, capacity)) capacity *= 2;
  uint64_t ring = 0;
  SHM_RETURN_IF_ERROR(AllocateRing(seg, capacity, &ring));
  rep->ring.store(ring);
  uint64_t total = 0;
  for (uint64_t i = 0; i < count; ++i) {
    std::string_view item;
    if (!r.GetBytes(&item)) return Malformed("truncated item");
    if (item.size() > rep->max_item_bytes) return Malformed("item larger than max_item_bytes");
    uint64_t word = 0;
    SHM_RETURN_IF_ERROR(MakeUnstagedItem(seg, item, &word));
    SlotAt(seg, ring, kListOrigin + static_cast<int64_t>(i))->store(word);
    total += item.size();
  }
  if (r.remaining() != 0) return Malformed("trailing bytes");
  rep->tail.store(kListOrigin + static_cast<int64_t>(count));
  rep->bytes.store(total);
  return Status::OK();
}

Status DeserializeList(Segment::Impl* seg, std::string_view bytes, uint64_t* body) {
  ListRep* rep = nullptr;
  SHM_RETURN_IF_ERROR(AllocateListRep(seg, body, &rep));
  Status s = FillListFromBytes(seg, rep, bytes);
  if (!s.ok()) {
    DestroyList(seg, *body);
    *body = 0;
  }
  return s;
}

void ListUsage(Segment::Impl* seg, const EntryRep* entry, ObjectInfo* info) {
  // The ListRep lives as long as the object (only its ring is replaced). head and tail are read
  // apart, so a concurrent pop and push may show a length off by one, never a negative one.
  const ListRep* rep = RepOf(seg, entry);
  int64_t head = rep->head.load(std::memory_order_relaxed);
  int64_t tail = rep->tail.load(std::memory_order_relaxed);
  info->length = std::max<int64_t>(0, tail - head);
  info->size_bytes = rep->bytes.load(std::memory_order_relaxed);
}

// Frees a ring replaced by List::Replace together with the items it names (garbage after the
// commit: the new ring holds copies).
void DestroyRingAndItems(Segment::Impl* seg, uint64_t ring) {
  auto* r = seg->Ptr<ListRingRep>(ring);
  std::atomic<uint64_t>* slots = RingSlots(r);
  for (uint64_t i = 0; i < r->capacity; ++i) {
    if (IsBlob(slots[i].load())) seg->Free(slots[i].load());
  }
  seg->Free(ring);
}

}  // namespace

const KindOps kListOps = {RepairListLocked, DestroyList, SerializeListLocked, DeserializeList,
                          ListUsage};

Status List::Open(Segment* segment, std::string_view name, OpenMode mode,
                  const ListOptions& options, List* result, bool* created) {
  if (options.max_items < 1 || options.max_items > kMaxItemsLimit) {
    return Status::InvalidArgument("max_items must be between 1 and " +
                                   std::to_string(kMaxItemsLimit));
  }
  if (options.max_item_bytes < 1 || options.max_item_bytes > kMaxItemBytesLimit) {
    return Status::InvalidArgument("max_item_bytes must be between 1 and " +
                                   std::to_string(kMaxItemBytesLimit));
  }
  return CatchAtBoundary("list open", [&]() -> Status {
    Segment::Impl* seg = segment->impl();
    Registry::OpenSpec spec;
    spec.kind = ObjectKind::kList;
    spec.mode = mode;
    spec.created = created;
    spec.make_body = [&](uint64_t* body) {
      ListRep* rep = nullptr;
      SHM_RETURN_IF_ERROR(AllocateListRep(seg, body, &rep));
      rep->max_items = options.max_items;
      rep->max_item_bytes = options.max_item_bytes;
      return Status::OK();
    };
    ObjectRef ref;
    SHM_RETURN_IF_ERROR(segment->registry().Open(name, spec, &ref));
    ObjectGuard guard;  // The limits of an existing list are its own, read once.
    SHM_RETURN_IF_ERROR(guard.Lock(ref));
    ListRep* rep = RepOf(seg, ref.entry);
    *result = List(ref, rep->max_items, rep->max_item_bytes);
    return Status::OK();
  });
}

void BindListToTransaction(List* list, Transaction* tx) { list->tx_ = tx; }

Status List::Push(End end, std::string_view item, uint64_t* length) {
  if (!ref_.valid()) return Status::InvalidArgument("list handle is not open");
  if (tx_ != nullptr) return tx_->Push(*this, end, item, length);
  if (item.size() > max_item_bytes_) {
    return Status::InvalidArgument("item of " + std::to_string(item.size()) +
                                   " bytes exceeds the list's max_item_bytes (" +
                                   std::to_string(max_item_bytes_) + ")");
  }
  return CatchAtBoundary("list push", [&] { return DoPush(end, item, length); });
}

// The item is allocated and staged outside the lock; under it, one slot publish commits. A full
// ring is grown as a separate copy-on-write step (the writer holds one staged blob at a time),
// so the staged item is dropped and allocated again: rare, since rings double. An inline item
// needs no writer at all: nothing to stage, nothing replaced, and the slot word it publishes is
// what repair trusts (list_rep.h), so no intent has anything to tell.
Status List::DoPush(End end, std::string_view item, uint64_t* length) {
  Segment::Impl* seg = ref_.segment->impl();
  const uint64_t entry_handle = seg->Handle(ref_.entry);
  std::optional<CowWriter> writer;
  if (!FitsInline(item)) {
    writer.emplace(seg);
    if (!writer->ok()) return NoIntentSlot();
  }
  for (int attempt = 0; attempt < kMaxPushAttempts; ++attempt) {
    uint64_t word = 0;
    SHM_RETURN_IF_ERROR(MakeItem(writer ? &*writer : nullptr, seg, item, &word));
    ObjectGuard guard;
    SHM_RETURN_IF_ERROR(guard.Lock(ref_));  // On error the writer frees the staged item.
    ListRep* rep = RepOf(seg, ref_.entry);
    PrefetchForWrite(rep);  // Its first line: every word of a push or pop (list_rep.h).
    const int64_t head = rep->head.load();
    const int64_t tail = rep->tail.load();
    const uint64_t count = static_cast<uint64_t>(tail - head);
    if (count >= rep->max_items) {
      return Status::OutOfSpace("list is full: " + std::to_string(count) +
                                " items (its max_items)");
    }
    const uint64_t capacity = CapacityOf(seg, rep);
    if (HasRoom(count, capacity)) {
      uint64_t ring = rep->ring.load();
      AddOwned(rep->writes, 1);  // Under the entry's lock, as every owned add below.
      std::atomic<uint64_t>* slot = SlotAt(seg, ring, end == End::kRight ? tail : head - 1);
      PublishItemLocked(writer ? &*writer : nullptr, entry_handle, slot, word);  // The commit.
      if (end == End::kRight) {
        rep->tail.store(tail + 1);
      } else {
        rep->head.store(head - 1);
      }
      AddOwned(rep->bytes, item.size());
      bool wake = rep->waiters.load() != 0;
      guard.Unlock();
      if (writer) writer->ReleaseGarbage();  // Nothing was replaced; keeps the protocol uniform.
      if (wake) FutexWakeAll(&ref_.entry->wake_seq);
      NoteListFilled(ref_);  // A key's list: its Redis blocked pops too.
      if (length != nullptr) *length = count + 1;
      return Status::OK();
    }
    guard.Unlock();
    if (writer) writer->DiscardStaged();
    SHM_RETURN_IF_ERROR(ResizeRing(std::max(kInitialCapacity, capacity * 2)));
  }
  return Status::Internal("list push: the ring kept filling up while growing it");
}

// Copies the slots of [head, tail) by logical position into a new ring and publishes it with one
// store into ListRep::ring; the old ring array (not its items) is then garbage.
Status List::ResizeRing(uint64_t capacity, bool at_least) {
  Segment::Impl* seg = ref_.segment->impl();
  CowWriter writer(seg);
  if (!writer.ok()) return NoIntentSlot();
  uint64_t fresh = 0;
  SHM_RETURN_IF_ERROR(AllocateRing(seg, capacity, &fresh));
  writer.Stage(fresh);
  ObjectGuard guard;
  SHM_RETURN_IF_ERROR(guard.Lock(ref_));
  ListRep* rep = RepOf(seg, ref_.entry);
  const int64_t head = rep->head.load();
  const int64_t tail = rep->tail.load();
  const uint64_t now = CapacityOf(seg, rep);
  if (at_least ? now >= capacity
               : !WantsCapacity(static_cast<uint64_t>(tail - head), now, capacity)) {
    return Status::OK();  // Another process resized first; the writer frees the staged ring.
  }
  const uint64_t old_ring = rep->ring.load();
  for (int64_t pos = head; pos < tail; ++pos) {
    SlotAt(seg, fresh, pos)->store(SlotAt(seg, old_ring, pos)->load(), std::memory_order_relaxed);
  }
  writer.PublishLocked(seg->Handle(ref_.entry), &rep->ring, fresh);  // The commit.
  guard.Unlock();
  writer.ReleaseGarbage();
  return Status::OK();
}

Status List::Pop(End end, std::chrono::milliseconds wait, std::string* item, bool* got,
                 ListPlace* place) {
  *got = false;
  left_by_last_pop_ = 0;  // Unknown until a pop succeeds under the lock.
  if (!ref_.valid()) return Status::InvalidArgument("list handle is not open");
  SHM_RETURN_IF_ERROR(CheckWait(wait));
  if (tx_ != nullptr) {
    if (wait.count() > 0 || place != nullptr) return TxListUnsupported();
    return tx_->Pop(*this, end, item, got);
  }
  return CatchAtBoundary("list pop", [&] { return DoPop(end, wait, item, got, place); });
}

Status List::Join(ListPlace* place) {
  if (!ref_.valid()) return Status::InvalidArgument("list handle is not open");
  if (tx_ != nullptr) return TxListUnsupported();
  return CatchAtBoundary("list join", [&]() -> Status {
    LeaveOtherLine(place);
    if (place->in_line()) return Status::OK();  // In this line already.
    ObjectGuard guard;
    SHM_RETURN_IF_ERROR(guard.Lock(ref_));
    place->ref_ = ref_;
    place->ticket_ = JoinLocked(RepOf(ref_.segment->impl(), ref_.entry), CurrentPid(),
                                MonotonicNs(place->deadline_), &place->slot_);
    return Status::OK();
  });
}

// Before this list's lock: a place in another list's line (or another incarnation's) leaves it.
// One in another segment (a generation the caller moved away from, maybe unmapped) is only
// forgotten: nobody waits there any more.
void List::LeaveOtherLine(ListPlace* place) const {
  if (!place->in_line()) return;
  if (place->ref_.segment != ref_.segment) {
    place->ticket_ = 0;
  } else if (place->ref_.entry != ref_.entry || place->ref_.incarnation != ref_.incarnation) {
    place->Leave();
  }
}

void ListPlace::Leave() {
  if (ticket_ == 0) return;
  const uint64_t ticket = std::exchange(ticket_, 0);
  try {
    ObjectGuard guard;
    if (!guard.Lock(ref_).ok()) return;  // The list is gone, and its line with it.
    const bool wake = LeaveLocked(RepOf(ref_.segment->impl(), ref_.entry), slot_, ticket);
    guard.Unlock();
    if (wake) FutexWakeAll(&ref_.entry->wake_seq);
  } catch (...) {
    // Best effort: a place left behind is void at its deadline.
  }
}

// Blocking without condition variables: read the wake sequence, look under the lock, and sleep
// on the sequence only if nothing changed since it was read (a push, or a waiter leaving the
// line, bumps it after unlocking).
Status List::DoPop(End end, std::chrono::milliseconds wait, std::string* item, bool* got,
                   ListPlace* place) {
  Segment::Impl* seg = ref_.segment->impl();
  EntryRep* entry = ref_.entry;
  std::optional<CowWriter> writer;  // Only for a blob item: an inline one leaves no garbage.
  // A pop that does not wait reads no clock (most pops: LPOP, RPOP).
  const auto deadline = wait.count() > 0 ? std::chrono::steady_clock::now() + wait
                                         : std::chrono::steady_clock::time_point::min();
  ListPlace own(deadline);  // The place of a pop that waits without the caller's.
  if (place == nullptr && wait.count() > 0) place = &own;
  if (place != nullptr) LeaveOtherLine(place);
  bool counted_as_waiter = false;
  while (true) {
    const uint32_t seen = entry->wake_seq.load(std::memory_order_acquire);
    ObjectGuard guard;
    SHM_RETURN_IF_ERROR(guard.Lock(ref_));
    ListRep* rep = RepOf(seg, entry);
    PrefetchForWrite(rep);  // Its first line: every word of a push or pop (list_rep.h).
    if (counted_as_waiter) rep->waiters.fetch_sub(1);
    counted_as_waiter = false;
    if (place != nullptr && !place->in_line()) {  // Joins first: the line decides who pops.
      place->ref_ = ref_;
      place->ticket_ = JoinLocked(rep, CurrentPid(), MonotonicNs(place->deadline_), &place->slot_);
    }
    const int64_t head = rep->head.load();
    const int64_t tail = rep->tail.load();
    if (tail > head && MayPopLocked(rep, place == nullptr ? 0 : place->ticket_)) {
      const uint64_t ring = rep->ring.load();
      const int64_t pos = end == End::kLeft ? head : tail - 1;
      std::atomic<uint64_t>* slot = SlotAt(seg, ring, pos);
      const uint64_t word = slot->load();
      if (IsBlob(word)) {
        // Under the lock, which the lock order allows (object, then allocator): only a thread's
        // first writer allocates (its blob cache's rep).
        writer.emplace(seg);
        if (!writer->ok()) return NoIntentSlot();
      } else if (!IsInlineItem(word)) {
        return Status::Internal("list slot inside [head, tail) is empty");
      }
      std::string_view bytes = ItemView(seg, slot);
      item->assign(bytes.data(), bytes.size());  // Copied out before the commit.
      const uint64_t size = bytes.size();
      AddOwned(rep->writes, 1);
      // The commit; a blob item is garbage from here.
      PublishItemLocked(writer ? &*writer : nullptr, seg->Handle(entry), slot, 0);
      if (end == End::kLeft) {
        rep->head.store(head + 1);
      } else {
        rep->tail.store(tail - 1);
      }
      SubOwned(rep->bytes, size);
      bool wake = false;
      if (place != nullptr && place->in_line()) {  // Served: the next in line may take the rest.
        wake = LeaveLocked(rep, place->slot_, std::exchange(place->ticket_, 0));
      }
      const uint64_t length = static_cast<uint64_t>(tail - head) - 1;
      const uint64_t capacity = CapacityOf(seg, rep);
      guard.Unlock();
      if (writer) writer->ReleaseGarbage();
      if (wake) FutexWakeAll(&entry->wake_seq);
      *got = true;
      left_by_last_pop_ = length;
      if (capacity > kShrinkAbove && length <= capacity / 8) {
        ResizeRing(capacity / 4).ok();  // Best effort: the pop itself is done.
      }
      return Status::OK();
    }
    if (wait.count() <= 0) return Status::OK();
    const auto remaining = deadline - std::chrono::steady_clock::now();
    if (remaining.count() <= 0) return Status::OK();  // `own` leaves the line as it goes.
    rep->waiters.fetch_add(1);
    counted_as_waiter = true;
    guard.Unlock();
    FutexWait(&entry->wake_seq, seen, remaining);
  }
}

void DropListPlacesOf(Segment::Impl* seg, EntryRep* entry, pid_t pid) {
  ListRep* rep = RepOf(seg, entry);
  bool dropped = false;
  for (ListPlaceRep& place : rep->line) {
    if (place.ticket.load() != 0 && place.pid.load() == pid) {
      FreePlaceLocked(rep, place);
      dropped = true;
    }
  }
  if (dropped && LengthOf(rep) > 0) FutexWakeAll(&entry->wake_seq);
}

Status List::Length(uint64_t* length) const {
  if (tx_ != nullptr) return tx_->Length(*this, length);
  return CatchAtBoundary("list length", [&]() -> Status {
    ObjectGuard guard;
    SHM_RETURN_IF_ERROR(guard.Lock(ref_));
    *length = LengthOf(RepOf(ref_.segment->impl(), ref_.entry));
    return Status::OK();
  });
}

Status List::Range(int64_t start, int64_t stop, std::vector<std::string>* items,
                   bool* truncated) const {
  items->clear();
  if (truncated != nullptr) *truncated = false;
  if (tx_ != nullptr) return TxListRange(tx_, *this, start, stop, items, truncated);
  return CatchAtBoundary("list range", [&] { return DoRange(start, stop, items, truncated); });
}

Status List::All(std::vector<std::string>* items) const {
  for (int64_t first = 0;;) {
    std::vector<std::string> chunk;
    bool truncated = false;
    SHM_RETURN_IF_ERROR(Range(first, -1, &chunk, &truncated));
    first += static_cast<int64_t>(chunk.size());
    for (std::string& item : chunk) items->push_back(std::move(item));
    if (!truncated || chunk.empty()) return Status::OK();
  }
}

Status List::DoRange(int64_t start, int64_t stop, std::vector<std::string>* items,
                     bool* truncated) const {
  RangeCollector collector(items, truncated);
  return DoVisitRange(start, stop, &collector);
}

Status List::VisitRange(int64_t start, int64_t stop, RangeVisitor* visitor) const {
  if (!ref_.valid()) return Status::InvalidArgument("list handle is not open");
  if (tx_ == nullptr) {
    return CatchAtBoundary("list range", [&] { return DoVisitRange(start, stop, visitor); });
  }
  // The transaction's view answers in Range's chunks; visited once all are in.
  uint64_t length = 0;
  SHM_RETURN_IF_ERROR(Length(&length));
  ClampRange(static_cast<int64_t>(length), &start, &stop);
  std::vector<std::string> items;
  std::vector<std::string> chunk;
  while (start <= stop) {
    bool truncated = false;
    SHM_RETURN_IF_ERROR(Range(start, stop, &chunk, &truncated));
    if (chunk.empty()) break;
    start += static_cast<int64_t>(chunk.size());
    for (std::string& item : chunk) items.push_back(std::move(item));
    if (!truncated) break;
  }
  visitor->Begin(items.size());
  for (const std::string& item : items) {
    if (!visitor->Item(item)) break;
  }
  return Status::OK();
}

Status List::DoVisitRange(int64_t start, int64_t stop, RangeVisitor* visitor) const {
  Segment::Impl* seg = ref_.segment->impl();
  ObjectGuard guard;
  SHM_RETURN_IF_ERROR(guard.Lock(ref_));
  ListRep* rep = RepOf(seg, ref_.entry);
  const int64_t head = rep->head.load();
  const uint64_t ring = rep->ring.load();
  ClampRange(static_cast<int64_t>(LengthOf(rep)), &start, &stop);
  visitor->Begin(start <= stop ? static_cast<uint64_t>(stop - start + 1) : 0);
  for (int64_t i = start; i <= stop; ++i) {
    if (!visitor->Item(ItemView(seg, SlotAt(seg, ring, head + i)))) break;
  }
  return Status::OK();
}

Status List::Set(int64_t index, std::string_view item) {
  if (!ref_.valid()) return Status::InvalidArgument("list handle is not open");
  if (tx_ != nullptr) return TxListUnsupported();
  if (item.size() > max_item_bytes_) {
    return Status::InvalidArgument("item of " + std::to_string(item.size()) +
                                   " bytes exceeds the list's max_item_bytes (" +
                                   std::to_string(max_item_bytes_) + ")");
  }
  return CatchAtBoundary("list set", [&] { return DoSet(index, item); });
}

// Like a push: the item is allocated and staged outside the lock; one slot publish commits and
// the replaced item is garbage. head, tail and the ring do not change.
Status List::DoSet(int64_t index, std::string_view item) {
  Segment::Impl* seg = ref_.segment->impl();
  CowWriter writer(seg);
  if (!writer.ok()) return NoIntentSlot();
  uint64_t blob = 0;
  SHM_RETURN_IF_ERROR(MakeItem(&writer, seg, item, &blob));
  ObjectGuard guard;
  SHM_RETURN_IF_ERROR(guard.Lock(ref_));
  ListRep* rep = RepOf(seg, ref_.entry);
  const auto length = static_cast<int64_t>(LengthOf(rep));
  if (index < 0) index += length;
  if (index < 0 || index >= length) return Status::NotFound("list index out of range");
  std::atomic<uint64_t>* slot = SlotAt(seg, rep->ring.load(), rep->head.load() + index);
  const uint64_t old_size = ItemSize(seg, slot->load());
  rep->writes.fetch_add(1);
  writer.PublishLocked(seg->Handle(ref_.entry), slot, blob);  // The commit.
  rep->bytes.fetch_add(item.size());
  rep->bytes.fetch_sub(old_size);
  guard.Unlock();
  writer.ReleaseGarbage();
  return Status::OK();
}

Status List::Replace(const std::vector<std::string>* expected,
                     const std::vector<std::string>& items, bool* swapped) {
  *swapped = false;
  left_by_last_pop_ = 0;  // The length is the new content's.
  if (!ref_.valid()) return Status::InvalidArgument("list handle is not open");
  if (tx_ != nullptr) return TxListReplace(tx_, *this, expected, items, swapped);
  if (items.size() > max_items_) {
    return Status::OutOfSpace("list is full: " + std::to_string(items.size()) +
                              " items exceed its max_items (" + std::to_string(max_items_) + ")");
  }
  for (const std::string& item : items) {
    if (item.size() > max_item_bytes_) {
      return Status::InvalidArgument("item of " + std::to_string(item.size()) +
                                     " bytes exceeds the list's max_item_bytes (" +
                                     std::to_string(max_item_bytes_) + ")");
    }
  }
  return CatchAtBoundary("list replace", [&] { return DoReplace(expected, items, swapped); });
}

// The new ring and its items are built outside the lock, the ring staged; under the lock the
// content is compared with `expected` and the ring published into ListRep::ring (the commit),
// laid out from the current head so that repair (which trusts the slots) finds it whole. The
// old ring with its items is the garbage. A death before the commit leaks the new items (the
// staged ring itself is freed by whoever settles the intent), never a torn list.
Status List::DoReplace(const std::vector<std::string>* expected,
                       const std::vector<std::string>& items, bool* swapped) {
  Segment::Impl* seg = ref_.segment->impl();
  CowWriter writer(seg);
  if (!writer.ok()) return NoIntentSlot();
  uint64_t capacity = kInitialCapacity;
  while (!HasRoom(items.size(), capacity)) capacity *= 2;
  std::vector<uint64_t> blobs;
  blobs.reserve(items.size());
  auto free_blobs = [&] {
    for (uint64_t b : blobs) seg->Free(b);
  };
  for (const std::string& item : items) {
    uint64_t blob = 0;
    Status s = MakeUnstagedItem(seg, item, &blob);
    if (!s.ok()) {
      free_blobs();
      return s;
    }
    blobs.push_back(blob);
  }
  uint64_t fresh = 0;
  Status s = AllocateRing(seg, capacity, &fresh);
  if (!s.ok()) {
    free_blobs();
    return s;
  }
  writer.Stage(fresh);
  ObjectGuard guard;
  s = guard.Lock(ref_);
  if (!s.ok()) {
    free_blobs();
    return s;
  }
  ListRep* rep = RepOf(seg, ref_.entry);
  const int64_t head = rep->head.load();
  const int64_t tail = rep->tail.load();
  const uint64_t old_ring = rep->ring.load();
  if (expected != nullptr) {
    bool same = expected->size() == static_cast<uint64_t>(tail - head);
    for (int64_t pos = head; same && pos < tail; ++pos) {
      same = ItemView(seg, SlotAt(seg, old_ring, pos)) == (*expected)[pos - head];
    }
    if (!same) {
      guard.Unlock();
      free_blobs();  // The writer frees the staged ring.
      return Status::OK();
    }
  }
  rep->writes.fetch_add(1);
  uint64_t bytes = 0;
  for (size_t i = 0; i < blobs.size(); ++i) {
    SlotAt(seg, fresh, head + static_cast<int64_t>(i))->store(blobs[i]);
    bytes += items[i].size();
  }
  writer.PublishLocked(seg->Handle(ref_.entry), &rep->ring, fresh);  // The commit.
  rep->tail.store(head + static_cast<int64_t>(items.size()));
  rep->bytes.store(bytes);
  const bool wake = rep->waiters.load() != 0 && !items.empty();
  guard.Unlock();
  writer.ReleaseGarbage(old_ring == 0 ? nullptr : DestroyRingAndItems);
  if (wake) FutexWakeAll(&ref_.entry->wake_seq);
  if (!items.empty()) NoteListFilled(ref_);
  *swapped = true;
  return Status::OK();
}

// ---- Transactions (list_tx.h) ------------------------------------------------------------------

struct ListTxAccess {
  static Status Grow(const ObjectRef& ref, uint64_t capacity) {
    return List(ref, 0, 0).ResizeRing(capacity, true);
  }
};

Status ListTxGrow(const ObjectRef& ref, uint64_t capacity) {
  return ListTxAccess::Grow(ref, capacity);
}

Status ListTxRead(const ObjectRef& ref, int64_t index, ListTxView* view, std::string* item) {
  Segment::Impl* seg = ref.segment->impl();
  ObjectGuard guard;
  SHM_RETURN_IF_ERROR(guard.Lock(ref));
  ListRep* rep = RepOf(seg, ref.entry);
  view->writes = rep->writes.load();
  view->length = LengthOf(rep);
  if (index >= 0 && static_cast<uint64_t>(index) < view->length) {
    std::string_view bytes = ItemView(seg, SlotAt(seg, rep->ring.load(), rep->head.load() + index));
    item->assign(bytes.data(), bytes.size());
  }
  return Status::OK();
}

Status ListTxFillRecord(Segment::Impl* seg, TxRecordRep* rec, uint32_t first, const ObjectRef& ref,
                        const std::deque<std::string>& left, const std::deque<std::string>& right,
                        uint64_t pops_left, uint64_t pops_right) {
  const uint64_t entry = seg->Handle(ref.entry);
  TxChangeRep* c = rec->changes() + first;
  auto next = [&](uint32_t tag) -> TxChangeRep& {
    c->entry = entry;
    c->incarnation = ref.incarnation;
    c->erase = tag;
    return *c++;
  };
  next(kTxList);
  next(kTxListBytes);
  for (uint64_t i = 0; i < pops_left; ++i) next(kTxPopLeft);
  for (uint64_t i = 0; i < pops_right; ++i) next(kTxPopRight);
  for (const auto* side : {&left, &right}) {
    for (const std::string& item : *side) {
      TxChangeRep& change = next(side == &left ? kTxPushLeft : kTxPushRight);
      uint64_t blob = 0;
      SHM_RETURN_IF_ERROR(MakeUnstagedItem(seg, item, &blob));
      change.blob = blob;  // The record owns it from here (FreeTxRecord), or holds it inline.
    }
  }
  return Status::OK();
}

Status ListTxLock(const ObjectRef& ref) {
  EntryRep* entry = ref.entry;
  const LockResult locked = entry->mu.LockFor(kDefaultLockTimeout);
  if (locked == LockResult::kTimedOut) {
    return Status::Timeout("a transaction's list is busy (held by pid " +
                           std::to_string(entry->mu.owner_pid()) + "); try again");
  }
  if (locked == LockResult::kOwnerDied) RepairEntryLocked(ref.segment->impl(), entry);
  if (!IsCurrent(ref) || EntryExpiredNow(entry)) {
    entry->mu.unlock();
    return Status::NotFound("list was deleted");
  }
  return Status::OK();
}

void ListTxUnlock(const ObjectRef& ref) { ref.entry->mu.unlock(); }

namespace {

// One list's share of a record, read back from its changes.
struct ListShare {
  const TxChangeRep* header = nullptr;
  const TxChangeRep* bytes = nullptr;
  std::vector<const TxChangeRep*> pops_left, pops_right, left, right;
};

ListShare ShareAt(const TxRecordRep* rec, uint32_t first) {
  const TxChangeRep* changes = const_cast<TxRecordRep*>(rec)->changes();
  ListShare share;
  share.header = &changes[first];
  share.bytes = &changes[first + 1];
  for (uint32_t i = first + 2; i < rec->count; ++i) {
    const TxChangeRep& c = changes[i];
    if (c.entry != share.header->entry || !IsListTxTag(c.erase) || c.erase <= kTxListBytes) break;
    auto& side = c.erase == kTxPopLeft    ? share.pops_left
                 : c.erase == kTxPopRight ? share.pops_right
                 : c.erase == kTxPushLeft ? share.left
                                          : share.right;
    side.push_back(&c);
  }
  return share;
}

uint64_t RingFor(uint64_t slots) {
  uint64_t capacity = kInitialCapacity;
  while (!(slots + 1 < capacity)) capacity *= 2;
  return capacity;
}

}  // namespace

Status ListTxPrepareLocked(const ObjectRef& ref, std::optional<uint64_t> writes_seen,
                           TxRecordRep* rec, uint32_t first, uint64_t* grow_to) {
  Segment::Impl* seg = ref.segment->impl();
  ListRep* rep = RepOf(seg, ref.entry);
  if (writes_seen.has_value() && rep->writes.load() != *writes_seen) {
    return Status::Conflict("a list read by the transaction changed before its commit");
  }
  if (rec == nullptr) return Status::OK();  // Read only.
  *grow_to = 0;
  const ListShare share = ShareAt(rec, first);
  const int64_t head = rep->head.load();
  const int64_t tail = rep->tail.load();
  const uint64_t length = static_cast<uint64_t>(tail - head);
  const uint64_t pops_left = share.pops_left.size(), pops_right = share.pops_right.size();
  const uint64_t pops = pops_left + pops_right;
  if (pops > length) return Status::Conflict("a list popped by the transaction is shorter");
  if (pops > 0 && !MayPopLocked(rep, 0)) {
    return Status::Conflict("older waiters are in line for the list's items");
  }
  const uint64_t after = length - pops + share.left.size() + share.right.size();
  if (after > rep->max_items) {
    return Status::OutOfSpace("list is full: " + std::to_string(after) +
                              " items would exceed its max_items (" +
                              std::to_string(rep->max_items) + ")");
  }
  // Every position the share touches must be its own slot, and one slot stays free (list_rep.h).
  const uint64_t span = length +
                        (share.left.size() > pops_left ? share.left.size() - pops_left : 0) +
                        (share.right.size() > pops_right ? share.right.size() - pops_right : 0);
  if (!(span + 1 < CapacityOf(seg, rep))) {
    *grow_to = RingFor(span);
    return Status::OK();
  }
  const uint64_t ring = rep->ring.load();
  TxChangeRep* changes = rec->changes();
  uint64_t bytes = rep->bytes.load();
  for (uint64_t i = 0; i < pops; ++i) {
    const int64_t pos = i < pops_left ? head + static_cast<int64_t>(i)
                                      : tail - 1 - static_cast<int64_t>(i - pops_left);
    const uint64_t blob = SlotAt(seg, ring, pos)->load();
    changes[first + 2 + i].blob = blob;
    bytes -= ItemSize(seg, blob);
  }
  for (const auto* side : {&share.left, &share.right}) {
    for (const TxChangeRep* c : *side) bytes += ItemSize(seg, c->blob);
  }
  TxChangeRep& header = changes[first];
  header.body = ring;
  header.blob = static_cast<uint64_t>(head);
  header.shard = static_cast<uint32_t>(length);
  changes[first + 1].body = bytes;
  return Status::OK();
}

void ListTxCountWriteLocked(const ObjectRef& ref, bool keyspace) {
  RepOf(ref.segment->impl(), ref.entry)->writes.fetch_add(1);
  if (keyspace) ref.entry->keyspace_writes.fetch_add(1);
}

bool ListTxApplyLocked(Segment::Impl* seg, const TxRecordRep* rec, uint32_t first) {
  const ListShare share = ShareAt(rec, first);
  auto* entry = seg->Ptr<EntryRep>(share.header->entry);
  ListRep* rep = RepOf(seg, entry);
  const uint64_t ring = rep->ring.load();
  if (entry->incarnation.load() != share.header->incarnation || ring != share.header->body) {
    SHM_LOG(kError) << "transaction: a list's share no longer matches its list; not applied";
    return false;
  }
  const auto head = static_cast<int64_t>(share.header->blob);
  const int64_t tail = head + share.header->shard;
  const auto n = [](const std::vector<const TxChangeRep*>& v) {
    return static_cast<int64_t>(v.size());
  };
  // Popped positions first, then pushed ones (a position both popped and pushed ends pushed).
  for (int64_t i = 0; i < n(share.pops_left); ++i) SlotAt(seg, ring, head + i)->store(0);
  for (int64_t i = 0; i < n(share.pops_right); ++i) SlotAt(seg, ring, tail - 1 - i)->store(0);
  const int64_t new_head = head + n(share.pops_left) - n(share.left);
  const int64_t right_from = tail - n(share.pops_right);
  for (int64_t i = 0; i < n(share.left); ++i) {
    SlotAt(seg, ring, new_head + i)->store(share.left[i]->blob);
  }
  for (int64_t i = 0; i < n(share.right); ++i) {
    SlotAt(seg, ring, right_from + i)->store(share.right[i]->blob);
  }
  CrashPoint("tx_list_after_slots");
  rep->head.store(new_head);
  rep->tail.store(right_from + n(share.right));
  rep->bytes.store(share.bytes->body);
  return rep->waiters.load() != 0 && LengthOf(rep) > 0;
}

void SettleListTxLocked(Segment::Impl* seg, EntryRep* entry) {
  const uint64_t handle = entry->counter_tx.load(std::memory_order_seq_cst);
  if (handle == 0 || !seg->Contains(handle, sizeof(TxRecordRep))) return;
  auto* rec = seg->Ptr<TxRecordRep>(handle);
  if (rec->committed.load(std::memory_order_seq_cst) == 1) {
    const uint64_t mine = seg->Handle(entry);
    for (uint32_t i = 0; i < rec->count; ++i) {
      const TxChangeRep& c = rec->changes()[i];
      if (c.erase == kTxList && c.entry == mine) {
        if (ListTxApplyLocked(seg, rec, i) && entry->body.load() != 0) {
          FutexWakeAll(&entry->wake_seq);
        }
        break;
      }
    }
  }
  CrashPoint("tx_settle_list");
  entry->counter_tx.store(0, std::memory_order_seq_cst);
  // The last share settled frees the record; a death before this leaks it, never frees twice.
  if (rec->shares_left.fetch_sub(1, std::memory_order_seq_cst) == 1) FreeTxRecord(seg, handle);
}

}  // namespace shm
