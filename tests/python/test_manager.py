"""shmstate.Manager(): lifecycle (a private server, gone after shutdown, `with`, or the creator's
death, nothing left in /dev/shm), attaching by name, proxies through pickling, the stdlib's repr,
dict keys of different types, a lock held by a dead process, and writers SIGKILLed inside proxy
calls of every type at random moments and at each crash point of the commit protocol (every
acknowledged change there, every object whole, no lock or unit stuck), JoinableQueue puts and
gets killed at their commit points, a Condition waiter killed after its notify; one mapping per
process; object lifetime (temporary objects freed, shared ones kept, a killed creator's swept);
the native fast paths (exact round trips of stored values, bad calls refused). CPython's own
manager tests run in tests/python/cpython_manager/."""
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
from conftest import wait_until  # noqa: E402
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


def _hold_forever(lock, ready):
    lock.acquire()
    ready.set()
    time.sleep(600)


def _wait_for_lock(lock, out):
    got = lock.acquire()
    out.put((got, lock.owner_died))
    lock.release()


def _in_futex(pid):
    with open(f"/proc/{pid}/wchan") as f:
        return "futex" in f.read()


def test_a_sleeping_waiter_of_another_process_takes_over_a_killed_holders_lock():
    ctx = multiprocessing.get_context("fork")
    with shmstate.Manager() as m:
        lock = m.Lock()
        ready, out = ctx.Event(), ctx.Queue()
        holder = ctx.Process(target=_hold_forever, args=(lock, ready))
        holder.start()
        assert ready.wait(30)
        waiter = ctx.Process(target=_wait_for_lock, args=(lock, out))
        waiter.start()
        wait_until(lambda: _in_futex(waiter.pid), 30, "the waiter's sleep")
        assert lock.locked() and lock._getvalue() == holder.pid
        os.kill(holder.pid, signal.SIGKILL)
        holder.join(30)
        assert out.get(timeout=30) == (True, True)
        waiter.join(30)
        assert waiter.exitcode == 0
        assert not lock.locked()


def _increment_under(value, lock, n):
    for _ in range(n):
        with lock:
            value.value += 1


def test_value_increments_under_the_lock_from_three_processes_lose_nothing():
    ctx = multiprocessing.get_context("fork")
    with shmstate.Manager() as m:
        value, lock = m.Value("i", 0), m.Lock()
        procs = [ctx.Process(target=_increment_under, args=(value, lock, 20000))
                 for _ in range(3)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(120)
            assert p.exitcode == 0
        assert value.value == 60000
        assert not lock.locked()


def test_lock_acquire_forms_release_errors_and_locked():
    with shmstate.Manager() as m:
        lock = m.Lock()
        assert not lock.locked()
        assert lock.acquire(False) and lock.locked() and not lock.owner_died
        assert not lock.acquire(False)
        assert not lock.acquire(True, 0.05)
        assert not lock.acquire(timeout=0)
        with pytest.raises(ValueError):
            lock.acquire(False, 1)
        with pytest.raises(ValueError):
            lock.acquire(timeout=-2)
        lock.release()
        with pytest.raises(RuntimeError, match="release unlocked lock"):
            lock.release()
        with lock:
            assert lock.locked()
        assert not lock.locked()
        assert lock.acquire(timeout=1) and lock.locked()
        lock.release()


def test_deleting_a_lock_wakes_its_waiter_with_not_found():
    import threading
    with shmstate.Manager() as m:
        lock = m.Lock()
        pickle.dumps(lock)  # Shared: its proxy no longer frees it.
        assert lock.acquire()
        errors = []

        def wait():
            try:
                lock.acquire()
            except Exception as e:  # noqa: BLE001 - the test looks at its type.
                errors.append(e)
        waiter = threading.Thread(target=wait, daemon=True)
        waiter.start()
        wait_until(lambda: _in_futex(waiter.native_id), 30, "the waiter's sleep")
        shmstate.attach(m.address).delete(lock._name)
        waiter.join(30)
        assert not waiter.is_alive()
        assert len(errors) == 1 and isinstance(errors[0], shmstate.NotFound), errors


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
        self.joinable = []

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
            elif kind == "j":
                self.joinable.append(rest)


def start_writer(handles, writer, seed, env=None):
    return subprocess.Popen([sys.executable, "-u", CHILD, handles, str(writer), str(seed)],
                            stdout=subprocess.PIPE, text=True,
                            env=dict(os.environ, **(env or {})))


def finish(proc):
    rest = proc.stdout.read()
    proc.stdout.close()
    proc.wait(timeout=30)
    return rest.splitlines(keepends=True)


def drain(q, task_done=False):
    items = []
    while True:
        try:
            items.append(q.get_nowait())
        except Exception:
            return items
        if task_done:
            q.task_done()


def verify(objects, acks, killed):
    d, lst, value, lock, q, slots = objects[:6]
    if len(objects) > 6:
        verify_more(objects[6], d, acks)
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
    queued = drain(q)
    for item in queued:
        check(item.encode())
    counts = collections.Counter(queued)
    for item in acks.queued:
        assert counts[item] == 1


def verify_more(extra, d, acks):
    import threading
    rlock, sem, ns, arr, jq, ev = extra
    for key in d.keys():  # Pops and setdefaults left every value whole.
        check(d[key])
    assert rlock.acquire(timeout=10), "the RLock is stuck"
    rlock.release()
    assert sem.acquire(timeout=10) and sem.acquire(timeout=10), "a semaphore unit is stuck"
    sem.release()
    sem.release()
    try:
        check(ns.x)
    except AttributeError:
        pass  # No writer got that far.
    assert len(arr) == 8 and all(type(x) is int for x in arr[:])
    assert ev.is_set() in (True, False)
    items = drain(jq, task_done=True)
    for item in items:
        check(item.encode())
    counts = collections.Counter(items)
    for item in acks.joinable:
        assert counts[item] == 1, "an acknowledged JoinableQueue put is lost or doubled"
    joined = threading.Thread(target=jq.join, daemon=True)
    joined.start()
    joined.join(30)
    assert not joined.is_alive(), "join() waits for a task a killed process left counted"


def make_objects(m):
    return (m.dict(), m.list(), m.Value("i", 0), m.Lock(), m.Queue(), m.list([None] * 8),
            (m.RLock(), m.BoundedSemaphore(2), m.Namespace(), m.Array("i", [0] * 8),
             m.JoinableQueue(), m.Event()))


def test_writers_killed_at_random_moments():
    rng = random.Random(22)
    with shmstate.Manager() as m:
        objects = make_objects(m)
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
        objects = make_objects(m)
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
    # A thread's slot cache holds four mappings, and an evicted mapping's slot used to be
    # forgotten and claimed again on its next use, until the segment's 1024 slots ran out.
    managers = [shmstate.Manager() for _ in range(3)]
    try:
        lists = [m.list([0]) for m in managers]
        for round_ in range(1200):
            for lst in lists:
                lst.append(round_)  # The module's List.
                lst[0] = round_  # The Manager bindings' _SeqList.
        assert all(lst[0] == 1199 and len(lst) == 1201 for lst in lists)
    finally:
        for m in managers:
            m.shutdown()


def test_a_process_maps_the_segment_once():
    with shmstate.Manager() as m:
        d, lst, q, lock, ev = m.dict(), m.list(), m.Queue(), m.Lock(), m.Event()
        d["a"] = 1
        lst.append(1)
        lst[0] = 2  # _SeqList
        q.put(1)
        assert q.get() == 1  # The items list and the queue's wake word
        with lock:
            ev.set()
        assert ev.wait(1)
        other = shmstate.attach(m.address)  # A client of the same server shares the mapping.
        assert other.dict("o.x") is not None
        with open("/proc/self/maps") as f:
            mappings = [line for line in f if f"/dev/shm/{m.address}." in line]
        assert len(mappings) == 1, mappings


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


def _run_child(code, *args, env=None):
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), *args],
                            stdout=subprocess.PIPE, text=True,
                            env=dict(os.environ, **(env or {})))


@pytest.mark.parametrize("point,hit", [("queue_put_counted", 1), ("queue_put_counted", 5),
                                       ("queue_get_popped", 1), ("queue_get_popped", 5)])
def test_joinable_queue_put_or_get_killed_leaves_join_answerable(point, hit):
    # A put killed after counting its task but before pushing its item used to leave the
    # count one too high, so join() waited forever; a get killed after its pop takes the item
    # with it (the stdlib's count would wait forever for that item's task_done).
    with shmstate.Manager() as m:
        q = m.JoinableQueue()
        child = _run_child("""
            import pickle, sys
            import shmstate
            q = pickle.loads(bytes.fromhex(sys.argv[1]))
            for i in range(10):
                q.put(i)
                if sys.argv[2] == "get":
                    q.get()
                print(i, flush=True)
        """, pickle.dumps(q).hex(), "put" if "put" in point else "get",
            env={"SHM_CRASH_POINT": f"{point}:{hit}"})
        acked = [int(line) for line in child.stdout]
        child.wait(30)
        assert child.returncode == 86 and len(acked) == hit - 1
        got = []
        while True:
            try:
                got.append(q.get_nowait())
            except Exception:
                break
            q.task_done()
        if "put" in point:
            assert got == acked  # Every acknowledged put, the killed one's item not there.
        else:
            # Each acknowledged round's put/get left its task unfinished (nobody called
            # task_done): the stdlib counts them too. The killed get's item is gone.
            assert got == []
            for _ in acked:
                q.task_done()
        with pytest.raises(ValueError):
            q.task_done()
        import threading
        joined = threading.Thread(target=q.join, daemon=True)
        joined.start()
        joined.join(30)
        assert not joined.is_alive(), "join() waits for a task that can never be done"
        q.put("next")  # The queue works on: a new task counts, and join waits for it.
        assert q.get(timeout=10) == "next"
        joined = threading.Thread(target=q.join, daemon=True)
        joined.start()
        assert not wait_until(lambda: not joined.is_alive(), timeout=0.3)
        q.task_done()
        joined.join(30)
        assert not joined.is_alive()


def test_a_condition_waiter_killed_after_its_notify_passes_it_on():
    with shmstate.Manager() as m:
        cond = m.Condition()
        handle = pickle.dumps(cond).hex()
        code = """
            import pickle, sys
            import shmstate
            cond = pickle.loads(bytes.fromhex(sys.argv[1]))
            with cond:
                print("waiting", flush=True)
                print(cond.wait(60), flush=True)
        """
        first = _run_child(code, handle)
        assert first.stdout.readline() == "waiting\n"
        assert wait_until(lambda: len(cond._getvalue()["waiting"]) == 1, timeout=30)
        second = _run_child(code, handle)
        assert second.stdout.readline() == "waiting\n"
        assert wait_until(lambda: len(cond._getvalue()["waiting"]) == 2, timeout=30)
        first.send_signal(signal.SIGSTOP)  # It cannot take the signal before it dies.
        with cond:
            cond.notify()  # Chooses the oldest waiter: the first.
        assert cond._getvalue()["signaled"][0][0][0] == first.pid
        first.send_signal(signal.SIGKILL)
        first.wait(30)
        assert second.stdout.readline() == "True\n"  # The notify reached the live waiter.
        second.wait(30)
        assert second.returncode == 0
        assert cond._getvalue() == {"waiting": [], "signaled": []}


def test_temporary_objects_are_freed_with_their_proxy():
    # 100k dict()/list()/Value() made and dropped: the segment does not grow, and the registry
    # (1024 objects here) never fills.
    from shmstate import _shmstate
    with shmstate.Manager(size="64MiB", max_objects=1024) as m:
        free_after_warmup = None
        for i in range(100_000):
            if i % 3 == 0:
                d = m.dict()
                d["k"] = i
            elif i % 3 == 1:
                lst = m.list([i])
                lst.append(i)
            else:
                v = m.Value("i", i)
                v.value += 1
            if i == 999:
                free_after_warmup = _shmstate._segment_free_bytes(m.address)
        assert _shmstate._segment_free_bytes(m.address) >= free_after_warmup - 64 * 1024
        assert m._number_of_objects() == 3  # The last d, lst and v.
        name = d._name
        del d
        assert name not in [o for o, _ in shmstate.attach(m.address).objects("o.")]


def _use_after_parent_dropped(lst, ready, done):
    ready.wait(30)
    lst.append("child")
    done.put(list(lst))


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_an_object_a_live_process_or_a_container_holds_is_never_freed(method):
    import gc
    with shmstate.Manager() as m:
        outer = m.dict()
        outer["l"] = m.list([1])  # Its only proxy is gone at once: the dict holds the object.
        gc.collect()
        outer["l"].append(2)
        assert outer["l"][:] == [1, 2]
        ready, done = m.Event(), m.Queue()
        lst = m.list(["parent"])
        name = lst._name
        p = multiprocessing.get_context(method).Process(target=_use_after_parent_dropped,
                                                        args=(lst, ready, done))
        p.start()
        del lst  # The creator drops its last reference (start() dropped the args).
        gc.collect()
        ready.set()
        assert done.get(timeout=60) == ["parent", "child"]
        p.join(30)
        assert p.exitcode == 0
        assert name in [o for o, _ in shmstate.attach(m.address).objects("o.")]


def _overwrite(d, keys, tag, seed, rounds, out):
    rng = random.Random(seed)
    for _ in range(rounds):
        for key in rng.sample(keys, len(keys)):
            d[key] = f"{tag}{key}"
    out.put(tag)


def test_dict_overwrites_racing_from_two_processes_keep_each_key_once_in_insertion_order():
    # An existing str key's overwrite is one Set that keeps the entry's order under the dict's
    # lock (SetOptions::keep_offset); a key of another type is read without the lock and written
    # by compare-and-set on the entry's version, a lost race retrying. Either way every key keeps
    # its first place and one whole value of either writer.
    keys = [f"k{i}" for i in range(64)]
    with shmstate.Manager() as m:
        d, out = m.dict(), m.Queue()
        for key in reversed(keys):
            d[key] = "first"
        ctx = multiprocessing.get_context("fork")
        procs = [ctx.Process(target=_overwrite, args=(d, keys, tag, seed, 300, out))
                 for tag, seed in (("a", 1), ("b", 2))]
        for p in procs:
            p.start()
        assert sorted(out.get(timeout=120) for _ in procs) == ["a", "b"]
        for p in procs:
            p.join(30)
            assert p.exitcode == 0
        assert d.keys() == list(reversed(keys)) and len(d) == len(keys)
        assert all(d[key] in (f"a{key}", f"b{key}") for key in keys)


def test_dict_overwrite_keeps_an_expiry_another_front_end_set():
    with shmstate.Manager() as m:
        d = m.dict()
        d["k"] = "old"
        raw = shmstate.attach(m.address).dict(d._name)
        entry, _, _ = raw.entry(b"sk")
        assert raw.set(b"sk", entry, 3600)  # As a Redis or HTTP client could.
        expires = raw.entry(b"sk")[2]
        assert expires > 0
        d["k"] = "new"
        assert d["k"] == "new" and raw.entry(b"sk")[2] == expires and d.keys() == ["k"]


def test_dict_overwrite_of_a_foreign_entry_raises_and_changes_nothing():
    # A value another front end wrote under a str key's entry key is no managed entry: the
    # rewrite that keeps the order refuses it (Conflict) and the read path raises.
    with shmstate.Manager() as m:
        d = m.dict()
        d["k"] = "old"
        d[1] = "one"
        raw = shmstate.attach(m.address).dict(d._name)
        # Not tagged (short, long); tagged but too short to hold an order.
        for foreign in (b"plain", b"a plain value, longer than an order", b"E12"):
            assert raw.set(b"sk", foreign)
            with pytest.raises(ValueError):
                d["k"] = "new"
            assert raw.entry(b"sk")[0] == foreign
        del d["k"]
        d[True] = "true"  # Equal keys of another type keep the first-written key.
        assert d[1] == "true" and [type(k) for k in d.keys()] == [int]
        d["k"] = "again"
        assert d.items() == [(1, "true"), ("k", "again")]


def test_subscripts_through_the_type_slots_keep_every_form():
    # d[k], d[k] = v and l[i] go from the interpreter straight to the native methods (the
    # classes' subscript slots); deletes, errors and a subclass's own methods are unchanged.
    with shmstate.Manager() as m:
        d, lst = m.dict({"a": 1, 2: "b"}), m.list([1, 2, 3])
        del d["a"]
        assert d.keys() == [2] and "a" not in d
        with pytest.raises(KeyError):
            del d["a"]
        with pytest.raises(KeyError):
            d["a"]
        with pytest.raises(TypeError):
            d[[1]] = 1
        d[(1, 2)] = [3]
        assert d[(1, 2)] == [3] and d[2] == "b"
        assert lst[0] == 1 and lst[-1] == 3 and lst[0:2] == [1, 2]
        with pytest.raises(IndexError):
            lst[3]
        del lst[0]
        assert lst[0] == 2

        class Loud(type(d)):
            def __getitem__(self, key):
                return ("loud", super().__getitem__(key))

        loud = Loud._open(d._server, d._name, None)
        assert loud[2] == ("loud", "b") and d[2] == "b"


class _Flag(int):
    pass


ROUND_TRIP = [None, True, False, 0, -1, 2**63 - 1, -2**63, 2**63, -2**200, 0.0, -0.0, 1.5,
              float("inf"), 1e-310, "", "é\u20ac", "\ud800x", b"", b"\x00\xff", _Flag(3),
              (1, "a"), [1, [2]], {"k": b"v"}, frozenset({1})]


def _same(a, b):
    """Equal with the same type (and sign of zero, and NaN as itself)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return (a == b and str(a) == str(b)) or (a != a and b != b)
    return a == b


def _echo_all(d, lst, value, q, out):
    got = [d[i] for i in range(len(ROUND_TRIP))] + [d.get("nan")]
    got += [lst[i] for i in range(len(ROUND_TRIP))] + [value.value]
    got += [q.get(timeout=30) for _ in ROUND_TRIP]
    out.put(got)


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_values_round_trip_exactly_through_every_fast_path(method):
    # None, bool, int (in int64), float, str, bytes are stored natively; everything else (big
    # ints, an int subclass, containers) pickled: the type comes back exactly either way.
    with shmstate.Manager() as m:
        d, lst, value, q, out = m.dict(), m.list(), m.Value("d", float("nan")), m.Queue(), m.Queue()
        for i, v in enumerate(ROUND_TRIP):
            d[i] = v
            lst.append(v)
            q.put(v)
            assert _same(d[i], v) and _same(lst[i], v) and i in d
        d["nan"] = float("nan")
        p = multiprocessing.get_context(method).Process(target=_echo_all,
                                                        args=(d, lst, value, q, out))
        p.start()
        got = out.get(timeout=60)
        p.join(30)
        n = len(ROUND_TRIP)
        for i, v in enumerate(ROUND_TRIP):
            assert _same(got[i], v) and _same(got[n + 1 + i], v) and _same(got[2 * n + 2 + i], v)
        nan, last = got[n], got[2 * n + 1]
        assert nan != nan and last != last
        assert d.items()[0] == (0, None) and d.keys()[-1] == "nan"
        assert _same(d.copy()[2], False) and lst[:][3] == 0 and value.get() != value.get()


def test_fast_paths_refuse_bad_calls_clearly():
    with shmstate.Manager() as m:
        d, lst, value, q, lock, ev = m.dict(), m.list([1]), m.Value("i", 1), m.Queue(), \
            m.Lock(), m.Event()
        with pytest.raises(KeyError):
            d["absent"]
        with pytest.raises(TypeError):
            d[[1]]  # Unhashable, as a dict says.
        with pytest.raises(TypeError):
            d.get()
        assert d.get("absent", 7) == 7 and d.get(key="absent") is None
        with pytest.raises(TypeError):
            d.__setitem__("k")
        with pytest.raises(IndexError):
            lst[5]
        with pytest.raises(TypeError):
            lst["x"]
        assert lst[-1] == 1 and lst[0:1] == [1]
        with pytest.raises(IndexError):
            lst[2**70]
        with pytest.raises(TypeError):
            value.set()
        with pytest.raises(AttributeError):
            del value.value
        with pytest.raises(RuntimeError):
            lock.release()
        with pytest.raises(TypeError):
            lock.acquire(1, 2, 3)
        assert lock.acquire() and not lock.acquire(False) and not lock.acquire(timeout=0.01)
        lock.release()
        with pytest.raises(_queue_empty()):
            q.get_nowait()
        with pytest.raises(TypeError):
            q.put()
        q.put(1, True, None)
        assert q.get() == 1
        with pytest.raises(TypeError):
            ev.set(1)
        assert not ev.is_set()
        ev.set()
        assert ev.is_set() and ev.wait(0)
        assert d == {} and len(d) == 0


def _queue_empty():
    import queue
    return queue.Empty


def test_unshared_objects_of_a_killed_creator_are_swept(server):
    # A process attached by name creates objects, shares one (pickled to us), and is killed
    # before its proxies are collected: the next start (or connect) frees the others.
    child = _run_child("""
        import pickle, sys, time
        import shmstate
        m = shmstate.Manager(name=sys.argv[1])
        kept = [m.dict({"a": 1}), m.list([1]), m.Queue(), m.Value("i", 1)]
        shared = m.list(["shared"])
        print(pickle.dumps(shared).hex(), flush=True)
        time.sleep(600)
    """, server.name)
    shared = pickle.loads(bytes.fromhex(child.stdout.readline()))
    client = shmstate.attach(server.name)
    before = {o for o, _ in client.objects("o.")}
    assert len(before) == 6  # The four kept (a queue is two objects) and the shared list.
    child.send_signal(signal.SIGKILL)
    child.wait(30)
    m = shmstate.Manager(name=server.name)
    assert {o for o, _ in client.objects("o.")} == {shared._name}
    shared.append("still here")
    assert shared[:] == ["shared", "still here"]
    m.shutdown()  # Attached by name: the server keeps running.


def test_joinable_queue_join_waits_for_every_task_done_of_another_process():
    import threading
    with shmstate.Manager() as m:
        q = m.JoinableQueue()
        for i in range(2000):
            q.put(i)
        worker = _run_child("""
            import pickle, sys
            import shmstate
            q = pickle.loads(bytes.fromhex(sys.argv[1]))
            print("started", flush=True)
            while True:
                item = q.get()
                q.task_done()
                if item == 1999:
                    break
        """, pickle.dumps(q).hex())
        joined = threading.Thread(target=q.join, daemon=True)
        joined.start()
        assert worker.stdout.readline() == "started\n"
        joined.join(60)
        assert not joined.is_alive() and q.qsize() == 0
        worker.wait(30)
        assert worker.returncode == 0
        with pytest.raises(ValueError):
            q.task_done()


def test_stored_records_decode_or_raise_never_crash():
    # Whatever bytes an entry holds (a foreign writer, a bug), decoding answers a value or an
    # exception: run in a child, which must exit normally.
    code = """
        import pickle, random, sys
        from shmstate import _shmstate
        rng = random.Random(22)
        tags = b"NTFifsbpE" + bytes([0, 255])
        outcomes = set()
        for i in range(20000):
            data = bytes([rng.choice(tags)]) + rng.randbytes(rng.randrange(0, 24))
            if rng.random() < 0.2:
                data = b"E" + rng.randbytes(8) + (rng.randrange(40)).to_bytes(4, "little") + data
            for decode in (_shmstate._mgr_load, _shmstate._mgr_entry_load):
                try:
                    decode(data)
                    outcomes.add("value")
                except Exception as e:
                    outcomes.add(type(e).__name__)
        for value in [None, True, 3, -2**63, 2**64, 1.5, "é", b"x", (1,), {1: 2}]:
            assert _shmstate._mgr_load(_shmstate._mgr_dump(value)) == value
            assert _shmstate._mgr_entry_load(_shmstate._mgr_entry(7, "k", value)) == (7, "k", value)
        print(sorted(outcomes))
    """
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "value" in out.stdout and "ValueError" in out.stdout


def test_rlock_fast_path_counts_per_thread():
    import threading
    with shmstate.Manager() as m:
        r = m.RLock()
        assert r.acquire() and r.acquire() and r._getvalue()[1] == 2
        r.release()
        assert r._getvalue()[1] == 1 and r._is_owned()
        r.release()
        assert r._getvalue() is None
        with pytest.raises(RuntimeError):
            r.release()
        got = []
        with r:
            with r:
                other = threading.Thread(target=lambda: got.append(r.acquire(timeout=0.2)))
                other.start()
                other.join(30)
                assert got == [False]  # Another thread's acquire waits (and times out).

                def release_elsewhere():
                    try:
                        r.release()
                    except RuntimeError:
                        got.append("refused")
                other = threading.Thread(target=release_elsewhere)
                other.start()
                other.join(30)
                assert got == [False, "refused"] and r._getvalue()[1] == 2
        assert r._getvalue() is None
        cond = m.Condition(r)

        def waiter():
            with cond:
                got.append(cond.wait(30))
        other = threading.Thread(target=waiter)
        other.start()
        assert wait_until(lambda: len(cond._getvalue()["waiting"]) == 1, timeout=30)
        with cond:
            cond.notify()
        other.join(30)
        assert got[-1] is True


class _ReentrantValue:
    """Pickles by writing into a managed dict and reading it back: a fast call (d[k] = v, a
    list append, a Queue put) whose value's pickle runs another fast call of the same kind."""

    side = None

    def __init__(self, tag):
        self.tag = tag

    def __reduce__(self):
        _ReentrantValue.side["inner." + self.tag] = "x" * 300 + self.tag  # Nested fast set.
        assert _ReentrantValue.side["inner." + self.tag].endswith(self.tag)  # Nested fast get.
        return (_ReentrantValue, (self.tag,))

    def __eq__(self, other):
        return isinstance(other, _ReentrantValue) and other.tag == self.tag


def test_a_fast_call_inside_a_fast_calls_pickle_keeps_both_values_whole():
    # The fast paths reuse their buffers (Leased, register_manager.cc): a nested call must get
    # its own, or the outer call would store or return the inner one's bytes.
    with shmstate.Manager() as m:
        d, lst, q = m.dict(), m.list(), m.Queue()
        _ReentrantValue.side = d
        try:
            for i in range(50):
                tag = str(i)
                outer_key = "outer." + tag + "y" * (i * 7)  # Keys of several lengths.
                d[outer_key] = _ReentrantValue(tag)
                lst.append(_ReentrantValue(tag))
                q.put(_ReentrantValue(tag))
                assert d[outer_key] == _ReentrantValue(tag) and d.get(outer_key).tag == tag
                assert lst[i] == _ReentrantValue(tag) and q.get() == _ReentrantValue(tag)
                assert d["inner." + tag] == "x" * 300 + tag
        finally:
            _ReentrantValue.side = None


def _event_pong(ping, pong, rounds):
    for _ in range(rounds):
        assert ping.wait(timeout=60)
        ping.clear()
        pong.set()


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_event_wait_and_clear_hand_off_between_processes(method):
    # wait() of a set Event answers natively; of a clear one, sleeps in the Python method
    # until set() wakes it; clear() is native. 200 hand-offs each way, none lost.
    with shmstate.Manager() as m:
        ping, pong = m.Event(), m.Event()
        assert ping.wait(0) is False and ping.wait(timeout=0.01) is False
        p = multiprocessing.get_context(method).Process(target=_event_pong,
                                                        args=(ping, pong, 200))
        p.start()
        for _ in range(200):
            ping.set()
            assert pong.wait(timeout=60) is True
            pong.clear()
            assert not pong.is_set()
        p.join(60)
        assert p.exitcode == 0
        assert ping.wait(timeout=0.01) is False  # The child cleared the last one.
        ping.set()
        assert ping.wait() is True and ping.wait(0) is True and ping.wait(timeout=-1) is True


def _sleepers(proxy):
    """The sleeper count of a blocking proxy (`!w`, manager.py's _Blocking._wait_until)."""
    return int(proxy._d.get(b"!w") or 0)


def _set_when_waited(ev, deadline):
    while _sleepers(ev) == 0 and time.monotonic() < deadline:
        time.sleep(0.001)
    ev.set()


def test_event_wait_of_a_clear_event_takes_the_stdlib_timeouts_and_uncounts_its_sleeper():
    # wait() and wait(timeout) of a None, int or float wait natively (other forms in the Python
    # method): each counts itself in `!w` while it waits, so that set() wakes it, and is
    # uncounted whether it timed out, was set by another process, or was interrupted by a signal.
    with shmstate.Manager() as m:
        ev = m.Event()
        assert ev.wait(0) is False and ev.wait(-1) is False and ev.wait(timeout=0.01) is False
        assert ev.wait(1e-9) is False and ev.wait(0.02) is False
        with pytest.raises(TypeError):
            ev.wait("1")
        with pytest.raises(TypeError):
            ev.wait(1, 2)
        with pytest.raises(TypeError):
            ev.wait(time=1)
        assert _sleepers(ev) == 0
        for timeout in (None, 60, 60.0):
            ev.clear()
            p = multiprocessing.get_context("fork").Process(
                target=_set_when_waited, args=(ev, time.monotonic() + 60))
            p.start()
            assert (ev.wait() if timeout is None else ev.wait(timeout=timeout)) is True
            p.join(60)
            assert p.exitcode == 0 and _sleepers(ev) == 0

        class Interrupted(Exception):
            pass

        def interrupt(signum, frame):
            raise Interrupted()
        ev.clear()
        previous = signal.signal(signal.SIGALRM, interrupt)
        try:
            signal.setitimer(signal.ITIMER_REAL, 0.05)
            with pytest.raises(Interrupted):
                ev.wait()
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
        assert _sleepers(ev) == 0 and ev.is_set() is False
