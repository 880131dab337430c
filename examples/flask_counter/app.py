"""The seed app: a hit counter that is exact under gunicorn's several worker processes.

A plain module-level ``hits = 0`` is per process (each worker counts its own share); here the
counter lives in the segment of ``shmstate serve --name $SHMSTATE_NAME``, and ``incr()`` is one
atomic instruction in shared memory, from the calling process, with no socket.

Attach at import: with ``gunicorn --preload`` that is once in the master before it forks (the
handle stays valid in each worker); without it, in each worker as it loads the app.
"""
import os

import flask

import shmstate

st = shmstate.attach(os.environ.get("SHMSTATE_NAME", "flask-counter"))
hits = st.counter("hits")
app = flask.Flask(__name__)


def pid():
    return str(os.getpid())


@app.route("/incr", methods=["GET", "POST"])
def incr():
    return flask.jsonify(value=hits.incr()), {"X-Worker-Pid": pid()}


@app.get("/hits")
def current():
    return flask.jsonify(value=hits.value), {"X-Worker-Pid": pid()}


# The same route as `shmstate serve` and bench/http/flask_app.py, so the benchmark's wrk scripts
# and checkers run against this app unchanged. Handles are cached: opening one is a registry lookup.
_counters = {}


@app.post("/v1/counters/<name>/incr")
def incr_named(name):
    counter = _counters.get(name)
    if counter is None:
        counter = _counters[name] = st.counter(name)
    return flask.jsonify(value=counter.incr()), {"X-Worker-Pid": pid()}
