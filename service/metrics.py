"""Prometheus metrics: what flows, what fails, how fast, and how far behind readers are.

Counters and histograms live in this process, or in ``PROMETHEUS_MULTIPROC_DIR``
when several uvicorn workers serve (set before ``prometheus_client`` is first
imported; ``fanout serve --workers N`` does that), so a scrape of any worker
sees the sum over all of them. Stream lengths and consumer-group lag come from
``http.stats_collector``, read from Redis, not from here: this module is a
support module that imports no Redis code.
"""

from __future__ import annotations

import bisect
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from .domain import actions, event_types
from .domain.custom import CUSTOM_TYPE

REGISTRY = CollectorRegistry(auto_describe=True)


class _HeldCounts:
    """Registered first: whatever reads ``REGISTRY`` reads the held counts too (below)."""

    def describe(self) -> list[Any]:
        return []  # no metric of its own (and registering does not collect it)

    def collect(self) -> list[Any]:
        flush()
        return []


REGISTRY.register(_HeldCounts())

DELIVERIES = Counter(
    "fanout_deliveries",
    "Webhook deliveries by async action type or webhook event type, and outcome.",
    ["type", "outcome"],
    registry=REGISTRY,
)
COMPLETIONS = Counter(
    "fanout_completions",
    "Completion events published, by async action type and status (DONE, FAILED).",
    ["type", "status"],
    registry=REGISTRY,
)
FAILED_RECORDS = Counter(
    "fanout_failed_records",
    "Records that failed inside published completions (their failed_count), by type.",
    ["type"],
    registry=REGISTRY,
)
SCHEMA_DRIFT = Counter(
    "fanout_schema_drift",
    "Webhook events published with schema_valid false (data off its documented schema, "
    "or an event type without one), by event type.",
    ["type"],
    registry=REGISTRY,
)
DEAD_LETTERS = Counter(
    "fanout_dead_letters",
    "Bodies newly put in the dead-letter stream, by reason.",
    ["reason"],
    registry=REGISTRY,
)
REQUEST_SECONDS = Histogram(
    "fanout_request_duration_seconds",
    "Time from the start of a webhook request to its answer.",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
    registry=REGISTRY,
)
REDIS_SECONDS = Histogram(
    "fanout_redis_round_trip_seconds",
    "Time of one pipelined round trip to Redis (a batch of deliveries).",
    buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 2.0),
    registry=REGISTRY,
)
BATCH_SIZE = Histogram(
    "fanout_batch_size",
    "Deliveries sharing one Redis round trip (group commit).",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
    registry=REGISTRY,
)

FRONT_DOOR = Counter(
    "fanout_front_door",
    "Connections cut off before the app, by reason: shed (closed to make room at the "
    "connection cap), refused (503: at the cap with every connection busy), head_timeout, "
    "body_timeout (408), head_too_large (431).",
    ["reason"],
    registry=REGISTRY,
)
#: The reasons ``FRONT_DOOR`` counts, in the order the dashboard shows them.
FRONT_DOOR_REASONS = ("shed", "refused", "head_timeout", "body_timeout", "head_too_large")

_children: dict[tuple[Any, ...], Any] = {}


def _child(metric: Counter, *labels: str) -> Any:
    key = (metric, *labels)
    child = _children.get(key)
    if child is None:
        child = _children[key] = metric.labels(*labels)
    return child


#: The ``type`` label values: every type the service knows (``none``: a body not read).
_TYPE_LABELS = frozenset((*actions.TYPES, *event_types.KNOWN, CUSTOM_TYPE, "none"))


def type_label(type_: str) -> str:
    """``type_`` as a label value: itself when the service knows it, else ``other``, so
    the event types senders make up (drift) never become label values."""
    return type_ if type_ in _TYPE_LABELS else event_types.OTHER


# The per-delivery counts (deliveries, completions, failed records, the request
# duration) and the per-batch ones (its size, its round trip) are held in plain
# ints in a single process, and added to their
# Prometheus children whenever ``REGISTRY`` is read (a scrape, a test: ``_HeldCounts``
# comes first in it). Each ``inc`` of prometheus_client takes a lock and checks its
# amount; the three or four per delivery cost 2.4 us against 0.6 us held (timeit,
# mixed outcomes). With several workers (``PROMETHEUS_MULTIPROC_DIR``, set before
# they import this) each ``inc`` goes to the worker's file at once, as before: a
# scrape of one worker reads the others' files, which it cannot make them flush.
# Counting and flushing both run on the event loop's thread (the scrape and the
# dashboard read the registry there), so no lock is needed between them.
_HOLD = "PROMETHEUS_MULTIPROC_DIR" not in os.environ

#: Per label values (two dict lookups, no key tuple per delivery), a cell
#: ``[held count, the child's inc]``; ``_cells`` lists them for ``flush``.
_Cell = list[Any]
_delivery_cells: dict[str, dict[str, _Cell]] = {}
_completion_cells: dict[str, dict[str, _Cell]] = {}
_failed_cells: dict[str, _Cell] = {}
_cells: list[_Cell] = []


class _HeldHistogram:
    """A histogram's observations held as counts per bucket and a sum (see above); its
    bucket found by bisection rather than a loop over the bounds in Python (what
    ``observe`` does; no exemplars here)."""

    __slots__ = ("bounds", "counts", "histogram", "total")

    def __init__(self, histogram: Histogram) -> None:
        self.histogram = histogram
        self.bounds = tuple(histogram._upper_bounds)
        self.counts = [0] * len(self.bounds)
        self.total = 0.0

    def observe(self, value: float) -> None:
        index = bisect.bisect_left(self.bounds, value)
        if _HOLD:
            self.total += value
            self.counts[index] += 1
        else:
            self.histogram._sum.inc(value)
            self.histogram._buckets[index].inc(1)

    def flush(self) -> None:
        counts = self.counts
        if not any(counts):
            return
        buckets = self.histogram._buckets
        for index, count in enumerate(counts):
            if count:
                buckets[index].inc(count)
                counts[index] = 0
        total, self.total = self.total, 0.0
        self.histogram._sum.inc(total)


_request = _HeldHistogram(REQUEST_SECONDS)
_round_trip = _HeldHistogram(REDIS_SECONDS)
_batch = _HeldHistogram(BATCH_SIZE)


def _cell(inc: Callable[[float], None]) -> _Cell:
    cell = [0, inc]
    _cells.append(cell)
    return cell


def flush() -> None:
    """Add the held per-delivery counts to their Prometheus children."""
    for cell in _cells:
        if cell[0]:
            count, cell[0] = cell[0], 0
            cell[1](count)
    _request.flush()
    _round_trip.flush()
    _batch.flush()


def _count(cell: _Cell, amount: int = 1) -> None:
    if _HOLD:
        cell[0] += amount
    else:
        cell[1](amount)


def delivery(type_: str, outcome: str) -> None:
    """Count one delivery."""
    label = type_ if type_ in _TYPE_LABELS else event_types.OTHER
    by_outcome = _delivery_cells.get(label)
    if by_outcome is None:
        by_outcome = _delivery_cells[label] = {}
    cell = by_outcome.get(outcome)
    if cell is None:
        cell = by_outcome[outcome] = _cell(DELIVERIES.labels(label, outcome).inc)
    _count(cell)


def completion(type_: str, status: str, failed_count: int | None) -> None:
    by_status = _completion_cells.get(type_)
    if by_status is None:
        by_status = _completion_cells[type_] = {}
    cell = by_status.get(status)
    if cell is None:
        cell = by_status[status] = _cell(COMPLETIONS.labels(type_, status).inc)
    _count(cell)
    if failed_count:
        failed = _failed_cells.get(type_)
        if failed is None:
            failed = _failed_cells[type_] = _cell(_child(FAILED_RECORDS, type_).inc)
        _count(failed, failed_count)


def request_seconds(seconds: float) -> None:
    """``REQUEST_SECONDS.observe(seconds)``, held (see above). A test
    (``tests/http/test_metrics.py``) holds it to ``observe``."""
    _request.observe(seconds)


def batch(size: int) -> None:
    """``BATCH_SIZE.observe(size)``, held: once per group-commit batch."""
    _batch.observe(size)


def round_trip(seconds: float) -> None:
    """``REDIS_SECONDS.observe(seconds)``, held: once per group-commit batch answered."""
    _round_trip.observe(seconds)


def schema_drift(type_: str) -> None:
    _child(SCHEMA_DRIFT, type_label(type_)).inc()


def dead_letter(reason: str) -> None:
    _child(DEAD_LETTERS, reason).inc()


#: prometheus_client's own variable, read by that library from ``os.environ`` itself
#: (so here, not in ``config``): the folder of every process's counter files.
MULTIPROC_DIR = "PROMETHEUS_MULTIPROC_DIR"


@contextmanager
def shared_by_processes() -> Iterator[None]:
    """While the worker processes started inside run, their counters go to files in
    one folder, so a scrape of any of them is the sum: ``PROMETHEUS_MULTIPROC_DIR``,
    a temporary folder removed afterwards, unless the operator set one (kept)."""
    if MULTIPROC_DIR in os.environ:
        yield
        return
    os.environ[MULTIPROC_DIR] = tempfile.mkdtemp(prefix="fanout-metrics-")
    try:
        yield
    finally:
        shutil.rmtree(os.environ.pop(MULTIPROC_DIR), ignore_errors=True)


def front_door(reason: str) -> None:
    _child(FRONT_DOOR, reason).inc()


# Every reason is served from the start, at 0, so a rate over it starts from a sample.
for _reason in FRONT_DOOR_REASONS:
    _child(FRONT_DOOR, _reason)


def front_door_totals() -> dict[str, int]:
    """``FRONT_DOOR`` by reason since start: this process's, or every worker's."""
    totals = dict.fromkeys(FRONT_DOOR_REASONS, 0)
    for family in _registry().collect():
        if family.name == "fanout_front_door":
            for sample in family.samples:
                if sample.name.endswith("_total") and sample.labels.get("reason") in totals:
                    totals[sample.labels["reason"]] += int(sample.value)
    return totals


def _registry() -> CollectorRegistry:
    """This process's metrics, or every worker's (from their files)."""
    if MULTIPROC_DIR in os.environ:
        registry = CollectorRegistry()
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return registry
    return REGISTRY


def exposition(stream_stats: Collector | None = None) -> bytes:
    """The text a scrape gets: this process's metrics, or every worker's."""
    output = generate_latest(_registry())
    if stream_stats is not None:
        extra = CollectorRegistry(auto_describe=False)
        extra.register(stream_stats)
        output += generate_latest(extra)
    return output
