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


def receive(sock, length):
    data = b""
    while len(data) < length:
        chunk = sock.recv(65536)
        assert chunk, "closed after %r" % data
        data += chunk
    return data


def test_commands_before_a_protocol_error_answer_in_order(server):
    # The session parses a pipeline ahead in batches (to prefetch their keys): the commands
    # before a bad one still run and answer in order, then the error, and nothing after it runs.
    sets = b"".join(b"*3\r\n$3\r\nSET\r\n$4\r\nbk%02d\r\n$1\r\n%d\r\n" % (i, i % 10)
                    for i in range(20))
    get = b"*2\r\n$3\r\nGET\r\n$4\r\nbk17\r\n"
    after = b"*3\r\n$3\r\nSET\r\n$5\r\nafter\r\n$1\r\n1\r\n"
    reply = exchange(server, sets + get + b"*1\r\n$2\r\nabc\r\n" + after)
    assert reply.startswith(b"+OK\r\n" * 20 + b"$1\r\n7\r\n-ERR Protocol error")
    assert b"not terminated by CRLF" in reply
    r = server.client()
    assert r.get("bk19") == b"9" and r.get("after") is None
    r.close()


def test_a_blocked_pop_in_a_pipeline_holds_the_commands_after_it(server):
    # As in Redis: BLPOP waits (here until its timeout), and only then do the commands parsed
    # after it in the same batch run, in order.
    server.client().delete("bl")
    s = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    s.sendall(b"*3\r\n$5\r\nBLPOP\r\n$2\r\nbl\r\n$3\r\n0.3\r\n"
              b"*3\r\n$5\r\nRPUSH\r\n$2\r\nbl\r\n$1\r\nx\r\n"
              b"*2\r\n$4\r\nLPOP\r\n$2\r\nbl\r\n")
    expected = b"*-1\r\n:1\r\n$1\r\nx\r\n"
    assert receive(s, len(expected)) == expected
    s.close()


def test_a_command_split_across_reads_after_a_full_batch(server):
    # More commands than one parse-ahead batch, the last one cut in the middle of a bulk string:
    # the first ones answer at once, the last one when its bytes arrive.
    n = 40
    s = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    cmd = b"*3\r\n$3\r\nSET\r\n$6\r\nsplitk\r\n$2\r\nv%d\r\n"
    tail = b"*2\r\n$3\r\nGET\r\n$6\r\nsplitk\r\n"
    s.sendall(b"".join(cmd % (i % 10) for i in range(n)) + tail[:12])
    assert receive(s, 5 * n) == b"+OK\r\n" * n
    s.sendall(tail[12:])
    assert receive(s, 8) == b"$2\r\nv9\r\n"
    s.close()


def test_a_command_sent_one_byte_per_segment(server):
    # Each byte its own segment, so most reads are short and leave the socket drained: the
    # session then waits for epoll without reading again, and the next byte must still wake it
    # (resp/stamped_read.h).
    s = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    for i in range(3):
        for byte in b"*2\r\n$4\r\nPING\r\n$5\r\nbyte%d\r\n" % i:
            s.send(bytes([byte]))
        assert receive(s, 11) == b"$5\r\nbyte%d\r\n" % i
    s.close()
