"""Blocked pops across workers (docs/resp.md, "Blocked pops"): served in the order the clients
blocked, whichever worker each is on, before the pushing command replies; chains of BLMOVE too;
a WRONGTYPE destination answered to its pop in its turn; a killed worker's parked pop holds no
line. Real processes (2 workers), real sockets, redis-py."""
import os
import signal

import pytest
import redis
from waiting import blocked, until


def connect(server):
    return server.client(decode_responses=True, single_connection_client=True)


def worker_pid(conn):
    return int(conn.info("server")["process_id"])


@pytest.fixture()
def spread(server):
    """Connections until both workers serve at least four (bounded)."""
    conns = []
    by_worker = {}
    for _ in range(400):
        conn = connect(server)
        conns.append(conn)
        by_worker.setdefault(worker_pid(conn), []).append(conn)
        if len(by_worker) == 2 and all(len(c) >= 4 for c in by_worker.values()):
            break
    assert len(by_worker) == 2 and all(len(c) >= 4 for c in by_worker.values()), \
        "connections never reached both workers"
    conns[0].flushall()
    yield by_worker
    for conn in conns:
        try:
            conn.close()
        except redis.RedisError:
            pass


def alternating(spread, n):
    """n connections, one worker then the other."""
    (_, a), (_, b) = spread.items()
    return [(a if i % 2 == 0 else b)[i // 2] for i in range(n)]


def block(conn, observer, *command):
    """Sends a blocking command and waits until INFO (of any worker) counts it blocked."""
    before = blocked(observer)
    conn.connection.send_command(*command)
    assert until(lambda: blocked(observer) == before + 1), command


def test_pops_are_served_in_blocking_order_before_the_push_replies(spread):
    waiters = alternating(spread, 6)
    pusher = list(spread.values())[1][3]
    for round_ in range(3):
        for waiter in waiters:
            block(waiter, pusher, "BLPOP", "q", 0)
        items = ["r%d-%d" % (round_, i) for i in range(len(waiters))]
        assert pusher.rpush("q", *items) == len(items)
        # Served before the reply: nothing is left for a command that follows it.
        assert pusher.llen("q") == 0
        for waiter, item in zip(waiters, items):
            assert waiter.connection.read_response() == ["q", item]
        assert until(lambda: blocked(pusher) == 0)
        waiters.reverse()  # The other worker first next round.


def test_one_push_serves_waiters_in_turn_with_what_each_asks(spread):
    a, b, c = alternating(spread, 3)
    pusher = list(spread.values())[0][3]
    block(a, pusher, "BLMPOP", 0, 2, "l1", "l2", "LEFT", "COUNT", 1)
    block(b, pusher, "BLMPOP", 0, 2, "l1", "l2", "RIGHT", "COUNT", 10)
    block(c, pusher, "BLMPOP", 0, 2, "l1", "l2", "LEFT", "COUNT", 10)
    with pusher.pipeline(transaction=True) as tx:
        tx.lpush("l1", "a", "b", "c", "d", "e")
        tx.lpush("l2", 1, 2, 3, 4, 5)
        assert tx.execute() == [5, 5]
    assert pusher.exists("l1", "l2") == 0
    assert a.connection.read_response() == ["l1", ["e"]]
    assert b.connection.read_response() == ["l1", ["a", "b", "c", "d"]]
    assert c.connection.read_response() == ["l2", ["5", "4", "3", "2", "1"]]


def test_blmove_chains_and_circles_complete_before_the_push_replies(spread):
    a, b = alternating(spread, 2)
    pusher = list(spread.values())[0][3]
    block(a, pusher, "BLMOVE", "l1", "l2", "RIGHT", "LEFT", 0)
    block(b, pusher, "BLMOVE", "l2", "l3", "LEFT", "RIGHT", 0)
    assert pusher.rpush("l1", "foo") == 1
    assert (pusher.lrange("l1", 0, -1), pusher.lrange("l2", 0, -1),
            pusher.lrange("l3", 0, -1)) == ([], [], ["foo"])
    assert a.connection.read_response() == "foo"
    assert b.connection.read_response() == "foo"

    block(b, pusher, "BRPOPLPUSH", "c1", "c2", 0)
    block(a, pusher, "BRPOPLPUSH", "c2", "c1", 0)
    assert pusher.rpush("c1", "bar") == 1
    assert (pusher.lrange("c1", 0, -1), pusher.lrange("c2", 0, -1)) == (["bar"], [])
    assert b.connection.read_response() == "bar"
    assert a.connection.read_response() == "bar"


def test_a_wrongtype_destination_is_answered_to_its_pop_in_its_turn(spread):
    pusher = list(spread.values())[0][3]
    for first, second in [alternating(spread, 2), alternating(spread, 2)[::-1]] * 3:
        pusher.delete("src", "t2")
        pusher.set("t1", "not a list")
        block(first, pusher, "BRPOPLPUSH", "src", "t1", 0)
        block(second, pusher, "BRPOPLPUSH", "src", "t2", 0)
        assert pusher.lpush("src", "foo") == 1
        with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
            first.connection.read_response()
        assert second.connection.read_response() == "foo"
        assert pusher.lrange("t2", 0, -1) == ["foo"]


def test_a_killed_workers_parked_pop_holds_no_line(spread, server):
    (pid_a, conns_a), (pid_b, conns_b) = spread.items()
    victim, survivor, pusher = conns_b[0], conns_a[0], conns_a[1]
    block(victim, pusher, "BLPOP", "q", 0)  # First in line, on the worker about to die.
    block(survivor, pusher, "BLPOP", "q", 0)
    os.kill(pid_b, signal.SIGKILL)
    assert pusher.rpush("q", "item") == 1
    assert survivor.connection.read_response() == ["q", "item"]
    assert pusher.llen("q") == 0
    assert until(lambda: blocked(pusher) == 0)  # The dead worker's row went with it.
    # The line works on: a new pop blocks and is served.
    block(survivor, pusher, "BLPOP", "q", 0)
    assert pusher.rpush("q", "next") == 1
    assert survivor.connection.read_response() == ["q", "next"]
