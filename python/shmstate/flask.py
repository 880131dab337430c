"""Flask integrations: server-side sessions and a Flask-Caching backend, both in shmstate.

Sessions (every gunicorn worker sees the same session, no Redis)::

    import shmstate, shmstate.flask
    app.secret_key = "..."
    app.session_interface = shmstate.flask.ShmstateSessionInterface(shmstate.attach("NAME"))

Cache (``flask_caching``)::

    app.config.update(CACHE_TYPE="shmstate.flask.ShmstateCache", CACHE_SHMSTATE_NAME="NAME")
    cache = flask_caching.Cache(app)

See docs/python-integrations.md.
"""

from __future__ import annotations

import hashlib
import logging
import pickle
import re
from typing import Any, Optional, Union

import shmstate

try:
    from flask.sessions import SecureCookieSession, SessionInterface
    from flask.json.tag import TaggedJSONSerializer
except ImportError as error:  # pragma: no cover - only without Flask installed.
    raise ImportError("shmstate.flask needs Flask (Debian: python3-flask)") from error

from itsdangerous import BadSignature, Signer

__all__ = ["ShmstateSession", "ShmstateSessionInterface"]  # + ShmstateCache with Flask-Caching

logger = logging.getLogger(__name__)

_Attachable = Union["shmstate.Client", str, None]


def _client(st: _Attachable, app: Any = None) -> "shmstate.Client":
    if isinstance(st, shmstate.Client):
        return st
    if st is None and app is not None:
        st = app.config.get("SHMSTATE_NAME")
    if not st:
        raise shmstate.InvalidArgument(
            "no shmstate server named: pass a Client or a name, or set SHMSTATE_NAME")
    return shmstate.attach(st)


# --- Sessions ----------------------------------------------------------------------------------

class ShmstateSession(SecureCookieSession):
    """Flask's session dict (tracks ``modified`` and ``accessed``) plus the server-side ``sid``
    (None until the session is first saved)."""

    def __init__(self, initial: Any = None, sid: Optional[str] = None) -> None:
        super().__init__(initial)
        self.sid = sid


class ShmstateSessionInterface(SessionInterface):
    """Flask sessions kept in a shmstate sessions store; the cookie carries only the signed id.

    - The whole session dict is one field (``"flask"``) of the stored session, serialized with
      Flask's ``TaggedJSONSerializer``: every type Flask's cookie sessions take (bytes, tuples,
      datetimes, UUIDs, Markup) round-trips, and a save replaces the session in one atomic write
      (last writer wins for the whole dict, as with Flask's cookie sessions).
    - The id is 128 random bits made by the server, signed with ``app.secret_key`` (itsdangerous
      HMAC-SHA256, salt ``salt``). A cookie that does not verify, or names a session that expired,
      starts an empty session with a new id: a client cannot choose its id.
    - A request that does not write to the session creates nothing and sets no cookie; emptying
      a session deletes it and its cookie.
    - Cookie name, domain, path, secure, httponly, samesite and expiry follow Flask's config
      (``SESSION_COOKIE_*``, ``SESSION_REFRESH_EACH_REQUEST``, ``PERMANENT_SESSION_LIFETIME``).
      Stored sessions expire after ``PERMANENT_SESSION_LIFETIME`` without use (each read pushes
      the expiry back); the lifetime is fixed when the store ``store`` is first created.

    ``st``: a :class:`shmstate.Client`, a server name, or None to attach to
    ``app.config["SHMSTATE_NAME"]`` on first use.
    """

    session_class = ShmstateSession
    serializer = TaggedJSONSerializer()
    field = "flask"

    def __init__(self, st: _Attachable = None, *, store: str = "flask-sessions",
                 salt: str = "shmstate.flask.session") -> None:
        self._st = st
        self._store_name = store
        self.salt = salt
        self._stores: "dict[int, shmstate.Sessions]" = {}

    def _store(self, app: Any) -> "shmstate.Sessions":
        store = self._stores.get(id(app))
        if store is None:
            if not isinstance(self._st, shmstate.Client):
                self._st = _client(self._st, app)
            ttl = app.permanent_session_lifetime.total_seconds()
            store = self._st.sessions(self._store_name, ttl=ttl)
            self._stores[id(app)] = store
        return store

    def _signer(self, app: Any) -> Optional[Signer]:
        if not app.secret_key:
            return None
        return Signer(app.secret_key, salt=self.salt, key_derivation="hmac",
                      digest_method=hashlib.sha256)

    def open_session(self, app: Any, request: Any) -> Optional[ShmstateSession]:
        signer = self._signer(app)
        if signer is None:
            return None  # Flask then serves a NullSession that explains the missing secret_key.
        cookie = request.cookies.get(self.get_cookie_name(app))
        if not cookie:
            return self.session_class()
        try:
            sid = signer.unsign(cookie).decode("ascii")
        except (BadSignature, UnicodeDecodeError):
            return self.session_class()
        stored = self._store(app).get(sid)
        if stored is None or self.field not in stored:
            return self.session_class()
        try:
            data = self.serializer.loads(stored[self.field])
        except (ValueError, TypeError, KeyError):
            logger.warning("shmstate.flask: session %s.. does not decode; starting anew", sid[:8])
            return self.session_class()
        return self.session_class(data, sid=sid)

    def save_session(self, app: Any, session: ShmstateSession, response: Any) -> None:
        name = self.get_cookie_name(app)
        domain = self.get_cookie_domain(app)
        path = self.get_cookie_path(app)
        secure = self.get_cookie_secure(app)
        samesite = self.get_cookie_samesite(app)
        httponly = self.get_cookie_httponly(app)

        if session.accessed:
            response.vary.add("Cookie")
        if not session:
            if session.modified and session.sid is not None:
                self._store(app).delete(session.sid)
                response.delete_cookie(name, domain=domain, path=path, secure=secure,
                                       samesite=samesite, httponly=httponly)
                response.vary.add("Cookie")
            return
        if session.sid is None and not session.modified:
            return
        if session.modified:
            record = {self.field: self.serializer.dumps(dict(session))}
            store = self._store(app)
            if session.sid is None:
                session.sid = store.create(record)
            else:
                store.put(session.sid, record)
        if not self.should_set_cookie(app, session):
            return
        value = self._signer(app).sign(session.sid.encode("ascii")).decode("ascii")
        response.set_cookie(name, value, expires=self.get_expiration_time(app, session),
                            httponly=httponly, domain=domain, path=path, secure=secure,
                            samesite=samesite)
        response.vary.add("Cookie")


# --- Flask-Caching backend ----------------------------------------------------------------------

try:
    from flask_caching.backends.base import BaseCache as _BaseCache
except ImportError:  # Sessions work without Flask-Caching installed.
    _BaseCache = None

_INT_TEXT = re.compile(rb"-?[0-9]{1,19}\Z")

if _BaseCache is not None:
    __all__.append("ShmstateCache")

    class ShmstateCache(_BaseCache):
        """A Flask-Caching backend in a shmstate dict, shared by every worker process.

        ``CACHE_TYPE = "shmstate.flask.ShmstateCache"`` with the config keys
        ``CACHE_SHMSTATE_NAME`` (server ``--name``, default ``SHMSTATE_NAME`` or "shmstate"),
        ``CACHE_SHMSTATE_DICT`` (dict name, default "flask-cache"), ``CACHE_SHMSTATE_MAX_BYTES``
        (0: no cap; otherwise the least recently read entries are evicted past it),
        ``CACHE_KEY_PREFIX``, ``CACHE_DEFAULT_TIMEOUT`` and ``CACHE_IGNORE_ERRORS``.

        Values are stored as Flask-Caching's Redis backend stores them: an ``int`` as decimal
        text (so :meth:`inc`/:meth:`dec` are one atomic operation in the segment), anything else
        as ``b"!" + pickle``. Timeouts as in Flask-Caching: None is the default timeout, 0 never
        expires, a positive number expires after that many seconds, and a negative one is
        already expired (the key is removed, as in the SimpleCache/FileSystemCache backends).
        ``set`` returns False (and logs) when the segment or the cap is full or the value is
        over the dict's 16 MiB limit; a pickling error raises.
        """

        def __init__(self, st: _Attachable = "shmstate", dict_name: str = "flask-cache",
                     key_prefix: str = "", default_timeout: int = 300, max_bytes: int = 0,
                     ignore_errors: bool = False) -> None:
            super().__init__(default_timeout=default_timeout)
            self.ignore_errors = ignore_errors
            self.key_prefix = key_prefix or ""
            self._client = _client(st)
            self._dict = self._client.dict(dict_name, max_bytes=max_bytes,
                                           eviction="clock" if max_bytes else "none")

        @classmethod
        def factory(cls, app: Any, config: Any, args: Any, kwargs: Any) -> "ShmstateCache":
            kwargs.update(
                st=config.get("CACHE_SHMSTATE_NAME") or config.get("SHMSTATE_NAME") or "shmstate",
                dict_name=config.get("CACHE_SHMSTATE_DICT", "flask-cache"),
                key_prefix=config.get("CACHE_KEY_PREFIX") or "",
                max_bytes=int(config.get("CACHE_SHMSTATE_MAX_BYTES", 0)),
                ignore_errors=bool(config.get("CACHE_IGNORE_ERRORS", False)))
            return cls(*args, **kwargs)

        # Encoding, as flask_caching's RedisCache.
        @staticmethod
        def dump_object(value: Any) -> bytes:
            if type(value) is int:
                return str(value).encode("ascii")
            return b"!" + pickle.dumps(value)

        @staticmethod
        def load_object(value: Optional[bytes]) -> Any:
            if value is None:
                return None
            if value.startswith(b"!"):
                try:
                    return pickle.loads(value[1:])
                except pickle.PickleError:
                    return None
            if _INT_TEXT.match(value):
                return int(value)
            return value

        def _key(self, key: str) -> str:
            return self.key_prefix + key

        def _ttl(self, timeout: Optional[int]) -> Optional[float]:
            """None: no expiry; a negative result: already expired."""
            timeout = self._normalize_timeout(timeout)
            return None if timeout == 0 else float(timeout)

        def get(self, key: str) -> Any:
            return self.load_object(self._dict.get(self._key(key)))

        def has(self, key: str) -> bool:
            return self._key(key) in self._dict

        def _write(self, key: str, value: Any, timeout: Optional[int], mode: str) -> bool:
            dump = self.dump_object(value)
            ttl = self._ttl(timeout)
            k = self._key(key)
            if ttl is not None and ttl < 0:
                if mode == "add":
                    return k not in self._dict
                self._dict.delete(k)
                return True
            try:
                return self._dict.set(k, dump, ttl, mode=mode)
            except (shmstate.Full, shmstate.InvalidArgument) as error:
                logger.warning("shmstate.flask: cache %s of %r failed: %s", mode, key, error)
                return False

        def set(self, key: str, value: Any, timeout: Optional[int] = None) -> bool:
            return self._write(key, value, timeout, "set")

        def add(self, key: str, value: Any, timeout: Optional[int] = None) -> bool:
            return self._write(key, value, timeout, "add")

        def set_many(self, mapping: Any, timeout: Optional[int] = None) -> "list[str]":
            return [key for key, value in mapping.items() if self.set(key, value, timeout)]

        def delete(self, key: str) -> bool:
            return self._dict.delete(self._key(key))

        def clear(self) -> bool:
            """Removes every key under ``key_prefix`` (the whole dict without a prefix)."""
            for key in list(self._dict.keys(self.key_prefix)):
                self._dict.delete(key)
            return True

        def inc(self, key: str, delta: int = 1) -> Optional[int]:
            """Atomic across processes; a missing key starts at 0. Raises
            :class:`shmstate.InvalidArgument` when the value is not an integer."""
            return self._dict.incr(self._key(key), by=int(delta), init=0)

        def dec(self, key: str, delta: int = 1) -> Optional[int]:
            return self.inc(key, -int(delta))

        def __repr__(self) -> str:
            return f"<shmstate.flask.ShmstateCache dict={self._dict.name!r} prefix={self.key_prefix!r}>"
