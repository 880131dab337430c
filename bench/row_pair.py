#!/usr/bin/env python3
"""One row of manager_compare.py, shmstate.Manager only, with the workers optionally pinned and
their CPU time reported: NPROCS forked processes run the row's worker on one object for SECONDS;
prints their ops/s summed, the CPU time per op (the workers' own getrusage, so it does not
depend on how much of the machine the run got) and the CPUs they used.

    [PIN=0,1] PYTHONPATH=build/python SHMSTATE_BIN=build/shmstate python3 bench/row_pair.py \\
        ROW [SECONDS] [NPROCS]

ROW is a row label of manager_compare.py or a part of one ("list append", "dict set"). PIN=a,b,...
pins worker i to CPU number i of the list (os.sched_setaffinity), as bench/lock_pair.py does."""
import functools
import multiprocessing as mp
import os
import resource
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import manager_compare  # noqa: E402

import shmstate  # noqa: E402


def pinned_worker(pin, worker, cpu_times, obj, seconds, start, results, seed):
    if pin:
        os.sched_setaffinity(0, {int(pin.split(",")[seed])})
    before = resource.getrusage(resource.RUSAGE_SELF)
    worker(obj, seconds, start, results, seed)
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu_times.put(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)


def main():
    label = sys.argv[1].lower()
    seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 1.0
    nprocs = int(sys.argv[3]) if len(sys.argv) > 3 else 2
    pin = os.environ.get("PIN", "")
    rows = [row for row in manager_compare.ROWS if label in row[0].lower()]
    if len(rows) != 1:
        sys.exit(f"row_pair.py: {sys.argv[1]!r} names {len(rows)} rows of manager_compare.py")
    name, worker, make = rows[0]
    cpu_times = mp.get_context("fork").Queue()
    with shmstate.Manager(size="2GiB") as manager:  # A list append row grows by GiBs.
        rate = manager_compare.run_row(
            manager, functools.partial(pinned_worker, pin, worker, cpu_times), make, seconds,
            nprocs)
    cpu = sum(cpu_times.get(timeout=60) for _ in range(nprocs))
    print(f"{name}, {nprocs} procs: {rate / 1e3:.0f}k ops/s, {cpu * 1e9 / (rate * seconds):.0f} "
          f"CPU ns/op, {cpu / seconds:.2f} CPUs", flush=True)


if __name__ == "__main__":
    main()
