// Shared by the RESP command files (one per family, command_table.h): the call context, the
// keyspace mapping (docs/resp.md) and the one place where a Status becomes a Redis error reply.
#ifndef SHM_RESP_INTERNAL_H_
#define SHM_RESP_INTERNAL_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "command_table.h"
#include "shm/dict.h"
#include "shm/integer.h"
#include "shm/keyspace.h"
#include "shm/list.h"
#include "shm/registry.h"
#include "shm/resp_commands.h"
#include "shm/resp_protocol.h"
#include "shm/status.h"

namespace shm::resp {

inline constexpr std::string_view kWrongType =
    "WRONGTYPE Operation against a key holding the wrong kind of value";
inline constexpr std::string_view kNotInteger = "ERR value is not an integer or out of range";
inline constexpr std::string_view kSyntax = "ERR syntax error";
struct Call {
  const RespConfig& config;
  RespClient* client;
  const std::vector<std::string_view>& args;
  ReplyWriter w;
  BlockedPop* blocked;
  bool may_block;      // false inside EXEC: a blocking pop answers at once.
  bool block = false;  // Set by BLPOP/BRPOP when it must wait.
  Segment* segment() const { return config.segment; }
};

// This thread's handle of database `db`'s keyspace (docs/resp.md); nullptr when it cannot be
// opened (a full registry, or, without `create`, one that does not exist yet).
Keyspace* KeyspaceOf(Segment* segment, int db, bool create = true);
// The calling client's database; nullptr after replying the error when it cannot be opened.
Keyspace* KS(Call& c);
// Keys of database `db` (DBSIZE, INFO keyspace); *expiring (optional): how many have an expiry.
uint64_t KeyCount(Segment* segment, int db = 0, uint64_t* expiring = nullptr);
// The key's version (0: absent): what WATCH records.
uint64_t KeyVersion(Segment* segment, int db, std::string_view key);
// The bytes of a key's data (its name and its value's or items' bytes, not the allocator's
// overhead) for MEMORY USAGE; false when the key does not exist.
bool KeyBytes(Segment* segment, int db, std::string_view key, uint64_t* bytes);

// Writes `status` as a Redis error: WrongType is WRONGTYPE, OutOfSpace OOM, busy locks TRYAGAIN.
void ReplyStatus(ReplyWriter& w, const Status& status);
void WrongArity(Call& c);

// Strict integers as Redis reads them.
bool ParseInt(std::string_view text, int64_t* value);
bool ParseDouble(std::string_view text, double* value);
// INCRBYFLOAT's and HINCRBYFLOAT's numbers, as Redis reads and prints them (long double).
bool ParseLongDouble(std::string_view text, long double* value);
std::string FormatLongDouble(long double value);
bool EqualsIgnoreCase(std::string_view a, std::string_view b);

// Lower-case copy (subcommand and option names).
std::string Lower(std::string_view text);

// SCAN's and HSCAN's arguments: `cursor [MATCH pattern] [COUNT n]`, and `[TYPE t]` where
// `with_type` (SCAN). Parsed from c.args[cursor_at] on; on bad input the error is already
// replied and the result is false.
struct ScanArgs {
  uint64_t cursor = 0;
  std::string_view pattern = "*";
  int64_t count = 10;
  std::string type;  // Lower-case; empty: every type.
};
bool ParseScanArgs(Call& c, size_t cursor_at, bool with_type, ScanArgs* args);

// Runs `body` (a command's handler, or EXEC's batch) so that no other client sees part of it:
// in a shm::Transaction when every keyspace operation it makes can be staged (strings, whole
// keys, lists, hashes, key listings and flushes: atomic across a crash too; retried on a
// conflict), else holding
// every shard lock of the client's keyspace (KeyspaceExclusive: isolated). Replies written by a
// discarded attempt are dropped. `check` (may be empty) runs first in each attempt, under the same
// isolation (EXEC's WATCH): false means it replied and the batch must not run. Inside another such
// batch, runs `body` directly.
void RunIsolated(Call& c, const std::function<bool()>& check, const std::function<void()>& body);
// A handler run by RunIsolated: MSET, DEL k1 k2, RENAME...
template <void (*Handler)(Call&)>
void Isolated(Call& c) {
  RunIsolated(c, {}, [&c] { Handler(c); });
}
// Runs a command queued by MULTI, from EXEC (resp_commands.cc): looked up, arity-checked, never
// blocking.
void RunQueued(Call& c, const std::vector<std::string_view>& args);

// Per-worker-process counts for INFO (commands_server.cc).
struct ServerCounters {
  std::atomic<int64_t> connected{0};
  std::atomic<uint64_t> connections{0};
  std::atomic<uint64_t> commands{0};
  std::atomic<uint64_t> next_id{0};
};
ServerCounters& Counters();

}  // namespace shm::resp

#endif  // SHM_RESP_INTERNAL_H_
