"""CLIENT LIST/KILL/INFO and INFO clients see every connection of every worker (the segment's
client table), and the rows of a worker that dies go with the manager's recovery."""
import os
import signal

import pytest
import redis
from waiting import until


def connect(server):
    return server.client(decode_responses=True, single_connection_client=True)


def worker_pid(conn):
    return int(conn.info("server")["process_id"])


def parse_list(text):
    rows = []
    for line in text.splitlines():
        rows.append(dict(field.split("=", 1) for field in line.split(" ")))
    return rows


@pytest.fixture()
def spread(server):
    """Connections until both workers serve at least two (bounded)."""
    conns = []
    by_worker = {}
    for _ in range(200):
        conn = connect(server)
        conn.ping()
        pid = worker_pid(conn)
        conns.append(conn)
        by_worker.setdefault(pid, []).append(conn)
        if len(by_worker) == 2 and all(len(c) >= 2 for c in by_worker.values()):
            break
    assert len(by_worker) == 2, "connections never reached both workers"
    yield by_worker
    for conn in conns:
        try:
            conn.close()
        except redis.RedisError:
            pass


def test_client_list_shows_every_worker_with_redis_fields(spread):
    (pid_a, conns_a), (pid_b, conns_b) = spread.items()
    conns_b[0].client_setname("on-b")
    ids = {c.client_id(): pid for pid, cs in spread.items() for c in cs}
    rows = parse_list(conns_a[0].execute_command("CLIENT", "LIST"))
    listed = {int(r["id"]): r for r in rows}
    for client_id, pid in ids.items():
        assert client_id in listed
        assert int(listed[client_id]["shmstate-pid"]) == pid
    named = listed[conns_b[0].client_id()]
    assert named["name"] == "on-b" and named["cmd"] in ("client|setname", "client|id")
    for field in ("addr", "laddr", "fd", "age", "idle", "flags", "db", "multi", "cmd", "user",
                  "resp"):
        assert field in named
    info = conns_a[0].client_info()  # redis-py parses Redis's fields.
    assert int(info["id"]) == conns_a[0].client_id() and info["cmd"] == "client|info"
    assert int(conns_a[0].info("clients")["connected_clients"]) >= len(ids)
    assert conns_a[0].info("clients")["blocked_clients"] == 0


def test_client_kill_reaches_a_connection_of_another_worker(spread):
    (pid_a, conns_a), (pid_b, conns_b) = spread.items()
    victim = conns_b[0]
    victim_id = victim.client_id()
    assert conns_a[0].execute_command("CLIENT", "KILL", "ID", victim_id) == 1
    ids = lambda: {int(r["id"]) for r in parse_list(conns_a[0].execute_command("CLIENT", "LIST"))}
    assert victim_id not in ids()

    def closed():
        try:
            victim.ping()
            return False
        except redis.ConnectionError:
            return True
    assert until(closed)
    assert conns_b[1].ping()  # Its neighbours on that worker are untouched.
    assert conns_a[0].execute_command("CLIENT", "KILL", "ID", 987654321) == 0


def test_blocked_clients_and_unblock_across_workers(spread, server):
    (pid_a, conns_a), (pid_b, conns_b) = spread.items()
    blocked = conns_b[0]
    blocked_id = blocked.client_id()
    conns_a[0].delete("nothing-here")
    blocked.connection.send_command("BLPOP", "nothing-here", 0)
    assert until(lambda: conns_a[0].info("clients")["blocked_clients"] == 1)
    row = [r for r in parse_list(conns_a[0].execute_command("CLIENT", "LIST"))
           if int(r["id"]) == blocked_id][0]
    assert "b" in row["flags"] and row["cmd"] == "blpop"
    assert conns_a[0].execute_command("CLIENT", "UNBLOCK", blocked_id) == 1
    assert blocked.connection.read_response() is None  # As a timeout answers.
    assert until(lambda: conns_a[0].info("clients")["blocked_clients"] == 0)


def test_rows_of_a_dead_worker_go_with_its_recovery(spread, server):
    (pid_a, conns_a), (pid_b, conns_b) = spread.items()
    os.kill(pid_b, signal.SIGKILL)
    pids = lambda: {int(r["shmstate-pid"])
                    for r in parse_list(conns_a[0].execute_command("CLIENT", "LIST"))}
    assert until(lambda: pid_b not in pids())
    assert pid_a in pids()
