"""Seeded differential test: the same random commands to Debian's redis-server and to shmstate,
replies compared on the wire (type and bytes of every RESP reply, errors' text included).

Each family runs its own fixed-seed sequence on a small keyspace, so keys collide, change type,
empty and expire. After a mismatch both servers are flushed (one divergence must not make every
later reply differ) and the run goes on. The only differences excluded are the documented ones
(DOCUMENTED below, docs/resp.md); a family that still differs from Redis because issue 23 is in
progress is marked xfail (strict: it fails once it matches, so the mark goes then) with what
differs. Set DIFF_VERBOSE=1 to print every mismatch.
"""
import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import pytest

SEED = 23
COMMANDS_PER_FAMILY = 600
REDIS_SERVER = os.environ.get("REDIS_SERVER_BIN", "/usr/bin/redis-server")

KEYS = ["k0", "k1", "k2", "k3"]
FIELDS = ["f0", "f1", "f2", ""]
VALUES = ["", "a", "hello", "0", "1", "-1", "42", "3.5", "1e3", " 7", "abc",
          "9223372036854775807", "-9223372036854775808"]
INTS = ["0", "1", "-1", "2", "5", "100", "-100", "abc", "1.5", "9223372036854775807",
        "-9223372036854775808"]

# Documented differences (docs/resp.md): how a reply is normalized before comparing, by command.
# - KEYS: Redis's order is its hash table's; shmstate's is its own. Both are unordered by
#   contract: compared as sorted lists. (HKEYS, HVALS, HGETALL, HSCAN are compared as they come:
#   a small hash's order is its insertion order in both.)
# - TTL, PTTL: the time left moves while the command travels: compared as -2, -1 or "positive".
DOCUMENTED = {
    "keys": "order is the server's hash order",
    "ttl": "the time left moves while the command travels",
    "pttl": "the time left moves while the command travels",
}


# --- A RESP client that keeps every reply's type -------------------------------------------------

class Wire:
    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.buf = b""

    def call(self, args):
        out = b"*%d\r\n" % len(args)
        for a in args:
            a = a.encode() if isinstance(a, str) else a
            out += b"$%d\r\n%s\r\n" % (len(a), a)
        self.sock.sendall(out)
        return self.read()

    def line(self):
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def exact(self, n):
        while len(self.buf) < n + 2:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            self.buf += chunk
        data, self.buf = self.buf[:n], self.buf[n + 2:]
        return data

    def read(self):
        line = self.line()
        kind, rest = line[:1], line[1:]
        if kind in (b"+", b"-", b":"):
            return (kind.decode(), rest)
        if kind == b"$":
            n = int(rest)
            return ("$", None if n < 0 else self.exact(n))
        if kind == b"*":
            n = int(rest)
            return ("*", None if n < 0 else tuple(self.read() for _ in range(n)))
        raise ValueError("unexpected reply %r" % line)


def normalize(command, reply):
    name = command[0].lower()
    if name == "keys" and reply[0] == "*" and reply[1] is not None:
        return ("*", tuple(sorted(reply[1])))
    if name in ("ttl", "pttl") and reply[0] == ":":
        value = int(reply[1])
        return (":", b"positive" if value > 0 else reply[1])
    return reply


# --- Random commands, per family -----------------------------------------------------------------

def expiry_option(rng):
    return rng.choice([[], [], ["EX", rng.choice(["100", "0", "-1", "abc"])],
                       ["PX", rng.choice(["100000", "-1"])], ["KEEPTTL"],
                       ["EXAT", rng.choice(["4102444800", "1"])]])


def strings(rng):
    k = rng.choice(KEYS)
    v = rng.choice(VALUES)
    return rng.choice([
        ["GET", k],
        ["SET", k, v] + rng.choice([[], ["NX"], ["XX"], ["GET"], ["NX", "GET"]]) + expiry_option(rng),
        ["SETNX", k, v], ["GETSET", k, v], ["GETDEL", k], ["APPEND", k, v], ["STRLEN", k],
        ["INCR", k], ["DECR", k], ["INCRBY", k, rng.choice(INTS)], ["DECRBY", k, rng.choice(INTS)],
        ["INCRBYFLOAT", k, rng.choice(["1.5", "-2", "abc", "1e2", "0"])],
        ["MGET"] + rng.sample(KEYS, 2),
        ["MSET", k, v, rng.choice(KEYS), rng.choice(VALUES)],
        ["MSETNX", k, v, rng.choice(KEYS), rng.choice(VALUES)],
        ["GETEX", k] + rng.choice([[], ["PERSIST"], ["EX", "100"]]),
        ["SETEX", k, rng.choice(["100", "0", "abc"]), v],
    ])


def keys(rng):
    k = rng.choice(KEYS)
    return rng.choice([
        ["SET", k, rng.choice(VALUES)], ["RPUSH", k, "x"], ["HSET", k, "f", "v"],
        ["DEL", k, rng.choice(KEYS)], ["EXISTS", k, rng.choice(KEYS)], ["TYPE", k],
        ["EXPIRE", k, rng.choice(["100", "0", "-5", "abc"])] + rng.choice([[], ["NX"], ["XX"], ["GT"], ["LT"]]),
        ["PEXPIRE", k, rng.choice(["100000", "0"])], ["TTL", k], ["PTTL", k], ["PERSIST", k],
        ["RENAME", k, rng.choice(KEYS)], ["DBSIZE"], ["KEYS", "*"], ["KEYS", "*k[01]"],
    ])


def lists(rng):
    k = rng.choice(KEYS)
    return rng.choice([
        ["LPUSH", k] + rng.sample(VALUES, rng.randint(1, 3)),
        ["RPUSH", k] + rng.sample(VALUES, rng.randint(1, 3)),
        ["LPOP", k], ["RPOP", k], ["LPOP", k, rng.choice(["0", "1", "3", "-1"])],
        ["RPOP", k, rng.choice(["0", "2"])], ["LLEN", k],
        ["LRANGE", k, rng.choice(["0", "1", "-2"]), rng.choice(["-1", "0", "2", "100"])],
        ["LINDEX", k, rng.choice(["0", "-1", "5", "abc"])],
    ])


def hashes(rng):
    k = rng.choice(KEYS)
    f = rng.choice(FIELDS)
    return rng.choice([
        ["HSET", k, f, rng.choice(VALUES)],
        ["HSET", k, rng.choice(FIELDS), "1", rng.choice(FIELDS), "2"],
        ["HSETNX", k, f, rng.choice(VALUES)], ["HGET", k, f], ["HMGET", k, f, rng.choice(FIELDS)],
        ["HDEL", k, f], ["HDEL", k, f, rng.choice(FIELDS)], ["HEXISTS", k, f], ["HLEN", k],
        ["HINCRBY", k, f, rng.choice(INTS)], ["HKEYS", k], ["HVALS", k], ["HGETALL", k],
        ["HMSET", k, f, "v"], ["HSCAN", k, "0"], ["HRANDFIELD", k, "10", "WITHVALUES"],
    ])


def mixed(rng):
    return rng.choice([strings, keys, lists, hashes])(rng)


# Every family matches Redis (a family that did not would be marked xfail with what differs).
# Expiry in the generators is 0, negative or long (never 1 ms): a key expiring within a
# millisecond makes the comparison race the clock, not the servers.
FAMILIES = [
    pytest.param("strings", strings),
    pytest.param("keys", keys),
    pytest.param("lists", lists),
    pytest.param("hashes", hashes),
    pytest.param("mixed", mixed),
]


# --- Servers ---------------------------------------------------------------------------------------

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def redis_port():
    workdir = tempfile.mkdtemp(prefix="resp-diff-")
    port = free_port()
    proc = subprocess.Popen([REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", workdir, "--loglevel", "warning"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(500):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert proc.poll() is None, "redis-server exited"
                time.sleep(0.02)  # Waiting for its listener, bounded.
        yield port
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        proc.wait(timeout=15)
        shutil.rmtree(workdir, ignore_errors=True)


def run_family(name, generator, redis_port, shm_port):
    # Each family has keys of its own: FLUSHALL cannot yet remove an emptied list or hash from
    # shmstate (issue 23), and one family's leftovers must not change another's replies.
    global KEYS
    KEYS = ["%s:k%d" % (name, i) for i in range(4)]
    rng = random.Random("%d-%s" % (SEED, name))
    ref, shm = Wire(redis_port), Wire(shm_port)
    for wire in (ref, shm):
        assert wire.call(["FLUSHALL"]) == ("+", b"OK")
    mismatches = []
    for i in range(COMMANDS_PER_FAMILY):
        command = generator(rng)
        expected = normalize(command, ref.call(command))
        got = normalize(command, shm.call(command))
        if expected != got:
            mismatches.append((i, command, expected, got))
            for wire in (ref, shm):
                wire.call(["FLUSHALL"])
    return mismatches


@pytest.mark.parametrize("name,generator", FAMILIES)
def test_replies_match_redis(name, generator, redis_port, server):
    mismatches = run_family(name, generator, redis_port, server.port)
    shown = mismatches if os.environ.get("DIFF_VERBOSE") else mismatches[:15]
    report = "\n".join("#%d %s\n    redis:    %r\n    shmstate: %r" % m for m in shown)
    assert not mismatches, "%d of %d replies differ from redis-server's:\n%s" % (
        len(mismatches), COMMANDS_PER_FAMILY, report)


def test_identical_sequences_match(redis_port, server):
    """The comparison itself: a sequence both servers must answer alike (PING, ECHO, SET/GET of
    plain strings, INCR of a fresh counter) shows no mismatch, and a different reply is caught."""
    ref, shm = Wire(redis_port), Wire(server.port)
    for wire in (ref, shm):
        wire.call(["FLUSHALL"])
    for command in (["PING"], ["ECHO", "x"], ["SET", "a", "1"], ["GET", "a"], ["INCR", "n"],
                    ["INCR", "n"], ["GET", "missing"], ["DEL", "a", "n"]):
        assert normalize(command, ref.call(command)) == normalize(command, shm.call(command))
    assert ref.call(["ECHO", "x"]) != shm.call(["ECHO", "y"])
