// Connection and server commands (Redis's "connection" and "server" groups): PING, AUTH, HELLO,
// SELECT, CLIENT, QUIT, TIME, INFO, CONFIG, COMMAND.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <iterator>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "internal.h"
#include "shm/client_table.h"
#include "shm/mutex.h"

namespace shm::resp {
namespace {

constexpr std::string_view kRedisVersion = "7.0.0";  // What clients are told (HELLO, INFO).

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
  if (user != "default" || c.config.token_matches == nullptr ||
      !c.config.token_matches(password, expected)) {
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
  if (index < 0 || index >= Keyspace::kDatabases) return c.w.Error("ERR DB index is out of range");
  c.client->db = static_cast<int>(index);
  ClientTable(c.segment()).SetDb(c.client->table_slot, c.client->id, c.client->db);
  c.w.Simple("OK");
}

// One connection as CLIENT LIST and CLIENT INFO print it: Redis 7.0's fields, in its order.
// Buffers and memory figures shmstate does not keep per connection are 0; the calling
// connection's own MULTI count is exact, another's is -1 or 0 (its flag says it is in MULTI).
std::string ClientLine(const ClientRow& row, const Call& c, int64_t now_ms) {
  const bool self = row.id == c.client->id;
  std::string flags;
  if (row.flags & ClientRow::kInMulti) flags += 'x';
  if (row.flags & ClientRow::kBlocked) flags += 'b';
  if (flags.empty()) flags = "N";
  std::string multi = "-1";
  if (self && c.client->in_multi) {
    multi = std::to_string(c.client->queued.size());
  } else if (row.flags & ClientRow::kInMulti) {
    multi = "0";
  }
  std::string name = self ? c.client->name : row.name;
  const std::string qbuf = std::to_string(self ? c.client->query_bytes : 0);
  return "id=" + std::to_string(row.id) + " addr=" + row.addr + " laddr=" + row.laddr +
         " fd=" + std::to_string(row.fd) + " name=" + name +
         " age=" + std::to_string(std::max<int64_t>(now_ms - row.connected_ms, 0) / 1000) +
         " idle=" + std::to_string(std::max<int64_t>(now_ms - row.last_ms, 0) / 1000) +
         " flags=" + flags + " db=" + std::to_string(row.db) +
         " sub=0 psub=0 ssub=0 multi=" + multi + " qbuf=" + qbuf +
         " qbuf-free=0 argv-mem=0 multi-mem=0 rbs=0 rbp=0 obl=0 oll=0 omem=0 tot-mem=0"
         " events=r cmd=" +
         row.cmd + " user=default redir=-1 resp=" + std::to_string(row.resp) +
         " shmstate-pid=" + std::to_string(row.pid) + "\n";
}

// The caller's own row; built from its RespClient when it has none in the table (full).
ClientRow OwnRow(const Call& c) {
  for (ClientRow& row : ClientTable(c.segment()).List()) {
    if (row.id == c.client->id) return row;
  }
  ClientRow row;
  row.id = c.client->id;
  row.pid = getpid();
  row.fd = c.client->fd;
  row.connected_ms = row.last_ms = c.client->connected_ms;
  row.addr = c.client->address;
  row.laddr = c.client->local_address;
  row.resp = c.client->protocol;
  row.cmd = "client|info";
  return row;
}

// CLIENT LIST [TYPE normal|master|replica|pubsub] [ID id ...]
void ClientList(Call& c) {
  std::vector<uint64_t> ids;
  bool none = false;  // TYPE master|replica|pubsub: shmstate has no such connections.
  for (size_t i = 2; i < c.args.size(); ++i) {
    if (EqualsIgnoreCase(c.args[i], "type") && i + 1 < c.args.size()) {
      std::string type = Lower(c.args[++i]);
      if (type != "normal" && type != "master" && type != "replica" && type != "slave" &&
          type != "pubsub") {
        return c.w.Error("ERR Unknown client type '" + std::string(c.args[i].substr(0, 64)) + "'");
      }
      none = type != "normal";
    } else if (EqualsIgnoreCase(c.args[i], "id") && i + 1 < c.args.size()) {
      for (++i; i < c.args.size(); ++i) {
        int64_t id = 0;
        if (!ParseInt(c.args[i], &id) || id <= 0) return c.w.Error("ERR Invalid client ID");
        ids.push_back(static_cast<uint64_t>(id));
      }
    } else {
      return c.w.Error(kSyntax);
    }
  }
  std::string text;
  const int64_t now = NowMs();
  for (const ClientRow& row : ClientTable(c.segment()).List()) {
    if (none) break;
    if (row.flags & ClientRow::kKillRequested) continue;  // Being closed: gone, as in Redis.
    if (!ids.empty() && std::find(ids.begin(), ids.end(), row.id) == ids.end()) continue;
    text += ClientLine(row, c, now);
  }
  c.w.Bulk(text);
}

// CLIENT KILL ip:port (old form: OK or an error) or CLIENT KILL <filter value> ... (the number
// of connections killed). Filters: ID, ADDR, LADDR, USER, SKIPME yes|no, TYPE normal|...
void ClientKill(Call& c) {
  if (c.args.size() < 3)
    return c.w.Error("ERR wrong number of arguments for 'client|kill' command");
  const bool old_form = c.args.size() == 3;
  if (!old_form && c.args.size() % 2 != 0) return c.w.Error(kSyntax);
  std::optional<uint64_t> id;
  std::string addr, laddr;
  bool skipme = true, none = false;
  if (old_form) {
    addr = std::string(c.args[2]);
  } else {
    for (size_t i = 2; i + 1 < c.args.size(); i += 2) {
      std::string filter = Lower(c.args[i]);
      std::string_view value = c.args[i + 1];
      int64_t number = 0;
      if (filter == "id") {
        if (!ParseInt(value, &number) || number <= 0) {
          return c.w.Error("ERR client-id should be greater than 0");
        }
        id = static_cast<uint64_t>(number);
      } else if (filter == "addr") {
        addr = std::string(value);
      } else if (filter == "laddr") {
        laddr = std::string(value);
      } else if (filter == "user") {
        if (value != "default") {
          return c.w.Error("ERR No such user '" + std::string(value.substr(0, 64)) + "'");
        }
      } else if (filter == "type") {
        std::string type = Lower(value);
        if (type != "normal" && type != "master" && type != "replica" && type != "slave" &&
            type != "pubsub") {
          return c.w.Error("ERR Unknown client type '" + std::string(value.substr(0, 64)) + "'");
        }
        none = none || type != "normal";
      } else if (filter == "skipme") {
        if (EqualsIgnoreCase(value, "yes")) {
          skipme = true;
        } else if (EqualsIgnoreCase(value, "no")) {
          skipme = false;
        } else {
          return c.w.Error(kSyntax);
        }
      } else if (filter == "maxage") {
        return c.w.Error(kSyntax);  // Redis 7.4's; not in 7.0.
      } else {
        return c.w.Error(kSyntax);
      }
    }
  }
  int64_t killed = 0;
  ClientTable table(c.segment());
  for (const ClientRow& row : table.List()) {
    if (none) break;
    if (id && row.id != *id) continue;
    if (!addr.empty() && row.addr != addr) continue;
    if (!laddr.empty() && row.laddr != laddr) continue;
    if (row.id == c.client->id && (old_form ? false : skipme)) continue;
    if ((row.flags & ClientRow::kKillRequested) || !table.RequestKill(row.id)) continue;
    ++killed;
    // The caller's own connection closes right after this reply, as in Redis (others within
    // their worker's next sweep).
    if (row.id == c.client->id) c.client->close_after_reply = true;
  }
  if (!old_form) return c.w.Integer(killed);
  if (killed == 0) return c.w.Error("ERR No such client");
  c.w.Simple("OK");
}

void Client(Call& c) {
  std::string sub = Lower(c.args[1]);
  if (sub == "setname" && c.args.size() == 3) {
    if (!ValidClientName(c.args[2])) {
      return c.w.Error("ERR Client names cannot contain spaces, newlines or special characters.");
    }
    c.client->name = std::string(c.args[2]);
    ClientTable(c.segment()).SetName(c.client->table_slot, c.client->id, c.client->name);
    return c.w.Simple("OK");
  }
  if (sub == "getname" && c.args.size() == 2) {
    return c.client->name.empty() ? c.w.Null() : c.w.Bulk(c.client->name);
  }
  if (sub == "id" && c.args.size() == 2) return c.w.Integer(static_cast<int64_t>(c.client->id));
  if (sub == "info" && c.args.size() == 2) return c.w.Bulk(ClientLine(OwnRow(c), c, NowMs()));
  if (sub == "list") return ClientList(c);
  if (sub == "kill") return ClientKill(c);
  if (sub == "setinfo" && c.args.size() == 4) return c.w.Simple("OK");
  if (sub == "unblock" && (c.args.size() == 3 || c.args.size() == 4)) {
    int64_t id = 0;
    if (!ParseInt(c.args[2], &id)) return c.w.Error(kNotInteger);
    bool error = false;
    if (c.args.size() == 4) {
      if (EqualsIgnoreCase(c.args[3], "error")) {
        error = true;
      } else if (!EqualsIgnoreCase(c.args[3], "timeout")) {
        return c.w.Error("ERR CLIENT UNBLOCK reason should be TIMEOUT or ERROR");
      }
    }
    // Answered at once; the blocked connection's worker ends the wait within its poll interval.
    return c.w.Integer(id > 0 && ClientTable(c.segment()).RequestUnblock(id, error) ? 1 : 0);
  }
  if (sub == "reply" && c.args.size() == 3) {
    std::string mode = Lower(c.args[2]);
    if (mode == "on") {
      c.client->reply_off = false;
      c.client->reply_skip_this = false;
      return c.w.Simple("OK");
    }
    if (mode == "off") {
      c.client->reply_off = true;
      return;
    }
    if (mode == "skip") {
      c.client->reply_skip_next = true;
      return;
    }
    return c.w.Error(kSyntax);
  }
  c.w.Error("ERR unknown subcommand or wrong number of arguments for '" +
            std::string(c.args[1].substr(0, 64)) + "'. Try CLIENT HELP.");
}

// RESET: the connection as new (MULTI discarded, nothing watched, RESP2, no name, replies on,
// and AUTH again when a password is set).
void Reset(Call& c) {
  RespClient* client = c.client;
  client->in_multi = false;
  client->multi_failed = false;
  client->queued.clear();
  client->watched.clear();
  client->name.clear();
  ClientTable(c.segment()).SetName(client->table_slot, client->id, "");
  client->reply_off = false;
  client->reply_skip_next = false;
  client->authenticated = false;
  client->protocol = 2;
  client->db = 0;
  ClientTable(c.segment()).SetDb(client->table_slot, client->id, 0);
  c.w = ReplyWriter(c.w.buffer(), 2);
  c.w.Simple("RESET");
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
// INFO, COMMAND, CONFIG.

// A byte count as Redis's INFO prints its *_human fields: "1023B", "1.50K", "64.00M".
std::string BytesToHuman(uint64_t bytes) {
  static constexpr const char* kUnits[] = {"K", "M", "G", "T", "P"};
  if (bytes < 1024) return std::to_string(bytes) + "B";
  double value = static_cast<double>(bytes) / 1024;
  size_t unit = 0;
  while (value >= 1024 && unit + 1 < std::size(kUnits)) {
    value /= 1024;
    ++unit;
  }
  char text[32];
  std::snprintf(text, sizeof text, "%.2f%s", value, kUnits[unit]);
  return text;
}

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
            "\r\nuptime_in_days:" + std::to_string((NowMs() - c.config.started_ms) / 86400000) +
            "\r\nshmstate_worker:" + std::to_string(c.config.worker_index) +
            "\r\nshmstate_segment:" + segment->shm_name() + "\r\n\r\n";
  }
  if (wants("clients")) {
    // Every worker's connections (the segment's ClientTable).
    int64_t connected = 0, blocked = 0;
    for (const ClientRow& row : ClientTable(segment).List()) {
      if (row.flags & ClientRow::kKillRequested) continue;  // Being closed.
      ++connected;
      blocked += (row.flags & ClientRow::kBlocked) != 0;
    }
    text += "# Clients\r\nconnected_clients:" + std::to_string(connected) +
            "\r\ncluster_connections:0\r\nblocked_clients:" + std::to_string(blocked) +
            "\r\ntracking_clients:0\r\n\r\n";
  }
  if (wants("memory")) {
    size_t used = segment->size() - segment->free_bytes();
    text += "# Memory\r\nused_memory:" + std::to_string(used) +
            "\r\nused_memory_human:" + BytesToHuman(used) +
            "\r\nmaxmemory:" + std::to_string(segment->size()) +
            "\r\nmaxmemory_human:" + BytesToHuman(segment->size()) +
            "\r\nmaxmemory_policy:noeviction\r\nmem_allocator:shmstate\r\n\r\n";
  }
  if (wants("stats")) {
    text +=
        "# Stats\r\ntotal_connections_received:" + std::to_string(Counters().connections.load()) +
        "\r\ntotal_commands_processed:" + std::to_string(Counters().commands.load()) +
        "\r\nevicted_keys:0\r\n\r\n";  // maxmemory-policy noeviction: nothing is evicted.
  }
  if (wants("persistence")) {
    text +=
        "# Persistence\r\nloading:0\r\nasync_loading:0\r\nrdb_bgsave_in_progress:0\r\n"
        "aof_enabled:0\r\naof_rewrite_in_progress:0\r\n\r\n";
  }
  if (wants("replication")) {
    text += "# Replication\r\nrole:master\r\nconnected_slaves:0\r\n\r\n";
  }
  if (wants("cluster")) text += "# Cluster\r\ncluster_enabled:0\r\n\r\n";
  if (wants("keyspace")) {
    text += "# Keyspace\r\n";
    for (int db = 0; db < Keyspace::kDatabases; ++db) {
      uint64_t expiring = 0;
      uint64_t keys = KeyCount(segment, db, &expiring);
      if (keys > 0) {
        // avg_ttl is Redis's running estimate from its expiry sampling; shmstate keeps none.
        text += "db" + std::to_string(db) + ":keys=" + std::to_string(keys) +
                ",expires=" + std::to_string(expiring) + ",avg_ttl=0\r\n";
      }
    }
  }
  c.w.Bulk(text);
}

// Redis's flag names, in the order COMMAND lists them.
constexpr std::pair<uint32_t, std::string_view> kFlagNames[] = {
    {kWrite, "write"},       {kReadOnly, "readonly"}, {kDenyOom, "denyoom"},      {kAdmin, "admin"},
    {kNoScript, "noscript"}, {kBlocking, "blocking"}, {kLoading, "loading"},      {kStale, "stale"},
    {kFast, "fast"},         {kNoAuth, "no_auth"},    {kAllowBusy, "allow_busy"},
};

// One row as COMMAND and COMMAND INFO answer it: name, arity, flags, first key, last key, step.
void WriteCommandRow(ReplyWriter& w, const CommandRow& row) {
  w.Array(6);
  w.Bulk(row.name);
  w.Integer(row.arity);
  size_t flags = 0;
  for (const auto& [flag, name] : kFlagNames) flags += (row.flags & flag) != 0;
  w.Set(flags);
  for (const auto& [flag, name] : kFlagNames) {
    if ((row.flags & flag) != 0) w.Simple(name);
  }
  w.Integer(row.keys.first);
  w.Integer(row.keys.last);
  w.Integer(row.keys.step);
}

void CommandCommand(Call& c) {
  const CommandTable& table = Commands();
  std::string sub = c.args.size() > 1 ? Lower(c.args[1]) : "";
  if (sub == "docs") return c.w.Map(0);  // redis-cli asks at start; it copes with no docs.
  if (sub == "count" && c.args.size() == 2) {
    return c.w.Integer(static_cast<int64_t>(table.rows().size()));
  }
  if (sub == "info") {
    c.w.Array(c.args.size() - 2);
    for (size_t i = 2; i < c.args.size(); ++i) {
      const CommandRow* row = table.Find(c.args[i]);
      row == nullptr ? c.w.NullArray() : WriteCommandRow(c.w, *row);
    }
    return;
  }
  if (!sub.empty()) {
    return c.w.Error("ERR unknown subcommand '" + std::string(c.args[1].substr(0, 128)) +
                     "'. Try COMMAND HELP.");
  }
  c.w.Array(table.rows().size());
  for (const CommandRow& row : table.rows()) WriteCommandRow(c.w, row);
}

// CONFIG: shmstate is configured on its command line, so CONFIG exposes what maps to it and
// nothing else (docs/resp.md). A parameter is either a fact (its value is shmstate's; SET
// accepts only that value), or an encoding tunable, which shmstate has no use for (one
// representation per type): its value is kept per worker process and changes nothing.
struct ConfigParam {
  std::string_view name;
  bool tunable;            // Settable, no effect; else a fact.
  std::string_view value;  // Redis 7.0's default for a tunable; empty: see ConfigFact.
};

constexpr ConfigParam kConfigParams[] = {
    {"save", false, ""},  // No save points: snapshots are the manager's (--snapshot).
    {"appendonly", false, "no"},
    {"maxmemory", false, ""},
    {"maxmemory-policy", false, "noeviction"},
    {"databases", false, "16"},
    {"cluster-enabled", false, "no"},
    {"list-max-ziplist-size", true, "-2"},
    {"list-max-listpack-size", true, "-2"},
    {"list-compress-depth", true, "0"},
    {"hash-max-ziplist-entries", true, "128"},
    {"hash-max-ziplist-value", true, "64"},
    {"hash-max-listpack-entries", true, "128"},
    {"hash-max-listpack-value", true, "64"},
    {"set-max-intset-entries", true, "512"},
    {"zset-max-ziplist-entries", true, "128"},
    {"zset-max-ziplist-value", true, "64"},
    {"zset-max-listpack-entries", true, "128"},
    {"zset-max-listpack-value", true, "64"},
};

struct TunableValues {
  Mutex mu;
  std::unordered_map<std::string_view, std::string> values GUARDED_BY(mu);
};
TunableValues& Tunables() {
  static TunableValues tunables;
  return tunables;
}

std::string ConfigValue(const Call& c, const ConfigParam& param) {
  if (param.name == "maxmemory") return std::to_string(c.segment()->size());
  if (!param.tunable) return std::string(param.value);
  TunableValues& t = Tunables();
  MutexLock lock(&t.mu);
  auto it = t.values.find(param.name);
  return it == t.values.end() ? std::string(param.value) : it->second;
}

// Redis's parameters that are set at start only: CONFIG SET answers them as Redis does.
bool IsImmutableRedisParam(std::string_view name) {
  for (std::string_view immutable :
       {"daemonize", "port", "bind", "unixsocket", "unixsocketperm", "logfile", "pidfile",
        "supervised", "io-threads", "tcp-backlog", "syslog-enabled", "always-show-logo"}) {
    if (name == immutable) return true;
  }
  return false;
}

const ConfigParam* FindConfigParam(std::string_view name) {
  for (const ConfigParam& param : kConfigParams) {
    if (EqualsIgnoreCase(param.name, name)) return &param;
  }
  return nullptr;
}

void ConfigGet(Call& c) {
  std::vector<const ConfigParam*> found;
  for (const ConfigParam& param : kConfigParams) {
    for (size_t i = 2; i < c.args.size(); ++i) {
      if (GlobMatch(Lower(c.args[i]), param.name)) {
        found.push_back(&param);
        break;
      }
    }
  }
  c.w.Map(found.size());
  for (const ConfigParam* param : found) {
    c.w.Bulk(param->name);
    c.w.Bulk(ConfigValue(c, *param));
  }
}

// All or nothing, as Redis: every pair is checked before any is applied.
void ConfigSet(Call& c) {
  if (c.args.size() < 4 || c.args.size() % 2 != 0) return WrongArity(c);
  for (size_t i = 2; i < c.args.size(); i += 2) {
    const ConfigParam* param = FindConfigParam(c.args[i]);
    std::string name = Lower(c.args[i]);
    if (param == nullptr && IsImmutableRedisParam(name)) {
      return c.w.Error("ERR CONFIG SET failed (possibly related to argument '" + name +
                       "') - can't set immutable config");
    }
    if (param == nullptr) {
      return c.w.Error("ERR Unknown option or number of arguments for CONFIG SET - '" + name + "'");
    }
    if (param->tunable) {
      int64_t number = 0;
      if (!ParseInt(c.args[i + 1], &number)) {
        return c.w.Error("ERR CONFIG SET failed (possibly related to argument '" + name +
                         "') - argument couldn't be parsed into an integer");
      }
    } else if (c.args[i + 1] != ConfigValue(c, *param)) {
      return c.w.Error("ERR CONFIG SET failed (possibly related to argument '" + name +
                       "') - shmstate takes '" + name + "' from its command line only");
    }
  }
  TunableValues& t = Tunables();
  MutexLock lock(&t.mu);
  for (size_t i = 2; i < c.args.size(); i += 2) {
    const ConfigParam* param = FindConfigParam(c.args[i]);
    if (param->tunable) t.values[param->name] = std::string(c.args[i + 1]);
  }
  c.w.Simple("OK");
}

void Config(Call& c) {
  std::string sub = Lower(c.args[1]);
  if (sub == "get" && c.args.size() >= 3) return ConfigGet(c);
  if (sub == "set") return ConfigSet(c);
  if (sub == "resetstat" || sub == "rewrite") {
    return c.w.Error("ERR shmstate is configured on its command line (CONFIG " +
                     std::string(c.args[1].substr(0, 64)) + " is not supported)");
  }
  c.w.Error("ERR unknown subcommand '" + std::string(c.args[1].substr(0, 64)) +
            "'. Try CONFIG HELP.");
}

// MEMORY USAGE key [SAMPLES n]: the bytes of the key's data (KeyBytes); nil for a missing key.
void Memory(Call& c) {
  std::string sub = Lower(c.args[1]);
  if (sub == "usage" && (c.args.size() == 3 || c.args.size() == 5)) {
    int64_t samples = 0;
    if (c.args.size() == 5 &&
        (!EqualsIgnoreCase(c.args[3], "samples") || !ParseInt(c.args[4], &samples))) {
      return c.w.Error(kSyntax);
    }
    uint64_t bytes = 0;
    if (!KeyBytes(c.segment(), c.client->db, c.args[2], &bytes)) return c.w.Null();
    return c.w.Integer(static_cast<int64_t>(bytes));
  }
  c.w.Error("ERR unknown subcommand or wrong number of arguments for '" +
            std::string(c.args[1].substr(0, 64)) + "'. Try MEMORY HELP.");
}

// FUNCTION: shmstate runs no scripts, so there are never functions to list, flush or call.
// FLUSH and LIST answer that truthfully (Redis's test harness flushes before every unit);
// loading one is refused.
void Function(Call& c) {
  std::string sub = Lower(c.args[1]);
  if (sub == "flush" && c.args.size() <= 3) {
    if (c.args.size() == 3 && !EqualsIgnoreCase(c.args[2], "sync") &&
        !EqualsIgnoreCase(c.args[2], "async")) {
      return c.w.Error("ERR FUNCTION FLUSH only supports SYNC|ASYNC option");
    }
    return c.w.Simple("OK");
  }
  if (sub == "list") return c.w.Array(0);
  c.w.Error("ERR shmstate does not run Redis functions or scripts (FUNCTION " +
            std::string(c.args[1].substr(0, 64)) + ")");
}

}  // namespace

ServerCounters& Counters() {
  static ServerCounters counters;
  return counters;
}

uint64_t NextClientId(Segment* /*segment*/, int worker_index) {
  // Unique across workers: the worker's index in the low bits.
  return (Counters().next_id.fetch_add(1) + 1) * 1024 + static_cast<uint64_t>(worker_index % 1024);
}

void CountConnection(int delta) {
  Counters().connected.fetch_add(delta);
  if (delta > 0) Counters().connections.fetch_add(1);
}

void RegisterServerCommands(CommandTable* table) {
  constexpr KeyPositions kNone{};
  constexpr uint32_t kLoadingStale = kLoading | kStale;
  for (const CommandRow& row : {
           CommandRow{"ping", -1, kFast, kNone, Ping},
           CommandRow{"echo", 2, kFast, kNone, Echo},
           CommandRow{"auth", -2, kNoScript | kLoadingStale | kFast | kNoAuth | kAllowBusy, kNone,
                      Auth},
           CommandRow{"hello", -1, kNoScript | kLoadingStale | kFast | kNoAuth | kAllowBusy, kNone,
                      Hello},
           CommandRow{"select", 2, kLoadingStale | kFast, kNone, Select},
           CommandRow{"client", -2, kAdmin | kNoScript | kLoadingStale | kContainer, kNone, Client},
           CommandRow{"reset", 1,
                      kNoScript | kLoadingStale | kFast | kNoAuth | kAllowBusy | kUnqueued, kNone,
                      Reset},
           CommandRow{"quit", -1,
                      kNoScript | kLoadingStale | kFast | kNoAuth | kAllowBusy | kUnqueued, kNone,
                      Quit},
           CommandRow{"command", -1, kLoadingStale | kContainer, kNone, CommandCommand},
           CommandRow{"time", 1, kLoadingStale | kFast, kNone, Time},
           CommandRow{"info", -1, kLoadingStale, kNone, Info},
           CommandRow{"config", -2, kAdmin | kNoScript | kLoadingStale | kContainer, kNone, Config},
           CommandRow{"function", -2, kNoScript | kContainer, kNone, Function},
           CommandRow{"memory", -2, kReadOnly | kContainer, {2, 2, 1}, Memory},
       }) {
    table->Add(row);
  }
}

}  // namespace shm::resp
