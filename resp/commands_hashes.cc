// The hash commands (Redis's "hash" group).
#include <string>
#include <vector>

#include "internal.h"

namespace shm::resp {
namespace {

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
  ReplyMissing(c, s, [&] { c.w.Null(); });
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
    return ReplyMissing(c, s, [&] { fields&& values ? c.w.Map(0) : c.w.Array(0); });
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
  if (!s.ok()) return ReplyMissing(c, s, [&] { c.w.Integer(0); });
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
  ReplyMissing(c, s, [&] { c.w.Integer(0); });
}

void HLen(Call& c) {
  DictStats stats;
  Status s = WithHash(c.segment(), c.args[1], false, [&](Dict& d) { return d.Stats(&stats); });
  if (!s.ok()) return ReplyMissing(c, s, [&] { c.w.Integer(0); });
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

void RegisterHashCommands(CommandTable* table) {
  constexpr KeyPositions kOne{1, 1, 1};
  for (const CommandRow& row : {
           CommandRow{"hset", -4, kWrite | kDenyOom | kFast, kOne, HSet},
           CommandRow{"hmset", -4, kWrite | kDenyOom | kFast, kOne, HMSet},
           CommandRow{"hsetnx", 4, kWrite | kDenyOom | kFast, kOne, HSetNx},
           CommandRow{"hget", 3, kReadOnly | kFast, kOne, HGet},
           CommandRow{"hmget", -3, kReadOnly | kFast, kOne, HMGet},
           CommandRow{"hgetall", 2, kReadOnly, kOne, HGetAll},
           CommandRow{"hkeys", 2, kReadOnly, kOne, HKeys},
           CommandRow{"hvals", 2, kReadOnly, kOne, HVals},
           CommandRow{"hdel", -3, kWrite | kFast, kOne, HDel},
           CommandRow{"hexists", 3, kReadOnly | kFast, kOne, HExists},
           CommandRow{"hlen", 2, kReadOnly | kFast, kOne, HLen},
           CommandRow{"hincrby", 4, kWrite | kDenyOom | kFast, kOne, HIncrBy},
       }) {
    table->Add(row);
  }
}

}  // namespace shm::resp
