"""Behaviour of the shmstate module against a real server: every kind, errors, the HTTP view of
the same state, GIL release on waits, fork safety and exact counts across processes."""
import json
import os
import random
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import shmstate


def test_attach_to_a_missing_server_names_it_and_how_to_start_it():
    with pytest.raises(shmstate.NotFound, match=r"shmstate serve --name no-such-server"):
        shmstate.attach("no-such-server")
    with pytest.raises(shmstate.InvalidArgument):
        shmstate.attach("../etc")


def test_connect_shm_url_is_attach(server):
    st = shmstate.connect(f"shm://{server.name}")
    assert st.name == server.name and st.generation == 1
    with pytest.raises(shmstate.InvalidArgument):
        shmstate.connect("ftp://x")


def test_counter(st, server):
    hits = st.counter("hits")
    assert hits.incr() == 1
    assert hits.incr(by=5) == 6
    assert hits.value == 6 and int(hits) == 6
    assert hits.cas(6, 10) is True
    assert hits.cas(6, 11) is False and hits.value == 10
    hits.set(-3)
    assert hits.value == -3
    status, body = server.http("GET", "/v1/counters/hits")  # The same word, seen over HTTP.
    assert status == 200 and json.loads(body)["value"] == -3
    st.counter("big", init=2**63 - 2).incr()
    with pytest.raises(shmstate.InvalidArgument):
        st.counter("big").incr()
    assert st.counter("big").value == 2**63 - 1  # The failed add changed nothing.
    assert st.counter("start", init=41).incr() == 42


def test_dict_mapping_protocol_and_options(st, server):
    d = st.dict("cache")
    d["k"] = b"v"
    assert d["k"] == b"v" and d[b"k"] == b"v"  # str keys are their UTF-8 bytes.
    assert "k" in d and "x" not in d
    assert d.get("x") is None and d.get("x", b"dflt") == b"dflt"
    with pytest.raises(KeyError):
        d["x"]
    with pytest.raises(shmstate.NotFound):
        del d["x"]
    d["k2"] = bytearray(b"ba")
    d["k3"] = memoryview(b"mv")
    assert sorted(d) == [b"k", b"k2", b"k3"] and len(d) == 3
    assert dict(d.items()) == {b"k": b"v", b"k2": b"ba", b"k3": b"mv"}
    del d["k2"]
    assert d.pop("k3") == b"mv" and d.pop("k3", None) is None
    assert sorted(d.keys()) == [b"k"]
    with pytest.raises(TypeError, match="encode"):
        d["s"] = "text"
    with pytest.raises(TypeError):
        d[1] = b"x"
    assert d.add("k", b"other") is False and d["k"] == b"v"
    assert d.add("new", b"1") is True
    assert d.set("absent", b"x", mode="replace") is False and "absent" not in d
    value, version, expires = d.entry("k")
    assert value == b"v" and expires == 0
    assert d.set("k", b"w", if_version=version + 1000) is False
    assert d.set("k", b"w", if_version=version) is True and d["k"] == b"w"
    before = time.time() * 1000
    d.set("t", b"x", ttl=60)
    expires = d.entry("t")[2]
    assert before + 59_000 <= expires <= time.time() * 1000 + 61_000
    with pytest.raises(shmstate.InvalidArgument):
        d.set("t", b"x", ttl=-1)
    status, body = server.http("GET", "/v1/dicts/cache/k")
    assert status == 200 and body == b"w"
    d.clear()
    assert len(d) == 0


def test_dict_incr_and_cas(st):
    d = st.dict("n")
    assert d.incr("c") == 1 and d.incr("c", by=4) == 5 and d["c"] == b"5"
    assert d.incr("fresh", by=2, init=10) == 12
    d["text"] = b"abc"
    with pytest.raises(shmstate.InvalidArgument):
        d.incr("text")
    assert d.cas("c", b"5", b"7") is True and d["c"] == b"7"
    assert d.cas("c", b"5", b"9") is False and d["c"] == b"7"
    assert d.cas("none", None, b"first") is True and d["none"] == b"first"
    assert d.cas("none", None, b"second") is False


def test_one_namespace_across_kinds(st):
    st.counter("taken")
    with pytest.raises(shmstate.WrongKind) as e:
        st.dict("taken")
    assert isinstance(e.value, TypeError) and e.value.code == "WrongType"
    with pytest.raises(shmstate.InvalidArgument):
        st.counter("bad/name")


def test_list_queue_and_blocking_pop_releases_the_gil(st):
    jobs = st.list("jobs")
    assert jobs.push(b"a") == 1 and jobs.push(b"b") == 2 and jobs.push(b"z", end="left") == 3
    assert len(jobs) == 3 and jobs.range() == [b"z", b"a", b"b"] and jobs.range(-1) == [b"b"]
    assert jobs.pop() == b"z" and jobs.pop(end="right") == b"b" and jobs.pop() == b"a"
    assert jobs.pop() is None and jobs.pop(wait=0.05) is None
    # A thread of this process pushes while the main thread waits in pop: it can only run if the
    # wait released the GIL.
    pusher = threading.Timer(0.2, lambda: st.list("jobs").push(b"late"))
    pusher.start()
    started = time.monotonic()
    assert jobs.pop(wait=20) == b"late"
    assert time.monotonic() - started < 15
    pusher.join()


def test_lock_context_manager_and_timeout(st):
    with st.lock("report", ttl=30) as held:
        assert held.token and held.info()["held"]
        other = st.lock("report", ttl=30, timeout=0.2)
        with pytest.raises(shmstate.Timeout):
            other.acquire()
        assert held.refresh(60)
    assert not st.lock("report").info()["held"]
    with st.lock("report", ttl=30, timeout=0):
        pass


def test_sessions(st, server):
    s = st.sessions()
    sid = s.create({"user": "ann"})
    assert len(sid) == 32
    s.set_field(sid, "k", b"v")
    assert s.incr(sid, "visits") == 1 and s.incr(sid, "visits", 2) == 3
    assert s.get(sid) == {"user": "ann", "k": "v", "visits": 3}
    assert s.delete_field(sid, "k") and "k" not in s.get(sid)
    s.put(sid, {"only": [1, 2]})
    assert s.get(sid) == {"only": [1, 2]}
    assert s.delete(sid) and s.get(sid) is None
    assert s.get("0" * 32) is None
    with pytest.raises(shmstate.InvalidArgument):
        s.set_field(sid, "bin", b"\xff")
    assert s.ttl == 1800


def test_array_slicing_matches_numpy(st):
    rng = np.random.default_rng(7)
    expected = rng.standard_normal((6, 5, 4))
    a = st.array_from_numpy("grid", expected)
    assert a.shape == (6, 5, 4) and a.dtype == np.float64 and a.nbytes == expected.nbytes
    np.testing.assert_array_equal(a.to_numpy(), expected)
    np.testing.assert_array_equal(np.asarray(a), expected)
    gen = random.Random(11)

    def part():
        choice = gen.randrange(3)
        if choice == 0:
            return gen.randrange(-4, 4)
        if choice == 1:
            return Ellipsis
        return slice(gen.choice([None, -3, 0, 1, 2]), gen.choice([None, -1, 3, 9]),
                     gen.choice([None, 1, 2, -1, -2]))

    for _ in range(300):
        key = tuple(part() for _ in range(gen.randrange(1, 4)))
        if sum(k is Ellipsis for k in key) > 1:
            continue
        np.testing.assert_array_equal(a[key], expected[key], err_msg=repr(key))
    assert isinstance(a[1, 2, 3], np.float64) and a[1, 2, 3] == expected[1, 2, 3]


def test_array_writes_atomics_and_errors(st, server):
    a = st.array("m", dtype="int32", shape=(3, 4), fill=1)
    assert a.to_numpy().tolist() == [[1] * 4] * 3
    a[0] = np.arange(4)
    a[1:, ::2] = 7
    a[2, 1] = np.int64(9)
    expected = np.array([[0, 1, 2, 3], [7, 1, 7, 1], [7, 9, 7, 1]], dtype=np.int32)
    np.testing.assert_array_equal(a.to_numpy(), expected)
    v0 = a.version
    assert a.add((0, 1), 5) == 1 and a[0, 1] == 6 and a.version > v0
    assert a.cas((0, 1), 6, 60) == (True, 6) and a.cas((0, 1), 6, 61) == (False, 60)
    assert a.max((0, 0), 100) == 0 and a.min((0, 0), -2) == 100 and a[0, 0] == -2
    a.apply("mul", 2, np.s_[2])
    assert a[2].tolist() == [14, 18, 14, 2]
    # Advanced indexing (issue 21): read as numpy reads it, a copy; refused in writes.
    np.testing.assert_array_equal(a[[0, 1]], a.to_numpy()[[0, 1]])
    with pytest.raises(shmstate.InvalidArgument, match="advanced indexing"):
        a[[0, 1]] = 5
    with pytest.raises(shmstate.InvalidArgument):
        a[5]
    with pytest.raises(ValueError):
        a[0] = np.arange(5)  # Does not broadcast.
    assert st.array("m").shape == (3, 4)  # Opens the existing one.
    with pytest.raises(shmstate.AlreadyExists):
        st.array("m", dtype="float64", shape=(3, 4))
    with pytest.raises(shmstate.NotFound):
        st.array("absent")
    with pytest.raises(shmstate.InvalidArgument):
        st.array("x", dtype="complex128", shape=(2,))
    status, body = server.http("GET", "/v1/arrays/m/data?slice=2")
    assert status == 200 and json.loads(body)["data"] == [14, 18, 14, 2]


def test_objects_and_delete(st):
    st.counter("o.a")
    st.dict("o.b")
    assert st.objects("o.") == [("o.a", "counter"), ("o.b", "dict")]
    assert st.delete("o.a") is True and st.delete("o.a") is False
    assert st.objects("o.") == [("o.b", "dict")]
    assert "o.b" in repr(st.dict("o.b"))


def _incr_in_child(name, n, attach_in_child, preloaded, out_fd):
    hits = shmstate.attach(name).counter("hits") if attach_in_child else preloaded
    got = [hits.incr() for _ in range(n)]
    os.write(out_fd, (json.dumps(got) + "\n").encode())


@pytest.mark.parametrize("attach_in_child", [False, True], ids=["attach-before-fork", "after"])
def test_forked_processes_count_exactly(server, attach_in_child):
    """The gunicorn shapes: --preload (handles made before fork used in children) and post_fork."""
    preloaded = None if attach_in_child else shmstate.attach(server.name).counter("hits")
    if preloaded is not None:
        preloaded.incr(by=0)
    read_fd, write_fd = os.pipe()
    children, per_child = 4, 2000
    pids = []
    for _ in range(children):
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                _incr_in_child(server.name, per_child, attach_in_child, preloaded, write_fd)
            except BaseException:
                code = 1
            os._exit(code)
        pids.append(pid)
    os.close(write_fd)
    with os.fdopen(read_fd) as lines:
        results = [json.loads(line) for line in lines]
    for pid in pids:
        assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
    values = sorted(v for r in results for v in r)
    assert values == list(range(1, children * per_child + 1))


def test_stats_count_live_attached_clients_only(server):
    st = shmstate.attach(server.name)
    st.counter("hits").incr()  # This process now holds an intent slot.
    before = server.stats()["clients"]
    assert before >= 1
    child = subprocess.Popen(
        [sys.executable, "-c", "import sys, shmstate; hits = shmstate.attach(sys.argv[1])"
         ".counter('hits'); hits.incr(); print('ready', flush=True); sys.stdin.read()",
         server.name],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline() == "ready\n"
    assert server.stats()["clients"] == before + 1
    status, metrics = server.http("GET", "/metrics")
    assert f"shmstate_attached_clients {before + 1}\n" in metrics.decode()
    child.kill()
    child.wait(timeout=10)
    assert server.stats()["clients"] == before  # Dead is not live, even before the manager reaps.
    server.wait_log(f"attached client pid {child.pid} is gone", timeout=10)


def test_limits_are_the_librarys_one_table(st):
    """shmstate.LIMITS is shm/limits.h (docs/limits.md): the bounds the module enforces."""
    assert shmstate.LIMITS["key"] == 65536
    assert shmstate.LIMITS["value"] == 16 << 20
    assert shmstate.LIMITS["object_name"] == 200
    d = st.dict("limits")
    longest = b"k" * shmstate.LIMITS["key"]
    d[longest] = b"v"
    assert d[longest] == b"v"
    with pytest.raises(shmstate.InvalidArgument, match="key longer than 65536 bytes"):
        d[longest + b"k"] = b"v"
    assert len(d) == 1
    with pytest.raises(shmstate.InvalidArgument):
        st.dict("n" * (shmstate.LIMITS["object_name"] + 1))
