"""The idle timeout of RESP connections (--read-timeout): an idle connection is closed, one that
keeps sending commands is not, whatever its age, and a blocked BLPOP is not idle."""
import socket
import time

import pytest
import redis

from conftest import start

TIMEOUT_S = 1.0


@pytest.fixture(scope="module")
def server(request):
    return start(request, ["--read-timeout", "%dms" % (TIMEOUT_S * 1000)])


def test_idle_connection_is_closed(server):
    s = socket.create_connection(("127.0.0.1", server.port), timeout=10 * TIMEOUT_S)
    try:
        assert s.recv(64) == b""  # Closed by the server, long before the socket timeout.
    finally:
        s.close()


def test_idle_after_a_command_is_closed(server):
    s = socket.create_connection(("127.0.0.1", server.port), timeout=10 * TIMEOUT_S)
    try:
        s.sendall(b"PING\r\n")
        assert s.recv(64) == b"+PONG\r\n"
        assert s.recv(64) == b""
    finally:
        s.close()


def test_active_connection_outlives_the_timeout(server):
    r = server.client()
    started = time.monotonic()
    # Pacing, not a race: each command comes well within the timeout of the one before, and
    # the connection lives for several timeouts.
    while time.monotonic() - started < 3 * TIMEOUT_S:
        assert r.ping()
        time.sleep(TIMEOUT_S / 5)
    assert r.incr("active") == 1
    r.close()


def test_blocked_pop_is_not_idle(server):
    r = server.client(socket_timeout=20 * TIMEOUT_S)
    assert r.blpop("nothing-here", timeout=3 * TIMEOUT_S) is None
    assert r.ping()  # Still the same usable connection.
    r.close()


def test_half_received_command_times_out(server):
    s = socket.create_connection(("127.0.0.1", server.port), timeout=10 * TIMEOUT_S)
    try:
        s.sendall(b"*2\r\n$3\r\nGET\r\n")  # The rest never comes.
        assert s.recv(64) == b""
    finally:
        s.close()


def test_pipeline_larger_than_the_output_bound_is_answered_whole(server):
    # 4 MiB of replies pause parsing until they are written; the rest of the pipeline, already
    # received, must still run although no more bytes arrive.
    r = server.client()
    r.set("big", b"x" * (512 << 10))
    pipe = r.pipeline(transaction=False)
    for _ in range(24):
        pipe.get("big")
    assert all(len(v) == 512 << 10 for v in pipe.execute())
    r.close()
