"""One set of behavioural tests against the three backends of shmstate.connect(): shm:// (a
`shmstate serve`), redis:// (a redis-server) and redis+cluster:// (a real local Redis Cluster:
3 masters + 3 replicas), each started once for this module on free 127.0.0.1 ports and stopped
by pid. Ends with a master failover: every acknowledged counter increment survives it."""
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid

import numpy as np
import pytest

import shmstate
from conftest import Server, wait_until

REDIS_SERVER = shutil.which("redis-server")
REDIS_CLI = shutil.which("redis-cli")
pytestmark = pytest.mark.skipif(not (REDIS_SERVER and REDIS_CLI),
                                reason="needs redis-server and redis-cli (scripts/setup --test)")


def _free_port(also_bus=False):
    """A free port (and, for a cluster node, its bus port +10000 free as well)."""
    for _ in range(100):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port + 10000 > 65535 and also_bus:
            continue
        if also_bus:
            with socket.socket() as b:
                try:
                    b.bind(("127.0.0.1", port + 10000))
                except OSError:
                    continue
        return port
    raise RuntimeError("no free port")


def _cli(port, *args, timeout=10):
    return subprocess.run([REDIS_CLI, "-h", "127.0.0.1", "-p", str(port), *args],
                          capture_output=True, text=True, timeout=timeout).stdout


class RedisNode:
    """One redis-server on a free port in `workdir`, stopped by pid."""

    def __init__(self, workdir, cluster=False):
        self.port = _free_port(also_bus=cluster)
        self.dir = os.path.join(workdir, str(self.port))
        os.makedirs(self.dir)
        args = [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", self.dir,
                "--save", "", "--appendonly", "no", "--logfile", "redis.log"]
        if cluster:
            args += ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                     "--cluster-node-timeout", "1000"]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(lambda: self.proc.poll() is not None or
                    _cli(self.port, "ping").strip() == "PONG", 10, f"redis-server on {self.port}")
        assert self.proc.poll() is None, f"redis-server on {self.port} exited"

    def kill(self):
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)


@pytest.fixture(scope="module")
def workdir():
    path = tempfile.mkdtemp(prefix="shmstate-redis-")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def shm_server():
    s = Server(workers=0)
    yield s
    s.stop()


@pytest.fixture(scope="module")
def redis_node(workdir):
    node = RedisNode(workdir)
    yield node
    node.kill()


@pytest.fixture(scope="module")
def cluster(workdir):
    """6 nodes: `redis-cli --cluster create` makes 3 masters with a replica each."""
    nodes = []
    try:
        for _ in range(6):
            nodes.append(RedisNode(workdir, cluster=True))
        out = subprocess.run([REDIS_CLI, "--cluster", "create",
                              *[f"127.0.0.1:{n.port}" for n in nodes],
                              "--cluster-replicas", "1", "--cluster-yes"],
                             capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, out.stdout + out.stderr
        for n in nodes:
            wait_until(lambda: "cluster_state:ok" in _cli(n.port, "cluster", "info"), 20,
                        f"cluster_state:ok on {n.port}")
        # Every node knows every other one and the 3 masters cover all the slots.
        wait_until(lambda: all(_cli(n.port, "cluster", "nodes").count("connected") == 6
                                for n in nodes), 20, "every node connected")
        # And each replica has synced with its master (else WAIT 1 cannot be satisfied yet).
        for n in nodes:
            wait_until(lambda: "role:master" in _cli(n.port, "info", "replication") or
                        "master_link_status:up" in _cli(n.port, "info", "replication"), 20,
                        f"the replica {n.port} in sync")
        yield nodes
    finally:
        for n in nodes:
            n.kill()


def _cluster_url(nodes, query=""):
    return "redis+cluster://" + ",".join(f"127.0.0.1:{n.port}" for n in nodes) + query


@pytest.fixture(params=["shm", "redis", "cluster"])
def st(request):
    if request.param == "shm":
        client = shmstate.connect(f"shm://{request.getfixturevalue('shm_server').name}")
    elif request.param == "redis":
        client = shmstate.connect(f"redis://127.0.0.1:{request.getfixturevalue('redis_node').port}")
    else:
        client = shmstate.connect(_cluster_url(request.getfixturevalue("cluster")))
    client.backend = request.param
    return client


@pytest.fixture
def n():
    """Names unique to the test: the servers live for the whole module."""
    tag = "t" + uuid.uuid4().hex[:10]
    return lambda name: f"{tag}.{name}"


def test_connect_rejects_unknown_urls():
    with pytest.raises(shmstate.InvalidArgument):
        shmstate.connect("ftp://x")
    with pytest.raises(shmstate.InvalidArgument):
        shmstate.connect("redis+cluster://nohostport")


def test_counter(st, n):
    hits = st.counter(n("hits"))
    assert hits.incr() == 1 and hits.incr(by=5) == 6
    assert hits.value == 6 and int(hits) == 6
    assert hits.cas(6, 10) is True
    assert hits.cas(6, 11) is False and hits.value == 10
    hits.set(-3)
    assert hits.value == -3
    assert st.counter(n("hits")).value == -3  # Another handle sees the same word.
    st.counter(n("big"), init=2**63 - 2).incr()
    with pytest.raises(shmstate.InvalidArgument):
        st.counter(n("big")).incr()
    assert st.counter(n("big")).value == 2**63 - 1  # The failed add changed nothing.
    assert st.counter(n("start"), init=41).incr() == 42
    assert st.counter(n("start"), init=0).value == 42  # init applies only when created.


def test_dict_mapping_protocol_and_options(st, n):
    d = st.dict(n("cache"))
    d["k"] = b"v"
    assert d["k"] == b"v" and d[b"k"] == b"v"
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
    assert d.entry("k")[1] > version  # Every write gets a newer version.
    before = time.time() * 1000
    d.set("t", b"x", ttl=60)
    expires = d.entry("t")[2]
    assert before + 59_000 <= expires <= time.time() * 1000 + 61_000
    with pytest.raises(shmstate.InvalidArgument):
        d.set("t", b"x", ttl=-1)
    with pytest.raises(shmstate.InvalidArgument):
        d.set("t", b"x", mode="upsert")
    assert sorted(d.keys(prefix="n")) == [b"new"]
    d.clear()
    assert len(d) == 0 and list(d) == []


def test_dict_entries_expire(st, n):
    d = st.dict(n("ttl"))
    d.set("short", b"x", ttl=0.2)
    d.set("long", b"y", ttl=60)
    assert d["short"] == b"x"
    wait_until(lambda: d.get("short") is None, 10, "the 0.2 s entry to expire")
    assert "short" not in d and list(d) == [b"long"] and d["long"] == b"y"


def test_dict_default_ttl(st, n):
    d = st.dict(n("dflt"), default_ttl=300)
    d["k"] = b"v"
    assert time.time() * 1000 + 290_000 <= d.entry("k")[2] <= time.time() * 1000 + 301_000


def test_dict_incr_and_cas(st, n):
    d = st.dict(n("n"))
    assert d.incr("c") == 1 and d.incr("c", by=4) == 5 and d["c"] == b"5"
    assert d.incr("fresh", by=2, init=10) == 12
    d["text"] = b"abc"
    with pytest.raises(shmstate.InvalidArgument):
        d.incr("text")
    assert d["text"] == b"abc"
    assert d.cas("c", b"5", b"7") is True and d["c"] == b"7"
    assert d.cas("c", b"5", b"9") is False and d["c"] == b"7"
    assert d.cas("none", None, b"first") is True and d["none"] == b"first"
    assert d.cas("none", None, b"second") is False


def test_one_namespace_across_kinds(st, n):
    st.counter(n("taken"))
    with pytest.raises(shmstate.WrongKind) as e:
        st.dict(n("taken"))
    assert isinstance(e.value, TypeError) and e.value.code == "WrongType"
    with pytest.raises(shmstate.WrongKind):
        st.list(n("taken"))
    with pytest.raises(shmstate.InvalidArgument):
        st.counter("bad/name")
    with pytest.raises(shmstate.InvalidArgument):
        st.counter("{tag}")


def test_list_queue_and_blocking_pop(st, n):
    jobs = st.list(n("jobs"))
    assert jobs.push(b"a") == 1 and jobs.push(b"b") == 2 and jobs.push(b"z", end="left") == 3
    assert len(jobs) == 3 and jobs.range() == [b"z", b"a", b"b"] and jobs.range(-1) == [b"b"]
    assert jobs.pop() == b"z" and jobs.pop(end="right") == b"b" and jobs.pop() == b"a"
    assert jobs.pop() is None and jobs.pop(wait=0.05) is None
    # Another thread pushes while this one waits in pop: the wait lets it run.
    pusher = threading.Timer(0.2, lambda: jobs.push(b"late"))
    pusher.start()
    assert jobs.pop(wait=20) == b"late"
    pusher.join()
    small = st.list(n("small"), max_items=2, max_item_bytes=4)
    small.push(b"1")
    small.push(b"2")
    with pytest.raises(shmstate.Full):
        small.push(b"3")
    with pytest.raises(shmstate.InvalidArgument):
        st.list(n("other"), max_item_bytes=4).push(b"12345")
    assert small.range() == [b"1", b"2"]


def test_list_is_a_queue_for_many_consumers(st, n):
    """4 consumers blocked in pop share 400 pushed items: each item exactly once."""
    q = st.list(n("q"))
    got, lock = [], threading.Lock()

    def consume():
        while True:
            item = q.pop(wait=5)
            if item is None or item == b"stop":
                return
            with lock:
                got.append(item)

    threads = [threading.Thread(target=consume) for _ in range(4)]
    for t in threads:
        t.start()
    for i in range(400):
        q.push(b"%d" % i)
    for _ in threads:
        q.push(b"stop")
    for t in threads:
        t.join(timeout=30)
    assert sorted(got, key=int) == [b"%d" % i for i in range(400)]


def test_lock_lease_and_fencing_tokens(st, n):
    with st.lock(n("report"), ttl=30) as held:
        first = held.token
        assert first and held.info()["held"]
        other = st.lock(n("report"), ttl=30, timeout=0.2)
        with pytest.raises(shmstate.Timeout):
            other.acquire()
        assert held.refresh(60)
    assert not st.lock(n("report")).info()["held"]
    assert held.release() is False  # Released already.
    short = st.lock(n("report"), ttl=0.2)
    stale = short.acquire()
    taker = st.lock(n("report"), ttl=30, timeout=10)
    newer = taker.acquire()  # Waits for the 0.2 s lease to run out.
    assert len({first, stale, newer}) == 3
    if st.backend != "shm":
        # On Redis the token is a fencing token: it only grows, per lock. (shm:// tokens are
        # random: they prove the holder, they do not order holders; docs/scaling.md.)
        assert first < stale < newer
    assert short.refresh(30) is False and short.release() is False  # Not ours any more.
    assert taker.info()["held"] and taker.release() is True
    with st.lock(n("report"), ttl=30, timeout=0):
        pass


def test_lock_excludes_other_threads(st, n):
    """4 threads each do 25 unguarded read-modify-writes of a dict value under the lock."""
    d = st.dict(n("guarded"))
    d["v"] = b"0"
    tokens = []

    def work():
        lock = st.lock(n("mutex"), ttl=30, timeout=30)
        for _ in range(25):
            with lock:
                tokens.append(lock.token)
                d["v"] = b"%d" % (int(d["v"]) + 1)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert d["v"] == b"100"
    assert len(set(tokens)) == 100


def test_sessions(st, n):
    s = st.sessions(n("sessions"))
    sid = s.create({"user": "ann"})
    assert len(sid) == 32
    s.set_field(sid, "k", b"v")
    assert s.incr(sid, "visits") == 1 and s.incr(sid, "visits", 2) == 3
    assert s.get(sid) == {"user": "ann", "k": "v", "visits": 3}
    assert s.delete_field(sid, "k") and "k" not in s.get(sid)
    s.put(sid, {"only": [1, 2], "big": 2**62})
    assert s.get(sid) == {"only": [1, 2], "big": 2**62}
    assert s.delete(sid) and s.get(sid) is None
    assert s.get("0" * 32) is None
    assert s.get(s.create()) == {}
    with pytest.raises(shmstate.InvalidArgument):
        s.set_field(sid, "bin", b"\xff")
    assert s.ttl == 1800


def test_sessions_expire_when_idle(st, n):
    s = st.sessions(n("short"), ttl=0.3)
    sid = s.create({"a": 1})
    assert s.get(sid) == {"a": 1}
    # Every get refreshes the expiry, so look only after more than the idle time each time.
    for pause in (0.5, 1, 2, 4):
        time.sleep(pause)
        if s.get(sid) is None:
            break
    assert s.get(sid) is None


def test_array_slicing_matches_numpy(st, n):
    rng = np.random.default_rng(7)
    expected = rng.standard_normal((6, 5, 4))
    a = st.array_from_numpy(n("grid"), expected)
    assert a.shape == (6, 5, 4) and a.dtype == np.float64 and a.nbytes == expected.nbytes
    np.testing.assert_array_equal(a.to_numpy(), expected)
    np.testing.assert_array_equal(np.asarray(a), expected)
    import random
    gen = random.Random(11)

    def part():
        choice = gen.randrange(3)
        if choice == 0:
            return gen.randrange(-4, 4)
        if choice == 1:
            return Ellipsis
        return slice(gen.choice([None, -3, 0, 1, 2]), gen.choice([None, -1, 3, 9]),
                     gen.choice([None, 1, 2, -1, -2]))

    for _ in range(100):
        key = tuple(part() for _ in range(gen.randrange(1, 4)))
        if sum(k is Ellipsis for k in key) > 1:
            continue
        np.testing.assert_array_equal(a[key], expected[key], err_msg=repr(key))
    assert isinstance(a[1, 2, 3], np.float64) and a[1, 2, 3] == expected[1, 2, 3]


def test_array_larger_than_a_chunk(st, n):
    """300000 int32 (1.2 MB: many 64 KiB chunks on Redis): slices across chunk borders."""
    expected = np.arange(300_000, dtype=np.int32).reshape(600, 500)
    a = st.array_from_numpy(n("big"), expected)
    np.testing.assert_array_equal(a[31:35, 400:], expected[31:35, 400:])
    np.testing.assert_array_equal(a[::97, ::-13], expected[::97, ::-13])
    a[100:300, 7] = -1
    expected[100:300, 7] = -1
    np.testing.assert_array_equal(a.to_numpy(), expected)


def test_array_writes_atomics_and_errors(st, n):
    a = st.array(n("m"), dtype="int32", shape=(3, 4), fill=1)
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
        a[0] = np.arange(5)
    assert st.array(n("m")).shape == (3, 4)
    with pytest.raises(shmstate.AlreadyExists):
        st.array(n("m"), dtype="float64", shape=(3, 4))
    with pytest.raises(shmstate.NotFound):
        st.array(n("absent"))
    with pytest.raises(shmstate.InvalidArgument):
        st.array(n("x"), dtype="complex128", shape=(2,))


def test_array_atomic_adds_from_threads_are_exact(st, n):
    a = st.array(n("hist"), dtype="int64", shape=(4,), fill=0)

    def work(i):
        for _ in range(50):
            a.add((i % 4,), 1)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert a.to_numpy().tolist() == [100, 100, 100, 100]


def test_objects_and_delete(st, n):
    st.counter(n("a"))
    st.dict(n("b"))["x}"] = b"1"  # A key that ends like a hash tag is not an object.
    st.list(n("c")).push(b"x")
    st.array(n("d"), dtype="uint8", shape=(3,))
    prefix = n("")
    assert st.objects(prefix) == [(n("a"), "counter"), (n("b"), "dict"), (n("c"), "list"),
                                  (n("d"), "array")]
    assert st.delete(n("a")) is True and st.delete(n("a")) is False
    assert st.delete(n("b")) and st.delete(n("c")) and st.delete(n("d"))
    assert st.objects(prefix) == []
    assert st.dict(n("b")).get("x}") is None and len(st.list(n("c"))) == 0  # Nothing left over.


def test_counter_is_exact_across_threads(st, n):
    hits = st.counter(n("hits"))
    got, lock = [], threading.Lock()

    def work():
        mine = [hits.incr() for _ in range(250)]
        with lock:
            got.extend(mine)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(got) == list(range(1, 1001))


def test_an_objects_keys_share_one_slot(cluster, n):
    """Every key of a dict, list, sessions and array lives on one node (one hash tag)."""
    import redis
    st = shmstate.connect(_cluster_url(cluster))
    d = st.dict(n("d"))
    for i in range(20):
        d[b"k%d" % i] = b"v"
    st.list(n("l")).push(b"x")
    s = st.sessions(n("s"))
    s.create({"a": 1})
    st.array_from_numpy(n("arr"), np.zeros(100_000))
    rc = redis.cluster.RedisCluster(host="127.0.0.1", port=cluster[0].port)
    try:
        for name in ("d", "l", "s", "arr"):
            keys = list(rc.scan_iter(match=f"ss:{{{n(name)}}}*", target_nodes=rc.ALL_NODES))
            assert len(keys) >= 2, (name, keys)
            assert len({rc.keyslot(k) for k in keys}) == 1, (name, keys)
    finally:
        rc.close()


def test_a_stopped_redis_raises_unavailable(workdir, n):
    node = RedisNode(workdir)
    st = shmstate.connect(f"redis://127.0.0.1:{node.port}")
    hits = st.counter(n("hits"))
    assert hits.incr() == 1
    node.kill()
    with pytest.raises(shmstate.Unavailable):
        hits.incr()
    with pytest.raises(shmstate.Unavailable):
        shmstate.connect(f"redis://127.0.0.1:{node.port}")


def _slot_owner(port, key):
    """(master port, its replica's port) of the node serving key's slot."""
    slot = int(_cli(port, "cluster", "keyslot", key).strip())
    lines = [line.split() for line in _cli(port, "cluster", "nodes").splitlines() if line]
    for f in lines:
        if "master" in f[2] and "fail" not in f[2]:
            for r in f[8:]:
                lo, _, hi = r.partition("-")
                if r[0] != "[" and int(lo) <= slot <= int(hi or lo):
                    replica = next(int(g[1].split(":")[1].split("@")[0]) for g in lines
                                   if g[3] == f[0])
                    return int(f[1].split(":")[1].split("@")[0]), replica
    raise AssertionError(f"no master serves slot {slot}")


def test_master_failover_keeps_every_acknowledged_increment(cluster, n):
    """With wait_replicas=1 an increment is acknowledged once its master and the master's one
    replica have it. A thread increments; once 200 are acknowledged the counter's master is
    SIGKILLed under it (the thread stops at its next call). The replica takes over, and the
    counter holds every acknowledged increment, plus at most the calls that raised. Runs last:
    the cluster keeps a master without a replica."""
    url = _cluster_url(cluster)
    name = n("acked")
    master_port, replica_port = _slot_owner(cluster[0].port, f"ss:{{{name}}}")
    master = next(node for node in cluster if node.port == master_port)
    hits = shmstate.connect(url + "?wait_replicas=1&wait_timeout=5").counter(name)
    acked, errors, stop = [], [], threading.Event()

    def increment():
        while not stop.is_set():
            try:
                acked.append(hits.incr())
            except shmstate.Unavailable as e:
                errors.append(e)

    writer = threading.Thread(target=increment)
    writer.start()
    try:
        wait_until(lambda: len(acked) >= 200 or not writer.is_alive(), 30, "200 increments")
        master.kill()
    finally:
        stop.set()
        writer.join(timeout=30)
    assert not writer.is_alive()
    wait_until(lambda: _cli(replica_port, "role").startswith("master") and
                "cluster_state:ok" in _cli(replica_port, "cluster", "info"), 30,
                f"the replica {replica_port} to take over")

    # No WAIT: the new master has no replica left. The dead master comes first in the URL, as
    # it may in a client's configuration: connect must go on to the live nodes.
    plain = shmstate.connect(_cluster_url([master] + [n for n in cluster if n is not master]))
    value = None

    def read():
        nonlocal value
        try:
            value = plain.counter(name).value
            return True
        except shmstate.Unavailable:
            return False
    wait_until(read, 30, "the counter to be served again")
    assert acked == list(range(1, len(acked) + 1))  # One writer: each ack is the next value.
    # Nothing acknowledged was lost; a call that raised may or may not have been applied.
    assert len(acked) <= value <= len(acked) + len(errors)
    # Without a replica a waiting write is applied but not acknowledged: an error, not a loss.
    with pytest.raises(shmstate.Unavailable, match="not acknowledged"):
        hits.incr()
    assert plain.counter(name).incr() == value + 2
