"""DUMP and RESTORE in Redis's payload format, both ways between Debian's redis-server and
shmstate (through redis-py), with Redis's errors for bad payloads, busy keys and bad options.

Values are built to hit every encoding Redis 7.0 emits for a small or large string, list and hash
(integer, raw and LZF strings; quicklist of listpacks; listpack and hashtable hashes), so a
RESTORE into shmstate decodes each, and what shmstate DUMPs is loaded by redis-server itself.
"""
import random
import time

import pytest
import redis

from conftest import redis_server

@pytest.fixture(scope="module")
def real(request):
    """Debian's redis-server on a free port (DEBUG allowed), stopped by pid."""
    with redis_server("--enable-debug-command", "local") as client:
        yield client


@pytest.fixture()
def shm(server):
    client = server.client()
    client.flushall()
    yield client
    client.close()


def values(seed):
    """(name, writer) pairs: each writes one key of a distinct encoding through a client."""
    rng = random.Random(seed)
    blob = bytes(rng.randrange(256) for _ in range(3000))
    ints = [b"127", b"32767", b"2147483647", b"9223372036854775808", b"0", b"12", b"-1",
            b"-4096", b"-8388608", b"-9223372036854775808"]
    strs = [b"x" * 31, b"y" * 8191, b"z" * 65535, b"", blob]
    return [
        ("int", lambda c, k: c.set(k, b"-123456")),
        ("raw", lambda c, k: c.set(k, b"hello")),
        ("lzf", lambda c, k: c.set(k, b"ab" * 5000)),
        ("binary", lambda c, k: c.set(k, blob)),
        ("empty-string", lambda c, k: c.set(k, b"")),
        ("list-small", lambda c, k: c.rpush(k, *ints)),
        ("list-mixed", lambda c, k: c.rpush(k, *(ints + strs))),
        ("list-long", lambda c, k: c.rpush(k, *[str(i).encode() * (i % 7) for i in range(5000)])),
        ("hash-small", lambda c, k: c.hset(k, mapping={b"f%d" % i: v for i, v in enumerate(ints)})),
        ("hash-mixed", lambda c, k: c.hset(k, mapping={b"s%d" % i: v for i, v in
                                                     enumerate(ints + strs)})),
        ("hash-large", lambda c, k: c.hset(k, mapping={b"field:%d" % i: b"v" * (i % 90)
                                                     for i in range(2000)})),
    ]


def read(client, key):
    kind = client.type(key)
    if kind == b"string":
        return kind, client.get(key)
    if kind == b"list":
        return kind, client.lrange(key, 0, -1)
    if kind == b"hash":
        return kind, client.hgetall(key)
    return kind, None


@pytest.mark.parametrize("name,write", values(23), ids=[n for n, _ in values(23)])
def test_redis_server_dump_restores_into_shmstate(real, shm, name, write):
    real.delete("k")
    write(real, "k")
    payload = real.dump("k")
    assert shm.restore("k", 0, payload) == b"OK"
    assert read(shm, "k") == read(real, "k")
    assert shm.ttl("k") == -1


@pytest.mark.parametrize("name,write", values(24), ids=[n for n, _ in values(24)])
def test_shmstate_dump_restores_into_redis_server(real, shm, name, write):
    real.delete("k")
    write(shm, "k")
    payload = shm.dump("k")
    assert real.restore("k", 0, payload) == b"OK"
    assert read(real, "k") == read(shm, "k")
    # And back again: shmstate reads its own payload.
    assert shm.restore("k2", 0, payload) == b"OK"
    assert read(shm, "k2") == read(shm, "k")


def test_quicklist_plain_nodes_restore(real, shm):
    """Redis 7.0 keeps an item past its packed threshold in a plain node of its own."""
    real.execute_command("DEBUG", "QUICKLIST-PACKED-THRESHOLD", "1000")
    try:
        real.delete("k")
        real.rpush("k", b"a", b"q" * 5000, b"b", b"r" * 3000)
        payload = real.dump("k")
    finally:
        real.execute_command("DEBUG", "QUICKLIST-PACKED-THRESHOLD", str(1 << 30))
    assert shm.restore("k", 0, payload) == b"OK"
    assert shm.lrange("k", 0, -1) == [b"a", b"q" * 5000, b"b", b"r" * 3000]


def test_dump_of_a_missing_key_is_nil(shm):
    assert shm.dump("nothing") is None


def test_restore_ttl_absttl_and_replace(shm):
    shm.set("src", "v")
    payload = shm.dump("src")
    assert shm.restore("a", 100000, payload) == b"OK"
    assert 0 < shm.pttl("a") <= 100000
    when = int(time.time() * 1000) + 200000
    assert shm.restore("b", when, payload, absttl=True) == b"OK"
    assert abs(shm.pexpiretime("b") - when) <= 1
    # A time already past with ABSTTL: OK, and no key (a REPLACE deletes the old one).
    shm.rpush("c", "old")
    assert shm.restore("c", 1, payload, replace=True, absttl=True) == b"OK"
    assert shm.exists("c") == 0
    # REPLACE over another type; IDLETIME and FREQ are accepted.
    shm.hset("d", "f", "v")
    assert shm.execute_command("RESTORE", "d", 0, payload, "REPLACE", "IDLETIME", 10) == b"OK"
    assert shm.get("d") == b"v"
    assert shm.execute_command("RESTORE", "e", 0, payload, "FREQ", 100) == b"OK"
    assert shm.get("e") == b"v"


def test_restore_errors_are_redis_errors_and_change_nothing(shm, real):
    shm.rpush("src", "a", "b")
    payload = shm.dump("src")
    shm.set("busy", "keep")
    cases = [
        (("busy", 0, payload), "BUSYKEY Target key name already exists."),
        (("k", -1, payload), "Invalid TTL value, must be >= 0"),
        (("k", "abc", payload), "value is not an integer or out of range"),
        (("k", 0, payload[:-1] + bytes([payload[-1] ^ 1])), "DUMP payload version or checksum are wrong"),
        (("k", 0, b"short"), "DUMP payload version or checksum are wrong"),
        (("k", 0, payload, "IDLETIME", -1), "Invalid IDLETIME value, must be >= 0"),
        (("k", 0, payload, "FREQ", 256), "Invalid FREQ value, must be >= 0 and <= 255"),
        (("k", 0, payload, "IDLETIME", 1, "FREQ", 1), "syntax error"),
        (("k", 0, payload, "BOGUS"), "syntax error"),
    ]
    # A newer RDB version (11) with a right checksum, and a set (type 2), are refused as Redis
    # 7.0 refuses them.
    body = payload[:-10]
    newer = body + b"\x0b\x00"
    newer += crc64(newer).to_bytes(8, "little")
    real.delete("s")
    real.sadd("s", "m")
    cases += [(("k", 0, newer), "DUMP payload version or checksum are wrong")]
    shm_only = [(("k", 0, real.dump("s")), "Bad data format")]  # redis-server has sets.
    for args, message in cases + shm_only:
        for client in (shm, real) if (args, message) in cases else (shm,):
            client.delete("k")
            client.set("busy", "keep")
            with pytest.raises(redis.ResponseError) as err:
                client.execute_command("RESTORE", *args)
            assert str(err.value) == message, (args, client)
            assert client.exists("k") == 0
            assert client.get("busy") == b"keep"


def test_corrupt_payloads_never_break_the_server(shm, real):
    """Seeded random corruption of real payloads (with the checksum fixed up, so the parser sees
    them): shmstate answers OK (and has the key) or Redis's format error, and keeps serving."""
    rng = random.Random(2323)
    sources = []
    for name, write in values(25):
        real.delete("k")
        write(real, "k")
        payload = real.dump("k")
        if len(payload) < 20000:
            sources.append(payload[:-10])
    for _ in range(300):
        body = bytearray(rng.choice(sources))
        for _ in range(rng.randint(1, 4)):
            op = rng.randrange(3)
            if op == 0 and body:
                body[rng.randrange(len(body))] = rng.randrange(256)
            elif op == 1 and len(body) > 1:
                del body[rng.randrange(len(body)):][: rng.randint(1, 8)]
            else:
                body.insert(rng.randrange(len(body) + 1), rng.randrange(256))
        payload = bytes(body) + b"\x0a\x00"
        payload += crc64(payload).to_bytes(8, "little")
        try:
            shm.restore("fuzz", 0, payload, replace=True)
            ok = True
        except redis.ResponseError as err:
            assert str(err) == "Bad data format", str(err)
            ok = False
        if ok:
            assert shm.exists("fuzz") == 1
    assert shm.ping()


def _crc_table():
    poly = 0x95AC9329AC4BC9B5  # Jones, reflected.
    table = []
    for i in range(256):
        crc = i
        for _ in range(8):
            crc = (crc >> 1) ^ poly if crc & 1 else crc >> 1
        table.append(crc)
    return table


_CRC_TABLE = _crc_table()


def crc64(data):
    """Redis's crc64, written here independently of the server."""
    crc = 0
    for byte in data:
        crc = _CRC_TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc


def test_crc64_check_value():
    assert crc64(b"123456789") == 0xE9C6D914C4B8D9CA
