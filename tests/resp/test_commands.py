"""redis-py against shmstate: replies and errors as Redis gives them."""
import json
import threading
import time

import pytest
import redis


def test_connection_commands(r, server):
    assert r.ping() is True
    assert r.echo("hi") == "hi"
    r.client_setname("worker-a")
    assert r.client_getname() == "worker-a"
    assert isinstance(r.client_id(), int)
    assert r.execute_command("SELECT", 0) is True
    with pytest.raises(redis.ResponseError, match="DB index is out of range"):
        r.execute_command("SELECT", 16)
    assert r.execute_command("SELECT", 1) is True  # Databases 0..15, one keyspace each.
    r.set("in-db1", "x")
    assert r.execute_command("SELECT", 0) is True
    assert r.get("in-db1") is None
    info = r.info()
    assert info["redis_version"]
    assert "used_memory" in r.info("memory")


def test_unknown_command_keeps_connection(r):
    with pytest.raises(redis.ResponseError, match="unknown command 'NOSUCH'"):
        r.execute_command("NOSUCH", "a")
    with pytest.raises(redis.ResponseError, match="wrong number of arguments for 'get'"):
        r.execute_command("GET")
    assert r.ping()


def test_strings(r):
    assert r.set("a", "1") is True
    assert r.get("a") == "1"
    assert r.set("a", "2", nx=True) is None
    assert r.set("b", "2", xx=True) is None
    assert r.set("a", "3", xx=True, get=True) == "1"
    assert r.set("e", "v", ex=100)
    assert 99 <= r.ttl("e") <= 100
    assert r.set("e", "w", keepttl=True)
    assert r.ttl("e") > 0
    assert r.setnx("n", "x") is True and r.setnx("n", "y") is False
    assert r.setex("s", 50, "v") and 0 < r.pttl("s") <= 50000
    assert r.getset("a", "9") == "3"
    assert r.getdel("a") == "9" and r.get("a") is None
    assert r.mset({"m1": "1", "m2": "2"}) and r.mget("m1", "m2", "zz") == ["1", "2", None]
    assert r.msetnx({"m1": "x", "m3": "3"}) is False and r.get("m3") is None
    assert r.append("ap", "ab") == 2 and r.append("ap", "cd") == 4 and r.get("ap") == "abcd"
    assert r.strlen("ap") == 4 and r.strlen("missing") == 0
    assert r.getex("s", persist=True) == "v" and r.ttl("s") == -1
    assert r.set("past", "x", pxat=1000) and r.get("past") is None
    with pytest.raises(redis.ResponseError, match="invalid expire time"):
        r.set("bad", "x", ex=0)
    with pytest.raises(redis.ResponseError, match="syntax error"):
        r.execute_command("SET", "k", "v", "NX", "XX")


def test_counters(r):
    assert r.incr("c") == 1 and r.incrby("c", 10) == 11
    assert r.decr("c") == 10 and r.decrby("c", 4) == 6
    assert r.get("c") == "6"
    assert r.incrbyfloat("f", 10.5) == 10.5 and r.incrbyfloat("f", 0.1) == pytest.approx(10.6)
    r.set("text", "abc")
    with pytest.raises(redis.ResponseError, match="not an integer"):
        r.incr("text")
    r.set("big", str(2**63 - 1))
    with pytest.raises(redis.ResponseError, match="overflow"):
        r.incr("big")
    assert r.get("big") == str(2**63 - 1)


def test_keys(r):
    r.set("k1", "v")
    r.rpush("l1", "a")
    r.hset("h1", "f", "v")
    assert r.type("k1") == "string" and r.type("l1") == "list" and r.type("h1") == "hash"
    assert r.type("none") == "none"
    assert r.exists("k1", "l1", "h1", "nope") == 3
    assert sorted(r.keys("*1")) == ["h1", "k1", "l1"]
    assert r.dbsize() == 3
    assert r.expire("k1", 100) is True and r.expire("k1", 50, gt=True) is False
    assert r.expire("k1", 50, lt=True) is True and 0 < r.ttl("k1") <= 50
    assert r.persist("k1") is True and r.ttl("k1") == -1
    assert r.ttl("nope") == -2
    r.rename("k1", "k2")
    assert r.get("k2") == "v" and r.get("k1") is None
    assert r.delete("k2", "l1", "h1", "nope") == 3
    assert r.dbsize() == 0
    r.set("x", "1")
    assert r.flushdb() and r.keys("*") == []


def test_wrongtype(r):
    r.set("s", "v")
    r.rpush("l", "a")
    r.hset("h", "f", "v")
    for call in (lambda: r.lpush("s", "x"), lambda: r.hset("s", "f", "v"),
                 lambda: r.get("l"), lambda: r.incr("l"), lambda: r.hget("l", "f"),
                 lambda: r.lrange("h", 0, -1), lambda: r.append("h", "x")):
        with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
            call()
    # SET replaces whatever the key held, as in Redis.
    assert r.set("l", "now a string") and r.type("l") == "string"


def test_keys_with_any_bytes(server):
    r = server.client()
    r.flushall()
    odd = b"user/42 \xff\x00name"
    r.rpush(odd, b"x")
    r.hset(odd + b"h", b"f", b"v")
    assert r.lrange(odd, 0, -1) == [b"x"]
    assert set(r.keys(b"user/42*")) == {odd, odd + b"h"}
    assert r.delete(odd, odd + b"h") == 2


def test_lists(r):
    assert r.rpush("q", "a", "b", "c") == 3 and r.lpush("q", "z") == 4
    assert r.lrange("q", 0, -1) == ["z", "a", "b", "c"]
    assert r.llen("q") == 4 and r.lindex("q", -1) == "c" and r.lindex("q", 10) is None
    assert r.lpop("q") == "z" and r.rpop("q") == "c"
    assert r.lpop("q", 5) == ["a", "b"]
    assert r.lpop("q") is None and r.lpop("q", 2) is None
    assert r.exists("q") == 0 and r.type("q") == "none"


def test_blpop_waits_without_blocking_the_worker(server):
    a = server.client(decode_responses=True)
    a.flushall()
    results = []
    t = threading.Thread(target=lambda: results.append(a.blpop(["jobs", "other"], timeout=10)))
    t.start()
    # Other clients are served meanwhile, on either worker.
    pusher = server.client(decode_responses=True)
    for _ in range(20):
        assert pusher.ping()
    pusher.rpush("jobs", "j1")
    t.join(15)
    assert results == [("jobs", "j1")]
    assert a.blpop("empty", timeout=0.2) is None
    assert a.brpop("empty", timeout=0.1) is None
    with pytest.raises(redis.ResponseError, match="timeout is negative"):
        a.blpop("x", timeout=-1)


def test_hashes(r):
    assert r.hset("h", mapping={"a": "1", "b": "2"}) == 2
    assert r.hset("h", "a", "3") == 0
    assert r.hget("h", "a") == "3" and r.hget("h", "zz") is None
    assert r.hmget("h", ["a", "b", "c"]) == ["3", "2", None]
    assert r.hgetall("h") == {"a": "3", "b": "2"}
    assert sorted(r.hkeys("h")) == ["a", "b"] and sorted(r.hvals("h")) == ["2", "3"]
    assert r.hexists("h", "a") and not r.hexists("h", "q")
    assert r.hlen("h") == 2 and r.hincrby("h", "n", 5) == 5
    assert r.hdel("h", "a", "b", "n", "q") == 3
    assert r.hgetall("h") == {} and r.exists("h") == 0


def test_pipeline_and_transactions(r):
    pipe = r.pipeline(transaction=False)
    for i in range(1000):
        pipe.incr("p")
    assert pipe.execute()[-1] == 1000
    with r.pipeline() as tx:
        tx.set("t", "1").incr("t").get("t")
        assert tx.execute() == [True, 2, "2"]
    # WATCH: a change by another client between WATCH and EXEC aborts the transaction.
    with r.pipeline() as tx:
        tx.watch("w")
        r.set("w", "changed")
        tx.multi()
        tx.set("w", "mine")
        with pytest.raises(redis.WatchError):
            tx.execute()
    assert r.get("w") == "changed"
    with pytest.raises(redis.ResponseError, match="EXEC without MULTI"):
        r.execute_command("EXEC")


def test_scan_iterates_every_key_once(r):
    expected = set()
    for i in range(600):
        r.set("s:%d" % i, i)
        expected.add("s:%d" % i)
    for i in range(5):
        r.rpush("list:%d" % i, "x")
        expected.add("list:%d" % i)
    seen = list(r.scan_iter(count=50))
    assert len(seen) == len(set(seen)) and set(seen) == expected
    assert set(r.scan_iter(match="list:*")) == {k for k in expected if k.startswith("list:")}
    assert set(r.scan_iter(_type="list")) == {k for k in expected if k.startswith("list:")}


def test_resp3(server):
    # redis-py 4 parses RESP2 only, so HELLO 3 and its replies are read from a raw socket.
    import socket
    s = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    s.sendall(b"HELLO 3\r\nHSET h3 f v\r\nHGETALL h3\r\nGET nothing\r\n")
    data = b""
    while data.count(b"\r\n") < 24 and b"_\r\n" not in data:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    s.close()
    assert data.startswith(b"%7\r\n")
    assert b"$5\r\nproto\r\n:3\r\n" in data
    assert b"%1\r\n$1\r\nf\r\n$1\r\nv\r\n" in data
    assert data.endswith(b"_\r\n")


def test_auth_with_token(request):
    from conftest import start
    server = start(request, ["--token", "s3cret"])
    r = server.client()
    with pytest.raises(redis.AuthenticationError):
        r.ping()
    with pytest.raises((redis.AuthenticationError, redis.ResponseError), match="WRONGPASS"):
        server.client(password="wrong").ping()
    good = server.client(password="s3cret")
    assert good.ping() and good.set("k", "v")


def test_visible_through_http(r, server):
    import urllib.request
    r.set("greeting", "hello")
    r.rpush("jobs", "a")
    base = "http://127.0.0.1:%d" % server.http_port
    # Database 0 is the keyspace object "redis:0": its strings read like a dict's keys, and each
    # list or hash is the object "redis:0:<id>" its entry names (docs/resp.md).
    assert urllib.request.urlopen(base + "/v1/dicts/redis:0/greeting").read() == b"hello"
    listing = json.loads(urllib.request.urlopen(
        base + "/v1/objects?prefix=redis:0:&kind=list").read())
    lengths = [o.get("length") for o in listing["objects"]]
    assert 1 in lengths
    r.rpush("jobs", "b")
    listing = json.loads(urllib.request.urlopen(
        base + "/v1/objects?prefix=redis:0:&kind=list").read())
    assert 2 in [o.get("length") for o in listing["objects"]]


def test_concurrent_incr_over_workers_counts_exactly(server):
    server.client().delete("hits")
    seen = []
    lock = threading.Lock()

    def worker():
        client = server.client()
        mine = [client.incr("hits") for _ in range(250)]
        with lock:
            seen.extend(mine)
        client.close()

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(seen) == list(range(1, 1001))


def test_lrange_longer_than_one_chunk(r):
    pipe = r.pipeline(transaction=False)
    for i in range(0, 25000, 500):
        pipe.rpush("long", *range(i, i + 500))
    pipe.execute()
    items = r.lrange("long", 0, -1)
    assert len(items) == 25000 and items[0] == "0" and items[-1] == "24999"
    assert r.lrange("long", -12000, -11999) == ["13000", "13001"]
    assert len(r.lrange("long", 5, 20004)) == 20000


def test_sigterm_stops_cleanly_with_resp_clients_connected(request):
    from conftest import start
    server = start(request)
    idle = server.client()
    assert idle.set("k", "v")
    blocked = server.client(socket_timeout=20)
    outcome = []

    def wait():
        try:
            outcome.append(blocked.blpop("never", timeout=0))
        except redis.ConnectionError:
            outcome.append("closed")

    t = threading.Thread(target=wait)
    t.start()
    time.sleep(0.2)  # Let the BLPOP arrive (any order is fine: the check is the exit code).
    started = time.time()
    assert server.stop() == 0
    assert time.time() - started < 10
    t.join(20)
    assert outcome == ["closed"]


def test_list_holds_more_than_the_default_list_bound(request):
    # A list made through RESP has the largest bounds a list allows (Redis lists have none to
    # speak of), not the default 1,048,576 items of lists made through other APIs.
    from conftest import start
    server = start(request, ["--size", "384MiB"])
    r = server.client()
    items = [b"%d" % i for i in range(10000)]
    pipe = r.pipeline(transaction=False)
    for _ in range(106):  # 1,060,000 items.
        pipe.rpush("big", *items)
    replies = pipe.execute()
    assert replies[-1] == 1060000
    assert r.llen("big") == 1060000
    assert r.lindex("big", -1) == b"9999"
    r.close()


def test_info_fields_monitoring_reads(r):
    """Fields redis-cli users and exporters read, in Redis's formats."""
    memory = r.info("memory")
    assert memory["maxmemory_human"] == "64.00M"  # The segment (conftest: --size 64MiB).
    human = memory["used_memory_human"]
    number, unit = float(human[:-1]), human[-1]
    assert unit in "BKM" and abs(number * {"B": 1, "K": 1024, "M": 1 << 20}[unit]
                                 - memory["used_memory"]) <= 0.01 * memory["used_memory"] + 10
    assert r.info("stats")["evicted_keys"] == 0
    assert r.info("server")["uptime_in_days"] == 0
