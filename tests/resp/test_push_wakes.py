"""Every write that makes a list key non-empty wakes the pops blocked on it (issue 23): the
keyspace reports the key (shm/keyspace.h, ReadyListSink), so RENAME, COPY, MOVE, RESTORE and EXEC
serve a parked BLPOP before they reply, as LPUSH does and as Redis does; a push made to a key's
list object over HTTP or through the Python module wakes the database's blocked pops (its keyspace's
futex word). Real processes (2 workers), real sockets, redis-py; no sleeps: each step waits for
the state it needs (INFO blocked_clients)."""
import os
import sys
import urllib.request

import pytest
import redis

PYTHON_DIR = os.path.join(os.path.dirname(os.environ.get("SHMSTATE_BIN", os.path.join(
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "build",
    "shmstate"))), "python")
sys.path.insert(0, PYTHON_DIR)
import shmstate  # noqa: E402  (build/python)
from shmstate import _shmstate  # noqa: E402
from waiting import blocked, until  # noqa: E402


def park(server, observer, key, db=0):
    """A connection whose BLPOP on `key` INFO (of any worker) counts as blocked."""
    conn = server.client(decode_responses=True, single_connection_client=True, db=db)
    before = blocked(observer)
    conn.connection.send_command("BLPOP", key, 0)
    assert until(lambda: blocked(observer) == before + 1), "the BLPOP never blocked"
    return conn


def rename(r):
    assert r.rename("src", "q")


def renamenx(r):
    assert r.renamenx("src", "q")


def copy(r):
    assert r.copy("src", "q")


def restore(r):
    payload = r.dump("src")
    r.delete("src")
    r.restore("q", 0, payload)


def exec_rename(r):
    pipe = r.pipeline(transaction=True)
    pipe.get("unrelated")
    pipe.rename("src", "q")
    assert pipe.execute() == [None, True]


@pytest.mark.parametrize("write", [rename, renamenx, copy, restore, exec_rename])
def test_a_list_written_whole_onto_a_key_serves_its_pop_before_the_reply(server, r, write):
    r.rpush("src", "v1")
    popper = park(server, r, "q")
    write(r)
    # Served before the reply, as Redis serves it: the item is already gone from q.
    assert r.exists("q") == 0
    assert popper.connection.read_response() == ["q", "v1"]
    assert blocked(r) == 0
    popper.close()


def test_move_serves_a_pop_of_the_other_database_before_the_reply(server, r):
    r.rpush("src", "v1")
    other = server.client(decode_responses=True, db=1)
    popper = park(server, r, "src", db=1)
    assert r.move("src", 1)
    assert other.exists("src") == 0
    assert popper.connection.read_response() == ["src", "v1"]
    popper.close()
    other.close()


def test_http_and_python_pushes_to_a_keys_list_wake_the_blocked_pops(server, r):
    st = shmstate.attach(server.name)
    before = {name for name, kind in st.objects("redis:0:") if kind == "list"}
    r.rpush("src", "a")
    (name,) = {name for name, kind in st.objects("redis:0:") if kind == "list"} - before
    word = _shmstate._WakeWord(server.name, "redis:0", "keyspace")
    popper = park(server, r, "waiting")  # Some pop is blocked: pushes report.

    seen = word.seq()
    request = urllib.request.Request(
        "http://127.0.0.1:%d/v1/lists/%s/push?end=right" % (server.http_port, name),
        data=b"from-http", method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200
    assert word.seq() != seen, "an HTTP push to a key's list woke no blocked pop"

    seen = word.seq()
    assert st.list(name).push(b"from-python") == 3
    assert word.seq() != seen, "a Python push to a key's list woke no blocked pop"
    assert r.lrange("src", 0, -1) == ["a", "from-http", "from-python"]

    r.rpush("waiting", "done")  # And the parked pop is still served in its turn.
    assert popper.connection.read_response() == ["waiting", "done"]
    popper.close()
