"""Replies written at the end of the worker's loop pass (resp/resp_server.cc, Server::QueueFlush).

A single-threaded worker runs the commands of every connection its last epoll_wait found ready,
then writes all their replies, as redis-server does before it sleeps. These tests hold it to
what a client sees: every reply, in order, on its own connection, also when the connection ends
(QUIT, CLIENT KILL) right behind its commands.
"""
import random
import selectors
import socket
import time

from conftest import start


def command(*args):
    out = b"*%d\r\n" % len(args)
    for arg in args:
        arg = arg if isinstance(arg, bytes) else str(arg).encode()
        out += b"$%d\r\n%s\r\n" % (len(arg), arg)
    return out


def read_until_closed(sock):
    data = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk


def test_many_connections_pipelining_together_each_get_their_replies_in_order(server):
    # 40 connections send their whole pipeline before any reads a reply, so each pass of the
    # loop finds many sockets ready and batches their replies: each connection still gets
    # exactly its own replies, in its order, and the shared counter counts every INCR once.
    rng = random.Random(23)
    r = server.client()
    r.delete("batch:n")
    conns, expected = [], []
    for c in range(40):
        s = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        pipeline, replies = b"", []
        for i in range(rng.randint(20, 60)):
            key = b"batch:%d:%d" % (c, i)
            pipeline += command("SET", key, i) + command("INCR", "batch:n") + command("GET", key)
            replies.append((key, i))
        conns.append(s)
        expected.append(replies)
        s.sendall(pipeline)
    counts = []
    for s, replies in zip(conns, expected):
        buf = b""
        while buf.count(b"\r\n") < 4 * len(replies):  # +OK, :n, $len and the value.
            chunk = s.recv(65536)
            assert chunk, "closed before all replies: %r" % buf[-80:]
            buf += chunk
        lines = buf.split(b"\r\n")
        assert lines[-1] == b"" and len(lines) == 4 * len(replies) + 1
        per = []
        for j, (key, i) in enumerate(replies):
            ok, incr, length, value = lines[4 * j:4 * j + 4]
            assert ok == b"+OK" and incr.startswith(b":"), (key, lines[4 * j:4 * j + 4])
            assert (length, value) == (b"$%d" % len(str(i)), str(i).encode()), key
            per.append(int(incr[1:]))
        assert per == sorted(per), "one connection's INCRs answered out of order"
        counts += per
        s.close()
    total = sum(len(replies) for replies in expected)
    assert sorted(counts) == list(range(1, total + 1))
    assert int(r.get("batch:n")) == total
    r.close()


def test_quit_in_a_pipeline_answers_what_came_before_then_closes(server):
    s = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    s.sendall(command("SET", "qk", "1") + command("PING") + command("QUIT") +
              command("SET", "qk", "2"))
    assert read_until_closed(s) == b"+OK\r\n+PONG\r\n+OK\r\n"
    s.close()
    r = server.client()
    assert r.get("qk") == b"1"
    r.close()


def test_client_kill_after_a_command_ran_still_sends_its_reply(server):
    # A command that ran before CLIENT KILL reached its connection is answered before the
    # close, even if the kill is handled in the same pass as the command, before the batched
    # replies go out ("killed after its current command", as Redis).
    victim = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    victim.sendall(command("CLIENT", "ID"))
    reply = b""
    while not reply.endswith(b"\r\n"):
        reply += victim.recv(100)
    victim_id = int(reply[1:-2])
    r = server.client()
    r.delete("kk")
    victim.sendall(command("SET", "kk", "v"))
    deadline = time.monotonic() + 10
    while r.get("kk") != b"v":  # The command ran; its reply is sent or about to be.
        assert time.monotonic() < deadline, "SET never ran"
    assert r.execute_command("CLIENT", "KILL", "ID", victim_id) == 1
    assert read_until_closed(victim) == b"+OK\r\n"
    victim.close()
    assert r.ping()
    r.close()


def test_one_worker_serves_interleaved_clients_with_selectors(request):
    # One worker (every connection on one loop): clients that each keep a request in flight and
    # answer their replies at once, as redis-benchmark does, all finish.
    server = start(request, ["--workers", "1"])
    sel = selectors.DefaultSelector()
    left = {}
    for c in range(25):
        s = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ, c)
        left[c] = [200, b""]
        s.send(command("INCR", "sel:%d" % c) * 4)
    done = 0
    while done < 25:
        events = sel.select(timeout=10)
        assert events, "no reply within 10 s"
        for key, _ in events:
            s, c = key.fileobj, key.data
            left[c][1] += s.recv(65536)
            while left[c][1].count(b"\r\n") >= 4:
                lines = left[c][1].split(b"\r\n")
                left[c][1] = b"\r\n".join(lines[4:])
                left[c][0] -= 4
                if left[c][0] == 0:
                    sel.unregister(s)
                    s.close()
                    done += 1
                    break
                s.send(command("INCR", "sel:%d" % c) * 4)
    r = server.client()
    assert [int(r.get("sel:%d" % c)) for c in range(25)] == [200] * 25
    r.close()


def test_a_client_that_shuts_down_its_sending_side_gets_every_reply_then_the_close(request):
    # `printf ... | nc -N`: a pipeline larger than one read, then shutdown(SHUT_WR). The FIN is
    # already queued when the worker's last read takes the pipeline's tail, so epoll raises no
    # new edge for it; the worker's probe of a waiting connection finds it, long before the read
    # timeout (an hour here), and the connection closes after every reply, as Redis closes it.
    server = start(request, ["--workers", "1", "--read-timeout", "3600s"])
    for pairs in (1, 3000, 20000):
        s = socket.create_connection(("127.0.0.1", server.port), timeout=20)
        s.sendall((command("SET", "hc", "1") + command("GET", "hc")) * pairs)
        s.shutdown(socket.SHUT_WR)
        data = read_until_closed(s)  # A close that never came raises socket.timeout.
        s.close()
        assert data == b"+OK\r\n$1\r\n1\r\n" * pairs
