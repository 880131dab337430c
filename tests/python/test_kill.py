"""Python processes killed in the middle of writes (SIGKILL at random moments, and at each named
crash point of the commit protocol) leave the guarantees a C++ worker leaves: every acknowledged
write is there, every value is whole, no item is duplicated, nothing deadlocks, and the manager
settles what the dead clients left."""
import collections
import os
import random
import signal
import subprocess
import sys

import pytest

import shmstate

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from writer_child import check, finish, kill_round, last_generation  # noqa: E402

CHILD = os.path.join(HERE, "writer_child.py")


class Acks:
    """What the killed writers acknowledged."""

    def __init__(self):
        self.counter_values = []
        self.last_dict_seq = {}  # key -> highest acknowledged seq
        self.items = []
        self.in_flight = 0  # Calls that may have landed without an ack (one per killed writer).

    def read(self, lines):
        for line in lines:
            kind, _, rest = line.rstrip("\n").partition(" ")
            if kind == "c":
                self.counter_values.append(int(rest))
            elif kind == "d":
                key, seq = rest.split()
                self.last_dict_seq[key] = max(self.last_dict_seq.get(key, -1), int(seq))
            elif kind == "l":
                self.items.append(rest.encode())


def start_writer(server, writer, seed, env=None):
    return subprocess.Popen([sys.executable, "-u", CHILD, server.name, str(writer), str(seed)],
                            stdout=subprocess.PIPE, text=True,
                            env=dict(os.environ, **(env or {})))


def verify(server, acks):
    # A writer killed inside the allocator poisons the segment: the manager rebuilds it, and
    # the guarantees below must hold in the generation it serves afterwards.
    server.wait_healthy()
    st = shmstate.attach(server.name)
    # Counter: each acknowledged value once, and the total is acks plus at most the in-flight.
    assert len(set(acks.counter_values)) == len(acks.counter_values)
    value = st.counter("hits").value
    assert max(acks.counter_values, default=0) <= value
    assert len(acks.counter_values) <= value <= len(acks.counter_values) + acks.in_flight
    # Dict: every value whole, and never older than the last acknowledged write of its key.
    d = st.dict("kv")
    for key, seq in acks.last_dict_seq.items():
        writer, stored_seq = check(d[key])
        assert writer == int(key[1:].split("-")[0]) and stored_seq >= seq, key
    for key in d:
        check(d[key])
    # List: every acknowledged item exactly once, every item whole, at most the in-flight extra.
    jobs = st.list("jobs")
    stored = jobs.range(0, -1)
    while len(stored) < len(jobs):
        stored += jobs.range(len(stored), -1)
    counts = collections.Counter(stored)
    assert all(n == 1 for n in counts.values()), "duplicated items"
    for item in stored:
        check(item)
    missing = [i for i in acks.items if i not in counts]
    assert not missing, f"{len(missing)} acknowledged items lost"
    assert len(stored) <= len(acks.items) + acks.in_flight


def test_sigkill_loop(make_server):
    server = make_server(workers=1, size="32MiB")
    rng = random.Random(20261202)
    acks = Acks()
    killed = []  # (pid, the last segment generation it wrote in)
    for round_ in range(24):
        # Writer ids are unique per process: a key's sequence numbers only grow.
        writers = [start_writer(server, 10 * round_ + w, rng.randrange(1 << 30)) for w in range(3)]
        victim = rng.randrange(3)
        stop_after = rng.randrange(5, 400)
        # The victim is killed mid-flight once it has acknowledged stop_after calls.
        outputs = kill_round(writers, victim, stop_after)
        for proc, output in zip(writers, outputs):
            acks.read(output)
            killed.append((proc.pid, last_generation(output)))
            assert proc.returncode == -signal.SIGKILL
            acks.in_flight += 1
    verify(server, acks)
    # The manager noticed every dead client that held a slot in the segment it serves now.
    server.wait_clients_settled(killed, shmstate.attach(server.name).generation)


CRASH_POINTS = ["after_allocate", "after_intent", "after_commit", "before_free",
                "cache_take", "cache_put", "inside_allocator"]


@pytest.mark.parametrize("point", CRASH_POINTS)
def test_client_dies_at_each_crash_point(make_server, point):
    server = make_server(workers=1, size="32MiB")
    acks = Acks()
    for hit, seed in [(1, 5), (7, 6), (40, 7)]:
        proc = start_writer(server, hit, seed, env={"SHM_CRASH_POINT": f"{point}:{hit}"})
        acks.read(finish(proc))
        assert proc.returncode == 86, f"the writer did not reach {point}:{hit}"
        acks.in_flight += 1
        # Others keep working (the next lock holder repairs; a poisoned allocator is rebuilt and
        # this process follows the new generation).
        survivor = start_writer(server, 100 + hit, seed, env={})
        first = survivor.stdout.readline()
        survivor.send_signal(signal.SIGTERM)
        acks.read([first] + finish(survivor))
        acks.in_flight += 1
    verify(server, acks)
    if point == "inside_allocator":
        server.wait_log("rebuilt", timeout=15)
        assert shmstate.attach(server.name).generation > 1


ATTACH_AND_WRITE = ("import sys, shmstate; st = shmstate.attach(sys.argv[1]); "
                    "st.dict('after')['k'] = b'v'; print(st.generation)")


@pytest.mark.parametrize("point", ["inside_allocator:3", "inside_name_index:1"])
def test_a_client_dead_holding_a_segment_lock_is_found_without_other_writers(make_server, point):
    """A client died holding the allocator's or the name index's lock (its first taking of the
    name index is its attach), and then nobody writes: the manager finds the dead holder itself
    and rebuilds. A new process attaching meanwhile (the only one to take the name index's lock
    after the death) waits for the new generation instead of failing on the poisoned one."""
    server = make_server(workers=1, size="32MiB")
    proc = start_writer(server, 1, 5, env={"SHM_CRASH_POINT": point})
    finish(proc)
    assert proc.returncode == 86, f"the writer did not reach {point}"
    # A fresh interpreter attaches at once (the segment opened anew, as a gunicorn worker's).
    early = subprocess.Popen([sys.executable, "-c", ATTACH_AND_WRITE, server.name],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    server.wait_log("rebuilt", timeout=15)
    out, err = early.communicate(timeout=60)
    assert early.returncode == 0, err + server.log()
    late = subprocess.run([sys.executable, "-c", ATTACH_AND_WRITE, server.name],
                          capture_output=True, text=True, timeout=60)
    assert late.returncode == 0, late.stderr + server.log()
    assert int(late.stdout) > 1
    server.wait_healthy()
