"""prometheus_client metrics of every worker of a prefork app, kept in a shmstate segment.

prometheus_client's multiprocess mode writes one mmap'd file per metric type per pid and reads
them all at each scrape. This module keeps the values in the segment instead: no files, and a
scrape reads one array chunk per 4096 series whatever the number of (recycled) workers::

    import shmstate.prometheus, prometheus_client
    shmstate.prometheus.enable("app")           # before any metric is created, in every process
    REQUESTS = prometheus_client.Counter("requests", "Requests served", ["path"])
    registry = prometheus_client.CollectorRegistry()
    shmstate.prometheus.ShmstateCollector(registry)   # then generate_latest(registry) in /metrics

How: prometheus_client creates every value through ``prometheus_client.values.ValueClass``
(the hook its multiprocess mode uses); :func:`enable` points it at :class:`ShmstateValue`.

- Counters, histograms and summaries have one float64 slot per series shared by all
  processes, changed by an atomic add: the total is exact at any scrape, and a worker that dies
  (even SIGKILLed) keeps its counts, as they are already in the total.
- Gauges have one slot per series per pid, merged at the scrape by their ``multiprocess_mode``
  exactly as prometheus_client's ``MultiProcessCollector`` does (``all``, ``liveall``, ``min``,
  ``livemin``, ``max``, ``livemax``, ``sum``, ``livesum``). A scrape that finds a pid gone drops
  its ``live*`` gauges and folds its ``min``/``max``/``sum`` gauges into one "dead processes"
  slot per series, so recycled workers do not pile up (``all`` keeps one sample per pid, dead
  or alive, as the mode says). :func:`mark_process_dead` does it at once (gunicorn
  ``child_exit``).

Layout in the segment, under ``PREFIX`` (``prometheus`` by default): the dict ``PREFIX.index``
(series key -> slot), the dict ``PREFIX.meta`` (metric name -> type, mode, help), the arrays
``PREFIX.chunk.N`` (4096 float64 values each), the counter ``PREFIX.next`` (slots handed out),
the list ``PREFIX.free`` (slots given back) and the lock ``PREFIX.fold`` (held by a scrape
and a fold, so a scrape never sees a dead gauge twice or not at all).
"""

from __future__ import annotations

import json
import os
import threading
from typing import Any, Dict, Iterable, Optional, Tuple, Union

from prometheus_client import values as _values
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector

import shmstate

__all__ = ["enable", "disable", "ShmstateValue", "ShmstateCollector", "mark_process_dead"]

CHUNK = 4096  # float64 slots per array chunk
_FOLDED_PID = 0  # The pid of the slot that holds the dead processes' min/max/sum gauges.
_FOLDABLE = {"min": min, "max": max, "sum": lambda a, b: a + b}

_store: Optional["_Store"] = None
_original_value_class = _values.ValueClass


def enable(target: Union[str, shmstate.Client] = "shmstate", *, prefix: str = "prometheus") -> None:
    """Keeps every prometheus_client metric created from now on in the segment of ``target``
    (a server name or an attached :class:`shmstate.Client`). Call it in each process (or once
    before fork) before any metric is created, as with ``PROMETHEUS_MULTIPROC_DIR``."""
    global _store
    client = shmstate.attach(target) if isinstance(target, str) else target
    _store = _Store(client, prefix)
    _values.ValueClass = ShmstateValue


def disable() -> None:
    """Metrics created from now on are prometheus_client's ordinary in-process values."""
    global _store
    _values.ValueClass = _original_value_class
    _store = None


class _Store:
    """The objects of one PREFIX in the segment, and this process's handles on its chunks."""

    def __init__(self, client: shmstate.Client, prefix: str) -> None:
        self.client = client
        self.prefix = prefix
        self.index = client.dict(prefix + ".index")
        self.meta = client.dict(prefix + ".meta")
        self.next_slot = client.counter(prefix + ".next")
        self.free = client.list(prefix + ".free")
        self._chunks: Dict[int, shmstate.Array] = {}
        self._guard = threading.Lock()

    def fold_lock(self) -> shmstate.Lock:
        """A fresh handle (a Lock handle keeps its token: one per holder, thread-safe)."""
        return self.client.lock(self.prefix + ".fold", ttl=30, timeout=30)

    def chunk(self, n: int) -> shmstate.Array:
        with self._guard:
            a = self._chunks.get(n)
            if a is None:
                a = self.client.array(f"{self.prefix}.chunk.{n}", dtype="float64",
                                      shape=(CHUNK,), fill=0)
                self._chunks[n] = a
            return a

    def describe(self, metric_name: str, typ: str, mode: str, help_text: str) -> None:
        if self.meta.get_raw(metric_name) is None:  # The first process to create it says.
            self.meta.add(metric_name, json.dumps([typ, mode, help_text]).encode())

    def slot(self, key: bytes) -> int:
        """The slot of the series ``key``, handed out (at 0.0) if it has none."""
        while True:
            existing = self.index.get_raw(key)
            if existing is not None:
                return int(existing)
            freed = self.free.pop()
            slot = int(freed) if freed is not None else self.next_slot.incr() - 1
            self.write(slot, 0.0)  # Nobody else writes a slot before it is in the index.
            if self.index.add(key, b"%d" % slot):
                return slot
            self.free.push(b"%d" % slot)  # Another process published the series first.

    def write(self, slot: int, value: float) -> None:
        self.chunk(slot // CHUNK)._a.fill(slot % CHUNK, value)

    def give_back(self, key: bytes, slot: int) -> None:
        if self.index.delete(key):
            self.free.push(b"%d" % slot)

    def snapshot(self) -> Tuple[Dict[str, list], list]:
        """(meta, [(key fields, value)]) of every series, read under the fold lock."""
        meta = {k.decode(): json.loads(v) for k, v in self.meta.items()}
        entries = [(json.loads(k), int(v)) for k, v in self.index.items()]
        used = self.next_slot.value
        chunks = [self.chunk(n).to_numpy() for n in range((used + CHUNK - 1) // CHUNK)]
        values = []
        for fields, slot in entries:
            if slot < used:
                values.append((fields, float(chunks[slot // CHUNK][slot % CHUNK])))
        return meta, values


def _series_key(metric_name: str, name: str, labels: Dict[str, str], pid: Optional[int]) -> bytes:
    return json.dumps([metric_name, name, labels, pid], sort_keys=True,
                      separators=(",", ":")).encode()


def _require_store() -> "_Store":
    if _store is None:
        raise shmstate.InvalidArgument("call shmstate.prometheus.enable(name) first")
    return _store


class ShmstateValue:
    """A metric's value in the segment (prometheus_client's ``ValueClass`` interface)."""

    _multiprocess = True

    def __init__(self, typ: str, metric_name: str, name: str, labelnames: Iterable[str],
                 labelvalues: Iterable[str], help_text: str, multiprocess_mode: str = "",
                 **kwargs: Any) -> None:
        self._store = _require_store()
        self._labels = dict(zip(labelnames, labelvalues))
        self._metric_name = metric_name
        self._name = name
        self._per_pid = typ == "gauge"
        self._store.describe(metric_name, typ, multiprocess_mode if self._per_pid else "",
                             help_text)
        self._bind()

    def _bind(self) -> None:
        self._pid = os.getpid() if self._per_pid else None
        slot = self._store.slot(_series_key(self._metric_name, self._name, self._labels,
                                            self._pid))
        native = self._store.chunk(slot // CHUNK)._a
        self._index = slot % CHUNK
        self._atomic = native.atomic
        self._fill = native.fill
        self._read = native.read

    def _check_pid(self) -> None:
        # A gauge made before fork: the child's value is its own series, as in files mode.
        if self._per_pid and self._pid != os.getpid():
            self._bind()

    def inc(self, amount: float) -> None:
        self._check_pid()
        self._atomic("add", self._index, float(amount))

    def set(self, value: float) -> None:
        self._check_pid()
        self._fill(self._index, float(value))

    def get(self) -> float:
        """A gauge: this process's value; a counter/histogram/summary: the total of all."""
        self._check_pid()
        return float(self._read(self._index))

    def set_exemplar(self, exemplar: Any) -> None:
        return  # As in prometheus_client's multiprocess mode: no exemplars.

    def get_exemplar(self) -> Any:
        return None


def _alive(pid: int, cache: Dict[int, bool]) -> bool:
    if pid not in cache:
        try:
            os.kill(pid, 0)
            cache[pid] = True
        except ProcessLookupError:
            cache[pid] = False
        except PermissionError:
            cache[pid] = True  # Someone else's process: it exists.
    return cache[pid]


def _fold_dead(store: "_Store", meta: Dict[str, list], only_pid: Optional[int] = None) -> int:
    """Folds the gauges of dead processes (or of ``only_pid``); the caller holds the fold lock.
    Returns how many series were folded or dropped."""
    alive: Dict[int, bool] = {}
    changed = 0
    for raw_key, raw_slot in list(store.index.items()):
        metric_name, name, labels, pid = json.loads(raw_key)
        if not pid or pid == _FOLDED_PID:
            continue
        if only_pid is not None and pid != only_pid:
            continue
        if only_pid is None and _alive(pid, alive):
            continue
        mode = meta.get(metric_name, ["gauge", "all", ""])[1]
        slot = int(raw_slot)
        if mode in _FOLDABLE:
            value = float(store.chunk(slot // CHUNK)._a.read(slot % CHUNK))
            folded_key = _series_key(metric_name, name, labels, _FOLDED_PID)
            folded = store.index.get_raw(folded_key)
            if folded is None:
                store.write(store.slot(folded_key), value)
            else:
                target = int(folded)
                old = float(store.chunk(target // CHUNK)._a.read(target % CHUNK))
                store.write(target, _FOLDABLE[mode](old, value))
        elif not mode.startswith("live"):
            continue  # "all": one sample per pid, dead or alive.
        store.give_back(raw_key, slot)
        changed += 1
    return changed


def mark_process_dead(pid: int) -> int:
    """Drops the ``live*`` gauges of the dead process ``pid`` and folds its min/max/sum
    gauges (counters need nothing). For gunicorn's ``child_exit`` hook; scrapes do the same for
    every pid they find gone. Returns the number of series dropped or folded."""
    store = _require_store()
    with store.fold_lock():
        meta = {k.decode(): json.loads(v) for k, v in store.meta.items()}
        return _fold_dead(store, meta, only_pid=pid)


class ShmstateCollector:
    """Collects every metric kept in the segment: ``ShmstateCollector(registry)`` and then
    ``generate_latest(registry)``, as ``MultiProcessCollector`` is used. The output is the
    one ``MultiProcessCollector`` gives for the same values (gauges carry a ``pid`` label in
    the ``all``/``liveall`` modes)."""

    def __init__(self, registry: Any = None, *, target: Union[None, str, shmstate.Client] = None,
                 prefix: Optional[str] = None) -> None:
        if target is not None:
            client = shmstate.attach(target) if isinstance(target, str) else target
            self._store: Optional[_Store] = _Store(client, prefix or "prometheus")
        else:
            self._store = None  # The one enable() set up, looked up at each scrape.
        if registry is not None:
            registry.register(self)

    def collect(self) -> Iterable[Metric]:
        store = self._store or _require_store()
        with store.fold_lock():
            meta = {k.decode(): json.loads(v) for k, v in store.meta.items()}
            _fold_dead(store, meta)
            meta, values = store.snapshot()
        metrics: Dict[str, Metric] = {}
        for (metric_name, name, labels, pid), value in values:
            typ, mode, help_text = meta.get(metric_name, ["untyped", "", ""])
            metric = metrics.get(metric_name)
            if metric is None:
                metric = metrics[metric_name] = Metric(metric_name, help_text, typ)
                metric._multiprocess_mode = mode
            labels_key = tuple(sorted(labels.items()))
            if typ == "gauge":
                labels_key += (("pid", str(pid)),)
            metric.add_sample(name, labels_key, value)  # type: ignore[arg-type]
        # The merge of prometheus_client's own multiprocess collector: the same output.
        return MultiProcessCollector._accumulate_metrics(metrics, True)
