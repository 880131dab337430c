"""A real gunicorn for the tests: free 127.0.0.1 port, started by argv, stopped by pid."""
import http.client
import json
import os
import signal
import socket
import subprocess
import time

from conftest import PYTHON_DIR, REPO

GUNICORN = "/usr/bin/gunicorn"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Gunicorn:
    """``gunicorn [args] app`` with ``env``; .port, .request(), .stop()."""

    def __init__(self, app, *args, chdir, workers=2, env=None, timeout=20.0):
        self.port = free_port()
        cmd = [GUNICORN, "--workers", str(workers), "--bind", f"127.0.0.1:{self.port}",
               "--chdir", chdir, "--log-level", "warning", "--graceful-timeout", "5", *args, app]
        full_env = dict(os.environ, SHMSTATE_PYTHON_DIR=PYTHON_DIR,
                        PYTHONPATH=os.pathsep.join([PYTHON_DIR, chdir]), **(env or {}))
        self.log_path = f"/tmp/gunicorn-{self.port}.log"
        self._log = open(self.log_path, "w+b")
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, env=full_env,
                                     cwd=REPO)
        self._wait_ready(workers, timeout)

    def _wait_ready(self, workers, timeout):
        """Until every worker answers (distinct pids seen), bounded by `timeout`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gunicorn exited {self.proc.returncode}:\n{self.log()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"gunicorn did not listen in {timeout} s:\n{self.log()}")

    def request(self, method, path, body=None, headers=None):
        """(status, headers dict (lower-case names), body) of one request on a new connection."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=20)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            response = conn.getresponse()
            data = response.read()
            return response.status, {k.lower(): v for k, v in response.getheaders()}, data
        finally:
            conn.close()

    def json(self, method, path, body=None, headers=None):
        status, hdrs, data = self.request(method, path, body, headers)
        assert status == 200, (status, data, self.log())
        return json.loads(data), hdrs

    def log(self):
        self._log.flush()
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode
