"""shmstate.limits: the `limits` library's storage contract (as its own memory storage answers
it), shmstate:// registration, limits shared exactly by forked processes, and Flask-Limiter
under gunicorn with several workers."""
import json
import os
import random
import time
import traceback
from concurrent.futures import ThreadPoolExecutor

import pytest

pytest.importorskip("limits")

import limits  # noqa: E402
from limits import parse  # noqa: E402
from limits.storage import MemoryStorage, storage_from_string  # noqa: E402
from limits.strategies import (FixedWindowElasticExpiryRateLimiter,  # noqa: E402
                               FixedWindowRateLimiter, MovingWindowRateLimiter)

from conftest import wait_until  # noqa: E402
import shmstate  # noqa: E402
import shmstate.limits  # noqa: E402
from shmstate.limits import ShmstateStorage  # noqa: E402

STRATEGIES = [FixedWindowRateLimiter, FixedWindowElasticExpiryRateLimiter, MovingWindowRateLimiter]


@pytest.fixture
def storage(server):
    return storage_from_string(f"shmstate://{server.name}")


def test_the_uri_scheme_is_registered_and_checked(server):
    s = storage_from_string(f"shmstate://{server.name}")
    assert isinstance(s, ShmstateStorage) and s.check()
    assert s.storage.name == server.name
    own = storage_from_string(f"shmstate://{server.name}/mine")
    own.incr("k", 60)
    assert own.get("k") == 1 and s.get("k") == 0  # Another prefix, other dicts.
    assert {"mine", "mine.mw", "limits", "limits.mw"} <= {n for n, _ in s.storage.objects()}
    with pytest.raises(shmstate.NotFound):
        storage_from_string("shmstate://no-such-server")
    for bad in (f"shmstate://{server.name}?x=1", f"shmstate://{server.name}:80",
                f"shmstate://u@{server.name}"):
        with pytest.raises(shmstate.InvalidArgument):
            storage_from_string(bad)
    attached = shmstate.attach(server.name)
    assert ShmstateStorage(f"shmstate://{server.name}", client=attached).storage is attached


def test_fixed_window_counts_expires_and_reports_its_reset(storage):
    # Two seconds, so that four hits fit in one window even on a loaded machine; the window's
    # bounds are checked against clock readings taken around the hits, not against a guess.
    item = parse("3 per 2 seconds")
    limiter = FixedWindowRateLimiter(storage)
    started = time.time()
    assert [limiter.hit(item, "ann") for _ in range(4)] == [True, True, True, False]
    first_hit_done = time.time()
    assert limiter.test(item, "ann") is False and limiter.test(item, "bob") is True
    reset, remaining = limiter.get_window_stats(item, "ann")
    assert remaining == 0 and int(started) + 2 <= reset <= first_hit_done + 2
    assert storage.get(item.key_for("ann")) == 4  # As the library's: a refused hit counts too.
    # The window ends two seconds after it began.
    wait_until(lambda: limiter.test(item, "ann"), what="the window to end")
    assert time.time() >= int(started) + 2
    assert limiter.hit(item, "ann") and storage.get(item.key_for("ann")) == 1
    assert limiter.hit(item, "ann", cost=2) and not limiter.hit(item, "ann")


def test_elastic_expiry_pushes_the_window_end_at_every_hit(storage):
    key = "elastic"
    assert storage.incr(key, 30, elastic_expiry=True) == 1
    first = storage._counters.entry(key)[2]
    time.sleep(0.05)  # So that the second hit's expiry is measurably later.
    assert storage.incr(key, 30, elastic_expiry=True, amount=4) == 5
    assert storage._counters.entry(key)[2] >= first + 50
    assert storage.incr(key, 30) == 6  # A fixed hit keeps the end.
    assert storage.get_expiry(key) == storage._counters.entry(key)[2] // 1000


def test_moving_window_forgets_each_entry_after_the_period(storage):
    item = parse("3 per 2 seconds")
    limiter = MovingWindowRateLimiter(storage)
    t0 = time.time()
    assert limiter.hit(item, "w")
    t1 = time.time()
    time.sleep(0.5)  # The second and third entries are taken later than the first.
    assert limiter.hit(item, "w") and limiter.hit(item, "w") and not limiter.hit(item, "w")
    start, count = storage.get_moving_window(item.key_for("w"), 3, 2)
    assert count == 3 and int(t0) <= start <= t1  # The oldest entry starts the window.
    reset, remaining = limiter.get_window_stats(item, "w")
    assert remaining == 0 and reset == start + 2
    # The first entry leaves the window before the others: exactly one hit is allowed then.
    wait_until(lambda: limiter.test(item, "w"), what="the window to end")
    assert time.time() - t0 >= 1.9
    assert limiter.hit(item, "w") and not limiter.hit(item, "w")
    # A cost above the limit never fits (the library's own storages let it in on an empty window).
    assert not limiter.hit(item, "x", cost=4) and limiter.hit(item, "x", cost=3)


@pytest.mark.parametrize("strategy", STRATEGIES, ids=lambda s: s.__name__)
def test_same_answers_as_the_librarys_memory_storage(storage, strategy):
    """A seeded sequence of hits, tests and costs on several keys, within one window."""
    memory = MemoryStorage()
    ours, theirs = strategy(storage), strategy(memory)
    rng = random.Random(15)
    items = [parse("5/hour"), parse("3/minute"), parse("20/day")]
    answers = []
    for _ in range(300):
        item, who, cost = rng.choice(items), rng.choice("abc"), rng.choice([1, 1, 1, 2, 3])
        if rng.random() < 0.2:
            got = (ours.test(item, who), theirs.test(item, who))
        else:
            got = (ours.hit(item, who, cost=cost), theirs.hit(item, who, cost=cost))
        remaining = (ours.get_window_stats(item, who)[1], theirs.get_window_stats(item, who)[1])
        answers.append((got, remaining))
    assert all(a == b for (a, b), _ in answers) and all(a == b for _, (a, b) in answers)
    assert sum(a for (a, _), _ in answers) > 20  # Both allow and refuse along the way.
    assert sum(not a for (a, _), _ in answers) > 20


class _Interleaved:
    """A dict handle whose next `entry` read is followed by `intruder()`: another process's write
    lands between our read and our versioned write, at the worst moment, every time."""

    def __init__(self, inner, intruder, times):
        self._inner, self._intruder, self.left = inner, intruder, times

    def entry(self, key):
        got = self._inner.entry(key)
        if self.left:
            self.left -= 1
            self._intruder()
        return got

    def __getattr__(self, name):
        return getattr(self._inner, name)


def test_a_write_between_read_and_write_is_never_lost(server, storage):
    other = ShmstateStorage(f"shmstate://{server.name}")  # Its own handles: "another process".
    storage._windows = _Interleaved(storage._windows, lambda: other.acquire_entry("mw", 5, 60), 3)
    assert storage.acquire_entry("mw", 5, 60)  # Retried over three intruding writes.
    assert storage._windows.left == 0 and storage.get_moving_window("mw", 5, 60)[1] == 4
    assert other.acquire_entry("mw", 5, 60) and not storage.acquire_entry("mw", 5, 60)
    storage._counters = _Interleaved(storage._counters,
                                     lambda: other.incr("el", 60, elastic_expiry=True), 2)
    assert storage.incr("el", 60, elastic_expiry=True) == 3
    assert storage.get("el") == 3


def test_clear_and_reset(storage):
    item = parse("1/hour")
    fixed, moving = FixedWindowRateLimiter(storage), MovingWindowRateLimiter(storage)
    assert fixed.hit(item, "a") and not fixed.hit(item, "a")
    assert moving.hit(item, "m") and not moving.hit(item, "m")
    fixed.clear(item, "a")
    assert fixed.hit(item, "a") and moving.test(item, "m") is False
    moving.clear(item, "m")
    assert moving.hit(item, "m")
    assert storage.reset() == 2
    assert fixed.hit(item, "a") and moving.hit(item, "m")
    assert storage.get(item.key_for("nobody")) == 0
    assert storage.get_moving_window(item.key_for("nobody"), 1, 3600)[1] == 0
    assert abs(storage.get_expiry(item.key_for("nobody")) - time.time()) <= 1


def test_a_stopped_server_fails_the_health_check(make_server):
    server = make_server(workers=0)
    storage = ShmstateStorage(f"shmstate://{server.name}",
                              client=shmstate.attach(server.name, follow_timeout=0.5))
    assert storage.check()
    server.stop()
    assert storage.check() is False


def _hit_in_child(uri, strategy, limit, tries, barrier_fd, out_fd):
    storage = storage_from_string(uri)  # The limiter holds its storage by a weak reference.
    limiter = strategy(storage)
    item = parse(limit)
    os.read(barrier_fd, 1)  # Every child starts hitting at once.
    allowed = sum(limiter.hit(item, "shared") for _ in range(tries))
    os.write(out_fd, (json.dumps(allowed) + "\n").encode())


@pytest.mark.parametrize("strategy", STRATEGIES, ids=lambda s: s.__name__)
def test_forked_processes_share_one_limit_exactly(server, strategy):
    """6 processes hit one 1000/hour limit 300 times each: exactly 1000 hits are allowed."""
    children, tries, allowed_total = 6, 300, 1000
    barrier_read, barrier_write = os.pipe()
    out_read, out_write = os.pipe()
    pids = []
    for _ in range(children):
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                _hit_in_child(f"shmstate://{server.name}", strategy, f"{allowed_total}/hour",
                              tries, barrier_read, out_write)
            except BaseException:
                traceback.print_exc()
                code = 1
            os._exit(code)
        pids.append(pid)
    os.close(out_write)
    os.write(barrier_write, b"x" * children)
    with os.fdopen(out_read) as lines:
        allowed = [json.loads(line) for line in lines]
    for pid in pids:
        assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
    assert len(allowed) == children and sum(allowed) == allowed_total
    storage = storage_from_string(f"shmstate://{server.name}")
    assert strategy(storage).test(parse(f"{allowed_total}/hour"), "shared") is False


def test_limits_version_has_no_sliding_window_strategy():
    """The sliding-window counter is a limits 4 strategy; when Debian ships it, add it here."""
    assert limits.__version__.startswith("2.")
    assert "sliding-window-counter" not in limits.strategies.STRATEGIES


@pytest.mark.parametrize("strategy", ["fixed-window", "moving-window"])
def test_flask_limiter_under_gunicorn_shares_the_limit_between_workers(make_server, strategy):
    pytest.importorskip("flask_limiter")
    from adapter_apps import get, gunicorn
    server = make_server(workers=0)
    with gunicorn("adapter_apps:make_limits_app()", server.name, workers=3,
                  env={"LIMIT": "12/hour", "LIMITS_STRATEGY": strategy}) as (_, port):
        with ThreadPoolExecutor(6) as pool:  # Concurrent, so that several workers answer.
            answers = list(pool.map(lambda _: get(port, "/limited")[0], range(30)))
        assert get(port, "/limited")[0] == 429
    assert sorted(answers) == [200] * 12 + [429] * 18
