// The list commands (Redis's "list" group), blocking pops included.
#include <chrono>
#include <cmath>
#include <string>

#include "internal.h"

namespace shm::resp {
namespace {

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
    return ReplyMissing(c, s, [&] { with_count ? c.w.NullArray() : c.w.Null(); });
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
  if (!s.ok()) return ReplyMissing(c, s, [&] { c.w.Integer(0); });
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
  if (!s.ok()) return ReplyMissing(c, s, [&] { c.w.Array(0); });
  c.w.Array(items.size());
  for (const std::string& item : items) c.w.Bulk(item);
}

void LIndex(Call& c) {
  int64_t index = 0;
  if (!ParseInt(c.args[2], &index)) return c.w.Error(kNotInteger);
  std::vector<std::string> items;
  Status s = WithList(c.segment(), c.args[1], false,
                      [&](List& l) { return l.Range(index, index, &items); });
  if (!s.ok()) return ReplyMissing(c, s, [&] { c.w.Null(); });
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

}  // namespace

void RegisterListCommands(CommandTable* table) {
  constexpr KeyPositions kOne{1, 1, 1};
  for (const CommandRow& row : {
           CommandRow{"lpush", -3, kWrite | kDenyOom | kFast, kOne, LPush},
           CommandRow{"rpush", -3, kWrite | kDenyOom | kFast, kOne, RPush},
           CommandRow{"lpop", -2, kWrite | kFast, kOne, LPop},
           CommandRow{"rpop", -2, kWrite | kFast, kOne, RPop},
           CommandRow{"llen", 2, kReadOnly | kFast, kOne, LLen},
           CommandRow{"lrange", 4, kReadOnly, kOne, LRange},
           CommandRow{"lindex", 3, kReadOnly, kOne, LIndex},
           CommandRow{"blpop", -3, kWrite | kNoScript | kBlocking, {1, -2, 1}, BLPop},
           CommandRow{"brpop", -3, kWrite | kNoScript | kBlocking, {1, -2, 1}, BRPop},
       }) {
    table->Add(row);
  }
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

}  // namespace shm::resp
