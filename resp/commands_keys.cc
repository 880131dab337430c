// The generic key commands (Redis's "generic" group), on the library keyspace: every type
// expires, persists, renames and is deleted alike (shm/keyspace.h).
#include <algorithm>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "internal.h"
#include "shm/limits.h"
#include "shm/resp_dump.h"

namespace shm::resp {
namespace {

constexpr size_t kMaxScanCount = Dict::kMaxListLimit;

void Del(Call& c) {
  Keyspace* ks = KS(c);
  if (ks == nullptr) return;
  int64_t deleted = 0;
  for (size_t i = 1; i < c.args.size(); ++i) {
    bool existed = false;
    Status s = ks->Delete(c.args[i], &existed);
    if (!s.ok()) return ReplyStatus(c.w, s);
    deleted += existed;
  }
  c.w.Integer(deleted);
}

// DEL and UNLINK: one key as it is; several in one isolated batch (all or none deleted).
void DelKeys(Call& c) { c.args.size() <= 2 ? Del(c) : Isolated<Del>(c); }

// EXISTS and TOUCH: how many of the keys exist (a key named twice counts twice).
void Exists(Call& c) {
  Keyspace* ks = KS(c);
  if (ks == nullptr) return;
  int64_t found = 0;
  for (size_t i = 1; i < c.args.size(); ++i) {
    KeyType type = KeyType::kNone;
    Status s = ks->Type(c.args[i], &type);
    if (!s.ok()) return ReplyStatus(c.w, s);
    found += type != KeyType::kNone;
  }
  c.w.Integer(found);
}

void Type(Call& c) {
  Keyspace* ks = KS(c);
  if (ks == nullptr) return;
  KeyType type = KeyType::kNone;
  Status s = ks->Type(c.args[1], &type);
  s.ok() ? c.w.Simple(KeyTypeName(type)) : ReplyStatus(c.w, s);
}

std::string InvalidExpire(const Call& c) {
  return "ERR invalid expire time in '" + Lower(c.args[0]) + "' command";
}

// EXPIRE, PEXPIRE, EXPIREAT, PEXPIREAT (Redis's expireGenericCommand): options, then the time,
// then the key. A time not in the future deletes the key.
void ExpireGeneric(Call& c, bool seconds, bool absolute) {
  bool nx = false, xx = false, gt = false, lt = false;
  for (size_t i = 3; i < c.args.size(); ++i) {
    std::string option = Lower(c.args[i]);
    if (option == "nx") {
      nx = true;
    } else if (option == "xx") {
      xx = true;
    } else if (option == "gt") {
      gt = true;
    } else if (option == "lt") {
      lt = true;
    } else {
      return c.w.Error("ERR Unsupported option " + std::string(c.args[i]));
    }
  }
  if (nx && (xx || gt || lt)) {
    return c.w.Error("ERR NX and XX, GT or LT options at the same time are not compatible");
  }
  if (gt && lt) return c.w.Error("ERR GT and LT options at the same time are not compatible");
  int64_t when = 0;
  if (!ParseInt(c.args[2], &when)) return c.w.Error(kNotInteger);
  if (seconds) {
    constexpr int64_t kMax = std::numeric_limits<int64_t>::max() / 1000;
    constexpr int64_t kMin = std::numeric_limits<int64_t>::min() / 1000;
    if (when > kMax || when < kMin) return c.w.Error(InvalidExpire(c));
    when *= 1000;
  }
  if (!absolute && !AddInt64(when, NowMs(), &when)) return c.w.Error(InvalidExpire(c));
  Keyspace* ks = KS(c);
  if (ks == nullptr) return;
  ExpireIf cond = nx   ? ExpireIf::kNx
                  : xx ? ExpireIf::kXx
                  : gt ? ExpireIf::kGt
                  : lt ? ExpireIf::kLt
                       : ExpireIf::kAlways;
  bool applied = false;
  Status s = ks->Expire(c.args[1], when, cond, &applied);
  s.ok() ? c.w.Integer(applied ? 1 : 0) : ReplyStatus(c.w, s);
}
void Expire(Call& c) { ExpireGeneric(c, true, false); }
void PExpire(Call& c) { ExpireGeneric(c, false, false); }
void ExpireAt(Call& c) { ExpireGeneric(c, true, true); }
void PExpireAt(Call& c) { ExpireGeneric(c, false, true); }

// TTL, PTTL, EXPIRETIME, PEXPIRETIME (Redis's ttlGenericCommand).
void TtlGeneric(Call& c, bool millis, bool absolute) {
  Keyspace* ks = KS(c);
  if (ks == nullptr) return;
  int64_t at = 0;
  Status s = ks->ExpiryOf(c.args[1], &at);
  if (s.IsNotFound()) return c.w.Integer(-2);
  if (!s.ok()) return ReplyStatus(c.w, s);
  if (at == 0) return c.w.Integer(-1);
  int64_t left = std::max<int64_t>(absolute ? at : at - NowMs(), 0);
  c.w.Integer(millis ? left : (left + 500) / 1000);
}
void Ttl(Call& c) { TtlGeneric(c, false, false); }
void PTtl(Call& c) { TtlGeneric(c, true, false); }
void ExpireTime(Call& c) { TtlGeneric(c, false, true); }
void PExpireTime(Call& c) { TtlGeneric(c, true, true); }

void Persist(Call& c) {
  Keyspace* ks = KS(c);
  if (ks == nullptr) return;
  bool removed = false;
  Status s = ks->Persist(c.args[1], &removed);
  s.ok() ? c.w.Integer(removed ? 1 : 0) : ReplyStatus(c.w, s);
}

void Keys(Call& c) {
  Keyspace* ks = KS(c);
  if (ks == nullptr) return;
  std::vector<std::string> found;
  std::string_view pattern = c.args[1];
  uint64_t cursor = 0;
  do {
    std::vector<std::string> keys;
    Status s = ks->ListKeys("", Dict::kMaxListLimit, cursor, &keys, &cursor);
    if (!s.ok()) return ReplyStatus(c.w, s);
    for (std::string& key : keys) {
      if (GlobMatch(pattern, key)) found.push_back(std::move(key));
    }
  } while (cursor != 0);
  c.w.Array(found.size());
  for (const std::string& key : found) c.w.Bulk(key);
}

// SCAN walks the keyspace in hash order: a key present for the whole scan comes exactly once.
void Scan(Call& c) {
  ScanArgs args;
  if (!ParseScanArgs(c, 1, /*with_type=*/true, &args)) return;
  Keyspace* ks = KS(c);
  if (ks == nullptr) return;
  size_t limit = static_cast<size_t>(std::min<int64_t>(args.count, kMaxScanCount));
  std::vector<std::string> keys, found;
  uint64_t next = 0;
  Status s = ks->ListKeys("", limit, args.cursor, &keys, &next);
  if (!s.ok()) return ReplyStatus(c.w, s);
  for (std::string& key : keys) {
    if (!GlobMatch(args.pattern, key)) continue;
    if (!args.type.empty()) {
      KeyType key_type = KeyType::kNone;
      if (!ks->Type(key, &key_type).ok() || KeyTypeName(key_type) != args.type) continue;
    }
    found.push_back(std::move(key));
  }
  c.w.Array(2);
  c.w.Bulk(std::to_string(next));
  c.w.Array(found.size());
  for (const std::string& key : found) c.w.Bulk(key);
}

void DbSize(Call& c) { c.w.Integer(static_cast<int64_t>(KeyCount(c.segment(), c.client->db))); }

bool FlushArgsOk(Call& c) {
  if (c.args.size() > 2 || (c.args.size() == 2 && !EqualsIgnoreCase(c.args[1], "sync") &&
                            !EqualsIgnoreCase(c.args[1], "async"))) {
    c.w.Error(kSyntax);
    return false;
  }
  return true;
}

void FlushDb(Call& c) {
  if (!FlushArgsOk(c)) return;
  Keyspace* ks = KeyspaceOf(c.segment(), c.client->db, false);
  Status s = ks != nullptr ? ks->Flush() : Status::OK();
  s.ok() ? c.w.Simple("OK") : ReplyStatus(c.w, s);
}

void FlushAll(Call& c) {
  if (!FlushArgsOk(c)) return;
  for (int db = 0; db < Keyspace::kDatabases; ++db) {
    Keyspace* ks = KeyspaceOf(c.segment(), db, false);
    if (ks == nullptr) continue;
    Status s = ks->Flush();
    if (!s.ok()) return ReplyStatus(c.w, s);
  }
  c.w.Simple("OK");
}

void RenameGeneric(Call& c, bool nx) {
  Keyspace* ks = KS(c);
  if (ks == nullptr) return;
  bool renamed = false;
  Status s = ks->Rename(c.args[1], c.args[2], nx, &renamed);
  if (s.IsNotFound()) return c.w.Error("ERR no such key");
  if (!s.ok()) return ReplyStatus(c.w, s);
  nx ? c.w.Integer(renamed ? 1 : 0) : c.w.Simple("OK");
}
void Rename(Call& c) { RenameGeneric(c, false); }
void RenameNx(Call& c) { RenameGeneric(c, true); }

void RandomKey(Call& c) {
  Keyspace* ks = KS(c);
  if (ks == nullptr) return;
  thread_local std::mt19937_64 rng(std::random_device{}());
  // The first key at or after a random point of hash space, wrapping around once.
  for (uint64_t from : {rng(), uint64_t{0}}) {
    std::vector<std::string> keys;
    uint64_t next = 0;
    Status s = ks->ListKeys("", 1, from, &keys, &next);
    if (!s.ok()) return ReplyStatus(c.w, s);
    if (!keys.empty()) return c.w.Bulk(keys[0]);
  }
  c.w.Null();
}

// One key's value, whole (COPY, MOVE, DUMP): a string, or a list's items or a hash's fields read
// a page at a time; *at_ms gets its expiry (0: none).
Status ReadKeyValue(Keyspace& ks, std::string_view key, KeyType type, KeyValue* value,
                    int64_t* at_ms) {
  *value = KeyValue{};
  value->type = type;
  SHM_RETURN_IF_ERROR(ks.ExpiryOf(key, at_ms));
  if (type == KeyType::kString) return ks.Get(key, &value->string);
  if (type == KeyType::kList) {
    return ks.WithList(key, Keyspace::Access::kRead,
                       [&](List& list) { return list.All(&value->items); });
  }
  // In insertion order, which the copy (written field by field) keeps.
  return ks.WithHash(key, Keyspace::Access::kRead, [&](Dict& hash) {
    std::vector<DictItem> entries;
    SHM_RETURN_IF_ERROR(hash.Entries(true, &entries));
    for (DictItem& entry : entries) {
      value->fields.emplace_back(std::move(entry.key), std::move(entry.value));
    }
    return Status::OK();
  });
}

// Creates `key` holding `value`, expiring at `at_ms` (0: never), when the key is absent:
// AlreadyExists when it holds anything, of any type, so a racing writer is never overwritten
// (COPY, MOVE, RESTORE). A list is published whole (one Replace); a hash's fields are checked
// against the limits before the first is written.
Status CreateKey(Keyspace& ks, std::string_view key, const KeyValue& value, int64_t at_ms) {
  const Status exists = Status::AlreadyExists("the key exists");
  Status s;
  if (value.type == KeyType::kString) {
    StringSet options;
    options.cond = StringSet::Cond::kIfAbsent;
    options.expires_at_ms = at_ms;
    StringSetResult result;
    SHM_RETURN_IF_ERROR(ks.Set(key, value.string, options, &result));
    return result.written ? Status::OK() : exists;
  }
  if (value.type == KeyType::kList) {
    s = ks.WithList(key, Keyspace::Access::kCreate, [&](List& list) {
      const std::vector<std::string> empty;
      bool swapped = false;
      SHM_RETURN_IF_ERROR(list.Replace(&empty, value.items, &swapped));
      return swapped ? Status::OK() : exists;
    });
  } else {
    for (const auto& [field, data] : value.fields) {
      if (field.size() > limits::kMaxKey) {
        return Status::InvalidArgument("hash field longer than " + std::to_string(limits::kMaxKey) +
                                       " bytes");
      }
    }
    s = ks.WithHash(key, Keyspace::Access::kCreate, [&](Dict& hash) {
      DictStats stats;
      SHM_RETURN_IF_ERROR(hash.Stats(&stats));
      if (stats.entries != 0) return exists;
      for (const auto& [field, data] : value.fields) SHM_RETURN_IF_ERROR(hash.Set(field, data, {}));
      return Status::OK();
    });
  }
  if (s.IsWrongType()) return exists;
  SHM_RETURN_IF_ERROR(s);
  if (at_ms == 0) return Status::OK();
  bool applied = false;
  return ks.Expire(key, at_ms, ExpireIf::kAlways, &applied);
}

// Copies one key's value into a new key of `to`'s keyspace (COPY, MOVE), with its expiry.
Status CopyKey(Keyspace& from, Keyspace& to, std::string_view src, std::string_view dst,
               KeyType type) {
  KeyValue value;
  int64_t at = 0;
  SHM_RETURN_IF_ERROR(ReadKeyValue(from, src, type, &value, &at));
  return CreateKey(to, dst, value, at);
}

void Copy(Call& c) {
  int db = c.client->db;
  bool replace = false;
  for (size_t j = 3; j < c.args.size(); ++j) {
    if (EqualsIgnoreCase(c.args[j], "replace")) {
      replace = true;
    } else if (EqualsIgnoreCase(c.args[j], "db") && j + 1 < c.args.size()) {
      int64_t index = 0;
      if (!ParseInt(c.args[++j], &index)) return c.w.Error(kNotInteger);
      if (index < 0 || index >= Keyspace::kDatabases) {
        return c.w.Error("ERR DB index is out of range");
      }
      db = static_cast<int>(index);
    } else {
      return c.w.Error(kSyntax);
    }
  }
  Keyspace* from = KS(c);
  if (from == nullptr) return;
  Keyspace* to = KeyspaceOf(c.segment(), db, true);
  if (to == nullptr) return c.w.Error("ERR the keyspace cannot be opened");
  if (db == c.client->db && c.args[1] == c.args[2]) {
    return c.w.Error("ERR source and destination objects are the same");
  }
  KeyType type = KeyType::kNone, there = KeyType::kNone;
  Status s = from->Type(c.args[1], &type);
  if (s.ok()) s = to->Type(c.args[2], &there);
  if (!s.ok()) return ReplyStatus(c.w, s);
  if (type == KeyType::kNone) return c.w.Integer(0);
  if (there != KeyType::kNone) {
    if (!replace) return c.w.Integer(0);
    bool existed = false;
    s = to->Delete(c.args[2], &existed);
    if (!s.ok()) return ReplyStatus(c.w, s);
  }
  s = CopyKey(*from, *to, c.args[1], c.args[2], type);
  if (s.IsAlreadyExists()) return c.w.Integer(0);  // Another client wrote it meanwhile.
  s.ok() ? c.w.Integer(1) : ReplyStatus(c.w, s);
}

// MOVE key db: copy into the other database when the key is absent there, then delete.
void Move(Call& c) {
  int64_t index = 0;
  if (!ParseInt(c.args[2], &index) || index < 0 || index >= Keyspace::kDatabases) {
    return c.w.Error("ERR DB index is out of range");
  }
  if (index == c.client->db) return c.w.Error("ERR source and destination objects are the same");
  Keyspace* from = KS(c);
  if (from == nullptr) return;
  Keyspace* to = KeyspaceOf(c.segment(), static_cast<int>(index), true);
  if (to == nullptr) return c.w.Error("ERR the keyspace cannot be opened");
  KeyType type = KeyType::kNone, there = KeyType::kNone;
  Status s = from->Type(c.args[1], &type);
  if (s.ok()) s = to->Type(c.args[1], &there);
  if (!s.ok()) return ReplyStatus(c.w, s);
  if (type == KeyType::kNone || there != KeyType::kNone) return c.w.Integer(0);
  s = CopyKey(*from, *to, c.args[1], c.args[1], type);
  if (s.IsAlreadyExists()) return c.w.Integer(0);
  bool existed = false;
  if (s.ok()) s = from->Delete(c.args[1], &existed);
  s.ok() ? c.w.Integer(1) : ReplyStatus(c.w, s);
}

void Dump(Call& c) {
  Keyspace* ks = KS(c);
  if (ks == nullptr) return;
  KeyType type = KeyType::kNone;
  Status s = ks->Type(c.args[1], &type);
  if (!s.ok()) return ReplyStatus(c.w, s);
  if (type == KeyType::kNone) return c.w.Null();
  KeyValue value;
  int64_t at = 0;
  s = ReadKeyValue(*ks, c.args[1], type, &value, &at);
  if (s.IsNotFound()) return c.w.Null();  // Deleted between the two reads.
  s.ok() ? c.w.Bulk(EncodeDump(value)) : ReplyStatus(c.w, s);
}

// RESTORE key ttl payload [REPLACE] [ABSTTL] [IDLETIME s] [FREQ f], checked in Redis's order:
// options, an existing key, the TTL, the payload. IDLETIME and FREQ are checked and ignored
// (shmstate tracks neither). A TTL already past deletes the key (with REPLACE) and creates none.
void Restore(Call& c) {
  bool replace = false, absttl = false;
  int64_t idle = -1, freq = -1;
  for (size_t j = 4; j < c.args.size(); ++j) {
    const bool has_value = j + 1 < c.args.size();
    if (EqualsIgnoreCase(c.args[j], "replace")) {
      replace = true;
    } else if (EqualsIgnoreCase(c.args[j], "absttl")) {
      absttl = true;
    } else if (EqualsIgnoreCase(c.args[j], "idletime") && has_value && freq == -1) {
      if (!ParseInt(c.args[++j], &idle)) return c.w.Error(kNotInteger);
      if (idle < 0) return c.w.Error("ERR Invalid IDLETIME value, must be >= 0");
    } else if (EqualsIgnoreCase(c.args[j], "freq") && has_value && idle == -1) {
      if (!ParseInt(c.args[++j], &freq)) return c.w.Error(kNotInteger);
      if (freq < 0 || freq > 255) {
        return c.w.Error("ERR Invalid FREQ value, must be >= 0 and <= 255");
      }
    } else {
      return c.w.Error(kSyntax);
    }
  }
  Keyspace* ks = KS(c);
  if (ks == nullptr) return;
  constexpr std::string_view kBusy = "BUSYKEY Target key name already exists.";
  KeyType type = KeyType::kNone;
  Status s = ks->Type(c.args[1], &type);
  if (!s.ok()) return ReplyStatus(c.w, s);
  if (!replace && type != KeyType::kNone) return c.w.Error(kBusy);
  int64_t ttl = 0;
  if (!ParseInt(c.args[2], &ttl)) return c.w.Error(kNotInteger);
  if (ttl < 0) return c.w.Error("ERR Invalid TTL value, must be >= 0");
  KeyValue value;
  switch (DecodeDump(c.args[3], &value)) {
    case DumpError::kFooter:
      return c.w.Error("ERR DUMP payload version or checksum are wrong");
    case DumpError::kFormat:
      return c.w.Error("ERR Bad data format");
    case DumpError::kNone:
      break;
  }
  const int64_t now = NowMs();
  int64_t at = ttl;
  if (ttl != 0 && !absttl && !AddInt64(ttl, now, &at)) at = std::numeric_limits<int64_t>::max();
  if (replace) {
    bool existed = false;
    s = ks->Delete(c.args[1], &existed);
    if (!s.ok()) return ReplyStatus(c.w, s);
  }
  if (at != 0 && at <= now) return c.w.Simple("OK");
  s = CreateKey(*ks, c.args[1], value, at);
  if (s.IsAlreadyExists()) return c.w.Error(kBusy);
  s.ok() ? c.w.Simple("OK") : ReplyStatus(c.w, s);
}

// OBJECT ENCODING|REFCOUNT|FREQ|IDLETIME|HELP: the encodings Redis 7.0 would report for the
// value with its default thresholds; no access times or frequencies are tracked, and those
// subcommands answer so.
void Object(Call& c) {
  std::string sub = Lower(c.args[1]);
  if (sub == "help") {
    c.w.Array(4);
    c.w.Simple("OBJECT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:");
    c.w.Simple("ENCODING <key>");
    c.w.Simple("REFCOUNT <key>");
    c.w.Simple("HELP");
    return;
  }
  if (c.args.size() != 3 ||
      (sub != "encoding" && sub != "refcount" && sub != "freq" && sub != "idletime")) {
    return c.w.Error("ERR unknown subcommand or wrong number of arguments for '" +
                     std::string(c.args[1]) + "'. Try OBJECT HELP.");
  }
  Keyspace* ks = KS(c);
  if (ks == nullptr) return;
  KeyType type = KeyType::kNone;
  Status s = ks->Type(c.args[2], &type);
  if (!s.ok()) return ReplyStatus(c.w, s);
  if (type == KeyType::kNone) return c.w.Null();
  if (sub == "freq") {
    return c.w.Error(
        "ERR An LFU maxmemory policy is not selected, access frequency not tracked. Please note "
        "that when switching between policies at runtime LRU and LFU data will take some time to "
        "adjust.");
  }
  // Every value has one owner, its key's entry (no shared objects, unlike Redis's small ints).
  if (sub == "refcount") return c.w.Integer(1);
  if (sub == "idletime") {
    return c.w.Error("ERR shmstate does not track key access times (OBJECT IDLETIME)");
  }
  if (type == KeyType::kString) {
    std::string value;
    s = ks->Get(c.args[2], &value);
    if (!s.ok()) return ReplyStatus(c.w, s);
    int64_t n = 0;
    if (value.size() <= 20 && ParseInt(value, &n)) return c.w.Bulk("int");
    return c.w.Bulk(value.size() <= 44 ? "embstr" : "raw");
  }
  if (type == KeyType::kList) return c.w.Bulk("quicklist");
  bool small = true;
  s = ks->WithHash(c.args[2], Keyspace::Access::kRead, [&](Dict& hash) {
    DictStats stats;
    SHM_RETURN_IF_ERROR(hash.Stats(&stats));
    if (stats.entries > 128) {
      small = false;
      return Status::OK();
    }
    std::vector<DictItem> entries;
    SHM_RETURN_IF_ERROR(hash.Entries(true, &entries));
    for (const DictItem& entry : entries) {
      if (entry.key.size() > 64 || entry.value.size() > 64) small = false;
    }
    return Status::OK();
  });
  if (!s.ok()) return ReplyStatus(c.w, s);
  c.w.Bulk(small ? "listpack" : "hashtable");
}

}  // namespace

void RegisterKeyCommands(CommandTable* table) {
  constexpr KeyPositions kOne{1, 1, 1};
  constexpr KeyPositions kAll{1, -1, 1};
  constexpr KeyPositions kNone{};
  for (const CommandRow& row : {
           CommandRow{"del", -2, kWrite, kAll, DelKeys},
           CommandRow{"unlink", -2, kWrite | kFast, kAll, DelKeys},
           CommandRow{"exists", -2, kReadOnly | kFast, kAll, Exists},
           CommandRow{"touch", -2, kReadOnly | kFast, kAll, Exists},
           CommandRow{"type", 2, kReadOnly | kFast, kOne, Type},
           CommandRow{"expire", -3, kWrite | kFast, kOne, Expire},
           CommandRow{"pexpire", -3, kWrite | kFast, kOne, PExpire},
           CommandRow{"expireat", -3, kWrite | kFast, kOne, ExpireAt},
           CommandRow{"pexpireat", -3, kWrite | kFast, kOne, PExpireAt},
           CommandRow{"ttl", 2, kReadOnly | kFast, kOne, Ttl},
           CommandRow{"pttl", 2, kReadOnly | kFast, kOne, PTtl},
           CommandRow{"expiretime", 2, kReadOnly | kFast, kOne, ExpireTime},
           CommandRow{"pexpiretime", 2, kReadOnly | kFast, kOne, PExpireTime},
           CommandRow{"persist", 2, kWrite | kFast, kOne, Persist},
           CommandRow{"keys", 2, kReadOnly, kNone, Keys},
           CommandRow{"scan", -2, kReadOnly, kNone, Scan},
           CommandRow{"randomkey", 1, kReadOnly, kNone, RandomKey},
           CommandRow{"dbsize", 1, kReadOnly | kFast, kNone, DbSize},
           CommandRow{"flushdb", -1, kWrite, kNone, FlushDb},
           CommandRow{"flushall", -1, kWrite, kNone, FlushAll},
           CommandRow{"rename", 3, kWrite, {1, 2, 1}, Isolated<Rename>},
           CommandRow{"renamenx", 3, kWrite | kFast, {1, 2, 1}, Isolated<RenameNx>},
           CommandRow{"copy", -3, kWrite | kDenyOom, {1, 2, 1}, Isolated<Copy>},
           CommandRow{"move", 3, kWrite | kFast, kOne, Isolated<Move>},
           CommandRow{"object", -2, kReadOnly, {2, 2, 1}, Object},
           CommandRow{"dump", 2, kReadOnly, kOne, Dump},
           CommandRow{"restore", -4, kWrite | kDenyOom, kOne, Restore},
       }) {
    table->Add(row);
  }
}

}  // namespace shm::resp
