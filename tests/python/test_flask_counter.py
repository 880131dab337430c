"""examples/flask_counter: its `run` script starts `shmstate serve --workers 0` and gunicorn with
4 workers; 100 concurrent clients get exactly 1..100, with --preload (attach in the master before
fork) and without (attach in each worker after fork); the script stops both on SIGTERM."""
import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import uuid

import pytest

from conftest import PYTHON_DIR, REPO, SHMSTATE_BIN, LoggedProcess
from gunicorn_process import free_port

RUN = os.path.join(REPO, "examples", "flask_counter", "run")
CHECKER = os.path.join(REPO, "examples", "clients", "concurrent_hits.py")


class Example(LoggedProcess):
    """The example's `run` script (its own session: shmstate serve and gunicorn under it)."""

    stop_timeout = 30

    def __init__(self, *gunicorn_args):
        self.name = "pyfc" + uuid.uuid4().hex[:10]
        self.port = free_port()
        env = dict(os.environ, SHMSTATE_NAME=self.name, BIND=f"127.0.0.1:{self.port}",
                   SHMSTATE_BIN=SHMSTATE_BIN, SHMSTATE_PYTHON_DIR=PYTHON_DIR)
        log = self._open_log(f"/tmp/{self.name}.log")
        self.proc = subprocess.Popen([RUN, "--log-level", "warning", *gunicorn_args], env=env,
                                     stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.wait_listening(self.port, 30, "the example")

    def _kill(self):
        os.killpg(self.proc.pid, signal.SIGKILL)  # Its own session: only what it started.


def hundred_concurrent_incr(port):
    """100 clients, each on its own connection, POST /incr at once: (values, worker pids)."""
    results, errors = [], []
    lock = threading.Lock()
    start = threading.Barrier(100)

    def client():
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
            conn.connect()
            start.wait(timeout=20)
            conn.request("POST", "/incr", body=b"")
            response = conn.getresponse()
            body = response.read()
            assert response.status == 200, (response.status, body)
            with lock:
                results.append((json.loads(body)["value"], response.getheader("X-Worker-Pid")))
            conn.close()
        except Exception as error:  # noqa: BLE001 - reported below.
            with lock:
                errors.append(repr(error))

    threads = [threading.Thread(target=client) for _ in range(100)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors[:3]
    return sorted(v for v, _ in results), {p for _, p in results}


def segment_files(name):
    return [f for f in os.listdir("/dev/shm") if name in f]


@pytest.mark.parametrize("preload", [False, True], ids=["post-fork-attach", "preload"])
def test_hundred_concurrent_clients_get_exactly_1_to_100(preload):
    example = Example(*(["--preload"] if preload else []))
    try:
        values, pids = hundred_concurrent_incr(example.port)
        assert values == list(range(1, 101))
        assert all(p and p.isdigit() for p in pids)
        # The examples' checker on the named-counter route: exact, and from at least 2 workers.
        checked = subprocess.run([sys.executable, CHECKER, "--port", str(example.port)],
                                 capture_output=True, text=True, timeout=120)
        assert checked.returncode == 0, checked.stdout + checked.stderr + example.log()
        assert checked.stdout.startswith("OK: 100 concurrent requests got exactly 1..100")
        conn = http.client.HTTPConnection("127.0.0.1", example.port, timeout=10)
        conn.request("GET", "/hits")
        assert json.loads(conn.getresponse().read())["value"] == 100
        conn.close()
    finally:
        assert example.stop() == 0, example.log()
    assert segment_files(example.name) == [], "the manager was not stopped with gunicorn"
