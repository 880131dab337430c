// Shared by the RESP command files (one per family, command_table.h): the call context, the
// keyspace mapping (docs/resp.md) and the one place where a Status becomes a Redis error reply.
#ifndef SHM_RESP_INTERNAL_H_
#define SHM_RESP_INTERNAL_H_

#include <atomic>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "command_table.h"
#include "shm/dict.h"
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
// The dict holding the string keys of database 0.
inline constexpr std::string_view kStringsDict = "redis:0";
// Registry names of keys that are not themselves valid names: this prefix, then the key in hex.
inline constexpr std::string_view kEncodedPrefix = "redis:x:";

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

// The registry name of a list or hash key; nullopt when the key cannot be mapped (too long).
std::optional<std::string> ObjectName(std::string_view key);
// The key a registry name stands for; nullopt for shmstate's own names (the strings dict).
std::optional<std::string> KeyOfObject(std::string_view name);

// Per-thread handles (keyspace.cc). Each thread keeps its own proxies of the strings dict and
// of the lists and hashes it used, so a command takes no process-local lock to find its object.
// A cached proxy goes stale when its object is deleted or expires (by any worker, thread or
// API): every call through it then answers NotFound, and With*() below notice that (the proxy's
// ObjectRef is no longer live), reopen and run the operation once more. The cache is dropped
// when the thread first sees another segment (Segment* or shm name, which carries the
// generation). Use from the thread that owns the handles only; nothing here is shared.
namespace handles {

// Copies this thread's proxy of `name` to *proxy, opening it (creating it with `create`) when it
// is not cached. *cached: it came from the cache, so it may be stale.
Status Strings(Segment* segment, bool create, Dict* proxy, bool* cached);
Status Object(Segment* segment, std::string_view name, bool create, Dict* proxy, bool* cached);
Status Object(Segment* segment, std::string_view name, bool create, List* proxy, bool* cached);
// Drops a stale proxy and opens `name` again.
Status ReopenStrings(Segment* segment, bool create, Dict* proxy);
Status Reopen(Segment* segment, std::string_view name, bool create, Dict* proxy);
Status Reopen(Segment* segment, std::string_view name, bool create, List* proxy);

// Runs `op(proxy)` on the handle, and once more on a reopened one when the handle was stale.
// `op` must change nothing when it answers NotFound for a stale proxy.
template <typename Proxy, typename Get, typename Reopener, typename Op>
Status Run(Get&& get, Reopener&& reopen, Op& op) {
  Proxy proxy;
  bool cached = false;
  SHM_RETURN_IF_ERROR(get(&proxy, &cached));
  Status s = op(proxy);
  if (!cached || !s.IsNotFound() || proxy.ref().live()) return s;
  SHM_RETURN_IF_ERROR(reopen(&proxy));
  return op(proxy);
}

}  // namespace handles

// The strings dict; `create` makes it when missing (else NotFound). `op` is Status(Dict&).
template <typename Op>
Status WithStrings(Segment* segment, bool create, Op&& op) {
  return handles::Run<Dict>(
      [&](Dict* d, bool* cached) { return handles::Strings(segment, create, d, cached); },
      [&](Dict* d) { return handles::ReopenStrings(segment, create, d); }, op);
}

// The hash or list object of `key` (ObjectName); InvalidArgument when the key cannot be mapped.
template <typename Proxy, typename Op>
Status WithObject(Segment* segment, std::string_view key, bool create, std::string_view what,
                  Op& op) {
  std::optional<std::string> name = ObjectName(key);
  if (!name) {
    return Status::InvalidArgument("key is too long for a " + std::string(what) +
                                   " (at most 96 bytes)");
  }
  return handles::Run<Proxy>(
      [&](Proxy* p, bool* cached) { return handles::Object(segment, *name, create, p, cached); },
      [&](Proxy* p) { return handles::Reopen(segment, *name, create, p); }, op);
}
template <typename Op>
Status WithHash(Segment* segment, std::string_view key, bool create, Op&& op) {
  return WithObject<Dict>(segment, key, create, "hash", op);
}
template <typename Op>
Status WithList(Segment* segment, std::string_view key, bool create, Op&& op) {
  return WithObject<List>(segment, key, create, "list", op);
}
// Drops this thread's handles of `name` (after deleting it; other threads find theirs stale).
void ForgetObject(Segment* segment, std::string_view name);

// Dict::Update with a callback of any size: the DictUpdateFn it builds holds one reference to
// `fn`, so it fits std::function's own storage and never allocates.
template <typename Fn>
Status UpdateWith(Dict& d, std::string_view key, Fn&& fn, uint64_t* version = nullptr) {
  return d.Update(
      key, [&fn](const DictValue* current, DictUpdate* update) { return fn(current, update); },
      version);
}

// kList, kDict (a hash) or kNone for a key not held by a registry object; other kinds (a
// counter or array of that name) are reported as they are.
ObjectKind ObjectKindOf(Segment* segment, std::string_view key);
// True when `key` is a string key.
bool StringExists(Segment* segment, std::string_view key);
// "string", "list", "hash" or "none" (an empty list or hash is "none", as in Redis).
std::string_view TypeOf(Segment* segment, std::string_view key);
// Deletes the key whatever its type; true if it existed.
bool DeleteKey(Segment* segment, std::string_view key);

// Writes `status` as a Redis error: WrongType is WRONGTYPE, OutOfSpace OOM, busy locks TRYAGAIN.
void ReplyStatus(ReplyWriter& w, const Status& status);
void WrongArity(Call& c);

// The reply when a list or hash is absent (`s` NotFound): WRONGTYPE if a string holds the key,
// else `absent()`. Any other status is replied as an error.
template <typename Absent>
void ReplyMissing(Call& c, const Status& s, Absent absent) {
  if (!s.IsNotFound()) return ReplyStatus(c.w, s);
  if (StringExists(c.segment(), c.args[1])) return c.w.Error(kWrongType);
  absent();
}

// Strict integers as Redis reads them.
bool ParseInt(std::string_view text, int64_t* value);
bool ParseDouble(std::string_view text, double* value);
bool EqualsIgnoreCase(std::string_view a, std::string_view b);

// Lower-case copy (subcommand and option names).
std::string Lower(std::string_view text);

// Every list and hash key (from the registry, name order) with its type, and the number of keys
// of every type (DBSIZE, INFO keyspace).
std::vector<std::pair<std::string, std::string_view>> ObjectKeys(Segment* segment);
uint64_t KeyCount(Segment* segment);
// The bytes of a key's data (its name and its value's or items' bytes, not the allocator's
// overhead) for MEMORY USAGE; false when the key does not exist.
bool KeyBytes(Segment* segment, std::string_view key, uint64_t* bytes);

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
