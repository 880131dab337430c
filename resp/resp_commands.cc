// RESP dispatch (shm/resp_commands.h): the one command table, lookup, AUTH and MULTI gating,
// arity, the pipeline's prefetch, and the helpers every family shares (error mapping, strict
// integer parsing).
#include "shm/resp_commands.h"

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <optional>
#include <span>
#include <string>

#include "command_table.h"
#include "internal.h"
#include "shm/integer.h"

namespace shm::resp {
namespace {

constexpr size_t kMaxQueuedCommands = 10000;  // MULTI without EXEC.

bool ArityOk(int arity, size_t argc) {
  return arity >= 0 ? argc == static_cast<size_t>(arity) : argc >= static_cast<size_t>(-arity);
}

void UnknownCommand(Call& c, const std::vector<std::string_view>& args) {
  std::string text = "ERR unknown command '" + std::string(args[0].substr(0, 128)) +
                     "', with args beginning with: ";
  for (size_t i = 1; i < args.size() && text.size() < 512; ++i) {
    text += "'" + std::string(args[i].substr(0, 128)) + "' ";
  }
  c.w.Error(text);
}

// Runs `row` (nullptr: unknown) with c.args.
void RunCommand(Call& c, const CommandRow* row) {
  if (row == nullptr) return UnknownCommand(c, c.args);
  if (!ArityOk(row->arity, c.args.size())) return WrongArity(c);
  row->handler(c);
}

// Before AUTH or inside MULTI: whether the command must not run now (refused, or queued for
// EXEC); if so, its reply is written.
[[gnu::noinline]] bool Gated(Call& c, const CommandRow* row, uint32_t flags) {
  RespClient* client = c.client;
  if (!c.config.password.empty() && !client->authenticated && (flags & kNoAuth) == 0) {
    c.w.Error("NOAUTH Authentication required.");
    return true;
  }
  if (!client->in_multi || (flags & kUnqueued) != 0) return false;
  if (row == nullptr) {
    client->multi_failed = true;
    UnknownCommand(c, c.args);
  } else if (!ArityOk(row->arity, c.args.size())) {
    client->multi_failed = true;
    WrongArity(c);
  } else if (client->queued.size() >= kMaxQueuedCommands) {
    client->multi_failed = true;
    c.w.Error("ERR shmstate queues at most 10000 commands in a transaction");
  } else {
    client->queued.emplace_back(c.args.begin(), c.args.end());
    c.w.Simple("QUEUED");
  }
  return true;
}

}  // namespace

void CommandTable::Add(const CommandRow& row) {
  // A programming error in a Register*Commands function: a name empty, too long, not lower
  // case, or registered twice.
  if (row.name.empty() || row.name.size() > kMaxName || Lower(row.name) != row.name ||
      Find(row.name) != nullptr || rows_.size() >= UINT16_MAX) {
    std::abort();
  }
  rows_.push_back(row);
  IndexShapes();
}

void CommandTable::IndexShapes() {
  // A counting sort by shape, redone per row: the table is built once, of a few hundred rows.
  shape_start_.fill(0);
  for (const CommandRow& row : rows_) ++shape_start_[ShapeOf(row.name) + 1];
  for (size_t s = 1; s <= kShapes; ++s) shape_start_[s] += shape_start_[s - 1];
  std::array<uint16_t, kShapes + 1> next = shape_start_;
  by_shape_.assign(rows_.size(), Shaped{});
  for (size_t i = 0; i < rows_.size(); ++i) {
    const std::string_view name = rows_[i].name;
    char fold[kMaxName];
    for (size_t j = 0; j < name.size(); ++j) fold[j] = name[j] >= 'a' && name[j] <= 'z' ? 0x20 : 0;
    by_shape_[next[ShapeOf(name)]++] = {WordsOf(name.data(), name.size()),
                                        WordsOf(fold, name.size()), static_cast<uint16_t>(i)};
  }
}

const CommandRow* CommandTable::Find(std::string_view name) const {
  if (name.empty() || name.size() > kMaxName) return nullptr;
  const NameWords words = WordsOf(name.data(), name.size());
  const size_t shape = ShapeOf(name);
  for (size_t i = shape_start_[shape]; i < shape_start_[shape + 1]; ++i) {
    const Shaped& candidate = by_shape_[i];
    if ((words.low | candidate.fold.low) == candidate.lower.low &&
        (words.high | candidate.fold.high) == candidate.lower.high) {
      return &rows_[candidate.row];
    }
  }
  return nullptr;
}

const CommandTable& Commands() {
  static const CommandTable table = [] {
    CommandTable t;
    RegisterServerCommands(&t);
    RegisterKeyCommands(&t);
    RegisterStringCommands(&t);
    RegisterListCommands(&t);
    RegisterHashCommands(&t);
    RegisterTransactionCommands(&t);
    return t;
  }();
  return table;
}

const CommandRow* Lookup(std::string_view name) {
  // The table's address, kept after the first call: checking the function-local static's guard
  // (and saving the registers its first call needs) on every lookup costs as much as the rest
  // of a short one.
  static std::atomic<const CommandTable*> table{nullptr};  // Constant-initialized: no guard.
  const CommandTable* known = table.load(std::memory_order_acquire);
  if (known == nullptr) [[unlikely]] {
    known = &Commands();
    table.store(known, std::memory_order_release);
  }
  return known->Find(name);
}

void RunQueued(Call& c, const std::vector<std::string_view>& args) {
  Call inner{c.config, c.client, args, c.w, c.blocked, /*may_block=*/false};
  RunCommand(inner, Lookup(args[0]));
  c.w = inner.w;  // HELLO may have switched the protocol.
  c.block = inner.block;
}

Outcome Execute(const RespConfig& config, RespClient* client, const CommandRow* row,
                const std::vector<std::string_view>& args, std::string* out, BlockedPop* blocked) {
  Counters().commands.fetch_add(1, std::memory_order_relaxed);
  Call c{config, client, args, ReplyWriter(out, client->protocol), blocked, true};
  if (args.empty()) return Outcome::kReplied;
  const uint32_t flags = row == nullptr ? 0 : row->flags;
  if ((!config.password.empty() && !client->authenticated) || client->in_multi) [[unlikely]] {
    if (Gated(c, row, flags)) return Outcome::kReplied;
  }
  // CLIENT REPLY: a reply is dropped while OFF, and for the command after SKIP (the CLIENT
  // REPLY OFF|SKIP command's own included).
  client->reply_skip_this = client->reply_skip_next;
  client->reply_skip_next = false;
  const size_t mark = out->size();
  // The list keys the command's writes may have made ready (a push, RENAME, COPY, RESTORE, EXEC
  // ...): the session serves their blocked pops before this reply (LineService). Only a write
  // can, or EXEC (unqueued), which runs writes; a read, PING or an unknown name needs no sink.
  std::optional<ReadyListSink> ready;
  if ((flags & (kWrite | kUnqueued)) != 0) ready.emplace(&client->pushed);
  RunCommand(c, row);
  if (client->reply_off || client->reply_skip_this || client->reply_skip_next) out->resize(mark);
  return c.block ? Outcome::kBlock : Outcome::kReplied;
}

Outcome Execute(const RespConfig& config, RespClient* client,
                const std::vector<std::string_view>& args, std::string* out, BlockedPop* blocked) {
  const CommandRow* row = args.empty() ? nullptr : Lookup(args[0]);
  return Execute(config, client, row, args, out, blocked);
}

namespace {

// Room for the views of one batch's prefetch, left unset until written: zeroing Dict::
// kMaxPrefetch views (1 KiB) per batch would cost more than collecting them.
class PrefetchViews {
 public:
  PrefetchViews() {}  // Leaves views_ unset.
  void Add(std::string_view view) {
    new (&views_[size_]) std::string_view(view);
    ++size_;
  }
  bool full() const { return size_ == Dict::kMaxPrefetch; }
  size_t size() const { return size_; }
  void clear() { size_ = 0; }
  std::span<const std::string_view> span() const { return std::span(views_, size_); }

 private:
  union {
    std::string_view views_[Dict::kMaxPrefetch];
  };
  size_t size_ = 0;
};

// A hash is a dict of its own, which the keys' prefetch does not reach: each run of hash-field
// commands on one key (HSET myhash f1 v, HSET myhash f2 v, ...) prefetches its fields in that
// hash, at the price of one read of the key's entry per run. At most kMaxHashRuns runs a batch,
// so a batch alternating between hashes costs a bounded number of entry reads.
void PrefetchHashFields(const Keyspace& keyspace, std::span<const ParsedCommand> commands) {
  constexpr int kMaxHashRuns = 4;
  PrefetchViews fields;
  std::string_view key;
  int runs = 0;
  for (const ParsedCommand& command : commands) {
    if (command.row == nullptr || (command.row->flags & kHashField) == 0 ||
        command.args.size() < 3) {
      continue;
    }
    if (fields.size() > 0 && command.args[1] != key) {
      // One alone gains nothing.
      if (fields.size() > 1) keyspace.PrefetchFields(key, fields.span());
      fields.clear();
      if (++runs == kMaxHashRuns) return;
    }
    key = command.args[1];
    if (!fields.full()) fields.Add(command.args[2]);
  }
  if (fields.size() > 1) keyspace.PrefetchFields(key, fields.span());
}

// a == b, cheaply false for keys of one length that differ in their last 8 bytes (random keys
// of one shape, key:000000012345, differ there): no call to memcmp on a random-key pipeline.
bool SameKey(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  if (a.size() >= sizeof(uint64_t)) {
    uint64_t tail_a, tail_b;
    std::memcpy(&tail_a, a.data() + a.size() - sizeof tail_a, sizeof tail_a);
    std::memcpy(&tail_b, b.data() + b.size() - sizeof tail_b, sizeof tail_b);
    if (tail_a != tail_b) return false;
  }
  return a == b;
}

}  // namespace

void Prefetch(const RespConfig& config, std::span<const ParsedCommand> commands) {
  PrefetchViews keys;
  std::string_view last;  // The key added last.
  for (const ParsedCommand& command : commands) {
    if (command.row == nullptr) continue;
    ForEachKey(*command.row, command.args.size(), [&](size_t i) {
      // A pipeline on one hot key (LPUSH mylist ..., HSET myhash ...) names it in every command:
      // once in the CPU cache, hashing and probing it again is pure cost.
      const std::string_view key = command.args[i];
      if (SameKey(key, last)) return;
      if (!keys.full()) keys.Add(key);
      last = key;
    });
  }
  if (keys.size() == 0) return;
  // Database 0's: the one a pipeline almost always uses (a hint, never wrong, at worst idle).
  Keyspace* keyspace = KeyspaceOf(config.segment, 0, false);
  if (keyspace == nullptr) return;
  keyspace->Prefetch(keys.span());
  PrefetchHashFields(*keyspace, commands);
}

std::string Lower(std::string_view text) {
  std::string lower(text);
  for (char& ch : lower) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  return lower;
}

void ReplyStatus(ReplyWriter& w, const Status& status) {
  std::string message(status.message());
  switch (status.code()) {
    case Status::Code::kWrongType:
      return w.Error(kWrongType);
    case Status::Code::kOutOfSpace:
      return w.Error("OOM " + message);
    case Status::Code::kTimeout:
    case Status::Code::kPoisoned:
      return w.Error("TRYAGAIN " + message);
    default:
      return w.Error("ERR " + message);
  }
}

void WrongArity(Call& c) {
  c.w.Error("ERR wrong number of arguments for '" + Lower(c.args[0].substr(0, 64)) + "' command");
}

bool ParseInt(std::string_view text, int64_t* value) {
  return ParseInt64(text, value, IntSyntax::kRedisStrict);
}

bool ParseScanArgs(Call& c, size_t cursor_at, bool with_type, ScanArgs* args) {
  auto refuse = [&](std::string_view error) {
    c.w.Error(error);
    return false;
  };
  std::string_view text = c.args[cursor_at];
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), args->cursor);
  if (ec != std::errc() || ptr != text.data() + text.size()) return refuse("ERR invalid cursor");
  for (size_t i = cursor_at + 1; i < c.args.size(); i += 2) {
    if (i + 1 >= c.args.size()) return refuse(kSyntax);
    std::string option = Lower(c.args[i]);
    if (option == "match") {
      args->pattern = c.args[i + 1];
    } else if (option == "count") {
      if (!ParseInt(c.args[i + 1], &args->count)) return refuse(kNotInteger);
      if (args->count < 1) return refuse(kSyntax);
    } else if (with_type && option == "type") {
      args->type = Lower(c.args[i + 1]);
    } else {
      return refuse(kSyntax);
    }
  }
  return true;
}

bool ParseDouble(std::string_view text, double* value) {
  if (text.empty() || text.size() > 64 || std::isspace(static_cast<unsigned char>(text[0]))) {
    return false;
  }
  std::string copy(text);
  char* end = nullptr;
  *value = std::strtod(copy.c_str(), &end);
  return end == copy.c_str() + copy.size() && !std::isnan(*value);
}

// Redis's string2ld: the whole text, no leading space, no NaN, no overflow to infinity.
bool ParseLongDouble(std::string_view text, long double* value) {
  constexpr size_t kMaxLongDoubleChars = 5 * 1024;
  if (text.empty() || text.size() >= kMaxLongDoubleChars ||
      std::isspace(static_cast<unsigned char>(text[0]))) {
    return false;
  }
  std::string copy(text);
  char* end = nullptr;
  errno = 0;
  long double parsed = std::strtold(copy.c_str(), &end);
  if (end != copy.c_str() + copy.size() || std::isnan(parsed)) return false;
  if (errno == ERANGE && (std::isinf(parsed) || parsed == 0)) return false;
  *value = parsed;
  return true;
}

// Redis's ld2string(LD_STR_HUMAN): "%.17Lf" without trailing zeros (nor a trailing '.'), and
// "-0" as "0".
std::string FormatLongDouble(long double value) {
  char buf[5 * 1024];
  int n = std::snprintf(buf, sizeof buf, "%.17Lf", value);
  if (n < 0 || static_cast<size_t>(n) >= sizeof buf) return "0";
  std::string text(buf, static_cast<size_t>(n));
  if (text.find('.') != std::string::npos) {
    while (!text.empty() && text.back() == '0') text.pop_back();
    if (!text.empty() && text.back() == '.') text.pop_back();
  }
  if (text == "-0") text = "0";
  return text;
}

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace shm::resp