"""The C-API fast path of Counter.incr/value, Dict.get/[]/[]=/in/incr, List.push/pop and
Lock.acquire/release/with answers as the slow path.

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


TTLS = [None, 1, 0.5, 0, -1, float("nan"), float("inf"), "1", True, 10**20]
ENDS = ["left", "right", "middle", b"left", None, 1, "\ud800", "LEFT"]
WAITS = [None, 0, 0.0, -1, float("nan"), "1", True, 0.001]


def test_dict_incr_matches_the_slow_path(st):
    fast, slow = st.dict("fast-incr"), st.dict("slow-incr")
    for key in KEYS:
        for by in BYS[1:5] + ["1", 1.0]:
            assert outcome(fast.incr, key, by) == outcome(slow._d.incr, key, by), (key, by)
    for init in [0, 5, 2**63, -(2**63) - 1, "0", None]:
        assert outcome(fast.incr, b"i", 1, init) == outcome(slow._d.incr, b"i", 1, init), init
    for ttl in TTLS:
        assert outcome(fast.incr, b"t", ttl=ttl) == outcome(slow._d.incr, b"t", 1, 0, ttl), ttl
    assert outcome(fast.incr, key=b"kw", by=2, init=10) == outcome(slow._d.incr, b"kw", 2, 10)
    assert outcome(fast.incr, b"o", 2**62) == outcome(slow._d.incr, b"o", 2**62)
    assert outcome(fast.incr, b"o", 2**62) == outcome(slow._d.incr, b"o", 2**62)  # Overflow.
    assert sorted(fast.items()) == sorted(slow.items())
    with pytest.raises(TypeError):
        fast.incr()
    with pytest.raises(TypeError):
        fast.incr(b"k", 1, 0, None, 5)
    with pytest.raises(TypeError):
        fast.incr(b"k", step=1)


def test_list_push_and_pop_match_the_slow_path(st):
    fast, slow = st.list("fast-list"), st.list("slow-list")
    for item in VALUES:
        for end in ENDS:
            kwargs = {} if end is None else {"end": end}
            want = outcome(slow._l.push, item, "right" if end is None else end)
            assert outcome(fast.push, item, **kwargs) == want, (item, end)
    assert fast.range() == slow.range()
    for wait in WAITS:
        for end in ENDS:
            kwargs = {} if end is None else {"end": end}
            want = outcome(slow._l.pop, wait, "left" if end is None else end)
            assert outcome(fast.pop, wait, **kwargs) == want, (wait, end)
    while len(slow):
        assert fast.pop() == slow._l.pop(None, "left")
    assert fast.pop() is None and fast.pop(0.001, end="right") is None
    with pytest.raises(TypeError):
        fast.push()
    with pytest.raises(TypeError):
        fast.push(b"x", "left")  # end is keyword-only.
    with pytest.raises(TypeError):
        fast.pop(None, "left")


def lock_outcome(lock, **kwargs):
    got = outcome(lock.acquire, **kwargs)
    return got, lock.token == (got[1] if got[0] == "ok" else None)


def test_lock_matches_the_slow_path(st):
    fast = st.lock("fast-lock", ttl=5, timeout=0)
    slow = st.lock("slow-lock", ttl=5, timeout=0)
    for ttl in TTLS:
        got, token_kept = lock_outcome(fast, ttl=ttl)
        want = outcome(slow._k.acquire, 5 if ttl is None else ttl, 0, "")
        assert got[0] == want[0] and token_kept, ttl
        if got[0] == "raised":
            assert got == want, ttl
        else:
            assert fast.release() is True and slow._k.release(want[1]) is True
            assert fast.token is None and fast.release() is False
    for timeout in WAITS:
        got = outcome(fast.acquire, timeout=timeout)
        want = outcome(slow._k.acquire, 5, timeout, "")
        assert got[0] == want[0], timeout
        if got[0] == "raised":
            assert got == want, timeout
        else:
            assert fast.release() and slow._k.release(want[1])
    for owner in ["", "worker-1", "\u00e9", b"x", 7]:
        fast.owner = owner
        got = outcome(fast.acquire)
        want = outcome(slow._k.acquire, 5, 0, owner)
        assert got[0] == want[0], owner
        if got[0] == "raised":
            assert got == want, owner
        else:
            assert fast.info()["owner"] == slow._k.info()["owner"]
            assert fast.release() and slow._k.release(want[1])
    fast.owner = ""
    # Held by another handle: Timeout after the wait, with the wrapper's message.
    other = st.lock("fast-lock", ttl=5, timeout=0)
    token = other.acquire()
    with pytest.raises(shmstate.Timeout, match="lock 'fast-lock' still held after 0 s"):
        fast.acquire()
    with pytest.raises(shmstate.Timeout, match="after 0.01 s"):
        fast.acquire(timeout=0.01)
    assert fast.token is None and fast.release() is False
    assert other.token == token and other.release() is True
    with fast as held:
        assert held is fast and fast.token is not None and fast.info()["held"]
        with pytest.raises(shmstate.Timeout):
            other.acquire()
    assert fast.token is None and not fast.info()["held"]
    with pytest.raises(ValueError):
        with fast:
            raise ValueError("inside")
    assert not fast.info()["held"]
    with pytest.raises(TypeError):
        fast.acquire(5)  # ttl and timeout are keyword-only.
    with pytest.raises(TypeError):
        fast.release(1)


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
    lst = shmstate.List.__new__(shmstate.List)
    with pytest.raises(AttributeError):
        lst.push(b"x")
    with pytest.raises(AttributeError):
        lst.pop()
    k = shmstate.Lock.__new__(shmstate.Lock)
    with pytest.raises(AttributeError):
        k.acquire()
    with pytest.raises(AttributeError):
        k.release()
