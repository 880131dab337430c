#!/usr/bin/env python3
"""The shmstate Python module in-process, against redis-py and multiprocessing.Manager, in one run.

Counter incr, dict get and dict set (1024 keys of 16 bytes, 64-byte values, random keys from a
fixed seed) from --procs forked Python processes, each for --duration seconds, through:
  shmstate   the module attached to a `shmstate serve --workers 0` this script starts
  redis-py   redis.Redis to a redis-server this script starts on a free loopback port
  Manager    a multiprocessing.Manager: a dict proxy, and a registered counter object whose
             incr() is one round trip to the manager process
and the 1 MiB read of an array (float64) into a fresh numpy array (`a.to_numpy()`) against
numpy.copyto from a multiprocessing.shared_memory buffer into a preallocated array.

Prints a table with the ratios, and with --tsv FILE appends lines for bench/report.py:
  python<TAB>impl<TAB>op<TAB>procs<TAB>value<TAB>unit
Every server it starts is stopped by pid on exit.

  PYTHONPATH=build/python /usr/bin/python3 bench/python_inproc.py --shmstate build/shmstate
"""
import argparse
import multiprocessing as mp
import multiprocessing.managers
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid

KEYS = [b"k%015d" % i for i in range(1024)]
VALUE = b"v" * 64
BATCH = 256  # Operations between two clock reads.


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def key_sequence(seed):
    rng = random.Random(seed)
    return [KEYS[rng.randrange(len(KEYS))] for _ in range(BATCH)]


def timed_loop(one_batch, seconds):
    """Runs one_batch() (BATCH operations) until `seconds` pass: operations per second."""
    one_batch()  # Warm up (first-touch, connection setup).
    ops = 0
    t0 = time.perf_counter()
    deadline = t0 + seconds
    while True:
        one_batch()
        ops += BATCH
        now = time.perf_counter()
        if now >= deadline:
            return ops / (now - t0)


# --- The three implementations: make(op, seed) returns one_batch in the child. ------------------

def shmstate_batch(name, op, seed):
    import shmstate
    st = shmstate.attach(name)
    if op == "incr":
        incr = st.counter("bench-hits").incr

        def batch():
            for _ in range(BATCH):
                incr()
        return batch
    d = st.dict("bench")
    keys = key_sequence(seed)
    if op == "get":
        get = d.get

        def batch():
            for k in keys:
                if get(k) is None:
                    raise RuntimeError("missing key")
        return batch

    def batch():
        for k in keys:
            d[k] = VALUE
    return batch


def redis_batch(port, op, seed):
    import redis
    r = redis.Redis(host="127.0.0.1", port=port)
    if op == "incr":
        def batch():
            for _ in range(BATCH):
                r.incr("bench-hits")
        return batch
    keys = key_sequence(seed)
    if op == "get":
        def batch():
            for k in keys:
                if r.get(k) is None:
                    raise RuntimeError("missing key")
        return batch

    def batch():
        for k in keys:
            r.set(k, VALUE)
    return batch


class SharedCounter:
    """What a Manager user writes for a counter: one method call, a lock in the manager."""

    def __init__(self):
        self._lock = threading.Lock()
        self._value = 0

    def incr(self):
        with self._lock:
            self._value += 1
            return self._value


class BenchManager(multiprocessing.managers.SyncManager):
    pass


BenchManager.register("SharedCounter", SharedCounter)


def manager_batch(proxies, op, seed):
    counter, shared = proxies
    if op == "incr":
        def batch():
            for _ in range(BATCH):
                counter.incr()
        return batch
    keys = key_sequence(seed)
    if op == "get":
        def batch():
            for k in keys:
                if shared.get(k) is None:
                    raise RuntimeError("missing key")
        return batch

    def batch():
        for k in keys:
            shared[k] = VALUE
    return batch


def child(make, target, op, seed, seconds, start, results):
    try:
        batch = make(target, op, seed)
        start.wait(timeout=60)
        results.put(timed_loop(batch, seconds))
    except Exception as error:  # noqa: BLE001 - reported by the parent.
        results.put(f"{type(error).__name__}: {error}")
        raise


def run_procs(make, target, op, procs, seconds):
    """Sum of the per-process rates of `procs` forked processes running op at once."""
    ctx = mp.get_context("fork")
    start = ctx.Barrier(procs)
    results = ctx.Queue()
    children = [ctx.Process(target=child, args=(make, target, op, 1000 + p, seconds, start,
                                                results)) for p in range(procs)]
    for c in children:
        c.start()
    rates = [results.get(timeout=seconds + 90) for _ in children]
    for c in children:
        c.join(timeout=30)
    failed = [r for r in rates if isinstance(r, str)]
    if failed:
        raise RuntimeError(f"{make.__name__} {op}: {failed[0]}")
    return sum(rates)


# --- Array read. ----------------------------------------------------------------------------

def best_rate(fn, nbytes, seconds):
    """Bytes per second of fn(), the best of 5 rounds of seconds/5 each."""
    best = 0.0
    for _ in range(5):
        fn()
        n = 0
        t0 = time.perf_counter()
        while True:
            for _ in range(16):
                fn()
            n += 16
            elapsed = time.perf_counter() - t0
            if elapsed >= seconds / 5:
                break
        best = max(best, n * nbytes / elapsed)
    return best


def numpy_reads(shm, values, seconds):
    """numpy.copyto into a preallocated array, and .copy(), from a shared_memory buffer."""
    import numpy as np
    src = np.ndarray(values.shape, dtype=values.dtype, buffer=shm.buf)
    src[:] = values
    dst = np.empty_like(src)
    copyto = best_rate(lambda: np.copyto(dst, src), values.nbytes, seconds)
    fresh = best_rate(src.copy, values.nbytes, seconds)
    return copyto, fresh


def array_read(st, seconds):
    import numpy as np
    from multiprocessing import shared_memory
    n = (1 << 20) // 8
    values = np.arange(n, dtype=np.float64)
    a = st.array_from_numpy("bench-array", values)
    assert np.array_equal(a.to_numpy(), values)
    ours = best_rate(a.to_numpy, n * 8, seconds)
    shm = shared_memory.SharedMemory(create=True, size=n * 8)
    try:
        copyto, fresh = numpy_reads(shm, values, seconds)
    finally:
        shm.close()
        shm.unlink()
    return ours, copyto, fresh


# --- Servers. -------------------------------------------------------------------------------

class Started:
    def __init__(self):
        self.procs = []

    def add(self, proc):
        self.procs.append(proc)
        return proc

    def stop(self):
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()


def start_shmstate(started, binary):
    name = "pybench" + uuid.uuid4().hex[:10]
    proc = started.add(subprocess.Popen(
        [binary, "serve", "--name", name, "--workers", "0", "--size", "64MiB",
         "--log-level", "warn"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL))
    line = proc.stdout.readline().decode()
    if not line.startswith("shmstate:"):
        raise RuntimeError(f"shmstate serve did not start: {line!r}")
    return name


def start_redis(started):
    import redis
    port = free_port()
    started.add(subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--loglevel", "warning"], stdout=subprocess.DEVNULL))
    r = redis.Redis(host="127.0.0.1", port=port)
    deadline = time.monotonic() + 10
    while True:
        try:
            r.ping()
            return port
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shmstate", default=os.path.join(
        os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "build", "shmstate"))
    parser.add_argument("--procs", type=int, default=2, choices=range(1, 17), metavar="1-16")
    parser.add_argument("--duration", type=float, default=2.0, help="seconds per row and side")
    parser.add_argument("--tsv", help="append bench/report.py lines to this file")
    args = parser.parse_args()
    if not 0.1 <= args.duration <= 60:
        parser.error("--duration must be 0.1-60 seconds")
    import shmstate
    started = Started()
    rows = []
    try:
        name = start_shmstate(started, args.shmstate)
        st = shmstate.attach(name)
        bench_dict = st.dict("bench")
        for k in KEYS:
            bench_dict[k] = VALUE
        sides = [("shmstate", shmstate_batch, name)]
        if shutil.which("redis-server"):
            port = start_redis(started)
            import redis
            redis.Redis(host="127.0.0.1", port=port).mset({k: VALUE for k in KEYS})
            sides.append(("redis-py", redis_batch, port))
        manager = BenchManager()
        manager.start()
        try:
            shared = manager.dict({k: VALUE for k in KEYS})
            sides.append(("Manager", manager_batch, (manager.SharedCounter(), shared)))
            for op in ("incr", "get", "set"):
                for impl, make, target in sides:
                    rate = run_procs(make, target, op, args.procs, args.duration)
                    rows.append((impl, op, args.procs, rate, "ops/s"))
                    print(f"  {impl:9s} {op:5s} {rate / 1e3:10.1f}k ops/s", file=sys.stderr)
        finally:
            manager.shutdown()
        assert all(len(bench_dict[k]) == 64 for k in KEYS)
        ours, copyto, fresh = array_read(st, args.duration)
        rows += [("shmstate", "array read 1 MiB", 1, ours, "B/s"),
                 ("numpy copyto", "array read 1 MiB", 1, copyto, "B/s"),
                 ("numpy copy (fresh)", "array read 1 MiB", 1, fresh, "B/s")]
    finally:
        started.stop()

    by = {(impl, op): rate for impl, op, _, rate, _ in rows}
    print(f"Python in-process, {args.procs} processes, {args.duration} s per row")
    print(f"{'op':18s} {'shmstate':>14s} {'redis-py':>14s} {'Manager':>14s} "
          f"{'x redis-py':>10s} {'x Manager':>10s}")
    for op in ("incr", "get", "set"):
        s, r, m = by.get(("shmstate", op)), by.get(("redis-py", op)), by.get(("Manager", op))
        print(f"{op:18s} {s / 1e6:12.2f}M {(r or 0) / 1e6:12.3f}M {(m or 0) / 1e6:12.4f}M "
              f"{(s / r if r else float('nan')):10.1f} {(s / m if m else float('nan')):10.1f}")
    print(f"{'array read 1 MiB':18s} {ours / 1e9:10.2f} GB/s; numpy copyto {copyto / 1e9:.2f} GB/s"
          f" ({ours / copyto:.2f}x), numpy fresh copy {fresh / 1e9:.2f} GB/s ({ours / fresh:.2f}x)")
    if args.tsv:
        with open(args.tsv, "a") as f:
            for impl, op, procs, rate, unit in rows:
                f.write(f"python\t{impl}\t{op}\t{procs}\t{rate:.1f}\t{unit}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
