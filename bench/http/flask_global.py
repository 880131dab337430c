"""The (wrong) Flask global counter: a module-level int per worker process, the bug shmstate's
users come with. Under gunicorn with 2 workers, 100 concurrent increments give duplicates; it is
the speed ceiling of a Flask view that does no I/O (run by gunicorn from bench/run)."""
import threading
from collections import defaultdict

from flask import Flask, jsonify

app = Flask(__name__)
counters = defaultdict(int)
lock = threading.Lock()  # Exact within one process (gthread); wrong across processes.


@app.post("/v1/counters/<name>/incr")
def incr(name):
    with lock:
        counters[name] += 1
        value = counters[name]
    return jsonify(value=value)
