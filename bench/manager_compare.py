#!/usr/bin/env python3
"""shmstate.Manager() against multiprocessing.Manager(), same machine, same run: 2 processes on
one object per row, ops/s summed over both; then the memory each object costs.

    PYTHONPATH=build/python /usr/bin/python3 bench/manager_compare.py [--seconds 1.0]
        [--rounds 3]

Each round runs every row against both managers, one after the other; the table shows the
median over the rounds of each side's ops/s, and the median of the per-round ratios.

Rows: dict get, dict set (1024 16-byte keys, 64-byte values), list append, list getitem (1024
items), Value += 1 under its Lock, Queue put then get, Lock acquire/release, Event set/wait round
trip (two processes ping-pong over two Events; one round trip = two hand-offs). Memory: bytes of the
segment's allocator the objects take (shmstate; the registry entry of each object, about 0.5 KiB,
is preallocated and not counted) or the growth of the RSS of the manager's server process
(stock), per object, over 1000 objects of each type. Each round also times a bare futex
ping-pong between 2 processes (futex_pingpong): the Event row's floor on this machine.

shmstate's segment is 2 GiB (--size; tmpfs pages are taken only as written): on an idle machine
the list append row keeps millions of items in its second, more than the default 256 MiB."""
import argparse
import multiprocessing as mp
import os
import random
import sys
import time

KEYS = [("k%015d" % i) for i in range(1024)]
VALUE = "v" * 64


def _loop(op, seconds, start, results, seed):
    """Calls op(i) for i over a seeded random sequence of indexes (0..1023), drawn beforehand
    so that the loop costs both managers the same few tens of nanoseconds per call."""
    rng = random.Random(seed)
    indexes = [rng.randrange(1024) for _ in range(4096)]
    start.wait()
    deadline = time.monotonic() + seconds
    ops = 0
    while time.monotonic() < deadline:
        for i in indexes[(ops % 4096):(ops % 4096) + 64]:
            op(i)
        ops += 64
    results.put(ops)


def w_dict_get(d, seconds, start, results, seed):
    keys = KEYS
    _loop(lambda i: d[keys[i]], seconds, start, results, seed)


def w_dict_set(d, seconds, start, results, seed):
    keys = KEYS

    def op(i):
        d[keys[i]] = VALUE
    _loop(op, seconds, start, results, seed)


def w_list_append(lst, seconds, start, results, seed):
    append = lst.append
    _loop(lambda i: append(VALUE), seconds, start, results, seed)


def w_list_getitem(lst, seconds, start, results, seed):
    _loop(lambda i: lst[i], seconds, start, results, seed)


def w_value_incr(objs, seconds, start, results, seed):
    value, lock = objs

    def op(i):
        with lock:
            value.value += 1
    _loop(op, seconds, start, results, seed)


def w_queue(q, seconds, start, results, seed):
    def op(i):
        q.put(VALUE)
        q.get()
    _loop(op, seconds, start, results, seed)


def w_lock(lock, seconds, start, results, seed):
    def op(i):
        lock.acquire()
        lock.release()
    _loop(op, seconds, start, results, seed)


def w_event(objs, seconds, start, results, seed):
    mine, theirs, stop = objs[seed % 2], objs[(seed + 1) % 2], objs[2]
    start.wait()
    deadline = time.monotonic() + seconds
    trips = 0
    if seed % 2 == 0:  # The pinger counts round trips.
        while time.monotonic() < deadline:
            theirs.set()
            mine.wait()
            mine.clear()
            trips += 1
        stop.set()
        theirs.set()
        results.put(trips)
    else:
        while not stop.is_set():
            mine.wait()
            mine.clear()
            theirs.set()
        results.put(0)


def futex_pingpong(seconds):
    """Round trips/s of a bare futex ping-pong between 2 forked processes: ctypes system calls on
    one shared word, no library. The floor of any hand-off between two sleeping processes (an
    Event's set/wait round trip is two), measured in the same run as the rows."""
    import ctypes
    import mmap
    libc = ctypes.CDLL(None, use_errno=True)
    shared = mmap.mmap(-1, mmap.PAGESIZE)  # Anonymous and MAP_SHARED: the child sees it.
    word = ctypes.c_int32.from_buffer(shared)
    addr = ctypes.c_void_p(ctypes.addressof(word))
    futex, wait_op, wake_op = 202, 0, 1  # SYS_futex on x86-64, FUTEX_WAIT, FUTEX_WAKE.

    def sleep_while(value):
        while word.value == value:
            libc.syscall(futex, addr, wait_op, ctypes.c_int32(value), None, None, 0)

    ponger = os.fork()
    if ponger == 0:  # Answers each odd turn with the next even one, until -1.
        while True:
            value = word.value
            if value == -1:
                os._exit(0)
            if value % 2:
                word.value = value + 1
                libc.syscall(futex, addr, wake_op, 1, None, None, 0)
            else:
                sleep_while(value)
    trips, deadline = 0, time.monotonic() + seconds
    t0 = time.monotonic()
    while time.monotonic() < deadline:
        word.value = 2 * trips + 1
        libc.syscall(futex, addr, wake_op, 1, None, None, 0)
        sleep_while(2 * trips + 1)
        trips += 1
    elapsed = time.monotonic() - t0
    word.value = -1
    libc.syscall(futex, addr, wake_op, 1, None, None, 0)
    os.waitpid(ponger, 0)
    del word
    shared.close()
    return trips / elapsed


ROWS = [
    ("dict get", w_dict_get, lambda m: m.dict({k: VALUE for k in KEYS})),
    ("dict set", w_dict_set, lambda m: m.dict({k: VALUE for k in KEYS})),
    ("list append", w_list_append, lambda m: m.list()),
    ("list getitem", w_list_getitem, lambda m: m.list([VALUE] * 1024)),
    ("Value += 1 under its Lock", w_value_incr, lambda m: (m.Value("i", 0), m.Lock())),
    ("Queue put + get", w_queue, lambda m: m.Queue()),
    ("Lock acquire + release", w_lock, lambda m: m.Lock()),
    ("Event set/wait round trip", w_event, lambda m: (m.Event(), m.Event(), m.Event())),
]


def run_row(manager, worker, make, seconds, nprocs=2):
    obj = make(manager)
    ctx = mp.get_context("fork")
    start = ctx.Barrier(nprocs + 1)
    results = ctx.Queue()
    procs = [ctx.Process(target=worker, args=(obj, seconds, start, results, seed))
             for seed in range(nprocs)]
    for p in procs:
        p.start()
    start.wait(timeout=60)
    t0 = time.monotonic()
    total = sum(results.get(timeout=seconds + 120) for _ in procs)
    elapsed = time.monotonic() - t0
    for p in procs:
        p.join(timeout=30)
    return total / elapsed


def rss(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def segment_used(name):
    from shmstate import _shmstate
    return -_shmstate._segment_free_bytes(name)


MEMORY = [("dict (10 int items)", lambda m: m.dict({i: i for i in range(10)})),
          ("list (10 ints)", lambda m: m.list(range(10))),
          ("Value", lambda m: m.Value("i", 0)), ("Lock", lambda m: m.Lock()),
          ("Queue", lambda m: m.Queue()), ("Event", lambda m: m.Event())]


def memory(manager, used, count=1000):
    out, keep = {}, []
    for label, make in MEMORY:  # Everything stays alive: a freed object's memory is not reused.
        before = used()
        keep += [make(manager) for _ in range(count)]
        out[label] = (used() - before) / count
    return out


def median(xs):
    xs = sorted(xs)
    n = len(xs)
    return xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rows", default="",
                        help="only the rows whose label contains one of these comma-separated "
                        "words (case-insensitive), and no memory table")
    parser.add_argument("--size", default="2GiB",
                        help="shmstate's segment (sparse): list append keeps ~100 B an item")
    args = parser.parse_args()
    import shmstate
    wanted = [w.lower() for w in args.rows.split(",") if w]
    rows = [row for row in ROWS if not wanted or any(w in row[0].lower() for w in wanted)]
    results = {label: ([], []) for label, _, _ in rows}
    floor = []
    for round_ in range(args.rounds):
        floor.append(futex_pingpong(args.seconds))
        print(f"round {round_ + 1}: futex ping-pong\t{floor[-1]:.0f}", file=sys.stderr)
        for label, worker, make in rows:  # Alternating: stock, then ours, row by row.
            stock = mp.Manager()
            results[label][0].append(run_row(stock, worker, make, args.seconds))
            stock.shutdown()
            with shmstate.Manager(size=args.size) as ours:
                results[label][1].append(run_row(ours, worker, make, args.seconds))
            print(f"round {round_ + 1}: {label}\t{results[label][0][-1]:.0f}\t"
                  f"{results[label][1][-1]:.0f}", file=sys.stderr)
    stock_mem, ours_mem = {}, {}
    if not wanted:
        stock = mp.Manager()
        stock_mem = memory(stock, lambda: rss(stock._process.pid))
        stock.shutdown()
        with shmstate.Manager() as ours:
            ours_mem = memory(ours, lambda: segment_used(ours.address))
    print(f"| row (2 processes, one object; median of {args.rounds} alternating rounds) | "
          "multiprocessing.Manager | shmstate.Manager | ratio (median; min-max) |")
    print("|---|---|---|---|")
    for label, (stock_ops, ours_ops) in results.items():
        ratios = [o / s for s, o in zip(stock_ops, ours_ops)]
        print(f"| {label} | {median(stock_ops) / 1e3:.1f}k ops/s | "
              f"{median(ours_ops) / 1e3:.0f}k ops/s | {median(ratios):.0f}x "
              f"({min(ratios):.0f}-{max(ratios):.0f}) |")
    event = results.get("Event set/wait round trip", ([], []))[1]
    print()
    if event:
        print(f"Floor of the Event row: a bare futex ping-pong between 2 processes, "
              f"{median(floor) / 1e3:.1f}k round trips/s (median of {args.rounds}, "
              f"{min(floor) / 1e3:.1f}-{max(floor) / 1e3:.1f}k); shmstate's Event reaches "
              f"{median([e / f for e, f in zip(event, floor)]) * 100:.0f}% of it "
              "(median per round).")
    if not stock_mem:
        return
    print()
    print("| memory per object (1000 objects) | multiprocessing.Manager (server RSS growth) | "
          "shmstate.Manager (segment bytes) |")
    print("|---|---|---|")
    for label in stock_mem:
        print(f"| {label} | {stock_mem[label]:.0f} B | {ours_mem[label]:.0f} B |")


if __name__ == "__main__":
    main()
