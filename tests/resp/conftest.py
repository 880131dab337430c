"""Starts build/shmstate serve with --resp-listen on free ports for the RESP tests.

Each test module gets its own server (a unique --name), stopped by pid at the end. The binary
comes from SHMSTATE_BIN (set by ctest) or build/shmstate.
"""
import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import pytest
import redis

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BINARY = os.environ.get("SHMSTATE_BIN", os.path.join(ROOT, "build", "shmstate"))


class Server:
    def __init__(self, name, extra=()):
        self.name = name
        size = [] if "--size" in extra else ["--size", "64MiB"]  # extra may choose its own.
        workers = [] if "--workers" in extra else ["--workers", "2"]
        self.proc = subprocess.Popen(
            [BINARY, "serve", "--listen", "127.0.0.1:0", "--resp-listen", "127.0.0.1:0",
             *workers, *size, "--name", name, "--log-level", os.environ.get("RESP_LOG", "warn"),
             *extra],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        match = re.search(r"http://127\.0\.0\.1:(\d+).* redis://127\.0\.0\.1:(\d+)", line)
        if not match:
            self.stop()
            raise RuntimeError("shmstate did not start: %r %s" % (line, self.proc.stderr.read()))
        self.http_port = int(match.group(1))
        self.port = int(match.group(2))

    def client(self, **kwargs):
        kwargs.setdefault("socket_timeout", 10)
        return redis.Redis(host="127.0.0.1", port=self.port, **kwargs)

    def alive(self):
        return self.proc.poll() is None

    def stop(self):
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        return self.proc.returncode


def start(request, extra=()):
    name = "resp%d%s" % (os.getpid(), re.sub(r"[^A-Za-z0-9]", "", request.node.name)[:24])
    server = Server(name, extra)
    request.addfinalizer(server.stop)
    return server


@pytest.fixture(scope="module")
def server(request):
    return start(request)


@pytest.fixture()
def r(server):
    client = server.client(decode_responses=True)
    client.flushall()
    yield client
    client.close()


REDIS_SERVER = os.environ.get("REDIS_SERVER_BIN", "/usr/bin/redis-server")


@contextlib.contextmanager
def redis_server(*args, decode_responses=False):
    """Debian's redis-server (with extra `args`) on a free 127.0.0.1 port in its own directory,
    stopped by pid: yields a redis-py client once it answers."""
    workdir = tempfile.mkdtemp(prefix="resp-real-")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", workdir, "--loglevel", "warning",
                             *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=10,
                         decode_responses=decode_responses)
    try:
        for _ in range(500):
            try:
                client.ping()
                break
            except redis.ConnectionError:
                assert proc.poll() is None, "redis-server exited"
                time.sleep(0.02)  # Waiting for its listener, bounded.
        yield client
    finally:
        client.close()
        os.kill(proc.pid, signal.SIGTERM)
        proc.wait(timeout=15)
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="module")
def real_redis():
    """The reference for replies whose order matters (decode_responses)."""
    with redis_server(decode_responses=True) as client:
        yield client
