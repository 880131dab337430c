// The Redis commands' view of the library keyspace (shm/keyspace.h, docs/resp.md): this thread's
// handle of each database's Keyspace.
#include <array>
#include <string>

#include "internal.h"
#include "shm/handle.h"

namespace shm::resp {
namespace {

// Per thread, so a command takes no process-local lock to find its database (shm/handle.h): a
// handle whose keyspace object was deleted (by another front end), or that was opened in
// another segment, is opened again.
thread_local std::array<Handle<Keyspace>, Keyspace::kDatabases> t_keyspaces;

// KeyspaceOf's opening, out of line: kept apart, the per-command path saves no registers for it.
[[gnu::noinline]] Keyspace* OpenKeyspace(Handle<Keyspace>& handle, Segment* segment, int db,
                                         bool create) {
  auto open = [&](Segment* seg, Keyspace* keyspace) {
    return Keyspace::Open(seg, db, keyspace,
                          create ? OpenMode::kCreateIfMissing : OpenMode::kOpenExisting);
  };
  Keyspace* keyspace = nullptr;
  if (!handle.Get(segment, open, &keyspace).ok()) return nullptr;
  return keyspace;
}

}  // namespace

Keyspace* KeyspaceOf(Segment* segment, int db, bool create) {
  if (db < 0 || db >= Keyspace::kDatabases) return nullptr;
  Handle<Keyspace>& handle = t_keyspaces[db];
  if (Keyspace* current = handle.Current(segment); current != nullptr) return current;
  return OpenKeyspace(handle, segment, db, create);
}

Keyspace* KS(Call& c) {
  Keyspace* keyspace = KeyspaceOf(c.segment(), c.client->db, true);
  if (keyspace == nullptr) c.w.Error("ERR the keyspace cannot be opened (is the registry full?)");
  return keyspace;
}

uint64_t KeyCount(Segment* segment, int db, uint64_t* expiring) {
  Keyspace* keyspace = KeyspaceOf(segment, db, false);
  uint64_t keys = 0, with_expiry = 0;
  // Without `expiring`, a count inside a transaction sees the batch's own keys (Keyspace::Count).
  Status s = keyspace == nullptr
                 ? Status::NotFound("no keyspace")
                 : keyspace->Count(&keys, expiring != nullptr ? &with_expiry : nullptr);
  if (!s.ok()) keys = with_expiry = 0;
  if (expiring != nullptr) *expiring = with_expiry;
  return keys;
}

uint64_t KeyVersion(Segment* segment, int db, std::string_view key) {
  Keyspace* keyspace = KeyspaceOf(segment, db, false);
  uint64_t version = 0;
  if (keyspace == nullptr || !keyspace->Version(key, &version).ok()) return 0;
  return version;
}

bool KeyBytes(Segment* segment, int db, std::string_view key, uint64_t* bytes) {
  Keyspace* keyspace = KeyspaceOf(segment, db, false);
  uint64_t value_bytes = 0;
  if (keyspace == nullptr || !keyspace->Usage(key, &value_bytes).ok()) return false;
  *bytes = key.size() + value_bytes;
  return true;
}

}  // namespace shm::resp
