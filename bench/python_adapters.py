#!/usr/bin/python3
"""The Python adapters against their usual equivalents, in one run on this machine.

  1. Rate-limit checks per second (limits 2.8 strategies' hit()): shmstate.limits vs limits'
     RedisStorage (a redis-server it starts on a free port) vs MemoryStorage (one process only,
     shared by nobody), fixed and moving windows, 1 and 2 processes.
  2. Scrape time of prometheus_client (generate_latest) after W recycled workers:
     shmstate.prometheus vs the file-based multiprocess mode (PROMETHEUS_MULTIPROC_DIR, with
     mark_process_dead for every exited worker, as gunicorn's child_exit hook does).
  3. The cost of one Counter.inc() / Histogram.observe() per value class, in one process.

    PYTHONPATH=build/python /usr/bin/python3 bench/python_adapters.py [--seconds 2] [--quick]

Prints a markdown table per part, with ratios against the baseline measured in the same run.
Starts `build/shmstate serve --workers 0` and `redis-server` itself and stops them by pid.
Never run it from the tests or CI.
"""
import argparse
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.environ.get("SHMSTATE_BUILD_DIR", os.path.join(ROOT, "build"))
sys.path.insert(0, os.path.join(BUILD, "python"))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_shmstate():
    name = "bench" + uuid.uuid4().hex[:10]
    proc = subprocess.Popen([os.path.join(BUILD, "shmstate"), "serve", "--name", name,
                             "--workers", "0", "--size", "256MiB", "--listen", "127.0.0.1:0"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    line = proc.stdout.readline().decode()
    if not line.startswith("shmstate:"):
        raise RuntimeError(f"shmstate did not start: {line!r}")
    return name, proc


def start_redis():
    port = free_port()
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                             "--save", "", "--appendonly", "no"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    import redis
    client = redis.Redis(port=port)
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            return port, proc
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def stop(proc):
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)


# --- 1. Rate-limit checks ------------------------------------------------------------------

LIMIT_CASES = [  # (strategy, limit string, identities)
    ("fixed-window", "100/minute", 1000),
    ("moving-window", "100/minute", 1000),
    ("moving-window", "5000/hour", 20),
]


def hits_for(uri, strategy, limit, identities, seconds, seed):
    from limits import parse
    from limits.storage import storage_from_string
    from limits.strategies import STRATEGIES
    import shmstate.limits  # noqa: F401
    storage = storage_from_string(uri)
    limiter = STRATEGIES[strategy](storage)
    item = parse(limit)
    rng = random.Random(seed)
    who = [f"user{i}" for i in range(identities)]
    ops = allowed = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for _ in range(64):
            allowed += limiter.hit(item, who[rng.randrange(identities)])
        ops += 64
    return ops, allowed


def run_procs(procs, fn, *args):
    """Runs fn(*args, seed) in `procs` forked processes started together; sum of ops/s."""
    read_fd, write_fd = os.pipe()
    gate_read, gate_write = os.pipe()
    pids = []
    for p in range(procs):
        pid = os.fork()
        if pid == 0:
            os.read(gate_read, 1)
            start = time.monotonic()
            ops, _ = fn(*args, p + 1)
            os.write(write_fd, f"{ops / (time.monotonic() - start)}\n".encode())
            os._exit(0)
        pids.append(pid)
    os.close(write_fd)
    os.write(gate_write, b"x" * procs)
    with os.fdopen(read_fd) as f:
        rates = [float(line) for line in f]
    for pid in pids:
        os.waitpid(pid, 0)
    return sum(rates)


def bench_limits(name, redis_port, seconds):
    rows = []
    for strategy, limit, identities in LIMIT_CASES:
        for procs in (1, 2):
            rates = {}
            for label, uri in (("shmstate", f"shmstate://{name}/b{uuid.uuid4().hex[:6]}"),
                               ("redis", f"redis://127.0.0.1:{redis_port}/0"),
                               ("memory", "memory://")):
                if label == "memory" and procs > 1:
                    continue  # Not shared: no answer to compare.
                if label == "redis":
                    import redis
                    redis.Redis(port=redis_port).flushall()
                rates[label] = run_procs(procs, hits_for, uri, strategy, limit, identities,
                                         seconds)
            rows.append((strategy, limit, identities, procs, rates))
    print("\n### Rate-limit checks per second (`limiter.hit`), higher is better\n")
    print("| strategy | limit | keys | procs | shmstate | redis | memory (1 proc, unshared) "
          "| shmstate / redis |")
    print("|---|---|---|---|---|---|---|---|")
    for strategy, limit, identities, procs, r in rows:
        memory = f"{r['memory']:,.0f}" if "memory" in r else "-"
        print(f"| {strategy} | {limit} | {identities} | {procs} | {r['shmstate']:,.0f} | "
              f"{r['redis']:,.0f} | {memory} | {r['shmstate'] / r['redis']:.1f}x |")


# --- 2. Scrape time with recycled workers ----------------------------------------------------

def make_metrics(pc):
    return {
        "requests": pc.Counter("app_requests", "Requests", ["path", "code"], registry=None),
        "latency": pc.Histogram("app_latency_seconds", "Latency", ["path"], registry=None),
        "inflight": pc.Gauge("app_inflight", "In flight", multiprocess_mode="livesum",
                             registry=None),
        "queue": pc.Gauge("app_queue", "Queue size", multiprocess_mode="max", registry=None),
    }


def worker_life(metrics, seed):
    rng = random.Random(seed)
    for _ in range(200):
        path = f"/p{rng.randrange(10)}"
        metrics["requests"].labels(path, rng.choice(["200", "404", "500"])).inc()
        metrics["latency"].labels(path).observe(rng.random())
    metrics["inflight"].set(rng.randrange(5))
    metrics["queue"].set(rng.randrange(100))


def recycle(metrics, workers, start, on_exit):
    """`workers` short-lived forked workers, 4 at a time, each living one worker_life."""
    running = []
    for w in range(workers):
        pid = os.fork()
        if pid == 0:
            worker_life(metrics, start + w)
            os._exit(0)
        running.append(pid)
        if len(running) == 4:
            for pid in running:
                os.waitpid(pid, 0)
                on_exit(pid)
            running = []
    for pid in running:
        os.waitpid(pid, 0)
        on_exit(pid)


def time_scrapes(pc, registry, repeat=9):
    """(median, min) of `repeat` scrapes after a first one (which folds the dead workers), and
    the output's size. The min is the figure least disturbed by other jobs on the machine."""
    pc.generate_latest(registry)
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        text = pc.generate_latest(registry)
        times.append(time.perf_counter() - t)
    return (statistics.median(times), min(times)), len(text)


def bench_scrape(name, steps):
    import prometheus_client as pc
    from prometheus_client import multiprocess, values

    import shmstate.prometheus as shmprom

    rows = []
    directory = tempfile.mkdtemp(prefix="prom-mp-")
    try:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
        # Labelled children take their value class when first used: switch it per mode.
        file_class = values.ValueClass = values.MultiProcessValue()
        file_metrics = make_metrics(pc)
        file_registry = pc.CollectorRegistry()
        multiprocess.MultiProcessCollector(file_registry, path=directory)
        shmprom.enable(name, prefix="benchprom")
        shm_metrics = make_metrics(pc)
        shm_registry = pc.CollectorRegistry()
        shmprom.ShmstateCollector(shm_registry)
        done = 0
        for workers in steps:
            values.ValueClass = file_class
            recycle(file_metrics, workers - done, done,
                    lambda pid: multiprocess.mark_process_dead(pid, directory))
            values.ValueClass = shmprom.ShmstateValue
            recycle(shm_metrics, workers - done, done, lambda pid: None)
            done = workers
            file_time, file_bytes = time_scrapes(pc, file_registry)
            shm_time, shm_bytes = time_scrapes(pc, shm_registry)
            files = len(os.listdir(directory))
            disk = sum(os.path.getsize(os.path.join(directory, f)) for f in os.listdir(directory))
            rows.append((workers, files, disk, file_time, shm_time, file_bytes, shm_bytes))
    finally:
        del os.environ["PROMETHEUS_MULTIPROC_DIR"]
        shutil.rmtree(directory, ignore_errors=True)
        shmprom.disable()
    print("\n### Scrape time after W recycled workers (`generate_latest`, median and min of 9), "
          "lower is better\n")
    print("| workers so far | files (disk) | file mode | shmstate | file / shmstate (median) | "
          "output bytes (file, shm) |")
    print("|---|---|---|---|---|---|")
    for workers, files, disk, ft, st, fb, sb in rows:
        print(f"| {workers} | {files} ({disk / 1e6:.1f} MB) | {ft[0] * 1e3:.1f} ms "
              f"({ft[1] * 1e3:.1f}) | {st[0] * 1e3:.1f} ms ({st[1] * 1e3:.1f}) | "
              f"{ft[0] / st[0]:.1f}x | {fb}, {sb} |")


def bench_inc(name, seconds):
    """Counter.inc() and Histogram.observe() per second in one process, per value class."""
    import prometheus_client as pc
    from prometheus_client import values

    import shmstate.prometheus as shmprom

    directory = tempfile.mkdtemp(prefix="prom-mp-")
    rates = {}
    try:
        for label in ("in-process (MutexValue)", "file mode (mmap)", "shmstate"):
            if label.startswith("file"):
                os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
                values.ValueClass = values.MultiProcessValue()
            elif label == "shmstate":
                shmprom.enable(name, prefix="benchinc")
            counter = pc.Counter("inc_bench", "x", registry=None)
            histogram = pc.Histogram("observe_bench", "x", registry=None)
            for what, op in (("inc", counter.inc), ("observe", lambda: histogram.observe(0.3))):
                n, deadline = 0, time.monotonic() + seconds / 2
                start = time.monotonic()
                while time.monotonic() < deadline:
                    for _ in range(256):
                        op()
                    n += 256
                rates[(label, what)] = n / (time.monotonic() - start)
            os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
            shmprom.disable()
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    base = rates[("file mode (mmap)", "inc")], rates[("file mode (mmap)", "observe")]
    print("\n### One process: `Counter.inc()` and `Histogram.observe()` per second\n")
    print("| value class | inc/s | observe/s | inc vs file mode |")
    print("|---|---|---|---|")
    for label in ("in-process (MutexValue)", "file mode (mmap)", "shmstate"):
        print(f"| {label} | {rates[(label, 'inc')]:,.0f} | {rates[(label, 'observe')]:,.0f} | "
              f"{rates[(label, 'inc')] / base[0]:.2f}x |")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="per rate-limit measurement")
    parser.add_argument("--quick", action="store_true", help="0.5 s runs, fewer workers")
    args = parser.parse_args()
    seconds = 0.5 if args.quick else args.seconds
    steps = (10, 50) if args.quick else (10, 100, 400)
    name, shm_proc = start_shmstate()
    redis_port, redis_proc = start_redis()
    try:
        print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores, "
              f"{time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}")
        bench_limits(name, redis_port, seconds)
        bench_scrape(name, steps)
        bench_inc(name, seconds)
    finally:
        stop(redis_proc)
        stop(shm_proc)


if __name__ == "__main__":
    main()
