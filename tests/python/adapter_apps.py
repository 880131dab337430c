"""WSGI apps for the adapter tests, run by gunicorn with several workers, and the helper that
runs them. The server's name comes in SHMSTATE_NAME.

  make_limits_app():  Flask + Flask-Limiter on shmstate://NAME; /limited allows LIMIT
                      (10/hour), shared by every worker; /pid answers the worker's pid.
  make_metrics_app(): Flask + prometheus_client values in the segment; /work?n=.. counts,
                      /metrics scrapes every worker's values in one go; /pid as above.
"""
import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))


def make_limits_app():
    import flask
    from flask_limiter import Limiter
    from flask_limiter.util import get_remote_address

    import shmstate.limits  # noqa: F401  (registers shmstate://)

    app = flask.Flask("limits_app")
    limiter = Limiter(get_remote_address, app=app,
                      storage_uri=f"shmstate://{os.environ['SHMSTATE_NAME']}/flasklimits",
                      strategy=os.environ.get("LIMITS_STRATEGY", "fixed-window"))

    @app.route("/limited")
    @limiter.limit(os.environ.get("LIMIT", "10/hour"))
    def limited():
        return "ok"

    @app.route("/pid")
    @limiter.exempt
    def pid():
        return str(os.getpid())

    return app


def make_metrics_app():
    import flask
    import prometheus_client as pc

    import shmstate.prometheus

    shmstate.prometheus.enable(os.environ["SHMSTATE_NAME"])
    requests = pc.Counter("app_requests", "Requests served", ["path"])
    work = pc.Counter("app_work_units", "Units of work done")
    latency = pc.Histogram("app_work_seconds", "Simulated work time", buckets=(0.1, 0.5, 1, 5))
    size = pc.Summary("app_work_size", "Work size")
    workers = pc.Gauge("app_workers", "Live workers", multiprocess_mode="livesum")
    started = pc.Gauge("app_started", "Worker starts (sum over all, dead too)",
                       multiprocess_mode="sum")
    biggest = pc.Gauge("app_biggest_n", "Largest n seen", multiprocess_mode="max")
    pids = pc.Gauge("app_pid", "Worker pid", multiprocess_mode="liveall")
    workers.inc()
    started.inc()
    pids.set(os.getpid())
    largest = [0]
    registry = pc.CollectorRegistry()
    shmstate.prometheus.ShmstateCollector(registry)
    app = flask.Flask("metrics_app")

    @app.route("/work")
    def do_work():
        n = int(flask.request.args.get("n", "1"))
        requests.labels("/work").inc()
        work.inc(n)
        latency.observe(n / 10)
        size.observe(n)
        if n > largest[0]:
            largest[0] = n
            biggest.set(n)
        return "ok"

    @app.route("/pid")
    def pid():
        return str(os.getpid())

    @app.route("/metrics")
    def metrics():
        return flask.Response(pc.generate_latest(registry), mimetype=pc.CONTENT_TYPE_LATEST)

    return app


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(port, path, timeout=10):
    """(status, body text) of a GET to 127.0.0.1:port."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


@contextlib.contextmanager
def gunicorn(app, name, workers=3, env=None, args=()):
    """Runs gunicorn on a free port with `workers` sync workers; yields (proc, port)."""
    port = free_port()
    cmd = [sys.executable, "-m", "gunicorn", "--chdir", HERE, "-w", str(workers),
           "-b", f"127.0.0.1:{port}", "--graceful-timeout", "5", "--log-level", "warning",
           *args, app]
    log = tempfile.TemporaryFile()  # Not a pipe: a full pipe would block the workers' logging.
    proc = subprocess.Popen(cmd, env=dict(os.environ, SHMSTATE_NAME=name, **(env or {})),
                            stderr=log)
    proc.log = lambda: (log.seek(0), log.read().decode(errors="replace"))[1]
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if get(port, "/pid", timeout=2)[0] == 200:
                    break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("gunicorn did not start: " + proc.log())
            time.sleep(0.1)
        yield proc, port
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
