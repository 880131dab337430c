"""The C-API fast path of Counter.incr/value and Dict.get/[]/[]=/in answers as the slow path.

Each call is made through the public wrapper (the fast path) and through the pybind11 handle it
wraps (the path every other method takes); both must give the same result, or raise the same
exception type with the same message, for well-formed and malformed arguments alike.
"""
import array

import pytest

import shmstate

KEYS = [b"k1", "k1", "ключ", "k\udc80", bytearray(b"k1"), memoryview(b"k1"), array.array("b", [1]),
        b"", 123, None, 1.5, ["k"], b"x" * 5000, "\ud800"]
VALUES = [b"v", bytearray(b"w"), memoryview(b"xyz")[::2], b"", "text", None, 7, b"v" * 70000]
BYS = [None, 1, -3, 2**31, 2**62, 2**63, -(2**63) - 1, True, 1.0, "1", None]


def outcome(fn, *args, **kwargs):
    try:
        return ("ok", fn(*args, **kwargs))
    except Exception as e:  # Compared by type and message below.
        return ("raised", type(e), str(e))


def test_dict_reads_match_the_slow_path(st):
    d = st.dict("fast-read")
    d[b"k1"] = b"one"
    d["ключ"] = b"two"
    d["k\udc80"] = b"three"
    for key in KEYS:
        slow = outcome(d._d.get, key)
        assert outcome(d.get, key) == slow, key
        assert outcome(d.get, key, "dflt") == outcome(d._d.get, key, "dflt"), key
        assert outcome(d.get, key=key, default=5) == outcome(d._d.get, key, 5), key
        expected_in = ("ok", slow[1] is not None) if slow[0] == "ok" else slow
        assert outcome(d.__contains__, key) == expected_in, key
        got = outcome(d.__getitem__, key)
        if slow[0] == "ok" and slow[1] is None:
            assert got[:2] == ("raised", shmstate.NotFound), key
        else:
            assert got == slow, key
    with pytest.raises(shmstate.NotFound) as info:
        d[b"absent"]
    assert isinstance(info.value, KeyError) and info.value.args == (b"absent",)
    with pytest.raises(TypeError):
        d.get()
    with pytest.raises(TypeError):
        d.get(b"k1", None, None)
    with pytest.raises(TypeError):
        d.get(b"k1", colour=1)


def test_dict_writes_match_the_slow_path(st):
    fast, slow = st.dict("fast-write"), st.dict("slow-write")
    for key in KEYS:
        for value in VALUES:
            def set_fast():
                fast[key] = value
            want = outcome(slow._d.set, key, value)
            if want == ("ok", True):  # set() says it applied; d[k] = v returns nothing.
                want = ("ok", None)
            assert outcome(set_fast) == want, (key, value)
    assert sorted(fast.items()) == sorted(slow.items())


def test_counter_matches_the_slow_path(st):
    fast, slow = st.counter("fast-c"), st.counter("slow-c")
    for by in BYS:
        args = () if by is None else (by,)
        got, want = outcome(fast.incr, *args), outcome(slow._c.incr, *args)
        assert got == want, by
        assert fast.value == slow._c.value()
    assert outcome(fast.incr, by=5) == outcome(slow._c.incr, by=5)
    with pytest.raises(TypeError):
        fast.incr(1, 2)
    with pytest.raises(TypeError):
        fast.incr(step=1)


def test_deleted_object_gives_the_same_error(st):
    c = st.counter("fast-gone")
    d = st.dict("fast-gone-d")
    d[b"a"] = b"1"
    st.delete("fast-gone")
    st.delete("fast-gone-d")
    assert outcome(c.incr) == outcome(c._c.incr, 1)
    assert outcome(lambda: c.value) == outcome(c._c.value)
    assert outcome(d.get, b"a") == outcome(d._d.get, b"a")


def test_an_unset_wrapper_raises_instead_of_crashing():
    c = shmstate.Counter.__new__(shmstate.Counter)
    d = shmstate.Dict.__new__(shmstate.Dict)
    with pytest.raises(AttributeError):
        c.incr()
    with pytest.raises(AttributeError):
        c.value
    with pytest.raises(AttributeError):
        d[b"k"]
    with pytest.raises(AttributeError):
        d[b"k"] = b"v"
