"""Starts build/shmstate serve with --resp-listen on free ports for the RESP tests.

Each test module gets its own server (a unique --name), stopped by pid at the end. The binary
comes from SHMSTATE_BIN (set by ctest) or build/shmstate.
"""
import os
import re
import signal
import subprocess
import time

import pytest
import redis

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BINARY = os.environ.get("SHMSTATE_BIN", os.path.join(ROOT, "build", "shmstate"))


class Server:
    def __init__(self, name, extra=()):
        self.name = name
        size = [] if "--size" in extra else ["--size", "64MiB"]  # extra may choose its own.
        self.proc = subprocess.Popen(
            [BINARY, "serve", "--listen", "127.0.0.1:0", "--resp-listen", "127.0.0.1:0",
             "--workers", "2", *size, "--name", name, "--log-level", os.environ.get("RESP_LOG", "warn"),
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
