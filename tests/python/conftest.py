"""Fixtures for the shmstate Python tests: a real `shmstate serve` per test (or module), on a
free 127.0.0.1 port with a unique --name, stopped by pid; the module imported from build/python.

Run through CTest (./scripts/test), or by hand:
  PYTHONPATH=build/python /usr/bin/python3 -m pytest -q tests/python
"""
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.environ.get("SHMSTATE_BUILD_DIR", os.path.join(REPO, "build"))
SHMSTATE_BIN = os.environ.get("SHMSTATE_BIN", os.path.join(BUILD, "shmstate"))
PYTHON_DIR = os.path.join(BUILD, "python")
if PYTHON_DIR not in sys.path:
    sys.path.insert(0, PYTHON_DIR)
# Child processes the tests start (writers, gunicorn) import the same build of the module.
os.environ["PYTHONPATH"] = os.pathsep.join(
    [PYTHON_DIR] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])


def wait_until(predicate, timeout=5.0, what=None):
    """Polls `predicate` (bounded) for a state another thread or process brings about: True once
    it holds. On timeout, False; or AssertionError naming `what` when it is given."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            if what is not None:
                raise AssertionError(f"timed out after {timeout} s waiting for {what}")
            return False
        time.sleep(0.01)
    return True


class LoggedProcess:
    """A child process (`self.proc`) whose output goes to `self.log_path` (open as `self._log`):
    .log() reads it, .stop() sends SIGTERM and waits, killing it after `stop_timeout` seconds."""

    stop_timeout = 20

    def _open_log(self, path):
        self.log_path = path
        self._log = open(path, "w+b")
        return self._log

    def log(self):
        if not self._log.closed:
            self._log.flush()
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")

    def _kill(self):
        self.proc.kill()

    def wait_listening(self, port, timeout, what):
        """Waits (bounded) until 127.0.0.1:`port` accepts a connection while the process runs;
        else stops it and raises with its log."""
        def listening():
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    return True
            except OSError:
                return False

        if wait_until(lambda: self.proc.poll() is not None or listening(), timeout) and \
                self.proc.poll() is None:
            return
        exited = self.proc.poll()
        self.stop()
        state = f"exited {exited}" if exited is not None else f"did not listen in {timeout} s"
        raise RuntimeError(f"{what} {state}:\n{self.log()}")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=self.stop_timeout)
            except subprocess.TimeoutExpired:
                self._kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode


class Server(LoggedProcess):
    """A running `shmstate serve`: .name, .port (None with --workers 0), .url(path), .stop()."""

    def __init__(self, *args, workers=2, size="16MiB", extra_env=None, log_level="info"):
        self.name = "pyt" + uuid.uuid4().hex[:12]
        cmd = [SHMSTATE_BIN, "serve", "--name", self.name, "--workers", str(workers),
               "--size", size, "--listen", "127.0.0.1:0", "--log-level", log_level, *args]
        env = dict(os.environ, **(extra_env or {}))
        log = self._open_log(f"/tmp/{self.name}.log")
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, env=env)
        line = self.proc.stdout.readline().decode()  # The first line says where it listens.
        if not line.startswith("shmstate:"):
            self.stop()
            raise RuntimeError(f"server did not start: {line!r}\n{self.log()}")
        self.port = None
        if "http://" in line:
            self.port = int(line.split("http://", 1)[1].split()[0].rsplit(":", 1)[1])

    def url(self, path):
        return f"http://127.0.0.1:{self.port}{path}"

    def http(self, method, path, body=None, headers=None):
        """(status, body bytes) of one request to the server's HTTP API."""
        req = urllib.request.Request(self.url(path), data=body, method=method,
                                     headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def stats(self):
        status, body = self.http("GET", "/v1/stats")
        assert status == 200, body
        return json.loads(body)

    def wait_log(self, text, timeout=10.0):
        """Waits (bounded) for the server to log `text`; returns the log."""
        if not wait_until(lambda: text in self.log(), timeout):
            raise AssertionError(f"server never logged {text!r}:\n{self.log()}")
        return self.log()

    def wait_healthy(self, timeout=15.0):
        """Waits (bounded) until a worker answers GET /healthz with 200. A client killed inside
        the allocator poisons the segment: until the manager has rebuilt it and restarted the
        workers on the new generation, /healthz answers 503 or the connection drops."""
        last = []

        def healthy():
            try:
                last[:] = self.http("GET", "/healthz")
            except OSError as e:  # A worker stopped for the rebuild.
                last[:] = [None, repr(e).encode()]
            return last[0] == 200

        if not wait_until(healthy, timeout):
            raise AssertionError(f"/healthz never answered 200 (last: {last[0]} {last[1]!r}):\n"
                                 f"{self.log()}")

    def wait_clients_settled(self, killed, generation):
        """Waits until the manager logged that each killed client (pid, the last segment
        generation it wrote in: see last_generation) is gone. Only those whose slot was in the
        generation served now: a poisoned-allocator rebuild removed older generations and what a
        client held there, leaving nothing to settle."""
        for pid, last_generation in killed:
            if last_generation == generation:
                self.wait_log(f"attached client pid {pid} is gone", timeout=15)

@pytest.fixture
def server():
    s = Server()
    yield s
    assert s.stop() == 0, s.log()


@pytest.fixture
def make_server():
    started = []

    def make(*args, **kwargs):
        s = Server(*args, **kwargs)
        started.append(s)
        return s

    yield make
    for s in started:
        s.stop()


@pytest.fixture
def st(server):
    import shmstate
    return shmstate.attach(server.name)
