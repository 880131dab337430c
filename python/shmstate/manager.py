"""shmstate.Manager(): a drop-in for ``multiprocessing.Manager()`` whose objects live in shared memory.

    import shmstate
    with shmstate.Manager() as m:          # instead of multiprocessing.Manager()
        d = m.dict(); q = m.Queue(); lock = m.Lock()
        multiprocessing.Process(target=work, args=(d, q, lock)).start()

``Manager()`` starts a private ``shmstate serve --workers 0`` (the manager process alone: it owns
the segment and repairs what dead processes leave) under a unique name, and stops it on
``shutdown()``, at the end of a ``with`` block, or when the creating process exits.
``Manager(name="app")`` attaches to a server that runs already (the ``BaseManager.connect()``
pattern) and never stops it.

Every managed object is an ordinary shmstate object of the segment (a dict, a list); a proxy
calls the library in-process, with no server round trip, and its hot methods are native
(python/src/register_manager.cc). Values are stored as records (None, bool, int, float, str and
bytes natively, anything else pickled); every change commits with one atomic store (a
compare-and-set on an entry's version, a push, a pop), so a process killed inside any call leaves
each object whole, with every acknowledged change. An object is freed with the proxy it was
created with, unless it was shared first (pickled, or inherited by a fork): see _owned.
Blocking calls (lock waits, queue gets, event waits, barrier waits) sleep on the object's futex
word (shm/wake_word.h) with the GIL released; they never spin. docs/manager.md says what
differs from the stdlib.
"""

from __future__ import annotations

import array as _array
import atexit
import ctypes
import hashlib
import operator as _operator
import os
import pickle
import queue as _queue
import shutil
import signal
import subprocess
import threading
import time
import uuid
import weakref
from typing import Any, Callable, Optional

from . import _shmstate
from . import attach as _attach
from ._shmstate import Full as _NativeFull

__all__ = ["Manager", "SyncManager", "BaseProxy"]

_PROTOCOL = pickle.HIGHEST_PROTOCOL
# Longest single sleep: a sleeper re-checks its state at least this often, which bounds what a
# waker killed between its commit and its wake, or a move of the segment, can cost it.
_FOREVER = 2.0
# A waiter for a lock or semaphore unit re-checks at least this often whether the holder died
# (a dead process wakes nobody). A bounded sleep, not a spin: one check per period.
_LIVENESS_PERIOD = 0.5
_MISSING = object()


# --- processes ------------------------------------------------------------------------------------

_me_cache: list = [None, None]


def _start_time(pid: int) -> Optional[int]:
    """The kernel start time of `pid` (tells a dead process from a new one with its pid)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    return int(stat[stat.rindex(b")") + 2:].split()[19])


def _me() -> tuple:
    """(pid, start time) of this process: the owner key of the units it holds."""
    pid = os.getpid()
    if _me_cache[0] != pid:
        _me_cache[0], _me_cache[1] = pid, (pid, _start_time(pid))
    return _me_cache[1]


def _alive(owner: tuple) -> bool:
    pid, started = owner[0], owner[1]
    if pid == os.getpid():
        return True
    return _start_time(pid) == started


def _thread_owner() -> tuple:
    return _me() + (threading.get_ident(),)


def _armed_crash_point() -> list:
    """[name, hits left] from SHM_CRASH_POINT=name[:hit], as the library's crash points (tests
    kill a process at a proxy's commit points with it; the library ignores names it lacks)."""
    name, _, hit = os.environ.get("SHM_CRASH_POINT", "").partition(":")
    return [name, max(int(hit or 1), 1)] if name else []


_crash_armed = _armed_crash_point()


def _crash_point(name: str) -> None:
    if _crash_armed and _crash_armed[0] == name:
        _crash_armed[1] -= 1
        if _crash_armed[1] == 0:
            os._exit(86)


# --- the server -----------------------------------------------------------------------------------

def _find_binary() -> str:
    candidates = [os.environ.get("SHMSTATE_BIN")]
    here = os.path.dirname(os.path.abspath(__file__))
    candidates += [os.path.join(here, "shmstate"), os.path.join(here, "..", "..", "shmstate")]
    for path in candidates:
        if path and os.path.isfile(path) and os.access(path, os.X_OK):
            return os.path.abspath(path)
    found = shutil.which("shmstate")
    if found:
        return found
    raise FileNotFoundError("shmstate.Manager(): no `shmstate` binary beside the module, in "
                            "$SHMSTATE_BIN or on PATH")


def _parent_death_signal() -> None:
    # In the server, between fork and exec: die with the creating process (atexit does not run
    # when it is killed).
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


_clients: dict = {}


def _client(server: str):
    client = _clients.get(server)
    if client is None:
        client = _clients[server] = _attach(server)
    return client


class _Server:
    """A private `shmstate serve --workers 0`; stopped by stop(), atexit, or our death."""

    def __init__(self, size: str, max_objects: int) -> None:
        self.name = "mp" + uuid.uuid4().hex[:16]
        cmd = [_find_binary(), "serve", "--name", self.name, "--workers", "0", "--size", size,
               "--max-objects", str(max_objects), "--listen", "127.0.0.1:0",
               "--snapshot-interval", "0", "--log-level", "warn"]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL,
                                     preexec_fn=_parent_death_signal, close_fds=True)
        line = self.proc.stdout.readline().decode(errors="replace")
        self.proc.stdout.close()
        if not line.startswith("shmstate:"):
            self.proc.wait()
            raise RuntimeError(f"shmstate.Manager(): the server did not start: {line!r}")
        self.creator = os.getpid()
        atexit.register(self.stop)

    def stop(self) -> None:
        if os.getpid() != self.creator or self.proc.returncode is not None:
            return
        _clients.pop(self.name, None)
        _unshared_handles.pop(self.name, None)
        for key in [key for key in _owned if key[0] == self.name]:
            del _owned[key]  # Gone with the segment.
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# --- proxies --------------------------------------------------------------------------------------

# Stored values are records (register_manager.cc): None, bool, int, float, str and bytes natively,
# anything else pickled. A dict entry is one record of (insertion order, key, value).
_dumps = _shmstate._mgr_dump
_loads = _shmstate._mgr_load
_entry = _shmstate._mgr_entry
_entry_load = _shmstate._mgr_entry_load


# Object lifetime. An object is freed when the proxy it was created with is gone, unless it was
# shared first: pickled (to another process, into a managed container, through a queue; a
# copy.copy too) or inherited by fork (any process forked while the proxy lived). A shared object
# stays until the manager shuts down (or shmstate.attach(name).delete(...)): the segment keeps
# no count of the proxies of other processes. _owned: (server, name) of the objects this process
# created and has not shared -> the segment objects they consist of. The same objects are listed
# in the server's `mp.unshared` dict with their creator, so that the objects of a creator that
# died before its proxies were collected are freed by the next sweep (_sweep).
_owned: dict = {}
_UNSHARED = "mp.unshared"
_SWEEP_EVERY = 1024  # Creations between sweeps, at least (and one at every start or connect).
_created = [0, _SWEEP_EVERY]  # Objects this process created; the count of the next sweep.


_unshared_handles: dict = {}


def _unshared(server: str):
    """The native handle of the server's list of unshared objects."""
    handle = _unshared_handles.get(server)
    if handle is None:
        handle = _unshared_handles[server] = _client(server).dict(_UNSHARED)._d
    return handle


def _own(proxy: "BaseProxy", parts: tuple) -> Any:
    """Makes `proxy` the owner of its new object, made of the segment objects `parts`."""
    proxy._parts = parts
    _owned[(proxy._server, proxy._name)] = parts
    _unshared(proxy._server).set(proxy._name, _dumps((_me(), parts)))
    _created[0] += 1
    if _created[0] >= _created[1]:
        # At least as many creations between sweeps as the last sweep saw entries: amortized
        # O(1) a creation, however many unshared objects live.
        _created[1] = _created[0] + max(_SWEEP_EVERY, _sweep(proxy._server)[1])
    return proxy


def _share(server: str, name: str) -> None:
    """Kept from now on: another process or a container may hold it."""
    if _owned.pop((server, name), None) is not None and server in _clients:
        _unshared(server).delete(name)


def _share_all_before_fork() -> None:
    for server, name in list(_owned):  # The child may use any of them, for as long as it runs.
        try:
            _share(server, name)
        except Exception:  # The manager shut down.
            _owned.pop((server, name), None)


os.register_at_fork(before=_share_all_before_fork)


def _free(server: str, parts: tuple) -> None:
    try:
        client = _clients.get(server)
        if client is None:
            return  # The manager shut down: its segment is gone.
        for part in parts:
            client.delete(part)
        _unshared(server).delete(parts[0])  # Last: a death before it leaves the sweep to do it.
        _got_tasks.pop(parts[0], None)
    except Exception:  # A finalizer cannot report: a stopped or unreachable server frees all.
        pass


def _sweep(server: str) -> tuple:
    """Frees the unshared objects whose creator is dead: (how many, how many entries seen)."""
    registry = _client(server).dict(_UNSHARED)
    freed = 0
    names = list(registry.keys())
    for name in names:
        entry = registry._d.get_entry(name)
        if entry is None:
            continue
        owner, parts = _loads(entry[0])
        if _alive(owner):
            continue
        for part in parts:
            _client(server).delete(part)
        registry._d.delete(name)
        freed += 1
    return freed, len(names)


def _rebuild(cls: type, server: str, name: str, extra: Any) -> "BaseProxy":
    return cls._open(server, name, extra)


class BaseProxy:
    """A handle of one managed object; pickles to a handle of the same object."""

    # What the native methods read on every call (register_manager.cc) are slots, read at a
    # fixed offset rather than looked up by name; everything else lives in the instance dict.
    __slots__ = ("_h", "_word_", "__dict__", "__weakref__")
    _typeid = "object"
    _kind = "dict"

    def __init__(self, server: str, name: str) -> None:
        self._server = server
        self._name = name
        self._client = _client(server)
        self._word_ = None
        self._attach_native()

    def _attach_native(self) -> None:
        self._d = self._client.dict(self._name)
        self._n = self._d._d  # The native handle: one call less on the hot paths.
        self._h = _shmstate._MgrDict(self._server, self._name)  # The fast paths' handle.

    @classmethod
    def _open(cls, server: str, name: str, extra: Any) -> "BaseProxy":
        proxy = cls.__new__(cls)
        BaseProxy.__init__(proxy, server, name)
        proxy._set_extra(extra)
        return proxy

    def _extra(self) -> Any:
        return None

    def _set_extra(self, extra: Any) -> None:
        pass

    def __reduce__(self):
        _share(self._server, self._name)  # Kept from now on (see _owned).
        return (_rebuild, (type(self), self._server, self._name, self._extra()))

    def __del__(self) -> None:
        parts = self.__dict__.get("_parts")
        if parts is None:
            return
        try:
            if _owned.pop((self._server, self._name), None) is not None:
                _free(self._server, parts)
        except Exception:  # At interpreter exit the module's globals may be gone already.
            pass

    def __deepcopy__(self, memo):
        return self._getvalue()

    @property
    def _word(self):
        if self._word_ is None:
            self._word_ = _shmstate._WakeWord(self._server, self._name, self._kind)
        return self._word_

    def _getvalue(self) -> Any:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{type(self).__name__} object, typeid {self._typeid!r} at {hex(id(self))}>"

    def __str__(self) -> str:
        try:
            return str(self._getvalue())
        except Exception:
            return repr(self)[:-1] + "; '__str__()' failed>"

    # The state of most objects: one pickled entry, changed by compare-and-set on its version.
    def _load(self, key: bytes = b"v") -> Any:
        data = self._d.get(key)
        if data is None:
            raise ReferenceError(f"managed object {self._name} no longer exists")
        return _loads(data)

    def _update(self, change: Callable[[Any], tuple], key: bytes = b"v") -> Any:
        """change(state) -> (new state or _MISSING for no write, result); retried on a race."""
        while True:
            entry = self._n.get_entry(key)
            if entry is None:
                raise ReferenceError(f"managed object {self._name} no longer exists")
            new, result = change(_loads(entry[0]))
            if new is _MISSING or self._n.set(key, _dumps(new), None, "set", entry[1]):
                return result


# A bound as large as the library takes: it makes a dict of one shard (a small object's state
# needs no 16 stripes, and one shard is a quarter of the memory) without bounding it in practice.
_ONE_SHARD = 1 << 48


def _new_name(server: str) -> str:
    """A name `o.N` no object of `server` has had."""
    return f"o.{_client(server).counter('mp.ids').incr()}"


def _new_object(server: str, kind_meta: dict, sharded: bool = False) -> str:
    """A fresh dict object `o.N` holding `kind_meta`; one shard unless `sharded` (DictProxy)."""
    client = _client(server)
    name = _new_name(server)
    d = client.dict(name, max_bytes=0 if sharded else _ONE_SHARD)
    for key, value in kind_meta.items():
        d[key] = value
    return name


# -- dict ---------------------------------------------------------------------------------------

_META = b"!"  # Entry keys of metadata; every user key's encoding starts with a letter.
_WAITERS = b"!w"  # Sleepers of a blocking object (_Blocking._wait_until).


def _encode_key(key: Any) -> bytes:
    """The entry key of a dict key: equal numbers (1, 1.0, True) share one; see docs/manager.md."""
    kind = type(key)
    if kind is str:
        out = b"s" + key.encode("utf-8", "surrogatepass")
    elif kind is bytes:
        out = b"b" + key
    elif kind is int or kind is bool:
        out = b"i" + str(int(key)).encode()
    elif kind is float:
        out = b"i" + str(int(key)).encode() if key.is_integer() else b"f" + repr(key).encode()
    elif key is None:
        out = b"n"
    else:
        hash(key)  # TypeError for unhashable keys, as a dict raises.
        out = b"p" + pickle.dumps(key, _PROTOCOL)
    if len(out) > 1000:
        out = b"h" + hashlib.sha256(out).digest()
    return out


class DictProxy(BaseProxy):
    _typeid = "dict"

    # d[key], d[key] = value, key in d and d.get(): native (register_manager.cc, the same entry
    # rules as _set).

    def _set(self, ekey: bytes, key: Any, value: Any, only_if_absent: bool = False) -> Any:
        n = self._n
        while True:
            entry = n.get_entry(ekey)
            if entry is None:
                order = n.incr(_META + b"order")
                if n.set(ekey, _entry(order, key, value), None, "add"):
                    return value
            else:
                order, old_key, old_value = _entry_load(entry[0])
                if only_if_absent:
                    return old_value
                if n.set(ekey, _entry(order, old_key, value), None, "set", entry[1]):
                    return value

    def setdefault(self, key: Any, default: Any = None) -> Any:
        return self._set(_encode_key(key), key, default, only_if_absent=True)

    def __delitem__(self, key: Any) -> None:
        if not self._d.delete(_encode_key(key)):
            raise KeyError(key)

    def pop(self, key: Any, default: Any = _MISSING) -> Any:
        ekey = _encode_key(key)
        while True:
            entry = self._d.entry(ekey)
            if entry is None:
                if default is _MISSING:
                    raise KeyError(key)
                return default
            # Delete only the version read, so the value returned is the one removed.
            if self._word.delete_if(ekey, entry[1]):
                return _entry_load(entry[0])[2]

    def popitem(self) -> tuple:
        while True:
            items = self._entries()
            if not items:
                raise KeyError("popitem(): dictionary is empty")
            ekey, (order, key, value) = items[-1]
            try:
                return key, self.pop(key)
            except KeyError:
                continue

    def has_key(self, key: Any) -> bool:
        return key in self

    def __len__(self) -> int:
        return int(self._d.stats()["entries"]) - 1  # The one metadata entry: the order counter.

    def _entries(self) -> list:
        """[(entry key, (order, key, value))] in insertion order."""
        out = []
        for ekey in self._d.keys():
            if ekey.startswith(_META):
                continue
            data = self._d.get(ekey)
            if data:
                out.append((ekey, _entry_load(data)))
        out.sort(key=lambda item: item[1][0])
        return out

    def keys(self) -> list:
        return [v[1] for _, v in self._entries()]

    def values(self) -> list:
        return [v[2] for _, v in self._entries()]

    def items(self) -> list:
        return [(v[1], v[2]) for _, v in self._entries()]

    def __iter__(self):
        return _DictIterator(self)

    def copy(self) -> dict:
        return dict(self.items())

    _getvalue = copy

    def clear(self) -> None:
        for ekey in list(self._d.keys()):
            if not ekey.startswith(_META):
                self._d.delete(ekey)

    def update(self, *args: Any, **kwargs: Any) -> None:
        for key, value in dict(*args, **kwargs).items():
            self[key] = value

    def __eq__(self, other: Any) -> bool:
        return self.copy() == other


# -- list and Array -----------------------------------------------------------------------------

class _SequenceProxy(BaseProxy):
    """What list() and Array() proxies share: reads answered from the whole value
    (_getvalue()), and edits that rewrite it in one commit (_mutate(op), op editing a Python
    list in place). A subclass may answer a read or an edit more directly."""

    def __getitem__(self, index: Any) -> Any:
        return self._getvalue()[index]

    def __len__(self) -> int:
        return len(self._getvalue())

    def __contains__(self, item: Any) -> bool:
        return item in self._getvalue()

    def __iter__(self):
        return _ListIterator(self)

    def __reversed__(self):
        return reversed(self._getvalue())

    def __add__(self, other: Any) -> Any:
        return self._getvalue() + other

    def __mul__(self, n: int) -> Any:
        return self._getvalue() * n

    __rmul__ = __mul__

    def __eq__(self, other: Any) -> bool:
        return self._getvalue() == other

    def __lt__(self, other: Any) -> bool:
        return self._getvalue() < other

    def count(self, item: Any) -> int:
        return self._getvalue().count(item)

    def index(self, *args: Any) -> int:
        return self._getvalue().index(*args)

    def __delitem__(self, index: Any) -> None:
        def op(seq):
            del seq[index]
        self._mutate(op)

    def insert(self, index: int, item: Any) -> None:
        self._mutate(lambda seq: seq.insert(index, item))

    def remove(self, item: Any) -> None:
        self._mutate(lambda seq: seq.remove(item))

    def reverse(self) -> None:
        self._mutate(lambda seq: seq.reverse())

    def sort(self, *args: Any, **kwargs: Any) -> None:
        self._mutate(lambda seq: seq.sort(*args, **kwargs))

    def __iadd__(self, other: Any) -> "_SequenceProxy":
        self.extend(other)
        return self


class _BlobSequenceProxy(_SequenceProxy):
    """Array(): the whole array.array is one pickled entry, replaced by compare-and-set."""
    _typeid = "Array"

    def _getvalue(self) -> Any:
        return self._load()

    def _mutate(self, op: Callable[[Any], Any]) -> Any:
        def change(seq):
            result = op(seq)
            return seq, result
        return self._update(change)

    def __setitem__(self, index: Any, value: Any) -> None:
        def op(seq):
            seq[index] = value
        self._mutate(op)

    def append(self, item: Any) -> None:
        self._mutate(lambda seq: seq.append(item))

    def extend(self, items: Any) -> None:
        items = list(items)
        self._mutate(lambda seq: seq.extend(items))

    def pop(self, *args: Any) -> Any:
        return self._mutate(lambda seq: seq.pop(*args))

    def __imul__(self, n: int) -> "_BlobSequenceProxy":
        def op(seq):
            seq *= n
            return seq
        self._update(lambda seq: (op(seq), None))
        return self


class ListProxy(_SequenceProxy):
    """A shmstate list of pickled items: append, pop at the ends, len, item get and set are one
    library call each (O(1)); inserts, deletes, sorts and slice writes read the list, compute,
    and commit the whole new content with List::Replace, a compare-and-set on the content."""
    _typeid = "list"
    _kind = "list"

    def _attach_native(self) -> None:
        self._l = self._client.list(self._name)
        self._seq = _shmstate._SeqList(self._server, self._name)
        self._h = _shmstate._MgrList(self._server, self._name)

    def _raw(self) -> list:
        items, start = [], 0
        while True:  # Pages of at most List::kMaxRangeItems.
            page = self._l.range(start, -1)
            if not page:
                return items
            items += page
            start += len(page)

    def _getvalue(self) -> list:
        return [_loads(b) for b in self._raw()]

    _load = _getvalue

    def _mutate(self, op: Callable[[list], Any]) -> Any:
        while True:
            raw = self._raw()
            seq = [_loads(b) for b in raw]
            result = op(seq)
            if self._seq.replace(raw, [_dumps(x) for x in seq]):
                if seq:
                    self._word.wake()
                return result

    def _getitem_slow(self, index: Any) -> Any:  # l[i] of an int i: native (ListGetItem).
        if isinstance(index, slice):
            return self._getvalue()[index]
        index = _operator.index(index)  # TypeError for a non-integer, as a list says
        page = self._l.range(index, index)
        if not page:
            raise IndexError("list index out of range")
        return _loads(page[0])

    def __setitem__(self, index: Any, value: Any) -> None:
        if isinstance(index, slice):
            def op(seq):
                seq[index] = value
            self._mutate(op)
            return
        try:
            self._seq.set(_operator.index(index), _dumps(value))
        except KeyError:
            raise IndexError("list assignment index out of range") from None

    def __len__(self) -> int:
        return len(self._l)

    # append(item): native (ListAppend), one push.

    def extend(self, items: Any) -> None:
        items = list(items)
        if len(items) == 1:
            self._l.push(_dumps(items[0]))
        elif items:
            self._mutate(lambda seq: seq.extend(items))  # All or nothing, as one commit.

    def pop(self, index: int = -1) -> Any:
        if index == -1 or index == 0:
            data = self._l.pop(end="right" if index == -1 else "left")
            if data is None:
                raise IndexError("pop from empty list")
            return _loads(data)
        return self._mutate(lambda seq: seq.pop(index))

    def __imul__(self, n: int) -> "ListProxy":
        def op(seq):
            seq[:] = seq * n
        self._mutate(op)
        return self


class _ListIterator:
    """Reads the live list item by item, as an iterator of the stdlib's proxied list does."""

    def __init__(self, proxy: Any) -> None:
        self._proxy, self._index = proxy, 0

    def __iter__(self) -> "_ListIterator":
        return self

    def __next__(self) -> Any:
        if self._proxy is None:
            raise StopIteration
        try:
            item = self._proxy[self._index]
        except IndexError:
            self._proxy = None
            raise StopIteration from None
        self._index += 1
        return item


class _DictIterator:
    """The keys of the live dict; like a dict's iterator, RuntimeError once its size changed."""

    def __init__(self, proxy: DictProxy) -> None:
        self._proxy, self._size = proxy, len(proxy)
        self._keys = iter(proxy.keys())

    def __iter__(self) -> "_DictIterator":
        return self

    def __next__(self) -> Any:
        if self._proxy is None:
            raise StopIteration
        if len(self._proxy) != self._size:
            self._proxy = None
            raise RuntimeError("dictionary changed size during iteration")
        try:
            return next(self._keys)
        except StopIteration:
            self._proxy = None
            raise


# -- Value and Namespace --------------------------------------------------------------------------

class ValueProxy(BaseProxy):
    """get(), set() and .value are native (ValueGet, ValueSet): the `v` entry's record."""
    _typeid = "Value"

    def _getvalue(self) -> Any:
        return self.get()

    def __repr__(self) -> str:
        return BaseProxy.__repr__(self)


class NamespaceProxy(BaseProxy):
    _typeid = "Namespace"

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        data = self._d.get(b"a" + name.encode("utf-8", "surrogatepass"))
        if data is None:
            raise AttributeError(f"'Namespace' object has no attribute '{name}'")
        return _loads(data)

    def __setattr__(self, name: str, value: Any) -> None:
        if name.startswith("_"):
            object.__setattr__(self, name, value)
        else:
            self._d[b"a" + name.encode("utf-8", "surrogatepass")] = _dumps(value)

    def __delattr__(self, name: str) -> None:
        if name.startswith("_"):
            object.__delattr__(self, name)
        elif not self._d.delete(b"a" + name.encode("utf-8", "surrogatepass")):
            raise AttributeError(name)

    def _getvalue(self) -> Any:
        from multiprocessing.managers import Namespace
        attrs = {}
        for key in self._d.keys():
            if key.startswith(b"a"):
                data = self._d.get(key)
                if data is not None:
                    attrs[key[1:].decode("utf-8", "surrogatepass")] = _loads(data)
        return Namespace(**attrs)


# -- locks and semaphores -----------------------------------------------------------------------

class _Blocking(BaseProxy):
    """Waits: check under compare-and-set, else sleep on the object's futex word."""

    def _wait_until(self, attempt: Callable[[], Any], timeout: Optional[float],
                    period: float = _FOREVER) -> Any:
        """Calls attempt() until it returns a value other than _MISSING, or the timeout ends
        (then _MISSING). Sleepers count themselves in the `!w` entry, so that wakers whose
        change nobody waits for skip the futex wake (a system call)."""
        result = attempt()
        if result is not _MISSING or timeout == 0:
            return result
        deadline = None if timeout is None else time.monotonic() + max(timeout, 0.0)
        d = self._d
        d.incr(_WAITERS, 1)
        try:
            while True:
                seen = self._word.seq()
                result = attempt()
                if result is not _MISSING:
                    return result
                remaining = _FOREVER if deadline is None else deadline - time.monotonic()
                if remaining <= 0:
                    return _MISSING
                self._word.wait(seen, min(remaining, period))
        finally:
            d.incr(_WAITERS, -1)

    def _wake(self) -> None:
        """After a change: wakes the sleepers, if any (a sleeper counts itself before its last
        check, and each count and change is ordered by the object's lock)."""
        waiting = self._d.get(_WAITERS)
        if waiting is not None and int(waiting) > 0:
            self._word.wake_waiters()  # Every sleeper sleeps in _word.wait, which marks it.


def _timeout_arg(blocking: bool, timeout: Optional[float]) -> Optional[float]:
    if not blocking:
        if timeout is not None and timeout != -1:
            raise ValueError("can't specify a timeout for a non-blocking call")
        return 0.0
    if timeout is None or timeout == -1:
        return None
    if timeout < 0:
        raise ValueError("timeout value must be a non-negative number")
    return timeout


class AcquirerProxy(_Blocking):
    """Semaphore and BoundedSemaphore (Lock: _ProcessLockProxy, RLock: _RLockProxy). State: {"value": free
    units, "holders": {owner: units} (BoundedSemaphore only), "bound": max or None}, changed by
    compare-and-set. A BoundedSemaphore unit whose holder died goes back to the pool when a
    waiter finds none free; `owner_died` then says so on the proxy that took it."""

    __slots__ = ("owner_died",)  # Written by the native Lock and RLock methods.

    def __repr__(self) -> str:  # Lock and RLock too, as the stdlib's.
        return f"<AcquirerProxy object, typeid {self._typeid!r} at {hex(id(self))}>"

    def _extra(self) -> Any:
        return self._typeid

    def _set_extra(self, extra: Any) -> None:
        self._typeid = extra
        self.owner_died = False

    def _try_acquire(self):
        owner = _me()
        # Only a BoundedSemaphore's units are holdings (taken, used, given back): a plain
        # Semaphore also counts signals, whose taker keeps the unit for good, so a unit of a
        # process that has exited must not be handed out again.
        tracked = self._typeid == "BoundedSemaphore"

        def change(state):
            holders = state["holders"]
            died = False
            if state["value"] <= 0 and tracked:
                for holder in [h for h in holders if not _alive(h)]:
                    state["value"] += holders.pop(holder)
                    died = True
            if state["value"] <= 0:
                return _MISSING, _MISSING
            state["value"] -= 1
            if tracked:
                holders[owner] = holders.get(owner, 0) + 1
            return state, died
        result = self._update(change)
        if result is _MISSING:
            return _MISSING
        self.owner_died = result
        return True

    def acquire(self, blocking: bool = True, timeout: Optional[float] = None) -> bool:
        result = self._wait_until(self._try_acquire, _timeout_arg(blocking, timeout),
                                  _LIVENESS_PERIOD)
        return result is not _MISSING

    def release(self) -> None:
        me = _me()

        def change(state):
            holders = state["holders"]
            bound = state["bound"]
            if bound is not None and state["value"] >= bound:
                raise ValueError("Semaphore released too many times")
            # A unit released by another process than its taker (allowed, as in the stdlib)
            # is taken off some holder's count, a dead one's first.
            owner = me if me in holders else next(
                (h for h in holders if not _alive(h)), next(iter(holders), None))
            if owner is not None:
                holders[owner] -= 1
                if holders[owner] == 0:
                    del holders[owner]
            state["value"] += 1
            return state, True
        if self._update(change):
            self._wake()


    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()

    def _getvalue(self) -> Any:
        return self._load()


_HOLDER = b"h"  # An RLock's holder entry: present while held.
_owner_bytes: list = [None, None]


def _process_owner() -> bytes:
    pid = os.getpid()
    if _owner_bytes[0] != pid:
        _owner_bytes[0], _owner_bytes[1] = pid, _dumps(_me())
    return _owner_bytes[1]


class _ProcessLockProxy(AcquirerProxy):
    """Lock: a library process lock (shm/process_lock.h), one word holding the holder's pid.
    acquire(), release(), locked() and `with` are native (register_process_lock.cc): one
    compare-and-swap each when uncontended; a wait spins a few microseconds, then sleeps on the
    word's futex without the GIL. Any process may release it, as in the stdlib. A holder found
    dead is taken over by a waiter (or by an acquire that would otherwise fail): `owner_died`
    tells the taker."""
    _kind = "process_lock"

    def _attach_native(self) -> None:
        self._h = _shmstate._MgrLock(self._server, self._name)

    def _acquire_slow(self, blocking: bool = True, timeout: Optional[float] = None) -> bool:
        got, died = self._h.acquire_for(_timeout_arg(blocking, timeout))
        if got:
            self.owner_died = died
        return got

    def _is_owned(self) -> bool:  # Condition's check: a Lock has no owning thread.
        return self.locked()

    def _release_save(self) -> Any:
        self.release()

    def _acquire_restore(self, saved: Any) -> None:
        self.acquire()

    def _getvalue(self) -> Any:
        return self._h.holder() or None


class _RLockProxy(AcquirerProxy):
    """RLock: the holder entry `h` exists while the lock is held, so an uncontended acquire is
    one add-if-absent and a release one delete; its holder is (process, thread) with a count,
    changed by compare-and-set. A holder found dead is removed (compare-and-delete on the
    entry's version) and the lock taken: `owner_died` tells the taker."""

    # acquire(), release() and `with` are native (register_manager.cc: LockAcquire, LockRelease):
    # one add-if-absent and one delete, or a compare-and-set of the count; everything else (a
    # held lock, a timeout, an RLock of another thread) comes here.
    def _acquire_slow(self, blocking: bool = True, timeout: Optional[float] = None) -> bool:
        return AcquirerProxy.acquire(self, blocking, timeout)

    def _try_acquire(self):
        n = self._n
        died = False
        while True:
            if n.set(_HOLDER, _rlock_value(1), None, "add"):
                self.owner_died = died
                return True
            entry = n.get_entry(_HOLDER)
            if entry is None:
                continue
            owner, count = _rlock_holder(entry[0])
            if owner == _thread_owner():
                if n.set(_HOLDER, _rlock_value(count + 1), None, "set", entry[1]):
                    return True
                continue
            if _alive(owner):
                return _MISSING
            if self._word.delete_if(_HOLDER, entry[1]):
                died = True

    def _release_slow(self) -> None:
        d = self._d
        me = _thread_owner()
        while True:
            entry = d.entry(_HOLDER)
            if entry is None or _rlock_holder(entry[0])[0] != me:
                raise RuntimeError("cannot release un-acquired lock")
            count = _rlock_holder(entry[0])[1]
            if count > 1:
                if d.set(_HOLDER, _rlock_value(count - 1), if_version=entry[1]):
                    return
            elif self._word.delete_if(_HOLDER, entry[1]):
                self._wake()
                return

    def _is_owned(self) -> bool:
        data = self._d.get(_HOLDER)
        return data is not None and _rlock_holder(data)[0] == _thread_owner()

    def _release_save(self) -> Any:
        me = _thread_owner()
        while True:
            entry = self._d.entry(_HOLDER)
            if entry is None or _rlock_holder(entry[0])[0] != me:
                raise RuntimeError("cannot release un-acquired lock")
            if self._word.delete_if(_HOLDER, entry[1]):
                self._wake()
                return _rlock_holder(entry[0])[1]

    def _acquire_restore(self, saved: Any) -> None:
        self.acquire()
        if saved > 1:
            self._d[_HOLDER] = _rlock_value(saved)

    def _getvalue(self) -> Any:
        data = self._d.get(_HOLDER)
        return None if data is None else _rlock_holder(data)


# An RLock's holder entry: this process's owner record (_process_owner), the thread's ident and
# the count, as 8-byte little-endian numbers (register_manager.cc reads and writes it too).
def _rlock_value(count: int) -> bytes:
    return (_process_owner() + threading.get_ident().to_bytes(8, "little")
            + count.to_bytes(8, "little"))


def _rlock_holder(data: bytes) -> tuple:
    """((pid, start time, thread ident), count) of an RLock's holder entry."""
    return (_loads(data[:-16]) + (int.from_bytes(data[-16:-8], "little"),),
            int.from_bytes(data[-8:], "little"))


def _acquirer_state(typeid: str, value: int) -> dict:
    bound = {"Lock": 1, "RLock": None, "Semaphore": None, "BoundedSemaphore": value}[typeid]
    return {"value": value, "holders": {}, "bound": bound}


def _signal_oldest(state: dict, n: int) -> bool:
    """Moves the n oldest live waiters of a Condition's state to its signaled ones."""
    waiting = [t for t in state["waiting"] if _alive(t[0])]
    chosen, state["waiting"] = waiting[:n], waiting[n:]
    state["signaled"].extend(chosen)
    return bool(chosen)


def _pass_on_dead_signals(state: dict) -> bool:
    """A waiter that died after a notify chose it, before it took the signal, would lose that
    notify: its signal goes to the oldest live waiter instead. True if the state changed."""
    dead = [t for t in state["signaled"] if not _alive(t[0])]
    if not dead:
        return False
    state["signaled"] = [t for t in state["signaled"] if t not in dead]
    _signal_oldest(state, len(dead))
    return True


class ConditionProxy(_Blocking):
    """A Condition: its lock proxy plus a ticket list; notify(n) signals the n oldest live
    waiters."""
    _typeid = "Condition"

    def _set_extra(self, extra: Any) -> None:
        self._lock = extra

    def _extra(self) -> Any:
        return self._lock

    def acquire(self, blocking: bool = True, timeout: Optional[float] = None) -> bool:
        return self._lock.acquire(blocking, timeout)

    def release(self) -> None:
        self._lock.release()

    def __enter__(self) -> bool:
        return self._lock.acquire()

    def __exit__(self, *exc: Any) -> None:
        self._lock.release()

    def wait(self, timeout: Optional[float] = None) -> bool:
        if not self._lock._is_owned():
            raise RuntimeError("cannot wait on un-acquired lock")
        ticket = (_me(), uuid.uuid4().int)

        def register(state):
            state["waiting"].append(ticket)
            return state, None
        self._update(register)
        saved = self._lock._release_save()
        try:
            def signaled():
                def take(state):
                    if ticket in state["signaled"]:
                        state["signaled"].remove(ticket)
                        return state, True
                    if _pass_on_dead_signals(state):
                        return state, None  # Passed on: wake the chosen, check again.
                    return _MISSING, _MISSING
                result = self._update(take)
                if result is None:
                    self._wake()
                    return signaled()
                return result
            result = self._wait_until(signaled, timeout)
            if result is _MISSING:
                def withdraw(state):
                    if ticket in state["signaled"]:  # Signaled just now: take it.
                        state["signaled"].remove(ticket)
                        return state, True
                    state["waiting"].remove(ticket)
                    return state, False
                result = self._update(withdraw)
            return result
        finally:
            self._lock._acquire_restore(saved)

    def wait_for(self, predicate: Callable[[], Any], timeout: Optional[float] = None) -> Any:
        result = predicate()
        if result:
            return result
        deadline = None if timeout is None else time.monotonic() + timeout
        while not result:
            if deadline is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self.wait(remaining)
            else:
                self.wait()
            result = predicate()
        return result

    def notify(self, n: int = 1) -> None:
        if not self._lock._is_owned():
            raise RuntimeError("cannot notify on un-acquired lock")

        def signal_some(state):
            _pass_on_dead_signals(state)
            return state, _signal_oldest(state, n)
        if self._update(signal_some):
            self._wake()

    def notify_all(self) -> None:
        self.notify(1 << 62)

    notifyAll = notify_all

    def _getvalue(self) -> Any:
        return self._load()


class EventProxy(_Blocking):
    _typeid = "Event"

    # is_set(), set(), clear() and wait() are native (ValueGet, EventSet, EventClear,
    # EventWait: this method's loop for wait() and wait(timeout) of a None, int or float).

    def _wait_slow(self, timeout: Optional[float] = None) -> bool:
        result = self._wait_until(lambda: True if self._load() else _MISSING, timeout)
        return result is True

    def _getvalue(self) -> Any:
        return self.is_set()


class BarrierProxy(_Blocking):
    """State: count of arrivals, generation, broken flag, generations ended by reset()."""
    _typeid = "Barrier"

    def _set_extra(self, extra: Any) -> None:
        self._parties, self._action, self._timeout = extra

    def _extra(self) -> Any:
        return (self._parties, self._action, self._timeout)

    @property
    def parties(self) -> int:
        return self._parties

    @property
    def n_waiting(self) -> int:
        state = self._load()
        return 0 if state["broken"] else state["count"]

    @property
    def broken(self) -> bool:
        return self._load()["broken"]

    def _break(self) -> None:
        def change(state):
            state["broken"] = True
            return state, None
        self._update(change)
        self._wake()

    def abort(self) -> None:
        self._break()

    def reset(self) -> None:
        def change(state):
            if state["count"] > 0:
                state["resets"] = (state["resets"] + [state["generation"]])[-64:]
                state["generation"] += 1
                state["count"] = 0
            state["broken"] = False
            return state, None
        self._update(change)
        self._wake()

    def wait(self, timeout: Optional[float] = None) -> int:
        if timeout is None:
            timeout = self._timeout

        def arrive(state):
            if state["broken"]:
                return _MISSING, None
            index = state["count"]
            state["count"] += 1
            return state, (index, state["generation"])
        arrived = self._update(arrive)
        if arrived is None:
            raise threading.BrokenBarrierError
        index, generation = arrived
        if index == self._parties - 1:
            if self._action is not None:
                try:
                    self._action()
                except BaseException:
                    self._break()
                    raise

            def release(state):
                state["count"] = 0
                state["generation"] += 1
                return state, None
            self._update(release)
            self._wake()
            return index

        def passed():
            state = self._load()
            if state["generation"] != generation:
                return generation not in state["resets"]
            if state["broken"]:
                return False
            return _MISSING
        result = self._wait_until(passed, timeout)
        if result is _MISSING:
            # Timed out: break the barrier only if it is still this generation's, in the same
            # commit that checks it; the last party may have released it since our last look,
            # and then this wait has passed (breaking it would break the next generation).
            def give_up(state):
                if state["generation"] == generation and not state["broken"]:
                    state["broken"] = True
                    return state, None
                return _MISSING, passed()
            result = self._update(give_up)
            if result is None:
                self._wake()
        if not result or result is _MISSING:
            raise threading.BrokenBarrierError
        return index

    def _getvalue(self) -> Any:
        return self._load()


# -- queues -------------------------------------------------------------------------------------

_TASK = b"t"  # A JoinableQueue task's entry key: _TASK + the token its item starts with.
_TOKEN_BYTES = 16
_QUEUED, _GOTTEN, _LOST = 0, 1, 2  # Task states, ordered so that task_done takes gotten first.
_got_tasks: dict = {}  # Queue name -> task keys this process got and has not finished.


class QueueProxy(BaseProxy):
    """Items in a shmstate list (its futex word wakes getters, and putters waiting on a full
    queue); a JoinableQueue's unfinished tasks are entries of its dict object, one per put."""
    _typeid = "Queue"
    _kind = "list"
    __slots__ = ("_fast",)  # Read by the native put(x) and get().

    def _set_extra(self, extra: Any) -> None:
        self._maxsize, self._joinable = extra
        self._items = self._client.list(self._name + ".items")
        self._h = _shmstate._MgrList(self._server, self._name + ".items")
        self._fast = self._maxsize <= 0 and not self._joinable  # Native put(x) and get().
        self._items_word = None
        if self._joinable:
            self._typeid = "JoinableQueue"

    def _extra(self) -> Any:
        return (self._maxsize, self._joinable)

    def __repr__(self) -> str:  # The stdlib serves queues through an AutoProxy.
        return f"<AutoProxy[{self._typeid}] object, typeid {self._typeid!r} at {hex(id(self))}>"

    @property
    def _iword(self):
        if self._items_word is None:
            self._items_word = _shmstate._WakeWord(self._server, self._name + ".items", "list")
        return self._items_word

    def qsize(self) -> int:
        return len(self._items)

    def empty(self) -> bool:
        return len(self._items) == 0

    def full(self) -> bool:
        return 0 < self._maxsize <= len(self._items)

    def _put_slow(self, item: Any, block: bool = True, timeout: Optional[float] = None) -> None:
        data = _dumps(item)
        if timeout is not None and timeout < 0:
            raise ValueError("'timeout' must be a non-negative number")
        task = None
        if self._joinable:
            # The task counts from its entry's add (one commit) and names its item, so a put
            # killed before its push leaves an entry whose item never came (_live_tasks).
            token = os.urandom(_TOKEN_BYTES)
            task = _TASK + token
            self._n.set(task, _dumps((_me(), _QUEUED)), None, "add")
            _crash_point("queue_put_counted")
            data = token + data
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            while True:
                seen = self._iword.seq()
                try:
                    self._items.push(data)
                    return
                except _NativeFull:
                    if self._maxsize <= 0 or not block:
                        raise _queue.Full from None
                remaining = _FOREVER if deadline is None else deadline - time.monotonic()
                if remaining <= 0:
                    raise _queue.Full
                self._iword.wait(seen, remaining)
        except BaseException:
            if task is not None:
                self._n.delete(task)
            raise

    def put_nowait(self, item: Any) -> None:
        self.put(item, False)

    def _get_slow(self, block: bool = True, timeout: Optional[float] = None) -> Any:
        if block and timeout is not None and timeout < 0:
            raise ValueError("'timeout' must be a non-negative number")
        data = self._items.pop()  # First without waiting: no GIL release when an item is there.
        if data is None and block:
            deadline = None if timeout is None else time.monotonic() + timeout
            while True:
                remaining = _FOREVER if deadline is None else max(deadline - time.monotonic(), 0)
                data = self._items.pop(wait=min(remaining, _FOREVER) if remaining > 0 else None)
                if data is not None or deadline is not None:
                    break
        if data is None:
            raise _queue.Empty
        if self._maxsize > 0:
            self._iword.wake()  # A putter may wait for room.
        if self._joinable:
            _crash_point("queue_get_popped")
            data = self._take_task(data)
        return _loads(data)

    def get_nowait(self) -> Any:
        return self.get(False)

    # A JoinableQueue's unfinished tasks are the `t<token>` entries of its dict object that are
    # not _LOST: added by put (queued), marked by get (gotten), deleted by task_done.
    def _take_task(self, data: bytes) -> bytes:
        token, data = data[:_TOKEN_BYTES], data[_TOKEN_BYTES:]
        task = _TASK + token
        n = self._n
        while True:
            entry = n.get_entry(task)
            if entry is None:  # task_done() came first (as the stdlib allows): nothing to mark.
                break
            if n.set(task, _dumps((_me(), _GOTTEN)), None, "set", entry[1]):
                _got_tasks.setdefault(self._name, []).append(task)
                break
        return data

    def _tasks(self) -> list:
        """[(entry key, version, (owner, state))] of the unfinished and lost tasks."""
        out = []
        for key in self._d.keys(_TASK):
            entry = self._n.get_entry(key)
            if entry is not None:
                out.append((key, entry[1], _loads(entry[0])))
        return out

    def task_done(self) -> None:
        mine = _got_tasks.get(self._name)
        while mine:  # The tasks this process got, first.
            if self._n.delete(mine.pop()):
                self._task_finished()
                return
        # Any task: a gotten one first (the stdlib counts, so any process may finish any task).
        for key, version, (owner, state) in sorted(self._live_tasks(), key=lambda t: -t[2][1]):
            if state != _LOST and self._word.delete_if(key, version):
                self._task_finished()
                return
        raise ValueError("task_done() called too many times")

    def _task_finished(self) -> None:
        # Wakes the joiners only once no task is left (the `!w` entry is the dict's only other
        # one while anybody joins), not at every task_done: each wake costs them a scan. A task
        # marked lost keeps the count above that; the joiners' 2 s re-check then sees it.
        waiting = self._d.get(_WAITERS)
        if waiting is not None and int(waiting) > 0 and int(self._d.stats()["entries"]) <= 1:
            self._word.wake()

    def _live_tasks(self) -> list:
        """The unfinished tasks (as _tasks()), after marking lost (uncounted) the tasks of puts
        killed before their push: a dead putter's queued task whose item is not in the queue
        (if a getter took the item meanwhile, the getter marks it gotten, over _LOST too)."""
        tasks = self._tasks()
        suspects = [(key, version) for key, version, (owner, state) in tasks
                    if state == _QUEUED and not _alive(owner)]
        if suspects:
            queued = {_TASK + raw[:_TOKEN_BYTES] for raw in self._items.range(0, -1)}
            for key, version in suspects:
                if key not in queued:
                    self._n.set(key, _dumps((None, _LOST)), None, "set", version)
            tasks = self._tasks()
        return [task for task in tasks if task[2][1] != _LOST]

    def join(self) -> None:
        self._d.incr(_WAITERS, 1)
        try:
            while True:
                seen = self._word.seq()
                if not self._live_tasks():
                    return
                self._word.wait(seen, _FOREVER)
        finally:
            self._d.incr(_WAITERS, -1)

    @property
    def _word(self):
        if self._word_ is None:
            self._word_ = _shmstate._WakeWord(self._server, self._name, "dict")
        return self._word_

    def _getvalue(self) -> Any:
        skip = _TOKEN_BYTES if self._joinable else 0
        return [_loads(x[skip:]) for x in self._items.range(0, -1)]


def _new_queue(server: str, maxsize: int, joinable: bool) -> QueueProxy:
    name = _new_object(server, {})
    client = _client(server)
    limit = maxsize if maxsize > 0 else (1 << 28)
    client.list(name + ".items", max_items=limit, max_item_bytes=64 << 20)
    return _own(QueueProxy._open(server, name, (maxsize, joinable)), (name, name + ".items"))


class PoolProxy:
    """Manager.Pool(): a multiprocessing.pool.Pool of the process that created it. There, every
    method is the pool's own. Elsewhere (the proxy pickled into another process), the
    synchronous methods (apply, map, starmap, close, terminate, join, and `with`) travel through
    a managed Queue to a thread of the creating process, which calls the pool and sends back the
    result or the exception; the *_async and imap* methods need the creating process."""

    _REMOTE = ("apply", "map", "starmap", "close", "terminate", "join")

    def __init__(self, pool: Any, requests: QueueProxy) -> None:
        self._pool, self._requests, self._owner = pool, requests, os.getpid()
        threading.Thread(target=self._serve, name="shmstate-pool-proxy", daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                request = self._requests.get()
            except Exception:  # The manager shut down.
                return
            if request is None:
                return
            method, args, kwargs, reply = request
            try:
                result = (True, getattr(self._pool, method)(*args, **kwargs))
            except Exception as e:
                result = (False, e)
            try:
                reply.put(result)
            except Exception:
                return

    def __reduce__(self):
        return (_rebuild_pool, (self._requests, self._owner))

    def _remote(self, method: str, *args: Any, **kwargs: Any) -> Any:
        if self._pool is not None and os.getpid() == self._owner:
            return getattr(self._pool, method)(*args, **kwargs)
        reply = _new_queue(self._requests._server, 0, False)
        self._requests.put((method, args, kwargs, reply))
        ok, value = reply.get()
        if not ok:
            raise value
        return value

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        if name in self._REMOTE:
            return lambda *args, **kwargs: self._remote(name, *args, **kwargs)
        if self._pool is not None and os.getpid() == self._owner:
            return getattr(self._pool, name)
        raise NotImplementedError(f"Pool.{name}() of a shmstate.Manager pool works only in the "
                                  "process that created the pool (docs/manager.md)")

    def __enter__(self) -> "PoolProxy":
        return self

    def __exit__(self, *exc: Any) -> None:
        self._remote("terminate")

    def __repr__(self) -> str:
        return f"<PoolProxy object, typeid 'Pool' at {hex(id(self))}>"


def _rebuild_pool(requests: QueueProxy, owner: int) -> PoolProxy:
    proxy = PoolProxy.__new__(PoolProxy)
    proxy._pool, proxy._requests, proxy._owner = None, requests, owner
    return proxy


# --- the manager ----------------------------------------------------------------------------------

class SyncManager:
    """The interface of multiprocessing.managers.SyncManager over a shmstate server."""

    _registry: dict = {}

    def __init__(self, address: Any = None, authkey: Any = None, serializer: str = "pickle",
                 ctx: Any = None, *, name: Optional[str] = None, size: str = "256MiB",
                 max_objects: int = 16384) -> None:
        if serializer != "pickle":
            raise ValueError("shmstate.Manager() stores values with pickle only")
        self._name = name if name is not None else address if isinstance(address, str) else None
        self._size = size
        self._max_objects = max_objects
        self._server: Optional[_Server] = None
        self._state = "initial"

    # -- lifecycle --
    def start(self, initializer: Any = None, initargs: tuple = ()) -> None:
        if self._state != "initial":
            raise RuntimeError("Manager has already been started" if self._state == "started"
                               else "Manager has shut down")
        if self._name is None:
            self._server = _Server(self._size, self._max_objects)
            self._server_name = self._server.name
        else:
            self._server_name = self._name
        _client(self._server_name)
        _sweep(self._server_name)  # What dead creators of unshared objects left.
        self._state = "started"
        if initializer is not None:
            initializer(*initargs)

    def connect(self) -> None:
        if self._name is None:
            raise ValueError("connect() needs Manager(name=...) of a running server")
        self.start()

    def get_server(self) -> Any:
        raise NotImplementedError("shmstate.Manager has no in-process server object: "
                                  "`shmstate serve` is the server")

    def shutdown(self) -> None:
        if self._server is not None:
            self._server.stop()
        self._state = "shutdown"

    def join(self, timeout: Optional[float] = None) -> None:
        if self._server is not None and self._server.creator == os.getpid():
            self._server.proc.wait(timeout)

    def __enter__(self) -> "SyncManager":
        if self._state == "initial":
            self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.shutdown()

    @property
    def address(self) -> str:
        return self._server_name

    def _check(self) -> str:
        if self._state != "started":
            raise RuntimeError("Manager is not started" if self._state == "initial"
                               else "Manager has shut down")
        return self._server_name

    def _number_of_objects(self) -> int:
        return len([o for o in _client(self._check()).objects("o.")])

    def _debug_info(self) -> str:
        return "\n".join(f"{name}: {kind}" for name, kind in _client(self._check()).objects("o."))

    # -- types --
    def _make(self, cls: type, meta: dict, extra: Any = None) -> Any:
        server = self._check()
        name = _new_object(server, meta, cls is DictProxy)
        return _own(cls._open(server, name, extra), (name,))

    def dict(self, *args: Any, **kwargs: Any) -> DictProxy:
        proxy = self._make(DictProxy, {})
        proxy._d.incr(_META + b"order", 0)
        if args or kwargs:
            proxy.update(*args, **kwargs)
        return proxy

    def list(self, sequence: Any = ()) -> ListProxy:
        server = self._check()
        client = _client(server)
        name = _new_name(server)
        client.list(name, max_items=1 << 28, max_item_bytes=64 << 20)
        proxy = _own(ListProxy._open(server, name, None), (name,))
        items = [_dumps(x) for x in sequence]
        if items:
            proxy._seq.replace(None, items)
        return proxy

    def Namespace(self, **kwargs: Any) -> NamespaceProxy:
        proxy = self._make(NamespaceProxy, {})
        for key, value in kwargs.items():
            setattr(proxy, key, value)
        return proxy

    def Value(self, typecode: Any, value: Any, lock: bool = True) -> ValueProxy:
        return self._make(ValueProxy, {b"v": _dumps(value)})

    def Array(self, typecode: Any, sequence: Any, lock: bool = True) -> "ArrayProxy":
        return self._make(ArrayProxy, {b"v": _dumps(_array.array(typecode, sequence))})

    def _acquirer(self, typeid: str, value: int) -> AcquirerProxy:
        if typeid == "Lock":
            server = self._check()
            name = _new_name(server)
            _shmstate._MgrLock(server, name, True)  # Creates it.
            return _own(_ProcessLockProxy._open(server, name, typeid), (name,))
        if typeid == "RLock":
            return self._make(_RLockProxy, {}, typeid)
        return self._make(AcquirerProxy, {b"v": _dumps(_acquirer_state(typeid, value))}, typeid)

    def Lock(self) -> AcquirerProxy:
        return self._acquirer("Lock", 1)

    def RLock(self) -> AcquirerProxy:
        return self._acquirer("RLock", 1)

    def Semaphore(self, value: int = 1) -> AcquirerProxy:
        if value < 0:
            raise ValueError("semaphore initial value must be >= 0")
        return self._acquirer("Semaphore", value)

    def BoundedSemaphore(self, value: int = 1) -> AcquirerProxy:
        if value < 0:
            raise ValueError("semaphore initial value must be >= 0")
        return self._acquirer("BoundedSemaphore", value)

    def Condition(self, lock: Optional[AcquirerProxy] = None) -> ConditionProxy:
        if lock is None:
            lock = self.RLock()
        elif not isinstance(lock, (_RLockProxy, _ProcessLockProxy)):
            raise TypeError("shmstate.Manager().Condition(lock): lock must be a Lock or RLock "
                            "of a shmstate.Manager")
        return self._make(ConditionProxy, {b"v": _dumps({"waiting": [], "signaled": []})}, lock)

    def Event(self) -> EventProxy:
        return self._make(EventProxy, {b"v": _dumps(False)})

    def Barrier(self, parties: int, action: Optional[Callable] = None,
                timeout: Optional[float] = None) -> BarrierProxy:
        if parties < 1:
            raise ValueError("parties must be > 0")
        state = {"count": 0, "generation": 0, "broken": False, "resets": []}
        return self._make(BarrierProxy, {b"v": _dumps(state)}, (parties, action, timeout))

    def _queue(self, maxsize: int, joinable: bool) -> QueueProxy:
        return _new_queue(self._check(), maxsize, joinable)

    def Queue(self, maxsize: int = 0) -> QueueProxy:
        return self._queue(maxsize, False)

    def JoinableQueue(self, maxsize: int = 0) -> QueueProxy:
        return self._queue(maxsize, True)

    def Pool(self, processes: Optional[int] = None, initializer: Any = None,
             initargs: tuple = (), maxtasksperchild: Optional[int] = None) -> Any:
        """A local multiprocessing.pool.Pool: its workers use this manager's proxies."""
        import multiprocessing.pool
        import traceback
        from multiprocessing.managers import RemoteError
        try:
            pool = multiprocessing.pool.Pool(processes, initializer, initargs, maxtasksperchild)
        except Exception as e:  # As the stdlib's manager reports its server's errors.
            raise RemoteError("".join(traceback.format_exception(e))) from None
        return PoolProxy(pool, _new_queue(self._check(), 0, False))

    @classmethod
    def register(cls, typeid: str, callable: Any = None, proxytype: Any = None,
                 exposed: Any = None, method_to_typeid: Any = None,
                 create_method: bool = True) -> None:
        raise NotImplementedError(
            "shmstate.Manager.register(): objects live in shared memory, not in a server "
            "process, so arbitrary callables cannot be managed; use multiprocessing.managers."
            "BaseManager for those (docs/manager.md)")


class ArrayProxy(_BlobSequenceProxy):
    _typeid = "Array"


def Manager(name: Optional[str] = None, **options: Any) -> SyncManager:
    """A started SyncManager: a private server, or the running server `name`."""
    manager = SyncManager(name=name, **options)
    manager.start()
    return manager


_shmstate._install_process_lock_fast_paths(_ProcessLockProxy)
_shmstate._install_manager_fast_paths(
    {"dict": DictProxy, "Value": ValueProxy, "Event": EventProxy, "RLock": _RLockProxy,
     "list": ListProxy, "Queue": QueueProxy}, _encode_key, _process_owner)
