// RESP command dispatch: connection commands, keys, transactions, INFO, and the error mapping
// (see shm/resp_commands.h; the data commands are in resp_data.cc).
#include "shm/resp_commands.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <span>
#include <string>
#include <unordered_map>

#include "resp_internal.h"
#include "shm/request_gate.h"

namespace shm::resp {
namespace {

constexpr std::string_view kRedisVersion = "7.0.0";  // What clients are told (HELLO, INFO).
constexpr size_t kMaxQueuedCommands = 10000;         // MULTI without EXEC.
constexpr size_t kMaxScanCount = Dict::kMaxListLimit;

std::atomic<int64_t> g_connected{0};
std::atomic<uint64_t> g_connections{0};
std::atomic<uint64_t> g_commands{0};
std::atomic<uint64_t> g_next_id{0};

std::string Lower(std::string_view text) {
  std::string lower(text);
  for (char& ch : lower) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  return lower;
}

bool ArityOk(int arity, size_t argc) {
  return arity >= 0 ? argc == static_cast<size_t>(arity) : argc >= static_cast<size_t>(-arity);
}

// ---------------------------------------------------------------------------------------------
// Connection.

void Ping(Call& c) {
  if (c.args.size() > 2) return WrongArity(c);
  c.args.size() == 2 ? c.w.Bulk(c.args[1]) : c.w.Simple("PONG");
}

void Echo(Call& c) { c.w.Bulk(c.args[1]); }

// AUTH's check, shared with HELLO ... AUTH. Writes the error and returns false when refused.
bool CheckPassword(Call& c, std::string_view user, std::string_view password) {
  const std::string& expected = c.config.password;
  if (expected.empty()) {
    c.w.Error(
        "ERR AUTH <password> called without any password configured for the default user. Are "
        "you sure your configuration is correct?");
    return false;
  }
  // The HTTP gate's constant-time comparison: one token check for both protocols.
  if (user != "default" || !TokenMatches(password, expected)) {
    c.w.Error("WRONGPASS invalid username-password pair or user is disabled.");
    return false;
  }
  c.client->authenticated = true;
  return true;
}

void Auth(Call& c) {
  if (c.args.size() > 3) return c.w.Error(kSyntax);
  std::string_view user = c.args.size() == 3 ? c.args[1] : "default";
  if (CheckPassword(c, user, c.args.back())) c.w.Simple("OK");
}

bool ValidClientName(std::string_view name) {
  return std::all_of(name.begin(), name.end(), [](char ch) { return ch > ' ' && ch <= '~'; });
}

void Hello(Call& c) {
  int64_t protocol = c.client->protocol;
  size_t i = 1;
  if (c.args.size() > 1) {
    if (!ParseInt(c.args[1], &protocol)) {
      return c.w.Error("ERR Protocol version is not an integer or out of range");
    }
    if (protocol != 2 && protocol != 3) return c.w.Error("NOPROTO unsupported protocol version");
    i = 2;
  }
  std::string_view name;
  bool set_name = false;
  for (; i < c.args.size(); ++i) {
    if (EqualsIgnoreCase(c.args[i], "auth") && i + 2 < c.args.size()) {
      if (!CheckPassword(c, c.args[i + 1], c.args[i + 2])) return;
      i += 2;
    } else if (EqualsIgnoreCase(c.args[i], "setname") && i + 1 < c.args.size()) {
      name = c.args[++i];
      set_name = true;
    } else {
      return c.w.Error("ERR Syntax error in HELLO option '" + std::string(c.args[i]) + "'");
    }
  }
  if (!c.config.password.empty() && !c.client->authenticated) {
    return c.w.Error(
        "NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO "
        "<proto> AUTH <user> <pass> option can be used to authenticate the client and select "
        "the RESP protocol version at the same time");
  }
  if (set_name && !ValidClientName(name)) {
    return c.w.Error("ERR Client names cannot contain spaces, newlines or special characters.");
  }
  if (set_name) c.client->name = std::string(name);
  c.client->protocol = static_cast<int>(protocol);
  c.w = ReplyWriter(c.w.buffer(), c.client->protocol);
  c.w.Map(7);
  c.w.Bulk("server");
  c.w.Bulk("redis");
  c.w.Bulk("version");
  c.w.Bulk(kRedisVersion);
  c.w.Bulk("proto");
  c.w.Integer(protocol);
  c.w.Bulk("id");
  c.w.Integer(static_cast<int64_t>(c.client->id));
  c.w.Bulk("mode");
  c.w.Bulk("standalone");
  c.w.Bulk("role");
  c.w.Bulk("master");
  c.w.Bulk("modules");
  c.w.Array(0);
}

void Select(Call& c) {
  int64_t index = 0;
  if (!ParseInt(c.args[1], &index)) return c.w.Error(kNotInteger);
  if (index != 0) return c.w.Error("ERR DB index is out of range");
  c.w.Simple("OK");
}

std::string ClientInfoLine(const Call& c) {
  int64_t age = (NowMs() - c.client->connected_ms) / 1000;
  return "id=" + std::to_string(c.client->id) + " addr=" + c.client->address +
         " name=" + c.client->name + " age=" + std::to_string(age) +
         " db=0 multi=" + (c.client->in_multi ? std::to_string(c.client->queued.size()) : "-1") +
         " resp=" + std::to_string(c.client->protocol) +
         " worker=" + std::to_string(c.config.worker_index) + "\n";
}

void Client(Call& c) {
  std::string sub = Lower(c.args[1]);
  if (sub == "setname" && c.args.size() == 3) {
    if (!ValidClientName(c.args[2])) {
      return c.w.Error("ERR Client names cannot contain spaces, newlines or special characters.");
    }
    c.client->name = std::string(c.args[2]);
    return c.w.Simple("OK");
  }
  if (sub == "getname" && c.args.size() == 2) {
    return c.client->name.empty() ? c.w.Null() : c.w.Bulk(c.client->name);
  }
  if (sub == "id" && c.args.size() == 2) return c.w.Integer(static_cast<int64_t>(c.client->id));
  if ((sub == "info" || sub == "list") && c.args.size() == 2) return c.w.Bulk(ClientInfoLine(c));
  if (sub == "setinfo" && c.args.size() == 4) return c.w.Simple("OK");
  c.w.Error("ERR unknown subcommand or wrong number of arguments for '" + std::string(c.args[1]) +
            "'. Try CLIENT HELP.");
}

void Quit(Call& c) {
  c.client->close_after_reply = true;
  c.w.Simple("OK");
}

void Time(Call& c) {
  auto now = std::chrono::system_clock::now().time_since_epoch();
  int64_t micros = std::chrono::duration_cast<std::chrono::microseconds>(now).count();
  c.w.Array(2);
  c.w.Bulk(std::to_string(micros / 1000000));
  c.w.Bulk(std::to_string(micros % 1000000));
}

// ---------------------------------------------------------------------------------------------
// Keys.

void Del(Call& c) {
  int64_t deleted = 0;
  for (size_t i = 1; i < c.args.size(); ++i) deleted += DeleteKey(c.segment(), c.args[i]) ? 1 : 0;
  c.w.Integer(deleted);
}

void Exists(Call& c) {
  int64_t found = 0;
  for (size_t i = 1; i < c.args.size(); ++i) found += TypeOf(c.segment(), c.args[i]) != "none";
  c.w.Integer(found);
}

void Type(Call& c) { c.w.Simple(TypeOf(c.segment(), c.args[1])); }

// EXPIRE, PEXPIRE, EXPIREAT, PEXPIREAT: `scale` ms per unit, `absolute` for the *AT forms.
void ExpireGeneric(Call& c, int64_t scale, bool absolute) {
  int64_t value = 0;
  if (!ParseInt(c.args[2], &value)) return c.w.Error(kNotInteger);
  bool nx = false, xx = false, gt = false, lt = false;
  for (size_t i = 3; i < c.args.size(); ++i) {
    std::string option = Lower(c.args[i]);
    if (option == "nx") {
      nx = true;
    } else if (option == "xx") {
      xx = true;
    } else if (option == "gt") {
      gt = true;
    } else if (option == "lt") {
      lt = true;
    } else {
      return c.w.Error("ERR Unsupported option " + std::string(c.args[i]));
    }
  }
  if (nx && (xx || gt || lt)) {
    return c.w.Error("ERR NX and XX, GT or LT options at the same time are not compatible");
  }
  if (gt && lt) return c.w.Error("ERR GT and LT options at the same time are not compatible");
  if (value > Dict::kMaxTtlMs / scale || value < -Dict::kMaxTtlMs / scale) {
    return c.w.Error("ERR invalid expire time in '" + Lower(c.args[0]) + "' command");
  }
  int64_t now = NowMs();
  int64_t at = absolute ? value * scale : now + value * scale;
  if (at - now > Dict::kMaxTtlMs) {
    return c.w.Error("ERR invalid expire time in '" + Lower(c.args[0]) + "' command");
  }
  bool applied = false, delete_now = false;
  uint64_t version = 0;
  Status s = WithStrings(c.segment(), false, [&](Dict& d) {
    return UpdateWith(d, c.args[1], [&](const DictValue* current, DictUpdate* u) {
      u->write = false;
      if (current == nullptr) return Status::OK();
      int64_t old = current->expires_at_ms;  // 0: no expiry, which GT/LT treat as infinite.
      if ((nx && old != 0) || (xx && old == 0) || (gt && (old == 0 || at <= old)) ||
          (lt && old != 0 && at >= old)) {
        return Status::OK();
      }
      applied = true;
      version = current->version;
      if (at <= now) {
        delete_now = true;
        return Status::OK();
      }
      u->write = true;
      u->data = current->data;
      u->content_type = current->content_type;
      u->ttl_ms = at - now;
      return Status::OK();
    });
  });
  if (!s.ok() && !s.IsNotFound()) return ReplyStatus(c.w, s);
  if (!applied) {
    ObjectKind kind = ObjectKindOf(c.segment(), c.args[1]);
    if ((kind == ObjectKind::kList || kind == ObjectKind::kDict) &&
        TypeOf(c.segment(), c.args[1]) != "none") {
      return c.w.Error("ERR shmstate supports expiry on string keys only");
    }
    return c.w.Integer(0);
  }
  if (delete_now) {
    WithStrings(c.segment(), false, [&](Dict& d) { return d.Delete(c.args[1], version); });
  }
  c.w.Integer(1);
}
void Expire(Call& c) { ExpireGeneric(c, 1000, false); }
void PExpire(Call& c) { ExpireGeneric(c, 1, false); }
void ExpireAt(Call& c) { ExpireGeneric(c, 1000, true); }
void PExpireAt(Call& c) { ExpireGeneric(c, 1, true); }

void TtlGeneric(Call& c, bool millis) {
  DictValue value;
  Status s = WithStrings(c.segment(), false, [&](Dict& d) { return d.Get(c.args[1], &value); });
  int64_t at = 0;
  if (s.ok()) {
    at = value.expires_at_ms;
  } else if (TypeOf(c.segment(), c.args[1]) == "none") {
    return c.w.Integer(-2);
  } else {
    ObjectInfo info;
    std::optional<std::string> name = ObjectName(c.args[1]);
    if (name && c.segment()->registry().Lookup(*name, &info).ok()) at = info.expires_at_ms;
  }
  if (at == 0) return c.w.Integer(-1);
  int64_t left = std::max<int64_t>(at - NowMs(), 0);
  c.w.Integer(millis ? left : (left + 500) / 1000);
}
void Ttl(Call& c) { TtlGeneric(c, false); }
void PTtl(Call& c) { TtlGeneric(c, true); }

void Persist(Call& c) {
  bool changed = false;
  Status s = WithStrings(c.segment(), false, [&](Dict& d) {
    return UpdateWith(d, c.args[1], [&](const DictValue* current, DictUpdate* u) {
      if (current == nullptr || current->expires_at_ms == 0) {
        u->write = false;
        return Status::OK();
      }
      changed = true;
      u->data = current->data;
      u->content_type = current->content_type;
      u->ttl_ms = 0;  // The strings dict has no default TTL: 0 is "never".
      return Status::OK();
    });
  });
  if (!s.ok() && !s.IsNotFound()) return ReplyStatus(c.w, s);
  c.w.Integer(changed ? 1 : 0);
}

// The keys of lists and hashes, from the registry (name order), with their type.
std::vector<std::pair<std::string, std::string_view>> ObjectKeys(Segment* segment) {
  std::vector<std::pair<std::string, std::string_view>> keys;
  for (ObjectKind kind : {ObjectKind::kList, ObjectKind::kDict}) {
    std::string after;
    while (true) {
      std::vector<ObjectInfo> page;
      if (!segment->registry().List("", kind, 1000, after, &page).ok() || page.empty()) break;
      after = page.back().name;
      for (const ObjectInfo& info : page) {
        std::optional<std::string> key = KeyOfObject(info.name);
        if (!key) continue;
        std::string_view type = TypeOf(segment, *key);
        if (type != "none") keys.emplace_back(std::move(*key), type);
      }
    }
  }
  return keys;
}

void Keys(Call& c) {
  std::vector<std::string> found;
  std::string_view pattern = c.args[1];
  WithStrings(c.segment(), false, [&](Dict& d) {
    uint64_t cursor = 0;
    do {
      std::vector<std::string> keys;
      SHM_RETURN_IF_ERROR(d.ListKeys("", Dict::kMaxListLimit, cursor, &keys, &cursor));
      for (std::string& key : keys) {
        if (GlobMatch(pattern, key)) found.push_back(std::move(key));
      }
    } while (cursor != 0);
    return Status::OK();
  });
  for (auto& [key, type] : ObjectKeys(c.segment())) {
    if (GlobMatch(pattern, key)) found.push_back(std::move(key));
  }
  c.w.Array(found.size());
  for (const std::string& key : found) c.w.Bulk(key);
}

// SCAN walks the strings dict by its cursor; the first call (cursor 0) also returns every list
// and hash key (docs/resp.md).
void Scan(Call& c) {
  uint64_t cursor = 0;
  {
    std::string_view text = c.args[1];
    auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), cursor);
    if (ec != std::errc() || ptr != text.data() + text.size()) {
      return c.w.Error("ERR invalid cursor");
    }
  }
  std::string_view pattern = "*";
  std::string type;
  int64_t count = 10;
  for (size_t i = 2; i < c.args.size(); i += 2) {
    if (i + 1 >= c.args.size()) return c.w.Error(kSyntax);
    std::string option = Lower(c.args[i]);
    if (option == "match") {
      pattern = c.args[i + 1];
    } else if (option == "count") {
      if (!ParseInt(c.args[i + 1], &count)) return c.w.Error(kNotInteger);
      if (count < 1) return c.w.Error(kSyntax);
    } else if (option == "type") {
      type = Lower(c.args[i + 1]);
    } else {
      return c.w.Error(kSyntax);
    }
  }
  std::vector<std::string> found;
  if (cursor == 0 && type != "string") {
    for (auto& [key, key_type] : ObjectKeys(c.segment())) {
      if ((type.empty() || key_type == type) && GlobMatch(pattern, key)) {
        found.push_back(std::move(key));
      }
    }
  }
  uint64_t next = 0;
  if (type.empty() || type == "string") {
    size_t limit = static_cast<size_t>(std::min<int64_t>(count, kMaxScanCount));
    std::vector<std::string> keys;
    Status s = WithStrings(c.segment(), false,
                           [&](Dict& d) { return d.ListKeys("", limit, cursor, &keys, &next); });
    if (!s.ok() && !s.IsNotFound()) return ReplyStatus(c.w, s);
    for (std::string& key : keys) {
      if (GlobMatch(pattern, key)) found.push_back(std::move(key));
    }
  }
  c.w.Array(2);
  c.w.Bulk(std::to_string(next));
  c.w.Array(found.size());
  for (const std::string& key : found) c.w.Bulk(key);
}

uint64_t StringKeyCount(Segment* segment) {
  DictStats stats;
  WithStrings(segment, false, [&](Dict& d) { return d.Stats(&stats); });
  return stats.entries;
}

void DbSize(Call& c) {
  c.w.Integer(static_cast<int64_t>(StringKeyCount(c.segment()) + ObjectKeys(c.segment()).size()));
}

void FlushAll(Call& c) {
  if (c.args.size() > 2 || (c.args.size() == 2 && !EqualsIgnoreCase(c.args[1], "sync") &&
                            !EqualsIgnoreCase(c.args[1], "async"))) {
    return c.w.Error(kSyntax);
  }
  Registry& registry = c.segment()->registry();
  if (registry.Delete(kStringsDict, ObjectKind::kDict).ok())
    ForgetObject(c.segment(), kStringsDict);
  for (auto& [key, type] : ObjectKeys(c.segment())) DeleteKey(c.segment(), key);
  c.w.Simple("OK");
}

void Rename(Call& c) {
  DictValue value;
  Status s = WithStrings(c.segment(), false, [&](Dict& d) { return d.Get(c.args[1], &value); });
  if (s.IsNotFound()) {
    if (TypeOf(c.segment(), c.args[1]) != "none") {
      return c.w.Error("ERR shmstate renames string keys only");
    }
    return c.w.Error("ERR no such key");
  }
  if (!s.ok()) return ReplyStatus(c.w, s);
  if (c.args[1] == c.args[2]) return c.w.Simple("OK");
  int64_t ttl = value.expires_at_ms == 0 ? 0 : std::max<int64_t>(value.expires_at_ms - NowMs(), 1);
  DeleteKey(c.segment(), c.args[2]);
  s = WithStrings(c.segment(), true, [&](Dict& d) {
    SetOptions options;
    options.ttl_ms = ttl;
    options.content_type = value.content_type;
    return d.Set(c.args[2], value.data, options);
  });
  if (!s.ok()) return ReplyStatus(c.w, s);
  WithStrings(c.segment(), false, [&](Dict& d) { return d.Delete(c.args[1], value.version); });
  c.w.Simple("OK");
}

// ---------------------------------------------------------------------------------------------
// INFO, COMMAND, CONFIG.

void Info(Call& c) {
  std::vector<std::string> sections;
  for (size_t i = 1; i < c.args.size(); ++i) sections.push_back(Lower(c.args[i]));
  auto wants = [&](std::string_view name) {
    if (sections.empty()) return true;
    for (const std::string& s : sections) {
      if (s == name || s == "all" || s == "everything" || s == "default") return true;
    }
    return false;
  };
  std::string text;
  Segment* segment = c.segment();
  if (wants("server")) {
    text += "# Server\r\nredis_version:" + std::string(kRedisVersion) +
            "\r\nredis_mode:standalone\r\nos:Linux\r\narch_bits:64\r\nprocess_id:" +
            std::to_string(getpid()) +
            "\r\nuptime_in_seconds:" + std::to_string((NowMs() - c.config.started_ms) / 1000) +
            "\r\nshmstate_worker:" + std::to_string(c.config.worker_index) +
            "\r\nshmstate_segment:" + segment->shm_name() + "\r\n\r\n";
  }
  if (wants("clients")) {
    text += "# Clients\r\nconnected_clients:" + std::to_string(g_connected.load()) + "\r\n\r\n";
  }
  if (wants("memory")) {
    size_t used = segment->size() - segment->free_bytes();
    text += "# Memory\r\nused_memory:" + std::to_string(used) +
            "\r\nmaxmemory:" + std::to_string(segment->size()) +
            "\r\nmaxmemory_policy:noeviction\r\n\r\n";
  }
  if (wants("stats")) {
    text += "# Stats\r\ntotal_connections_received:" + std::to_string(g_connections.load()) +
            "\r\ntotal_commands_processed:" + std::to_string(g_commands.load()) + "\r\n\r\n";
  }
  if (wants("keyspace")) {
    text += "# Keyspace\r\n";
    uint64_t keys = StringKeyCount(segment) + ObjectKeys(segment).size();
    if (keys > 0) text += "db0:keys=" + std::to_string(keys) + ",expires=0,avg_ttl=0\r\n";
  }
  c.w.Bulk(text);
}

void CommandInfo(Call& c);

void Config(Call& c) {
  std::string sub = Lower(c.args[1]);
  if (sub == "get") return c.w.Map(0);  // No settings are exposed.
  if (sub == "resetstat") return c.w.Simple("OK");
  c.w.Error("ERR shmstate is configured on its command line (CONFIG " + std::string(c.args[1]) +
            " is not supported)");
}

// ---------------------------------------------------------------------------------------------
// Transactions.

void Multi(Call& c) {
  if (c.client->in_multi) return c.w.Error("ERR MULTI calls can not be nested");
  c.client->in_multi = true;
  c.client->multi_failed = false;
  c.client->queued.clear();
  c.w.Simple("OK");
}

void Discard(Call& c) {
  if (!c.client->in_multi) return c.w.Error("ERR DISCARD without MULTI");
  c.client->in_multi = false;
  c.client->queued.clear();
  c.client->watched.clear();
  c.w.Simple("OK");
}

uint64_t VersionOf(Segment* segment, std::string_view key) {
  DictValue value;
  bool ok = WithStrings(segment, false, [&](Dict& d) { return d.Get(key, &value); }).ok();
  return ok ? value.version : 0;
}

void Watch(Call& c) {
  if (c.client->in_multi) return c.w.Error("ERR WATCH inside MULTI is not allowed");
  for (size_t i = 1; i < c.args.size(); ++i) {
    c.client->watched.emplace_back(std::string(c.args[i]), VersionOf(c.segment(), c.args[i]));
  }
  c.w.Simple("OK");
}

void Unwatch(Call& c) {
  c.client->watched.clear();
  c.w.Simple("OK");
}

void RunOne(Call& c, const std::vector<std::string_view>& args, bool may_block);

void Exec(Call& c) {
  RespClient* client = c.client;
  if (!client->in_multi) return c.w.Error("ERR EXEC without MULTI");
  client->in_multi = false;
  std::vector<std::vector<std::string>> queued = std::move(client->queued);
  client->queued.clear();
  std::vector<std::pair<std::string, uint64_t>> watched = std::move(client->watched);
  client->watched.clear();
  if (client->multi_failed) {
    return c.w.Error("EXECABORT Transaction discarded because of previous errors.");
  }
  for (const auto& [key, version] : watched) {
    if (VersionOf(c.segment(), key) != version) return c.w.NullArray();
  }
  c.w.Array(queued.size());
  for (const std::vector<std::string>& command : queued) {
    std::vector<std::string_view> args(command.begin(), command.end());
    RunOne(c, args, /*may_block=*/false);
  }
}

struct Command {
  Handler handler;
  int arity;
  bool data = false;  // A data command: `keys` says which arguments are string keys.
  StringKeys keys = StringKeys::kFirst;
};

const std::unordered_map<std::string_view, Command>& ControlCommands() {
  static const std::unordered_map<std::string_view, Command> table = {
      {"ping", {Ping, -1}},
      {"echo", {Echo, 2}},
      {"auth", {Auth, -2}},
      {"hello", {Hello, -1}},
      {"select", {Select, 2}},
      {"client", {Client, -2}},
      {"quit", {Quit, -1}},
      {"command", {CommandInfo, -1}},
      {"time", {Time, 1}},
      {"del", {Del, -2}},
      {"unlink", {Del, -2}},
      {"exists", {Exists, -2}},
      {"type", {Type, 2}},
      {"expire", {Expire, -3}},
      {"pexpire", {PExpire, -3}},
      {"expireat", {ExpireAt, -3}},
      {"pexpireat", {PExpireAt, -3}},
      {"ttl", {Ttl, 2}},
      {"pttl", {PTtl, 2}},
      {"persist", {Persist, 2}},
      {"keys", {Keys, 2}},
      {"scan", {Scan, -2}},
      {"dbsize", {DbSize, 1}},
      {"flushdb", {FlushAll, -1}},
      {"flushall", {FlushAll, -1}},
      {"rename", {Rename, 3}},
      {"info", {Info, -1}},
      {"config", {Config, -2}},
      {"multi", {Multi, 1}},
      {"exec", {Exec, 1}},
      {"discard", {Discard, 1}},
      {"watch", {Watch, -2}},
      {"unwatch", {Unwatch, 1}},
  };
  return table;
}

// Every command, control and data, by lower-case name: one lookup per call.
const std::unordered_map<std::string_view, Command>& AllCommands() {
  static const std::unordered_map<std::string_view, Command> table = [] {
    std::unordered_map<std::string_view, Command> all = ControlCommands();
    for (const CommandSpec& spec : DataCommandSpecs()) {
      all.emplace(spec.name, Command{spec.handler, spec.arity, true, spec.keys});
    }
    return all;
  }();
  return table;
}

// No command's name is longer: a longer one is unknown without being lower-cased.
constexpr size_t kMaxCommandName = 16;

// `name` lower-cased into `buffer` (kMaxCommandName bytes); empty when it is too long to be a
// command's.
std::string_view LowerName(std::string_view name, char* buffer) {
  if (name.size() > kMaxCommandName) return {};
  for (size_t i = 0; i < name.size(); ++i) {
    char ch = name[i];
    buffer[i] = ch >= 'A' && ch <= 'Z' ? static_cast<char>(ch - 'A' + 'a') : ch;
  }
  return {buffer, name.size()};
}

// The command named `lower` (lower-case), or nullptr.
const Command* Find(std::string_view lower) {
  if (lower.empty()) return nullptr;
  auto it = AllCommands().find(lower);
  return it == AllCommands().end() ? nullptr : &it->second;
}

void CommandInfo(Call& c) {
  std::string sub = c.args.size() > 1 ? Lower(c.args[1]) : "";
  if (sub == "docs") return c.w.Map(0);  // redis-cli asks at start; it copes with no docs.
  if (sub == "count") {
    return c.w.Integer(static_cast<int64_t>(ControlCommands().size()));
  }
  if (!sub.empty()) {
    return c.w.Error("ERR unknown subcommand '" + std::string(c.args[1]) + "'. Try COMMAND HELP.");
  }
  std::vector<std::pair<std::string_view, int>> all;
  for (const auto& [name, command] : ControlCommands()) all.emplace_back(name, command.arity);
  for (const CommandSpec& spec : DataCommandSpecs()) all.emplace_back(spec.name, spec.arity);
  c.w.Array(all.size());
  for (const auto& [name, arity] : all) {
    c.w.Array(6);
    c.w.Bulk(name);
    c.w.Integer(arity);
    c.w.Set(0);
    c.w.Integer(0);
    c.w.Integer(0);
    c.w.Integer(0);
  }
}

void UnknownCommand(Call& c, const std::vector<std::string_view>& args) {
  std::string text = "ERR unknown command '" + std::string(args[0].substr(0, 128)) +
                     "', with args beginning with: ";
  for (size_t i = 1; i < args.size() && text.size() < 512; ++i) {
    text += "'" + std::string(args[i].substr(0, 128)) + "' ";
  }
  c.w.Error(text);
}

// Runs `command` (nullptr: unknown) with `args`.
void RunCommand(Call& c, const std::vector<std::string_view>& args, const Command* command,
                bool may_block) {
  Call inner{c.config, c.client, args, c.w, c.blocked, may_block};
  if (command == nullptr) return UnknownCommand(inner, args);
  if (!ArityOk(command->arity, args.size())) return WrongArity(inner);
  command->handler(inner);
  c.w = inner.w;  // HELLO may have switched the protocol.
  c.block = inner.block;
}

void RunOne(Call& c, const std::vector<std::string_view>& args, bool may_block) {
  char buffer[kMaxCommandName];
  RunCommand(c, args, Find(LowerName(args[0], buffer)), may_block);
}

}  // namespace

Outcome Execute(const RespConfig& config, RespClient* client,
                const std::vector<std::string_view>& args, std::string* out, BlockedPop* blocked) {
  g_commands.fetch_add(1, std::memory_order_relaxed);
  Call c{config, client, args, ReplyWriter(out, client->protocol), blocked, true};
  if (args.empty()) return Outcome::kReplied;
  char buffer[kMaxCommandName];
  std::string_view name = LowerName(args[0], buffer);
  const Command* command = Find(name);
  if (!config.password.empty() && !client->authenticated && name != "auth" && name != "hello" &&
      name != "quit") {
    c.w.Error("NOAUTH Authentication required.");
    return Outcome::kReplied;
  }
  if (client->in_multi && name != "exec" && name != "discard" && name != "multi" &&
      name != "watch" && name != "quit") {
    if (command == nullptr) {
      client->multi_failed = true;
      UnknownCommand(c, args);
    } else if (!ArityOk(command->arity, args.size())) {
      client->multi_failed = true;
      WrongArity(c);
    } else if (client->queued.size() >= kMaxQueuedCommands) {
      client->multi_failed = true;
      c.w.Error("ERR shmstate queues at most 10000 commands in a transaction");
    } else {
      client->queued.emplace_back(args.begin(), args.end());
      c.w.Simple("QUEUED");
    }
    return Outcome::kReplied;
  }
  RunCommand(c, args, command, true);
  return c.block ? Outcome::kBlock : Outcome::kReplied;
}

void Prefetch(const RespConfig& config, std::span<const ParsedCommand> commands) {
  std::string_view keys[Dict::kMaxPrefetch];
  size_t n = 0;
  for (const ParsedCommand& command : commands) {
    const std::vector<std::string_view>& args = command.args;
    char buffer[kMaxCommandName];
    const Command* found = args.size() > 1 ? Find(LowerName(args[0], buffer)) : nullptr;
    if (found == nullptr || !found->data) continue;
    const size_t step = found->keys == StringKeys::kEveryOther ? 2 : 1;
    const size_t last = found->keys == StringKeys::kFirst ? 1 : args.size() - 1;
    for (size_t i = 1; i <= last && n < Dict::kMaxPrefetch; i += step) keys[n++] = args[i];
  }
  if (n == 0) return;
  Dict strings;
  bool cached = false;
  if (handles::Strings(config.segment, false, &strings, &cached).ok()) {
    strings.Prefetch(std::span(keys, n));
  }
}

uint64_t NextClientId(Segment* /*segment*/, int worker_index) {
  // Unique across workers: the worker's index in the low bits.
  return (g_next_id.fetch_add(1) + 1) * 1024 + static_cast<uint64_t>(worker_index % 1024);
}

void CountConnection(int delta) {
  g_connected.fetch_add(delta);
  if (delta > 0) g_connections.fetch_add(1);
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
  if (text.empty() || text.size() > 20 || text[0] == '+') return false;
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), *value);
  return ec == std::errc() && ptr == text.data() + text.size() &&
         !(text.size() > 1 && (text[0] == '0' || (text[0] == '-' && text[1] == '0')));
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
