// The Redis commands' view of the library keyspace (shm/keyspace.h, docs/resp.md): this thread's
// handle of each database's Keyspace.
#include <array>
#include <string>

#include "internal.h"

namespace shm::resp {
namespace {

// Per thread, so a command takes no process-local lock to find its database. A handle goes stale
// when its keyspace object is deleted (by another front end): it is then reopened. The handles
// are dropped when the thread first sees another segment (Segment* or shm name, which carries
// the generation).
struct ThreadKeyspaces {
  Segment* segment = nullptr;
  std::string shm_name;
  std::array<Keyspace, Keyspace::kDatabases> dbs;
  std::array<bool, Keyspace::kDatabases> open{};
};
thread_local ThreadKeyspaces t_keyspaces;

}  // namespace

Keyspace* KeyspaceOf(Segment* segment, int db, bool create) {
  if (db < 0 || db >= Keyspace::kDatabases) return nullptr;
  ThreadKeyspaces& t = t_keyspaces;
  if (t.segment != segment || t.shm_name != segment->shm_name()) {
    t.open.fill(false);
    t.segment = segment;
    t.shm_name = segment->shm_name();
  }
  if (t.open[db] && t.dbs[db].ref().live()) return &t.dbs[db];
  t.open[db] = Keyspace::Open(segment, db, &t.dbs[db],
                              create ? OpenMode::kCreateIfMissing : OpenMode::kOpenExisting)
                   .ok();
  return t.open[db] ? &t.dbs[db] : nullptr;
}

Keyspace* KS(Call& c) {
  Keyspace* keyspace = KeyspaceOf(c.segment(), c.client->db, true);
  if (keyspace == nullptr) c.w.Error("ERR the keyspace cannot be opened (is the registry full?)");
  return keyspace;
}

uint64_t KeyCount(Segment* segment, int db, uint64_t* expiring) {
  Keyspace* keyspace = KeyspaceOf(segment, db, false);
  uint64_t keys = 0, with_expiry = 0;
  if (keyspace == nullptr || !keyspace->Count(&keys, &with_expiry).ok()) keys = with_expiry = 0;
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
