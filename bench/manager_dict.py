#!/usr/bin/env python3
"""The dict workload of mp_driver through multiprocessing.Manager: N processes, 16-byte keys,
64-byte values, get then set phases of --duration seconds each. Prints TSV lines
"manager dict get<TAB>procs<TAB>ops/s<TAB>ops/s" (and set) for bench/report.py."""
import argparse
import multiprocessing as mp
import random
import sys
import time

KEYS = [("k%015d" % i) for i in range(1024)]
VALUE = "v" * 64


def worker(shared, op, seconds, seed, start, results):
    rng = random.Random(seed)
    start.wait()
    deadline = time.monotonic() + seconds
    ops = 0
    while time.monotonic() < deadline:
        for _ in range(16):
            key = KEYS[rng.randrange(len(KEYS))]
            if op == "get":
                if len(shared[key]) != 64:
                    results.put(-1)
                    return
            else:
                shared[key] = VALUE
        ops += 16
    results.put(ops)


def run(manager, procs, op, seconds):
    shared = manager.dict({k: VALUE for k in KEYS})
    start = mp.Barrier(procs + 1)
    results = mp.Queue()
    children = [mp.Process(target=worker, args=(shared, op, seconds, p + 1, start, results))
                for p in range(procs)]
    for c in children:
        c.start()
    start.wait(timeout=30)
    t0 = time.monotonic()
    counts = [results.get(timeout=seconds + 30) for _ in children]
    elapsed = time.monotonic() - t0
    for c in children:
        c.join(timeout=10)
    if any(n < 0 for n in counts):
        return -1.0
    return sum(counts) / elapsed


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--procs", type=int, default=2, choices=range(1, 65), metavar="1-64")
    parser.add_argument("--duration", type=float, default=2.0)
    args = parser.parse_args()
    if not 0.1 <= args.duration <= 60:
        parser.error("--duration must be 0.1-60 seconds")
    with mp.Manager() as manager:
        for op in ("get", "set"):
            rate = run(manager, args.procs, op, args.duration)
            print("manager dict %s\t%d\t%.6g\tops/s" % (op, args.procs, rate))
            sys.stdout.flush()


if __name__ == "__main__":
    main()
