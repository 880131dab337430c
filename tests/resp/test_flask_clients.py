"""Flask-Caching's RedisCache and Flask-Session's Redis interface, unchanged, on shmstate."""
import pytest

flask = pytest.importorskip("flask")
flask_caching = pytest.importorskip("flask_caching")
flask_session = pytest.importorskip("flask_session")


def test_flask_caching_redis_cache(server):
    app = flask.Flask(__name__)
    cache = flask_caching.Cache(app, config={
        "CACHE_TYPE": "RedisCache", "CACHE_REDIS_HOST": "127.0.0.1",
        "CACHE_REDIS_PORT": server.port, "CACHE_KEY_PREFIX": "fc:"})
    calls = []

    @app.route("/slow/<int:n>")
    @cache.cached(timeout=60)
    def slow(n):
        calls.append(n)
        return "result %d" % n

    with app.test_client() as client:
        assert client.get("/slow/1").data == b"result 1"
        assert client.get("/slow/1").data == b"result 1"
        assert client.get("/slow/2").data == b"result 2"
    assert calls == [1, 2]
    with app.app_context():
        assert cache.set("k", {"a": [1, 2]}, timeout=30)
        assert cache.get("k") == {"a": [1, 2]}
        assert cache.add("k", "other") is False
        assert cache.set_many({"x": 1, "y": 2}) and cache.get_many("x", "y", "z") == [1, 2, None]
        backend = cache.cache  # flask_caching.backends.RedisCache
        assert backend.inc("n") == 1 and backend.inc("n", 5) == 6 and backend.dec("n") == 5
        assert cache.has("x") and cache.delete("x") and not cache.has("x")
        assert cache.delete_many("y", "k")
        assert cache.clear()
        assert cache.get("n") is None


def test_flask_session_redis(server):
    app = flask.Flask(__name__)
    app.config.update(SESSION_TYPE="redis", SECRET_KEY="test",
                      SESSION_REDIS=server.client(), SESSION_KEY_PREFIX="sess:")
    flask_session.Session(app)

    @app.route("/count")
    def count():
        flask.session["n"] = flask.session.get("n", 0) + 1
        return str(flask.session["n"])

    @app.route("/logout")
    def logout():
        flask.session.clear()
        return "bye"

    a, b = app.test_client(), app.test_client()
    assert [a.get("/count").data for _ in range(3)] == [b"1", b"2", b"3"]
    assert b.get("/count").data == b"1"
    keys = server.client().keys("sess:*")
    assert len(keys) == 2 and all(server.client().ttl(k) > 0 for k in keys)
    a.get("/logout")
    assert a.get("/count").data == b"1"
