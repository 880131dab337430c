#!/usr/bin/env python3
"""Cost of the shmstate module's hot methods against a C floor: ns per call from one process,
ops/s from two.

The floor is bench/pyfloor (built by CMake into build/bench/pyfloor): a plain C-API extension
doing only the shared-memory work of each call (one atomic add; a 16-byte key looked up in a
small hash table returning a 64-byte bytes; a 64-byte copy in). A plain Python dict is listed
for reference. Pairs (a lock's acquire and release, a list's push and pop) are timed as one row
and compared with two floor calls.

One process: each round times every row once (ROUNDS rounds, rows in alternating order), and
the table quotes each row's median over the rounds with its ratio to the floor row of its kind.
Timed by the thread's CPU time by default (--clock wall for wall time): on a shared machine the
time the process waits for a core is not the call's.
Two processes: two fresh interpreters, each on its own objects (its own pyfloor mapping, its own
counter, dict, list and lock), run the same loop at the same moment, against one of them alone
in the same round (rounds alternate 1 and 2 processes), medians over the rounds. Two figures
each: wall-clock ops/s (both processes' calls over the longer of their two wall times) and
CPU ops/s (the sum of each process's calls over its own CPU time: what the processes cost each
other through shared memory shows there, the wait for a core on a loaded machine does not).
With --pin (the default on a machine with 2 or more CPUs) the interpreters run under
`taskset -c 0` and `taskset -c 1`, so the one-process rounds and each of the two run on a core
of their own; the load average is printed with the table, since the wall-clock figure means
something only when the two cores were otherwise idle.

  PYTHONPATH=build/python:build/bench/pyfloor /usr/bin/python3 bench/py_calls.py \
      --shmstate build/shmstate [--rounds 15] [--calls 200000] [--mp-rounds 7] [--no-pin]

The server (`shmstate serve --workers 0`) it starts is stopped by pid on exit.
"""
import argparse
import os
import statistics
import subprocess
import sys
import time
import uuid

import pyfloor
import shmstate

KEYS = [b"k%015d" % i for i in range(1024)]  # 16 bytes each.
VALUE = b"v" * 64


# One loop per call shape, so that the timed body is the call itself (no lambda around it).
def call0(fn, keys, reps):
    for _ in range(reps):
        for _ in keys:
            fn()


def call1(fn, keys, reps):
    for _ in range(reps):
        for k in keys:
            fn(k)


def call2(fn, keys, reps):
    v = VALUE
    for _ in range(reps):
        for k in keys:
            fn(k, v)


def attr_value(obj, keys, reps):
    for _ in range(reps):
        for _ in keys:
            obj.value


def subscript(obj, keys, reps):
    for _ in range(reps):
        for k in keys:
            obj[k]


def contains(obj, keys, reps):
    for _ in range(reps):
        for k in keys:
            k in obj


def store(obj, keys, reps):
    v = VALUE
    for _ in range(reps):
        for k in keys:
            obj[k] = v


def incr_key(d, keys, reps):
    incr = d.incr
    for _ in range(reps):
        for k in keys:
            incr(k)


def push_pop(lst, keys, reps):
    v = VALUE
    push, pop = lst.push, lst.pop
    for _ in range(reps):
        for _ in keys:
            push(v)
            pop()


def acquire_release(lock, keys, reps):
    acquire, release = lock.acquire, lock.release
    for _ in range(reps):
        for _ in keys:
            acquire()
            release()


def with_lock(lock, keys, reps):
    for _ in range(reps):
        for _ in keys:
            with lock:
                pass


def floor_pair(fn, keys, reps):
    v = VALUE
    for _ in range(reps):
        for k in keys:
            fn(k, v)
            fn(k, v)


def floor_incr_pair(fn, keys, reps):
    for _ in range(reps):
        for _ in keys:
            fn()
            fn()


def empty(obj, keys, reps):
    for _ in range(reps):
        for k in keys:
            pass


CLOCKS = {"cpu": time.thread_time_ns, "wall": time.perf_counter_ns}


def timed(shape, obj, keys, calls, clock):
    """ns per call, the cost of the empty loop subtracted."""
    reps = calls // len(keys)
    t0 = clock()
    shape(obj, keys, reps)
    t1 = clock()
    empty(obj, keys, reps)
    t2 = clock()
    return ((t1 - t0) - (t2 - t1)) / (reps * len(keys))


def rows(st, suffix=""):
    counter = st.counter("bench-calls-counter" + suffix)
    d = st.dict("bench-calls-dict" + suffix)
    counts = st.dict("bench-calls-counts" + suffix)
    lst = st.list("bench-calls-list" + suffix)
    lock = st.lock("bench-calls-lock" + suffix, ttl=30)
    for k in KEYS:
        d[k] = VALUE
        pyfloor.set(k, VALUE)
    plain = {k: VALUE for k in KEYS}
    keys = KEYS[:256]
    # (name, floor kind, loop shape, object, keys); rows of a pair compare with "pair" floors.
    return [
        ("floor incr()", "incr", call0, pyfloor.incr, keys),
        ("Counter.incr()", "incr", call0, counter.incr, keys),
        ("Counter.value", "incr", attr_value, counter, keys),
        ("floor get(k)", "get", call1, pyfloor.get, keys),
        ("Dict[k]", "get", subscript, d, keys),
        ("Dict.get(k)", "get", call1, d.get, keys),
        ("k in Dict", "get", contains, d, keys),
        ("python dict[k]", "get", subscript, plain, keys),
        ("floor set(k, v)", "set", call2, pyfloor.set, keys),
        ("Dict[k] = v", "set", store, d, keys),
        ("Dict.incr(k)", "set", incr_key, counts, keys),
        ("python dict[k] = v", "set", store, plain, keys),
        ("floor 2× incr()", "incr pair", floor_incr_pair, pyfloor.incr, keys),
        ("Lock acquire+release", "incr pair", acquire_release, lock, keys),
        ("with Lock: pass", "incr pair", with_lock, lock, keys),
        ("floor 2× set(k, v)", "set pair", floor_pair, pyfloor.set, keys),
        ("List.push(v)+pop()", "set pair", push_pop, lst, keys),
    ]


# Rows the two-process table runs (one per method; the Python dict rows are process-local).
MP_ROWS = ["floor incr()", "Counter.incr()", "floor get(k)", "Dict[k]", "floor set(k, v)",
           "Dict[k] = v", "Dict.incr(k)", "Lock acquire+release", "List.push(v)+pop()"]


def child(server, index, calls):
    """A two-process table's process: on "ROW" sets up, answers "ready"; on "go" runs the loop
    and answers its run time in ns."""
    table = {r[0]: r for r in rows(shmstate.attach(server), suffix=f"-p{index}")}
    for line in sys.stdin:
        row_name = line.strip()
        _, _, shape, obj, keys = table[row_name]
        reps = calls // len(keys)
        shape(obj, keys, 1)  # Warm.
        print("ready", flush=True)
        sys.stdin.readline()  # "go"
        t0, c0 = time.perf_counter_ns(), time.thread_time_ns()
        shape(obj, keys, reps)
        c1, t1 = time.thread_time_ns(), time.perf_counter_ns()
        print(t1 - t0, c1 - c0, reps * len(keys), flush=True)


def two_process_table(args, name):
    env = dict(os.environ)
    pin = args.pin and (os.cpu_count() or 1) >= 2
    procs = [subprocess.Popen((["taskset", "-c", str(i)] if pin else []) +
                              [sys.executable, __file__, "--child", name, "--index", str(i),
                               "--calls", str(args.calls)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, env=env) for i in range(2)]
    load_before = os.getloadavg()[0]
    try:
        def run(row_name, n):
            for p in procs[:n]:
                p.stdin.write(row_name + "\n")
                p.stdin.flush()
            for p in procs[:n]:
                assert p.stdout.readline().strip() == "ready"
            for p in procs[:n]:
                p.stdin.write("go\n")
                p.stdin.flush()
            results = [[int(x) for x in p.stdout.readline().split()] for p in procs[:n]]
            wall = sum(r[2] for r in results) / (max(r[0] for r in results) / 1e9)
            cpu = sum(r[2] / (r[1] / 1e9) for r in results)
            return wall, cpu
        one = {r: [] for r in MP_ROWS}
        two = {r: [] for r in MP_ROWS}
        for round_no in range(args.mp_rounds):
            order = MP_ROWS if round_no % 2 == 0 else list(reversed(MP_ROWS))
            for row_name in order:
                first, second = (1, 2) if round_no % 2 == 0 else (2, 1)
                for n in (first, second):
                    (one if n == 1 else two)[row_name].append(run(row_name, n))
        print(f"\n{'call (2 processes)':22} {'1 proc':>8} {'2 procs':>8} {'2 / 1':>6} "
              f"{'1 proc':>8} {'2 procs':>8} {'2 / 1':>6}   (Mops/s, median of "
              f"{args.mp_rounds} rounds, separate objects)")
        print(f"{'':22} {'wall clock':^24} {'CPU time':^24}   "
              f"{'pinned to CPUs 0 and 1' if pin else 'not pinned'}, load average "
              f"{load_before:.2f} before, {os.getloadavg()[0]:.2f} after")
        for row_name in MP_ROWS:
            cells = []
            for clock in (0, 1):
                a = statistics.median(r[clock] for r in one[row_name])
                b = statistics.median(r[clock] for r in two[row_name])
                cells.append(f"{a / 1e6:8.2f} {b / 1e6:8.2f} {b / a:6.2f}")
            print(f"{row_name:22} {cells[0]} {cells[1]}")
    finally:
        for p in procs:
            p.stdin.close()
            p.wait(timeout=30)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shmstate", default="build/shmstate")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--calls", type=int, default=200000)
    parser.add_argument("--clock", choices=sorted(CLOCKS), default="cpu",
                        help="one process's clock: the thread's CPU time (default: what a "
                        "loaded machine does not inflate) or wall time")
    parser.add_argument("--mp-rounds", type=int, default=7,
                        help="rounds of the two-process table (0: skip it)")
    parser.add_argument("--pin", action=argparse.BooleanOptionalAction, default=True,
                        help="run the two-process table's interpreters under taskset -c 0 and "
                        "-c 1 (default; ignored with fewer than 2 CPUs)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--index", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.child, args.index, args.calls)
    name = "pycalls" + uuid.uuid4().hex[:10]
    server = subprocess.Popen(
        [args.shmstate, "serve", "--name", name, "--workers", "0", "--size", "64MiB",
         "--log-level", "warn"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        line = server.stdout.readline().decode()
        if not line.startswith("shmstate:"):
            raise RuntimeError(f"shmstate serve did not start: {line!r}")
        table = rows(shmstate.attach(name))
        samples = {r[0]: [] for r in table}
        for round_no in range(args.rounds):
            order = table if round_no % 2 == 0 else list(reversed(table))
            for row_name, _, shape, obj, keys in order:
                samples[row_name].append(timed(shape, obj, keys, args.calls,
                                               CLOCKS[args.clock]))
        floors = {kind: statistics.median(samples[n]) for n, kind, *_ in table
                  if n.startswith("floor")}
        print(f"{'call':22} {'ns/call':>9} {'x floor':>8}   (median of {args.rounds} rounds, "
              f"{args.calls} calls each, {args.clock} time)")
        for row_name, kind, *_ in table:
            med = statistics.median(samples[row_name])
            print(f"{row_name:22} {med:9.1f} {med / floors[kind]:8.2f}")
        sys.stdout.flush()
        if args.mp_rounds > 0:
            two_process_table(args, name)
    finally:
        server.terminate()
        server.wait(timeout=10)


if __name__ == "__main__":
    sys.exit(main())
