// RESP data commands: strings and counters, lists, hashes, and the keyspace mapping they share
// (docs/resp.md).
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <string>
#include <unordered_map>

#include "resp_internal.h"

namespace shm::resp {
namespace {

// ---------------------------------------------------------------------------------------------
// Per-thread handles (resp_internal.h).

struct NameHash {
  using is_transparent = void;
  size_t operator()(std::string_view name) const { return std::hash<std::string_view>()(name); }
};
template <typename Proxy>
using ProxyMap = std::unordered_map<std::string, Proxy, NameHash, std::equal_to<>>;

// Bounded; reopening is cheap enough.
constexpr size_t kMaxCachedObjects = 8192;

struct ThreadHandles {
  Segment* segment = nullptr;
  std::string shm_name;  // Guards against a new segment where a destroyed one was.
  bool has_strings = false;
  Dict strings;
  ProxyMap<Dict> dicts;
  ProxyMap<List> lists;
};

thread_local ThreadHandles t_handles;

ThreadHandles& HandlesOf(Segment* segment) {
  ThreadHandles& h = t_handles;
  if (h.segment != segment || h.shm_name != segment->shm_name()) {
    h.has_strings = false;
    h.dicts.clear();
    h.lists.clear();
    h.segment = segment;
    h.shm_name = segment->shm_name();
  }
  return h;
}

OpenMode ModeOf(bool create) {
  return create ? OpenMode::kCreateIfMissing : OpenMode::kOpenExisting;
}
Status OpenProxy(Segment* segment, std::string_view name, bool create, Dict* d) {
  return Dict::Open(segment, name, ModeOf(create), DictOptions(), d);
}
// A Redis list has no bound to speak of (2^32 - 1 items): a list made through RESP gets the
// largest a List allows. Lists made through another API keep their own.
ListOptions RespListOptions() {
  ListOptions options;
  options.max_items = List::kMaxItemsLimit;
  options.max_item_bytes = List::kMaxItemBytesLimit;
  return options;
}

Status OpenProxy(Segment* segment, std::string_view name, bool create, List* l) {
  return List::Open(segment, name, ModeOf(create), RespListOptions(), l);
}

ProxyMap<Dict>& MapOf(ThreadHandles& h, Dict*) { return h.dicts; }
ProxyMap<List>& MapOf(ThreadHandles& h, List*) { return h.lists; }

template <typename Proxy>
Status CachedObject(Segment* segment, std::string_view name, bool create, Proxy* proxy,
                    bool* cached) {
  ProxyMap<Proxy>& map = MapOf(HandlesOf(segment), proxy);
  auto it = map.find(name);
  *cached = it != map.end();
  if (*cached) {
    *proxy = it->second;
    return Status::OK();
  }
  SHM_RETURN_IF_ERROR(OpenProxy(segment, name, create, proxy));
  if (map.size() >= kMaxCachedObjects) map.clear();
  map.emplace(std::string(name), *proxy);
  return Status::OK();
}

template <typename Proxy>
Status ReopenObject(Segment* segment, std::string_view name, bool create, Proxy* proxy) {
  ProxyMap<Proxy>& map = MapOf(HandlesOf(segment), proxy);
  if (auto it = map.find(name); it != map.end()) map.erase(it);
  bool cached = false;
  return CachedObject(segment, name, create, proxy, &cached);
}

constexpr char kHex[] = "0123456789abcdef";

// ---------------------------------------------------------------------------------------------
// Strings.

// Expiry options shared by SET and GETEX: EX/PX/EXAT/PXAT as an absolute wall-clock ms.
struct Expiry {
  bool set = false;
  int64_t at_ms = 0;
};

// Parses "EX n" etc. at args[*i]; false when args[*i] is not an expiry option. `error` gets the
// reply for a bad value.
bool ParseExpiryOption(Call& c, size_t* i, std::string_view command, Expiry* expiry,
                       std::string* error) {
  std::string_view option = c.args[*i];
  bool ex = EqualsIgnoreCase(option, "ex"), px = EqualsIgnoreCase(option, "px");
  bool exat = EqualsIgnoreCase(option, "exat"), pxat = EqualsIgnoreCase(option, "pxat");
  if (!ex && !px && !exat && !pxat) return false;
  if (*i + 1 >= c.args.size() || expiry->set) {
    *error = kSyntax;
    return true;
  }
  int64_t value = 0;
  if (!ParseInt(c.args[*i + 1], &value)) {
    *error = kNotInteger;
    return true;
  }
  constexpr int64_t kMax = Dict::kMaxTtlMs;
  if (value <= 0 || ((ex || exat) && value > kMax / 1000) || (px && value > kMax)) {
    *error = "ERR invalid expire time in '" + std::string(command) + "' command";
    return true;
  }
  int64_t ms = ex || exat ? value * 1000 : value;
  expiry->set = true;
  expiry->at_ms = ex || px ? NowMs() + ms : ms;
  *i += 2;
  return true;
}

int64_t TtlFrom(int64_t at_ms) { return at_ms - NowMs(); }

// Runs `fn` on the string `key` under the strings dict's lock. A key absent as a string but held
// by a list or hash is WRONGTYPE, found without a registry lookup for existing strings: the
// first pass writes nothing when the key is absent.
template <typename Fn>
Status UpdateString(Segment* segment, std::string_view key, Fn&& fn, uint64_t* version = nullptr) {
  bool absent = false;
  Status s = WithStrings(segment, true, [&](Dict& d) {
    return UpdateWith(
        d, key,
        [&](const DictValue* current, DictUpdate* update) {
          if (current == nullptr) {
            absent = true;
            update->write = false;
            return Status::OK();
          }
          return fn(current, update);
        },
        version);
  });
  if (!s.ok() || !absent) return s;
  ObjectKind kind = ObjectKindOf(segment, key);
  if (kind != ObjectKind::kNone)
    return Status::WrongType("key holds a " + std::string(KindName(kind)));
  return WithStrings(segment, true, [&](Dict& d) { return UpdateWith(d, key, fn, version); });
}

// Makes room for a string at `key` (Redis's SET replaces any type): drops a list or hash there.
void DropObject(Segment* segment, std::string_view key) {
  ObjectKind kind = ObjectKindOf(segment, key);
  if (kind != ObjectKind::kList && kind != ObjectKind::kDict) return;
  std::optional<std::string> name = ObjectName(key);
  if (name && segment->registry().Delete(*name, kind).ok()) ForgetObject(segment, *name);
}

// SET without conditions. The replace pass succeeds for an existing string, which cannot also be
// a list or hash, so only new keys pay for the registry lookup.
Status SetString(Segment* segment, std::string_view key, std::string_view value, int64_t ttl_ms) {
  SetOptions options;
  options.ttl_ms = ttl_ms;
  options.mode = SetMode::kReplace;
  Status s = WithStrings(segment, true, [&](Dict& d) { return d.Set(key, value, options); });
  if (!s.IsNotFound()) return s;
  DropObject(segment, key);
  options.mode = SetMode::kSet;
  return WithStrings(segment, true, [&](Dict& d) { return d.Set(key, value, options); });
}

void Get(Call& c) {
  DictValue value;
  Status s = WithStrings(c.segment(), false, [&](Dict& d) { return d.Get(c.args[1], &value); });
  if (s.ok()) return c.w.Bulk(value.data);
  if (!s.IsNotFound()) return ReplyStatus(c.w, s);
  if (ObjectKindOf(c.segment(), c.args[1]) != ObjectKind::kNone) return c.w.Error(kWrongType);
  c.w.Null();
}

void Set(Call& c) {
  bool nx = false, xx = false, get = false, keepttl = false;
  Expiry expiry;
  std::string error;
  for (size_t i = 3; i < c.args.size();) {
    if (ParseExpiryOption(c, &i, "set", &expiry, &error)) {
      if (!error.empty()) return c.w.Error(error);
      continue;
    }
    std::string_view option = c.args[i++];
    if (EqualsIgnoreCase(option, "nx") && !xx) {
      nx = true;
    } else if (EqualsIgnoreCase(option, "xx") && !nx) {
      xx = true;
    } else if (EqualsIgnoreCase(option, "get")) {
      get = true;
    } else if (EqualsIgnoreCase(option, "keepttl") && !expiry.set) {
      keepttl = true;
    } else {
      return c.w.Error(kSyntax);
    }
  }
  if (keepttl && expiry.set) return c.w.Error(kSyntax);
  std::string_view key = c.args[1], value = c.args[2];
  int64_t ttl = expiry.set ? TtlFrom(expiry.at_ms) : 0;
  if (expiry.set && ttl <= 0) ttl = -1;  // Already past: the key ends up absent.
  if (!nx && !xx && !get && !keepttl) {
    Status s = ttl < 0 ? Status::OK() : SetString(c.segment(), key, value, ttl);
    if (ttl < 0) DeleteKey(c.segment(), key);
    return s.ok() ? c.w.Simple("OK") : ReplyStatus(c.w, s);
  }
  // Conditional or GET: one read-modify-write under the dict's lock.
  if (get && !StringExists(c.segment(), key) &&
      ObjectKindOf(c.segment(), key) != ObjectKind::kNone) {
    return c.w.Error(kWrongType);
  }
  if (!get) DropObject(c.segment(), key);
  bool existed = false;
  std::optional<std::string> old;
  Status s = WithStrings(c.segment(), true, [&](Dict& d) {
    return UpdateWith(d, key, [&](const DictValue* current, DictUpdate* update) {
      existed = current != nullptr;
      if (existed) old = current->data;
      if ((nx && existed) || (xx && !existed) || ttl < 0) {
        update->write = false;
        return Status::OK();
      }
      update->data.assign(value);
      update->keep_expiry = keepttl;
      update->ttl_ms = ttl > 0 ? ttl : 0;
      return Status::OK();
    });
  });
  if (!s.ok()) return ReplyStatus(c.w, s);
  bool condition_failed = (nx && existed) || (xx && !existed);
  if (!condition_failed && ttl < 0) DeleteKey(c.segment(), key);
  if (get) return old ? c.w.Bulk(*old) : c.w.Null();
  condition_failed ? c.w.Null() : c.w.Simple("OK");
}

void SetNx(Call& c) {
  if (ObjectKindOf(c.segment(), c.args[1]) != ObjectKind::kNone) return c.w.Integer(0);
  SetOptions options;
  options.mode = SetMode::kAdd;
  Status s =
      WithStrings(c.segment(), true, [&](Dict& d) { return d.Set(c.args[1], c.args[2], options); });
  if (s.IsAlreadyExists()) return c.w.Integer(0);
  s.ok() ? c.w.Integer(1) : ReplyStatus(c.w, s);
}

void SetExGeneric(Call& c, bool millis) {
  int64_t value = 0;
  if (!ParseInt(c.args[2], &value)) return c.w.Error(kNotInteger);
  int64_t limit = millis ? Dict::kMaxTtlMs : Dict::kMaxTtlMs / 1000;
  if (value <= 0 || value > limit) {
    return c.w.Error("ERR invalid expire time in '" + std::string(millis ? "psetex" : "setex") +
                     "' command");
  }
  Status s = SetString(c.segment(), c.args[1], c.args[3], millis ? value : value * 1000);
  s.ok() ? c.w.Simple("OK") : ReplyStatus(c.w, s);
}
void SetEx(Call& c) { SetExGeneric(c, false); }
void PSetEx(Call& c) { SetExGeneric(c, true); }

void GetSet(Call& c) {
  std::optional<std::string> old;
  Status s = UpdateString(c.segment(), c.args[1], [&](const DictValue* current, DictUpdate* u) {
    if (current) old = current->data;
    u->data.assign(c.args[2]);
    return Status::OK();
  });
  if (!s.ok()) return ReplyStatus(c.w, s);
  old ? c.w.Bulk(*old) : c.w.Null();
}

void GetDel(Call& c) {
  for (int attempt = 0; attempt < 8; ++attempt) {
    DictValue value;
    Status s = WithStrings(c.segment(), false, [&](Dict& d) { return d.Get(c.args[1], &value); });
    if (s.IsNotFound()) {
      if (ObjectKindOf(c.segment(), c.args[1]) != ObjectKind::kNone) return c.w.Error(kWrongType);
      return c.w.Null();
    }
    if (!s.ok()) return ReplyStatus(c.w, s);
    s = WithStrings(c.segment(), false,
                    [&](Dict& d) { return d.Delete(c.args[1], value.version); });
    if (s.ok()) return c.w.Bulk(value.data);
    if (!s.IsConflict() && !s.IsNotFound()) return ReplyStatus(c.w, s);
  }
  c.w.Error("TRYAGAIN the key kept changing");
}

void GetEx(Call& c) {
  Expiry expiry;
  bool persist = false;
  std::string error;
  for (size_t i = 2; i < c.args.size();) {
    if (ParseExpiryOption(c, &i, "getex", &expiry, &error)) {
      if (!error.empty()) return c.w.Error(error);
      if (persist) return c.w.Error(kSyntax);
      continue;
    }
    if (EqualsIgnoreCase(c.args[i], "persist") && !expiry.set && !persist) {
      persist = true;
      ++i;
      continue;
    }
    return c.w.Error(kSyntax);
  }
  std::optional<std::string> data;
  bool past = expiry.set && TtlFrom(expiry.at_ms) <= 0;
  Status s = WithStrings(c.segment(), false, [&](Dict& d) {
    return UpdateWith(d, c.args[1], [&](const DictValue* current, DictUpdate* u) {
      if (current == nullptr) {
        u->write = false;
        return Status::OK();
      }
      data = current->data;
      if (past || (!expiry.set && !persist)) {
        u->write = false;
        return Status::OK();
      }
      u->data = current->data;
      u->content_type = current->content_type;
      u->ttl_ms = expiry.set ? TtlFrom(expiry.at_ms) : 0;
      return Status::OK();
    });
  });
  if (!s.ok() && !s.IsNotFound()) return ReplyStatus(c.w, s);
  if (!data) {
    if (ObjectKindOf(c.segment(), c.args[1]) != ObjectKind::kNone) return c.w.Error(kWrongType);
    return c.w.Null();
  }
  if (past) DeleteKey(c.segment(), c.args[1]);
  c.w.Bulk(*data);
}

void MGet(Call& c) {
  c.w.Array(c.args.size() - 1);
  for (size_t i = 1; i < c.args.size(); ++i) {
    DictValue value;
    Status s = WithStrings(c.segment(), false, [&](Dict& d) { return d.Get(c.args[i], &value); });
    s.ok() ? c.w.Bulk(value.data) : c.w.Null();
  }
}

void MSet(Call& c) {
  if (c.args.size() % 2 != 1) return WrongArity(c);
  for (size_t i = 1; i + 1 < c.args.size(); i += 2) {
    Status s = SetString(c.segment(), c.args[i], c.args[i + 1], 0);
    if (!s.ok()) return ReplyStatus(c.w, s);
  }
  c.w.Simple("OK");
}

void MSetNx(Call& c) {
  if (c.args.size() % 2 != 1) return WrongArity(c);
  for (size_t i = 1; i + 1 < c.args.size(); i += 2) {
    if (TypeOf(c.segment(), c.args[i]) != "none") return c.w.Integer(0);
  }
  SetOptions options;
  options.mode = SetMode::kAdd;
  for (size_t i = 1; i + 1 < c.args.size(); i += 2) {
    Status s = WithStrings(c.segment(), true,
                           [&](Dict& d) { return d.Set(c.args[i], c.args[i + 1], options); });
    if (!s.ok() && !s.IsAlreadyExists()) return ReplyStatus(c.w, s);
  }
  c.w.Integer(1);
}

void Append(Call& c) {
  size_t length = 0;
  Status s = UpdateString(c.segment(), c.args[1], [&](const DictValue* current, DictUpdate* u) {
    if (current) {
      u->data.reserve(current->data.size() + c.args[2].size());
      u->data = current->data;
      u->content_type = current->content_type;
      u->keep_expiry = true;
    }
    u->data.append(c.args[2]);
    length = u->data.size();
    return Status::OK();
  });
  s.ok() ? c.w.Integer(static_cast<int64_t>(length)) : ReplyStatus(c.w, s);
}

void StrLen(Call& c) {
  DictValue value;
  Status s = WithStrings(c.segment(), false, [&](Dict& d) { return d.Get(c.args[1], &value); });
  if (s.ok()) return c.w.Integer(static_cast<int64_t>(value.data.size()));
  if (!s.IsNotFound()) return ReplyStatus(c.w, s);
  if (ObjectKindOf(c.segment(), c.args[1]) != ObjectKind::kNone) return c.w.Error(kWrongType);
  c.w.Integer(0);
}

void IncrBy(Call& c, int64_t by) {
  int64_t result = 0;
  std::string error;
  Status s = UpdateString(c.segment(), c.args[1], [&](const DictValue* current, DictUpdate* u) {
    int64_t value = 0;
    if (current && !ParseInt(current->data, &value)) {
      error = kNotInteger;
      return Status::InvalidArgument(error);
    }
    if ((by > 0 && value > std::numeric_limits<int64_t>::max() - by) ||
        (by < 0 && value < std::numeric_limits<int64_t>::min() - by)) {
      error = "ERR increment or decrement would overflow";
      return Status::InvalidArgument(error);
    }
    result = value + by;
    char digits[24];
    auto [end, ec] = std::to_chars(digits, digits + sizeof digits, result);
    u->data.assign(digits, end);
    if (current) u->content_type = current->content_type;
    u->keep_expiry = current != nullptr;
    return Status::OK();
  });
  if (!error.empty()) return c.w.Error(error);
  s.ok() ? c.w.Integer(result) : ReplyStatus(c.w, s);
}

void Incr(Call& c) { IncrBy(c, 1); }
void Decr(Call& c) { IncrBy(c, -1); }
void IncrByCommand(Call& c) {
  int64_t by = 0;
  if (!ParseInt(c.args[2], &by)) return c.w.Error(kNotInteger);
  IncrBy(c, by);
}
void DecrByCommand(Call& c) {
  int64_t by = 0;
  if (!ParseInt(c.args[2], &by) || by == std::numeric_limits<int64_t>::min()) {
    return c.w.Error(kNotInteger);
  }
  IncrBy(c, -by);
}

void IncrByFloat(Call& c) {
  double by = 0;
  if (!ParseDouble(c.args[2], &by)) return c.w.Error("ERR value is not a valid float");
  std::string text, error;
  Status s = UpdateString(c.segment(), c.args[1], [&](const DictValue* current, DictUpdate* u) {
    double value = 0;
    if (current && !ParseDouble(current->data, &value)) {
      error = "ERR value is not a valid float";
      return Status::InvalidArgument(error);
    }
    double result = value + by;
    if (std::isnan(result) || std::isinf(result)) {
      error = "ERR increment would produce NaN or Infinity";
      return Status::InvalidArgument(error);
    }
    text = FormatDouble(result);
    u->data = text;
    u->keep_expiry = current != nullptr;
    return Status::OK();
  });
  if (!error.empty()) return c.w.Error(error);
  s.ok() ? c.w.Bulk(text) : ReplyStatus(c.w, s);
}

// ---------------------------------------------------------------------------------------------
// Lists.

void Push(Call& c, List::End end) {
  std::string_view key = c.args[1];
  if (StringExists(c.segment(), key)) return c.w.Error(kWrongType);
  uint64_t length = 0;
  Status s = WithList(c.segment(), key, true, [&](List& list) {
    for (size_t i = 2; i < c.args.size(); ++i)
      SHM_RETURN_IF_ERROR(list.Push(end, c.args[i], &length));
    return Status::OK();
  });
  s.ok() ? c.w.Integer(static_cast<int64_t>(length)) : ReplyStatus(c.w, s);
}
void LPush(Call& c) { Push(c, List::End::kLeft); }
void RPush(Call& c) { Push(c, List::End::kRight); }

// An absent list: WRONGTYPE if a string holds the key, else `absent()`.
template <typename Absent>
void ListMissing(Call& c, const Status& s, Absent absent) {
  if (!s.IsNotFound()) return ReplyStatus(c.w, s);
  if (StringExists(c.segment(), c.args[1])) return c.w.Error(kWrongType);
  absent();
}

void Pop(Call& c, List::End end) {
  if (c.args.size() > 3) return c.w.Error(kSyntax);
  bool with_count = c.args.size() == 3;
  int64_t count = 1;
  if (with_count && (!ParseInt(c.args[2], &count) || count < 0)) {
    return c.w.Error("ERR value is out of range, must be positive");
  }
  std::vector<std::string> items;
  Status s = WithList(c.segment(), c.args[1], false, [&](List& list) {
    for (int64_t i = 0; i < count; ++i) {
      std::string item;
      bool got = false;
      SHM_RETURN_IF_ERROR(list.Pop(end, std::chrono::milliseconds(0), &item, &got));
      if (!got) break;
      items.push_back(std::move(item));
    }
    return Status::OK();
  });
  if (!s.ok()) {
    return ListMissing(c, s, [&] { with_count ? c.w.NullArray() : c.w.Null(); });
  }
  if (!with_count) return items.empty() ? c.w.Null() : c.w.Bulk(items[0]);
  if (items.empty() && count > 0) return c.w.NullArray();
  c.w.Array(items.size());
  for (const std::string& item : items) c.w.Bulk(item);
}
void LPop(Call& c) { Pop(c, List::End::kLeft); }
void RPop(Call& c) { Pop(c, List::End::kRight); }

void LLen(Call& c) {
  uint64_t length = 0;
  Status s = WithList(c.segment(), c.args[1], false, [&](List& l) { return l.Length(&length); });
  if (!s.ok()) return ListMissing(c, s, [&] { c.w.Integer(0); });
  c.w.Integer(static_cast<int64_t>(length));
}

// List::Range answers at most kMaxRangeItems per call, so a longer range is read in chunks
// (not atomically: docs/resp.md), up to kMaxRangeReplyBytes.
constexpr size_t kMaxRangeReplyBytes = size_t{64} << 20;

void LRange(Call& c) {
  int64_t start = 0, stop = 0;
  if (!ParseInt(c.args[2], &start) || !ParseInt(c.args[3], &stop)) return c.w.Error(kNotInteger);
  std::vector<std::string> items;
  std::string error;
  Status s = WithList(c.segment(), c.args[1], false, [&](List& l) {
    uint64_t length = 0;
    SHM_RETURN_IF_ERROR(l.Length(&length));
    const int64_t n = static_cast<int64_t>(length);
    int64_t first = start < 0 ? std::max<int64_t>(n + start, 0) : start;
    int64_t last = stop < 0 ? n + stop : std::min<int64_t>(stop, n - 1);
    size_t bytes = 0;
    while (first <= last) {
      std::vector<std::string> chunk;
      bool truncated = false;
      SHM_RETURN_IF_ERROR(l.Range(first, last, &chunk, &truncated));
      if (chunk.empty()) break;
      first += static_cast<int64_t>(chunk.size());
      for (std::string& item : chunk) {
        bytes += item.size();
        items.push_back(std::move(item));
      }
      if (bytes > kMaxRangeReplyBytes) {
        error = "ERR LRANGE reply would pass 64 MiB; ask for a smaller range";
        return Status::OK();
      }
      if (!truncated) break;
    }
    return Status::OK();
  });
  if (!error.empty()) return c.w.Error(error);
  if (!s.ok()) return ListMissing(c, s, [&] { c.w.Array(0); });
  c.w.Array(items.size());
  for (const std::string& item : items) c.w.Bulk(item);
}

void LIndex(Call& c) {
  int64_t index = 0;
  if (!ParseInt(c.args[2], &index)) return c.w.Error(kNotInteger);
  std::vector<std::string> items;
  Status s = WithList(c.segment(), c.args[1], false,
                      [&](List& l) { return l.Range(index, index, &items); });
  if (!s.ok()) return ListMissing(c, s, [&] { c.w.Null(); });
  items.empty() ? c.w.Null() : c.w.Bulk(items[0]);
}

void BlockingPop(Call& c, List::End end) {
  double seconds = 0;
  if (!ParseDouble(c.args.back(), &seconds) || std::isnan(seconds)) {
    return c.w.Error("ERR timeout is not a float or out of range");
  }
  if (seconds < 0) return c.w.Error("ERR timeout is negative");
  BlockedPop blocked;
  blocked.end = end;
  for (size_t i = 1; i + 1 < c.args.size(); ++i) {
    if (StringExists(c.segment(), c.args[i])) return c.w.Error(kWrongType);
    blocked.keys.emplace_back(c.args[i]);
  }
  auto now = std::chrono::steady_clock::now();
  blocked.deadline = seconds == 0 || seconds > 1e9
                         ? std::chrono::steady_clock::time_point::max()
                         : now + std::chrono::milliseconds(static_cast<int64_t>(seconds * 1000));
  if (!c.may_block) blocked.deadline = now;
  std::string* out = c.w.buffer();
  if (TryBlockedPop(c.config, c.client, blocked, out)) return;
  *c.blocked = std::move(blocked);
  c.block = true;
}
void BLPop(Call& c) { BlockingPop(c, List::End::kLeft); }
void BRPop(Call& c) { BlockingPop(c, List::End::kRight); }

// ---------------------------------------------------------------------------------------------
// Hashes.

template <typename Absent>
void HashMissing(Call& c, const Status& s, Absent absent) {
  ListMissing(c, s, absent);
}

void HSetGeneric(Call& c, bool reply_ok) {
  if (c.args.size() % 2 != 0) return WrongArity(c);
  if (StringExists(c.segment(), c.args[1])) return c.w.Error(kWrongType);
  int64_t created = 0;
  Status s = WithHash(c.segment(), c.args[1], true, [&](Dict& d) {
    for (size_t i = 2; i + 1 < c.args.size(); i += 2) {
      SHM_RETURN_IF_ERROR(UpdateWith(d, c.args[i], [&](const DictValue* current, DictUpdate* u) {
        if (current == nullptr) ++created;
        u->data.assign(c.args[i + 1]);
        return Status::OK();
      }));
    }
    return Status::OK();
  });
  if (!s.ok()) return ReplyStatus(c.w, s);
  reply_ok ? c.w.Simple("OK") : c.w.Integer(created);
}
void HSet(Call& c) { HSetGeneric(c, false); }
void HMSet(Call& c) { HSetGeneric(c, true); }

void HSetNx(Call& c) {
  if (StringExists(c.segment(), c.args[1])) return c.w.Error(kWrongType);
  SetOptions options;
  options.mode = SetMode::kAdd;
  Status s = WithHash(c.segment(), c.args[1], true,
                      [&](Dict& d) { return d.Set(c.args[2], c.args[3], options); });
  if (s.IsAlreadyExists()) return c.w.Integer(0);
  s.ok() ? c.w.Integer(1) : ReplyStatus(c.w, s);
}

void HGet(Call& c) {
  DictValue value;
  bool hash_found = false;
  Status s = WithHash(c.segment(), c.args[1], false, [&](Dict& d) {
    hash_found = true;
    return d.Get(c.args[2], &value);
  });
  if (s.ok()) return c.w.Bulk(value.data);
  if (s.IsNotFound() && hash_found) return c.w.Null();
  HashMissing(c, s, [&] { c.w.Null(); });
}

void HMGet(Call& c) {
  std::vector<std::optional<std::string>> values(c.args.size() - 2);
  Status s = WithHash(c.segment(), c.args[1], false, [&](Dict& d) {
    for (size_t i = 2; i < c.args.size(); ++i) {
      DictValue value;
      if (d.Get(c.args[i], &value).ok()) values[i - 2] = std::move(value.data);
    }
    return Status::OK();
  });
  if (!s.ok() && !s.IsNotFound()) return ReplyStatus(c.w, s);
  if (!s.ok() && StringExists(c.segment(), c.args[1])) return c.w.Error(kWrongType);
  c.w.Array(values.size());
  for (auto& v : values) v ? c.w.Bulk(*v) : c.w.Null();
}

// Every field of a hash (and its value when `values`), in the dict's hash order.
Status ReadHash(Segment* segment, std::string_view key, bool values,
                std::vector<std::pair<std::string, std::string>>* out) {
  return WithHash(segment, key, false, [&](Dict& d) {
    out->clear();
    uint64_t cursor = 0;
    do {
      std::vector<std::string> keys;
      SHM_RETURN_IF_ERROR(d.ListKeys("", Dict::kMaxListLimit, cursor, &keys, &cursor));
      for (std::string& field : keys) {
        DictValue value;
        if (values && !d.Get(field, &value).ok()) continue;  // Deleted meanwhile.
        out->emplace_back(std::move(field), std::move(value.data));
      }
    } while (cursor != 0);
    return Status::OK();
  });
}

void HashListing(Call& c, bool fields, bool values) {
  std::vector<std::pair<std::string, std::string>> entries;
  Status s = ReadHash(c.segment(), c.args[1], values, &entries);
  if (!s.ok()) {
    return HashMissing(c, s, [&] { fields&& values ? c.w.Map(0) : c.w.Array(0); });
  }
  if (fields && values) {
    c.w.Map(entries.size());
  } else {
    c.w.Array(entries.size());
  }
  for (auto& [field, value] : entries) {
    if (fields) c.w.Bulk(field);
    if (values) c.w.Bulk(value);
  }
}
void HGetAll(Call& c) { HashListing(c, true, true); }
void HKeys(Call& c) { HashListing(c, true, false); }
void HVals(Call& c) { HashListing(c, false, true); }

void HDel(Call& c) {
  int64_t deleted = 0;
  Status s = WithHash(c.segment(), c.args[1], false, [&](Dict& d) {
    for (size_t i = 2; i < c.args.size(); ++i) deleted += d.Delete(c.args[i]).ok() ? 1 : 0;
    return Status::OK();
  });
  if (!s.ok()) return HashMissing(c, s, [&] { c.w.Integer(0); });
  c.w.Integer(deleted);
}

void HExists(Call& c) {
  DictValue value;
  bool hash_found = false;
  Status s = WithHash(c.segment(), c.args[1], false, [&](Dict& d) {
    hash_found = true;
    return d.Get(c.args[2], &value);
  });
  if (s.ok()) return c.w.Integer(1);
  if (s.IsNotFound() && hash_found) return c.w.Integer(0);
  HashMissing(c, s, [&] { c.w.Integer(0); });
}

void HLen(Call& c) {
  DictStats stats;
  Status s = WithHash(c.segment(), c.args[1], false, [&](Dict& d) { return d.Stats(&stats); });
  if (!s.ok()) return HashMissing(c, s, [&] { c.w.Integer(0); });
  c.w.Integer(static_cast<int64_t>(stats.entries));
}

void HIncrBy(Call& c) {
  int64_t by = 0;
  if (!ParseInt(c.args[3], &by)) return c.w.Error(kNotInteger);
  if (StringExists(c.segment(), c.args[1])) return c.w.Error(kWrongType);
  int64_t result = 0;
  std::string error;
  Status s = WithHash(c.segment(), c.args[1], true, [&](Dict& d) {
    return UpdateWith(d, c.args[2], [&](const DictValue* current, DictUpdate* u) {
      int64_t value = 0;
      if (current && !ParseInt(current->data, &value)) {
        error = "ERR hash value is not an integer";
        return Status::InvalidArgument(error);
      }
      if ((by > 0 && value > std::numeric_limits<int64_t>::max() - by) ||
          (by < 0 && value < std::numeric_limits<int64_t>::min() - by)) {
        error = "ERR increment or decrement would overflow";
        return Status::InvalidArgument(error);
      }
      result = value + by;
      u->data = std::to_string(result);
      return Status::OK();
    });
  });
  if (!error.empty()) return c.w.Error(error);
  s.ok() ? c.w.Integer(result) : ReplyStatus(c.w, s);
}

}  // namespace

const std::vector<CommandSpec>& DataCommandSpecs() {
  static const std::vector<CommandSpec> specs = {
      {"get", Get, 2},
      {"set", Set, -3},
      {"setnx", SetNx, 3},
      {"setex", SetEx, 4},
      {"psetex", PSetEx, 4},
      {"getset", GetSet, 3},
      {"getdel", GetDel, 2},
      {"getex", GetEx, -2},
      {"mget", MGet, -2, StringKeys::kAll},
      {"mset", MSet, -3, StringKeys::kEveryOther},
      {"msetnx", MSetNx, -3, StringKeys::kEveryOther},
      {"append", Append, 3},
      {"strlen", StrLen, 2},
      {"incr", Incr, 2},
      {"decr", Decr, 2},
      {"incrby", IncrByCommand, 3},
      {"decrby", DecrByCommand, 3},
      {"incrbyfloat", IncrByFloat, 3},
      {"lpush", LPush, -3},
      {"rpush", RPush, -3},
      {"lpop", LPop, -2},
      {"rpop", RPop, -2},
      {"llen", LLen, 2},
      {"lrange", LRange, 4},
      {"lindex", LIndex, 3},
      {"blpop", BLPop, -3},
      {"brpop", BRPop, -3},
      {"hset", HSet, -4},
      {"hmset", HMSet, -4},
      {"hsetnx", HSetNx, 4},
      {"hget", HGet, 3},
      {"hmget", HMGet, -3},
      {"hgetall", HGetAll, 2},
      {"hkeys", HKeys, 2},
      {"hvals", HVals, 2},
      {"hdel", HDel, -3},
      {"hexists", HExists, 3},
      {"hlen", HLen, 2},
      {"hincrby", HIncrBy, 4},
  };
  return specs;
}

bool TryBlockedPop(const RespConfig& config, RespClient* client, const BlockedPop& blocked,
                   std::string* out) {
  ReplyWriter w(out, client->protocol);
  for (const std::string& key : blocked.keys) {
    std::string item;
    bool got = false;
    Status s = WithList(config.segment, key, false, [&](List& list) {
      return list.Pop(blocked.end, std::chrono::milliseconds(0), &item, &got);
    });
    if (!s.ok() && !s.IsNotFound()) {
      ReplyStatus(w, s);
      return true;
    }
    if (got) {
      w.Array(2);
      w.Bulk(key);
      w.Bulk(item);
      return true;
    }
  }
  if (std::chrono::steady_clock::now() < blocked.deadline) return false;
  w.NullArray();
  return true;
}

// ---------------------------------------------------------------------------------------------
// The keyspace mapping.

std::optional<std::string> ObjectName(std::string_view key) {
  if (ValidateName(key).ok() && key.substr(0, 6) != "redis:") return std::string(key);
  if (kEncodedPrefix.size() + 2 * key.size() > 200) return std::nullopt;
  std::string name(kEncodedPrefix);
  for (unsigned char ch : key) {
    name.push_back(kHex[ch >> 4]);
    name.push_back(kHex[ch & 15]);
  }
  return name;
}

std::optional<std::string> KeyOfObject(std::string_view name) {
  if (name.substr(0, 6) != "redis:") return std::string(name);
  if (name.substr(0, kEncodedPrefix.size()) != kEncodedPrefix) return std::nullopt;
  std::string_view hex = name.substr(kEncodedPrefix.size());
  if (hex.size() % 2 != 0) return std::nullopt;
  std::string key;
  for (size_t i = 0; i < hex.size(); i += 2) {
    auto digit = [](char ch) { return ch <= '9' ? ch - '0' : ch - 'a' + 10; };
    key.push_back(static_cast<char>(digit(hex[i]) * 16 + digit(hex[i + 1])));
  }
  return key;
}

namespace handles {

Status Strings(Segment* segment, bool create, Dict* proxy, bool* cached) {
  ThreadHandles& h = HandlesOf(segment);
  *cached = h.has_strings;
  if (*cached) {
    *proxy = h.strings;
    return Status::OK();
  }
  SHM_RETURN_IF_ERROR(OpenProxy(segment, kStringsDict, create, proxy));
  h.strings = *proxy;
  h.has_strings = true;
  return Status::OK();
}

Status ReopenStrings(Segment* segment, bool create, Dict* proxy) {
  HandlesOf(segment).has_strings = false;
  bool cached = false;
  return Strings(segment, create, proxy, &cached);
}

Status Object(Segment* segment, std::string_view name, bool create, Dict* proxy, bool* cached) {
  return CachedObject(segment, name, create, proxy, cached);
}
Status Object(Segment* segment, std::string_view name, bool create, List* proxy, bool* cached) {
  return CachedObject(segment, name, create, proxy, cached);
}
Status Reopen(Segment* segment, std::string_view name, bool create, Dict* proxy) {
  return ReopenObject(segment, name, create, proxy);
}
Status Reopen(Segment* segment, std::string_view name, bool create, List* proxy) {
  return ReopenObject(segment, name, create, proxy);
}

}  // namespace handles

void ForgetObject(Segment* segment, std::string_view name) {
  ThreadHandles& h = HandlesOf(segment);
  if (name == kStringsDict) h.has_strings = false;
  if (auto it = h.dicts.find(name); it != h.dicts.end()) h.dicts.erase(it);
  if (auto it = h.lists.find(name); it != h.lists.end()) h.lists.erase(it);
}

ObjectKind ObjectKindOf(Segment* segment, std::string_view key) {
  std::optional<std::string> name = ObjectName(key);
  if (!name) return ObjectKind::kNone;
  ObjectInfo info;
  if (!segment->registry().Lookup(*name, &info).ok()) return ObjectKind::kNone;
  return info.kind;
}

bool StringExists(Segment* segment, std::string_view key) {
  DictValue value;
  return WithStrings(segment, false, [&](Dict& d) { return d.Get(key, &value); }).ok();
}

std::string_view TypeOf(Segment* segment, std::string_view key) {
  if (StringExists(segment, key)) return "string";
  ObjectKind kind = ObjectKindOf(segment, key);
  if (kind == ObjectKind::kList) {
    uint64_t length = 0;
    WithList(segment, key, false, [&](List& l) { return l.Length(&length); });
    return length > 0 ? "list" : "none";
  }
  if (kind == ObjectKind::kDict) {
    DictStats stats;
    WithHash(segment, key, false, [&](Dict& d) { return d.Stats(&stats); });
    return stats.entries > 0 ? "hash" : "none";
  }
  return "none";
}

bool DeleteKey(Segment* segment, std::string_view key) {
  if (WithStrings(segment, false, [&](Dict& d) { return d.Delete(key); }).ok()) return true;
  std::string_view type = TypeOf(segment, key);
  ObjectKind kind = ObjectKindOf(segment, key);
  if (kind != ObjectKind::kList && kind != ObjectKind::kDict) return false;
  std::optional<std::string> name = ObjectName(key);
  if (!segment->registry().Delete(*name, kind).ok()) return false;
  ForgetObject(segment, *name);
  return type != "none";
}

}  // namespace shm::resp
