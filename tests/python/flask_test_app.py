"""A Flask app with shmstate sessions and the shmstate Flask-Caching backend, for the tests
(run in-process with the test client, and under gunicorn by test_flask.py).
SHMSTATE_NAME names the server; SHMSTATE_PYTHON_DIR where the module was built."""
import os
import sys

if os.environ.get("SHMSTATE_PYTHON_DIR"):
    sys.path.insert(0, os.environ["SHMSTATE_PYTHON_DIR"])

import flask  # noqa: E402
import flask_caching  # noqa: E402

import shmstate  # noqa: E402
import shmstate.flask  # noqa: E402


def create_app(name, **config):
    app = flask.Flask(__name__)
    app.secret_key = "test secret, not for production"
    app.config.update(CACHE_TYPE="shmstate.flask.ShmstateCache", CACHE_SHMSTATE_NAME=name,
                      CACHE_KEY_PREFIX="t/", CACHE_DEFAULT_TIMEOUT=0, SHMSTATE_NAME=name)
    app.config.update(config)
    app.session_interface = shmstate.flask.ShmstateSessionInterface()
    cache = flask_caching.Cache(app)
    app.extensions["test_cache"] = cache

    def answer(**fields):
        response = flask.jsonify(pid=os.getpid(), **fields)
        return response

    @app.get("/nothing")
    def nothing():
        return answer()

    @app.post("/session/<key>")
    def session_set(key):
        flask.session[key] = flask.request.get_data(as_text=True)
        return answer()

    @app.get("/session/<key>")
    def session_get(key):
        return answer(value=flask.session.get(key))

    @app.post("/session-permanent")
    def session_permanent():
        flask.session.permanent = True
        flask.session["p"] = 1
        return answer()

    @app.post("/session-clear")
    def session_clear():
        flask.session.clear()
        return answer()

    @app.post("/cache/<key>")
    def cache_set(key):
        return answer(ok=cache.set(key, flask.request.get_data(as_text=True)))

    @app.get("/cache/<key>")
    def cache_get(key):
        return answer(value=cache.get(key))

    @app.post("/cache-inc/<key>")
    def cache_inc(key):
        return answer(value=cache.cache.inc(key))

    @app.get("/hold")
    def hold():
        """Keeps this (sync, one request at a time) worker busy until the test releases it, so
        that the test's next requests are answered by other workers: says its pid in the list
        test:held, then waits for an item in test:release:<pid>."""
        state = shmstate.attach(name)
        state.list("test:held").push(str(os.getpid()).encode())
        released = state.list(f"test:release:{os.getpid()}").pop(wait=30)
        return answer(released=released is not None)

    calls = {"n": 0}

    @app.get("/cached")
    @cache.cached(timeout=0)
    def cached():
        calls["n"] += 1
        return answer(calls=calls["n"])

    return app


if os.environ.get("SHMSTATE_NAME"):  # Under gunicorn.
    app = create_app(os.environ["SHMSTATE_NAME"])
