// The generic key commands (Redis's "generic" group): DEL, EXISTS, TYPE, expiry, KEYS, SCAN,
// DBSIZE, FLUSHDB, RENAME.
#include <algorithm>
#include <charconv>
#include <string>
#include <vector>

#include "internal.h"

namespace shm::resp {
namespace {

constexpr size_t kMaxScanCount = Dict::kMaxListLimit;

void Del(Call& c) {
  int64_t deleted = 0;
  for (size_t i = 1; i < c.args.size(); ++i) deleted += DeleteKey(c.segment(), c.args[i]) ? 1 : 0;
  c.w.Integer(deleted);
}

void Exists(Call& c) {
  int64_t found = 0;
  for (size_t i = 1; i < c.args.size(); ++i) found += TypeOf(c.segment(), c.args[i]) != "none";
  c.w.Integer(found);
}

void Type(Call& c) { c.w.Simple(TypeOf(c.segment(), c.args[1])); }

// EXPIRE, PEXPIRE, EXPIREAT, PEXPIREAT: `scale` ms per unit, `absolute` for the *AT forms.
void ExpireGeneric(Call& c, int64_t scale, bool absolute) {
  int64_t value = 0;
  if (!ParseInt(c.args[2], &value)) return c.w.Error(kNotInteger);
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
  if (value > Dict::kMaxTtlMs / scale || value < -Dict::kMaxTtlMs / scale) {
    return c.w.Error("ERR invalid expire time in '" + Lower(c.args[0]) + "' command");
  }
  int64_t now = NowMs();
  int64_t at = absolute ? value * scale : now + value * scale;
  if (at - now > Dict::kMaxTtlMs) {
    return c.w.Error("ERR invalid expire time in '" + Lower(c.args[0]) + "' command");
  }
  bool applied = false, delete_now = false;
  uint64_t version = 0;
  Status s = WithStrings(c.segment(), false, [&](Dict& d) {
    return UpdateWith(d, c.args[1], [&](const DictValue* current, DictUpdate* u) {
      u->write = false;
      if (current == nullptr) return Status::OK();
      int64_t old = current->expires_at_ms;  // 0: no expiry, which GT/LT treat as infinite.
      if ((nx && old != 0) || (xx && old == 0) || (gt && (old == 0 || at <= old)) ||
          (lt && old != 0 && at >= old)) {
        return Status::OK();
      }
      applied = true;
      version = current->version;
      if (at <= now) {
        delete_now = true;
        return Status::OK();
      }
      u->write = true;
      u->data = current->data;
      u->content_type = current->content_type;
      u->ttl_ms = at - now;
      return Status::OK();
    });
  });
  if (!s.ok() && !s.IsNotFound()) return ReplyStatus(c.w, s);
  if (!applied) {
    ObjectKind kind = ObjectKindOf(c.segment(), c.args[1]);
    if ((kind == ObjectKind::kList || kind == ObjectKind::kDict) &&
        TypeOf(c.segment(), c.args[1]) != "none") {
      return c.w.Error("ERR shmstate supports expiry on string keys only");
    }
    return c.w.Integer(0);
  }
  if (delete_now) {
    WithStrings(c.segment(), false, [&](Dict& d) { return d.Delete(c.args[1], version); });
  }
  c.w.Integer(1);
}
void Expire(Call& c) { ExpireGeneric(c, 1000, false); }
void PExpire(Call& c) { ExpireGeneric(c, 1, false); }
void ExpireAt(Call& c) { ExpireGeneric(c, 1000, true); }
void PExpireAt(Call& c) { ExpireGeneric(c, 1, true); }

void TtlGeneric(Call& c, bool millis) {
  DictValue value;
  Status s = WithStrings(c.segment(), false, [&](Dict& d) { return d.Get(c.args[1], &value); });
  int64_t at = 0;
  if (s.ok()) {
    at = value.expires_at_ms;
  } else if (TypeOf(c.segment(), c.args[1]) == "none") {
    return c.w.Integer(-2);
  } else {
    ObjectInfo info;
    std::optional<std::string> name = ObjectName(c.args[1]);
    if (name && c.segment()->registry().Lookup(*name, &info).ok()) at = info.expires_at_ms;
  }
  if (at == 0) return c.w.Integer(-1);
  int64_t left = std::max<int64_t>(at - NowMs(), 0);
  c.w.Integer(millis ? left : (left + 500) / 1000);
}
void Ttl(Call& c) { TtlGeneric(c, false); }
void PTtl(Call& c) { TtlGeneric(c, true); }

void Persist(Call& c) {
  bool changed = false;
  Status s = WithStrings(c.segment(), false, [&](Dict& d) {
    return UpdateWith(d, c.args[1], [&](const DictValue* current, DictUpdate* u) {
      if (current == nullptr || current->expires_at_ms == 0) {
        u->write = false;
        return Status::OK();
      }
      changed = true;
      u->data = current->data;
      u->content_type = current->content_type;
      u->ttl_ms = 0;  // The strings dict has no default TTL: 0 is "never".
      return Status::OK();
    });
  });
  if (!s.ok() && !s.IsNotFound()) return ReplyStatus(c.w, s);
  c.w.Integer(changed ? 1 : 0);
}

void Keys(Call& c) {
  std::vector<std::string> found;
  std::string_view pattern = c.args[1];
  WithStrings(c.segment(), false, [&](Dict& d) {
    uint64_t cursor = 0;
    do {
      std::vector<std::string> keys;
      SHM_RETURN_IF_ERROR(d.ListKeys("", Dict::kMaxListLimit, cursor, &keys, &cursor));
      for (std::string& key : keys) {
        if (GlobMatch(pattern, key)) found.push_back(std::move(key));
      }
    } while (cursor != 0);
    return Status::OK();
  });
  for (auto& [key, type] : ObjectKeys(c.segment())) {
    if (GlobMatch(pattern, key)) found.push_back(std::move(key));
  }
  c.w.Array(found.size());
  for (const std::string& key : found) c.w.Bulk(key);
}

// SCAN walks the strings dict by its cursor; the first call (cursor 0) also returns every list
// and hash key (docs/resp.md).
void Scan(Call& c) {
  uint64_t cursor = 0;
  {
    std::string_view text = c.args[1];
    auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), cursor);
    if (ec != std::errc() || ptr != text.data() + text.size()) {
      return c.w.Error("ERR invalid cursor");
    }
  }
  std::string_view pattern = "*";
  std::string type;
  int64_t count = 10;
  for (size_t i = 2; i < c.args.size(); i += 2) {
    if (i + 1 >= c.args.size()) return c.w.Error(kSyntax);
    std::string option = Lower(c.args[i]);
    if (option == "match") {
      pattern = c.args[i + 1];
    } else if (option == "count") {
      if (!ParseInt(c.args[i + 1], &count)) return c.w.Error(kNotInteger);
      if (count < 1) return c.w.Error(kSyntax);
    } else if (option == "type") {
      type = Lower(c.args[i + 1]);
    } else {
      return c.w.Error(kSyntax);
    }
  }
  std::vector<std::string> found;
  if (cursor == 0 && type != "string") {
    for (auto& [key, key_type] : ObjectKeys(c.segment())) {
      if ((type.empty() || key_type == type) && GlobMatch(pattern, key)) {
        found.push_back(std::move(key));
      }
    }
  }
  uint64_t next = 0;
  if (type.empty() || type == "string") {
    size_t limit = static_cast<size_t>(std::min<int64_t>(count, kMaxScanCount));
    std::vector<std::string> keys;
    Status s = WithStrings(c.segment(), false,
                           [&](Dict& d) { return d.ListKeys("", limit, cursor, &keys, &next); });
    if (!s.ok() && !s.IsNotFound()) return ReplyStatus(c.w, s);
    for (std::string& key : keys) {
      if (GlobMatch(pattern, key)) found.push_back(std::move(key));
    }
  }
  c.w.Array(2);
  c.w.Bulk(std::to_string(next));
  c.w.Array(found.size());
  for (const std::string& key : found) c.w.Bulk(key);
}

void DbSize(Call& c) { c.w.Integer(static_cast<int64_t>(KeyCount(c.segment()))); }

void FlushAll(Call& c) {
  if (c.args.size() > 2 || (c.args.size() == 2 && !EqualsIgnoreCase(c.args[1], "sync") &&
                            !EqualsIgnoreCase(c.args[1], "async"))) {
    return c.w.Error(kSyntax);
  }
  Registry& registry = c.segment()->registry();
  if (registry.Delete(kStringsDict, ObjectKind::kDict).ok())
    ForgetObject(c.segment(), kStringsDict);
  for (auto& [key, type] : ObjectKeys(c.segment())) DeleteKey(c.segment(), key);
  c.w.Simple("OK");
}

void Rename(Call& c) {
  DictValue value;
  Status s = WithStrings(c.segment(), false, [&](Dict& d) { return d.Get(c.args[1], &value); });
  if (s.IsNotFound()) {
    if (TypeOf(c.segment(), c.args[1]) != "none") {
      return c.w.Error("ERR shmstate renames string keys only");
    }
    return c.w.Error("ERR no such key");
  }
  if (!s.ok()) return ReplyStatus(c.w, s);
  if (c.args[1] == c.args[2]) return c.w.Simple("OK");
  int64_t ttl = value.expires_at_ms == 0 ? 0 : std::max<int64_t>(value.expires_at_ms - NowMs(), 1);
  DeleteKey(c.segment(), c.args[2]);
  s = WithStrings(c.segment(), true, [&](Dict& d) {
    SetOptions options;
    options.ttl_ms = ttl;
    options.content_type = value.content_type;
    return d.Set(c.args[2], value.data, options);
  });
  if (!s.ok()) return ReplyStatus(c.w, s);
  WithStrings(c.segment(), false, [&](Dict& d) { return d.Delete(c.args[1], value.version); });
  c.w.Simple("OK");
}

}  // namespace

void RegisterKeyCommands(CommandTable* table) {
  constexpr KeyPositions kOne{1, 1, 1};
  constexpr KeyPositions kAll{1, -1, 1};
  constexpr KeyPositions kNone{};
  for (const CommandRow& row : {
           CommandRow{"del", -2, kWrite, kAll, Del},
           CommandRow{"unlink", -2, kWrite | kFast, kAll, Del},
           CommandRow{"exists", -2, kReadOnly | kFast, kAll, Exists},
           CommandRow{"type", 2, kReadOnly | kFast, kOne, Type},
           CommandRow{"expire", -3, kWrite | kFast, kOne, Expire},
           CommandRow{"pexpire", -3, kWrite | kFast, kOne, PExpire},
           CommandRow{"expireat", -3, kWrite | kFast, kOne, ExpireAt},
           CommandRow{"pexpireat", -3, kWrite | kFast, kOne, PExpireAt},
           CommandRow{"ttl", 2, kReadOnly | kFast, kOne, Ttl},
           CommandRow{"pttl", 2, kReadOnly | kFast, kOne, PTtl},
           CommandRow{"persist", 2, kWrite | kFast, kOne, Persist},
           CommandRow{"keys", 2, kReadOnly, kNone, Keys},
           CommandRow{"scan", -2, kReadOnly, kNone, Scan},
           CommandRow{"dbsize", 1, kReadOnly | kFast, kNone, DbSize},
           CommandRow{"flushdb", -1, kWrite, kNone, FlushAll},
           CommandRow{"flushall", -1, kWrite, kNone, FlushAll},
           CommandRow{"rename", 3, kWrite, {1, 2, 1}, Rename},
       }) {
    table->Add(row);
  }
}

}  // namespace shm::resp
