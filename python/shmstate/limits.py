"""A storage for the ``limits`` library (and so Flask-Limiter) kept in a shmstate segment.

Importing this module registers the ``shmstate://NAME`` storage URI, so every worker of a
prefork app shares its rate limits exactly, in-process, with no Redis and no Lua::

    import shmstate.limits                      # registers shmstate://
    from flask_limiter import Limiter
    from flask_limiter.util import get_remote_address
    limiter = Limiter(get_remote_address, app=app, storage_uri="shmstate://app",
                      strategy="moving-window")

``shmstate://NAME`` attaches to the server ``shmstate serve --name NAME`` (start it with
``--workers 0`` beside gunicorn); ``shmstate://NAME/PREFIX`` keeps the limits in the dicts
``PREFIX`` (fixed windows) and ``PREFIX.mw`` (moving windows), ``limits`` by default.

Process safety: every method is atomic across all processes attached to the segment. Fixed
windows are one ``Dict.incr`` (the expiry is set when the window's counter is created);
elastic windows and moving windows are an optimistic read / versioned write (``Dict.entry`` and
``Dict.set(if_version=)``) retried on a conflict, so no lock is held and a process killed at
any instruction leaves the window old or new, whole.

Strategies: ``fixed-window``, ``fixed-window-elastic-expiry`` and ``moving-window`` (the three
of limits 2.8; the sliding-window-counter strategy first appeared in limits 4 and is not in
this version of the library).
"""

from __future__ import annotations

import time
import urllib.parse
from array import array
from typing import Any, Optional, Tuple

from limits.storage.base import MovingWindowSupport, Storage

import shmstate

__all__ = ["ShmstateStorage"]

_STAMP = "d"  # A moving window is its timestamps as native doubles, newest first.


class ShmstateStorage(Storage, MovingWindowSupport):
    """Rate-limit storage in a shmstate segment: ``storage_from_string("shmstate://NAME")``.

    Options (keyword arguments, or Flask-Limiter's ``storage_options``): ``client``, an
    attached :class:`shmstate.Client` to use instead of attaching to NAME; ``follow_timeout``,
    passed to :func:`shmstate.attach`.
    """

    STORAGE_SCHEME = ["shmstate"]

    def __init__(self, uri: Optional[str] = None, *, client: Optional[shmstate.Client] = None,
                 follow_timeout: float = 10.0, **options: Any) -> None:
        name, prefix = _parse_uri(uri)
        self.storage = client if client is not None else shmstate.attach(
            name, follow_timeout=follow_timeout)
        self._counters = self.storage.dict(prefix)
        self._windows = self.storage.dict(prefix + ".mw")
        super().__init__(uri, **options)

    # --- Fixed window ---------------------------------------------------------------------

    def incr(self, key: str, expiry: int, elastic_expiry: bool = False, amount: int = 1) -> int:
        """Adds ``amount`` to the window counter of ``key`` and returns the new count. A new
        window expires ``expiry`` s after its first hit; ``elastic_expiry`` pushes the expiry
        to ``expiry`` s after every hit."""
        if not elastic_expiry:
            return self._counters.incr(key, by=amount, init=0, ttl=expiry)
        while True:  # Versioned write: retried only when another process wrote in between.
            current = self._counters.entry(key)
            if current is None:
                if self._counters.set(key, b"%d" % amount, ttl=expiry, mode="add"):
                    return amount
                continue
            count = int(current[0]) + amount
            if self._counters.set(key, b"%d" % count, ttl=expiry, if_version=current[1]):
                return count

    def get(self, key: str) -> int:
        """The count of the current window of ``key`` (0 when none is open)."""
        value = self._counters.get_raw(key)
        return 0 if value is None else int(value)

    def get_expiry(self, key: str) -> int:
        """When the current window of ``key`` ends, in epoch seconds (now when none is open)."""
        current = self._counters.entry(key)
        if current is None or current[2] == 0:
            return int(time.time())
        return int(current[2] // 1000)

    # --- Moving window --------------------------------------------------------------------

    def acquire_entry(self, key: str, limit: int, expiry: int, amount: int = 1) -> bool:
        """Takes ``amount`` entries of the moving window of ``key`` if fewer than ``limit`` -
        ``amount`` + 1 were taken in the last ``expiry`` s; False (and nothing taken) otherwise."""
        if amount > limit:
            return False
        while True:
            current = self._windows.entry(key)
            now = time.time()
            stamps = _live_stamps(current, now - expiry)
            if len(stamps) > limit - amount:
                return False
            if stamps and stamps[0] > now:  # Another process's clock read was later: keep order.
                now = stamps[0]
            updated = array(_STAMP, [now] * amount)
            updated.extend(stamps)
            value = updated.tobytes()
            if current is None:
                stored = self._windows.set(key, value, ttl=expiry, mode="add")
            else:
                stored = self._windows.set(key, value, ttl=expiry, if_version=current[1])
            if stored:
                return True

    def get_moving_window(self, key: str, limit: int, expiry: int) -> Tuple[int, int]:
        """``(start, count)``: the time of the oldest entry still in the window of ``key``
        (now when it is empty) and the number of entries taken in the last ``expiry`` s."""
        now = time.time()
        stamps = _live_stamps(self._windows.entry(key), now - expiry)
        if not stamps:
            return int(now), 0
        return int(stamps[-1]), len(stamps)

    # --- Housekeeping ---------------------------------------------------------------------

    def check(self) -> bool:
        """True while the server is reachable (the segment is mapped and serving)."""
        try:
            self._counters.stats()
            return True
        except shmstate.Error:
            return False

    def reset(self) -> Optional[int]:
        """Deletes every limit of this storage; returns how many keys were deleted."""
        deleted = 0
        for d in (self._counters, self._windows):
            for key in list(d.keys()):
                deleted += bool(d.delete(key))
        return deleted

    def clear(self, key: str) -> None:
        """Deletes the limit ``key`` (both its fixed and its moving window)."""
        self._counters.delete(key)
        self._windows.delete(key)

    def __repr__(self) -> str:
        return f"<shmstate.limits.ShmstateStorage {self.storage.name!r} {self._counters.name!r}>"


def _parse_uri(uri: Optional[str]) -> Tuple[str, str]:
    """``shmstate://NAME[/PREFIX]`` -> (NAME, PREFIX)."""
    parsed = urllib.parse.urlparse(uri or "shmstate://")
    if parsed.scheme not in ("", "shmstate"):
        raise shmstate.InvalidArgument(f"not a shmstate:// URI: {uri!r}")
    if parsed.query or parsed.params or parsed.fragment or any(c in parsed.netloc for c in ":@"):
        raise shmstate.InvalidArgument(f"expected shmstate://NAME[/PREFIX], got {uri!r}")
    prefix = parsed.path.strip("/") or "limits"
    return parsed.netloc or "shmstate", prefix


def _live_stamps(current: Optional[tuple], since: float) -> "array[float]":
    """The stored timestamps at or after ``since`` (newest first)."""
    stamps = array(_STAMP)
    if current is None:
        return stamps
    stamps.frombytes(current[0])
    live = len(stamps)
    while live and stamps[live - 1] < since:
        live -= 1
    del stamps[live:]
    return stamps
