// The hash commands (Redis's "hash" group), on the library keyspace: a hash is removed with its
// last field; an empty field name is a field, as in Redis.
#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "internal.h"

namespace shm::resp {
namespace {

using Access = Keyspace::Access;

// A field's read-modify-write, shown the field in place (no copy of its value).
Status UpdateField(Dict& d, std::string_view field, DictViewUpdateRef fn) {
  return d.UpdateView(field, fn);
}

void HSetGeneric(Call& c, bool reply_ok) {
  if (c.args.size() % 2 != 0) return WrongArity(c);
  Keyspace* ks = KS(c);
  if (ks == nullptr) return;
  int64_t created = 0;
  Status s = ks->WithHash(c.args[1], Access::kCreate, [&](Dict& d) {
    for (size_t i = 2; i + 1 < c.args.size(); i += 2) {
      SHM_RETURN_IF_ERROR(
          UpdateField(d, c.args[i], [&](const DictEntryView* current, DictUpdate* u) {
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
  Keyspace* ks = KS(c);
  if (ks == nullptr) return;
  bool set = false;
  Status s = ks->WithHash(c.args[1], Access::kCreate, [&](Dict& d) {
    return UpdateField(d, c.args[2], [&](const DictEntryView* current, DictUpdate* u) {
      u->write = current == nullptr;
      set = u->write;
      if (set) u->data.assign(c.args[3]);
      return Status::OK();
    });
  });
  s.ok() ? c.w.Integer(set ? 1 : 0) : ReplyStatus(c.w, s);
}

void HGet(Call& c) {
  Keyspace* ks = KS(c);
  if (ks == nullptr) return;
  DictValue value;
  bool found = false;
  Status s = ks->WithHash(c.args[1], Access::kRead, [&](Dict& d) {
    Status got = d.Get(c.args[2], &value);
    found = got.ok();
    return got.IsNotFound() ? Status::OK() : got;
  });
  if (s.IsNotFound() || (s.ok() && !found)) return c.w.Null();
  s.ok() ? c.w.Bulk(value.data) : ReplyStatus(c.w, s);
}

void HStrLen(Call& c) {
  Keyspace* ks = KS(c);
  if (ks == nullptr) return;
  DictValue value;
  Status s = ks->WithHash(c.args[1], Access::kRead, [&](Dict& d) {
    Status got = d.Get(c.args[2], &value);
    return got.IsNotFound() ? Status::OK() : got;
  });
  if (s.IsNotFound()) return c.w.Integer(0);
  s.ok() ? c.w.Integer(static_cast<int64_t>(value.data.size())) : ReplyStatus(c.w, s);
}

void HMGet(Call& c) {
  Keyspace* ks = KS(c);
  if (ks == nullptr) return;
  std::vector<std::optional<std::string>> values(c.args.size() - 2);
  Status s = ks->WithHash(c.args[1], Access::kRead, [&](Dict& d) {
    for (size_t i = 2; i < c.args.size(); ++i) {
      DictValue value;
      if (d.Get(c.args[i], &value).ok()) values[i - 2] = std::move(value.data);
    }
    return Status::OK();
  });
  if (!s.ok() && !s.IsNotFound()) return ReplyStatus(c.w, s);
  c.w.Array(values.size());
  for (auto& v : values) v ? c.w.Bulk(*v) : c.w.Null();
}

// Every field of a hash (and its value when `values`), in insertion order, as Redis lists a small
// hash (Dict::Entries).
Status ReadFields(Dict& d, bool values, std::vector<DictItem>* out) {
  return d.Entries(values, out);
}

void HashListing(Call& c, bool fields, bool values) {
  Keyspace* ks = KS(c);
  if (ks == nullptr) return;
  std::vector<DictItem> entries;
  Status s = ks->WithHash(c.args[1], Access::kRead,
                          [&](Dict& d) { return ReadFields(d, values, &entries); });
  if (!s.ok() && !s.IsNotFound()) return ReplyStatus(c.w, s);
  if (fields && values) {
    c.w.Map(entries.size());
  } else {
    c.w.Array(entries.size());
  }
  for (const DictItem& entry : entries) {
    if (fields) c.w.Bulk(entry.key);
    if (values) c.w.Bulk(entry.value);
  }
}
void HGetAll(Call& c) { HashListing(c, true, true); }
void HKeys(Call& c) { HashListing(c, true, false); }
void HVals(Call& c) { HashListing(c, false, true); }

void HDel(Call& c) {
  Keyspace* ks = KS(c);
  if (ks == nullptr) return;
  int64_t deleted = 0;
  Status s = ks->WithHash(c.args[1], Access::kWrite, [&](Dict& d) {
    for (size_t i = 2; i < c.args.size(); ++i) deleted += d.Delete(c.args[i]).ok() ? 1 : 0;
    return Status::OK();
  });
  if (s.IsNotFound()) return c.w.Integer(0);
  s.ok() ? c.w.Integer(deleted) : ReplyStatus(c.w, s);
}

void HExists(Call& c) {
  Keyspace* ks = KS(c);
  if (ks == nullptr) return;
  bool found = false;
  Status s = ks->WithHash(c.args[1], Access::kRead, [&](Dict& d) {
    DictValue value;
    Status got = d.Get(c.args[2], &value);
    found = got.ok();
    return got.IsNotFound() ? Status::OK() : got;
  });
  if (s.IsNotFound()) return c.w.Integer(0);
  s.ok() ? c.w.Integer(found ? 1 : 0) : ReplyStatus(c.w, s);
}

void HLen(Call& c) {
  Keyspace* ks = KS(c);
  if (ks == nullptr) return;
  DictStats stats;
  Status s = ks->WithHash(c.args[1], Access::kRead, [&](Dict& d) { return d.Stats(&stats); });
  if (s.IsNotFound()) return c.w.Integer(0);
  s.ok() ? c.w.Integer(static_cast<int64_t>(stats.entries)) : ReplyStatus(c.w, s);
}

void HIncrBy(Call& c) {
  int64_t by = 0;
  if (!ParseInt(c.args[3], &by)) return c.w.Error(kNotInteger);
  Keyspace* ks = KS(c);
  if (ks == nullptr) return;
  int64_t result = 0;
  Status s = ks->WithHash(c.args[1], Access::kCreate, [&](Dict& d) {
    return UpdateField(d, c.args[2], [&](const DictEntryView* current, DictUpdate* u) {
      int64_t value = 0;
      if (current != nullptr && !ParseInt(current->data, &value)) {
        return Status::InvalidArgument("hash value is not an integer");
      }
      if (!AddInt64(value, by, &result)) {
        return Status::InvalidArgument("increment or decrement would overflow");
      }
      u->data = std::to_string(result);
      return Status::OK();
    });
  });
  s.ok() ? c.w.Integer(result) : ReplyStatus(c.w, s);
}

void HIncrByFloat(Call& c) {
  long double by = 0;
  if (!ParseLongDouble(c.args[3], &by)) return c.w.Error("ERR value is not a valid float");
  if (std::isnan(by) || std::isinf(by)) return c.w.Error("ERR value is NaN or Infinity");
  Keyspace* ks = KS(c);
  if (ks == nullptr) return;
  std::string text;
  Status s = ks->WithHash(c.args[1], Access::kCreate, [&](Dict& d) {
    return UpdateField(d, c.args[2], [&](const DictEntryView* current, DictUpdate* u) {
      long double value = 0;
      if (current != nullptr && !ParseLongDouble(current->data, &value)) {
        return Status::InvalidArgument("hash value is not a float");
      }
      long double result = value + by;
      if (std::isnan(result) || std::isinf(result)) {
        return Status::InvalidArgument("increment would produce NaN or Infinity");
      }
      text = FormatLongDouble(result);
      u->data = text;
      return Status::OK();
    });
  });
  s.ok() ? c.w.Bulk(text) : ReplyStatus(c.w, s);
}

// HRANDFIELD key [count [WITHVALUES]] (Redis's hrandfieldCommand).
void HRandField(Call& c) {
  int64_t count = 0;
  bool with_count = c.args.size() >= 3, with_values = false;
  if (with_count) {
    if (!ParseInt(c.args[2], &count)) return c.w.Error(kNotInteger);
    if (c.args.size() == 4) {
      if (!EqualsIgnoreCase(c.args[3], "withvalues")) return c.w.Error(kSyntax);
      with_values = true;
    } else if (c.args.size() > 4) {
      return c.w.Error(kSyntax);
    }
    // Repeats (a negative count) make a reply as long as asked: bounded like a MULTI queue.
    constexpr int64_t kMaxPicks = 10'000'000;
    if (count < -kMaxPicks || count > std::numeric_limits<int64_t>::max() / 2) {
      return c.w.Error("ERR value is out of range");
    }
  }
  Keyspace* ks = KS(c);
  if (ks == nullptr) return;
  std::vector<DictItem> entries;
  Status s = ks->WithHash(c.args[1], Access::kRead,
                          [&](Dict& d) { return ReadFields(d, true, &entries); });
  if (s.IsNotFound()) return with_count ? c.w.Array(0) : c.w.Null();
  if (!s.ok()) return ReplyStatus(c.w, s);
  thread_local std::mt19937_64 rng(std::random_device{}());
  if (!with_count) {
    return c.w.Bulk(entries[rng() % entries.size()].key);
  }
  std::vector<size_t> picks;
  if (count < 0) {  // Repeats allowed.
    for (int64_t i = 0; i < -count; ++i) picks.push_back(rng() % entries.size());
  } else {
    std::vector<size_t> all(entries.size());
    for (size_t i = 0; i < all.size(); ++i) all[i] = i;
    // A count that takes them all answers the whole hash in its order, as Redis does.
    if (static_cast<uint64_t>(count) < all.size()) {
      std::shuffle(all.begin(), all.end(), rng);
      all.resize(static_cast<size_t>(count));
    }
    picks = std::move(all);
  }
  if (with_values && c.client->protocol >= 3) {
    c.w.Array(picks.size());
    for (size_t i : picks) {
      c.w.Array(2);
      c.w.Bulk(entries[i].key);
      c.w.Bulk(entries[i].value);
    }
    return;
  }
  c.w.Array(picks.size() * (with_values ? 2 : 1));
  for (size_t i : picks) {
    c.w.Bulk(entries[i].key);
    if (with_values) c.w.Bulk(entries[i].value);
  }
}

// Up to this many fields, HSCAN answers a whole hash at once in insertion order, as Redis does
// for a hash in its listpack encoding (hash-max-listpack-entries' default).
constexpr uint64_t kSmallHash = 128;

// HSCAN key cursor [MATCH pattern] [COUNT n]: a small hash whole, in insertion order, with cursor
// 0 (COUNT ignored, as Redis's listpack); a larger one by cursor in hash order.
void HScan(Call& c) {
  ScanArgs args;
  if (!ParseScanArgs(c, 2, /*with_type=*/false, &args)) return;
  Keyspace* ks = KS(c);
  if (ks == nullptr) return;
  std::vector<std::pair<std::string, std::string>> found;
  uint64_t next = 0;
  Status s = ks->WithHash(c.args[1], Access::kRead, [&](Dict& d) {
    DictStats stats;
    SHM_RETURN_IF_ERROR(d.Stats(&stats));
    if (args.cursor == 0 && stats.entries <= kSmallHash) {
      std::vector<DictItem> entries;
      SHM_RETURN_IF_ERROR(d.Entries(true, &entries));
      for (DictItem& entry : entries) {
        if (GlobMatch(args.pattern, entry.key)) {
          found.emplace_back(std::move(entry.key), std::move(entry.value));
        }
      }
      return Status::OK();
    }
    std::vector<std::string> keys;
    size_t limit = static_cast<size_t>(std::min<int64_t>(args.count, Dict::kMaxListLimit));
    SHM_RETURN_IF_ERROR(d.ListKeys("", limit, args.cursor, &keys, &next));
    for (std::string& field : keys) {
      DictValue value;
      if (!GlobMatch(args.pattern, field) || !d.Get(field, &value).ok()) continue;
      found.emplace_back(std::move(field), std::move(value.data));
    }
    return Status::OK();
  });
  if (!s.ok() && !s.IsNotFound()) return ReplyStatus(c.w, s);
  c.w.Array(2);
  c.w.Bulk(std::to_string(next));
  c.w.Array(found.size() * 2);
  for (auto& [field, value] : found) {
    c.w.Bulk(field);
    c.w.Bulk(value);
  }
}

}  // namespace

void RegisterHashCommands(CommandTable* table) {
  constexpr KeyPositions kOne{1, 1, 1};
  for (const CommandRow& row : {
           CommandRow{"hset", -4, kWrite | kDenyOom | kFast | kHashField, kOne, HSet},
           CommandRow{"hmset", -4, kWrite | kDenyOom | kFast | kHashField, kOne, HMSet},
           CommandRow{"hsetnx", 4, kWrite | kDenyOom | kFast | kHashField, kOne, HSetNx},
           CommandRow{"hget", 3, kReadOnly | kFast | kHashField, kOne, HGet},
           CommandRow{"hmget", -3, kReadOnly | kFast | kHashField, kOne, HMGet},
           CommandRow{"hgetall", 2, kReadOnly, kOne, HGetAll},
           CommandRow{"hkeys", 2, kReadOnly, kOne, HKeys},
           CommandRow{"hvals", 2, kReadOnly, kOne, HVals},
           CommandRow{"hdel", -3, kWrite | kFast | kHashField, kOne, HDel},
           CommandRow{"hexists", 3, kReadOnly | kFast | kHashField, kOne, HExists},
           CommandRow{"hlen", 2, kReadOnly | kFast, kOne, HLen},
           CommandRow{"hstrlen", 3, kReadOnly | kFast | kHashField, kOne, HStrLen},
           CommandRow{"hincrby", 4, kWrite | kDenyOom | kFast | kHashField, kOne, HIncrBy},
           CommandRow{"hincrbyfloat", 4, kWrite | kDenyOom | kFast | kHashField, kOne,
                      HIncrByFloat},
           CommandRow{"hrandfield", -2, kReadOnly, kOne, HRandField},
           CommandRow{"hscan", -3, kReadOnly, kOne, HScan},
       }) {
    table->Add(row);
  }
}

}  // namespace shm::resp
