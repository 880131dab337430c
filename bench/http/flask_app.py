"""Flask + Redis serving the benchmark's routes (run by gunicorn from bench/run).
REDIS_PORT names the loopback Redis the script started."""
import os

import redis
from flask import Flask, Response, jsonify, request

app = Flask(__name__)
store = redis.Redis(host="127.0.0.1", port=int(os.environ["REDIS_PORT"]))


@app.post("/v1/counters/<name>/incr")
def incr(name):
    return jsonify(value=store.incr("c/" + name))


@app.get("/v1/dicts/<d>/<key>")
def get_key(d, key):
    value = store.get("d/%s/%s" % (d, key))
    if value is None:
        return Response(status=404)
    return Response(value, content_type="application/octet-stream")


@app.put("/v1/dicts/<d>/<key>")
def put_key(d, key):
    store.set("d/%s/%s" % (d, key), request.get_data())
    return jsonify(version=1)
