"""Generated arguments for every public method of the shmstate module (used by
test_argument_fuzz.py, which runs this file as a child process against a real server).

The child drives one batch of targets ("Dict.set", "_Array.read", "module.attach", ...) with
hypothesis (derandomized: the same calls on every run) and prints one JSON line per distinct
failure: an exception outside the shmstate.Error hierarchy, a result that differs from numpy's
for the same index, or (seen by the parent) death by a signal. Before each call it appends the
call to a progress file, so the parent can name the call that killed it.

Targets are enumerated from the module itself (shmstate.__all__ and the classes of
shmstate._shmstate); a public method without an entry in SPECS is itself a failure, so a new
method cannot go unfuzzed.

    python3 argfuzz.py SERVER_NAME PROGRESS_FILE EXAMPLES TARGET...
"""
import inspect
import json
import math
import os
import signal
import sys

import tempfile
import warnings

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir

import shmstate
from shmstate import _shmstate

# --- What counts as a method ---------------------------------------------------------------------

# Dunders that are part of a class's public behaviour (operators, protocols).
PUBLIC_DUNDERS = {"__getitem__", "__setitem__", "__delitem__", "__contains__", "__len__",
                  "__iter__", "__int__", "__array__", "__enter__", "__exit__", "__repr__"}


def public_classes():
    """{name: class} of every class the module exposes, wrappers and native classes."""
    out = {}
    for name in shmstate.__all__:
        obj = getattr(shmstate, name)
        if isinstance(obj, type) and not issubclass(obj, BaseException):
            out[name] = obj
    for name in dir(_shmstate):
        obj = getattr(_shmstate, name)
        if isinstance(obj, type) and not issubclass(obj, BaseException):
            out[name] = obj
    return out


def public_functions():
    return {name: getattr(shmstate, name) for name in shmstate.__all__
            if callable(getattr(shmstate, name)) and not isinstance(getattr(shmstate, name), type)}


def members(instance):
    """(name, is_property) of the public members of an instance: methods (including those bound
    per instance, as Counter.incr is), properties, and the protocol dunders its class defines."""
    cls = type(instance)
    out = []
    for name in dir(instance):
        if name.startswith("_") and name not in PUBLIC_DUNDERS:
            continue
        if name in PUBLIC_DUNDERS and not any(name in vars(k) for k in cls.__mro__[:-1]):
            continue
        static = inspect.getattr_static(instance, name, None)
        if isinstance(static, property) or type(static).__name__ in ("property",
                                                                    "getset_descriptor"):
            out.append((name, True))
            continue
        try:
            value = getattr(instance, name)
        except Exception:  # A member whose read fails is reported when it is called.
            out.append((name, True))
            continue
        if callable(value):
            out.append((name, False))
        # Plain data attributes (Lock.ttl, ...) are not methods.
    return sorted(out)


# --- Values ---------------------------------------------------------------------------------------

class IndexLike:
    """An object with __index__, as numpy and operator.index accept."""

    def __init__(self, value):
        self.value = value

    def __index__(self):
        return self.value

    def __repr__(self):
        return f"IndexLike({self.value!r})"


class FloatLike:
    def __init__(self, value):
        self.value = value

    def __float__(self):
        return self.value

    def __repr__(self):
        return f"FloatLike({self.value!r})"


def _deep(depth, make):
    value = 0
    for _ in range(depth):
        value = make(value)
    return value


# Built per example (st.builds): hypothesis would recurse printing them as sampled_from values.
DEEP_LIST = st.builds(lambda: _deep(5000, lambda v: [v]))
DEEP_DICT = st.builds(lambda: _deep(5000, lambda v: {"k": v}))

BIG_INTS = [2**31 - 1, 2**31, 2**32, 2**53 + 1, 2**63 - 1, 2**63, 2**64 - 1, 2**64, 2**100,
            2**1100, -1, -2**31, -2**63, -2**63 - 1, -2**64, -2**1100]
SPECIAL_FLOATS = [math.nan, math.inf, -math.inf, -0.0, 1e308, -1e308, 5e-324, 1e-300, 0.5, 1e19,
                  9.3e18, -9.3e18]

NUMPY_SCALAR_TYPES = [np.bool_, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16,
                      np.uint32, np.uint64, np.float16, np.float32, np.float64, np.longdouble,
                      np.complex64, np.complex128, np.clongdouble]
NUMPY_DTYPES = [np.dtype(t) for t in NUMPY_SCALAR_TYPES] + [
    np.dtype("datetime64[s]"), np.dtype("timedelta64[ms]"), np.dtype("U3"), np.dtype("S3"),
    np.dtype("V4"), np.dtype(object), np.dtype(">i8"), np.dtype(">f8"), np.dtype("<u2"),
    np.dtype([("a", "i4"), ("b", "f8")])]


def numpy_scalars():
    def make(t, which):
        if t is np.bool_:
            return t(which % 2)
        if np.issubdtype(t, np.integer):
            info = np.iinfo(t)
            return t([0, 1, info.max, info.min, 3][which])
        if np.issubdtype(t, np.floating):
            return t([0.0, 1.5, np.nan, np.inf, -np.inf][which])
        return t([0, 1 + 2j, complex(np.nan, 0), 1j, -1][which])
    basic = st.builds(make, st.sampled_from(NUMPY_SCALAR_TYPES), st.integers(0, 4))
    other = st.sampled_from([np.datetime64("2020-01-01"), np.timedelta64(5, "s"), np.str_("x"),
                             np.bytes_(b"x"), np.void(b"ab"), np.float64(-0.0)])
    return st.one_of(basic, other)


def numpy_arrays():
    def make(dtype, shape, layout):
        size = int(np.prod(shape))
        if dtype.kind in "biuf":
            base = (np.arange(size) % 3).astype(dtype)
        elif dtype.kind == "c":
            base = (np.arange(size) + 1j).astype(dtype)
        elif dtype.kind == "O":
            base = np.array([None, 1, "a", b"b"] * (size // 4 + 1), dtype=object)[:size]
        else:
            base = np.zeros(size, dtype=dtype)
        arr = base.reshape(shape)
        if layout == 1 and arr.ndim >= 1 and arr.shape[0] > 1:
            arr = np.repeat(arr, 2, axis=0)[::2]  # Same values, not contiguous.
        elif layout == 2 and arr.ndim == 2:
            arr = arr.T  # Fortran order.
        return arr
    shapes = st.sampled_from([(), (0,), (1,), (2,), (3,), (4,), (5,), (12,), (2, 2), (3, 4),
                              (4, 3), (1, 4), (3, 1), (2, 3, 2), (0, 4), (2, 0, 3)])
    return st.builds(make, st.sampled_from(NUMPY_DTYPES), shapes, st.integers(0, 2))


def text_any():
    """Every code point, lone surrogates included, and some that matter on their own."""
    return st.one_of(
        st.text(st.characters(blacklist_categories=()), max_size=12),
        st.sampled_from(["", "\udcff", "\ud800", "a\x00b", "é", "\U0001f600", "x" * 5000,
                         "../etc", "a/b", " ", "None", "nan", "1", "-1", "{}", "[]"]))


def bytes_likes():
    def views(b, kind):
        if kind == 0:
            return bytearray(b)
        if kind == 1:
            return memoryview(b)
        if kind == 2:
            return memoryview(b)[::2]  # Not contiguous.
        if kind == 3:
            return memoryview(np.frombuffer(b * 4, dtype=np.uint8).reshape(4, -1)[:, ::-1]) \
                if b else memoryview(b"")
        if kind == 4:
            return np.frombuffer(b, dtype=np.uint8)
        return bytes(b)
    return st.one_of(st.binary(max_size=40),
                     st.builds(views, st.binary(max_size=40), st.integers(0, 5)),
                     st.sampled_from([b"", b"\xff\xfe", b"\x00" * 3, b"x" * 70000]))


def anything():
    """Arguments of every kind, to pass where a method expects something specific."""
    leaves = st.one_of(
        st.none(), st.booleans(), st.integers(-1000, 1000), st.sampled_from(BIG_INTS),
        st.floats(allow_nan=True, allow_infinity=True), st.sampled_from(SPECIAL_FLOATS),
        st.complex_numbers(max_magnitude=1e6), text_any(), bytes_likes(), numpy_scalars(),
        numpy_arrays(),
        st.sampled_from([Ellipsis, slice(None), slice(1, None, -1), slice(0, 0, 0),
                         slice(2**70, -2**70, -2**70), slice(0.5), slice("a"), object(),
                         IndexLike(2), IndexLike(2**70), FloatLike(1.5), FloatLike(math.nan),
                         int, np.float64, np.dtype("f8"), {1: 2}, set(), frozenset({1}),
                         lambda: 0, NotImplemented, range(3)]),
        DEEP_LIST, DEEP_DICT)
    return st.recursive(
        leaves,
        lambda inner: st.one_of(st.lists(inner, max_size=4),
                                st.lists(inner, max_size=4).map(tuple),
                                st.dictionaries(st.one_of(st.text(max_size=3), st.integers()),
                                                inner, max_size=3)),
        max_leaves=6)


ANY = anything()


def some(valid):
    """Mostly the kind of value the parameter takes, else anything at all."""
    return st.one_of(valid, ANY)


NAMES = ["fz.counter", "fz.dict", "fz.list", "fz.lock", "fz.sessions", "fz.f64", "fz.i32",
         "fz.u8", "fz.b", "fz.new1", "fz.new2", "fz/bad", "", "fz." + "x" * 300]
NAME = some(st.one_of(st.sampled_from(NAMES), st.text("abc.-_", min_size=1, max_size=6)))
KEY = some(st.one_of(st.sampled_from(["k1", "k2", b"k3", "n", b"\xff", "é"]),
                     st.text(max_size=4), st.binary(max_size=4)))
VALUE = some(st.one_of(st.sampled_from([b"v", b"1", b"-5", b"9" * 30]), bytes_likes()))
INT = some(st.one_of(st.integers(-5, 5), st.sampled_from(BIG_INTS)))
UINT = some(st.one_of(st.integers(0, 5), st.sampled_from(BIG_INTS)))
SECONDS = some(st.one_of(st.none(), st.floats(0, 0.05), st.integers(0, 1), st.sampled_from(
    [1e-9, 1e300, math.inf, math.nan, -1.0, 2**1100, 100.0 * 365 * 24 * 3600 + 1])))
MODE = some(st.sampled_from(["set", "add", "replace", "SET", ""]))
END = some(st.sampled_from(["left", "right", "middle"]))
EVICTION = some(st.sampled_from(["none", "clock", "lru"]))
DTYPE = some(st.sampled_from(["float64", "float32", "int32", "int64", "uint8", "bool", "int8",
                              "uint64", "complex128", "object", "<U3", "f8", np.float64,
                              np.dtype("int16"), np.dtype(">f8"), None]))
SHAPE = some(st.one_of(st.lists(st.integers(0, 4), min_size=0, max_size=9).map(tuple),
                       st.integers(0, 5), st.sampled_from([(2**40, 2**40), (-1,), (2.5,),
                                                           [3, "4"], (2**63,)])))
ATOMIC_OP = some(st.sampled_from(["add", "min", "max", "cas", "sub", ""]))
ARRAY_OP = some(st.sampled_from(["add", "sub", "mul", "div", "min", "max", "fill", "pow"]))
JSON_TEXT = some(st.sampled_from(['{}', '{"a": 1}', '[]', '1', '{"a": NaN}', '', '{"a": "\\udcff"}',
                                  '{' * 100 + '}' * 100, '{"a": ' * 40 + '1' + '}' * 40]))
SID = some(st.one_of(st.just("0" * 32), st.text("0123456789abcdef", max_size=33)))
FIELD = some(st.sampled_from(["visits", "user", "", "x" * 300]))
# The server under test (the parent sets it; importing this file alone leaves a placeholder).
# What Client.transaction runs: functions that use the transaction (with the call's extra
# arguments too), or values that are not callable. Not ANY: it holds callables (int, lambda: 0)
# whose own TypeError on fn(tx) is fn's exception, which transaction() rightly raises as is.
TX_FN = st.one_of(
    st.sampled_from([
        lambda tx, *a: None,
        lambda tx, *a: tx.dict("fz.dict").get("k1"),
        lambda tx, *a: tx.dict("fz.dict").set("k2", b"v", mode="add"),
        lambda tx, *a: tx.counter("fz.counter").incr(),
        lambda tx, *a: tx.dict(a[0] if a else "fz.dict").get(a[1] if len(a) > 1 else "k1"),
    ]),
    st.none(), st.integers(), st.text(max_size=3), st.binary(max_size=3))

SERVER = os.environ.get("SHMSTATE_FUZZ_SERVER", "fz-no-server")
URL = some(st.sampled_from(["shm://" + SERVER, "shm://", "shm://no-such", "ftp://x", "shm",
                            "://", "shm://../x"]))
SERVER_NAME = some(st.sampled_from([SERVER, "no-such-server", "../etc", "", "a" * 300]))


def json_values():
    return st.recursive(
        st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), text_any(),
                  st.binary(max_size=5), numpy_scalars()),
        lambda inner: st.one_of(st.lists(inner, max_size=3),
                                st.dictionaries(st.one_of(text_any(), st.integers()), inner,
                                                max_size=3)),
        max_leaves=8)


JSON_VALUE = some(st.one_of(json_values(), DEEP_LIST, DEEP_DICT))
SESSION_DATA = some(st.one_of(st.dictionaries(st.text(max_size=4), json_values(), max_size=3),
                              st.builds(lambda v: {"deep": v}, DEEP_LIST), st.just({1: "a"})))


def index_items(ndim_hint=3):
    return st.one_of(
        st.integers(-6, 6), st.sampled_from([2**63, -2**63 - 1, 2**31]),
        st.builds(slice, st.one_of(st.none(), st.integers(-7, 7)),
                  st.one_of(st.none(), st.integers(-7, 7)),
                  st.one_of(st.none(), st.integers(-3, 3))),
        st.sampled_from([Ellipsis, None, True, False, np.bool_(True), np.int64(1), np.uint8(2),
                         np.intp(-1), IndexLike(1), slice(np.int32(1), None),
                         slice(None, None, -2**63), slice(-2**70, 2**70, 2**70), 1.0, "0",
                         np.float64(1.0), np.array(1), np.array(True), object()]),
        st.lists(st.integers(-5, 5), max_size=4),
        st.lists(st.integers(-5, 5), max_size=4).map(lambda v: np.array(v, dtype=np.int64)),
        st.lists(st.booleans(), max_size=5).map(lambda v: np.array(v, dtype=bool)),
        st.sampled_from([np.array([[True, False, True, False]] * 3), np.array([0.0, 1.0]),
                         np.array(["a"]), np.array([[0, 1], [1, 0]]), [[0, 1], [1, 2]],
                         [True, False], [], np.array([], dtype=np.int64), [0, [1]]]))


INDEX_KEY = some(st.one_of(index_items(), st.lists(index_items(), max_size=5).map(tuple)))
ATOMIC_INDEX = some(st.one_of(st.integers(-4, 4), st.lists(st.integers(-4, 4), max_size=3),
                              st.lists(st.integers(-4, 4), max_size=3).map(tuple),
                              st.sampled_from([np.array([0, 1]), (np.int64(0), 1), (True, 0),
                                               (2**63, 0), (0, 1.0), (0, 1, 2, 3, 4, 5, 6, 7, 8, 9)])))
SCALAR = some(st.one_of(st.integers(-5, 5), st.floats(-5, 5), st.booleans(), numpy_scalars(),
                        st.sampled_from(BIG_INTS + SPECIAL_FLOATS)))
ARRAY_VALUES = some(st.one_of(SCALAR, numpy_arrays(),
                              st.lists(st.integers(-3, 3), max_size=5),
                              st.lists(st.lists(st.floats(-3, 3), min_size=4, max_size=4),
                                       max_size=3)))
NP_VALUES = some(numpy_arrays())

# --- What each method takes -----------------------------------------------------------------------
# (parameter, strategy, how): how is "req" (positional), "opt" (positional or keyword, may be
# left out), "kw" (keyword-only, may be left out) or "var" (*args).

R, O, K, V = "req", "opt", "kw", "var"
SPECS = {
    "module.attach": [("name", SERVER_NAME, O), ("follow_timeout", SECONDS, K)],
    "module.connect": [("url", URL, R), ("options", st.sampled_from(
        [{}, {"follow_timeout": 0.1}, {"bogus": 1}, {"follow_timeout": "x"}]), "kwargs")],

    "Client.counter": [("name", NAME, R), ("init", INT, K), ("ttl", SECONDS, K)],
    "Client.dict": [("name", NAME, R), ("max_bytes", UINT, K), ("eviction", EVICTION, K),
                    ("default_ttl", SECONDS, K)],
    "Client.list": [("name", NAME, R), ("max_items", UINT, K), ("max_item_bytes", UINT, K)],
    "Client.lock": [("name", NAME, R), ("ttl", SECONDS, K), ("timeout", SECONDS, K),
                    ("owner", some(st.text(max_size=3)), K)],
    "Client.sessions": [("name", NAME, O), ("ttl", SECONDS, K)],
    "Client.array": [("name", NAME, R), ("dtype", DTYPE, O), ("shape", SHAPE, O),
                     ("fill", SCALAR, O)],
    "Client.array_from_numpy": [("name", NAME, R), ("values", some(numpy_arrays()), R)],
    "Client.objects": [("prefix", NAME, O)],
    "Client.delete": [("name", NAME, R)],
    "Client.transaction": [("fn", TX_FN, R), ("args", ANY, V), ("retries", UINT, K)],
    "Client.__repr__": [],

    "Transaction.counter": [("name", NAME, R), ("init", INT, K), ("ttl", SECONDS, K)],
    "Transaction.dict": [("name", NAME, R), ("max_bytes", UINT, K), ("eviction", EVICTION, K),
                         ("default_ttl", SECONDS, K)],
    "Transaction.list": [("name", NAME, R), ("max_items", UINT, K), ("max_item_bytes", UINT, K)],
    "Transaction.__repr__": [],

    "Counter.incr": [("by", INT, O)],
    "Counter.set": [("value", INT, R)],
    "Counter.cas": [("expected", INT, R), ("value", INT, R)],
    "Counter.__int__": [],
    "Counter.__repr__": [],

    "Dict.get": [("key", KEY, R), ("default", ANY, O)],
    "Dict.get_raw": [("key", KEY, R)],
    "Dict.__getitem__": [("key", KEY, R)],
    "Dict.__setitem__": [("key", KEY, R), ("value", VALUE, R)],
    "Dict.__delitem__": [("key", KEY, R)],
    "Dict.__contains__": [("key", KEY, R)],
    "Dict.__len__": [],
    "Dict.__iter__": [],
    "Dict.__repr__": [],
    "Dict.set": [("key", KEY, R), ("value", VALUE, R), ("ttl", SECONDS, O), ("mode", MODE, K),
                 ("if_version", UINT, K)],
    "Dict.add": [("key", KEY, R), ("value", VALUE, R), ("ttl", SECONDS, O)],
    "Dict.entry": [("key", KEY, R)],
    "Dict.delete": [("key", KEY, R)],
    "Dict.pop": [("key", KEY, R), ("default", ANY, O)],
    "Dict.incr": [("key", KEY, R), ("by", INT, O), ("init", INT, O), ("ttl", SECONDS, O)],
    "Dict.cas": [("key", KEY, R), ("expected", some(st.one_of(st.none(), VALUE)), R),
                 ("value", VALUE, R)],
    "Dict.keys": [("prefix", KEY, O)],
    "Dict.items": [("prefix", KEY, O)],
    "Dict.clear": [],
    "Dict.stats": [],

    "List.push": [("item", VALUE, R), ("end", END, K)],
    "List.pop": [("wait", SECONDS, O), ("end", END, K)],
    "List.range": [("start", INT, O), ("stop", INT, O)],
    "List.__len__": [],
    "List.__repr__": [],

    "Lock.acquire": [("ttl", SECONDS, K), ("timeout", SECONDS, K)],
    "Lock.release": [],
    "Lock.refresh": [("ttl", SECONDS, O)],
    "Lock.info": [],
    "Lock.__enter__": [],
    "Lock.__exit__": [("exc", ANY, V)],
    "Lock.__repr__": [],

    "Sessions.create": [("data", SESSION_DATA, O)],
    "Sessions.get": [("sid", SID, R)],
    "Sessions.put": [("sid", SID, R), ("data", SESSION_DATA, R)],
    "Sessions.set_field": [("sid", SID, R), ("field", FIELD, R), ("value", JSON_VALUE, R)],
    "Sessions.delete_field": [("sid", SID, R), ("field", FIELD, R)],
    "Sessions.incr": [("sid", SID, R), ("field", FIELD, R), ("by", INT, O)],
    "Sessions.delete": [("sid", SID, R)],
    "Sessions.__repr__": [],

    "Array.__getitem__": [("key", INDEX_KEY, R)],
    "Array.__setitem__": [("key", INDEX_KEY, R), ("value", ARRAY_VALUES, R)],
    "Array.__len__": [],
    "Array.__array__": [("dtype", DTYPE, O)],
    "Array.__repr__": [],
    "Array.to_numpy": [],
    "Array.add": [("index", ATOMIC_INDEX, R), ("value", SCALAR, R)],
    "Array.min": [("index", ATOMIC_INDEX, R), ("value", SCALAR, R)],
    "Array.max": [("index", ATOMIC_INDEX, R), ("value", SCALAR, R)],
    "Array.cas": [("index", ATOMIC_INDEX, R), ("expected", SCALAR, R), ("value", SCALAR, R)],
    "Array.apply": [("op", ARRAY_OP, R), ("value", SCALAR, R), ("key", INDEX_KEY, O)],

    # The native classes behind the wrappers (some wrapper methods are these, bound directly).
    "_Client.counter": [("name", NAME, R), ("init", INT, O), ("ttl", SECONDS, O)],
    "_Client.dict": [("name", NAME, R), ("max_bytes", UINT, O), ("eviction", EVICTION, O),
                     ("default_ttl", SECONDS, O)],
    "_Client.list": [("name", NAME, R), ("max_items", UINT, O), ("max_item_bytes", UINT, O)],
    "_Client.lock": [("name", NAME, R)],
    "_Client.sessions": [("name", NAME, R), ("idle_ttl", SECONDS, R)],
    "_Client.array": [("name", NAME, R), ("dtype", DTYPE, O), ("shape", SHAPE, O),
                      ("fill", SCALAR, O)],
    "_Client.array_from_numpy": [("name", NAME, R), ("values", NP_VALUES, R)],
    "_Client.objects": [("prefix", NAME, O)],
    "_Client.delete": [("name", NAME, R)],

    "_Counter.incr": [("by", INT, O)],
    "_Counter.value": [],
    "_Counter.set": [("value", INT, R)],
    "_Counter.cas": [("expected", INT, R), ("value", INT, R)],

    "_Dict.get": [("key", KEY, R), ("default", ANY, O)],
    "_Dict.get_entry": [("key", KEY, R)],
    "_Dict.set": [("key", KEY, R), ("value", VALUE, R), ("ttl", SECONDS, O), ("mode", MODE, O),
                  ("if_version", UINT, O)],
    "_Dict.delete": [("key", KEY, R)],
    "_Dict.incr": [("key", KEY, R), ("by", INT, O), ("init", INT, O), ("ttl", SECONDS, O)],
    "_Dict.cas": [("key", KEY, R), ("expected", some(st.one_of(st.none(), VALUE)), R),
                  ("value", VALUE, R)],
    "_Dict.keys_page": [("prefix", KEY, O), ("cursor", UINT, O), ("limit", UINT, O)],
    "_Dict.stats": [],

    "_List.push": [("item", VALUE, R), ("end", END, O)],
    "_List.pop": [("wait", SECONDS, O), ("end", END, O)],
    "_List.length": [],
    "_List.range": [("start", INT, O), ("stop", INT, O)],

    "_Lock.acquire": [("ttl", SECONDS, R), ("timeout", SECONDS, O),
                      ("owner", some(st.text(max_size=3)), O)],
    "_Lock.release": [("token", UINT, R)],
    "_Lock.refresh": [("token", UINT, R), ("ttl", SECONDS, R)],
    "_Lock.info": [],

    "_Sessions.create": [("json", JSON_TEXT, O)],
    "_Sessions.get": [("sid", SID, R)],
    "_Sessions.put": [("sid", SID, R), ("json", JSON_TEXT, R)],
    "_Sessions.delete": [("sid", SID, R)],
    "_Sessions.set_field": [("sid", SID, R), ("field", FIELD, R), ("json", JSON_TEXT, R)],
    "_Sessions.erase_field": [("sid", SID, R), ("field", FIELD, R)],
    "_Sessions.incr": [("sid", SID, R), ("field", FIELD, R), ("by", INT, O)],
    "_Sessions.idle_ttl": [],

    "_Array.read": [("key", INDEX_KEY, R)],
    "_Array.write": [("key", INDEX_KEY, R), ("values", NP_VALUES, R)],
    "_Array.slice_shape": [("key", INDEX_KEY, R)],
    "_Array.fill": [("key", INDEX_KEY, R), ("value", SCALAR, R)],
    "_Array.atomic": [("op", ATOMIC_OP, R), ("index", ATOMIC_INDEX, R), ("value", SCALAR, R),
                      ("expected", SCALAR, O)],
    "_Array.apply": [("op", ARRAY_OP, R), ("key", INDEX_KEY, R), ("value", SCALAR, R)],
    "_Array.version": [],

    # The transaction's handles (python/src/register_tx.cc): _Counter's, _Dict's and _List's
    # methods, staged in an open transaction.
    "_Client.transaction": [],
    "_Transaction.counter": [("name", NAME, R), ("init", INT, O), ("ttl", SECONDS, O)],
    "_Transaction.dict": [("name", NAME, R), ("max_bytes", UINT, O), ("eviction", EVICTION, O),
                          ("default_ttl", SECONDS, O)],
    "_Transaction.list": [("name", NAME, R), ("max_items", UINT, O), ("max_item_bytes", UINT, O)],
    "_Transaction.commit": [],
    "_Transaction.abort": [],
    "_TxCounter.incr": [("by", INT, O)],
    "_TxCounter.value": [],
    "_TxCounter.set": [("value", INT, R)],
    "_TxCounter.cas": [("expected", INT, R), ("value", INT, R)],
    "_TxDict.get": [("key", KEY, R), ("default", ANY, O)],
    "_TxDict.get_entry": [("key", KEY, R)],
    "_TxDict.set": [("key", KEY, R), ("value", VALUE, R), ("ttl", SECONDS, O), ("mode", MODE, O),
                    ("if_version", UINT, O)],
    "_TxDict.delete": [("key", KEY, R)],
    "_TxDict.incr": [("key", KEY, R), ("by", INT, O), ("init", INT, O), ("ttl", SECONDS, O)],
    "_TxDict.cas": [("key", KEY, R), ("expected", some(st.one_of(st.none(), VALUE)), R),
                    ("value", VALUE, R)],
    "_TxDict.keys_page": [("prefix", KEY, O), ("cursor", UINT, O), ("limit", UINT, O)],
    "_TxDict.stats": [],
    "_TxList.push": [("item", VALUE, R), ("end", END, O)],
    "_TxList.pop": [("wait", SECONDS, O), ("end", END, O)],
    "_TxList.length": [],
    "_TxList.range": [("start", INT, O), ("stop", INT, O)],

    # shmstate.Manager's bindings (python/src/register_sync.cc).
    "_WakeWord.seq": [],
    "_WakeWord.wait": [("seen", UINT, R), ("timeout", SECONDS, R)],
    "_WakeWord.wake": [],
    "_WakeWord.wake_waiters": [],
    "_WakeWord.delete_if": [("key", KEY, R), ("version", UINT, R)],
    "_SeqList.set": [("index", INT, R), ("item", VALUE, R)],
    # shmstate.Manager().Lock()'s handle (python/src/register_process_lock.cc).
    "_MgrLock.acquire_for": [("timeout", SECONDS, R)],
    "_MgrLock.release": [],
    "_MgrLock.locked": [],
    "_MgrLock.holder": [],
    "_SeqList.replace": [("expected", some(st.one_of(st.none(), st.lists(VALUE, max_size=4))), R),
                         ("items", some(st.lists(VALUE, max_size=4)), R)],
}

# --- The objects methods are called on --------------------------------------------------------------

ARRAYS = {"fz.f64": ("float64", (3, 4)), "fz.i32": ("int32", (5,)), "fz.u8": ("uint8", (2, 3, 2)),
          "fz.b": ("bool", (4,))}


class Fixtures:
    """The receivers of each class: fresh objects with some content, on the test's server."""

    def __init__(self, server):
        self.server = server
        # A shm server's name, or a redis:// URL: the same classes on the Redis backend.
        self.client = shmstate.connect(server) if "://" in server else shmstate.attach(server)

    def instances(self, cls_name):
        c = self.client
        for name in ("fz.counter", "fz.dict", "fz.list", "fz.lock", "fz.sessions", "fz.plock"):
            c.delete(name)  # Another batch may have made it an object of another kind.
        if cls_name in ("Client", "_Client"):
            return [c if cls_name == "Client" else c._native]
        if cls_name in ("Counter", "_Counter"):
            objs = [c.counter("fz.counter")]
        elif cls_name in ("Dict", "_Dict"):
            d = c.dict("fz.dict")
            for k, v in [("k1", b"v"), ("n", b"5"), (b"\xff", b"x")]:
                d[k] = v
            objs = [d]
        elif cls_name in ("List", "_List"):
            lst = c.list("fz.list")
            for item in (b"a", b"b", b"c"):
                lst.push(item)
            objs = [lst]
        elif cls_name in ("Lock", "_Lock"):
            objs = [c.lock("fz.lock", ttl=5, timeout=0)]
        elif cls_name in ("Sessions", "_Sessions"):
            s = c.sessions("fz.sessions")
            s.put("0" * 32, {"visits": 1, "user": "ann"})
            objs = [s]
        elif cls_name in ("Transaction", "_Transaction"):
            # Open transactions, never committed by the fixture (a call may commit one).
            native = c._native.transaction()
            return [native if cls_name == "_Transaction" else shmstate.Transaction(native)]
        elif cls_name in ("_TxCounter", "_TxDict", "_TxList"):
            d = c.dict("fz.dict")
            for k, v in [("k1", b"v"), ("n", b"5"), (b"\xff", b"x")]:
                d[k] = v
            for item in (b"a", b"b", b"c"):
                c.list("fz.list").push(item)
            c.counter("fz.counter")
            tx = c._native.transaction()
            return [{"_TxCounter": lambda: tx.counter("fz.counter"),
                     "_TxDict": lambda: tx.dict("fz.dict"),
                     "_TxList": lambda: tx.list("fz.list")}[cls_name]()]
        elif (cls_name in ("_WakeWord", "_SeqList", "_MgrDict", "_MgrList", "_MgrLock")
              and "://" in self.server):
            raise KeyError(cls_name)  # Bindings of shm segments only.
        elif cls_name == "_WakeWord":  # Words of a dict and of a list.
            c.dict("fz.dict")["k1"] = b"v"
            c.list("fz.list").push(b"a")
            return [_shmstate._WakeWord(self.server, "fz.dict", "dict"),
                    _shmstate._WakeWord(self.server, "fz.list", "list")]
        elif cls_name == "_MgrDict":  # The Manager's fast-path handles: no public method.
            c.dict("fz.dict")["k1"] = b"v"
            return [_shmstate._MgrDict(self.server, "fz.dict")]
        elif cls_name == "_MgrLock":  # A process lock, created by its first handle.
            return [_shmstate._MgrLock(self.server, "fz.plock", True)]
        elif cls_name == "_MgrList":
            c.list("fz.list").push(b"a")
            return [_shmstate._MgrList(self.server, "fz.list")]
        elif cls_name == "_SeqList":
            lst = c.list("fz.list")
            for item in (b"a", b"b", b"c"):
                lst.push(item)
            return [_shmstate._SeqList(self.server, "fz.list")]
        elif cls_name in ("Array", "_Array"):
            objs = []
            for name, (dtype, shape) in ARRAYS.items():
                c.delete(name)
                a = c.array(name, dtype=dtype, shape=shape)
                a[...] = np.arange(int(np.prod(shape))).reshape(shape) % 7
                objs.append(a)
        else:
            raise KeyError(cls_name)
        if cls_name.startswith("_"):  # The native object inside each wrapper.
            objs = [getattr(o, type(o).__slots__[0]) for o in objs]
        return objs


def enumerate_targets(fixtures):
    """(targets, missing): every public method as "Class.method" ("module.f" for functions),
    and those without a SPECS entry. Properties are targets with no arguments."""
    targets, missing = [], []
    for name in public_functions():
        target = f"module.{name}"
        targets.append(target)
        if target not in SPECS:
            missing.append(target)
    for cls_name in public_classes():
        try:
            instance = fixtures.instances(cls_name)[0]
        except KeyError:
            missing.append(f"{cls_name} (no fixture)")
            continue
        for member, is_property in members(instance):
            target = f"{cls_name}.{member}"
            targets.append(target)
            if not is_property and target not in SPECS:
                missing.append(target)
    return targets, missing


# --- Running ---------------------------------------------------------------------------------------

class Slow(BaseException):
    """A call still waiting after the time limit (a legitimate wait: pop(wait=...), a lock)."""


def _on_alarm(signum, frame):
    raise Slow()


def call_args(spec):
    """A strategy of (args, kwargs) for a spec: required parameters always, optional ones
    sometimes, each positional or by keyword."""
    @st.composite
    def build(draw):
        args, kwargs = [], {}
        positional = True
        for name, strategy, how in spec:
            if how == V:
                args.extend(draw(st.lists(strategy, max_size=3)))
                continue
            if how == "kwargs":
                kwargs.update(draw(strategy))
                continue
            if how != R and not draw(st.booleans()):
                positional = False  # Left out: later ones go by keyword.
                continue
            value = draw(strategy)
            if how == K or not positional or (how == O and draw(st.booleans())):
                positional = False
                kwargs[name] = value
            else:
                args.append(value)
        return args, kwargs
    return build()


def short(value, limit=160):
    try:
        text = repr(value)
    except Exception as e:  # repr itself may fail on hostile values.
        text = f"<unrepresentable {type(value).__name__}: {e}>"
    return text if len(text) <= limit else text[:limit] + "..."


def same_result(ours, theirs):
    ours_arr, theirs_arr = np.asarray(ours), np.asarray(theirs)
    if ours_arr.shape != theirs_arr.shape or ours_arr.dtype != theirs_arr.dtype:
        return False
    if np.isscalar(theirs) != np.isscalar(ours) and not (np.ndim(ours) == 0 == np.ndim(theirs)):
        return False
    return bool(np.array_equal(ours_arr, theirs_arr,
                               equal_nan=ours_arr.dtype.kind in "fc"))


def is_fill_scalar(value):
    """Whether Array.__setitem__ fills with `value` (the library's casting) rather than
    assigning it with numpy's (older modules: numpy.isscalar)."""
    rule = getattr(shmstate, "_is_fill_scalar", None)
    if rule is not None:
        return rule(value)
    return np.isscalar(value) or (isinstance(value, np.ndarray) and value.ndim == 0)


class Runner:
    def __init__(self, server, progress_path, examples):
        self.fixtures = Fixtures(server)
        self.progress = open(progress_path, "a", buffering=1)
        self.examples = examples
        self.seen = set()
        self.calls = 0

    def report(self, target, kind, detail, example):
        key = (target, kind)
        if key in self.seen:
            return
        self.seen.add(key)
        print(json.dumps({"target": target, "kind": kind, "detail": detail[:300],
                          "example": example}), flush=True)

    def timed(self, fn):
        signal.setitimer(signal.ITIMER_REAL, 0.25)
        try:
            try:
                result = fn()
                if inspect.isgenerator(result):
                    result = [x for _, x in zip(range(2000), result)]
                return result
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
        except Slow:
            raise
        # Other exceptions propagate to the caller.

    def call(self, target, receiver, member, args, kwargs, is_property):
        self.calls += 1
        example = f"{target}(*{short(args)}, **{short(kwargs)})"
        self.progress.write(example.replace("\n", " ") + "\n")
        fn = (lambda: getattr(receiver, member)) if is_property else (
            lambda: getattr(receiver, member)(*args, **kwargs))
        try:
            return True, self.timed(fn)
        except Slow:
            return None, None
        except shmstate.Error as e:
            return False, e
        except Exception as e:  # noqa: BLE001 - what the test is looking for.
            if os.environ.get("SHMSTATE_FUZZ_TRACEBACKS"):
                import traceback
                traceback.print_exc(limit=-8)
            self.report(target, type(e).__name__, f"{type(e).__name__}: {e}", example)
            return False, e

    def check_numpy(self, target, receiver, args, ok, result, before):
        """Array.__getitem__ / _Array.read must give numpy's answer for the same key."""
        key = args[0]
        try:
            expected, numpy_ok = before[key], True
        except Exception:  # noqa: BLE001
            expected, numpy_ok = None, False
        example = f"{target}({short(key)}) on {short(before)}"
        if ok and numpy_ok and not same_result(result, expected):
            self.report(target, "differs from numpy",
                        f"got {short(result)}, numpy {short(expected)}", example)
        elif ok and not numpy_ok:
            self.report(target, "accepts a key numpy refuses", short(result), example)
        elif ok is False and numpy_ok:
            self.report(target, "refuses a key numpy accepts", short(result), example)

    def check_numpy_write(self, target, receiver, args, ok, result, before):
        """Array.__setitem__ must change the elements numpy's assignment changes, and only
        those. It may refuse what numpy takes (advanced-index writes). Values: an array-like is
        cast as numpy casts it; a scalar is a fill with the library's casting (docs/arrays.md:
        it saturates floats and refuses out-of-range integers), so only its selection is
        compared."""
        if not ok:
            return
        key, value = args
        example = f"{target}({short(key)}, {short(value)}) on {short(before)}"
        after = receiver.to_numpy()
        nan_ok = after.dtype.kind == "f"
        selected = np.zeros(before.shape, dtype=bool)
        try:
            selected[key] = True
        except Exception:  # noqa: BLE001
            self.report(target, "accepts a key numpy refuses", "", example)
            return
        if is_fill_scalar(value):
            filled = after[selected]
            if not np.array_equal(after[~selected], before[~selected], equal_nan=nan_ok) or \
                    not np.array_equal(filled, np.full_like(filled, filled.flat[0])
                                       if filled.size else filled, equal_nan=nan_ok):
                self.report(target, "fills other elements than numpy",
                            f"got {short(after)}", example)
            return
        expected = before.copy()
        try:
            with np.errstate(all="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                expected[key] = value
        except Exception:  # noqa: BLE001
            self.report(target, "accepts a write numpy refuses", "", example)
            return
        if not np.array_equal(after, expected, equal_nan=nan_ok):
            self.report(target, "writes differ from numpy",
                        f"got {short(after)}, numpy {short(expected)}", example)

    def run_target(self, target):
        cls_name, member = target.split(".", 1)
        is_property = target not in SPECS
        spec = SPECS.get(target, [])
        if cls_name == "module":
            receivers = [shmstate]
        else:
            receivers = self.fixtures.instances(cls_name)
        numpy_check = target in ("Array.__getitem__", "_Array.read")
        write_check = target == "Array.__setitem__"

        @settings(max_examples=1 if is_property else self.examples, derandomize=True,
                  database=None, deadline=None, suppress_health_check=list(HealthCheck),
                  report_multiple_bugs=False)
        @given(st.sampled_from(receivers), call_args(spec))
        def drive(receiver, call):
            args, kwargs = call
            before = None
            if numpy_check:
                before = receiver.read(()) if cls_name.startswith("_") else receiver.to_numpy()
            if write_check:
                before = receiver.to_numpy()
            ok, result = self.call(target, receiver, member, args, kwargs, is_property)
            if numpy_check and ok is not None:
                self.check_numpy(target, receiver, args, ok, result, before)
            if write_check and ok is not None:
                self.check_numpy_write(target, receiver, args, ok, result, before)

        drive()


def main():
    server, progress_path, examples, *targets = sys.argv[1:]
    # Hypothesis keeps caches in ./.hypothesis: not in the source tree.
    set_hypothesis_home_dir(os.path.join(tempfile.gettempdir(), "shmstate-hypothesis"))
    warnings.simplefilter("ignore")  # numpy's ComplexWarning etc.: not failures, only noise.
    signal.signal(signal.SIGALRM, _on_alarm)
    runner = Runner(server, progress_path, int(examples))
    for target in targets:
        runner.progress.write(f"== {target}\n")
        runner.run_target(target)
    print(json.dumps({"done": True, "calls": runner.calls}), flush=True)
    os._exit(0)  # Skip interpreter teardown: the handles go with the process.


if __name__ == "__main__":
    main()
