#!/usr/bin/env python3
"""Nanoseconds per call of the shmstate module's hot methods from one process, against a floor.

The floor is bench/pyfloor (built by CMake into build/bench/pyfloor): a plain C-API extension
doing only the shared-memory work of each call (one atomic add; a 16-byte key looked up in a
small hash table returning a 64-byte bytes; a 64-byte copy in). A plain Python dict is listed
for reference. Each round times every row once (ROUNDS rounds, rows in alternating order), and
the table quotes each row's median over the rounds with its ratio to the floor row of its kind.

  PYTHONPATH=build/python:build/bench/pyfloor /usr/bin/python3 bench/py_calls.py \
      --shmstate build/shmstate [--rounds 15] [--calls 200000]

The server (`shmstate serve --workers 0`) it starts is stopped by pid on exit.
"""
import argparse
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


def empty(obj, keys, reps):
    for _ in range(reps):
        for k in keys:
            pass


def timed(shape, obj, keys, calls):
    """ns per call, the cost of the empty loop subtracted."""
    reps = calls // len(keys)
    t0 = time.perf_counter_ns()
    shape(obj, keys, reps)
    t1 = time.perf_counter_ns()
    empty(obj, keys, reps)
    t2 = time.perf_counter_ns()
    return ((t1 - t0) - (t2 - t1)) / (reps * len(keys))


def rows(st):
    counter = st.counter("bench-calls-counter")
    d = st.dict("bench-calls-dict")
    for k in KEYS:
        d[k] = VALUE
        pyfloor.set(k, VALUE)
    plain = {k: VALUE for k in KEYS}
    keys = KEYS[:256]
    # (name, floor kind, loop shape, object, keys)
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
        ("python dict[k] = v", "set", store, plain, keys),
    ]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shmstate", default="build/shmstate")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--calls", type=int, default=200000)
    args = parser.parse_args()
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
                samples[row_name].append(timed(shape, obj, keys, args.calls))
        floors = {kind: statistics.median(samples[n]) for n, kind, *_ in table
                  if n.startswith("floor")}
        print(f"{'call':22} {'ns/call':>9} {'x floor':>8}   (median of {args.rounds} rounds, "
              f"{args.calls} calls each)")
        for row_name, kind, *_ in table:
            med = statistics.median(samples[row_name])
            print(f"{row_name:22} {med:9.1f} {med / floors[kind]:8.2f}")
    finally:
        server.terminate()
        server.wait(timeout=10)


if __name__ == "__main__":
    sys.exit(main())
