"""The typed keyspace through the Redis protocol (docs/resp.md, "The keyspace mapping"): each of
issue 23's defects, reproduced with redis-py, answers as Redis 7.0 does; every type expires,
persists and renames; expired keys leave DBSIZE without being read; two types never share a key
even when clients on different workers race."""
import threading
import time

import pytest
import redis


def test_set_over_another_type_follows_its_condition(r):
    r.hset("hx", "f", "v")
    assert r.set("hx", "s", xx=True) is True  # The hash exists, so XX writes.
    assert r.type("hx") == "string" and r.get("hx") == "s"
    r.rpush("lx", "a")
    assert r.set("lx", "v", nx=True) is None  # The list exists, so NX does not.
    assert r.type("lx") == "list" and r.lrange("lx", 0, -1) == ["a"]


def test_empty_lists_and_hashes_are_absent(r):
    r.rpush("q", "a")
    assert r.lpop("q") == "a"
    assert r.get("q") is None and r.exists("q") == 0 and r.type("q") == "none"
    assert r.execute_command("LPOP", "q", 0) is None
    assert r.incr("q") == 1
    r.hset("h", "f", "v")
    r.hdel("h", "f")
    assert r.type("h") == "none" and r.get("h") is None


def test_the_empty_string_is_a_key_and_a_field(r):
    assert r.set("", "v") is True and r.get("") == "v"
    assert r.hset("h2", "", "w") == 1 and r.hget("h2", "") == "w"


def test_checks_come_in_redis_order(r):
    r.set("str", "x")
    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        r.execute_command("LINDEX", "str", "abc")
    with pytest.raises(redis.ResponseError, match="decrement would overflow"):
        r.execute_command("DECRBY", "k", "-9223372036854775808")
    assert r.execute_command("SET", "k", "v", "EX", "10", "EX", "20") is True
    assert 0 < r.ttl("k") <= 20
    with pytest.raises(redis.ResponseError, match="syntax error"):
        r.execute_command("SET", "k", "v", "EX", "PX", "5")
    with pytest.raises(redis.ResponseError, match="NX and XX, GT or LT"):
        r.execute_command("PEXPIRE", "k", "abc", "NX", "XX")
    with pytest.raises(redis.ResponseError, match="wrong number of arguments"):
        r.execute_command("LPOP", "k", "1", "1")


def test_expiry_of_every_type_and_far_absolute_times(r):
    r.set("s", "v")
    r.rpush("l", "a")
    r.hset("hh", "f", "v")
    for key in ("s", "l", "hh"):
        assert r.expire(key, 100) is True
        assert 0 < r.ttl(key) <= 100
    assert r.persist("hh") is True and r.ttl("hh") == -1
    assert r.rename("l", "l2") is True and r.type("l2") == "list" and 0 < r.ttl("l2") <= 100
    assert r.execute_command("EXPIREAT", "s", "3153600001") == 1  # After 2069: no cap.
    assert r.execute_command("EXPIRETIME", "s") == 3153600001
    assert r.execute_command("PEXPIREAT", "s", "-9223372036854770000") == 1
    assert r.exists("s") == 0


def test_msetnx_last_pair_wins(r):
    assert r.execute_command("MSETNX", "x1", "a", "x1", "b") == 1
    assert r.get("x1") == "b"


def test_mset_repeated_key_last_wins_and_replaces_every_type(r):
    r.rpush("ml", "a", "b")
    r.hset("mh", "f", "v")
    r.set("ms", "old", ex=100)
    assert r.execute_command("MSET", "m1", "a", "ml", "x", "m1", "b", "mh", "y", "ms", "z") is True
    assert r.mget("m1", "ml", "mh", "ms") == ["b", "x", "y", "z"]
    assert r.type("ml") == "string" and r.type("mh") == "string"
    assert r.ttl("ms") == -1  # MSET keeps no expiry (Redis).
    assert r.rpush("ml2", "c") == 1  # The list MSET replaced left nothing behind at a new key.


def test_msetnx_refuses_without_writing_any_key(r):
    r.rpush("nl", "a")
    assert r.execute_command("MSETNX", "n1", "a", "n2", "b", "nl", "c") == 0
    assert r.exists("n1", "n2") == 0 and r.lrange("nl", 0, -1) == ["a"]
    r.set("n3", "s")
    assert r.execute_command("MSETNX", "n3", "a", "n4", "b") == 0
    assert r.get("n3") == "s" and r.exists("n4") == 0
    assert r.execute_command("MSETNX", "n1", "a", "n2", "b") == 1
    assert r.mget("n1", "n2") == ["a", "b"]


def test_mset_and_msetnx_inside_multi_see_the_batch(r):
    p = r.pipeline(transaction=True)
    p.set("t1", "x")
    p.execute_command("MSETNX", "t1", "a", "t2", "b")
    p.execute_command("MSET", "t2", "c", "t3", "d", "t2", "e")
    p.mget("t1", "t2", "t3")
    assert p.execute() == [True, 0, True, ["x", "e", "d"]]


def test_mset_errors_as_before_on_a_key_too_long(r):
    with pytest.raises(redis.ResponseError):
        r.execute_command("MSET", "ok1", "v", "k" * (1 << 20), "v")
    assert r.ping()


def test_lrange_over_inline_and_block_items(r):
    items = ["", "a", "1234567", "12345678", "z" * 300, "bc"]  # Up to 7 bytes live in the slot.
    r.rpush("lr", *items)
    cases = [(0, -1), (0, 0), (1, 3), (-2, -1), (2, -3), (-100, 100), (-7, -6), (5, 5),
             (6, 10), (100, 200), (3, 1), (-1, -2), (0, -7), (-6, -6)]
    for start, stop in cases:
        n = len(items)
        first = max(start + n, 0) if start < 0 else start
        last = min(stop + n if stop < 0 else stop, n - 1)
        want = items[first:last + 1] if first <= last else []
        assert r.lrange("lr", start, stop) == want, (start, stop)
    assert r.lrange("absent", 0, -1) == []
    r.set("str", "v")
    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        r.lrange("str", 0, -1)


def test_lrange_inside_multi_sees_the_staged_list(r):
    r.rpush("ml", "a", "12345678")
    p = r.pipeline(transaction=True)
    p.rpush("ml", "b")
    p.lrange("ml", 0, -1)
    p.lpush("new", "y" * 20, "x")
    p.lrange("new", -1, 5)
    p.lrange("ml", 1, 1)
    assert p.execute() == [3, ["a", "12345678", "b"], 2, ["y" * 20], ["12345678"]]


def test_expired_keys_leave_dbsize_without_being_read(server):
    c = server.client(decode_responses=True)
    c.execute_command("SELECT", 3)  # A database of its own: other tests' keys stay out.
    c.flushdb()
    for i in range(50):
        c.set("gone%d" % i, "v", px=50)
    c.set("stays", "v")
    deadline = time.monotonic() + 30
    while c.dbsize() != 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert c.dbsize() == 1  # The manager's tick removed the 50, none was read.
    assert c.get("stays") == "v"


def test_select_gives_separate_databases(server):
    a, b = server.client(decode_responses=True), server.client(decode_responses=True)
    a.execute_command("SELECT", 5)
    b.execute_command("SELECT", 6)
    a.set("k", "five")
    b.rpush("k", "six")
    assert a.get("k") == "five" and b.lrange("k", 0, -1) == ["six"]
    assert a.execute_command("MOVE", "k", 7) == 1 and a.exists("k") == 0


def test_racing_set_and_lpush_never_leave_two_types(server):
    clients = [server.client(decode_responses=True) for _ in range(4)]
    keys = ["race%d" % i for i in range(300)]

    def run(c, as_string):
        for key in keys:
            try:
                if as_string:
                    c.set(key, "s", nx=True)
                else:
                    c.lpush(key, "x")
            except redis.ResponseError as e:
                assert "WRONGTYPE" in str(e)

    threads = [threading.Thread(target=run, args=(c, i % 2 == 0)) for i, c in enumerate(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    c = clients[0]
    for key in keys:
        t = c.type(key)
        assert t in ("string", "list")
        if t == "string":
            assert c.get(key) == "s"
        else:
            assert set(c.lrange(key, 0, -1)) == {"x"}


def test_list_edits(r):
    r.rpush("e", "a", "b", "c", "b")
    assert r.lset("e", 1, "B") is True
    assert r.linsert("e", "before", "c", "x") == 5
    assert r.lrem("e", 0, "b") == 1
    assert r.lrange("e", 0, -1) == ["a", "B", "x", "c"]
    assert r.lpos("e", "x") == 2
    assert r.ltrim("e", 1, 2) is True and r.lrange("e", 0, -1) == ["B", "x"]
    assert r.lmove("e", "f", "LEFT", "RIGHT") == "B"
    assert r.rpoplpush("e", "f") == "x" and r.exists("e") == 0
    assert r.execute_command("LMPOP", 2, "e", "f", "LEFT", "COUNT", 5) == ["f", ["x", "B"]]
    with pytest.raises(redis.ResponseError, match="no such key"):
        r.lset("e", 0, "v")


def test_watch_sees_a_list_write(server):
    a, b = server.client(decode_responses=True), server.client(decode_responses=True)
    a.rpush("w", "1")
    pipe = a.pipeline()
    pipe.watch("w")
    b.rpush("w", "2")
    pipe.multi()
    pipe.lpop("w")
    with pytest.raises(redis.WatchError):
        pipe.execute()


def test_info_keyspace_counts_keys_with_an_expiry(r):
    r.set("plain", "v")
    r.set("s", "v", ex=100)
    r.rpush("l", "a")
    r.expire("l", 100)
    r.hset("h", "f", "v")
    r.pexpire("h", 100000)
    assert r.info("keyspace")["db0"] == {"keys": 4, "expires": 3, "avg_ttl": 0}
    r.persist("h")
    r.delete("l")
    r.set("s", "again")  # A plain SET drops the expiry, as in Redis.
    assert r.info("keyspace")["db0"]["expires"] == 0
    r.execute_command("SELECT", 3)
    r.set("x", "v", px=100000)
    assert r.info("keyspace")["db3"] == {"keys": 1, "expires": 1, "avg_ttl": 0}
    r.execute_command("SELECT", 0)


def test_keys_up_to_64_kib_and_abusive_patterns(r):
    long_key = "a" * 50000  # Redis's "Regression for pattern matching very long nested loops".
    assert r.set(long_key, 1) is True
    assert r.get(long_key) == "1"
    assert r.keys("*?" * 50000) == []  # Past 1000 nested stars nothing matches, as in Redis.
    assert r.keys("a*" * 999 + "a") == [long_key]
    r.hset("h", "f" * 65536, "v")
    assert r.hget("h", "f" * 65536) == "v"
    with pytest.raises(redis.ResponseError, match="key longer than 65536 bytes"):
        r.set("k" * 65537, "v")
    with pytest.raises(redis.ResponseError, match="longer than 65536 bytes"):
        r.hset("h", "f" * 65537, "v")
    assert r.dbsize() == 2 and r.hlen("h") == 1
