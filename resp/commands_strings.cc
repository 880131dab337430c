// The string commands (Redis's "string" group): GET/SET and their variants, counters, APPEND.
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <string>

#include "internal.h"

namespace shm::resp {
namespace {

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
}  // namespace

void RegisterStringCommands(CommandTable* table) {
  constexpr KeyPositions kOne{1, 1, 1};
  for (const CommandRow& row : {
           CommandRow{"get", 2, kReadOnly | kFast, kOne, Get},
           CommandRow{"set", -3, kWrite | kDenyOom, kOne, Set},
           CommandRow{"setnx", 3, kWrite | kDenyOom | kFast, kOne, SetNx},
           CommandRow{"setex", 4, kWrite | kDenyOom, kOne, SetEx},
           CommandRow{"psetex", 4, kWrite | kDenyOom, kOne, PSetEx},
           CommandRow{"getset", 3, kWrite | kDenyOom | kFast, kOne, GetSet},
           CommandRow{"getdel", 2, kWrite | kFast, kOne, GetDel},
           CommandRow{"getex", -2, kWrite | kFast, kOne, GetEx},
           CommandRow{"mget", -2, kReadOnly | kFast, {1, -1, 1}, MGet},
           CommandRow{"mset", -3, kWrite | kDenyOom, {1, -1, 2}, MSet},
           CommandRow{"msetnx", -3, kWrite | kDenyOom, {1, -1, 2}, MSetNx},
           CommandRow{"append", 3, kWrite | kDenyOom | kFast, kOne, Append},
           CommandRow{"strlen", 2, kReadOnly | kFast, kOne, StrLen},
           CommandRow{"incr", 2, kWrite | kDenyOom | kFast, kOne, Incr},
           CommandRow{"decr", 2, kWrite | kDenyOom | kFast, kOne, Decr},
           CommandRow{"incrby", 3, kWrite | kDenyOom | kFast, kOne, IncrByCommand},
           CommandRow{"decrby", 3, kWrite | kDenyOom | kFast, kOne, DecrByCommand},
           CommandRow{"incrbyfloat", 3, kWrite | kDenyOom | kFast, kOne, IncrByFloat},
       }) {
    table->Add(row);
  }
}

}  // namespace shm::resp
