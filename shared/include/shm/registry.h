// Registry: the table of named, typed objects in a segment.
//
// Every object (counter, dict, list, lease lock, sessions, array, process lock) has a unique name
// in one namespace shared by all kinds: opening a dict at a counter's name is WrongType, never a
// wrong cast. Names are 1-200 bytes of [A-Za-z0-9._:-] and do not start with '.'.
//
// Process-safety: all methods are safe from any thread of any attached process; they take the
// registry lock (a robust mutex) briefly. Listing takes it per chunk so writers are not stalled.
#ifndef SHM_REGISTRY_H_
#define SHM_REGISTRY_H_

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "shm/segment.h"
#include "shm/status.h"

namespace shm {

struct EntryRep;

enum class ObjectKind : uint32_t {
  kNone = 0,  // "any kind" in listings.
  kCounter = 1,
  kDict = 2,
  kList = 3,
  kLock = 4,
  kSessions = 5,
  kArray = 6,
  kKeyspace = 7,     // The Redis keyspace of one database (keyspace.h).
  kProcessLock = 8,  // A lock held by a process, one word (process_lock.h).
};
inline constexpr uint32_t kObjectKindCount = 9;

// "counter", "dict", ...; "none" for kNone.
std::string_view KindName(ObjectKind kind);
// Inverse of KindName; InvalidArgument for an unknown name.
Status ParseKind(std::string_view name, ObjectKind* kind);

// OK, or InvalidArgument naming what is wrong with `name`.
Status ValidateName(std::string_view name);

enum class OpenMode { kOpenExisting, kCreateIfMissing };

struct ObjectInfo {
  std::string name;
  ObjectKind kind = ObjectKind::kNone;
  int64_t created_ms = 0;     // Wall clock.
  int64_t expires_at_ms = 0;  // Wall clock; 0 = never.
  // Filled by List from the object's atomics, without its lock, so listing never waits for or
  // slows a writer; a moment's view, not a snapshot. size_bytes: a counter's 8 bytes, the bytes a
  // dict charges against max_bytes, the bytes of a list's items, an array's data (0 for locks).
  // length: a dict's entries, a list's items, an array's elements; -1 for counters and locks.
  uint64_t size_bytes = 0;
  int64_t length = -1;
  int64_t counter_value = 0;  // Counters only.
};

// A process-local reference to one incarnation of an object. Cheap to copy. Becomes stale (every
// call through it answers NotFound) once the object is deleted, even if the name is reused.
struct ObjectRef {
  Segment* segment = nullptr;
  EntryRep* entry = nullptr;
  uint64_t incarnation = 0;
  bool valid() const { return entry != nullptr; }
  // True while the object is still the incarnation this reference opened, live, and not past its
  // expiry. Lock-free (entries are never freed), so it is a moment's answer: a caller that got
  // NotFound through a proxy asks it to tell "stale handle, re-open" from "really absent".
  bool live() const;
};

class Registry {
 public:
  explicit Registry(Segment* segment);

  // Lists live objects whose name starts with `prefix` and whose kind is `kind` (kNone: any), in
  // name order, at most `limit`, starting after the name `after` (for paging).
  Status List(std::string_view prefix, ObjectKind kind, size_t limit, std::string_view after,
              std::vector<ObjectInfo>* result);
  // Deletes the named object and frees its memory, in one hold of the registry lock. NotFound if
  // absent; with a `kind` other than kNone, WrongType (and nothing deleted) if the object is of
  // another kind.
  Status Delete(std::string_view name, ObjectKind kind = ObjectKind::kNone);
  // The kind of the named object; NotFound if absent or expired.
  Status Lookup(std::string_view name, ObjectInfo* info);

  uint32_t capacity() const;
  uint32_t live() const;
  // Objects by kind, indexed by ObjectKind.
  std::vector<uint32_t> CountByKind() const;

  // For the object kinds (proxies). Finds `name`; creates it when missing and mode allows,
  // calling make_body (under the registry lock) to allocate the kind's Rep. ttl_ms > 0 gives the
  // object an expiry; counter_init is the initial value of a counter.
  struct OpenSpec {
    ObjectKind kind = ObjectKind::kNone;
    OpenMode mode = OpenMode::kOpenExisting;
    int64_t ttl_ms = 0;
    int64_t counter_init = 0;
    std::function<Status(uint64_t* body)> make_body;  // May be empty (counters).
    bool* created = nullptr;                          // Out: true if this call created it.
  };
  Status Open(std::string_view name, const OpenSpec& spec, ObjectRef* ref);

 private:
  Segment* const segment_;
};

}  // namespace shm

#endif  // SHM_REGISTRY_H_
