"""shmstate.prometheus: prometheus_client values in the segment give what the library's own
file-based multiprocess mode gives for the same work, exactly, with recycled processes folded
away; and a gunicorn app's scrape matches the requests made, across dead and recycled workers."""
import os
import random
import shutil
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

pytest.importorskip("prometheus_client")

import prometheus_client as pc  # noqa: E402
from prometheus_client import multiprocess, values  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

import shmstate  # noqa: E402
import shmstate.prometheus as shmprom  # noqa: E402

MODES = ["all", "liveall", "min", "livemin", "max", "livemax", "sum", "livesum"]


@pytest.fixture
def restore_value_class():
    yield
    shmprom.disable()


def make_metrics():
    """One metric of each kind, not registered (so each run makes its own)."""
    m = {
        "counter": pc.Counter("c", "A counter", ["who"], registry=None),
        "histogram": pc.Histogram("h", "A histogram", buckets=(1, 2, 5), registry=None),
        "summary": pc.Summary("s", "A summary", registry=None),
    }
    for mode in MODES:
        m[mode] = pc.Gauge(f"g_{mode}", f"A {mode} gauge", multiprocess_mode=mode, registry=None)
    return m


def work(m, i):
    """What child i does: counts, observations, and a gauge value of its own in every mode."""
    for n in range(300):
        m["counter"].labels("child").inc()
        m["histogram"].observe((n % 7) * 0.75)  # Exact binary fractions: sums in any order agree.
    m["counter"].labels(f"c{i}").inc(i + 0.5)
    m["summary"].observe(i * 1.5)
    for k, mode in enumerate(MODES):
        m[mode].set(i * 10 + k)
        m[mode].inc(0.25)


def run_children(m, children, keep_alive):
    """Forks `children` workers; the first `keep_alive` wait (alive) until released.
    Returns (pids, release) where release() ends the waiting ones."""
    pids, gate_read, gate_write = [], *os.pipe()
    done_read, done_write = os.pipe()
    for i in range(children):
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                work(m, i)
                os.write(done_write, b"x")
                if i < keep_alive:
                    os.read(gate_read, 1)
            except BaseException:
                code = 1
            os._exit(code)
        pids.append(pid)
    for _ in range(children):
        assert os.read(done_read, 1) == b"x"
    for pid in pids[keep_alive:]:
        assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0

    def release():
        os.write(gate_write, b"x" * keep_alive)
        for pid in pids[:keep_alive]:
            assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
    return pids, release


def samples(text, pids):
    """{(name, labels with the pid label replaced by the process's role): value}."""
    role = {str(pid): f"child{i}" for i, pid in enumerate(pids)}
    role[str(os.getpid())] = "parent"
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            labels = dict(s.labels)
            if "pid" in labels:
                labels["pid"] = role.get(labels["pid"], "other")
            out[(s.name, tuple(sorted(labels.items())))] = s.value
    return out


def scrape_files(path, pids):
    registry = pc.CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=path)
    return samples(pc.generate_latest(registry).decode(), pids)


def scrape_shm(pids):
    registry = pc.CollectorRegistry()
    shmprom.ShmstateCollector(registry)
    return samples(pc.generate_latest(registry).decode(), pids)


def test_the_same_scrape_as_prometheus_clients_file_mode(server, tmp_path, restore_value_class):
    """4 forked workers, 2 still alive at the scrape and 2 dead: every sample of every kind and
    gauge mode is what MultiProcessCollector reads from the files of the same work."""
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(tmp_path)
    try:
        values.ValueClass = values.MultiProcessValue()
        m = make_metrics()
        file_pids, release_files = run_children(m, 4, keep_alive=2)
        for pid in file_pids[2:]:
            multiprocess.mark_process_dead(pid, str(tmp_path))  # As gunicorn's child_exit does.
        expected = scrape_files(str(tmp_path), file_pids)
        release_files()
    finally:
        del os.environ["PROMETHEUS_MULTIPROC_DIR"]

    shmprom.enable(server.name)
    m = make_metrics()
    shm_pids, release_shm = run_children(m, 4, keep_alive=2)
    got = scrape_shm(shm_pids)  # No mark_process_dead: the scrape finds the dead ones itself.
    release_shm()
    assert got == expected
    assert got[("c_total", (("who", "child"),))] == 4 * 300
    assert got[("g_livesum", ())] == (0 + 7.25) + (10 + 7.25)  # children 0, 1 (and parent's 0)
    assert ("g_liveall", (("pid", "child3"),)) not in got
    assert got[("g_all", (("pid", "child3"),))] == 30 + 0.25


def test_recycled_processes_do_not_pile_up(server, restore_value_class):
    """60 short-lived workers, scraped every 10: counters stay exact, and the series and slots
    stay bounded (only `all` gauges keep one sample per pid, as the mode says)."""
    shmprom.enable(server.name, prefix="recycled")
    m = {"counter": pc.Counter("jobs", "Jobs", registry=None)}
    for mode in ("livesum", "sum", "max", "min"):
        m[mode] = pc.Gauge(f"g_{mode}", mode, multiprocess_mode=mode, registry=None)
    m["min"].set(1000)  # The parent's own series (alive) must not decide the min and max.
    m["max"].set(-5)
    m["livesum"].set(0.5)
    store = shmprom._store
    total_sum, seen = 0, []
    for batch in range(6):
        pids = []
        for i in range(10):
            n = batch * 10 + i
            pid = os.fork()
            if pid == 0:
                m["counter"].inc(n)
                for mode in ("livesum", "sum", "max", "min"):
                    m[mode].set(n + 1)
                os._exit(0)
            pids.append(pid)
            seen.append(n + 1)
            total_sum += n
        for pid in pids:
            assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
        got = scrape_shm(pids)
        assert got[("jobs_total", ())] == total_sum
        assert got[("g_sum", ())] == sum(seen)
        assert got[("g_max", ())] == max(seen) and got[("g_min", ())] == min(seen)
        assert got[("g_livesum", ())] == 0.5  # Only the parent is alive.
        assert len(store.index) == 1 + 4 + 3  # The counter, the parent's and the folded gauges.
    assert store.next_slot.value <= 1 + 4 + 3 + 4 * 10  # Freed slots were handed out again.
    # What gunicorn's child_exit would do for a process (here the parent, at its end): its 4
    # gauges are folded or dropped at once, without waiting for a scrape to find it gone.
    assert shmprom.mark_process_dead(os.getpid()) == 4
    got = scrape_shm([])
    assert ("g_livesum", ()) not in got and got[("g_sum", ())] == sum(seen)
    assert got[("g_max", ())] == 60 and got[("g_min", ())] == 1


def test_concurrent_scrapes_while_workers_die_count_each_dead_gauge_once(server,
                                                                        restore_value_class):
    """Threads scrape while 40 children, one after another, set a `sum` gauge to 1 and die: every
    scrape's sum lies between the children reaped before it began and those released, so a
    dead process's gauge is seen once, never twice, while it is being folded."""
    import threading
    shmprom.enable(server.name, prefix="racing")
    gauge = pc.Gauge("g_deaths", "x", multiprocess_mode="sum", registry=None)
    gauge.set(0)
    counts = {"released": 0, "reaped": 0}
    failures, stop = [], threading.Event()

    def scraper():
        while not stop.is_set():
            low = counts["reaped"]
            got = scrape_shm([]).get(("g_deaths", ()), 0.0)
            high = counts["released"]
            if not low <= got <= high:
                failures.append((low, got, high))

    children = []  # Forked before the threads start (a fork beside threads could copy a held lock).
    for _ in range(40):
        gate_read, gate_write = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.read(gate_read, 1)
            gauge.set(1)
            os._exit(0)
        children.append((pid, gate_write))
    threads = [threading.Thread(target=scraper) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        for pid, gate in children:
            counts["released"] += 1
            os.write(gate, b"x")
            assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
            counts["reaped"] += 1
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert failures == []
    assert scrape_shm([])[("g_deaths", ())] == 40


def test_values_before_enable_and_errors(server, restore_value_class):
    shmprom.disable()
    with pytest.raises(shmstate.InvalidArgument, match="enable"):
        shmprom.ShmstateValue("counter", "x", "x_total", [], [], "help")
    with pytest.raises(shmstate.InvalidArgument, match="enable"):
        shmprom.mark_process_dead(1)
    plain = pc.Counter("plain", "In-process", registry=None)
    assert type(plain._value) is values.MutexValue
    shmprom.enable(shmstate.attach(server.name))
    c = pc.Counter("shared", "In the segment", registry=None)
    c.inc(2)
    assert type(c._value) is shmprom.ShmstateValue and c._value.get() == 2
    # A collector of its own target reads the same values.
    registry = pc.CollectorRegistry()
    shmprom.ShmstateCollector(registry, target=server.name)
    assert "shared_total 2.0" in pc.generate_latest(registry).decode()


def scrape_app(port):
    from adapter_apps import get
    status, text = get(port, "/metrics")
    assert status == 200
    return text, {(s.name, tuple(sorted(s.labels.items()))): s.value
                  for f in text_string_to_metric_families(text) for s in f.samples}


def drive(port, ns):
    from adapter_apps import get
    with ThreadPoolExecutor(6) as pool:
        assert set(pool.map(lambda n: get(port, f"/work?n={n}")[0], ns)) == {200}


def check_totals(got, ns):
    assert got[("app_requests_total", (("path", "/work"),))] == len(ns)
    assert got[("app_work_units_total", ())] == sum(ns)
    assert got[("app_work_seconds_count", ())] == len(ns)
    assert got[("app_work_seconds_sum", ())] == pytest.approx(sum(n / 10 for n in ns))
    for le in (0.1, 0.5, 1, 5):
        assert got[("app_work_seconds_bucket", (("le", str(float(le))),))] == sum(
            n / 10 <= le for n in ns)
    assert got[("app_work_size_count", ())] == len(ns)
    assert got[("app_work_size_sum", ())] == sum(ns)
    assert got[("app_biggest_n", ())] == max(ns)


def live_pids(got):
    return {int(v) for (name, _), v in got.items() if name == "app_pid"}


def wait_for_workers(port, workers, not_in=(), timeout=30):
    """Scrapes until `workers` live workers, none of them in `not_in`, report themselves."""
    deadline = time.monotonic() + timeout
    while True:
        text, got = scrape_app(port)
        pids = live_pids(got)
        if got.get(("app_workers", ())) == workers and len(pids) == workers and not (
                pids & set(not_in)):
            return text, got
        assert time.monotonic() < deadline, f"workers never settled: {got}"
        time.sleep(0.1)


def test_gunicorn_workers_scraped_exactly_across_recycling_and_kills(make_server):
    from adapter_apps import gunicorn
    server = make_server(workers=0)
    rng = random.Random(15)
    with gunicorn("adapter_apps:make_metrics_app()", server.name, workers=3) as (proc, port):
        ns = [rng.randint(1, 60) for _ in range(150)]
        drive(port, ns)
        text, got = wait_for_workers(port, 3)
        check_totals(got, ns)
        first = live_pids(got)
        assert got[("app_started", ())] == 3
        if shutil.which("promtool"):
            check = subprocess.run(["promtool", "check", "metrics"], input=text.encode(),
                                   capture_output=True, timeout=30)
            assert check.returncode == 0, check.stdout + check.stderr

        proc.send_signal(signal.SIGHUP)  # gunicorn replaces every worker.
        _, got = wait_for_workers(port, 3, not_in=first)
        check_totals(got, ns)  # The old workers' counts stay.
        assert got[("app_started", ())] == 6
        second = live_pids(got)

        more = [rng.randint(1, 60) for _ in range(60)]
        drive(port, more)
        victim = sorted(second)[0]
        os.kill(victim, signal.SIGKILL)  # A worker killed outright keeps its counts too.
        _, got = wait_for_workers(port, 3, not_in={victim})
        check_totals(got, ns + more)
        assert got[("app_started", ())] == 7
