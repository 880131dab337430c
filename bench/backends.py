#!/usr/bin/env python3
"""The same workload on the three backends of shmstate.connect(), in one run: shm:// (a
`shmstate serve --workers 0`), redis:// (a redis-server) and redis+cluster:// (3 masters + 3
replicas), all on 127.0.0.1, each started here on free ports and stopped by pid.

One Python thread, one operation at a time (latency, not throughput): counter incr, dict get
and set of 64-byte values (1024 keys of 16 bytes), list push then pop. Also raw redis-py
INCR/GET/SET on the same redis-server, to show what the shmstate layer (a Lua script per write)
adds. Prints a Markdown table: median and p99 latency in microseconds, and each backend's
median as a multiple of shm:// measured in the same run.

  /usr/bin/python3 bench/backends.py [--ops 20000] [--build build]
"""
import argparse
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port(also_bus=False):
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if not also_bus:
            return port
        if port + 10000 <= 65535:
            with socket.socket() as b:
                try:
                    b.bind(("127.0.0.1", port + 10000))
                    return port
                except OSError:
                    pass


def cli(port, *args):
    return subprocess.run(["redis-cli", "-p", str(port), *args], capture_output=True,
                          text=True, timeout=10).stdout


def wait_until(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            sys.exit(f"timed out waiting for {what}")
        time.sleep(0.05)


def start_redis(workdir, procs, cluster=False):
    port = free_port(also_bus=cluster)
    d = os.path.join(workdir, str(port))
    os.makedirs(d)
    args = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", d, "--save", "",
            "--appendonly", "no", "--logfile", "redis.log"]
    if cluster:
        args += ["--cluster-enabled", "yes", "--cluster-node-timeout", "2000"]
    procs.append(subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    wait_until(lambda: cli(port, "ping").strip() == "PONG", 10, f"redis-server :{port}")
    return port


def timed(fn, ops):
    """Per-call latencies (µs) of ops calls of fn(i)."""
    clock = time.perf_counter_ns
    out = []
    for i in range(ops):
        t0 = clock()
        fn(i)
        out.append((clock() - t0) / 1000)
    return out


def workload(st, ops):
    """{operation: [latency µs]} of the shmstate API on one backend."""
    tag = "b" + uuid.uuid4().hex[:8]
    keys = [b"k%015d" % i for i in range(1024)]
    value = b"v" * 64
    hits, d, q = st.counter(tag + ".hits"), st.dict(tag + ".d"), st.list(tag + ".q")
    for k in keys:
        d[k] = value
    results = {
        "counter incr": timed(lambda i: hits.incr(), ops),
        "dict get 64 B": timed(lambda i: d.get_raw(keys[i & 1023]), ops),
        "dict set 64 B": timed(lambda i: d.__setitem__(keys[i & 1023], value), ops),
        "list push": timed(lambda i: q.push(value), ops),
        "list pop": timed(lambda i: q.pop(), ops),
    }
    assert hits.value == ops and len(q) == 0
    st.delete(tag + ".hits"), st.delete(tag + ".d"), st.delete(tag + ".q")
    return results


def raw_redis(port, ops):
    import redis
    r = redis.Redis(port=port)
    keys = [b"raw:k%015d" % i for i in range(1024)]
    value = b"v" * 64
    for k in keys:
        r.set(k, value)
    return {
        "counter incr": timed(lambda i: r.incr("raw:hits"), ops),
        "dict get 64 B": timed(lambda i: r.get(keys[i & 1023]), ops),
        "dict set 64 B": timed(lambda i: r.set(keys[i & 1023], value), ops),
        "list push": timed(lambda i: r.rpush("raw:q", value), ops),
        "list pop": timed(lambda i: r.lpop("raw:q"), ops),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ops", type=int, default=20000, help="operations per measurement")
    ap.add_argument("--build", default=os.path.join(REPO, "build"))
    args = ap.parse_args()
    sys.path.insert(0, os.path.join(args.build, "python"))
    import shmstate

    for tool in ("redis-server", "redis-cli"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is missing (apt-get install redis-server redis-tools)")
    workdir = tempfile.mkdtemp(prefix="shmstate-bench-")
    procs = []
    name = "bench" + uuid.uuid4().hex[:8]
    try:
        binary = os.environ.get("SHMSTATE_BIN", os.path.join(args.build, "shmstate"))
        server = subprocess.Popen([binary, "serve", "--name", name,
                                   "--workers", "0", "--size", "64MiB"],
                                  stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        procs.append(server)
        server.stdout.readline()  # Ready once it printed where it runs.
        single = start_redis(workdir, procs)
        nodes = [start_redis(workdir, procs, cluster=True) for _ in range(6)]
        subprocess.run(["redis-cli", "--cluster", "create", *[f"127.0.0.1:{p}" for p in nodes],
                        "--cluster-replicas", "1", "--cluster-yes"], check=True,
                       capture_output=True, timeout=30)
        for p in nodes:
            wait_until(lambda: "cluster_state:ok" in cli(p, "cluster", "info"), 20, "the cluster")

        backends = [
            ("shm://", shmstate.connect(f"shm://{name}")),
            ("redis://", shmstate.connect(f"redis://127.0.0.1:{single}")),
            ("redis+cluster://", shmstate.connect(
                "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in nodes[:3]))),
            ("redis+cluster:// wait_replicas=1", shmstate.connect(
                "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in nodes[:3])
                + "?wait_replicas=1")),
        ]
        table = {}
        for label, st in backends:
            workload(st, min(args.ops, 1000))  # Warm up: connections, scripts loaded.
            table[label] = workload(st, args.ops)
        raw_redis(single, min(args.ops, 1000))
        table["raw redis-py on redis://"] = raw_redis(single, args.ops)
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM if p is procs[0] else signal.SIGKILL)
            p.wait(timeout=20)
        shutil.rmtree(workdir, ignore_errors=True)

    base = {op: statistics.median(lat) for op, lat in table["shm://"].items()}
    print(f"{args.ops} operations each, one thread, {os.cpu_count()} CPUs, "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}\n")
    print("| backend | operation | median µs | p99 µs | median / shm:// |")
    print("|---|---|---:|---:|---:|")
    for label, results in table.items():
        for op, lat in results.items():
            lat = sorted(lat)
            med = statistics.median(lat)
            p99 = lat[int(len(lat) * 0.99) - 1]
            print(f"| {label} | {op} | {med:.2f} | {p99:.2f} | {med / base[op]:.0f}x |")


if __name__ == "__main__":
    main()
