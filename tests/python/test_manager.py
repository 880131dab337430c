"""shmstate.Manager(): lifecycle (a private server, gone after shutdown, `with`, or the creator's
death, nothing left in /dev/shm), attaching by name, proxies through pickling, the stdlib's repr,
dict keys of different types, a lock held by a dead process, and writers SIGKILLed inside proxy
calls at random moments and at each crash point of the commit protocol (every acknowledged
change there, every object whole, the lock never stuck). CPython's own manager tests run in
tests/python/cpython_manager/."""
import collections
import glob
import multiprocessing
import os
import pickle
import random
import re
import signal
import subprocess
import sys
import textwrap
import time

import pytest

import shmstate

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from writer_child import check  # noqa: E402

CHILD = os.path.join(HERE, "manager_child.py")


def process_state(pid):
    """The state letter of /proc/<pid>/stat, or "" once the process is gone (even mid-read)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0]
    except (OSError, IndexError):
        return ""


def server_gone(name, timeout=20.0):
    """Waits (bounded) until no segment or lock file of `name` is left in /dev/shm."""
    deadline = time.monotonic() + timeout
    while glob.glob(f"/dev/shm/{name}.*"):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_shutdown_and_with_leave_nothing():
    m = shmstate.Manager()
    name = m.address
    assert glob.glob(f"/dev/shm/{name}.*")
    d = m.dict()
    d["a"] = [1, 2]
    assert d["a"] == [1, 2]
    m.shutdown()
    assert server_gone(name)
    with shmstate.Manager() as m2:
        name = m2.address
        m2.list([1])
    assert server_gone(name)


@pytest.mark.parametrize("how", ["exit", "sigkill"])
def test_server_stops_when_the_creator_ends(how):
    code = textwrap.dedent("""
        import os, signal, sys, shmstate
        m = shmstate.Manager()
        m.dict()["k"] = 1
        print(m.address, m._server.proc.pid, flush=True)
        if sys.argv[1] == "sigkill":
            os.kill(os.getpid(), signal.SIGKILL)
    """)
    proc = subprocess.run([sys.executable, "-c", code, how], capture_output=True, text=True,
                          timeout=60)
    name, pid = proc.stdout.split()
    assert server_gone(name), f"{how}: the server's segment is still there"
    deadline = time.monotonic() + 20
    while process_state(pid) not in ("", "Z") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert process_state(pid) in ("", "Z"), f"{how}: the server (pid {pid}) still runs"


def test_attach_by_name_to_a_running_server(server):
    m = shmstate.Manager(name=server.name)
    d = m.dict(x=1)
    other = shmstate.Manager(name=server.name)
    assert pickle.loads(pickle.dumps(d))["x"] == 1
    m.shutdown()  # Attached, not started: the server keeps running.
    assert other.dict() is not None
    assert server.proc.poll() is None


def _child_uses(d, lst, lock, q, ev):
    d["child"] = os.getpid()
    lst.append("from child")
    lock.acquire()  # Exits holding it: the parent releases it, as in the stdlib.
    q.put({"pid": os.getpid()})
    ev.set()


@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_proxies_pass_to_children(method):
    ctx = multiprocessing.get_context(method)
    with shmstate.Manager() as m:
        d, lst, lock, q, ev = m.dict(), m.list(), m.Lock(), m.Queue(), m.Event()
        p = ctx.Process(target=_child_uses, args=(d, lst, lock, q, ev))
        p.start()
        p.join(60)
        assert p.exitcode == 0
        assert d["child"] == p.pid and lst[:] == ["from child"]
        assert q.get(timeout=10) == {"pid": p.pid} and ev.is_set()
        lock.release()  # Taken by the dead child: a release from here is valid.
        with pytest.raises(RuntimeError):
            lock.release()


def test_repr_and_str_follow_the_stdlib():
    with shmstate.Manager() as m:
        d = m.dict({1: 2})
        assert re.fullmatch(r"<DictProxy object, typeid 'dict' at 0x[0-9a-f]+>", repr(d))
        assert str(d) == "{1: 2}"
        assert re.fullmatch(r"<AcquirerProxy object, typeid 'Lock' at 0x[0-9a-f]+>",
                            repr(m.Lock()))
        assert re.fullmatch(r"<AutoProxy\[Queue\] object, typeid 'Queue' at 0x[0-9a-f]+>",
                            repr(m.Queue()))
        assert re.fullmatch(r"<ListProxy object, typeid 'list' at 0x[0-9a-f]+>", repr(m.list()))


def test_equal_keys_of_different_types_are_one_key():
    with shmstate.Manager() as m:
        d = m.dict()
        d[1] = "int"
        d[1.0] = "float"
        d[True] = "bool"
        assert len(d) == 1 and d[1] == "bool" and d.keys() == [1]
        d[(1, "a")] = "t"
        d[b"1"] = "bytes"
        d["1"] = "str"
        assert d[(1, "a")] == "t" and d[b"1"] == "bytes" and d["1"] == "str" and len(d) == 4
        with pytest.raises(TypeError):
            d[[1]] = 2
        big = "k" * 5000  # Long keys are hashed; the stored key is still the key.
        d[big] = 1
        assert d[big] == 1 and big in d.keys()


def test_register_is_refused_clearly():
    with pytest.raises(NotImplementedError, match="BaseManager"):
        shmstate.SyncManager.register("Thing", dict)


def _hold_and_die(lock, sem):
    lock.acquire()
    sem.acquire()
    os.kill(os.getpid(), signal.SIGKILL)


def test_units_held_by_a_dead_process_are_taken_back():
    with shmstate.Manager() as m:
        lock, sem = m.Lock(), m.BoundedSemaphore(1)
        p = multiprocessing.get_context("fork").Process(target=_hold_and_die, args=(lock, sem))
        p.start()
        p.join(30)
        assert p.exitcode == -signal.SIGKILL
        assert lock.acquire(timeout=10) and lock.owner_died
        assert sem.acquire(timeout=10) and sem.owner_died
        lock.release()
        sem.release()
        assert lock.acquire(timeout=10) and not lock.owner_died


def _take_one(sem):
    sem.acquire()  # A signal consumed: the unit is this process's for good.


def test_a_plain_semaphore_unit_is_not_handed_out_again_after_its_taker_exits():
    with shmstate.Manager() as m:
        sem = m.Semaphore(1)
        p = multiprocessing.get_context("fork").Process(target=_take_one, args=(sem,))
        p.start()
        p.join(30)
        assert p.exitcode == 0
        assert not sem.acquire(timeout=1.2)  # Past the 0.5 s liveness re-check: still none.
        sem.release()
        assert sem.acquire(timeout=10) and not sem.owner_died


class Acks:
    def __init__(self):
        self.dict_seq = {}
        self.items = []
        self.values = []
        self.queued = []

    def read(self, lines):
        for line in lines:
            kind, _, rest = line.rstrip("\n").partition(" ")
            if kind == "d":
                key, seq = rest.split()
                self.dict_seq[key] = max(self.dict_seq.get(key, -1), int(seq))
            elif kind == "l":
                self.items.append(rest)
            elif kind == "v":
                self.values.append(int(rest))
            elif kind == "q":
                self.queued.append(rest)


def start_writer(handles, writer, seed, env=None):
    return subprocess.Popen([sys.executable, "-u", CHILD, handles, str(writer), str(seed)],
                            stdout=subprocess.PIPE, text=True,
                            env=dict(os.environ, **(env or {})))


def finish(proc):
    rest = proc.stdout.read()
    proc.stdout.close()
    proc.wait(timeout=30)
    return rest.splitlines(keepends=True)


def verify(objects, acks, killed):
    d, lst, value, lock, q, slots = objects
    assert len(slots) == 8
    for item in slots[:]:
        if item is not None:
            check(item)
    for key, seq in acks.dict_seq.items():
        writer, stored = check(d[key])
        assert stored >= seq, f"{key}: acknowledged seq {seq} lost (have {stored})"
    items = lst[:]
    for item in items:
        check(item.encode())
    counts = collections.Counter(items)
    for item in acks.items:
        assert counts[item] == 1, f"acknowledged item {item[:30]} appears {counts[item]} times"
    assert len(items) <= len(acks.items) + killed
    assert len(set(acks.values)) == len(acks.values), "two increments under the lock saw one value"
    assert value.value >= max(acks.values, default=0)
    assert value.value <= len(acks.values) + killed
    assert lock.acquire(timeout=10), "the lock is stuck"
    lock.release()
    queued = []
    while True:
        try:
            queued.append(q.get_nowait())
        except Exception:
            break
    for item in queued:
        check(item.encode())
    counts = collections.Counter(queued)
    for item in acks.queued:
        assert counts[item] == 1


def test_writers_killed_at_random_moments():
    rng = random.Random(22)
    with shmstate.Manager() as m:
        objects = (m.dict(), m.list(), m.Value("i", 0), m.Lock(), m.Queue(), m.list([None] * 8))
        handles = pickle.dumps(objects).hex()
        acks = Acks()
        killed = 0
        for round_ in range(12):
            procs = [start_writer(handles, round_ * 3 + i, rng.randrange(1 << 30))
                     for i in range(3)]
            for proc in procs:  # Each writer is running its loop before it can be killed.
                acks.read([proc.stdout.readline()])
            time.sleep(rng.uniform(0.01, 0.15))
            for proc in procs:
                proc.send_signal(signal.SIGKILL)
                killed += 1
            for proc in procs:
                acks.read(finish(proc))
        verify(objects, acks, killed)


CRASH_POINTS = ["after_allocate", "after_intent", "after_commit", "before_free",
                "cache_take", "cache_put", "inside_allocator"]


@pytest.mark.parametrize("point", CRASH_POINTS)
def test_writer_dies_at_each_crash_point(point):
    with shmstate.Manager() as m:
        objects = (m.dict(), m.list(), m.Value("i", 0), m.Lock(), m.Queue(), m.list([None] * 8))
        handles = pickle.dumps(objects).hex()
        acks = Acks()
        killed = 0
        for hit, seed in [(1, 5), (7, 6), (40, 7)]:
            proc = start_writer(handles, hit, seed, env={"SHM_CRASH_POINT": f"{point}:{hit}"})
            acks.read(finish(proc))
            assert proc.returncode == 86, f"the writer did not reach {point}:{hit}"
            killed += 1
            survivor = start_writer(handles, 100 + hit, seed)
            first = survivor.stdout.readline()
            survivor.send_signal(signal.SIGKILL)
            acks.read([first] + finish(survivor))
            killed += 1
        verify(objects, acks, killed)


def test_many_managers_in_one_thread_do_not_run_out_of_intent_slots():
    # Each manager is two mappings in this process; a thread's slot cache holds four, and an
    # evicted mapping's slot used to be forgotten and claimed again on its next use, until the
    # segment's 1024 slots ran out.
    managers = [shmstate.Manager() for _ in range(3)]
    try:
        lists = [m.list([0]) for m in managers]
        for round_ in range(1200):
            for lst in lists:
                lst.append(round_)  # The module's mapping.
                lst[0] = round_  # The Manager bindings' own mapping.
        assert all(lst[0] == 1199 and len(lst) == 1201 for lst in lists)
    finally:
        for m in managers:
            m.shutdown()


def _append_pid(lst):
    lst.append(os.getpid())
    return len(lst)


def _put_proxy_back(q):
    d = q.get(timeout=30)  # A proxy that came through the queue: the same object.
    d["seen_by"] = os.getpid()
    q.put(d)


def test_proxies_travel_through_pool_tasks_and_queues():
    with shmstate.Manager() as m:
        lst, d, q = m.list(), m.dict(), m.Queue()
        with multiprocessing.get_context("spawn").Pool(2) as pool:
            assert sorted(pool.map(_append_pid, [lst] * 4)) == [1, 2, 3, 4]
        assert len(lst) == 4
        q.put(d)
        p = multiprocessing.get_context("fork").Process(target=_put_proxy_back, args=(q,))
        p.start()
        p.join(30)
        assert p.exitcode == 0
        assert d["seen_by"] == p.pid
        assert q.get(timeout=10)["seen_by"] == p.pid


def test_blocking_calls_release_the_gil():
    import threading
    with shmstate.Manager() as m:
        ev, q, lock = m.Event(), m.Queue(), m.Lock()
        lock.acquire()
        results = []
        waiters = [threading.Thread(target=lambda: results.append(ev.wait(60))),
                   threading.Thread(target=lambda: results.append(q.get(timeout=60))),
                   threading.Thread(target=lambda: results.append(lock.acquire(timeout=60)))]
        for t in waiters:
            t.start()
        # The three are blocked (they have not returned) while this thread keeps running Python.
        spins = 0
        while spins < 200000:
            spins += 1
        assert results == [] and all(t.is_alive() for t in waiters)
        ev.set()
        q.put("item")
        lock.release()
        for t in waiters:
            t.join(30)
        assert sorted(map(str, results)) == ["True", "True", "item"]
