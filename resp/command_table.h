// The Redis command table: one row per command (name, arity, flags, key positions, handler), as
// Redis's own table. Each command family registers its rows from its own file
// (Register*Commands); COMMAND, COMMAND COUNT, COMMAND INFO, the dispatcher and the pipeline's
// prefetch all read this one table.
// Process-safety: built once (a function-local static), read-only afterwards.
#ifndef SHM_RESP_COMMAND_TABLE_H_
#define SHM_RESP_COMMAND_TABLE_H_

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string_view>
#include <vector>

#include "shm/resp_commands.h"

namespace shm::resp {

struct Call;
using Handler = void (*)(Call& c);

// Redis's command flags (the subset shmstate's commands carry); COMMAND lists their names.
enum CommandFlag : uint32_t {
  kWrite = 1u << 0,
  kReadOnly = 1u << 1,
  kDenyOom = 1u << 2,
  kAdmin = 1u << 3,
  kNoScript = 1u << 4,
  kBlocking = 1u << 5,
  kLoading = 1u << 6,
  kStale = 1u << 7,
  kFast = 1u << 8,
  kNoAuth = 1u << 9,  // Runs before AUTH (AUTH, HELLO, QUIT).
  kAllowBusy = 1u << 10,
  // shmstate's own, not listed by COMMAND: runs at once inside MULTI instead of being queued
  // (MULTI, EXEC, DISCARD, WATCH, QUIT, as Redis's processCommand exempts them).
  kUnqueued = 1u << 16,
  // shmstate's own: a container of subcommands; a connection's `cmd` is "name|subcommand".
  kContainer = 1u << 17,
  // shmstate's own: argument 2 is a field of the hash at argument 1 (HSET, HGET, ...): the
  // pipeline's prefetch reaches into that hash's own table for it.
  kHashField = 1u << 18,
};

// Redis's legacy key specification: keys at first, first + step, ..., last (negative: counted
// from the end, -1 the last argument). first == 0: the command takes no key.
struct KeyPositions {
  int first = 0;
  int last = 0;
  int step = 0;
};

struct CommandRow {
  std::string_view name;  // Lower-case.
  int arity;              // As Redis: n exact, -n at least n (the name included).
  uint32_t flags;
  KeyPositions keys;
  Handler handler;
};

class CommandTable {
 public:
  // Adds a row; a second row of the same name is a programming error (aborts).
  void Add(const CommandRow& row);
  // The row named `name` (any case), or nullptr.
  const CommandRow* Find(std::string_view name) const;
  // Every row, in registration order (COMMAND's order).
  const std::vector<CommandRow>& rows() const { return rows_; }

  // No command's name is longer: a longer one is unknown without being read.
  static constexpr size_t kMaxName = 16;

 private:
  // A name of 1 to kMaxName bytes as two words: loads that together cover each of its bytes
  // (overlapping rather than padded, so never past its end). Two names of one length are equal
  // when their words are.
  struct NameWords {
    uint64_t low = 0;
    uint64_t high = 0;
  };
  static NameWords WordsOf(const char* name, size_t size) {
    auto load = [](const char* p, auto word) {
      std::memcpy(&word, p, sizeof word);
      return static_cast<uint64_t>(word);
    };
    if (size >= 8) return {load(name, uint64_t{}), load(name + size - 8, uint64_t{})};
    if (size >= 4) return {load(name, uint32_t{}), load(name + size - 4, uint32_t{})};
    auto byte = [name](size_t i) { return uint64_t{static_cast<unsigned char>(name[i])}; };
    return {byte(0) | byte(size / 2) << 8 | byte(size - 1) << 16, 0};
  }
  // The rows grouped by shape: a name's length and the low five bits of its first letter (the
  // same in either case), usually one row a shape. A lookup (one per command) compares its
  // name's words with those of its shape's rows, upper case folded by OR-ing 0x20 into the
  // bytes where the row's name has a letter: no lower-case copy, no hash, no byte loop.
  struct Shaped {
    NameWords lower;  // The row's name.
    NameWords fold;   // 0x20 at its letters, 0 elsewhere.
    uint16_t row;
  };
  static constexpr size_t kShapes = (kMaxName + 1) * 32;
  static size_t ShapeOf(std::string_view name) {
    return name.size() * 32 + (static_cast<unsigned char>(name[0]) & 31u);
  }
  void IndexShapes();
  std::vector<CommandRow> rows_;
  std::vector<Shaped> by_shape_;                     // Grouped by shape.
  std::array<uint16_t, kShapes + 1> shape_start_{};  // Shape s: by_shape_[start[s], start[s+1]).
};

// The one table, every family registered.
const CommandTable& Commands();

// One per family file.
void RegisterServerCommands(CommandTable* table);  // commands_server.cc: connection and server.
void RegisterKeyCommands(CommandTable* table);     // commands_keys.cc: generic keys and expiry.
void RegisterStringCommands(CommandTable* table);  // commands_strings.cc
void RegisterListCommands(CommandTable* table);    // commands_lists.cc
void RegisterHashCommands(CommandTable* table);    // commands_hashes.cc
void RegisterTransactionCommands(CommandTable* table);  // commands_transactions.cc

// The argument indexes of `row`'s keys in a command of `argc` arguments, in order.
template <typename Fn>
void ForEachKey(const CommandRow& row, size_t argc, Fn&& fn) {
  if (row.keys.first <= 0 || argc <= static_cast<size_t>(row.keys.first)) return;
  int last = row.keys.last < 0 ? static_cast<int>(argc) + row.keys.last : row.keys.last;
  last = std::min(last, static_cast<int>(argc) - 1);
  const int step = row.keys.step > 0 ? row.keys.step : 1;
  for (int i = row.keys.first; i <= last; i += step) fn(static_cast<size_t>(i));
}

}  // namespace shm::resp

#endif  // SHM_RESP_COMMAND_TABLE_H_
