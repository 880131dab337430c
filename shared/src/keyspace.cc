#include "shm/keyspace.h"

#include <unistd.h>

#include <charconv>
#include <optional>
#include <random>
#include <string>
#include <type_traits>

#include "boundary.h"
#include "crash_point.h"
#include "dict_rep.h"
#include "keyspace_internal.h"
#include "layout.h"
#include "segment_impl.h"
#include "shm/block_lines.h"
#include "shm/handle.h"
#include "shm/integer.h"
#include "shm/wake_word.h"

namespace shm {

// An entry's type is its content type: no HTTP or Python write reaches a keyspace's entries (the
// object is of kind keyspace, not dict), so these tags cannot be forged.
namespace {

constexpr std::string_view kListTag = "redis/list";
constexpr std::string_view kHashTag = "redis/hash";
constexpr std::string_view kNotInteger = "value is not an integer or out of range";
constexpr std::string_view kOverflow = "increment or decrement would overflow";
constexpr int kMaxNameAttempts = 8;

KeyType TypeOfEntry(const DictEntryView& entry) {
  if (entry.content_type.empty()) return KeyType::kString;
  if (entry.content_type == kListTag) return KeyType::kList;
  if (entry.content_type == kHashTag) return KeyType::kHash;
  return KeyType::kString;  // Never written; a string is the harmless reading.
}
KeyType TypeOfEntry(const DictValue& entry) { return TypeOfEntry(DictEntryView::Of(entry)); }

Status WrongType() {
  return Status::WrongType("Operation against a key holding the wrong kind of value");
}

// "redis:<db>:" and 7 random characters (42 bits) of a name's alphabet: short enough for
// std::string's inline buffer (15 bytes) for databases 0-9, so reading a key's entry allocates
// nothing. A name taken (by another key or front end) is skipped: CreateAggregate tries again.
std::string NewAggregateName(int db) {
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-";
  // splitmix64: 8 bytes of thread-local state. (An mt19937_64 here was 2.5 KiB of static TLS,
  // which a dlopen'ed Python extension linking this file may not get.)
  thread_local uint64_t state =
      std::random_device{}() ^ (static_cast<uint64_t>(getpid()) << 32) ^ 0x9e3779b97f4a7c15ull;
  uint64_t id = (state += 0x9e3779b97f4a7c15ull);
  id = (id ^ (id >> 30)) * 0xbf58476d1ce4e5b9ull;
  id = (id ^ (id >> 27)) * 0x94d049bb133111ebull;
  id ^= id >> 31;
  std::string name = "redis:" + std::to_string(db) + ":";
  for (int i = 0; i < 7; ++i, id >>= 6) name.push_back(kAlphabet[id & 63]);
  return name;
}

// This thread's handles of the aggregates it used (shm/handle.h), so a command takes no registry
// lock to find its list or hash.
template <typename Proxy>
HandleMap<Proxy>& HandlesOf() {
  return HandleMap<Proxy>::ThisThread();
}

// A list of a key has Redis's bounds, the largest a List allows.
ListOptions AggregateListOptions() {
  ListOptions options;
  options.max_items = List::kMaxItemsLimit;
  options.max_item_bytes = List::kMaxItemBytesLimit;
  return options;
}
// A hash is one shard (a bound no segment reaches): its emptiness is one word to read, and the
// keyspace's own shard lock already keeps its writers apart.
DictOptions AggregateDictOptions() {
  DictOptions options;
  options.max_bytes = uint64_t{1} << 48;
  return options;
}

Status OpenAggregate(Segment* seg, std::string_view name, OpenMode mode, List* proxy,
                     bool* created) {
  return List::Open(seg, name, mode, AggregateListOptions(), proxy, created);
}
Status OpenAggregate(Segment* seg, std::string_view name, OpenMode mode, Dict* proxy,
                     bool* created) {
  return Dict::Open(seg, name, mode, AggregateDictOptions(), proxy, created);
}

// The existing aggregate `name`, from this thread's cache when it is still live. NotFound when
// it is gone (deleted by another front end, or a crash between its delete and its key's).
template <typename Proxy>
Status FindAggregate(Segment* seg, std::string_view name, Proxy* proxy) {
  auto open = [&](Segment* s, Proxy* p) {
    return OpenAggregate(s, name, OpenMode::kOpenExisting, p, nullptr);
  };
  Proxy* handle = nullptr;
  Status s = HandlesOf<Proxy>().Get(seg, name, open, &handle);
  if (!s.ok()) {
    HandlesOf<Proxy>().Forget(name);  // Absent: no handle kept for it.
    return s;
  }
  *proxy = *handle;
  return Status::OK();
}

// A new, empty aggregate under a fresh name.
template <typename Proxy>
Status CreateAggregate(Segment* seg, int db, std::string* name, Proxy* proxy) {
  for (int attempt = 0; attempt < kMaxNameAttempts; ++attempt) {
    *name = NewAggregateName(db);
    bool created = false;
    Status s = OpenAggregate(seg, *name, OpenMode::kCreateIfMissing, proxy, &created);
    if (s.IsWrongType() || (s.ok() && !created)) continue;  // Someone else's object: next name.
    SHM_RETURN_IF_ERROR(s);
    HandlesOf<Proxy>().Set(seg, *name, *proxy);
    return Status::OK();
  }
  return Status::Internal("no free name for a new list or hash");
}

void DeleteAggregate(Segment* seg, const std::string& name, KeyType type) {
  if (name.empty()) return;
  ObjectKind kind = type == KeyType::kList ? ObjectKind::kList : ObjectKind::kDict;
  (void)seg->registry().Delete(name, kind);  // Already gone is fine.
  HandlesOf<List>().Forget(name);
  HandlesOf<Dict>().Forget(name);
}

Status IsEmpty(List& list, bool* empty) {
  // Items left by the fn's last pop, under the list's lock: through the keyspace a key's list
  // changes only under the key's lock, which the caller still holds, so it is not empty now
  // either (a front end that opens the list by its registry name is what EntryLive tolerates).
  // A pop that left none, or no pop, is checked under the list's lock.
  if (list.left_by_last_pop() > 0) {
    *empty = false;
    return Status::OK();
  }
  uint64_t length = 0;
  SHM_RETURN_IF_ERROR(list.Length(&length));
  *empty = length == 0;
  return Status::OK();
}
Status IsEmpty(Dict& hash, bool* empty) {
  DictStats stats;
  SHM_RETURN_IF_ERROR(hash.Stats(&stats));
  *empty = stats.entries == 0;
  return Status::OK();
}

// Whether an aggregate entry still stands for a key: its list or hash exists and is not empty.
// Only a crash between an aggregate's last removal and its key's (or another front end emptying
// or deleting the object) leaves an entry for which this is false; such a key reads as absent
// everywhere and the next write of the key drops the entry.
template <typename Proxy>
bool ProxyLive(Segment* seg, std::string_view name) {
  Proxy proxy;
  bool empty = true;
  return FindAggregate(seg, name, &proxy).ok() && IsEmpty(proxy, &empty).ok() && !empty;
}
bool EntryLive(Segment* seg, const DictEntryView& entry) {
  switch (TypeOfEntry(entry)) {
    case KeyType::kList:
      return ProxyLive<List>(seg, entry.data);
    case KeyType::kHash:
      return ProxyLive<Dict>(seg, entry.data);
    default:
      return true;
  }
}

KeyType TypeOfProxy(List*) { return KeyType::kList; }
KeyType TypeOfProxy(Dict*) { return KeyType::kHash; }
std::string_view TagOf(KeyType type) { return type == KeyType::kList ? kListTag : kHashTag; }

// The aggregate an entry names, to delete once the entry no longer does.
struct Orphan {
  std::string name;
  KeyType type = KeyType::kNone;
  void From(const DictEntryView* entry) {
    if (entry == nullptr) return;
    type = TypeOfEntry(*entry);
    if (type == KeyType::kList || type == KeyType::kHash) name = entry->data;
  }
  void From(const DictValue* entry) {
    if (entry == nullptr) return;
    const DictEntryView view = DictEntryView::Of(*entry);
    From(&view);
  }
  // The expired entry an update replaces (DictUpdate::expired_*), if any.
  void FromExpired(const DictUpdate& update) {
    if (update.expired_content_type.empty()) return;
    const DictEntryView view{update.expired_data, update.expired_content_type, 0, 0};
    From(&view);
  }
  void Delete(Segment* seg) {
    if (name.empty()) return;
    if (KeyspaceTransactionScope* scope = ActiveKeyspaceScope(); scope != nullptr) {
      ScopedDeferOrphan(scope, name, type);  // Once the transaction commits.
      return;
    }
    CrashPoint("keyspace_before_orphan_delete");
    DeleteAggregate(seg, name, type);
  }
};

// Where this thread's reports of ready list keys go (ReadyListSink), and the keyspace operation
// on a list it is running (ListFillScope).
thread_local ReadyListSink* t_ready_sink = nullptr;
thread_local ListFillScope* t_fill_scope = nullptr;

// The database of a keyspace's list from its object name, "redis:<db>:<id>"; false for others.
bool KeyspaceDbOfList(std::string_view name, int* db) {
  constexpr std::string_view kPrefix = "redis:";
  if (!name.starts_with(kPrefix)) return false;
  name.remove_prefix(kPrefix.size());
  const size_t colon = name.find(':');
  if (colon == std::string_view::npos || colon == 0) return false;
  auto [end, ec] = std::from_chars(name.data(), name.data() + colon, *db);
  return ec == std::errc() && end == name.data() + colon && *db >= 0 && *db < Keyspace::kDatabases;
}

// A list key of `keyspace` may be non-empty now, its write committed: its blocked pops' turn.
void ReportReady(const Keyspace& keyspace, std::string_view key) {
  if (!BlockLines(keyspace.ref().segment).AnyTaken()) return;
  if (t_ready_sink != nullptr) return t_ready_sink->Add(keyspace.db(), key);
  keyspace.WakeBlockedPops();
}

// The key's entry: through this thread's transaction when one is active.
Status GetEntry(const Dict& index, std::string_view key, DictValue* entry) {
  if (KeyspaceTransactionScope* scope = ActiveKeyspaceScope(); scope != nullptr) {
    return ScopedGetEntry(scope, index, key, entry);
  }
  return index.Get(key, entry);
}

// Whether a key's entry stands (EntryLive): inside a transaction, an entry it staged does (it
// names a key's list or hash only while the transaction leaves it non-empty, though the list or
// hash may be empty until the commit).
bool KeyLive(const Dict& index, std::string_view key, const DictEntryView& entry) {
  if (KeyspaceTransactionScope* scope = ActiveKeyspaceScope(); scope != nullptr) {
    if (ScopedEntryStaged(scope, index, key)) return true;
  }
  return EntryLive(index.ref().segment, entry);
}
bool KeyLive(const Dict& index, std::string_view key, const DictValue& entry) {
  return KeyLive(index, key, DictEntryView::Of(entry));
}

// What a transaction cannot stage: Conflict, and the caller runs its batch exclusively.
#define SHM_KEYSPACE_NOT_IN_TRANSACTION()                                            \
  if (KeyspaceTransactionScope* scope_ = ActiveKeyspaceScope(); scope_ != nullptr) { \
    return ScopedUnsupported(scope_);                                                \
  }

// Dict::UpdateView of a key's entry (through this thread's transaction when one is active): `fn`
// sees the entry in place, under the shard's lock, and copies only what it keeps (a hot path:
// every command). The key is validated by the caller.
Status UpdateEntry(Dict& index, std::string_view key, DictViewUpdateRef fn) {
  if (KeyspaceTransactionScope* scope = ActiveKeyspaceScope(); scope != nullptr) {
    // The transaction's entry is its own copy: shown to fn as a view of it.
    return ScopedUpdateEntry(scope, index, key,
                             [&fn](const DictValue* current, DictUpdate* update) {
                               if (current == nullptr) return fn(nullptr, update);
                               const DictEntryView view = DictEntryView::Of(*current);
                               return fn(&view, update);
                             });
  }
  return index.UpdateView(key, fn);
}

// Dict::Update on a key's entry, where an entry whose aggregate no longer stands (EntryLive) is
// shown to `fn` as absent and dropped unless fn writes the key; its aggregate, if any, goes to
// *dead for deletion after the commit, as does an expired entry's that fn replaces.
template <typename Fn>
Status UpdateKey(Dict& index, std::string_view key, Orphan* dead, Fn&& fn) {
  return UpdateEntry(index, key, [&](const DictEntryView* current, DictUpdate* update) {
    bool stale = current != nullptr && !KeyLive(index, key, *current);
    if (stale) {
      dead->From(current);
      current = nullptr;
    }
    SHM_RETURN_IF_ERROR(fn(current, update));
    if (stale && !update->write) update->erase = true;
    // Never with `stale`: the dict showed no live entry then.
    if (update->write || update->erase) dead->FromExpired(*update);
    return Status::OK();
  });
}

}  // namespace

ReadyListSink::ReadyListSink(std::vector<std::pair<int, std::string>>* keys)
    : keys_(keys), previous_(t_ready_sink) {
  t_ready_sink = this;
}
ReadyListSink::~ReadyListSink() { t_ready_sink = previous_; }

void ReadyListSink::Add(int db, std::string_view key) {
  for (const auto& [known_db, known] : *keys_) {
    if (known_db == db && known == key) return;
  }
  keys_->emplace_back(db, std::string(key));
}

ListFillScope::ListFillScope() : previous_(t_fill_scope) { t_fill_scope = this; }
ListFillScope::~ListFillScope() { t_fill_scope = previous_; }

void NoteListFilled(const ObjectRef& list) {
  if (t_fill_scope != nullptr) {
    t_fill_scope->filled = true;
    return;
  }
  if (!list.valid() || !BlockLines(list.segment).AnyTaken()) return;
  int db = 0;
  if (!KeyspaceDbOfList(std::string_view(list.entry->name, list.entry->name_length), &db)) return;
  Keyspace keyspace;
  // No keyspace: no pop waits on it (a blocked pop opens its keyspace first).
  if (Keyspace::Open(list.segment, db, &keyspace, OpenMode::kOpenExisting).ok()) {
    keyspace.WakeBlockedPops();
  }
}

void Keyspace::WakeBlockedPops() const { WakeWord::Of(index_.ref()).WakeAll(); }

std::string_view KeyTypeName(KeyType type) {
  switch (type) {
    case KeyType::kString:
      return "string";
    case KeyType::kList:
      return "list";
    case KeyType::kHash:
      return "hash";
    case KeyType::kNone:
      break;
  }
  return "none";
}

Status Keyspace::Open(Segment* segment, int db, Keyspace* result, OpenMode mode) {
  if (db < 0 || db >= kDatabases) return Status::InvalidArgument("DB index is out of range");
  Dict index;
  SHM_RETURN_IF_ERROR(Dict::OpenKind(segment, "redis:" + std::to_string(db), ObjectKind::kKeyspace,
                                     mode, DictOptions(), &index, nullptr));
  *result = Keyspace(index, db);
  return Status::OK();
}

Status Keyspace::Type(std::string_view key, KeyType* type) const {
  SHM_RETURN_IF_ERROR(ValidateKeyspaceKey(key));
  DictValue entry;
  Status s = GetEntry(index_, key, &entry);
  *type = KeyType::kNone;
  if (s.IsNotFound()) return Status::OK();
  SHM_RETURN_IF_ERROR(s);
  if (KeyLive(index_, key, entry)) *type = TypeOfEntry(entry);
  return Status::OK();
}

Status Keyspace::Get(std::string_view key, std::string* value, int64_t* expires_at_ms) const {
  SHM_RETURN_IF_ERROR(ValidateKeyspaceKey(key));
  DictValue entry;
  SHM_RETURN_IF_ERROR(GetEntry(index_, key, &entry));
  if (TypeOfEntry(entry) != KeyType::kString) {
    return KeyLive(index_, key, entry) ? WrongType() : Status::NotFound("no such key");
  }
  *value = std::move(entry.data);
  if (expires_at_ms != nullptr) *expires_at_ms = entry.expires_at_ms;
  return Status::OK();
}

Status Keyspace::Set(std::string_view key, std::string_view value, const StringSet& options,
                     StringSetResult* result) {
  SHM_RETURN_IF_ERROR(ValidateKeyspaceKey(key));
  if (value.size() > kMaxValue) {
    return Status::InvalidArgument("string exceeds maximum allowed size (" +
                                   std::to_string(kMaxValue) + " bytes)");
  }
  *result = StringSetResult{};
  Orphan orphan;
  Status s = UpdateKey(index_, key, &orphan, [&](const DictEntryView* current, DictUpdate* update) {
    update->write = false;
    if (options.get && current != nullptr) {
      if (TypeOfEntry(*current) != KeyType::kString) return WrongType();
      result->old.emplace(current->data);
    }
    using Cond = StringSet::Cond;
    if ((options.cond == Cond::kIfAbsent && current != nullptr) ||
        (options.cond == Cond::kIfPresent && current == nullptr)) {
      return Status::OK();
    }
    orphan.From(current);
    update->write = true;
    update->data.assign(value);
    if (options.keep_ttl) {
      update->expires_at_ms = current != nullptr ? current->expires_at_ms : 0;
    } else {
      update->expires_at_ms = options.expires_at_ms.value_or(0);
    }
    result->written = true;
    return Status::OK();
  });
  // After the publish: a crash in between leaks the old list or hash, never loses the key.
  if (s.ok()) orphan.Delete(index_.ref().segment);
  return s;
}

Status IncrementedValue(std::optional<std::string_view> current, int64_t by, int64_t* result) {
  int64_t base = 0;
  if (current.has_value() && !ParseInt64(*current, &base, IntSyntax::kRedisStrict)) {
    return Status::InvalidArgument(std::string(kNotInteger));
  }
  if (!AddInt64(base, by, result)) return Status::InvalidArgument(std::string(kOverflow));
  return Status::OK();
}

// UpdateString's read-modify-write without its StringUpdateFn (a std::function call and a
// StringUpdate per command): INCR is a hot path, written as Set is.
Status Keyspace::IncrBy(std::string_view key, int64_t by, int64_t* result) {
  SHM_RETURN_IF_ERROR(ValidateKeyspaceKey(key));
  Orphan dead;
  Status s = UpdateKey(index_, key, &dead, [&](const DictEntryView* current, DictUpdate* update) {
    update->write = false;
    if (current != nullptr && TypeOfEntry(*current) != KeyType::kString) return WrongType();
    SHM_RETURN_IF_ERROR(IncrementedValue(
        current != nullptr ? std::optional<std::string_view>(current->data) : std::nullopt, by,
        result));
    char digits[24];  // An int64 is at most 20 characters.
    char* end = std::to_chars(digits, digits + sizeof digits, *result).ptr;
    update->write = true;
    update->data.assign(digits, end);
    update->expires_at_ms = current != nullptr ? current->expires_at_ms : 0;
    return Status::OK();
  });
  if (s.ok()) dead.Delete(index_.ref().segment);
  return s;
}

Status Keyspace::UpdateString(std::string_view key, StringUpdateFn fn) {
  SHM_RETURN_IF_ERROR(ValidateKeyspaceKey(key));
  Orphan dead;
  Status s = UpdateKey(index_, key, &dead, [&](const DictEntryView* current, DictUpdate* update) {
    update->write = false;
    if (current != nullptr && TypeOfEntry(*current) != KeyType::kString) return WrongType();
    StringUpdate change;
    const std::string old = current != nullptr ? std::string(current->data) : std::string();
    SHM_RETURN_IF_ERROR(fn(current != nullptr ? &old : nullptr,
                           current != nullptr ? current->expires_at_ms : 0, &change));
    switch (change.action) {
      case StringUpdate::Action::kKeep:
        return Status::OK();
      case StringUpdate::Action::kErase:
        update->erase = true;
        return Status::OK();
      case StringUpdate::Action::kWrite:
        break;
    }
    if (change.value.size() > kMaxValue) {
      return Status::InvalidArgument("string exceeds maximum allowed size (" +
                                     std::to_string(kMaxValue) + " bytes)");
    }
    update->write = true;
    update->data = std::move(change.value);
    update->expires_at_ms =
        change.expires_at_ms.value_or(current != nullptr ? current->expires_at_ms : 0);
    return Status::OK();
  });
  if (s.ok()) dead.Delete(index_.ref().segment);
  return s;
}

Status Keyspace::Delete(std::string_view key, bool* existed) {
  SHM_RETURN_IF_ERROR(ValidateKeyspaceKey(key));
  *existed = false;
  Orphan orphan;
  Status s = UpdateKey(index_, key, &orphan, [&](const DictEntryView* current, DictUpdate* update) {
    update->write = false;
    if (current == nullptr) return Status::OK();
    orphan.From(current);
    *existed = true;
    update->erase = true;
    return Status::OK();
  });
  if (s.ok()) orphan.Delete(index_.ref().segment);
  return s;
}

Status Keyspace::Expire(std::string_view key, int64_t at_ms, ExpireIf cond, bool* applied) {
  SHM_RETURN_IF_ERROR(ValidateKeyspaceKey(key));
  *applied = false;
  Orphan orphan;
  Status s = UpdateKey(index_, key, &orphan, [&](const DictEntryView* current, DictUpdate* update) {
    update->write = false;
    if (current == nullptr) return Status::OK();
    const int64_t now = current->expires_at_ms;  // 0: none, "infinitely late" for GT/LT.
    bool allowed = true;
    switch (cond) {
      case ExpireIf::kAlways:
        break;
      case ExpireIf::kNx:
        allowed = now == 0;
        break;
      case ExpireIf::kXx:
        allowed = now != 0;
        break;
      case ExpireIf::kGt:
        allowed = now != 0 && at_ms > now;
        break;
      case ExpireIf::kLt:
        allowed = now == 0 || at_ms < now;
        break;
    }
    if (!allowed) return Status::OK();
    *applied = true;
    if (at_ms <= WallNowMs()) {
      orphan.From(current);
      update->erase = true;
      return Status::OK();
    }
    update->write = true;
    update->data = current->data;
    update->content_type = current->content_type;
    update->expires_at_ms = at_ms;
    return Status::OK();
  });
  if (s.ok()) orphan.Delete(index_.ref().segment);
  return s;
}

Status Keyspace::Persist(std::string_view key, bool* removed) {
  SHM_RETURN_IF_ERROR(ValidateKeyspaceKey(key));
  *removed = false;
  Orphan dead;
  Status s = UpdateKey(index_, key, &dead, [&](const DictEntryView* current, DictUpdate* update) {
    update->write = false;
    if (current == nullptr || current->expires_at_ms == 0) return Status::OK();
    *removed = true;
    update->write = true;
    update->data = current->data;
    update->content_type = current->content_type;
    update->expires_at_ms = 0;
    return Status::OK();
  });
  if (s.ok()) dead.Delete(index_.ref().segment);
  return s;
}

Status Keyspace::ExpiryOf(std::string_view key, int64_t* at_ms) const {
  SHM_RETURN_IF_ERROR(ValidateKeyspaceKey(key));
  DictValue entry;
  SHM_RETURN_IF_ERROR(GetEntry(index_, key, &entry));
  *at_ms = entry.expires_at_ms;
  return Status::OK();
}

Status Keyspace::Rename(std::string_view from, std::string_view to, bool only_if_absent,
                        bool* renamed) {
  SHM_RETURN_IF_ERROR(ValidateKeyspaceKey(from));
  SHM_RETURN_IF_ERROR(ValidateKeyspaceKey(to));
  *renamed = false;
  const std::string from_key = std::string(from), to_key = std::string(to);
  Segment* seg = index_.ref().segment;
  DictValue moving;
  bool found = false;
  // A list or hash emptied or deleted by another front end is no key (UpdateKey drops it).
  Orphan stale_source;
  SHM_RETURN_IF_ERROR(UpdateKey(index_, from_key, &stale_source,
                                [&](const DictEntryView* current, DictUpdate* update) {
                                  update->write = false;
                                  if (current != nullptr) moving = current->ToValue();
                                  found = current != nullptr;
                                  return Status::OK();
                                }));
  stale_source.Delete(seg);
  if (!found) return Status::NotFound("no such key");
  if (from == to) {
    *renamed = !only_if_absent;
    return Status::OK();
  }
  // The destination first, then the source only if it did not change meanwhile: on its own, a
  // crash (or a concurrent writer of the source) in between leaves both keys, never neither. In
  // a transaction scope (RENAME runs in one: docs/resp.md) both updates are one commit.
  Orphan orphan, stale_target;
  SHM_RETURN_IF_ERROR(UpdateKey(index_, to_key, &stale_target,
                                [&](const DictEntryView* current, DictUpdate* update) {
                                  update->write = false;
                                  if (only_if_absent && current != nullptr) return Status::OK();
                                  if (current == nullptr || current->data != moving.data ||
                                      current->content_type != moving.content_type) {
                                    orphan.From(current);
                                  }
                                  update->write = true;
                                  update->data = moving.data;
                                  update->content_type = moving.content_type;
                                  update->expires_at_ms = moving.expires_at_ms;
                                  *renamed = true;
                                  return Status::OK();
                                }));
  stale_target.Delete(seg);
  if (!*renamed) return Status::OK();
  orphan.Delete(seg);
  Status s = UpdateEntry(index_, from_key, [&](const DictEntryView* current, DictUpdate* update) {
    update->write = false;
    if (current != nullptr && current->version == moving.version) update->erase = true;
    return Status::OK();
  });
  if (TypeOfEntry(moving) == KeyType::kList) ReportReady(*this, to_key);
  return s;
}

Status Keyspace::Version(std::string_view key, uint64_t* version) const {
  SHM_RETURN_IF_ERROR(ValidateKeyspaceKey(key));
  DictValue entry;
  Status s = GetEntry(index_, key, &entry);
  *version = 0;
  if (s.IsNotFound()) return Status::OK();
  SHM_RETURN_IF_ERROR(s);
  *version = KeyVersionOfEntry(index_.ref().segment, entry);
  return Status::OK();
}

Status ValidateKeyspaceKey(std::string_view key) {
  if (key.size() > Keyspace::kMaxKey) {
    return Status::InvalidArgument("key longer than " + std::to_string(Keyspace::kMaxKey) +
                                   " bytes");
  }
  return Status::OK();
}
KeyType KeyTypeOfEntry(const DictValue& entry) { return TypeOfEntry(entry); }
KeyType KeyTypeOfEntry(const DictEntryView& entry) { return TypeOfEntry(entry); }
bool KeyEntryLive(Segment* segment, const DictValue& entry) {
  return EntryLive(segment, DictEntryView::Of(entry));
}
void DeleteKeyAggregate(Segment* segment, const std::string& name, KeyType type) {
  DeleteAggregate(segment, name, type);
}
const Dict& KeyspaceIndex(const Keyspace& keyspace) { return keyspace.index_; }
void ReportListReady(const Keyspace& keyspace, std::string_view key) { ReportReady(keyspace, key); }

Status KeyListOf(Segment* segment, const std::string& name, List* list) {
  return FindAggregate(segment, name, list);
}
Status KeyHashOf(Segment* segment, const std::string& name, Dict* hash) {
  return FindAggregate(segment, name, hash);
}

namespace {
template <typename Proxy>
Status NewKeyAggregate(const Keyspace& keyspace, Proxy* proxy, DictValue* entry) {
  std::string name;
  SHM_RETURN_IF_ERROR(CreateAggregate(keyspace.ref().segment, keyspace.db(), &name, proxy));
  *entry = DictValue();
  entry->data = std::move(name);
  entry->content_type = TagOf(TypeOfProxy(proxy));
  return Status::OK();
}
}  // namespace

Status NewKeyList(const Keyspace& keyspace, List* list, DictValue* entry) {
  return NewKeyAggregate(keyspace, list, entry);
}
Status NewKeyHash(const Keyspace& keyspace, Dict* hash, DictValue* entry) {
  return NewKeyAggregate(keyspace, hash, entry);
}

Status NewKeyListOf(const Keyspace& keyspace, const std::vector<std::string>& items,
                    DictValue* entry) {
  List fresh;
  SHM_RETURN_IF_ERROR(NewKeyAggregate(keyspace, &fresh, entry));
  bool swapped = false;
  Status s = fresh.Replace(nullptr, items, &swapped);  // One ring, built before its lock.
  if (!s.ok()) DeleteAggregate(keyspace.ref().segment, entry->data, KeyType::kList);
  return s;
}

uint64_t KeyVersionOfEntry(Segment* seg, const DictValue& entry) {
  const KeyType type = TypeOfEntry(entry);
  if (type != KeyType::kList && type != KeyType::kHash) return entry.version;
  // A list's or hash's writes leave its entry alone: mix in its object's write count.
  uint64_t writes = 0;
  if (type == KeyType::kList) {
    List list;
    if (FindAggregate(seg, entry.data, &list).ok()) writes = list.ref().entry->keyspace_writes;
  } else {
    Dict hash;
    if (FindAggregate(seg, entry.data, &hash).ok()) writes = hash.ref().entry->keyspace_writes;
  }
  uint64_t mixed = entry.version + 0x9e3779b97f4a7c15ull * (writes + 1);  // splitmix64
  mixed = (mixed ^ (mixed >> 30)) * 0xbf58476d1ce4e5b9ull;
  mixed = (mixed ^ (mixed >> 27)) * 0x94d049bb133111ebull;
  return (mixed ^ (mixed >> 31)) | 1;  // Never 0 (absent).
}

template <typename Proxy>
Status Keyspace::WithAggregate(std::string_view key, Access access,
                               FunctionRef<Status(Proxy&)> fn) {
  SHM_RETURN_IF_ERROR(ValidateKeyspaceKey(key));
  if (KeyspaceTransactionScope* scope = ActiveKeyspaceScope(); scope != nullptr) {
    if constexpr (std::is_same_v<Proxy, List>) {
      return ScopedWithList(scope, *this, key, access, fn);
    } else {
      return ScopedWithHash(scope, *this, key, access, fn);
    }
  }
  Segment* seg = index_.ref().segment;
  const KeyType type = TypeOfProxy(static_cast<Proxy*>(nullptr));
  Orphan orphan;                  // One removed for being empty.
  std::optional<Orphan> expired;  // One an expired entry named, which the update replaced.
  Status outcome;                 // fn's, or NotFound; the update itself commits whatever fn left.
  ListFillScope fill;             // Whether fn pushed: the key is reported once committed.
  auto update_entry = [&](const DictEntryView* current, DictUpdate* update) {
    update->write = false;
    Proxy proxy;
    // The aggregate's name: in `current` (a view of the entry in the segment, which the shard's
    // lock keeps in place until the update returns), or `created`'s: a command on an existing
    // key copies no name.
    std::string_view name;
    std::string created;
    if (current != nullptr) {
      if (TypeOfEntry(*current) != type) return WrongType();
      name = current->data;
      // The shard's lock keeps every keyspace command from deleting the aggregate while the
      // entry names it, but not another front end (HTTP, Python: the list or dict by its
      // registry name), nor a crash between a delete and its entry's: so the cached handle's
      // liveness is still checked here, and again under the object's own lock by fn's operation.
      Status found = FindAggregate(seg, name, &proxy);
      if (!found.ok() && !found.IsNotFound()) return found;
      if (found.IsNotFound()) {
        current = nullptr;  // Its aggregate is gone: the key is absent; drop the stale entry.
        update->erase = true;
      }
    }
    if (current == nullptr) {
      if (access != Access::kCreate) {
        outcome = Status::NotFound("no such key");
        return Status::OK();
      }
      // The new entry (or, should fn leave the new aggregate empty, the erase) replaces an
      // expired one the key still holds: its list or hash goes too.
      if (!update->expired_content_type.empty()) expired.emplace().FromExpired(*update);
      // Under the key's lock (keyspace stripe -> registry is the lock order): a crash before
      // the entry is published leaks an empty list or hash, never shows one.
      SHM_RETURN_IF_ERROR(CreateAggregate(seg, db_, &created, &proxy));
      name = created;
      CrashPoint("keyspace_after_create");
    }
    if (access != Access::kRead) proxy.ref().entry->keyspace_writes.fetch_add(1);
    outcome = fn(proxy);
    if (access == Access::kRead) return Status::OK();
    // A kCreate fn adds (a push, a field set): only its failure can leave the aggregate empty.
    bool empty = false;
    if (access == Access::kWrite || !outcome.ok()) {
      Status checked = IsEmpty(proxy, &empty);
      if (!checked.ok()) empty = false;
    }
    if (empty) {
      // Removed with its last element: the entry first (this commit), the aggregate after it,
      // so a crash leaves at worst an empty list or hash that no key names (a leak).
      orphan.name = name;
      orphan.type = type;
      update->erase = true;
      return Status::OK();
    }
    // The new key's first entry; an existing key's entry stays (its version is the entry's
    // and its object's keyspace_writes together: Version).
    update->erase = false;
    if (current != nullptr) return Status::OK();
    update->write = true;
    update->data = name;
    update->content_type = TagOf(type);
    update->keep_expiry = true;
    return Status::OK();
  };
  // Straight to the index's update (no transaction is active, checked above; the key was
  // validated above; the index is never bound to a transaction), as Dict::UpdateView would.
  Status s = CatchAtBoundary("dict", [&] { return index_.UpdateImpl(key, update_entry, nullptr); });
  orphan.Delete(seg);
  if (expired && s.ok()) expired->Delete(seg);  // Else the expired entry stands, naming it.
  SHM_RETURN_IF_ERROR(s);
  if (fill.filled) ReportReady(*this, key);
  return outcome;
}

void Keyspace::PrefetchFields(std::string_view key,
                              std::span<const std::string_view> fields) const {
  // Not inside a transaction: its staged entries are not the index's.
  if (fields.empty() || ActiveKeyspaceScope() != nullptr || !ValidateKeyspaceKey(key).ok()) return;
  try {
    DictValue entry;
    if (!index_.Get(key, &entry).ok() || TypeOfEntry(entry) != KeyType::kHash) return;
    Dict hash;
    if (FindAggregate(index_.ref().segment, entry.data, &hash).ok()) hash.Prefetch(fields);
  } catch (...) {
    // A hint: a failure (out of memory copying the entry) costs only the prefetch.
  }
}

Status Keyspace::WithList(std::string_view key, Access access, FunctionRef<Status(List&)> fn) {
  return WithAggregate<List>(key, access, fn);
}
Status Keyspace::WithHash(std::string_view key, Access access, FunctionRef<Status(Dict&)> fn) {
  return WithAggregate<Dict>(key, access, fn);
}

Status Keyspace::RewriteList(std::string_view key,
                             const std::function<Status(std::vector<std::string>* items)>& fn) {
  SHM_RETURN_IF_ERROR(ValidateKeyspaceKey(key));
  if (KeyspaceTransactionScope* scope = ActiveKeyspaceScope(); scope != nullptr) {
    return ScopedRewriteList(scope, *this, key, fn);
  }
  Segment* seg = index_.ref().segment;
  Orphan replaced;  // The old list once the new one is published, or the new one on failure.
  Status outcome;
  ListFillScope fill;  // The new list is filled before it is published: reported after.
  Status s =
      UpdateKey(index_, key, &replaced, [&](const DictEntryView* current, DictUpdate* update) {
        update->write = false;
        if (current == nullptr) {
          outcome = Status::NotFound("no such key");
          return Status::OK();
        }
        if (TypeOfEntry(*current) != KeyType::kList) return WrongType();
        List old;
        SHM_RETURN_IF_ERROR(FindAggregate(seg, current->data, &old));
        std::vector<std::string> items;
        SHM_RETURN_IF_ERROR(old.All(&items));
        outcome = fn(&items);
        if (!outcome.ok()) return Status::OK();
        if (items.empty()) {
          replaced.From(current);
          update->erase = true;
          return Status::OK();
        }
        DictValue fresh;
        SHM_RETURN_IF_ERROR(NewKeyListOf(*this, items, &fresh));
        replaced.From(current);
        update->write = true;
        update->data = std::move(fresh.data);
        update->content_type = std::move(fresh.content_type);
        update->keep_expiry = true;
        return Status::OK();
      });
  if (s.ok()) replaced.Delete(seg);
  SHM_RETURN_IF_ERROR(s);
  if (fill.filled && outcome.ok()) ReportReady(*this, key);
  return outcome;
}

Status Keyspace::Usage(std::string_view key, uint64_t* bytes) const {
  SHM_RETURN_IF_ERROR(ValidateKeyspaceKey(key));
  DictValue entry;
  SHM_RETURN_IF_ERROR(GetEntry(index_, key, &entry));
  Segment* seg = index_.ref().segment;
  if (!KeyLive(index_, key, entry)) return Status::NotFound("no such key");
  if (TypeOfEntry(entry) == KeyType::kString) {
    *bytes = entry.data.size();
    return Status::OK();
  }
  ObjectInfo info;
  SHM_RETURN_IF_ERROR(seg->registry().Lookup(entry.data, &info));
  *bytes = info.size_bytes;
  return Status::OK();
}

Status Keyspace::Count(uint64_t* keys, uint64_t* expiring) const {
  if (KeyspaceTransactionScope* scope = ActiveKeyspaceScope(); scope != nullptr) {
    // With `expiring` (INFO keyspace, statistics): the committed counts, read outside the
    // transaction, which neither records nor sees them.
    if (expiring == nullptr) return ScopedCountKeys(scope, index_, keys);
  }
  DictStats stats;
  SHM_RETURN_IF_ERROR(index_.Stats(&stats));
  *keys = stats.entries;
  if (expiring != nullptr) *expiring = stats.expiring;
  return Status::OK();
}

Status Keyspace::ListKeys(std::string_view prefix, size_t limit, uint64_t cursor,
                          std::vector<std::string>* keys, uint64_t* next_cursor) const {
  if (KeyspaceTransactionScope* scope = ActiveKeyspaceScope(); scope != nullptr) {
    if (prefix.size() > Dict::kMaxKey || limit < 1 || limit > Dict::kMaxListLimit) {
      return index_.ListKeys(prefix, limit, cursor, keys, next_cursor);  // Its error.
    }
    return ScopedListKeys(scope, index_, prefix, limit, cursor, keys, next_cursor);
  }
  return index_.ListKeys(prefix, limit, cursor, keys, next_cursor);
}

Status Keyspace::SweepExpired(size_t budget_per_shard, size_t* removed) {
  SHM_KEYSPACE_NOT_IN_TRANSACTION();
  *removed = 0;
  Segment* seg = index_.ref().segment;
  uint32_t shards = 1;
  for (uint32_t shard = 0; shard < shards; ++shard) {
    std::vector<Orphan> orphans;
    size_t count = 0;
    SHM_RETURN_IF_ERROR(index_.SweepExpired(
        shard, budget_per_shard,
        [&](std::string_view, const DictValue& entry) {
          Orphan orphan;
          orphan.From(&entry);
          if (!orphan.name.empty()) orphans.push_back(std::move(orphan));
        },
        &count, &shards));
    for (Orphan& orphan : orphans) orphan.Delete(seg);
    *removed += count;
  }
  return Status::OK();
}

Status Keyspace::Flush() {
  if (KeyspaceTransactionScope* scope = ActiveKeyspaceScope(); scope != nullptr) {
    return ScopedFlush(scope, *this);
  }
  uint64_t cursor = 0;
  do {
    std::vector<std::string> keys;
    SHM_RETURN_IF_ERROR(ListKeys("", Dict::kMaxListLimit, cursor, &keys, &cursor));
    for (const std::string& key : keys) {
      bool existed = false;
      SHM_RETURN_IF_ERROR(Delete(key, &existed));
    }
  } while (cursor != 0);
  return Status::OK();
}

}  // namespace shm
