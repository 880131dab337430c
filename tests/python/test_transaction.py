"""Client.transaction on both backends: shm (shm::Transaction through the module) and redis://
(WATCH/MULTI/EXEC through redis-py). The same code, the same answers: fn's result, its writes
applied together or not at all, fn run again on a conflict, Conflict after the last retry, and an
exception from fn applying nothing. Then processes transferring between 16 accounts while a
reader checks every total it sees in a transaction (the kill tests are in test_tx_kill.py)."""
import os
import subprocess
import sys
import uuid

import pytest

import shmstate
from conftest import Server

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import test_backends  # noqa: E402
from tx_child import ACCOUNTS, INITIAL  # noqa: E402

CHILD = os.path.join(HERE, "tx_child.py")
HAVE_REDIS = bool(test_backends.REDIS_SERVER and test_backends.REDIS_CLI)


@pytest.fixture(scope="module")
def shm_server():
    s = Server(workers=0, size="32MiB")
    yield s
    assert s.stop() == 0, s.log()


@pytest.fixture(scope="module")
def redis_node(tmp_path_factory):
    if not HAVE_REDIS:
        pytest.skip("needs redis-server and redis-cli (scripts/setup --test)")
    node = test_backends.RedisNode(str(tmp_path_factory.mktemp("redis")))
    yield node
    node.kill()


@pytest.fixture(params=["shm", "redis"])
def url(request):
    if request.param == "shm":
        return request.getfixturevalue("shm_server").name
    return f"redis://127.0.0.1:{request.getfixturevalue('redis_node').port}"


def client(url):
    return shmstate.connect(url) if "://" in url else shmstate.attach(url)


@pytest.fixture
def n():
    """Names unique to the test: the servers live for the whole module."""
    tag = "t" + uuid.uuid4().hex[:10]
    return lambda name: f"{tag}.{name}"


def test_commits_every_write_and_returns_fns_result(url, n):
    st = client(url)
    acct = st.dict(n("acct"))
    acct["a"], acct["b"] = b"100", b"5"

    def transfer(tx, amount):
        d = tx.dict(n("acct"))
        a, b = int(d["a"]), int(d["b"])
        d["a"], d["b"] = b"%d" % (a - amount), b"%d" % (b + amount)
        assert d["a"] == b"%d" % (a - amount)  # Reads see the transaction's own writes.
        d["new"] = b"x"
        return a - amount, b + amount

    assert st.transaction(transfer, 30) == (70, 35)
    assert (acct["a"], acct["b"], acct["new"]) == (b"70", b"35", b"x")


def test_an_exception_from_fn_applies_nothing(url, n):
    st = client(url)
    acct = st.dict(n("acct"))
    acct["a"] = b"1"

    def fails(tx):
        d = tx.dict(n("acct"))
        d["a"] = b"2"
        d["b"] = b"3"
        raise LookupError("no")

    with pytest.raises(LookupError):
        st.transaction(fails)
    assert acct["a"] == b"1" and acct.get("b") is None


def test_a_conflict_runs_fn_again_on_the_new_state(url, n):
    st = client(url)
    acct = st.dict(n("acct"))
    acct["a"] = b"10"
    runs = []

    def double(tx):
        d = tx.dict(n("acct"))
        value = int(d["a"])
        runs.append(value)
        if len(runs) == 1:
            acct["a"] = b"11"  # Another writer, between this read and the commit.
        d["a"] = b"%d" % (2 * value)
        return value

    assert st.transaction(double) == 11
    assert runs == [10, 11] and acct["a"] == b"22"


def test_conflict_after_the_last_retry(url, n):
    st = client(url)
    acct = st.dict(n("acct"))
    acct["a"] = b"0"
    runs = []

    def always_overtaken(tx):
        d = tx.dict(n("acct"))
        value = int(d["a"])
        runs.append(value)
        acct["a"] = b"%d" % (value + 1)
        d["a"] = b"-1"

    with pytest.raises(shmstate.Conflict):
        st.transaction(always_overtaken, retries=2)
    assert runs == [0, 1, 2] and acct["a"] == b"3"


def test_dict_methods_inside_a_transaction(url, n):
    st = client(url)
    d = st.dict(n("d"))
    d["k"] = b"v"
    d["n"] = b"5"
    version = d.entry("k")[1]

    def edit(tx):
        t = tx.dict(n("d"))
        out = [t.get("missing", b"default"), "k" in t, "zz" in t, t.entry("k")[:2]]
        out.append(t.set("k", b"w", if_version=version + 1000))  # Wrong version: not written.
        out.append(t.set("k", b"w", if_version=version))
        out.append(t.add("k", b"again"))  # Exists: not written.
        out.append(t.set("zz", b"r", mode="replace"))  # Absent: not written.
        out.append(t.incr("n", by=3))
        out.append(t.cas("n", b"8", b"9"))
        out.append(t.cas("n", b"8", b"10"))
        out.append(t.pop("n"))
        out.append(t.delete("n"))
        with pytest.raises(shmstate.InvalidArgument):
            len(t)
        with pytest.raises(shmstate.InvalidArgument):
            list(t.keys())
        return out

    assert st.transaction(edit) == [b"default", True, False, (b"v", version), False, True, False,
                                    False, 8, True, False, b"9", False]
    assert d["k"] == b"w" and "n" not in d and "zz" not in d


def test_counter_inside_a_transaction(url, n):
    st = client(url)
    hits = st.counter(n("hits"))
    hits.set(5)

    def count(tx):
        c = tx.counter(n("hits"))
        return [c.incr(2), c.value, c.cas(7, 9), c.cas(7, 1), int(c)]

    assert st.transaction(count) == [7, 7, True, False, 9]
    assert hits.value == 9


def test_list_inside_a_transaction(url, n):
    st = client(url)
    jobs = st.list(n("jobs"))
    jobs.push(b"old")

    def move(tx):
        q = tx.list(n("jobs"))
        out = [q.push(b"new"), len(q), q.pop(), q.pop(end="right"), q.pop()]
        q.push(b"kept", end="left")
        with pytest.raises(shmstate.InvalidArgument):
            q.pop(wait=1)
        return out

    assert st.transaction(move) == [2, 2, b"old", b"new", None]
    assert jobs.range() == [b"kept"]


def test_handles_kept_after_the_transaction_refuse_calls(url, n):
    st = client(url)
    kept = st.transaction(lambda tx: tx.dict(n("d")))
    with pytest.raises(shmstate.InvalidArgument):
        kept["k"] = b"v"
    assert st.dict(n("d")).get("k") is None


def test_arguments_are_checked(url, n):
    st = client(url)
    with pytest.raises(shmstate.InvalidType):
        st.transaction("not callable")
    with pytest.raises(shmstate.InvalidArgument):
        st.transaction(lambda tx: None, retries=-1)
    with pytest.raises(shmstate.InvalidType):
        st.transaction(lambda tx: tx.dict(n("d")).set("k", "a str value"))
    st.counter(n("c"))
    with pytest.raises(shmstate.WrongKind):
        st.transaction(lambda tx: tx.dict(n("c")))


def start(*args):
    return subprocess.Popen([sys.executable, "-u", CHILD, *map(str, args)],
                            stdout=subprocess.PIPE, text=True)


def replay(st, log_keys):
    """Balances recomputed from the transfer log; checks each logged transfer is whole."""
    balances = {a: INITIAL for a in ACCOUNTS}
    log = st.dict("txlog")
    for key in log_keys:
        source, target, amount = log[key].decode().split()
        balances[source] -= int(amount)
        balances[target] += int(amount)
    return balances


def reset_accounts(st):
    acct = st.dict("acct")
    for a in ACCOUNTS:
        acct[a] = b"%d" % INITIAL
    st.dict("txlog").clear()


def test_concurrent_transfers_keep_the_total(url):
    """Three writers and a reader at once: every total read in a transaction is exact, and the
    balances are what the log of committed transfers says."""
    st = client(url)
    reset_accounts(st)
    writers = [start("transfer", url, w, 1000 + w, 150) for w in range(3)]
    reader = start("read", url, INITIAL * len(ACCOUNTS), 300)
    acked = []
    for proc in writers:
        out, _ = proc.communicate(timeout=240)
        assert proc.returncode == 0
        acked += [line.split()[1] for line in out.splitlines() if line.startswith("t ")]
    out, _ = reader.communicate(timeout=240)
    assert reader.returncode == 0, out
    assert len(acked) == 450
    acct = st.dict("acct")
    assert replay(st, acked) == {a: int(acct[a]) for a in ACCOUNTS}
