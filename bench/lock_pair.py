#!/usr/bin/env python3
"""manager_compare.py's Lock row alone, shmstate.Manager only, with the workers optionally pinned:
NPROCS forked processes run manager_compare.w_lock (acquire + release in a loop) on one Lock for
SECONDS; prints their ops/s summed.

    [PIN=0,1] PYTHONPATH=build/python SHMSTATE_BIN=build/shmstate python3 bench/lock_pair.py \\
        [SECONDS] [NPROCS]

PIN=a,b,... pins worker i to CPU number i of the list (os.sched_setaffinity): 0,1 runs two
workers at once on two cores (they collide on the Lock's shard), 0,0 time-slices them on one.
Unpinned, the scheduler picks either, which is why the bench's Lock row is bimodal
(bench/RESULTS.md, "The Lock row")."""
import functools
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import manager_compare  # noqa: E402

import shmstate  # noqa: E402


def pinned_worker(pin, lock, seconds, start, results, seed):
    if pin:
        os.sched_setaffinity(0, {int(pin.split(",")[seed])})
    manager_compare.w_lock(lock, seconds, start, results, seed)


def main():
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 1.0
    nprocs = int(sys.argv[2]) if len(sys.argv) > 2 else 2
    pin = os.environ.get("PIN", "")
    with shmstate.Manager() as manager:
        rate = manager_compare.run_row(manager, functools.partial(pinned_worker, pin),
                                       lambda m: m.Lock(), seconds, nprocs)
    print(f"{nprocs} procs: {rate / 1e3:.0f}k ops/s", flush=True)


if __name__ == "__main__":
    main()
