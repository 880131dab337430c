#!/usr/bin/env python3
"""Microseconds per transfer between two of 16 accounts from Python, one process: shmstate's
st.transaction against redis-py's WATCH/MULTI/EXEC transfer to a local redis-server.

Rows (each a transfer of 1 from account a to account b, the pair drawn from a fixed sequence):
  shm st.transaction     st.transaction(fn): two reads and two writes of a dict's entries
  shm plain (no tx)      the same two reads and two writes with the plain Dict, no isolation
  redis-py WATCH/MULTI   WATCH a b; MGET a b; MULTI; SET a; SET b; EXEC (retried on WatchError)
  redis backend tx       st.transaction(fn) with shmstate.connect("redis://...") (same fn)

Each round times every row once (rows in alternating order from round to round), ROUNDS rounds;
the table quotes each row's median with its ratio to the redis-py row, in wall-clock time and in
CPU time: this process's own, plus redis-server's for the Redis rows (read from /proc; the
shmstate rows use no server at all). On a machine whose cores are shared (2 cores, other jobs)
the wall-clock figures mostly measure the scheduler; the CPU figures travel. The servers it starts
(`shmstate serve --workers 0`, `redis-server` on a free 127.0.0.1 port) are stopped by pid.

  PYTHONPATH=build/python /usr/bin/python3 bench/tx_transfer.py --shmstate build/shmstate \
      [--rounds 11] [--transfers 2000]
"""
import argparse
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

import redis

import shmstate

ACCOUNTS = [f"a{i:02d}" for i in range(16)]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def transfer(tx, a, b):
    d = tx.dict("bench-acct")
    x, y = int(d[a]), int(d[b])
    d[a] = b"%d" % (x - 1)
    d[b] = b"%d" % (y + 1)


def shm_tx(st, pairs):
    for a, b in pairs:
        st.transaction(transfer, a, b)


def shm_plain(st, pairs):
    d = st.dict("bench-acct")
    for a, b in pairs:
        x, y = int(d[a]), int(d[b])
        d[a] = b"%d" % (x - 1)
        d[b] = b"%d" % (y + 1)


def redis_py(r, pairs):
    with r.pipeline() as p:
        for a, b in pairs:
            ka, kb = "acct:" + a, "acct:" + b
            while True:
                try:
                    p.watch(ka, kb)
                    x, y = p.mget(ka, kb)
                    p.multi()
                    p.set(ka, int(x) - 1)
                    p.set(kb, int(y) + 1)
                    p.execute()
                    break
                except redis.WatchError:
                    continue


def cpu_seconds(pid):
    """User + system CPU seconds of process `pid` so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def timed(fn, target, pairs, server_pid):
    """(wall us, CPU us) per transfer; CPU is ours plus the server's (None: no server)."""
    s0 = cpu_seconds(server_pid) if server_pid else 0.0
    c0, t0 = time.process_time(), time.perf_counter()
    fn(target, pairs)
    t1, c1 = time.perf_counter(), time.process_time()
    s1 = cpu_seconds(server_pid) if server_pid else 0.0
    n = len(pairs)
    return (t1 - t0) / n * 1e6, ((c1 - c0) + (s1 - s0)) / n * 1e6


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shmstate", default="build/shmstate")
    parser.add_argument("--rounds", type=int, default=11)
    parser.add_argument("--transfers", type=int, default=2000)
    args = parser.parse_args()
    rng = random.Random(24)
    pairs = [tuple(rng.sample(ACCOUNTS, 2)) for _ in range(args.transfers)]
    name = "txbench" + uuid.uuid4().hex[:10]
    workdir = tempfile.mkdtemp(prefix="tx-bench-")
    port = free_port()
    server = subprocess.Popen(
        [args.shmstate, "serve", "--name", name, "--workers", "0", "--size", "64MiB",
         "--log-level", "warn"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    redis_server = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", workdir, "--loglevel", "warning"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        line = server.stdout.readline().decode()
        if not line.startswith("shmstate:"):
            raise RuntimeError(f"shmstate serve did not start: {line!r}")
        r = redis.Redis(port=port)
        deadline = time.monotonic() + 10
        while True:
            try:
                r.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline or redis_server.poll() is not None:
                    raise
                time.sleep(0.05)
        st = shmstate.attach(name)
        rst = shmstate.connect(f"redis://127.0.0.1:{port}")
        for client in (st, rst):
            d = client.dict("bench-acct")
            for a in ACCOUNTS:
                d[a] = b"1000000"
        r.mset({"acct:" + a: 1000000 for a in ACCOUNTS})
        rp = redis_server.pid
        table = [("shm st.transaction", shm_tx, st, None),
                 ("shm plain (no tx)", shm_plain, st, None),
                 ("redis-py WATCH/MULTI", redis_py, r, rp), ("redis backend tx", shm_tx, rst, rp)]
        samples = {row[0]: [] for row in table}
        for round_no in range(args.rounds):
            order = table if round_no % 2 == 0 else list(reversed(table))
            for row_name, fn, target, server_pid in order:
                samples[row_name].append(timed(fn, target, pairs, server_pid))
        for client in (st, rst):  # Every transfer kept the total.
            d = client.dict("bench-acct")
            assert sum(int(d[a]) for a in ACCOUNTS) == 16 * 1000000
        def median(row, i):
            return statistics.median(sample[i] for sample in samples[row])
        base = [median("redis-py WATCH/MULTI", i) for i in (0, 1)]
        print(f"{'transfer':22} {'wall us':>9} {'redis-py/x':>10} {'CPU us':>9} {'redis-py/x':>10}"
              f"   (median of {args.rounds} rounds, {args.transfers} transfers each, one process;"
              f" load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")
        for row_name, *_ in table:
            wall, cpu = median(row_name, 0), median(row_name, 1)
            print(f"{row_name:22} {wall:9.2f} {base[0] / wall:10.1f} {cpu:9.2f} {base[1] / cpu:10.1f}")
    finally:
        for proc in (server, redis_server):
            proc.terminate()
            proc.wait(timeout=10)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
