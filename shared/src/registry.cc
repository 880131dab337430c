#include "shm/registry.h"

#include <algorithm>
#include <cstring>
#include <string>

#include "boundary.h"
#include "cow.h"
#include "futex.h"
#include "key_hash.h"
#include "kind_ops.h"
#include "layout.h"
#include "object_guard.h"
#include "process_lock_rep.h"
#include "segment_impl.h"

namespace shm {
namespace {

constexpr std::string_view kKindNames[kObjectKindCount] = {
    "none", "counter", "dict", "list", "lock", "sessions", "array", "keyspace", "process_lock"};
constexpr uint32_t kListChunk = 256;  // Entries scanned per registry-lock hold when listing.

std::string_view EntryName(const EntryRep* e) { return {e->name, e->name_length}; }
uint32_t EntryIndex(Segment::Impl* seg, const EntryRep* e) {
  return static_cast<uint32_t>(e - seg->Entry(0));
}
bool IsLive(const EntryRep* e) {
  return e->state.load(std::memory_order_acquire) == static_cast<uint32_t>(EntryState::kLive);
}

// Returns the index word position holding `name`, or -1. REQUIRES: registry lock.
int64_t FindSlotLocked(Segment::Impl* seg, std::string_view name) {
  const RegistryRep& reg = seg->root()->registry;
  std::atomic<uint32_t>* words = seg->IndexWords();
  uint32_t mask = reg.index_size - 1;
  uint32_t pos = static_cast<uint32_t>(KeyHash(name)) & mask;
  for (uint32_t probes = 0; probes < reg.index_size; ++probes, pos = (pos + 1) & mask) {
    uint32_t word = words[pos].load(std::memory_order_relaxed);
    if (word == 0) return -1;
    if (word == kIndexTombstone) continue;
    EntryRep* e = seg->Entry(word - 1);
    if (IsLive(e) && EntryName(e) == name) return pos;
  }
  return -1;
}

void IndexInsertLocked(Segment::Impl* seg, EntryRep* e) {
  RegistryRep& reg = seg->root()->registry;
  std::atomic<uint32_t>* words = seg->IndexWords();
  uint32_t mask = reg.index_size - 1;
  uint32_t pos = static_cast<uint32_t>(KeyHash(EntryName(e))) & mask;
  // The index has at least twice as many words as entries, so an empty word exists.
  while (true) {
    uint32_t word = words[pos].load(std::memory_order_relaxed);
    if (word == 0 || word == kIndexTombstone) {
      if (word == kIndexTombstone) reg.tombstones.fetch_sub(1);
      words[pos].store(EntryIndex(seg, e) + 1, std::memory_order_release);
      return;
    }
    pos = (pos + 1) & mask;
  }
}

void FreeListPushLocked(Segment::Impl* seg, EntryRep* e) {
  RegistryRep& reg = seg->root()->registry;
  uint64_t link = EntryIndex(seg, e) + 1;
  e->next_free.store(0);
  uint64_t tail = reg.free_tail.load();
  if (tail == 0) {
    reg.free_head.store(link);
  } else {
    seg->Entry(static_cast<uint32_t>(tail - 1))->next_free.store(link);
  }
  reg.free_tail.store(link);
}

EntryRep* FreeListPopLocked(Segment::Impl* seg) {
  RegistryRep& reg = seg->root()->registry;
  uint64_t head = reg.free_head.load();
  if (head == 0) return nullptr;
  EntryRep* e = seg->Entry(static_cast<uint32_t>(head - 1));
  uint64_t next = e->next_free.load();
  reg.free_head.store(next);
  if (next == 0) reg.free_tail.store(0);
  e->next_free.store(0);
  return e;
}

void RebuildIndexLocked(Segment::Impl* seg) {
  RegistryRep& reg = seg->root()->registry;
  std::atomic<uint32_t>* words = seg->IndexWords();
  for (uint32_t i = 0; i < reg.index_size; ++i) words[i].store(0, std::memory_order_relaxed);
  reg.tombstones.store(0);
  uint32_t live = 0;
  for (uint32_t i = 0; i < reg.capacity; ++i) {
    EntryRep* e = seg->Entry(i);
    if (!IsLive(e)) continue;
    IndexInsertLocked(seg, e);
    ++live;
  }
  reg.live.store(live);
}

// "'x' is a dict, not an array": the answer to opening or deleting an object as another kind.
Status WrongKind(std::string_view name, ObjectKind actual, ObjectKind wanted) {
  auto with_article = [](ObjectKind kind) {
    std::string_view kind_name = KindName(kind);
    return std::string(kind_name.find_first_of("aeiou") == 0 ? "an " : "a ") +
           std::string(kind_name);
  };
  return Status::WrongType("'" + std::string(name) + "' is " + with_article(actual) + ", not " +
                           with_article(wanted));
}

// Deletes a live entry. REQUIRES: registry lock; `index_pos` is its index word.
Status DeleteLocked(Segment::Impl* seg, EntryRep* e, int64_t index_pos) {
  CowWriter writer(seg);
  if (!writer.ok()) return NoIntentSlot();
  ObjectGuard guard;
  SHM_RETURN_IF_ERROR(guard.LockEntry(seg, e));
  auto kind = static_cast<ObjectKind>(e->kind.load());
  e->counter_fast_tag.store(0);
  e->state.store(static_cast<uint32_t>(EntryState::kFree), std::memory_order_release);  // Commit.
  e->incarnation.fetch_add(1);
  if (e->body.load() != 0) {
    writer.PublishBodyLocked(seg->Handle(e), &e->body, 0, static_cast<uint32_t>(kind));
  }
  guard.Unlock();
  FutexWakeAll(&e->wake_seq);  // Blocked pops and lock waits notice the object is gone.
  if (kind == ObjectKind::kProcessLock) WakeDeletedProcessLock(e);
  RegistryRep& reg = seg->root()->registry;
  seg->IndexWords()[index_pos].store(kIndexTombstone, std::memory_order_release);
  reg.tombstones.fetch_add(1);
  reg.live.fetch_sub(1);
  FreeListPushLocked(seg, e);
  if (reg.tombstones.load() > reg.index_size / 4) RebuildIndexLocked(seg);
  writer.ReleaseGarbage(KindOpsFor(kind).destroy);
  return Status::OK();
}

Status CreateLocked(Segment::Impl* seg, std::string_view name, const Registry::OpenSpec& spec,
                    EntryRep** created) {
  RegistryRep& reg = seg->root()->registry;
  if (reg.free_head.load() == 0) {
    return Status::OutOfSpace("registry full: " + std::to_string(reg.capacity) +
                              " objects (raise --max-objects)");
  }
  CowWriter writer(seg);
  if (!writer.ok()) return NoIntentSlot();
  uint64_t body = 0;
  if (spec.make_body) {
    SHM_RETURN_IF_ERROR(spec.make_body(&body));
    writer.Stage(body);
  }
  EntryRep* e = FreeListPopLocked(seg);
  e->kind.store(static_cast<uint32_t>(spec.kind));
  e->name_length = static_cast<uint32_t>(name.size());
  std::memcpy(e->name, name.data(), name.size());
  int64_t now = WallNowMs();
  e->created_ms = now;
  e->expires_at_ms.store(spec.ttl_ms > 0 ? now + spec.ttl_ms : 0);
  e->counter.store(spec.counter_init);
  e->unlocked_hits.store(0);
  e->unlocked_misses.store(0);
  // A counter born near the int64 limits, or with a TTL, takes the checked path from the start.
  bool near_limits =
      spec.counter_init >= (int64_t{1} << 61) || spec.counter_init <= -(int64_t{1} << 61);
  bool fast = spec.kind == ObjectKind::kCounter && spec.ttl_ms <= 0 && !near_limits;
  e->counter_fast_tag.store(fast ? e->incarnation.load() + 1 : 0);
  if (body != 0) writer.PublishLocked(0, &e->body, body);
  e->incarnation.fetch_add(1);
  CrashPoint("before_create_commit");
  e->state.store(static_cast<uint32_t>(EntryState::kLive), std::memory_order_release);  // Commit.
  IndexInsertLocked(seg, e);
  reg.live.fetch_add(1);
  *created = e;
  return Status::OK();
}

}  // namespace

void RepairRegistryLocked(Segment::Impl* seg) {
  RegistryRep& reg = seg->root()->registry;
  reg.free_head.store(0);
  reg.free_tail.store(0);
  for (uint32_t i = 0; i < reg.capacity; ++i) {
    EntryRep* e = seg->Entry(i);
    if (IsLive(e)) continue;
    e->state.store(static_cast<uint32_t>(EntryState::kFree));
    if (e->body.load() != 0) {
      // A create or delete died half-way: the body is unreachable by name. Free it.
      ObjectGuard guard;
      if (guard.LockEntry(seg, e).ok()) {
        uint64_t body = e->body.exchange(0);
        guard.Unlock();
        KindOpsFor(static_cast<ObjectKind>(e->kind.load())).destroy(seg, body);
      }
    }
    FreeListPushLocked(seg, e);
  }
  RebuildIndexLocked(seg);
}

std::string_view KindName(ObjectKind kind) {
  auto i = static_cast<uint32_t>(kind);
  return i < kObjectKindCount ? kKindNames[i] : "unknown";
}

Status ParseKind(std::string_view name, ObjectKind* kind) {
  for (uint32_t i = 0; i < kObjectKindCount; ++i) {
    if (kKindNames[i] == name) {
      *kind = static_cast<ObjectKind>(i);
      return Status::OK();
    }
  }
  return Status::InvalidArgument("unknown kind '" + std::string(name) +
                                 "' (counter, dict, list, lock, sessions, array, process_lock)");
}

Status ValidateName(std::string_view name) {
  if (name.empty()) return Status::InvalidArgument("name is empty");
  if (name.size() > kMaxNameLength) {
    return Status::InvalidArgument("name longer than " + std::to_string(kMaxNameLength) + " bytes");
  }
  if (name[0] == '.') return Status::InvalidArgument("name starts with '.'");
  for (unsigned char c : name) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == ':' || c == '-';
    if (!ok) {
      return Status::InvalidArgument("name has a character outside [A-Za-z0-9._:-]");
    }
  }
  return Status::OK();
}

Registry::Registry(Segment* segment) : segment_(segment) {}

uint32_t Registry::capacity() const { return segment_->impl()->root()->registry.capacity; }
uint32_t Registry::live() const { return segment_->impl()->root()->registry.live.load(); }

std::vector<uint32_t> Registry::CountByKind() const {
  std::vector<uint32_t> counts(kObjectKindCount, 0);
  Segment::Impl* seg = segment_->impl();
  for (uint32_t i = 0; i < capacity(); ++i) {
    const EntryRep* e = seg->Entry(i);
    if (!IsLive(e)) continue;
    uint32_t kind = e->kind.load(std::memory_order_relaxed);
    if (kind < kObjectKindCount) ++counts[kind];
  }
  return counts;
}

Status Registry::Open(std::string_view name, const OpenSpec& spec, ObjectRef* ref) {
  SHM_RETURN_IF_ERROR(ValidateName(name));
  if (spec.created != nullptr) *spec.created = false;
  Segment::Impl* seg = segment_->impl();
  RegistryGuard guard;
  SHM_RETURN_IF_ERROR(guard.Lock(seg));
  int64_t pos = FindSlotLocked(seg, name);
  if (pos >= 0) {
    EntryRep* e = seg->Entry(seg->IndexWords()[pos].load() - 1);
    if (EntryExpiredNow(e)) {
      SHM_RETURN_IF_ERROR(DeleteLocked(seg, e, pos));
    } else {
      auto kind = static_cast<ObjectKind>(e->kind.load());
      if (kind != spec.kind) return WrongKind(name, kind, spec.kind);
      *ref = ObjectRef{segment_, e, e->incarnation.load()};
      return Status::OK();
    }
  }
  if (spec.mode == OpenMode::kOpenExisting) {
    return Status::NotFound("no " + std::string(KindName(spec.kind)) + " named '" +
                            std::string(name) + "'");
  }
  EntryRep* e = nullptr;
  SHM_RETURN_IF_ERROR(CreateLocked(seg, name, spec, &e));
  if (spec.created != nullptr) *spec.created = true;
  *ref = ObjectRef{segment_, e, e->incarnation.load()};
  return Status::OK();
}

Status Registry::Delete(std::string_view name, ObjectKind kind) {
  SHM_RETURN_IF_ERROR(ValidateName(name));
  Segment::Impl* seg = segment_->impl();
  RegistryGuard guard;
  SHM_RETURN_IF_ERROR(guard.Lock(seg));
  int64_t pos = FindSlotLocked(seg, name);
  if (pos < 0) return Status::NotFound("no object named '" + std::string(name) + "'");
  EntryRep* e = seg->Entry(seg->IndexWords()[pos].load() - 1);
  bool expired = EntryExpiredNow(e);
  auto actual = static_cast<ObjectKind>(e->kind.load());
  if (kind != ObjectKind::kNone && actual != kind && !expired) {
    return WrongKind(name, actual, kind);
  }
  SHM_RETURN_IF_ERROR(DeleteLocked(seg, e, pos));
  if (expired) return Status::NotFound("no object named '" + std::string(name) + "'");
  return Status::OK();
}

Status Registry::Lookup(std::string_view name, ObjectInfo* info) {
  SHM_RETURN_IF_ERROR(ValidateName(name));
  Segment::Impl* seg = segment_->impl();
  RegistryGuard guard;
  SHM_RETURN_IF_ERROR(guard.Lock(seg));
  int64_t pos = FindSlotLocked(seg, name);
  if (pos < 0) return Status::NotFound("no object named '" + std::string(name) + "'");
  EntryRep* e = seg->Entry(seg->IndexWords()[pos].load() - 1);
  if (EntryExpiredNow(e)) {
    return Status::NotFound("no object named '" + std::string(name) + "'");
  }
  info->name = std::string(name);
  info->kind = static_cast<ObjectKind>(e->kind.load());
  info->created_ms = e->created_ms;
  info->expires_at_ms = e->expires_at_ms.load();
  return Status::OK();
}

Status Registry::List(std::string_view prefix, ObjectKind kind, size_t limit,
                      std::string_view after, std::vector<ObjectInfo>* result) {
  result->clear();
  Segment::Impl* seg = segment_->impl();
  int64_t now = WallNowMs();
  struct Found {
    ObjectInfo info;
    uint32_t index;
    uint64_t incarnation;
  };
  std::vector<Found> found;
  for (uint32_t start = 0; start < capacity(); start += kListChunk) {
    RegistryGuard guard;  // Per chunk, so creates and deletes interleave with a long listing.
    SHM_RETURN_IF_ERROR(guard.Lock(seg));
    uint32_t end = std::min(capacity(), start + kListChunk);
    for (uint32_t i = start; i < end; ++i) {
      const EntryRep* e = seg->Entry(i);
      if (!IsLive(e) || EntryExpired(e, now)) continue;
      std::string_view name = EntryName(e);
      auto entry_kind = static_cast<ObjectKind>(e->kind.load());
      if (name.substr(0, prefix.size()) != prefix || name <= after) continue;
      if (kind != ObjectKind::kNone && entry_kind != kind) continue;
      ObjectInfo info{std::string(name), entry_kind, e->created_ms, e->expires_at_ms.load()};
      found.push_back(Found{std::move(info), i, e->incarnation.load()});
    }
  }
  std::sort(found.begin(), found.end(),
            [](const Found& a, const Found& b) { return a.info.name < b.info.name; });
  if (found.size() > limit) found.resize(limit);
  // Sizes only for the page returned. An object deleted since the scan keeps its name and kind
  // with no sizes.
  for (size_t start = 0; start < found.size(); start += kListChunk) {
    RegistryGuard guard;
    SHM_RETURN_IF_ERROR(guard.Lock(seg));
    size_t end = std::min(found.size(), start + kListChunk);
    for (size_t i = start; i < end; ++i) {
      const EntryRep* e = seg->Entry(found[i].index);
      if (!IsLive(e) || e->incarnation.load() != found[i].incarnation) continue;
      const KindOps& ops = KindOpsFor(found[i].info.kind);
      if (ops.usage != nullptr) ops.usage(seg, e, &found[i].info);
    }
  }
  result->reserve(found.size());
  for (Found& f : found) result->push_back(std::move(f.info));
  return Status::OK();
}

}  // namespace shm
