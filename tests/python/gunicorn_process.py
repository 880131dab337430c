"""A real gunicorn for the tests: free 127.0.0.1 port, started by argv, stopped by pid."""
import http.client
import json
import os
import socket
import subprocess

from conftest import PYTHON_DIR, REPO, LoggedProcess

GUNICORN = "/usr/bin/gunicorn"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Gunicorn(LoggedProcess):
    """``gunicorn [args] app`` with ``env``; .port, .request(), .stop()."""

    def __init__(self, app, *args, chdir, workers=2, env=None, timeout=20.0):
        self.port = free_port()
        cmd = [GUNICORN, "--workers", str(workers), "--bind", f"127.0.0.1:{self.port}",
               "--chdir", chdir, "--log-level", "warning", "--graceful-timeout", "5", *args, app]
        full_env = dict(os.environ, SHMSTATE_PYTHON_DIR=PYTHON_DIR,
                        PYTHONPATH=os.pathsep.join([PYTHON_DIR, chdir]), **(env or {}))
        log = self._open_log(f"/tmp/gunicorn-{self.port}.log")
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=full_env,
                                     cwd=REPO)
        self.wait_listening(self.port, timeout, "gunicorn")

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
