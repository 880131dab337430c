"""Hostile RESP input: a clear -ERR or a closed connection, never a crash; the worker serves on."""
import socket

import pytest


def exchange(server, payload, expect_close=True, timeout=5):
    s = socket.create_connection(("127.0.0.1", server.port), timeout=timeout)
    s.sendall(payload)
    data = b""
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
            if not expect_close and data.endswith(b"\r\n"):
                break
    except (ConnectionResetError, socket.timeout):
        pass
    s.close()
    return data


def assert_serving(server):
    r = server.client()
    assert r.ping()
    r.close()


@pytest.mark.parametrize("payload,error", [
    (b"*abc\r\n", b"invalid multibulk length"),
    (b"*2\r\n$3\r\nGET\r\n$-5\r\n", b"invalid bulk length"),
    (b"*1\r\n$99999999999\r\n", b"invalid bulk length"),
    (b"*1\r\n$2\r\nabc\r\n", b"not terminated by CRLF"),
    (b"*99999999\r\n", b"invalid multibulk length"),
    (b"*2\r\n*1\r\n$1\r\na\r\n", b"expected '$', got '*'"),
    (b"SET \"unbalanced\r\n", b"unbalanced quotes"),
])
def test_malformed_input_gets_an_error_and_is_closed(server, payload, error):
    reply = exchange(server, payload)
    assert reply.startswith(b"-ERR Protocol error") and error in reply
    assert_serving(server)


def test_huge_inline_line_is_refused(server):
    reply = exchange(server, b"A" * (70 << 10))
    assert b"too big inline request" in reply
    assert_serving(server)


def test_deep_nesting_and_garbage(server):
    reply = exchange(server, b"*1\r\n" * 100000)
    assert reply.startswith(b"-ERR Protocol error")
    # Garbage lines are unknown commands (the connection stays) until a quote does not balance.
    reply = exchange(server, bytes(range(256)) * 100, timeout=1)
    assert reply.startswith(b"-ERR")
    assert_serving(server)


def test_inline_commands(server):
    reply = exchange(server, b"SET inl \"a b\\x41\"\r\nGET inl\r\nQUIT\r\n")
    assert reply == b"+OK\r\n$4\r\na bA\r\n+OK\r\n"


def test_hundred_thousand_command_pipeline(server):
    n = 100000
    s = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    s.sendall(b"*2\r\n$4\r\nINCR\r\n$4\r\npipe\r\n" * n)
    expected = sum(len(b":%d\r\n" % i) for i in range(1, n + 1))
    data = b""
    while len(data) < expected:
        chunk = s.recv(1 << 20)
        assert chunk
        data += chunk
    s.close()
    assert data.endswith(b":%d\r\n" % n) and data.count(b"\r\n") == n
    assert_serving(server)


def test_workers_survived(server):
    assert server.alive()


def test_large_replies_while_more_commands_arrive(server):
    # Replies past the session's 4 MiB batch bound pause parsing; writes then complete while the
    # next read is pending, which must not move the buffer that read fills. The later commands
    # differ from the first ones, so stale buffer bytes would show in the replies.
    value = bytes(range(256)) * 800  # 200 KiB
    r = server.client()
    r.set("big", value)
    r.delete("seq")
    get = b"*2\r\n$3\r\nGET\r\n$3\r\nbig\r\n"
    incr = b"*2\r\n$4\r\nINCR\r\n$3\r\nseq\r\n"
    one = b"$%d\r\n" % len(value) + value + b"\r\n"
    expected = bytearray(one * 60)
    s = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    s.sendall(get * 60)
    received = bytearray()
    n = 0
    for round_ in range(4):
        while len(received) < len(expected) - 30 * len(one):
            chunk = s.recv(1 << 20)
            assert chunk
            received += chunk
        for _ in range(30):
            n += 1
            s.sendall(incr[:9])
            s.sendall(incr[9:] + get)
            expected += b":%d\r\n" % n + one
    while len(received) < len(expected):
        chunk = s.recv(1 << 20)
        assert chunk
        received += chunk
    s.close()
    assert bytes(received) == bytes(expected)
    assert_serving(server)
