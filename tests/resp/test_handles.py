"""Per-thread object handles: every worker thread caches its own proxies of the strings dict and
of lists and hashes. When an object is deleted and made again (through RESP on another
connection, thread or worker, or through HTTP), every connection must see the new object, never
the old one and never an error."""
import json
import threading
import urllib.request

import pytest

from conftest import start

CLIENTS = 16  # Spread over 2 workers x 4 threads.


@pytest.fixture(scope="module")
def server(request):
    return start(request, ["--threads", "4"])


@pytest.fixture()
def clients(server):
    cs = [server.client(decode_responses=True) for _ in range(CLIENTS)]
    for c in cs:
        assert c.ping()  # Every connection is open (and accepted by some thread) before use.
    cs[0].flushall()
    yield cs
    for c in cs:
        c.close()


def everyone(clients, fn):
    """Runs fn(client) on every client at once; returns the results in client order."""
    results = [None] * len(clients)
    errors = []

    def run(i):
        try:
            results[i] = fn(clients[i])
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(clients))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors
    return results


def test_recreated_list_and_hash_are_seen_by_every_connection(clients):
    a = clients[0]
    for round_ in range(5):
        a.rpush("jobs", "old%d" % round_)
        a.hset("user", "name", "old%d" % round_)
        # Every connection opens (and caches) the current objects.
        assert everyone(clients, lambda c: c.lrange("jobs", 0, -1)) == [["old%d" % round_]] * CLIENTS
        assert everyone(clients, lambda c: c.hget("user", "name")) == ["old%d" % round_] * CLIENTS
        assert a.delete("jobs", "user") == 2
        a.rpush("jobs", "new%d" % round_)
        a.hset("user", "name", "new%d" % round_)
        assert everyone(clients, lambda c: c.lrange("jobs", 0, -1)) == [["new%d" % round_]] * CLIENTS
        assert everyone(clients, lambda c: c.hget("user", "name")) == ["new%d" % round_] * CLIENTS
        assert a.delete("jobs", "user") == 2


def test_key_recreated_as_another_type(clients):
    a = clients[0]
    a.rpush("thing", "x")
    assert everyone(clients, lambda c: c.llen("thing")) == [1] * CLIENTS
    a.delete("thing")
    a.hset("thing", "f", "v")
    assert everyone(clients, lambda c: c.type("thing")) == ["hash"] * CLIENTS
    assert everyone(clients, lambda c: c.hget("thing", "f")) == ["v"] * CLIENTS
    a.set("thing", "string now")
    assert everyone(clients, lambda c: c.get("thing")) == ["string now"] * CLIENTS


def test_flushall_drops_the_strings_dict_under_every_connection(clients):
    a = clients[0]
    a.set("k", "before")
    assert everyone(clients, lambda c: c.get("k")) == ["before"] * CLIENTS
    a.flushall()
    assert everyone(clients, lambda c: c.get("k")) == [None] * CLIENTS
    # Each connection writes through its thread's handle of the new strings dict.
    everyone(clients, lambda c: c.incr("count"))
    assert a.get("count") == str(CLIENTS)


def test_object_deleted_over_http_reopens(clients, server):
    a = clients[0]
    a.rpush("shared:list", "1", "2")
    assert everyone(clients, lambda c: c.llen("shared:list")) == [2] * CLIENTS
    # The key's list is the object its keyspace entry names (docs/resp.md): the only list here.
    base = "http://127.0.0.1:%d" % server.http_port
    listing = json.loads(urllib.request.urlopen(
        base + "/v1/objects?prefix=redis:0:&kind=list").read())
    names = [o["name"] for o in listing["objects"] if o.get("length") == 2]
    assert len(names) == 1
    req = urllib.request.Request(base + "/v1/objects/" + names[0], method="DELETE")
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.status in (200, 204)
    assert everyone(clients, lambda c: c.llen("shared:list")) == [0] * CLIENTS
    everyone(clients, lambda c: c.rpush("shared:list", "x"))
    assert a.llen("shared:list") == CLIENTS


def test_keyspace_deleted_over_http_reopens(clients, server):
    # Every connection's thread keeps its handle of database 0's keyspace object ("redis:0") from
    # one command to the next (resp/keyspace.cc): deleted by another front end, it must be seen
    # as gone (the keys with it) and opened anew, never answered through the stale handle.
    a = clients[0]
    a.set("k", "before")
    assert everyone(clients, lambda c: c.get("k")) == ["before"] * CLIENTS
    base = "http://127.0.0.1:%d" % server.http_port
    req = urllib.request.Request(base + "/v1/objects/redis:0", method="DELETE")
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.status in (200, 204)
    assert everyone(clients, lambda c: c.get("k")) == [None] * CLIENTS
    everyone(clients, lambda c: c.incr("count"))
    assert a.get("count") == str(CLIENTS)
