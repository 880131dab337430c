// The string commands (Redis's "string" group), on the library keyspace (shm/keyspace.h): type
// checks, increments and expiry are the keyspace's; this file parses and replies as Redis 7.0.
#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "internal.h"
#include "shm/transaction.h"

namespace shm::resp {
namespace {

constexpr std::string_view kNotFloat = "ERR value is not a valid float";

std::string InvalidExpire(const Call& c) {
  return "ERR invalid expire time in '" + Lower(c.args[0]) + "' command";
}

// Redis's getExpireMillisecondsOrReply: `text` in seconds (or ms), relative (or absolute), into
// an absolute wall-clock ms; false after replying the error.
bool ExpiryFromArg(Call& c, std::string_view text, bool seconds, bool relative, int64_t* at_ms) {
  int64_t value = 0;
  if (!ParseInt(text, &value)) {
    c.w.Error(kNotInteger);
    return false;
  }
  if (value <= 0 || (seconds && value > std::numeric_limits<int64_t>::max() / 1000)) {
    c.w.Error(InvalidExpire(c));
    return false;
  }
  if (seconds) value *= 1000;
  if (relative && !AddInt64(value, NowMs(), &value)) {
    c.w.Error(InvalidExpire(c));
    return false;
  }
  *at_ms = value;
  return true;
}

// SET's and GETEX's options (Redis's parseExtendedStringArgumentsOrReply, 7.0).
struct StringOptions {
  bool nx = false, xx = false, get = false, keepttl = false, persist = false;
  bool has_expire = false;
  std::string_view expire;  // The value of the last EX/PX/EXAT/PXAT.
  bool seconds = false, relative = false;
};

bool ParseStringOptions(Call& c, size_t from, bool for_set, StringOptions* o) {
  bool ex = false, px = false, exat = false, pxat = false;
  for (size_t j = from; j < c.args.size(); ++j) {
    std::string_view opt = c.args[j];
    bool has_next = j + 1 < c.args.size();
    bool any_expire_but = false;
    auto only = [&](bool mine) {  // No other expiry option (the same one again is allowed).
      any_expire_but = (ex && !mine) || (px && !mine) || (exat && !mine) || (pxat && !mine);
      return !any_expire_but;
    };
    if (for_set && EqualsIgnoreCase(opt, "nx") && !o->xx) {
      o->nx = true;
    } else if (for_set && EqualsIgnoreCase(opt, "xx") && !o->nx) {
      o->xx = true;
    } else if (for_set && EqualsIgnoreCase(opt, "get")) {
      o->get = true;
    } else if (for_set && EqualsIgnoreCase(opt, "keepttl") && !o->persist && !ex && !px && !exat &&
               !pxat) {
      o->keepttl = true;
    } else if (!for_set && EqualsIgnoreCase(opt, "persist") && !ex && !px && !exat && !pxat &&
               !o->keepttl) {
      o->persist = true;
    } else if (EqualsIgnoreCase(opt, "ex") && !o->keepttl && !o->persist && only(ex) && has_next) {
      ex = true;
      o->expire = c.args[++j];
      o->has_expire = true;
      o->seconds = o->relative = true;
    } else if (EqualsIgnoreCase(opt, "px") && !o->keepttl && !o->persist && only(px) && has_next) {
      px = true;
      o->expire = c.args[++j];
      o->has_expire = true;
      o->seconds = false;
      o->relative = true;
    } else if (EqualsIgnoreCase(opt, "exat") && !o->keepttl && !o->persist && only(exat) &&
               has_next) {
      exat = true;
      o->expire = c.args[++j];
      o->has_expire = true;
      o->seconds = true;
      o->relative = false;
    } else if (EqualsIgnoreCase(opt, "pxat") && !o->keepttl && !o->persist && only(pxat) &&
               has_next) {
      pxat = true;
      o->expire = c.args[++j];
      o->has_expire = true;
      o->seconds = o->relative = false;
    } else {
      c.w.Error(kSyntax);
      return false;
    }
  }
  return true;
}

void ReplyString(Call& c, const Status& s, const std::string& value) {
  if (s.ok()) return c.w.Bulk(value);
  if (s.IsNotFound()) return c.w.Null();
  ReplyStatus(c.w, s);
}

void Get(Call& c) {
  Keyspace* ks = KS(c);
  if (ks == nullptr) return;
  std::string value;
  ReplyString(c, ks->Get(c.args[1], &value), value);
}

void Set(Call& c) {
  StringOptions o;
  if (!ParseStringOptions(c, 3, true, &o)) return;
  StringSet options;
  if (o.has_expire) {
    int64_t at = 0;
    if (!ExpiryFromArg(c, o.expire, o.seconds, o.relative, &at)) return;
    options.expires_at_ms = at;
  }
  Keyspace* ks = KS(c);
  if (ks == nullptr) return;
  options.cond = o.nx   ? StringSet::Cond::kIfAbsent
                 : o.xx ? StringSet::Cond::kIfPresent
                        : StringSet::Cond::kAlways;
  options.keep_ttl = o.keepttl;
  options.get = o.get;
  StringSetResult result;
  Status s = ks->Set(c.args[1], c.args[2], options, &result);
  if (!s.ok()) return ReplyStatus(c.w, s);
  if (o.get) return result.old ? c.w.Bulk(*result.old) : c.w.Null();
  result.written ? c.w.Simple("OK") : c.w.Null();
}

void SetNx(Call& c) {
  Keyspace* ks = KS(c);
  if (ks == nullptr) return;
  StringSet options;
  options.cond = StringSet::Cond::kIfAbsent;
  StringSetResult result;
  Status s = ks->Set(c.args[1], c.args[2], options, &result);
  s.ok() ? c.w.Integer(result.written ? 1 : 0) : ReplyStatus(c.w, s);
}

void SetExGeneric(Call& c, bool seconds) {
  StringSet options;
  int64_t at = 0;
  if (!ExpiryFromArg(c, c.args[2], seconds, true, &at)) return;
  options.expires_at_ms = at;
  Keyspace* ks = KS(c);
  if (ks == nullptr) return;
  StringSetResult result;
  Status s = ks->Set(c.args[1], c.args[3], options, &result);
  s.ok() ? c.w.Simple("OK") : ReplyStatus(c.w, s);
}
void SetEx(Call& c) { SetExGeneric(c, true); }
void PSetEx(Call& c) { SetExGeneric(c, false); }

void GetSet(Call& c) {
  Keyspace* ks = KS(c);
  if (ks == nullptr) return;
  StringSet options;
  options.get = true;
  StringSetResult result;
  Status s = ks->Set(c.args[1], c.args[2], options, &result);
  if (!s.ok()) return ReplyStatus(c.w, s);
  result.old ? c.w.Bulk(*result.old) : c.w.Null();
}

void GetDel(Call& c) {
  Keyspace* ks = KS(c);
  if (ks == nullptr) return;
  std::optional<std::string> old;
  Status s = ks->UpdateString(c.args[1], [&](const std::string* current, int64_t, StringUpdate* u) {
    if (current == nullptr) return Status::OK();
    old = *current;
    u->action = StringUpdate::Action::kErase;
    return Status::OK();
  });
  if (!s.ok()) return ReplyStatus(c.w, s);
  old ? c.w.Bulk(*old) : c.w.Null();
}

// GETEX: options, then the key and its type, then the expiry's value (Redis's order).
void GetEx(Call& c) {
  StringOptions o;
  if (!ParseStringOptions(c, 2, false, &o)) return;
  Keyspace* ks = KS(c);
  if (ks == nullptr) return;
  std::string current_value;
  Status s = ks->Get(c.args[1], &current_value);
  if (s.IsNotFound()) return c.w.Null();
  if (!s.ok()) return ReplyStatus(c.w, s);
  std::optional<int64_t> at;
  if (o.has_expire) {
    int64_t when = 0;
    if (!ExpiryFromArg(c, o.expire, o.seconds, o.relative, &when)) return;
    at = when;
  }
  std::optional<std::string> value;
  s = ks->UpdateString(c.args[1], [&](const std::string* current, int64_t, StringUpdate* u) {
    if (current == nullptr) return Status::OK();
    value = *current;
    if (at && *at <= NowMs()) {
      u->action = StringUpdate::Action::kErase;
    } else if (at || o.persist) {
      u->action = StringUpdate::Action::kWrite;
      u->value = *current;
      u->expires_at_ms = at ? *at : 0;
    }
    return Status::OK();
  });
  if (!s.ok()) return ReplyStatus(c.w, s);
  value ? c.w.Bulk(*value) : c.w.Null();
}

void MGet(Call& c) {
  Keyspace* ks = KS(c);
  if (ks == nullptr) return;
  c.w.Array(c.args.size() - 1);
  for (size_t i = 1; i < c.args.size(); ++i) {
    std::string value;
    ks->Get(c.args[i], &value).ok() ? c.w.Bulk(value) : c.w.Null();
  }
}

// MGET of several keys reads them at one instant (as one read-only transaction).
void MGetKeys(Call& c) { c.args.size() <= 2 ? MGet(c) : Isolated<MGet>(c); }

// MSET and MSETNX key by key, for RunIsolated to make one transaction of (or to run under the
// keyspace's locks): inside MULTI/EXEC, and when SetPairsAtOnce gives up.
void MSetKeyByKey(Call& c) {
  Keyspace* ks = KS(c);
  if (ks == nullptr) return;
  for (size_t i = 1; i + 1 < c.args.size(); i += 2) {
    StringSetResult result;
    Status s = ks->Set(c.args[i], c.args[i + 1], StringSet(), &result);
    if (!s.ok()) return ReplyStatus(c.w, s);
  }
  c.w.Simple("OK");
}

void MSetNxKeyByKey(Call& c) {
  Keyspace* ks = KS(c);
  if (ks == nullptr) return;
  for (size_t i = 1; i + 1 < c.args.size(); i += 2) {
    KeyType type = KeyType::kNone;
    Status s = ks->Type(c.args[i], &type);
    if (!s.ok()) return ReplyStatus(c.w, s);
    if (type != KeyType::kNone) return c.w.Integer(0);
  }
  for (size_t i = 1; i + 1 < c.args.size(); i += 2) {  // As Redis: a repeated key's last wins.
    StringSetResult result;
    Status s = ks->Set(c.args[i], c.args[i + 1], StringSet(), &result);
    if (!s.ok()) return ReplyStatus(c.w, s);
  }
  c.w.Integer(1);
}

// MSET's (and MSETNX's, `only_if_none`) pairs staged straight into one shm::Transaction and
// committed, retried on a conflict: the same atomicity as RunIsolated's transaction (across
// keys and across a crash; MSETNX's reads validated by the same commit), without the generic
// scope a command of any shape needs (a std::function per key, the update's copies). False,
// with nothing applied or replied, when the pairs must go RunIsolated's way instead: contended
// past the attempts, near a transaction's limits, or a pair refused (its error is RunIsolated's
// to answer, after the pairs before it as ever).
bool SetPairsAtOnce(Call& c, Keyspace* ks, bool only_if_none) {
  const size_t pairs = (c.args.size() - 1) / 2;
  size_t bytes = 0;
  for (size_t i = 1; i < c.args.size(); ++i) bytes += c.args[i].size();
  if (pairs >= Transaction::kMaxOps / 4 || bytes >= Transaction::kMaxStagedBytes / 2) return false;
  constexpr int kAttempts = 16;  // RunIsolated's, before it takes the locks.
  for (int attempt = 0; attempt < kAttempts; ++attempt) {
    Transaction tx(c.segment());
    Status s;
    bool refused = false;  // MSETNX: some key exists.
    if (only_if_none) {
      for (size_t i = 1; i + 1 < c.args.size() && s.ok() && !refused; i += 2) {
        KeyType type = KeyType::kNone;
        s = tx.Type(*ks, c.args[i], &type);
        refused = s.ok() && type != KeyType::kNone;
      }
    }
    for (size_t i = 1; i + 1 < c.args.size() && s.ok() && !refused; i += 2) {
      StringSetResult result;  // A repeated key's last value wins: its stage replaces the first.
      s = tx.Set(*ks, c.args[i], c.args[i + 1], StringSet(), &result);
    }
    if (s.IsConflict()) continue;  // A key read twice changed in between.
    if (!s.ok()) return false;
    s = tx.Commit();  // Read-only when refused: it validates the reads.
    if (s.IsConflict()) continue;
    if (!s.ok()) {
      ReplyStatus(c.w, s);
    } else if (only_if_none) {
      c.w.Integer(refused ? 0 : 1);
    } else {
      c.w.Simple("OK");
    }
    return true;
  }
  return false;
}

// MSET and MSETNX are atomic across their keys (docs/resp.md): one transaction of the pairs,
// or RunIsolated's key-by-key way inside another transaction or when the pairs cannot be staged.
void SetPairs(Call& c, bool only_if_none) {
  if (c.args.size() % 2 != 1) return WrongArity(c);
  Keyspace* ks = KS(c);
  if (ks == nullptr) return;
  const bool nested = KeyspaceTransactionScope::Active() || KeyspaceExclusive::HeldByThisThread();
  if (!nested && SetPairsAtOnce(c, ks, only_if_none)) return;
  RunIsolated(c, {}, [&c, only_if_none] { only_if_none ? MSetNxKeyByKey(c) : MSetKeyByKey(c); });
}

void MSet(Call& c) { SetPairs(c, false); }
void MSetNx(Call& c) { SetPairs(c, true); }

Status TooLong() {
  return Status::InvalidArgument("string exceeds maximum allowed size (proto-max-bulk-len)");
}

void Append(Call& c) {
  Keyspace* ks = KS(c);
  if (ks == nullptr) return;
  size_t length = 0;
  Status s = ks->UpdateString(c.args[1], [&](const std::string* current, int64_t, StringUpdate* u) {
    size_t before = current != nullptr ? current->size() : 0;
    if (before + c.args[2].size() > Keyspace::kMaxValue) return TooLong();
    u->action = StringUpdate::Action::kWrite;
    u->value.reserve(before + c.args[2].size());
    if (current != nullptr) u->value = *current;
    u->value.append(c.args[2]);
    length = u->value.size();
    return Status::OK();
  });
  s.ok() ? c.w.Integer(static_cast<int64_t>(length)) : ReplyStatus(c.w, s);
}

void StrLen(Call& c) {
  Keyspace* ks = KS(c);
  if (ks == nullptr) return;
  std::string value;
  Status s = ks->Get(c.args[1], &value);
  if (s.ok() || s.IsNotFound()) return c.w.Integer(static_cast<int64_t>(value.size()));
  ReplyStatus(c.w, s);
}

void IncrBy(Call& c, int64_t by) {
  Keyspace* ks = KS(c);
  if (ks == nullptr) return;
  int64_t result = 0;
  Status s = ks->IncrBy(c.args[1], by, &result);
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
  if (!ParseInt(c.args[2], &by)) return c.w.Error(kNotInteger);
  if (by == std::numeric_limits<int64_t>::min()) return c.w.Error("ERR decrement would overflow");
  IncrBy(c, -by);
}

void IncrByFloat(Call& c) {
  Keyspace* ks = KS(c);
  if (ks == nullptr) return;
  std::string text;
  Status s = ks->UpdateString(c.args[1], [&](const std::string* current, int64_t, StringUpdate* u) {
    long double value = 0, by = 0;
    if ((current != nullptr && !ParseLongDouble(*current, &value)) ||
        !ParseLongDouble(c.args[2], &by)) {
      return Status::InvalidArgument(std::string(kNotFloat.substr(4)));
    }
    long double result = value + by;
    if (std::isnan(result) || std::isinf(result)) {
      return Status::InvalidArgument("increment would produce NaN or Infinity");
    }
    text = FormatLongDouble(result);
    u->action = StringUpdate::Action::kWrite;
    u->value = text;
    return Status::OK();
  });
  s.ok() ? c.w.Bulk(text) : ReplyStatus(c.w, s);
}

// GETRANGE and SUBSTR (Redis's getrangeCommand).
void GetRange(Call& c) {
  int64_t start = 0, end = 0;
  if (!ParseInt(c.args[2], &start) || !ParseInt(c.args[3], &end)) return c.w.Error(kNotInteger);
  Keyspace* ks = KS(c);
  if (ks == nullptr) return;
  std::string value;
  Status s = ks->Get(c.args[1], &value);
  if (!s.ok() && !s.IsNotFound()) return ReplyStatus(c.w, s);
  const int64_t n = static_cast<int64_t>(value.size());
  if (start < 0 && end < 0 && start > end) return c.w.Bulk("");
  if (start < 0) start = n + start;
  if (end < 0) end = n + end;
  start = std::max<int64_t>(start, 0);
  end = std::max<int64_t>(end, 0);
  if (end >= n) end = n - 1;
  if (start > end || n == 0) return c.w.Bulk("");
  c.w.Bulk(std::string_view(value).substr(static_cast<size_t>(start),
                                          static_cast<size_t>(end - start + 1)));
}

void SetRange(Call& c) {
  int64_t offset = 0;
  if (!ParseInt(c.args[2], &offset)) return c.w.Error(kNotInteger);
  if (offset < 0) return c.w.Error("ERR offset is out of range");
  Keyspace* ks = KS(c);
  if (ks == nullptr) return;
  std::string_view piece = c.args[3];
  int64_t length = 0;
  Status s = ks->UpdateString(c.args[1], [&](const std::string* current, int64_t, StringUpdate* u) {
    length = current != nullptr ? static_cast<int64_t>(current->size()) : 0;
    if (piece.empty()) return Status::OK();  // Nothing to write, nothing created.
    if (static_cast<uint64_t>(offset) + piece.size() > Keyspace::kMaxValue) return TooLong();
    u->action = StringUpdate::Action::kWrite;
    if (current != nullptr) u->value = *current;
    size_t end = static_cast<size_t>(offset) + piece.size();
    if (u->value.size() < end) u->value.resize(end, '\0');
    u->value.replace(static_cast<size_t>(offset), piece.size(), piece);
    length = static_cast<int64_t>(u->value.size());
    return Status::OK();
  });
  s.ok() ? c.w.Integer(length) : ReplyStatus(c.w, s);
}

// LCS key1 key2 [LEN] [IDX] [MINMATCHLEN len] [WITHMATCHLEN] (Redis's lcsCommand).
void Lcs(Call& c) {
  Keyspace* ks = KS(c);
  if (ks == nullptr) return;
  std::string a, b;
  for (auto [key, out] : {std::pair{c.args[1], &a}, std::pair{c.args[2], &b}}) {
    Status s = ks->Get(key, out);
    if (s.IsWrongType()) {
      return c.w.Error("ERR The specified keys must contain string values");
    }
    if (!s.ok() && !s.IsNotFound()) return ReplyStatus(c.w, s);
  }
  bool get_len = false, get_idx = false, with_len = false;
  int64_t min_len = 0;
  for (size_t j = 3; j < c.args.size(); ++j) {
    std::string opt = Lower(c.args[j]);
    if (opt == "idx") {
      get_idx = true;
    } else if (opt == "len") {
      get_len = true;
    } else if (opt == "withmatchlen") {
      with_len = true;
    } else if (opt == "minmatchlen" && j + 1 < c.args.size()) {
      if (!ParseInt(c.args[++j], &min_len)) return c.w.Error(kNotInteger);
      min_len = std::max<int64_t>(min_len, 0);
    } else {
      return c.w.Error(kSyntax);
    }
  }
  if (get_idx && get_len) {
    return c.w.Error("ERR If you want both the length and indexes, please just use IDX.");
  }
  // The table is (|a|+1) x (|b|+1) 32-bit cells: at most 64 MiB of transient memory.
  if ((a.size() + 1) * (b.size() + 1) > (uint64_t{1} << 24)) {
    return c.w.Error(
        "ERR Insufficient memory, transient memory for LCS exceeds proto-max-bulk-len");
  }
  const size_t n = a.size(), m = b.size();
  std::vector<uint32_t> dp((n + 1) * (m + 1), 0);
  auto at = [&](size_t i, size_t j) -> uint32_t& { return dp[i * (m + 1) + j]; };
  for (size_t i = 1; i <= n; ++i) {
    for (size_t j = 1; j <= m; ++j) {
      at(i, j) = a[i - 1] == b[j - 1] ? at(i - 1, j - 1) + 1 : std::max(at(i - 1, j), at(i, j - 1));
    }
  }
  const uint32_t total = at(n, m);
  if (get_len) return c.w.Integer(total);
  std::string result(total, '\0');
  struct Match {
    size_t a_start, a_end, b_start, b_end;
  };
  std::vector<Match> matches;
  size_t i = n, j = m, idx = total;
  bool open = false;
  Match current{};
  auto close = [&]() {
    if (open && static_cast<int64_t>(current.a_end - current.a_start + 1) >= min_len) {
      matches.push_back(current);
    }
    open = false;
  };
  while (i > 0 && j > 0) {
    if (a[i - 1] == b[j - 1]) {
      result[--idx] = a[i - 1];
      if (open && current.a_start == i && current.b_start == j) {
        current.a_start = i - 1;
        current.b_start = j - 1;
      } else {
        close();
        current = Match{i - 1, i - 1, j - 1, j - 1};
        open = true;
      }
      --i;
      --j;
    } else if (at(i - 1, j) > at(i, j - 1)) {
      --i;
    } else {
      --j;
    }
  }
  close();
  if (!get_idx) return c.w.Bulk(result);
  c.w.Map(2);
  c.w.Bulk("matches");
  c.w.Array(matches.size());
  for (const Match& match : matches) {
    c.w.Array(with_len ? 3 : 2);
    c.w.Array(2);
    c.w.Integer(static_cast<int64_t>(match.a_start));
    c.w.Integer(static_cast<int64_t>(match.a_end));
    c.w.Array(2);
    c.w.Integer(static_cast<int64_t>(match.b_start));
    c.w.Integer(static_cast<int64_t>(match.b_end));
    if (with_len) c.w.Integer(static_cast<int64_t>(match.a_end - match.a_start + 1));
  }
  c.w.Bulk("len");
  c.w.Integer(total);
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
           CommandRow{"mget", -2, kReadOnly | kFast, {1, -1, 1}, MGetKeys},
           CommandRow{"mset", -3, kWrite | kDenyOom, {1, -1, 2}, MSet},
           CommandRow{"msetnx", -3, kWrite | kDenyOom, {1, -1, 2}, MSetNx},
           CommandRow{"append", 3, kWrite | kDenyOom | kFast, kOne, Append},
           CommandRow{"strlen", 2, kReadOnly | kFast, kOne, StrLen},
           CommandRow{"incr", 2, kWrite | kDenyOom | kFast, kOne, Incr},
           CommandRow{"decr", 2, kWrite | kDenyOom | kFast, kOne, Decr},
           CommandRow{"incrby", 3, kWrite | kDenyOom | kFast, kOne, IncrByCommand},
           CommandRow{"decrby", 3, kWrite | kDenyOom | kFast, kOne, DecrByCommand},
           CommandRow{"incrbyfloat", 3, kWrite | kDenyOom | kFast, kOne, IncrByFloat},
           CommandRow{"getrange", 4, kReadOnly, kOne, GetRange},
           CommandRow{"substr", 4, kReadOnly, kOne, GetRange},
           CommandRow{"setrange", 4, kWrite | kDenyOom, kOne, SetRange},
           CommandRow{"lcs", -3, kReadOnly, {1, 2, 1}, Lcs},
       }) {
    table->Add(row);
  }
}

}  // namespace shm::resp
