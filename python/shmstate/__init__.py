"""shmstate: shared state for prefork Python apps, in shared memory, in-process.

Attach to a running ``shmstate serve --name NAME`` (or ``--workers 0``: the manager alone) and
use its objects directly from every gunicorn/uWSGI worker, at memory speed, with no socket::

    import shmstate
    st = shmstate.attach("NAME")
    hits = st.counter("hits")
    hits.incr()                      # exact across every process

Every write commits with one atomic store in the segment, so a process killed at any
instruction leaves each value old or new, whole; the server repairs what it left. Attach before
or after fork: a handle stays valid in a forked child. When the server grows or repairs its
segment it copies the state into a new generation; handles follow it by themselves.

Errors are exceptions of one hierarchy: :class:`Error` and its subclasses :class:`NotFound`
(also a ``KeyError``), :class:`WrongKind` (``TypeError``), :class:`InvalidArgument`
(``ValueError``) and its subclass :class:`InvalidType` (also a ``TypeError``: an argument of
the wrong Python type), :class:`Conflict`, :class:`Full`, :class:`Timeout` (``TimeoutError``),
:class:`Unavailable` (server stopped: attach again), :class:`AlreadyExists`, :class:`Internal`.
No argument, however wrong, raises anything else (or crashes the process).
"""

from __future__ import annotations

import json as _json
import sys as _sys
from typing import Any, Iterator, Optional, Union

from . import _shmstate
from ._version import __version__
from ._shmstate import (AlreadyExists, Conflict, Error, Full, Internal, InvalidArgument,
                        InvalidType, NotFound, Timeout, Unavailable, WrongKind)

#: The in-segment layout this module reads; a server of another layout is refused at attach
#: with a message naming both (docs/deploy.md#upgrades).
LAYOUT_VERSION: int = _shmstate.LAYOUT_VERSION
#: The library's size limits, by name (bytes, items or ms): the one table the HTTP API, the
#: Redis protocol and this module enforce (shm/limits.h, docs/limits.md). Read-only copy.
LIMITS: "dict[str, int]" = dict(_shmstate.LIMITS)

__all__ = [
    "__version__", "LAYOUT_VERSION", "LIMITS", "attach", "connect", "Client", "Counter", "Dict", "List",
    "Lock", "Sessions", "Array", "Error", "NotFound", "AlreadyExists", "WrongKind",
    "InvalidArgument", "InvalidType", "Conflict", "Full", "Timeout", "Unavailable", "Internal",
]

Key = Union[bytes, str]
_MISSING = object()
_REDIS_OPTIONS = {"prefix", "wait_replicas", "wait_timeout", "socket_timeout"}
_URL_OPTIONS = {"shm": {"follow_timeout"}, "redis": _REDIS_OPTIONS, "rediss": _REDIS_OPTIONS,
                "redis+cluster": _REDIS_OPTIONS}


def _numpy_error(e: Exception, what: str) -> Error:
    """numpy's refusal of an argument as the module's: a TypeError is InvalidType."""
    kind = InvalidType if isinstance(e, TypeError) else InvalidArgument
    return kind(f"{what}: {e}")


def attach(name: str = "shmstate", *, follow_timeout: float = 10.0) -> "Client":
    """Maps the segment of the running server ``shmstate serve --name NAME`` into this process.

    ``follow_timeout``: how long an operation waits for the server to finish moving its state
    into a new generation (growth, repair) before it raises :class:`Unavailable`.
    Raises :class:`NotFound` when no such server runs.
    """
    return Client(_shmstate._Client(name, follow_timeout))


def connect(url: str, **options: Any) -> "Client":
    """``shm://NAME`` is :func:`attach` (NAME); ``redis://HOST:PORT[/DB]`` and
    ``redis+cluster://HOST:PORT[,HOST:PORT...]`` give the same classes on Redis / Redis Cluster
    (``options``: ``prefix``, ``wait_replicas``, ``wait_timeout``; see docs/scaling.md)."""
    if not isinstance(url, str):
        raise InvalidType(f"url must be str, not {type(url).__name__}")
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise InvalidArgument(f"not a URL: {url!r} (expected shm://NAME)")
    allowed = _URL_OPTIONS.get(scheme)
    unknown = sorted(set(options) - allowed) if allowed is not None else []
    if unknown:
        raise InvalidArgument(f"unknown option(s) {', '.join(unknown)} for {scheme}:// "
                              f"(it takes {', '.join(sorted(allowed))})")
    if scheme == "shm":
        return attach(rest or "shmstate", **options)
    if scheme in ("redis", "rediss", "redis+cluster"):
        from .redis_backend import RedisClient  # redis-py is imported only when used.
        return Client(RedisClient(url, **options))
    raise InvalidArgument(f"unsupported scheme {scheme!r} in {url!r} "
                          "(expected shm://, redis:// or redis+cluster://)")


class Client:
    """An attachment to one server's shared memory; create with :func:`attach`.

    The ``counter``/``dict``/``list``/... methods open the named object, creating it with the
    given options when it is missing. Handles are cheap; keep them (e.g. at module level).
    """

    def __init__(self, native: Any) -> None:
        self._native = native

    @property
    def name(self) -> str:
        """The server's ``--name``."""
        return self._native.name

    @property
    def generation(self) -> int:
        """The generation of the segment this process uses now."""
        return self._native.generation

    def counter(self, name: str, *, init: int = 0, ttl: Optional[float] = None) -> "Counter":
        """A signed 64-bit counter; created at ``init`` (with an expiry of ``ttl`` s) if missing."""
        return Counter(self._native.counter(name, init, ttl))

    def dict(self, name: str, *, max_bytes: int = 0, eviction: str = "none",
             default_ttl: Optional[float] = None) -> "Dict":
        """A bytes-to-bytes dict with TTLs; ``eviction="clock"`` (needs ``max_bytes``) evicts the
        least recently read entries instead of raising :class:`Full`."""
        return Dict(self._native.dict(name, max_bytes, eviction, default_ttl))

    def list(self, name: str, *, max_items: int = 1 << 20, max_item_bytes: int = 1 << 20) -> "List":
        """A deque of bytes items (a queue: ``push`` right, ``pop`` left)."""
        return List(self._native.list(name, max_items, max_item_bytes))

    def lock(self, name: str, *, ttl: float = 30.0, timeout: Optional[float] = 10.0,
             owner: str = "") -> "Lock":
        """A lease lock: ``with st.lock("report", ttl=30): ...``. Held for at most ``ttl``
        seconds (a holder that dies stops blocking others then); ``timeout`` bounds the wait
        (None: up to 24 h), after which :class:`Timeout` is raised."""
        return Lock(self._native.lock(name), ttl, timeout, owner)

    def sessions(self, name: str = "sessions", *, ttl: float = 1800.0) -> "Sessions":
        """Server-side sessions that expire after ``ttl`` idle seconds (fixed when created)."""
        return Sessions(self._native.sessions(name, ttl))

    def array(self, name: str, dtype: Optional[str] = None, shape: Optional[tuple] = None,
              fill: Any = 0) -> "Array":
        """An n-d array: opens ``name``, or creates it when ``dtype`` and ``shape`` are given.
        An existing array with another dtype/shape raises :class:`AlreadyExists`."""
        if isinstance(shape, (tuple, list)):
            shape = list(shape)  # Each item is checked by the backend (an integer >= 0).
        elif shape is not None:
            shape = [shape]
        return Array(self._native.array(name, dtype, shape, fill if dtype is not None else None))

    def array_from_numpy(self, name: str, values: Any) -> "Array":
        """Creates the array ``name`` holding a copy of the numpy array ``values`` (or of what
        ``numpy.asarray`` makes of it)."""
        import numpy as np
        try:
            values = np.ascontiguousarray(values)
        except Exception as e:  # noqa: BLE001 - numpy's refusal of the argument, whatever it is.
            raise _numpy_error(e, "values") from None
        return Array(self._native.array_from_numpy(name, values))

    def objects(self, prefix: str = "") -> "list[tuple[str, str]]":
        """``[(name, kind), ...]`` of the objects whose name starts with ``prefix``."""
        return self._native.objects(prefix)

    def delete(self, name: str) -> bool:
        """Deletes the named object of any kind; False if there was none."""
        return self._native.delete(name)

    def __repr__(self) -> str:
        return f"<shmstate.Client {self.name!r} segment={self._native.segment_name!r}>"


class Counter:
    """A signed 64-bit integer changed atomically by every process (overflow raises)."""

    __slots__ = ("_c", "cas", "set")

    def __init__(self, native: Any) -> None:
        self._c = native
        # Bound straight to the native methods: one call, no Python frame.
        self.cas = native.cas
        self.set = native.set

    # incr and value are replaced by the module's C-API fast path (_install_fast_paths below);
    # these definitions say what they do.
    def incr(self, by: int = 1) -> int:
        """Adds ``by`` atomically; returns the new value."""
        return self._c.incr(by)

    @property
    def value(self) -> int:
        return self._c.value()

    @property
    def name(self) -> str:
        return self._c.name

    def __int__(self) -> int:
        return self._c.value()

    def __repr__(self) -> str:
        return f"<shmstate.Counter {self.name!r} value={self.value}>"


class Dict:
    """A dict of bytes keys (str keys are UTF-8) to bytes values, shared by every process.

    ``len()`` counts stored entries, which may include expired ones not yet removed.
    Iteration is a scan that never stalls writers: a key present for the whole scan is seen
    exactly once.
    """

    __slots__ = ("_d", "get_raw", "cas", "delete")

    def __init__(self, native: Any) -> None:
        self._d = native
        # Bound straight to the native methods: one call, no Python frame, on the hot paths.
        self.get_raw = native.get
        self.cas = native.cas
        self.delete = native.delete

    @property
    def name(self) -> str:
        return self._d.name

    # get, __getitem__, __setitem__, __contains__ and incr are replaced by the module's C-API
    # fast path (_install_fast_paths below); these definitions say what they do (and run for a
    # handle of another backend).
    def get(self, key: Key, default: Any = None) -> Any:
        """The value of ``key``, or ``default`` when absent."""
        return self._d.get(key, default)

    def __getitem__(self, key: Key) -> bytes:
        value = self._d.get(key)
        if value is None:
            raise NotFound(key)
        return value

    def __setitem__(self, key: Key, value: bytes) -> None:
        self._d.set(key, value)

    def incr(self, key: Key, by: int = 1, init: int = 0, ttl: Optional[float] = None) -> int:
        """Adds ``by`` to the integer at ``key`` (created at ``init``); returns the new value."""
        return self._d.incr(key, by, init, ttl)

    def set(self, key: Key, value: bytes, ttl: Optional[float] = None, *,
            mode: str = "set", if_version: Optional[int] = None) -> bool:
        """Stores ``value`` (expiring after ``ttl`` s). ``mode="add"`` writes only if absent,
        ``"replace"`` only if present; ``if_version`` only if the entry has that version.
        Returns False when the condition did not hold."""
        return self._d.set(key, value, ttl, mode, if_version)

    def add(self, key: Key, value: bytes, ttl: Optional[float] = None) -> bool:
        """Stores ``value`` only if ``key`` is absent; False otherwise."""
        return self._d.set(key, value, ttl, "add", None)

    def entry(self, key: Key) -> Optional[tuple]:
        """``(value, version, expires_at_ms)`` or None; ``expires_at_ms`` is 0 for no expiry."""
        return self._d.get_entry(key)

    def __delitem__(self, key: Key) -> None:
        if not self._d.delete(key):
            raise NotFound(key)

    def pop(self, key: Key, default: Any = _MISSING) -> Any:
        value = self._d.get(key)
        if value is None or not self._d.delete(key):
            if default is _MISSING:
                raise NotFound(key)
            return default
        return value

    def __contains__(self, key: Key) -> bool:
        return self._d.get(key) is not None

    def __len__(self) -> int:
        return int(self._d.stats()["entries"])

    def keys(self, prefix: Key = "") -> Iterator[bytes]:
        """Keys starting with ``prefix``, in hash order."""
        cursor = 0
        while True:
            page, cursor = self._d.keys_page(prefix, cursor, 1000)
            yield from page
            if cursor == 0:
                return

    __iter__ = keys

    def items(self, prefix: Key = "") -> Iterator[tuple]:
        for key in self.keys(prefix):
            value = self._d.get(key)
            if value is not None:
                yield key, value

    def clear(self) -> None:
        """Deletes every key (one at a time: concurrent writers are not stalled)."""
        for key in list(self.keys()):
            self._d.delete(key)

    def stats(self) -> "dict[str, int]":
        return self._d.stats()

    def __repr__(self) -> str:
        return f"<shmstate.Dict {self.name!r} entries={len(self)}>"


class List:
    """A deque of bytes items shared by every process; ``pop(wait=...)`` blocks for a push."""

    __slots__ = ("_l",)

    def __init__(self, native: Any) -> None:
        self._l = native

    @property
    def name(self) -> str:
        return self._l.name

    def push(self, item: bytes, *, end: str = "right") -> int:
        """Adds ``item`` at ``end`` ("left"/"right"); returns the new length."""
        return self._l.push(item, end)

    def pop(self, wait: Optional[float] = None, *, end: str = "left") -> Optional[bytes]:
        """Removes the item at ``end``; waits up to ``wait`` seconds for one (None/0: no wait).
        Returns None when the list stays empty. The GIL is released while waiting."""
        return self._l.pop(wait, end)

    def range(self, start: int = 0, stop: int = -1) -> "list[bytes]":
        """Items ``start..stop`` inclusive, as Redis LRANGE (negative counts from the end)."""
        return self._l.range(start, stop)

    def __len__(self) -> int:
        return self._l.length()

    def __repr__(self) -> str:
        return f"<shmstate.List {self.name!r} length={len(self)}>"


class Lock:
    """A lease lock; use as ``with st.lock("name", ttl=30):``. Not reentrant.

    ``acquire()`` returns the lease's token (also in ``.token``); only the token's holder can
    ``release()`` or ``refresh()``. A holder that dies stops blocking others after ``ttl``.
    """

    __slots__ = ("_k", "ttl", "timeout", "owner", "token")

    def __init__(self, native: Any, ttl: float, timeout: Optional[float], owner: str) -> None:
        self._k = native
        self.ttl = ttl
        self.timeout = timeout
        self.owner = owner
        self.token: Optional[int] = None

    @property
    def name(self) -> str:
        return self._k.name

    def acquire(self, *, ttl: Optional[float] = None, timeout: Any = _MISSING) -> int:
        """Takes the lease; raises :class:`Timeout` if it is still held after ``timeout`` s."""
        wait = self.timeout if timeout is _MISSING else timeout
        token = self._k.acquire(self.ttl if ttl is None else ttl, wait, self.owner)
        if token is None:
            raise Timeout(f"lock {self.name!r} still held after {wait} s")
        self.token = token
        return token

    def release(self) -> bool:
        """Gives the lease back; False if it was no longer ours (expired, taken over)."""
        token, self.token = self.token, None
        return token is not None and self._k.release(token)

    def refresh(self, ttl: Optional[float] = None) -> bool:
        """Extends our lease to ``ttl`` s from now; False if it is no longer ours."""
        return self.token is not None and self._k.refresh(self.token, self.ttl if ttl is None else ttl)

    def info(self) -> "dict[str, Any]":
        return self._k.info()

    def __enter__(self) -> "Lock":
        self.acquire()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()

    def __repr__(self) -> str:
        return f"<shmstate.Lock {self.name!r} held={self.info()['held']}>"


# Counter.incr/value, Dict.get/[]/[]=/in/incr, List.push/pop and Lock.acquire/release/with are
# replaced by C-API descriptors (the module's fast path); the definitions above say what they
# do and still run for a handle of another backend (shmstate.redis_backend).
_shmstate._install_fast_paths(Counter, Dict, List, Lock, _MISSING)


# How deep session values may nest: the library's JSON parser allows 32 levels.
_MAX_JSON_DEPTH = 30
_JSON_INT = (-2**63, 2**64 - 1)


def _json_value(value: Any, depth: int = 0) -> Any:
    """``value`` as plain JSON data, or InvalidArgument/InvalidType saying what is not JSON.
    Bytes become (UTF-8) text, numpy scalars their Python value; NaN, infinities, lone
    surrogates, integers beyond 64 bits and non-str keys are refused."""
    if depth > _MAX_JSON_DEPTH:
        raise InvalidArgument(f"session values nest at most {_MAX_JSON_DEPTH} levels deep")
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        if not _JSON_INT[0] <= value <= _JSON_INT[1]:
            raise InvalidArgument(f"session integers are 64-bit, not {value}")
        return int(value)
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise InvalidArgument(f"session values are JSON: {value} is not a JSON number")
        return float(value)
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidArgument("session text must be valid Unicode (it holds a lone "
                                  "surrogate)") from None
        return str(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        try:
            return bytes(value).decode("utf-8")
        except (UnicodeDecodeError, TypeError, ValueError):
            raise InvalidArgument("session values are JSON: bytes must be UTF-8 text") from None
    if isinstance(value, (list, tuple)):
        return [_json_value(v, depth + 1) for v in value]
    if isinstance(value, dict):
        return _json_object(value, depth)
    numpy = _sys.modules.get("numpy")
    if numpy is not None and not isinstance(value, numpy.timedelta64):  # (an integer kind)
        # numpy's scalars as the Python values they stand for.
        for kind, python in ((numpy.bool_, bool), (numpy.integer, int), (numpy.floating, float)):
            if isinstance(value, kind):
                return _json_value(python(value), depth)
    raise InvalidType("session values are JSON (None, bool, int, float, str, bytes, list, "
                      f"dict), not {type(value).__name__}")


def _json_object(data: Any, depth: int = 0) -> "dict[str, Any]":
    if not isinstance(data, dict):
        raise InvalidType(f"session data is a dict, not {type(data).__name__}")
    out = {}
    for key, value in data.items():
        if not isinstance(key, str):
            raise InvalidType(f"session field names are str, not {type(key).__name__}")
        out[_json_value(key, depth + 1)] = _json_value(value, depth + 1)
    return out


def _json_text(value: Any) -> str:
    return _json.dumps(value, allow_nan=False)


class Sessions:
    """Server-side sessions: JSON objects under random ids, expiring after idle ``ttl`` s.

    Values are JSON values; bytes values are stored as (UTF-8) text and read back as str.
    """

    __slots__ = ("_s",)

    def __init__(self, native: Any) -> None:
        self._s = native

    @property
    def name(self) -> str:
        return self._s.name

    @property
    def ttl(self) -> float:
        return self._s.idle_ttl()

    def create(self, data: Optional["dict[str, Any]"] = None) -> str:
        """A new session holding ``data``; returns its id (128 random bits, hex)."""
        return self._s.create(_json_text(_json_object({} if data is None else data)))

    def get(self, sid: str) -> Optional["dict[str, Any]"]:
        """The session's fields, or None if there is none (or it expired). Refreshes its expiry."""
        text = self._s.get(sid)
        return None if text is None else _json.loads(text)

    def put(self, sid: str, data: "dict[str, Any]") -> None:
        """Creates or replaces the whole session."""
        self._s.put(sid, _json_text(_json_object(data)))

    def set_field(self, sid: str, field: str, value: Any) -> None:
        """Sets one field atomically (creating the session if needed)."""
        self._s.set_field(sid, field, _json_text(_json_value(value)))

    def delete_field(self, sid: str, field: str) -> bool:
        return self._s.erase_field(sid, field)

    def incr(self, sid: str, field: str, by: int = 1) -> int:
        """Adds ``by`` to an integer field atomically; returns the new value."""
        return self._s.incr(sid, field, by)

    def delete(self, sid: str) -> bool:
        return self._s.delete(sid)

    def __repr__(self) -> str:
        return f"<shmstate.Sessions {self.name!r} ttl={self.ttl}>"


def _is_fill_scalar(value: Any) -> bool:
    """A real number the library fills with itself: bool, int within 64 bits, float, or a numpy
    one (0-d arrays included). Anything else goes through numpy's own assignment rules."""
    if isinstance(value, (bool, float)):
        return True
    if isinstance(value, int):
        return -2**63 <= value < 2**64
    numpy = _sys.modules.get("numpy")
    if numpy is None:
        return False
    if isinstance(value, numpy.ndarray):
        return value.ndim == 0 and value.dtype.kind in "biuf"
    return isinstance(value, (numpy.bool_, numpy.integer, numpy.floating))


class Array:
    """A numpy-like n-d array in shared memory, indexed as numpy indexes.

    ``a[1:, ::2]`` is a fresh numpy array (a copy, taken without a lock when no write is in
    flight, whole: never half of a concurrent slice write); ``a[0] = values`` writes in place
    (broadcast and cast as numpy assignment does). Keys are numpy's: integers, slices, ``...``,
    ``None`` (a new axis); integer arrays and boolean masks are read as a copy (numpy's advanced
    indexing) and refused in writes. The GIL is released around copies.
    """

    __slots__ = ("_a",)

    def __init__(self, native: Any) -> None:
        self._a = native

    @property
    def name(self) -> str:
        return self._a.name

    @property
    def dtype(self) -> Any:
        return self._a.dtype

    @property
    def shape(self) -> tuple:
        return self._a.shape

    @property
    def ndim(self) -> int:
        return len(self._a.shape)

    @property
    def size(self) -> int:
        n = 1
        for d in self._a.shape:
            n *= d
        return n

    @property
    def nbytes(self) -> int:
        return self.size * self._a.dtype.itemsize

    @property
    def version(self) -> int:
        """Bumped by every write."""
        return self._a.version()

    def __len__(self) -> int:
        return self._a.shape[0]

    def __getitem__(self, key: Any) -> Any:
        return self._a.read(key)

    def __setitem__(self, key: Any, value: Any) -> None:
        import numpy as np
        if _is_fill_scalar(value):
            self._a.fill(key, value)
            return
        shape = tuple(self._a.slice_shape(key))
        try:
            # Cast first, then broadcast: numpy's order (a value it cannot cast is refused even
            # for an empty slice).
            values = np.array(np.broadcast_to(np.asarray(value, dtype=self._a.dtype), shape),
                              order="C")
        except Exception as e:  # noqa: BLE001 - numpy's refusal of the value, whatever it is.
            raise _numpy_error(e, f"a value for a slice of shape {shape}") from None
        self._a.write(key, values)

    def to_numpy(self) -> Any:
        """A copy of the whole array."""
        return self._a.read(())

    def __array__(self, dtype: Any = None, copy: Any = None) -> Any:
        values = self.to_numpy()
        if dtype is None:
            return values
        try:
            return values.astype(dtype)
        except Exception as e:  # noqa: BLE001 - numpy's refusal of the dtype, whatever it is.
            raise _numpy_error(e, "dtype") from None

    def add(self, index: Any, value: Any) -> Any:
        """Atomically adds ``value`` to one element (no lock); returns the old value."""
        return self._a.atomic("add", index, value)

    def min(self, index: Any, value: Any) -> Any:
        """Atomically lowers one element to ``value`` if smaller; returns the old value."""
        return self._a.atomic("min", index, value)

    def max(self, index: Any, value: Any) -> Any:
        """Atomically raises one element to ``value`` if larger; returns the old value."""
        return self._a.atomic("max", index, value)

    def cas(self, index: Any, expected: Any, value: Any) -> tuple:
        """Stores ``value`` in one element if it equals ``expected``: ``(swapped, old)``."""
        return self._a.atomic("cas", index, value, expected)

    def apply(self, op: str, value: Any, key: Any = None) -> None:
        """In place ``a[key] <op>= value`` under the array's lock: add, sub, mul, div, min,
        max or fill (numpy casting, see docs/arrays.md)."""
        self._a.apply(op, key, value)

    def __repr__(self) -> str:
        return f"<shmstate.Array {self.name!r} dtype={self.dtype} shape={self.shape}>"


from .manager import Manager, SyncManager  # noqa: E402  (drop-in for multiprocessing.Manager)
