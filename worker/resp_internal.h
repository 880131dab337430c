// Shared by the RESP command files: the call context, the keyspace mapping (docs/resp.md) and
// the one place where a Status becomes a Redis error reply.
#ifndef SHM_WORKER_RESP_INTERNAL_H_
#define SHM_WORKER_RESP_INTERNAL_H_

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "proxy_cache.h"
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

using Handler = void (*)(Call& c);

// The registry name of a list or hash key; nullopt when the key cannot be mapped (too long).
std::optional<std::string> ObjectName(std::string_view key);
// The key a registry name stands for; nullopt for shmstate's own names (the strings dict).
std::optional<std::string> KeyOfObject(std::string_view name);

// The strings dict; `create` makes it when missing (else NotFound).
Status WithStrings(Segment* segment, bool create, const std::function<Status(Dict&)>& op);
Status WithHash(Segment* segment, std::string_view key, bool create,
                const std::function<Status(Dict&)>& op);
Status WithList(Segment* segment, std::string_view key, bool create,
                const std::function<Status(List&)>& op);
void ForgetObject(Segment* segment, std::string_view name);

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

// Strict integers as Redis reads them.
bool ParseInt(std::string_view text, int64_t* value);
bool ParseDouble(std::string_view text, double* value);
bool EqualsIgnoreCase(std::string_view a, std::string_view b);

// The data commands (resp_data.cc), looked up by lower-case name.
Handler FindDataCommand(std::string_view lower_name, int* arity);

}  // namespace shm::resp

#endif  // SHM_WORKER_RESP_INTERNAL_H_
