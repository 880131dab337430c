"""shmstate.flask against a real `shmstate serve`: the session interface and the Flask-Caching
backend with Flask's test client, then the same app under a real gunicorn (several workers)."""
import datetime
import email.utils
import json
import os
import threading
import time
import uuid

import pytest

import flask_test_app
import shmstate
from conftest import wait_until
from gunicorn_process import Gunicorn

GUNICORN_WORKERS = 3

HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.fixture
def app(server):
    return flask_test_app.create_app(server.name)


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def cache(app):
    with app.app_context():
        yield app.extensions["test_cache"]


def session_cookie(response, name="session"):
    cookies = [h for h in response.headers.getlist("Set-Cookie") if h.startswith(name + "=")]
    return cookies[0] if cookies else None


# --- Sessions with the test client -------------------------------------------------------------

def test_request_that_does_not_touch_the_session_creates_nothing(client, st):
    response = client.get("/nothing")
    assert response.status_code == 200
    assert session_cookie(response) is None
    response = client.get("/session/user")  # Reads (accessed) but does not write.
    assert response.json["value"] is None
    assert session_cookie(response) is None
    assert response.headers.get("Vary") == "Cookie"


def test_session_round_trips_and_the_cookie_carries_only_a_signed_id(client):
    response = client.post("/session/user", data="alice")
    cookie = session_cookie(response)
    assert cookie is not None and "alice" not in cookie
    assert "HttpOnly" in cookie and "Expires" not in cookie  # Flask's defaults: browser session.
    assert client.get("/session/user").json["value"] == "alice"
    # An unmodified, non-permanent session sets no cookie again.
    assert session_cookie(client.get("/session/user")) is None


def test_tagged_json_types_round_trip(app, client):
    when = datetime.datetime(2026, 12, 2, 12, 0, tzinfo=datetime.timezone.utc)
    key = uuid.UUID(int=12345)

    @app.post("/rich")
    def rich():
        import flask
        flask.session["t"] = (1, "two", b"\x00\xff")
        flask.session["when"] = when
        flask.session["id"] = key
        return "ok"

    @app.get("/rich")
    def rich_get():
        import flask
        s = flask.session
        assert s["t"] == (1, "two", b"\x00\xff") and s["when"] == when and s["id"] == key
        return "same"

    client.post("/rich")
    assert client.get("/rich").data == b"same"


def test_the_session_lives_in_shmstate_not_in_the_cookie(server, client):
    client.post("/session/user", data="bob")
    # A second app (another "worker") with the same secret and server sees it.
    other = flask_test_app.create_app(server.name).test_client()
    value = {c.name: c for c in client.cookie_jar}["session"].value
    other.set_cookie("localhost", "session", value)
    assert other.get("/session/user").json["value"] == "bob"


def test_tampered_or_forged_cookie_starts_an_empty_session(server, client):
    client.post("/session/user", data="carol")
    jar = {c.name: c for c in client.cookie_jar}
    sid, _, signature = jar["session"].value.rpartition(".")
    attacker = flask_test_app.create_app(server.name).test_client()
    for forged in (sid + ".AAAA", sid, "0" * 32 + "." + signature, "garbage"):
        attacker.set_cookie("localhost", "session", forged)
        assert attacker.get("/session/user").json["value"] is None
    # A valid signature over an id with no stored session does not adopt that id.
    evil = flask_test_app.create_app(server.name)
    signer = evil.session_interface._signer(evil)
    attacker.set_cookie("localhost", "session", signer.sign(b"f" * 32).decode())
    response = attacker.post("/session/user", data="mallory")
    assert not session_cookie(response).startswith("session=" + "f" * 32)


def test_clearing_deletes_server_side_and_the_cookie(server, client):
    client.post("/session/user", data="dave")
    old = {c.name: c for c in client.cookie_jar}["session"].value
    response = client.post("/session-clear")
    cookie = session_cookie(response)
    assert cookie.startswith("session=;") and "Expires=Thu, 01 Jan 1970" in cookie
    replay = flask_test_app.create_app(server.name).test_client()
    replay.set_cookie("localhost", "session", old)
    assert replay.get("/session/user").json["value"] is None


def test_cookie_config_is_honoured(server):
    app = flask_test_app.create_app(
        server.name, SESSION_COOKIE_NAME="sid", SESSION_COOKIE_SECURE=True,
        SESSION_COOKIE_HTTPONLY=False, SESSION_COOKIE_SAMESITE="Strict",
        PERMANENT_SESSION_LIFETIME=datetime.timedelta(minutes=5))
    client = app.test_client()
    response = client.post("/session-permanent")
    cookie = session_cookie(response, "sid")
    assert cookie is not None, response.headers
    assert "Secure" in cookie and "HttpOnly" not in cookie and "SameSite=Strict" in cookie
    expires = email.utils.parsedate_to_datetime(cookie.split("Expires=")[1].split(";")[0])
    assert 290 < expires.timestamp() - time.time() <= 301  # PERMANENT_SESSION_LIFETIME
    # Permanent + SESSION_REFRESH_EACH_REQUEST (default): every request refreshes the cookie.
    client2 = app.test_client()
    client2.set_cookie("localhost", "sid", cookie.split(";")[0].split("=", 1)[1])
    assert session_cookie(client2.get("/session/p"), "sid") is not None
    # The store's idle lifetime is PERMANENT_SESSION_LIFETIME.
    assert app.session_interface._store(app).ttl == 300


def test_without_secret_key_flask_explains(server):
    app = flask_test_app.create_app(server.name)
    app.secret_key = None
    response = app.test_client().post("/session/user", data="x")
    assert response.status_code == 500  # Flask's NullSession: "The session is unavailable..."


# --- Flask-Caching backend, the behaviours of its backend tests --------------------------------

def test_cache_type_resolves_to_the_backend(app, cache):
    from shmstate.flask import ShmstateCache
    assert isinstance(cache.cache, ShmstateCache)


def test_cache_get_set_types_and_missing(cache):
    values = [b"bytes", "text", 42, -7, 3.5, None, True, [1, {"a": (2, 3)}], {"k": b"v"}]
    for i, value in enumerate(values):
        assert cache.set(f"k{i}", value) is True
    for i, value in enumerate(values):
        got = cache.get(f"k{i}")
        assert got == value and type(got) is type(value)
    assert cache.get("missing") is None


def test_cache_add_delete_has(cache):
    assert cache.add("a", "first") is True
    assert cache.add("a", "second") is False
    assert cache.get("a") == "first"
    assert cache.has("a") and not cache.has("b")
    assert cache.delete("a") is True
    assert cache.delete("a") is False
    assert not cache.has("a")


def test_cache_many(cache):
    assert sorted(cache.set_many({"x": 1, "y": "two", "z": [3]})) == ["x", "y", "z"]
    assert cache.get_many("x", "y", "nope", "z") == [1, "two", None, [3]]
    assert cache.get_dict("x", "nope") == {"x": 1, "nope": None}
    assert cache.delete_many("x", "y") == ["x", "y"]
    assert cache.get_many("x", "y", "z") == [None, None, [3]]
    # Without CACHE_IGNORE_ERRORS, delete_many stops at the first missing key (Flask-Caching).
    cache.set_many({"p": 1, "q": 2})
    assert cache.delete_many("p", "gone", "q") == ["p"]
    assert cache.get("q") == 2


def test_cache_inc_dec(cache):
    cache = cache.cache  # flask_caching.Cache has no inc/dec: they are the backend's.
    assert cache.inc("n") == 1
    assert cache.inc("n", 5) == 6
    assert cache.dec("n", 2) == 4
    assert cache.dec("m") == -1
    assert cache.get("n") == 4
    cache.set("n", 10)
    assert cache.inc("n") == 11
    cache.set("text", "abc")  # Pickled: not an integer, and left as it was.
    with pytest.raises(shmstate.InvalidArgument):
        cache.inc("text")
    assert cache.get("text") == "abc"


def test_cache_clear_only_removes_its_prefix(server, app, cache, st):
    raw = st.dict("flask-cache")
    raw["other/key"] = b"kept"
    cache.set_many({"a": 1, "b": 2})
    assert cache.clear() is True
    assert cache.get("a") is None and cache.get("b") is None
    assert raw["other/key"] == b"kept"


def test_cache_timeouts(server):
    app = flask_test_app.create_app(server.name, CACHE_DEFAULT_TIMEOUT=1)
    with app.app_context():
        cache = app.extensions["test_cache"]
        cache.set("default", "v")          # default timeout: 1 s
        cache.set("forever", "v", timeout=0)
        cache.set("long", "v", timeout=300)
        assert cache.add("added", "v", timeout=1) is True
        assert cache.get("default") == "v" and cache.has("added")
        assert wait_until(lambda: cache.get("default") is None and not cache.has("added"))
        assert cache.get("forever") == "v" and cache.get("long") == "v"
        entry = app.extensions["test_cache"].cache._dict.entry("t/long")
        assert 295_000 < entry[2] - time.time() * 1000 <= 300_000
        assert app.extensions["test_cache"].cache._dict.entry("t/forever")[2] == 0
        # Negative: already expired, as SimpleCache and FileSystemCache.
        assert cache.set("forever", "new", timeout=-1) is True
        assert cache.get("forever") is None
        assert cache.add("neg", "v", timeout=-1) is True and cache.get("neg") is None


def test_cache_full_is_a_false_set_not_a_crash(server):
    app = flask_test_app.create_app(server.name, CACHE_SHMSTATE_DICT="tiny",
                                    CACHE_SHMSTATE_MAX_BYTES=1 << 16)
    with app.app_context():
        cache = app.extensions["test_cache"]
        assert cache.set("huge", b"x" * (17 << 20)) is False  # Over the dict's 16 MiB value cap.
        for i in range(200):  # 200 x 1 KiB through a 64 KiB cap: evicted, never Full.
            assert cache.set(f"k{i}", b"x" * 1024) is True
        assert cache.get("k199") == b"x" * 1024


def test_cached_and_memoize_decorators(app, client, cache):
    first = client.get("/cached").json
    second = client.get("/cached").json
    assert first["calls"] == 1 and second == first

    calls = []

    @cache.memoize(timeout=0)
    def square(x):
        calls.append(x)
        return x * x

    assert [square(3), square(3), square(4)] == [9, 9, 16]
    assert calls == [3, 4]
    cache.delete_memoized(square, 3)
    assert square(3) == 9 and calls == [3, 4, 3]


# --- Under gunicorn: several worker processes share the sessions and the cache -----------------

@pytest.fixture
def gunicorn(make_server):
    server = make_server(workers=0)  # The manager alone; gunicorn serves HTTP.
    g = Gunicorn("flask_test_app:app", chdir=HERE, workers=GUNICORN_WORKERS,
                 env={"SHMSTATE_NAME": server.name})
    g.shmstate_name = server.name
    yield g
    assert g.stop() == 0, g.log()


def test_gunicorn_workers_share_sessions_and_cache(gunicorn):
    status, headers, body = gunicorn.request("POST", "/session/user", body=b"erin")
    assert status == 200
    cookie = headers["set-cookie"].split(";")[0]
    answer = gunicorn.json("POST", "/cache/shared", body=b"hello")[0]
    assert answer["ok"] is True
    writers = {json.loads(body)["pid"], answer["pid"]}
    # A sync worker answers one request at a time, and a /hold request can only reach a free
    # worker: hold workers until both writers are held (at most every worker), then let the
    # others go, so that the reads below are answered by a worker that wrote nothing and the
    # session and cache it shows can only have come from the segment.
    state = shmstate.attach(gunicorn.shmstate_name)
    holders = {}

    def release(pid):
        state.list(f"test:release:{pid}").push(b"go")
        holders.pop(pid).join(timeout=60)
    try:
        while not writers <= holders.keys():
            assert len(holders) < GUNICORN_WORKERS, (writers, holders.keys())
            holder = threading.Thread(target=gunicorn.json, args=("GET", "/hold"))
            holder.start()
            pid = state.list("test:held").pop(wait=20)
            assert pid is not None, gunicorn.log()
            holders[int(pid)] = holder
        for pid in [pid for pid in holders if pid not in writers]:
            release(pid)
        for path, header in (("/session/user", {"Cookie": cookie}), ("/cache/shared", {})):
            answer = gunicorn.json("GET", path, headers=header)[0]
            assert answer["pid"] not in writers
            assert answer["value"] == ("erin" if path.startswith("/session") else "hello")
    finally:
        for pid in list(holders):
            release(pid)


def test_gunicorn_cache_inc_is_exact_across_workers(gunicorn):
    results, errors = [], []
    lock = threading.Lock()
    start = threading.Barrier(50)

    def client():
        try:
            start.wait(timeout=20)
            for _ in range(2):
                value = gunicorn.json("POST", "/cache-inc/hits")[0]["value"]
                with lock:
                    results.append(value)
        except Exception as error:  # noqa: BLE001 - reported below.
            with lock:
                errors.append(repr(error))

    threads = [threading.Thread(target=client) for _ in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors[:3]
    assert sorted(results) == list(range(1, 101))
