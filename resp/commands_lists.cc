// The list commands (Redis's "list" group), blocking ones included, on the library keyspace: a
// list is removed with its last item, and an edit in the middle (LSET, LINSERT, LREM, LTRIM)
// publishes a whole new list in one commit (Keyspace::RewriteList).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "internal.h"
#include "shm/transaction.h"

namespace shm::resp {
namespace {

using Access = Keyspace::Access;

// "Unchanged": an edit that found nothing to do, so RewriteList publishes nothing.
Status Unchanged() { return Status::AlreadyExists("unchanged"); }

bool ParseEnd(std::string_view text, List::End* end) {
  if (EqualsIgnoreCase(text, "left")) {
    *end = List::End::kLeft;
  } else if (EqualsIgnoreCase(text, "right")) {
    *end = List::End::kRight;
  } else {
    return false;
  }
  return true;
}

void Push(Call& c, List::End end, bool only_existing) {
  Keyspace* ks = KS(c);
  if (ks == nullptr) return;
  uint64_t length = 0;
  Status s =
      ks->WithList(c.args[1], only_existing ? Access::kWrite : Access::kCreate, [&](List& list) {
        for (size_t i = 2; i < c.args.size(); ++i) {
          SHM_RETURN_IF_ERROR(list.Push(end, c.args[i], &length));
        }
        return Status::OK();
      });
  if (s.IsNotFound()) return c.w.Integer(0);
  s.ok() ? c.w.Integer(static_cast<int64_t>(length)) : ReplyStatus(c.w, s);
}
void LPush(Call& c) { Push(c, List::End::kLeft, false); }
void RPush(Call& c) { Push(c, List::End::kRight, false); }
void LPushX(Call& c) { Push(c, List::End::kLeft, true); }
void RPushX(Call& c) { Push(c, List::End::kRight, true); }

// Pops up to `count` items from `key`'s `end`; NotFound when the key is absent.
Status PopItems(Keyspace& ks, std::string_view key, List::End end, int64_t count,
                std::vector<std::string>* items) {
  return ks.WithList(key, Access::kWrite, [&](List& list) {
    for (int64_t i = 0; i < count; ++i) {
      std::string item;
      bool got = false;
      SHM_RETURN_IF_ERROR(list.Pop(end, std::chrono::milliseconds(0), &item, &got));
      if (!got) break;
      items->push_back(std::move(item));
    }
    return Status::OK();
  });
}

void Pop(Call& c, List::End end) {
  if (c.args.size() > 3) return WrongArity(c);
  bool with_count = c.args.size() == 3;
  int64_t count = 1;
  if (with_count && (!ParseInt(c.args[2], &count) || count < 0)) {
    return c.w.Error("ERR value is out of range, must be positive");
  }
  Keyspace* ks = KS(c);
  if (ks == nullptr) return;
  if (!with_count) {  // The common LPOP/RPOP: one item, no vector to allocate and free.
    std::string item;
    bool got = false;
    Status s = ks->WithList(c.args[1], Access::kWrite, [&](List& list) {
      return list.Pop(end, std::chrono::milliseconds(0), &item, &got);
    });
    if (s.IsNotFound() || (s.ok() && !got)) return c.w.Null();
    return s.ok() ? c.w.Bulk(item) : ReplyStatus(c.w, s);
  }
  std::vector<std::string> items;
  Status s = count == 0 ? ks->WithList(c.args[1], Access::kRead, [](List&) { return Status::OK(); })
                        : PopItems(*ks, c.args[1], end, count, &items);
  if (s.IsNotFound()) return c.w.NullArray();
  if (!s.ok()) return ReplyStatus(c.w, s);
  c.w.Array(items.size());
  for (const std::string& item : items) c.w.Bulk(item);
}
void LPop(Call& c) { Pop(c, List::End::kLeft); }
void RPop(Call& c) { Pop(c, List::End::kRight); }

void LLen(Call& c) {
  Keyspace* ks = KS(c);
  if (ks == nullptr) return;
  uint64_t length = 0;
  Status s = ks->WithList(c.args[1], Access::kRead, [&](List& l) { return l.Length(&length); });
  if (s.IsNotFound()) return c.w.Integer(0);
  s.ok() ? c.w.Integer(static_cast<int64_t>(length)) : ReplyStatus(c.w, s);
}

// List::Range answers at most kMaxRangeItems per call, so a longer range is read in chunks,
// under the key's lock, up to kMaxRangeReplyBytes.
constexpr size_t kMaxRangeReplyBytes = size_t{64} << 20;

Status ReadRange(List& l, int64_t start, int64_t stop, std::vector<std::string>* items,
                 bool* too_big) {
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
      items->push_back(std::move(item));
    }
    if (bytes > kMaxRangeReplyBytes) {
      *too_big = true;
      return Status::OK();
    }
    if (!truncated) break;
  }
  return Status::OK();
}

// LRANGE's reply written from the list under its lock: the array header once (the count is
// known there), then each item, with no copy in between. A reply past kMaxRangeReplyBytes stops
// the visit and is dropped (LRange answers an error instead).
class RangeReply final : public List::RangeVisitor {
 public:
  explicit RangeReply(ReplyWriter* w) : w_(w), mark_(w->buffer()->size()) {}

  void Begin(uint64_t count) override {
    w_->buffer()->resize(mark_);  // A visit run again (WithList's retry) starts over.
    bytes_ = 0;
    w_->Array(count);
  }
  bool Item(std::string_view item) override {
    bytes_ += item.size();
    if (bytes_ > kMaxRangeReplyBytes) {
      too_big_ = true;
      return false;
    }
    w_->Bulk(item);
    return true;
  }
  // Drops what the visit wrote (an error or a reply too big is answered instead).
  void Drop() { w_->buffer()->resize(mark_); }
  bool too_big() const { return too_big_; }

 private:
  ReplyWriter* w_;
  size_t mark_;
  size_t bytes_ = 0;
  bool too_big_ = false;
};

void LRange(Call& c) {
  int64_t start = 0, stop = 0;
  if (!ParseInt(c.args[2], &start) || !ParseInt(c.args[3], &stop)) return c.w.Error(kNotInteger);
  Keyspace* ks = KS(c);
  if (ks == nullptr) return;
  RangeReply reply(&c.w);
  Status s = ks->WithList(c.args[1], Access::kRead,
                          [&](List& l) { return l.VisitRange(start, stop, &reply); });
  if (s.ok() && !reply.too_big()) return;
  reply.Drop();
  if (reply.too_big()) {
    return c.w.Error("ERR LRANGE reply would pass 64 MiB; ask for a smaller range");
  }
  if (s.IsNotFound()) return c.w.Array(0);
  ReplyStatus(c.w, s);
}

// LINDEX: the key's type before the index (Redis's order).
void LIndex(Call& c) {
  Keyspace* ks = KS(c);
  if (ks == nullptr) return;
  std::vector<std::string> items;
  bool bad_index = false;
  Status s = ks->WithList(c.args[1], Access::kRead, [&](List& l) {
    int64_t index = 0;
    if (!ParseInt(c.args[2], &index)) {
      bad_index = true;
      return Status::OK();
    }
    return l.Range(index, index, &items);
  });
  if (s.IsNotFound()) return c.w.Null();
  if (!s.ok()) return ReplyStatus(c.w, s);
  if (bad_index) return c.w.Error(kNotInteger);
  items.empty() ? c.w.Null() : c.w.Bulk(items[0]);
}

void LSet(Call& c) {
  Keyspace* ks = KS(c);
  if (ks == nullptr) return;
  std::string error;
  Status s = ks->RewriteList(c.args[1], [&](std::vector<std::string>* items) {
    int64_t index = 0;
    if (!ParseInt(c.args[2], &index)) {
      error = kNotInteger;
      return Unchanged();
    }
    const int64_t n = static_cast<int64_t>(items->size());
    if (index < 0) index += n;
    if (index < 0 || index >= n) {
      error = "ERR index out of range";
      return Unchanged();
    }
    (*items)[static_cast<size_t>(index)].assign(c.args[3]);
    return Status::OK();
  });
  if (s.IsNotFound()) return c.w.Error("ERR no such key");
  if (!error.empty()) return c.w.Error(error);
  s.ok() ? c.w.Simple("OK") : ReplyStatus(c.w, s);
}

void LInsert(Call& c) {
  bool after = false;
  if (EqualsIgnoreCase(c.args[2], "after")) {
    after = true;
  } else if (!EqualsIgnoreCase(c.args[2], "before")) {
    return c.w.Error(kSyntax);
  }
  Keyspace* ks = KS(c);
  if (ks == nullptr) return;
  int64_t length = -1;
  Status s = ks->RewriteList(c.args[1], [&](std::vector<std::string>* items) {
    auto it = std::find(items->begin(), items->end(), c.args[3]);
    if (it == items->end()) return Unchanged();
    items->insert(after ? it + 1 : it, std::string(c.args[4]));
    length = static_cast<int64_t>(items->size());
    return Status::OK();
  });
  if (s.IsNotFound()) return c.w.Integer(0);
  if (s.IsAlreadyExists()) return c.w.Integer(-1);
  s.ok() ? c.w.Integer(length) : ReplyStatus(c.w, s);
}

void LRem(Call& c) {
  int64_t count = 0;
  if (!ParseInt(c.args[2], &count)) return c.w.Error(kNotInteger);
  Keyspace* ks = KS(c);
  if (ks == nullptr) return;
  int64_t removed = 0;
  Status s = ks->RewriteList(c.args[1], [&](std::vector<std::string>* items) {
    const uint64_t limit = count == 0  ? UINT64_MAX
                           : count < 0 ? 0 - static_cast<uint64_t>(count)
                                       : static_cast<uint64_t>(count);
    std::vector<bool> drop(items->size(), false);
    uint64_t found = 0;
    for (size_t k = 0; k < items->size() && found < limit; ++k) {
      size_t i = count < 0 ? items->size() - 1 - k : k;
      if ((*items)[i] == c.args[3]) {
        drop[i] = true;
        ++found;
      }
    }
    if (found == 0) return Unchanged();
    std::vector<std::string> kept;
    for (size_t i = 0; i < items->size(); ++i) {
      if (!drop[i]) kept.push_back(std::move((*items)[i]));
    }
    *items = std::move(kept);
    removed = static_cast<int64_t>(found);
    return Status::OK();
  });
  if (s.IsNotFound() || s.IsAlreadyExists()) return c.w.Integer(0);
  s.ok() ? c.w.Integer(removed) : ReplyStatus(c.w, s);
}

void LTrim(Call& c) {
  int64_t start = 0, end = 0;
  if (!ParseInt(c.args[2], &start) || !ParseInt(c.args[3], &end)) return c.w.Error(kNotInteger);
  Keyspace* ks = KS(c);
  if (ks == nullptr) return;
  Status s = ks->RewriteList(c.args[1], [&](std::vector<std::string>* items) {
    const int64_t n = static_cast<int64_t>(items->size());
    int64_t first = start < 0 ? n + start : start;
    int64_t last = end < 0 ? n + end : end;
    first = std::max<int64_t>(first, 0);
    if (first > last || first >= n) {
      items->clear();
      return Status::OK();
    }
    last = std::min<int64_t>(last, n - 1);
    if (first == 0 && last == n - 1) return Unchanged();
    std::vector<std::string> kept(std::make_move_iterator(items->begin() + first),
                                  std::make_move_iterator(items->begin() + last + 1));
    *items = std::move(kept);
    return Status::OK();
  });
  if (!s.ok() && !s.IsNotFound() && !s.IsAlreadyExists()) return ReplyStatus(c.w, s);
  c.w.Simple("OK");
}

void LPos(Call& c) {
  int64_t rank = 1, count = -1, maxlen = 0;
  for (size_t j = 3; j < c.args.size(); j += 2) {
    std::string opt = Lower(c.args[j]);
    if (j + 1 >= c.args.size()) return c.w.Error(kSyntax);
    int64_t value = 0;
    bool integer = ParseInt(c.args[j + 1], &value);
    if (opt == "rank") {
      if (!integer) return c.w.Error(kNotInteger);
      if (value == 0) {
        return c.w.Error(
            "ERR RANK can't be zero: use 1 to start from the first match, 2 from the second ... "
            "or use negative to start from the end of the list");
      }
      rank = value;
    } else if (opt == "count") {
      if (!integer || value < 0) return c.w.Error("ERR COUNT can't be negative");
      count = value;
    } else if (opt == "maxlen") {
      if (!integer || value < 0) return c.w.Error("ERR MAXLEN can't be negative");
      maxlen = value;
    } else {
      return c.w.Error(kSyntax);
    }
  }
  Keyspace* ks = KS(c);
  if (ks == nullptr) return;
  std::vector<std::string> items;
  bool too_big = false;
  Status s = ks->WithList(c.args[1], Access::kRead,
                          [&](List& l) { return ReadRange(l, 0, -1, &items, &too_big); });
  if (s.IsNotFound()) return count != -1 ? c.w.Array(0) : c.w.Null();
  if (!s.ok()) return ReplyStatus(c.w, s);
  std::vector<int64_t> found;
  const int64_t n = static_cast<int64_t>(items.size());
  // Matches to pass over first (|rank| - 1, computed without negating INT64_MIN).
  uint64_t skip = rank > 0 ? static_cast<uint64_t>(rank) - 1 : static_cast<uint64_t>(-(rank + 1));
  for (int64_t k = 0; k < n && (maxlen == 0 || k < maxlen); ++k) {
    int64_t i = rank > 0 ? k : n - 1 - k;
    if (items[static_cast<size_t>(i)] != c.args[2]) continue;
    if (skip > 0) {
      --skip;
      continue;
    }
    found.push_back(i);
    if (count != 0 && static_cast<int64_t>(found.size()) >= std::max<int64_t>(count, 1)) break;
  }
  if (count == -1) return found.empty() ? c.w.Null() : c.w.Integer(found[0]);
  c.w.Array(found.size());
  for (int64_t i : found) c.w.Integer(i);
}

// Moves one item from `src` to `dst` (LMOVE); *moved false when `src` is absent. The source's and
// destination's types are checked before anything moves. Run inside a transaction (RunIsolated,
// MoveItemAtomically), the pop and the push are one commit.
Status MoveItem(Keyspace& ks, std::string_view src, std::string_view dst, List::End from,
                List::End to, std::string* item, bool* moved) {
  *moved = false;
  KeyType type = KeyType::kNone;
  SHM_RETURN_IF_ERROR(ks.Type(src, &type));
  if (type == KeyType::kNone) return Status::OK();
  if (type != KeyType::kList) return Status::WrongType("source");
  SHM_RETURN_IF_ERROR(ks.Type(dst, &type));
  if (type != KeyType::kNone && type != KeyType::kList) return Status::WrongType("destination");
  std::vector<std::string> items;
  Status s = PopItems(ks, src, from, 1, &items);
  if (s.IsNotFound() || (s.ok() && items.empty())) return Status::OK();
  SHM_RETURN_IF_ERROR(s);
  *item = std::move(items[0]);
  s = ks.WithList(dst, Access::kCreate, [&](List& list) { return list.Push(to, *item); });
  if (!s.ok()) {  // The destination changed type meanwhile: the item goes back.
    ks.WithList(src, Access::kCreate, [&](List& list) { return list.Push(from, *item); });
    return s;
  }
  *moved = true;
  return Status::OK();
}

// MoveItem as one transaction of its own (BLMOVE's retries run outside any command's): retried
// on a conflict, and run under every shard lock of the keyspace when it cannot be staged.
Status MoveItemAtomically(Segment* segment, Keyspace& ks, std::string_view src,
                          std::string_view dst, List::End from, List::End to, std::string* item,
                          bool* moved) {
  if (KeyspaceTransactionScope::Active() || KeyspaceExclusive::HeldByThisThread()) {
    return MoveItem(ks, src, dst, from, to, item, moved);
  }
  constexpr int kAttempts = 16;
  for (int attempt = 0; attempt < kAttempts; ++attempt) {
    Transaction tx(segment);
    Status s;
    bool unsupported = false;
    {
      KeyspaceTransactionScope scope(&tx);
      s = MoveItem(ks, src, dst, from, to, item, moved);
      unsupported = scope.unsupported();
    }
    if (unsupported) break;
    if (s.ok()) s = tx.Commit();
    if (!s.IsConflict()) {
      if (!s.ok()) *moved = false;
      return s;
    }
  }
  KeyspaceExclusive locks;
  SHM_RETURN_IF_ERROR(locks.Lock(ks));
  return MoveItem(ks, src, dst, from, to, item, moved);
}

void LMoveGeneric(Call& c, List::End from, List::End to) {
  Keyspace* ks = KS(c);
  if (ks == nullptr) return;
  std::string item;
  bool moved = false;
  Status s = MoveItem(*ks, c.args[1], c.args[2], from, to, &item, &moved);
  if (!s.ok()) return ReplyStatus(c.w, s);
  moved ? c.w.Bulk(item) : c.w.Null();
}
void LMove(Call& c) {
  List::End from, to;
  if (!ParseEnd(c.args[3], &from) || !ParseEnd(c.args[4], &to)) return c.w.Error(kSyntax);
  LMoveGeneric(c, from, to);
}
void RPopLPush(Call& c) { LMoveGeneric(c, List::End::kRight, List::End::kLeft); }

// Parses LMPOP's "numkeys key... LEFT|RIGHT [COUNT n]" from args[first]; false after replying.
bool ParseMultiPop(Call& c, size_t first, BlockedPop* pop) {
  int64_t numkeys = 0;
  if (!ParseInt(c.args[first], &numkeys) || numkeys < 1) {
    c.w.Error("ERR numkeys should be greater than 0");
    return false;
  }
  const size_t where = first + 1 + static_cast<size_t>(std::min<int64_t>(numkeys, 1 << 20));
  if (numkeys >= static_cast<int64_t>(c.args.size()) || where >= c.args.size() ||
      !ParseEnd(c.args[where], &pop->end)) {
    c.w.Error(kSyntax);
    return false;
  }
  pop->count = -1;
  for (size_t j = where + 1; j < c.args.size(); ++j) {
    if (pop->count == -1 && EqualsIgnoreCase(c.args[j], "count") && j + 1 < c.args.size()) {
      if (!ParseInt(c.args[++j], &pop->count) || pop->count < 1) {
        c.w.Error("ERR count should be greater than 0");
        return false;
      }
    } else {
      c.w.Error(kSyntax);
      return false;
    }
  }
  if (pop->count == -1) pop->count = 1;
  for (size_t i = first + 1; i < where; ++i) pop->keys.emplace_back(c.args[i]);
  pop->kind = BlockedPop::Kind::kMultiPop;
  return true;
}

// Whether a key the pop takes from holds items (of a list).
bool AnyItems(Call& c, const BlockedPop& blocked) {
  Keyspace* ks = KeyspaceOf(c.segment(), c.client->db, true);
  for (const std::string& key : blocked.keys) {
    uint64_t length = 0;
    if (ks != nullptr &&
        ks->WithList(key, Access::kRead, [&](List& l) { return l.Length(&length); }).ok() &&
        length > 0) {
      return true;
    }
  }
  return false;
}

// Starts a blocking command: answers at once when it can, else leaves it to the session.
void Block(Call& c, BlockedPop blocked, std::string_view timeout) {
  double seconds = 0;
  if (!ParseDouble(timeout, &seconds) || std::isnan(seconds)) {
    return c.w.Error("ERR timeout is not a float or out of range");
  }
  if (seconds < 0) return c.w.Error("ERR timeout is negative");
  auto now = std::chrono::steady_clock::now();
  blocked.deadline = seconds == 0 || seconds > 1e9
                         ? std::chrono::steady_clock::time_point::max()
                         : now + std::chrono::milliseconds(static_cast<int64_t>(seconds * 1000));
  if (!c.may_block) blocked.deadline = now;
  if (c.may_block && AnyItems(c, blocked) && BlockLines(c.segment()).BarrierMembers() > 1) {
    blocked.first_try = true;  // In line first, then the barrier, then the try (BlockedPop).
    *c.blocked = std::move(blocked);
    c.block = true;
    return;
  }
  // Not in line yet: it may take only from keys no blocked pop waits on (they come first).
  const BlockLines::Place none;
  if (TryBlockedPop(c.config, c.client, blocked, &none, c.w.buffer())) return;
  *c.blocked = std::move(blocked);
  c.block = true;
}

void LMPop(Call& c) {
  BlockedPop pop;
  if (!ParseMultiPop(c, 1, &pop)) return;
  pop.deadline = std::chrono::steady_clock::time_point::min();
  TryBlockedPop(c.config, c.client, pop, nullptr, c.w.buffer());
}

void BLMPop(Call& c) {
  BlockedPop pop;
  if (!ParseMultiPop(c, 2, &pop)) return;
  Block(c, std::move(pop), c.args[1]);
}

void BlockingPop(Call& c, List::End end) {
  BlockedPop blocked;
  blocked.end = end;
  for (size_t i = 1; i + 1 < c.args.size(); ++i) blocked.keys.emplace_back(c.args[i]);
  Block(c, std::move(blocked), c.args.back());
}
void BLPop(Call& c) { BlockingPop(c, List::End::kLeft); }
void BRPop(Call& c) { BlockingPop(c, List::End::kRight); }

void BlockingMove(Call& c, List::End from, List::End to, std::string_view timeout) {
  BlockedPop blocked;
  blocked.kind = BlockedPop::Kind::kMove;
  blocked.keys.emplace_back(c.args[1]);
  blocked.destination = std::string(c.args[2]);
  blocked.end = from;
  blocked.to = to;
  Block(c, std::move(blocked), timeout);
}
void BLMove(Call& c) {
  List::End from, to;
  if (!ParseEnd(c.args[3], &from) || !ParseEnd(c.args[4], &to)) return c.w.Error(kSyntax);
  BlockingMove(c, from, to, c.args[5]);
}
void BRPopLPush(Call& c) { BlockingMove(c, List::End::kRight, List::End::kLeft, c.args[3]); }

}  // namespace

void RegisterListCommands(CommandTable* table) {
  constexpr KeyPositions kOne{1, 1, 1};
  for (const CommandRow& row : {
           CommandRow{"lpush", -3, kWrite | kDenyOom | kFast, kOne, LPush},
           CommandRow{"rpush", -3, kWrite | kDenyOom | kFast, kOne, RPush},
           CommandRow{"lpushx", -3, kWrite | kDenyOom | kFast, kOne, LPushX},
           CommandRow{"rpushx", -3, kWrite | kDenyOom | kFast, kOne, RPushX},
           CommandRow{"lpop", -2, kWrite | kFast, kOne, LPop},
           CommandRow{"rpop", -2, kWrite | kFast, kOne, RPop},
           CommandRow{"llen", 2, kReadOnly | kFast, kOne, LLen},
           CommandRow{"lrange", 4, kReadOnly, kOne, LRange},
           CommandRow{"lindex", 3, kReadOnly, kOne, LIndex},
           CommandRow{"lset", 4, kWrite | kDenyOom, kOne, LSet},
           CommandRow{"linsert", 5, kWrite | kDenyOom, kOne, LInsert},
           CommandRow{"lrem", 4, kWrite, kOne, LRem},
           CommandRow{"ltrim", 4, kWrite, kOne, LTrim},
           CommandRow{"lpos", -3, kReadOnly, kOne, LPos},
           CommandRow{"lmove", 5, kWrite | kDenyOom, {1, 2, 1}, Isolated<LMove>},
           CommandRow{"rpoplpush", 3, kWrite | kDenyOom, {1, 2, 1}, Isolated<RPopLPush>},
           CommandRow{"lmpop", -4, kWrite, {2, -3, 1}, LMPop},
           CommandRow{"blpop", -3, kWrite | kNoScript | kBlocking, {1, -2, 1}, BLPop},
           CommandRow{"brpop", -3, kWrite | kNoScript | kBlocking, {1, -2, 1}, BRPop},
           CommandRow{"blmove", 6, kWrite | kDenyOom | kNoScript | kBlocking, {1, 2, 1}, BLMove},
           CommandRow{
               "brpoplpush", 4, kWrite | kDenyOom | kNoScript | kBlocking, {1, 2, 1}, BRPopLPush},
           CommandRow{"blmpop", -5, kWrite | kBlocking, {3, -3, 1}, BLMPop},
       }) {
    table->Add(row);
  }
}

bool TryBlockedPop(const RespConfig& config, RespClient* client, const BlockedPop& blocked,
                   const BlockLines::Place* place, std::string* out) {
  ReadyListSink ready(&client->pushed);  // A move's destination: served before its answer.
  ReplyWriter w(out, client->protocol);
  Keyspace* ks = KeyspaceOf(config.segment, client->db, true);
  if (ks == nullptr) {
    w.Error("ERR the keyspace cannot be opened");
    return true;
  }
  BlockLines lines(config.segment);
  // Once blocked, a key of another type is not ready (Redis serves only lists that became ready);
  // the first try answers WRONGTYPE.
  const bool retry = place != nullptr && place->valid() && !blocked.first_try;
  auto may_take = [&](std::string_view key) {
    if (place != nullptr && !lines.MayTake(*place, client->db, key)) return false;
    KeyType type = KeyType::kList;
    return !retry || (ks->Type(key, &type).ok() && type == KeyType::kList);
  };
  if (blocked.kind == BlockedPop::Kind::kMove) {
    std::string item;
    bool moved = false;
    Status s = !may_take(blocked.keys[0])
                   ? Status::OK()
                   : MoveItemAtomically(config.segment, *ks, blocked.keys[0], blocked.destination,
                                        blocked.end, blocked.to, &item, &moved);
    if (!s.ok()) {
      ReplyStatus(w, s);
      return true;
    }
    if (moved) {
      w.Bulk(item);
      return true;
    }
  } else {
    for (const std::string& key : blocked.keys) {
      if (!may_take(key)) continue;
      std::vector<std::string> items;
      int64_t count = blocked.kind == BlockedPop::Kind::kMultiPop ? blocked.count : 1;
      Status s = PopItems(*ks, key, blocked.end, count, &items);
      if (retry && s.IsWrongType()) continue;  // Turned into another type since the check.
      if (!s.ok() && !s.IsNotFound()) {
        ReplyStatus(w, s);
        return true;
      }
      if (items.empty()) continue;
      w.Array(2);
      w.Bulk(key);
      if (blocked.kind == BlockedPop::Kind::kMultiPop) {
        w.Array(items.size());
        for (const std::string& item : items) w.Bulk(item);
      } else {
        w.Bulk(items[0]);
      }
      return true;
    }
  }
  if (std::chrono::steady_clock::now() < blocked.deadline) return false;
  // Redis answers every blocking list command's timeout with a null array, BLMOVE and
  // BRPOPLPUSH included (replyToBlockedClientTimedOut), though their non-blocking forms answer a
  // null bulk.
  w.NullArray();
  return true;
}

}  // namespace shm::resp
