"""The shmstate objects on Redis or Redis Cluster (``connect("redis://...")``).

The public classes of :mod:`shmstate` (``Counter``, ``Dict``, ``List``, ``Lock``, ``Sessions``,
``Array``) wrap a native handle; this module provides handles with the same methods, implemented
with redis-py, so code written against ``shm://`` runs unchanged. See docs/scaling.md for what
stays the same and what differs.

Key layout (``P`` is the prefix, ``ss`` by default). Every key of one object carries the hash
tag ``{name}``, so an object lives on one cluster node and each operation is one Lua script (or
one command) there: atomic, never split across nodes.

- ``P:{name}``            a hash: ``kind`` and the object's options; the counter's value, the
  lock's lease and fencing sequence, the dict's version sequence, the array's version.
- ``P:{name}:e:<key>``    a dict entry: hash ``v`` (value), ``ver`` (version), ``exp`` (ms).
  ``P:{name}:i`` is the set of the dict's keys (for iteration, ``len`` and ``delete``).
- ``P:{name}:l``          a list.
- ``P:{name}:<epoch>:s:<sid>`` a session: hash of ``f:<field>`` -> JSON text, expiring after the
  idle TTL (``epoch`` changes when the sessions object is deleted and created again).
- ``P:{name}:c:<i>``      an array's chunk ``i`` (raw bytes, C order, ``chunk`` bytes each).

Writes are not retried after a connection error (the write may have been applied; retrying
could apply it twice): the call raises :class:`shmstate.Unavailable` and the next call finds the
cluster's new topology. With ``wait_replicas=N`` each write is followed by ``WAIT N`` on the same
connection and raises ``Unavailable`` unless N replicas acknowledged it.
"""

from __future__ import annotations

import hashlib
import json as _json
import os
import time
import urllib.parse
from typing import Any, Callable, List as _ListT, Optional

import redis
from redis import exceptions as rex

from . import _shmstate

_MAX_NAME = _shmstate.LIMITS["object_name"]
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._:-")
_MAX_WAIT_S = 24 * 3600.0
_BLOCK_SLICE_S = 1.0  # A blocking pop waits in slices this long (Ctrl-C, socket timeouts).
_ARRAY_CHUNK = 64 << 10
_ARRAY_MAX_BYTES = _shmstate.LIMITS["array_bytes"]
_DTYPES = ("bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
           "float32", "float64")


# --- Errors -----------------------------------------------------------------------------------

def _error(kind: type, code: str, message: str) -> Exception:
    e = kind(message)
    e.code = code
    return e


_BY_CODE = {
    "NotFound": _shmstate.NotFound, "AlreadyExists": _shmstate.AlreadyExists,
    "WrongType": _shmstate.WrongKind, "InvalidArgument": _shmstate.InvalidArgument,
    "Conflict": _shmstate.Conflict, "OutOfSpace": _shmstate.Full,
    "Timeout": _shmstate.Timeout, "Unavailable": _shmstate.Unavailable,
}


def _map_response_error(e: rex.ResponseError) -> Exception:
    """A script's error_reply("Code: message"), or a Redis error, as a shmstate exception."""
    text = str(e)
    # A script error arrives as is, or wrapped ("... script: ... Code: message").
    for code, kind in _BY_CODE.items():
        at = text.find(code + ": ")
        if at >= 0:
            return _error(kind, code, text[at + len(code) + 2:].split(" script:")[0])
    low = text.lower()
    if "not an integer" in low or "overflow" in low or "not a valid" in low:
        return _error(_shmstate.InvalidArgument, "InvalidArgument", text)
    if "wrongtype" in low:
        return _error(_shmstate.WrongKind, "WrongType", text)
    if "oom" in low:
        return _error(_shmstate.Full, "OutOfSpace", text)
    return _error(_shmstate.Internal, "Internal", f"redis: {text}")


def _invalid(message: str) -> Exception:
    return _error(_shmstate.InvalidArgument, "InvalidArgument", message)


# --- Conversions (the native module's rules: its own converters, python/src/convert.h) -------

_text = _shmstate._to_text


def _check_name(name: str) -> str:
    name = _text(name, "name")
    if not name:
        raise _invalid("name is empty")
    if len(name.encode()) > _MAX_NAME:
        raise _invalid(f"name longer than {_MAX_NAME} bytes")
    if name[0] == ".":
        raise _invalid("name starts with '.'")
    if not set(name) <= _NAME_CHARS:
        raise _invalid("name has a character outside [A-Za-z0-9._:-]")
    return name


def _ttl_ms(seconds: Optional[float], what: str = "ttl", none_is_no_expiry: bool = True) -> int:
    return _shmstate._to_ttl_ms(seconds, what, none_is_no_expiry)


def _wait_s(seconds: Optional[float], default: float, what: str = "wait") -> float:
    return _shmstate._to_wait_s(seconds, what, default, _MAX_WAIT_S)


def _key(key: Any, what: str = "key") -> bytes:
    return _shmstate._to_key(key, what)


def _value(value: Any, what: str = "value") -> bytes:
    return _shmstate._to_bytes(value, what)


def _int64(value: Any, what: str = "value") -> int:
    return _shmstate._to_int64(value, what)


_uint64 = _shmstate._to_uint64


def _end(end: str) -> bytes:
    end = _text(end, "end")
    if end not in ("left", "right"):
        raise _invalid("end must be 'left' or 'right'")
    return end.encode()


# --- Scripts ----------------------------------------------------------------------------------

# Every script starts by checking the object's kind in its meta hash (KEYS[1]).
_KIND_CHECK = """
local kind = redis.call('HGET', KEYS[1], 'kind')
if not kind then return redis.error_reply('NotFound: no object ' .. ARGV[1]) end
if kind ~= ARGV[2] then
  return redis.error_reply('WrongType: ' .. ARGV[1] .. ' is a ' .. kind .. ', not a ' .. ARGV[2])
end
"""
_NOW_MS = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""


class _Script:
    """A Lua script run by EVALSHA, loaded on NOSCRIPT (a new or failed-over node)."""

    def __init__(self, body: str, *, write: bool = True, check_kind: bool = True) -> None:
        self.source = (_KIND_CHECK if check_kind else "") + body
        self.sha = hashlib.sha1(self.source.encode()).hexdigest()
        self.write = write


# ARGV: name, kind, then the script's own arguments from ARGV[3].
_OPEN = _Script("""
local kind = redis.call('HGET', KEYS[1], 'kind')
if kind then
  if kind ~= ARGV[2] then
    return redis.error_reply('WrongType: ' .. ARGV[1] .. ' is a ' .. kind .. ', not a ' .. ARGV[2])
  end
  return redis.call('HGETALL', KEYS[1])
end
redis.call('HSET', KEYS[1], 'kind', ARGV[2], unpack(ARGV, 4))
if tonumber(ARGV[3]) > 0 then redis.call('PEXPIRE', KEYS[1], ARGV[3]) end
return redis.call('HGETALL', KEYS[1])
""", check_kind=False)

_COUNTER_INCR = _Script("""
local ok, v = pcall(redis.call, 'HINCRBY', KEYS[1], 'v', ARGV[3])
if not ok then return redis.error_reply('InvalidArgument: counter overflow') end
return v
""")
_COUNTER_GET = _Script("return redis.call('HGET', KEYS[1], 'v')", write=False)
_COUNTER_SET = _Script("redis.call('HSET', KEYS[1], 'v', ARGV[3]) return 1")
_COUNTER_CAS = _Script("""
if redis.call('HGET', KEYS[1], 'v') ~= ARGV[3] then return 0 end
redis.call('HSET', KEYS[1], 'v', ARGV[4])
return 1
""")

# Dict: KEYS = meta, entry, index; ARGV[3] = key.
_DICT_SET = _Script(_NOW_MS + """
local mode, ttl, if_version = ARGV[5], tonumber(ARGV[6]), ARGV[7]
local ver = redis.call('HGET', KEYS[2], 'ver')
if mode == 'add' and ver then return 0 end
if mode == 'replace' and not ver then return 0 end
if if_version ~= '' and ver ~= if_version then return 0 end
if ttl == 0 then ttl = tonumber(redis.call('HGET', KEYS[1], 'default_ttl_ms') or '0') end
local exp = 0
if ttl > 0 then exp = now + ttl end
local n = redis.call('HINCRBY', KEYS[1], 'ver', 1)
redis.call('DEL', KEYS[2])
redis.call('HSET', KEYS[2], 'v', ARGV[4], 'ver', n, 'exp', exp)
if exp > 0 then redis.call('PEXPIREAT', KEYS[2], exp) end
redis.call('SADD', KEYS[3], ARGV[3])
return 1
""")
_DICT_DELETE = _Script("""
redis.call('SREM', KEYS[3], ARGV[3])
return redis.call('DEL', KEYS[2])
""")
_DICT_INCR = _Script(_NOW_MS + """
local fresh = redis.call('EXISTS', KEYS[2]) == 0
local n = redis.call('HINCRBY', KEYS[1], 'ver', 1)
if fresh then
  local ttl = tonumber(ARGV[6])
  if ttl == 0 then ttl = tonumber(redis.call('HGET', KEYS[1], 'default_ttl_ms') or '0') end
  local exp = 0
  if ttl > 0 then exp = now + ttl end
  redis.call('HSET', KEYS[2], 'v', ARGV[5], 'exp', exp)
  if exp > 0 then redis.call('PEXPIREAT', KEYS[2], exp) end
  redis.call('SADD', KEYS[3], ARGV[3])
end
local ok, v = pcall(redis.call, 'HINCRBY', KEYS[2], 'v', ARGV[4])
if not ok then
  if fresh then redis.call('DEL', KEYS[2]) redis.call('SREM', KEYS[3], ARGV[3]) end
  return redis.error_reply('InvalidArgument: the value is not an integer, or the sum overflows')
end
redis.call('HSET', KEYS[2], 'ver', n)
return v
""")
_DICT_CAS = _Script(_NOW_MS + """
local cur = redis.call('HGET', KEYS[2], 'v')
if ARGV[4] == '0' then
  if cur then return 0 end
elseif cur ~= ARGV[5] then
  return 0
end
local n = redis.call('HINCRBY', KEYS[1], 'ver', 1)
redis.call('HSET', KEYS[2], 'v', ARGV[6], 'ver', n)
if not cur then
  local ttl = tonumber(redis.call('HGET', KEYS[1], 'default_ttl_ms') or '0')
  local exp = 0
  if ttl > 0 then exp = now + ttl redis.call('PEXPIREAT', KEYS[2], exp) end
  redis.call('HSET', KEYS[2], 'exp', exp)
  redis.call('SADD', KEYS[3], ARGV[3])
end
return 1
""")
# KEYS = meta, index; ARGV[3] = cursor, ARGV[4] = count, ARGV[5] = entry key prefix.
# Drops the keys of expired entries from the index as it goes.
_DICT_KEYS = _Script("""
local r = redis.call('SSCAN', KEYS[2], ARGV[3], 'COUNT', ARGV[4])
local live = {}
for _, k in ipairs(r[2]) do
  if redis.call('EXISTS', ARGV[5] .. k) == 1 then live[#live + 1] = k
  else redis.call('SREM', KEYS[2], k) end
end
return {r[1], live}
""")

# List: KEYS = meta, list.
_LIST_PUSH = _Script("""
local max_items = tonumber(redis.call('HGET', KEYS[1], 'max_items'))
local max_item_bytes = tonumber(redis.call('HGET', KEYS[1], 'max_item_bytes'))
if string.len(ARGV[4]) > max_item_bytes then
  return redis.error_reply('InvalidArgument: item larger than max_item_bytes ' .. max_item_bytes)
end
if redis.call('LLEN', KEYS[2]) >= max_items then
  return redis.error_reply('OutOfSpace: list ' .. ARGV[1] .. ' holds max_items ' .. max_items)
end
if ARGV[3] == 'left' then return redis.call('LPUSH', KEYS[2], ARGV[4]) end
return redis.call('RPUSH', KEYS[2], ARGV[4])
""")

# Lock: KEYS = meta. Fields: seq (the fencing sequence), token, owner, exp, acq.
_LOCK_ACQUIRE = _Script(_NOW_MS + """
local exp = tonumber(redis.call('HGET', KEYS[1], 'exp') or '0')
if redis.call('HGET', KEYS[1], 'token') and exp > now then return {0, exp - now} end
local token = redis.call('HINCRBY', KEYS[1], 'seq', 1)
redis.call('HSET', KEYS[1], 'token', token, 'owner', ARGV[4], 'exp', now + tonumber(ARGV[3]))
redis.call('HINCRBY', KEYS[1], 'acq', 1)
return {1, token}
""")
_LOCK_RELEASE = _Script(_NOW_MS + """
local exp = tonumber(redis.call('HGET', KEYS[1], 'exp') or '0')
if redis.call('HGET', KEYS[1], 'token') ~= ARGV[3] or exp <= now then return 0 end
redis.call('HDEL', KEYS[1], 'token', 'owner', 'exp')
return 1
""")
_LOCK_REFRESH = _Script(_NOW_MS + """
local exp = tonumber(redis.call('HGET', KEYS[1], 'exp') or '0')
if redis.call('HGET', KEYS[1], 'token') ~= ARGV[3] or exp <= now then return 0 end
redis.call('HSET', KEYS[1], 'exp', now + tonumber(ARGV[4]))
return 1
""")
_LOCK_INFO = _Script(_NOW_MS + """
local f = redis.call('HMGET', KEYS[1], 'token', 'owner', 'exp', 'acq')
local exp = tonumber(f[3] or '0')
local held = (f[1] and exp > now) and 1 or 0
return {held, f[2] or '', exp, math.max(exp - now, 0), tonumber(f[4] or '0'), now}
""", write=False)

# Sessions: KEYS = meta, session; ARGV[3] = epoch, ARGV[4] = idle ms. "@" marks a session that
# exists (a hash without fields would not); fields are "f:" .. name.
_SESSION_HEAD = """
if redis.call('HGET', KEYS[1], 'epoch') ~= ARGV[3] then
  return redis.error_reply('NotFound: sessions ' .. ARGV[1] .. ' was deleted')
end
"""
_SESSION_GET = _Script(_SESSION_HEAD + """
if redis.call('PEXPIRE', KEYS[2], ARGV[4]) == 0 then return false end
return redis.call('HGETALL', KEYS[2])
""")
_SESSION_PUT = _Script(_SESSION_HEAD + """
redis.call('DEL', KEYS[2])
redis.call('HSET', KEYS[2], '@', '1', unpack(ARGV, 5))
redis.call('PEXPIRE', KEYS[2], ARGV[4])
return 1
""")
_SESSION_SET_FIELD = _Script(_SESSION_HEAD + """
redis.call('HSET', KEYS[2], '@', '1', ARGV[5], ARGV[6])
redis.call('PEXPIRE', KEYS[2], ARGV[4])
return 1
""")
_SESSION_ERASE_FIELD = _Script(_SESSION_HEAD + """
if redis.call('EXISTS', KEYS[2]) == 0 then return 0 end
redis.call('PEXPIRE', KEYS[2], ARGV[4])
return redis.call('HDEL', KEYS[2], ARGV[5])
""")
_SESSION_INCR = _Script(_SESSION_HEAD + """
redis.call('HSET', KEYS[2], '@', '1')
local ok, v = pcall(redis.call, 'HINCRBY', KEYS[2], ARGV[5], ARGV[6])
redis.call('PEXPIRE', KEYS[2], ARGV[4])
if not ok then
  return redis.error_reply('InvalidArgument: the field is not an integer, or the sum overflows')
end
return v
""")
_SESSION_DELETE = _Script(_SESSION_HEAD + "return redis.call('DEL', KEYS[2])")

# Array: KEYS = meta, then the chunks touched. ARGV[3] = first byte offset in the first chunk,
# ARGV[4] = byte count, ARGV[5] = chunk size. Reads return {version, bytes}.
_ARRAY_READ = _Script("""
local off, n, chunk = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local parts = {}
for i = 2, #KEYS do
  local from, to = 0, chunk - 1
  if i == 2 then from = off end
  if i == #KEYS then to = (off + n - 1) % chunk end
  if i == 2 and #KEYS == 2 then to = off + n - 1 end
  parts[#parts + 1] = redis.call('GETRANGE', KEYS[i], from, to)
end
return {redis.call('HGET', KEYS[1], 'version'), table.concat(parts)}
""", write=False)
# ARGV[6] = the version the new bytes (ARGV[7]) were computed from: 0 when it moved on.
_ARRAY_WRITE = _Script("""
if redis.call('HGET', KEYS[1], 'version') ~= ARGV[6] then return 0 end
local off, chunk, data = tonumber(ARGV[3]), tonumber(ARGV[5]), ARGV[7]
local pos = 1
for i = 2, #KEYS do
  local from = 0
  if i == 2 then from = off end
  local take = math.min(chunk - from, string.len(data) - pos + 1)
  redis.call('SETRANGE', KEYS[i], from, string.sub(data, pos, pos + take - 1))
  pos = pos + take
end
return redis.call('HINCRBY', KEYS[1], 'version', 1)
""")
_ARRAY_CREATE = _Script("""
local kind = redis.call('HGET', KEYS[1], 'kind')
if kind then
  if kind ~= ARGV[2] then
    return redis.error_reply('WrongType: ' .. ARGV[1] .. ' is a ' .. kind .. ', not a ' .. ARGV[2])
  end
  if ARGV[3] == '1' then
    return redis.error_reply('AlreadyExists: array ' .. ARGV[1] .. ' exists')
  end
  return redis.call('HGETALL', KEYS[1])
end
redis.call('HSET', KEYS[1], 'kind', 'array', 'dtype', ARGV[4], 'shape', ARGV[5], 'chunk', ARGV[6],
           'chunks', #KEYS - 1, 'version', 1)
for i = 2, #KEYS do redis.call('SET', KEYS[i], ARGV[6 + i - 1]) end
return redis.call('HGETALL', KEYS[1])
""", check_kind=False)

_META_GET = _Script("return redis.call('HGETALL', KEYS[1])", write=False, check_kind=False)

# KEYS = meta; ARGV[1] = name, ARGV[2] = prefix of the object's keys.
_DELETE = _Script("""
local f = redis.call('HMGET', KEYS[1], 'kind', 'chunks')
local kind = f[1]
if not kind then return 0 end
if kind == 'dict' then
  local index = ARGV[2] .. ':i'
  for _, k in ipairs(redis.call('SMEMBERS', index)) do redis.call('DEL', ARGV[2] .. ':e:' .. k) end
  redis.call('DEL', index)
elseif kind == 'list' then
  redis.call('DEL', ARGV[2] .. ':l')
elseif kind == 'array' then
  for i = 0, tonumber(f[2] or '0') - 1 do redis.call('DEL', ARGV[2] .. ':c:' .. i) end
end
redis.call('DEL', KEYS[1])
return 1
""", check_kind=False)


# --- Routing: one node per object, no blind retries -------------------------------------------

class _Router:
    """Runs commands on the node that holds a key's slot (the only node, standalone)."""

    def __init__(self, url: str, *, wait_replicas: int = 0, wait_timeout: float = 1.0,
                 socket_timeout: float = 10.0, connect_timeout: float = 2.0) -> None:
        self.url = url
        self.wait_replicas = int(wait_replicas)
        self.wait_timeout_ms = max(1, int(float(wait_timeout) * 1000))
        self._kw = dict(socket_timeout=socket_timeout, socket_connect_timeout=connect_timeout)
        scheme, _, rest = url.partition("://")
        self.cluster: Optional[redis.cluster.RedisCluster] = None
        self._stale = False
        if scheme == "redis+cluster":
            from redis.cluster import ClusterNode, RedisCluster
            nodes = []
            for part in rest.split("/")[0].split(","):
                host, _, port = part.strip().rpartition(":")
                if not host or not port.isdigit():
                    raise _invalid("expected redis+cluster://HOST:PORT[,HOST:PORT...], "
                                   f"not {url!r}")
                nodes.append(ClusterNode(host, int(port)))
            # redis-py 4.3 gives up when the first startup node is down (its error handling
            # then fails to copy the exception), so each node gets to be the first in turn.
            last: Optional[BaseException] = None
            for first in range(len(nodes)):
                try:
                    self.cluster = RedisCluster(startup_nodes=nodes[first:] + nodes[:first],
                                                **self._kw)
                    break
                except (rex.RedisError, rex.RedisClusterException, OSError) as e:
                    last = e
            if self.cluster is None:
                raise _error(_shmstate.Unavailable, "Unavailable",
                             f"no Redis Cluster at {url}: {last}") from None
            self._single = None
        else:
            self._single = redis.Redis.from_url(url, **self._kw)
            try:
                self._single.ping()
            except (rex.ConnectionError, rex.TimeoutError, OSError) as e:
                raise _error(_shmstate.Unavailable, "Unavailable",
                             f"no Redis at {url}: {e}") from None

    def node_for(self, key: bytes) -> redis.Redis:
        if self.cluster is None:
            return self._single
        if self._stale:
            self._stale = False
            self.cluster.nodes_manager.initialize()
        return self.cluster.get_redis_connection(self.cluster.get_node_from_key(key))

    def primaries(self) -> "_ListT[redis.Redis]":
        if self.cluster is None:
            return [self._single]
        if self._stale:
            self._stale = False
            self.cluster.nodes_manager.initialize()
        return [self.cluster.get_redis_connection(n) for n in self.cluster.get_primaries()]

    def call(self, key: bytes, fn: Callable[[redis.Redis], Any]) -> Any:
        """fn(node client) on key's node. Redirections and a cluster still electing a master
        (the command was refused, so not applied) are retried for up to 5 s; a connection
        error is raised as Unavailable (the command may have been applied)."""
        deadline = time.monotonic() + 5.0
        while True:
            try:
                return fn(self.node_for(key))
            except (rex.MovedError, rex.AskError) as e:
                self._stale = True
                last: Exception = e
            except (rex.TryAgainError, rex.ClusterDownError, rex.SlotNotCoveredError) as e:
                self._stale = True
                last = e
                time.sleep(0.05)
            except (rex.ConnectionError, rex.TimeoutError, rex.ReadOnlyError,
                    rex.RedisClusterException, OSError) as e:
                self._stale = True
                raise _error(_shmstate.Unavailable, "Unavailable",
                             f"redis at {self.url}: {e} (the operation may or may not have "
                             "been applied; retry if it is idempotent)") from None
            except rex.ResponseError as e:
                if str(e).startswith(("CLUSTERDOWN", "TRYAGAIN")):
                    self._stale = True
                    last = e
                    time.sleep(0.05)
                else:
                    raise _map_response_error(e) from None
            if time.monotonic() > deadline:
                raise _error(_shmstate.Unavailable, "Unavailable",
                             f"redis at {self.url}: {last} (not applied)")

    def _acknowledged(self, node: redis.Redis, *command: Any) -> Any:
        """command, then WAIT on the same connection; Unavailable unless enough replicas
        acknowledged it."""
        pipe = node.pipeline(transaction=False)
        pipe.execute_command(*command)
        pipe.execute_command("WAIT", self.wait_replicas, self.wait_timeout_ms)
        result, acked = pipe.execute(raise_on_error=False)
        if isinstance(result, Exception):
            raise result
        if isinstance(acked, Exception) or int(acked) < self.wait_replicas:
            raise _error(_shmstate.Unavailable, "Unavailable",
                         f"the write was not acknowledged by {self.wait_replicas} replica(s) "
                         f"within {self.wait_timeout_ms} ms: it may or may not survive a failover")
        return result

    def command(self, key: bytes, *command: Any, write: bool = False) -> Any:
        """One command on key's node (a write with wait_replicas waits for the replicas)."""
        if write and self.wait_replicas > 0:
            return self.call(key, lambda node: self._acknowledged(node, *command))
        return self.call(key, lambda node: node.execute_command(*command))

    def run(self, script: _Script, keys: "list[bytes]", args: "list[Any]") -> Any:
        """The script on keys[0]'s node (a write with wait_replicas waits for the replicas)."""
        wait = script.write and self.wait_replicas > 0
        command = ("EVALSHA", script.sha, len(keys), *keys, *args)

        def send(node: redis.Redis) -> Any:
            return self._acknowledged(node, *command) if wait else node.execute_command(*command)

        def once(node: redis.Redis) -> Any:
            try:
                return send(node)
            except rex.NoScriptError:
                node.script_load(script.source)  # A new node, or one that restarted empty.
                return send(node)

        return self.call(keys[0], once)

    def close(self) -> None:
        if self.cluster is not None:
            self.cluster.close()
        else:
            self._single.close()


# --- Handles: the native interface of shmstate._shmstate, on Redis ----------------------------

class _Object:
    kind = ""

    def __init__(self, router: _Router, prefix: str, name: str) -> None:
        self._r = router
        self.name = _check_name(name)
        self._base = f"{prefix}:{{{name}}}".encode()  # P:{name}
        self._meta = self._base
        self._head = [name, self.kind]

    def _run(self, script: _Script, extra_keys: "list[bytes]", *args: Any) -> Any:
        return self._r.run(script, [self._meta, *extra_keys], [*self._head, *args])

    def _open(self, ttl_ms: int = 0, **fields: Any) -> "dict[bytes, bytes]":
        flat: "list[Any]" = []
        for k, v in fields.items():
            flat += [k, v]
        reply = self._run(_OPEN, [], ttl_ms, *flat)
        return dict(zip(reply[::2], reply[1::2]))


class _Counter(_Object):
    kind = "counter"

    def __init__(self, router, prefix, name, init, ttl_ms) -> None:
        super().__init__(router, prefix, name)
        self._open(ttl_ms, v=_int64(init, "init"))

    def incr(self, by: int = 1) -> int:
        return int(self._run(_COUNTER_INCR, [], _int64(by, "by")))

    def value(self) -> int:
        return int(self._run(_COUNTER_GET, []))

    def set(self, value: int) -> None:
        self._run(_COUNTER_SET, [], _int64(value))

    def cas(self, expected: int, value: int) -> bool:
        return bool(self._run(_COUNTER_CAS, [], _int64(expected, "expected"), _int64(value)))


class _Dict(_Object):
    kind = "dict"

    def __init__(self, router, prefix, name, max_bytes, eviction, default_ttl) -> None:
        super().__init__(router, prefix, name)
        if _text(eviction, "eviction") not in ("none", "clock"):
            raise _invalid("eviction must be 'none' or 'clock'")
        self._index = self._base + b":i"
        self._entry_prefix = self._base + b":e:"
        self._open(0, max_bytes=_uint64(max_bytes, "max_bytes"), eviction=eviction,
                   default_ttl_ms=_ttl_ms(default_ttl, "default_ttl"), ver=0)

    def _keys(self, key: Any) -> "list[bytes]":
        return [self._entry_prefix + key, self._index]

    def get(self, key: Any, default: Any = None) -> Any:
        k = self._entry_prefix + _key(key)
        value = self._r.call(k, lambda node: node.hget(k, "v"))
        return default if value is None else value

    def get_entry(self, key: Any) -> Optional[tuple]:
        k = self._entry_prefix + _key(key)
        v, ver, exp = self._r.call(k, lambda node: node.hmget(k, "v", "ver", "exp"))
        return None if v is None else (v, int(ver or 0), int(exp or 0))

    def set(self, key: Any, value: Any, ttl: Optional[float] = None, mode: str = "set",
            if_version: Optional[int] = None) -> bool:
        k, v = _key(key), _value(value)
        if _text(mode, "mode") not in ("set", "add", "replace"):
            raise _invalid("mode must be 'set', 'add' or 'replace'")
        version = "" if if_version is None else str(_uint64(if_version, "if_version"))
        return bool(self._run(_DICT_SET, self._keys(k), k, v, mode, _ttl_ms(ttl), version))

    def delete(self, key: Any) -> bool:
        k = _key(key)
        return bool(self._run(_DICT_DELETE, self._keys(k), k))

    def incr(self, key: Any, by: int = 1, init: int = 0, ttl: Optional[float] = None) -> int:
        k = _key(key)
        return int(self._run(_DICT_INCR, self._keys(k), k, _int64(by, "by"),
                             _int64(init, "init"), _ttl_ms(ttl)))

    def cas(self, key: Any, expected: Any, value: Any) -> bool:
        k = _key(key)
        want = b"" if expected is None else _value(expected, "expected")
        return bool(self._run(_DICT_CAS, self._keys(k), k, 0 if expected is None else 1,
                              want, _value(value)))

    def keys_page(self, prefix: str = "", cursor: int = 0, limit: int = 1000) -> tuple:
        want = _key(prefix, "prefix")
        cursor, limit = _uint64(cursor, "cursor"), _uint64(limit, "limit", 100000)
        next_cursor, keys = self._run(_DICT_KEYS, [self._index], cursor, max(1, limit),
                                      self._entry_prefix)
        return [k for k in keys if k.startswith(want)], int(next_cursor)

    def stats(self) -> "dict[str, int]":
        entries, max_bytes = self._r.call(self._index, lambda node: (
            node.scard(self._index), node.hget(self._meta, "max_bytes")))
        return {"hits": 0, "misses": 0, "evictions": 0, "expirations": 0, "entries": int(entries),
                "bytes": 0, "max_bytes": int(max_bytes or 0)}


class _List(_Object):
    kind = "list"

    def __init__(self, router, prefix, name, max_items, max_item_bytes) -> None:
        super().__init__(router, prefix, name)
        self._list = self._base + b":l"
        self._open(0, max_items=_uint64(max_items, "max_items"),
                   max_item_bytes=_uint64(max_item_bytes, "max_item_bytes"))

    def push(self, item: Any, end: str = "right") -> int:
        e = _end(end)
        return int(self._run(_LIST_PUSH, [self._list], e, _value(item, "item")))

    def pop(self, wait: Optional[float] = None, end: str = "left") -> Optional[bytes]:
        total = _wait_s(wait, 0.0)
        e = _end(end)
        k = self._list
        if total <= 0:
            return self._r.command(k, "LPOP" if e == b"left" else "RPOP", k, write=True)
        deadline = time.monotonic() + total
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            slice_s = max(0.01, min(left, _BLOCK_SLICE_S))
            got = self._r.command(k, "BLPOP" if e == b"left" else "BRPOP", k, slice_s, write=True)
            if got is not None:
                return got[1]

    def length(self) -> int:
        return int(self._r.call(self._list, lambda n: n.llen(self._list)))

    def range(self, start: int = 0, stop: int = -1) -> "list[bytes]":
        start, stop = _int64(start, "start"), _int64(stop, "stop")
        return self._r.call(self._list, lambda n: n.lrange(self._list, start, stop))


class _Lock(_Object):
    kind = "lock"

    def __init__(self, router, prefix, name) -> None:
        super().__init__(router, prefix, name)
        self._open(0, seq=0, acq=0)

    def acquire(self, ttl: float, timeout: Optional[float] = None,
                owner: str = "") -> Optional[int]:
        ttl_ms = _ttl_ms(ttl, "ttl", none_is_no_expiry=False)
        total = _wait_s(timeout, _MAX_WAIT_S, "timeout")
        owner = _text(owner, "owner")
        deadline = time.monotonic() + total
        pause = 0.002
        while True:
            got, value = self._run(_LOCK_ACQUIRE, [], ttl_ms, owner)
            if got:
                return int(value)
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            # Polls (Redis has no wake-up for a released hash field): a short pause that grows,
            # never past the lease's end or the deadline.
            time.sleep(min(pause, left, max(int(value), 1) / 1000))
            pause = min(pause * 2, 0.05)

    def release(self, token: int) -> bool:
        return bool(self._run(_LOCK_RELEASE, [], _uint64(token, "token")))

    def refresh(self, token: int, ttl: float) -> bool:
        return bool(self._run(_LOCK_REFRESH, [], _uint64(token, "token"),
                              _ttl_ms(ttl, "ttl", none_is_no_expiry=False)))

    def info(self) -> "dict[str, Any]":
        held, owner, exp, remaining, acq, _ = self._run(_LOCK_INFO, [])
        return {"held": bool(held), "owner": owner.decode() if held else "",
                "expires_at_ms": int(exp) if held else 0,
                "remaining_ms": int(remaining) if held else 0, "acquisitions": int(acq)}


class _Sessions(_Object):
    kind = "sessions"

    def __init__(self, router, prefix, name, idle_ms) -> None:
        super().__init__(router, prefix, name)
        meta = self._open(0, idle_ttl_ms=idle_ms, epoch=os.urandom(6).hex())
        self._idle_ms = int(meta[b"idle_ttl_ms"])
        self._epoch = meta[b"epoch"]
        self._session_prefix = self._base + b":" + self._epoch + b":s:"

    def _call(self, script: _Script, sid: str, *args: Any) -> Any:
        sid = _text(sid, "sid")
        return self._run(script, [self._session_prefix + sid.encode()], self._epoch,
                         self._idle_ms, *args)

    @staticmethod
    def _fields(text: str) -> "list[bytes]":
        try:
            data = _json.loads(_text(text, "json"))
        except ValueError as e:
            raise _invalid(f"not JSON: {e}") from None
        if not isinstance(data, dict):
            raise _invalid("a session is a JSON object")
        out: "list[bytes]" = []
        for k, v in data.items():
            out += [b"f:" + k.encode("utf-8", "surrogatepass"), _json.dumps(v).encode()]
        return out

    def create(self, json: str = "{}") -> str:
        fields = self._fields(json)
        sid = os.urandom(16).hex()
        self._call(_SESSION_PUT, sid, *fields)
        return sid

    def get(self, sid: str) -> Optional[str]:
        reply = self._call(_SESSION_GET, sid)
        if not reply:
            return None
        parts = [f'{_json.dumps(k[2:].decode())}:{v.decode()}'
                 for k, v in zip(reply[::2], reply[1::2]) if k.startswith(b"f:")]
        return "{" + ",".join(parts) + "}"

    def put(self, sid: str, json: str) -> None:
        self._call(_SESSION_PUT, sid, *self._fields(json))

    def delete(self, sid: str) -> bool:
        return bool(self._call(_SESSION_DELETE, sid))

    def set_field(self, sid: str, field: str, json: str) -> None:
        json = _text(json, "json")
        try:
            _json.loads(json)
        except ValueError as e:
            raise _invalid(f"not JSON: {e}") from None
        self._call(_SESSION_SET_FIELD, sid, b"f:" + _text(field, "field").encode(), json)

    def erase_field(self, sid: str, field: str) -> bool:
        return bool(self._call(_SESSION_ERASE_FIELD, sid, b"f:" + _text(field, "field").encode()))

    def incr(self, sid: str, field: str, by: int = 1) -> int:
        field = _text(field, "field")
        return int(self._call(_SESSION_INCR, sid, b"f:" + field.encode(), _int64(by, "by")))

    def idle_ttl(self) -> float:
        return self._idle_ms / 1000


class _Array(_Object):
    """Chunks of ``chunk`` bytes under one hash tag; slicing is numpy's, on the client. A read
    is one script (the touched byte range, whole); a write reads the range, changes it with
    numpy and writes it back if the array's version did not move meanwhile (else again)."""

    kind = "array"

    def __init__(self, router, prefix, name, meta) -> None:
        super().__init__(router, prefix, name)
        import numpy as np
        self._np = np
        self.dtype = np.dtype(meta[b"dtype"].decode())
        self.shape = tuple(_json.loads(meta[b"shape"]))
        self._chunk = int(meta[b"chunk"])
        self._size = int(np.prod(self.shape, dtype=np.int64)) if self.shape else 1

    @classmethod
    def open(cls, router, prefix, name, dtype, shape, fill, data=None):
        import numpy as np
        _check_name(name)
        meta_key = f"{prefix}:{{{name}}}".encode()
        keys, args = [meta_key], [name, "array"]
        if dtype is None and data is None:
            reply = router.run(_META_GET, keys, args)
            if not reply:
                raise _error(_shmstate.NotFound, "NotFound", f"no array {name!r}")
            meta = dict(zip(reply[::2], reply[1::2]))
            if meta.get(b"kind") != b"array":
                raise _error(_shmstate.WrongKind, "WrongType",
                             f"{name} is a {meta.get(b'kind', b'?').decode()}, not an array")
            return cls(router, prefix, name, meta)
        if data is None:
            dtype = _shmstate._to_dtype_name(dtype)
            shape = _shmstate._to_shape(shape)
            if dtype not in _DTYPES:
                raise _invalid(f"unknown dtype '{dtype}' ({', '.join(_DTYPES)})")
            if not 1 <= len(shape) <= 8:
                raise _invalid(f"an array has 1 to 8 dimensions, not {len(shape)}")
            try:
                data = np.full(tuple(shape), fill, dtype=dtype)
            except (OverflowError, ValueError, TypeError) as e:
                raise _invalid(f"fill {fill!r}: {e}") from None
        elif data.dtype.name not in _DTYPES:
            raise _invalid(f"unknown dtype '{data.dtype.name}' ({', '.join(_DTYPES)})")
        else:
            if not 1 <= data.ndim <= 8:
                raise _invalid(f"an array has 1 to 8 dimensions, not {data.ndim}")
            data = data.astype(data.dtype.newbyteorder("="), copy=False)  # Stored native.
        if data.nbytes > _ARRAY_MAX_BYTES:
            raise _invalid(f"array larger than {_ARRAY_MAX_BYTES} bytes")
        chunk = max(data.dtype.itemsize, _ARRAY_CHUNK // data.dtype.itemsize * data.dtype.itemsize)
        raw = data.tobytes()
        pieces = [raw[i:i + chunk] for i in range(0, len(raw), chunk)]
        base = meta_key
        keys += [base + b":c:%d" % i for i in range(len(pieces))]
        exclusive = "1" if dtype is None else "0"  # array_from_numpy must create.
        reply = router.run(_ARRAY_CREATE, keys, [*args, exclusive, data.dtype.name,
                                                 _json.dumps(list(data.shape)), chunk, *pieces])
        meta = dict(zip(reply[::2], reply[1::2]))
        array = cls(router, prefix, name, meta)
        if dtype is not None and (array.dtype.name != dtype or array.shape != tuple(shape)):
            raise _error(_shmstate.AlreadyExists, "AlreadyExists",
                         f"array '{name}' exists as {array.dtype.name} {array.shape}, not "
                         f"{dtype} {tuple(shape)}")
        return array

    # -- index arithmetic on the client --
    def _flat(self, key: Any, write: bool = True) -> Any:
        """The flat element indices `key` selects (numpy's rules). Writes take basic indexing
        only (integers, slices, ..., None), as the shm backend; reads take numpy's advanced
        indexing too (integer arrays, boolean masks), as a copy."""
        np = self._np
        grid = np.arange(self._size, dtype=np.int64).reshape(self.shape)
        form = _shmstate._advanced_form(key)  # Also refuses what numpy refuses outright.
        if write and form is not None:
            raise _invalid(f"an index with {form} (numpy's advanced indexing) selects a copy: "
                           "it can be read, not written; write with integers, slices, ... and "
                           "None")
        try:
            return grid[key]
        except TypeError as e:
            raise _error(_shmstate.InvalidType, "InvalidArgument", f"index: {e}") from None
        except Exception as e:  # noqa: BLE001 - numpy's refusal (IndexError, OverflowError, ...).
            raise _invalid(f"index: {e}") from None

    def _chunk_keys(self, first: int, last: int) -> "list[bytes]":
        """The keys of the chunks holding bytes first..last."""
        return [self._base + b":c:%d" % c
                for c in range(first // self._chunk, last // self._chunk + 1)]

    def _read_range(self, lo: int, hi: int) -> tuple:
        """(version, elements lo..hi as a flat numpy array)."""
        item = self.dtype.itemsize
        first, last = lo * item, (hi + 1) * item - 1
        keys = self._chunk_keys(first, last)
        version, raw = self._run(_ARRAY_READ, keys, first % self._chunk, last - first + 1,
                                 self._chunk)
        return version, self._np.frombuffer(raw, dtype=self.dtype).copy()

    def read(self, key: Any) -> Any:
        flat = self._flat(key, write=False)
        np = self._np
        if flat.size == 0:
            return np.empty(flat.shape, dtype=self.dtype)
        lo, hi = int(flat.min()), int(flat.max())
        _, values = self._read_range(lo, hi)
        out = values[flat - lo]
        return out if out.ndim else self.dtype.type(out)

    def slice_shape(self, key: Any) -> "list[int]":
        return list(self._flat(key).shape)

    def _update(self, key: Any, change: Callable[[Any, Any], Any]) -> Any:
        """change(values, positions) edits values (the flat range) in place; returns its result."""
        flat = self._flat(key)
        if flat.size == 0:
            return None
        lo, hi = int(flat.min()), int(flat.max())
        item = self.dtype.itemsize
        first, last = lo * item, (hi + 1) * item - 1
        keys = self._chunk_keys(first, last)
        for _ in range(1000):
            version, values = self._read_range(lo, hi)
            result = change(values, flat - lo)
            if self._run(_ARRAY_WRITE, keys, first % self._chunk, last - first + 1, self._chunk,
                         version, values.tobytes()):
                return result
        raise _error(_shmstate.Conflict, "Conflict",
                     f"array {self.name!r}: too many concurrent writers")

    def write(self, key: Any, values: Any) -> None:
        src = self._np.asarray(values, dtype=self.dtype)

        def change(vals, pos):
            vals[pos] = src.reshape(pos.shape)
        self._update(key, change)

    def fill(self, key: Any, value: Any) -> None:
        value = _shmstate._to_scalar(value, "value")

        def change(vals, pos):
            try:
                vals[pos] = value
            except (OverflowError, ValueError, TypeError) as e:
                raise _invalid(f"fill {value!r}: {e}") from None
        self._update(key, change)

    def atomic(self, op: str, index: Any, value: Any, expected: Any = None) -> Any:
        op = _text(op, "op")
        if op not in ("add", "min", "max", "cas"):
            raise _invalid("atomic op must be add, min, max or cas")
        idx = tuple(_shmstate._to_element_index(index))
        value = _shmstate._to_scalar(value, "value")
        if expected is not None:
            expected = _shmstate._to_scalar(expected, "expected")
        if len(idx) != len(self.shape):
            raise _invalid("an atomic op takes one element: give one index per dimension")
        np = self._np

        def update(vals, p):
            old = vals[p].item()
            if op == "add":
                vals[p] = np.array(old + value).astype(self.dtype)
            elif op == "min":
                vals[p] = min(old, value)
            elif op == "max":
                vals[p] = max(old, value)
            elif old == expected:
                vals[p] = value
                return True, old
            else:
                return False, old
            return old

        def change(vals, pos):
            try:
                return update(vals, int(pos))
            except (OverflowError, ValueError, TypeError) as e:  # The value does not fit.
                raise _invalid(f"{op} {value!r} on {self.dtype}: {e}") from None
        return self._update(idx, change)

    def apply(self, op: str, key: Any, value: Any) -> None:
        np = self._np
        ops = {"add": np.add, "sub": np.subtract, "mul": np.multiply, "min": np.minimum,
               "max": np.maximum}
        op = _text(op, "op")
        if op not in ops and op not in ("div", "fill"):
            raise _invalid("op must be add, sub, mul, div, min, max or fill")
        value = _shmstate._to_scalar(value, "value")

        def change(vals, pos):
            cur = vals[pos]
            if op == "fill":
                new = value
            elif op == "div":
                if self.dtype.kind in "iub":
                    with np.errstate(divide="ignore"):
                        new = np.where(value == 0, 0, np.floor_divide(cur, value or 1))
                else:
                    new = np.true_divide(cur, value)
            else:
                new = ops[op](cur, value)
            vals[pos] = np.asarray(new).astype(self.dtype)
        self._update(key, change)

    def version(self) -> int:
        return int(self._r.call(self._meta, lambda n: n.hget(self._meta, "version")) or 0)


class RedisClient:
    """The native-client interface of :class:`shmstate.Client`, on Redis or Redis Cluster."""

    def __init__(self, url: str, *, prefix: str = "ss", wait_replicas: int = 0,
                 wait_timeout: float = 1.0, socket_timeout: float = 10.0) -> None:
        parsed = urllib.parse.urlsplit(url)
        query = dict(urllib.parse.parse_qsl(parsed.query))
        prefix = _text(query.pop("prefix", prefix), "prefix")
        try:
            wait_replicas = int(query.pop("wait_replicas", wait_replicas))
            wait_timeout = float(query.pop("wait_timeout", wait_timeout))
            socket_timeout = float(socket_timeout)
        except (TypeError, ValueError, OverflowError) as e:
            raise _invalid(f"bad option in {url!r}: {e}") from None
        if not 0 <= wait_replicas <= 100 or not 0 < wait_timeout <= 3600 or \
                not 0 < socket_timeout <= 3600:
            raise _invalid("wait_replicas is 0..100; wait_timeout and socket_timeout are "
                           "seconds in (0, 3600]")
        if query:
            raise _invalid(f"unknown URL options {sorted(query)} in {url!r}")
        if not prefix or not set(prefix) <= _NAME_CHARS:
            raise _invalid("prefix must be non-empty, of [A-Za-z0-9._:-]")
        base = urllib.parse.urlunsplit(parsed._replace(query=""))
        self._r = _Router(base, wait_replicas=wait_replicas, wait_timeout=wait_timeout,
                          socket_timeout=socket_timeout)
        self._prefix = prefix
        self.name = url
        self.segment_name = base
        self.generation = 1

    def counter(self, name: str, init: int = 0, ttl: Optional[float] = None) -> _Counter:
        return _Counter(self._r, self._prefix, name, init, _ttl_ms(ttl))

    def dict(self, name: str, max_bytes: int = 0, eviction: str = "none",
             default_ttl: Optional[float] = None) -> _Dict:
        return _Dict(self._r, self._prefix, name, max_bytes, eviction, default_ttl)

    def list(self, name: str, max_items: int = 1 << 20, max_item_bytes: int = 1 << 20) -> _List:
        return _List(self._r, self._prefix, name, max_items, max_item_bytes)

    def lock(self, name: str) -> _Lock:
        return _Lock(self._r, self._prefix, name)

    def sessions(self, name: str, idle_ttl: float) -> _Sessions:
        return _Sessions(self._r, self._prefix, name,
                         _ttl_ms(idle_ttl, "idle_ttl", none_is_no_expiry=False))

    def array(self, name: str, dtype: Optional[str] = None, shape: Optional[list] = None,
              fill: Any = None) -> _Array:
        if (dtype is None) != (shape is None):
            raise _invalid("give both dtype and shape to create an array, or neither")
        return _Array.open(self._r, self._prefix, name, dtype, shape, 0 if fill is None else fill)

    def array_from_numpy(self, name: str, values: Any) -> _Array:
        return _Array.open(self._r, self._prefix, name, None, None, None, data=values)

    def objects(self, prefix: str = "") -> "list[tuple[str, str]]":
        prefix = _text(prefix, "prefix")
        head = f"{self._prefix}:{{"
        found = {}
        for node in self._r.primaries():
            metas = [k for k in self._r.call(b"", lambda _n: list(node.scan_iter(
                match=f"{head}{prefix}*}}", count=1000, _type="hash")))]
            for key in metas:
                name = key.decode(errors="replace")[len(head):-1]
                if "}" in name or "{" in name:
                    continue  # A dict entry whose key ends with "}", not a meta hash.
                kind = node.hget(key, "kind")
                if kind is not None:
                    found[name] = kind.decode()
        return sorted(found.items())

    def delete(self, name: str) -> bool:
        _check_name(name)
        base = f"{self._prefix}:{{{name}}}".encode()
        return bool(self._r.run(_DELETE, [base], [name, base]))

    def close(self) -> None:
        self._r.close()
