"""Prometheus metrics: what flows, what fails, how fast, and how far behind readers are.

Counters and histograms live in this process, or in ``PROMETHEUS_MULTIPROC_DIR``
when several uvicorn workers serve (set before ``prometheus_client`` is first
imported; ``fanout serve --workers N`` does that), so a scrape of any worker
sees the sum over all of them. Stream lengths and consumer-group lag are read
from Redis at most every ``STREAM_STATS_INTERVAL`` seconds, not per scrape.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from redis.exceptions import RedisError

from .events import TYPES
from .keys import Keys

STREAM_STATS_INTERVAL = 5.0

REGISTRY = CollectorRegistry(auto_describe=True)

DELIVERIES = Counter(
    "fanout_deliveries",
    "Webhook deliveries by async action type and outcome.",
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

_children: dict[tuple[Any, ...], Any] = {}


def _child(metric: Counter, *labels: str) -> Any:
    key = (metric, *labels)
    child = _children.get(key)
    if child is None:
        child = _children[key] = metric.labels(*labels)
    return child


def delivery(type_: str, outcome: str) -> None:
    """Count one delivery; each labelled child is looked up once."""
    _child(DELIVERIES, type_, outcome).inc()


def completion(type_: str, status: str, failed_count: int | None) -> None:
    _child(COMPLETIONS, type_, status).inc()
    if failed_count:
        _child(FAILED_RECORDS, type_).inc(failed_count)


def dead_letter(reason: str) -> None:
    _child(DEAD_LETTERS, reason).inc()


class StreamStats(Collector):
    """Stream lengths, group pending and lag, read from Redis and cached briefly."""

    def __init__(self, redis: Any, keys: Keys, timeout: float) -> None:
        self._redis = redis
        self._keys = keys
        self._timeout = timeout
        self._read_at = -STREAM_STATS_INTERVAL
        self._lengths: dict[str, int] = {}
        self._groups: list[tuple[str, str, int, int | None]] = []
        self._lock = asyncio.Lock()

    async def refresh(self) -> None:
        async with self._lock:
            if time.monotonic() - self._read_at < STREAM_STATS_INTERVAL:
                return
            self._read_at = time.monotonic()
            try:
                async with asyncio.timeout(self._timeout):
                    await self._read()
            except (RedisError, OSError, TimeoutError):
                pass  # keep the last values; fanout_deliveries shows the outage

    async def _read(self) -> None:
        # The streams are known by name: no SCAN over the (many) dedup keys.
        streams = [self._keys.dead_letters()]
        for type_ in TYPES:
            streams += [self._keys.completed(type_), self._keys.progress(type_)]
        lengths: dict[str, int] = {}
        groups: list[tuple[str, str, int, int | None]] = []
        for stream in streams:
            if not await self._redis.exists(stream):
                continue
            lengths[stream] = int(await self._redis.xlen(stream))
            for group in await self._redis.xinfo_groups(stream):
                name = group["name"]
                lag = group.get("lag")
                groups.append(
                    (
                        stream,
                        name.decode() if isinstance(name, bytes) else str(name),
                        int(group["pending"]),
                        None if lag is None else int(lag),
                    )
                )
        self._lengths, self._groups = lengths, groups

    def collect(self) -> Iterator[Metric]:
        length = GaugeMetricFamily(
            "fanout_stream_length", "Entries in each stream.", labels=["stream"]
        )
        for stream, count in sorted(self._lengths.items()):
            length.add_metric([stream], count)
        pending = GaugeMetricFamily(
            "fanout_group_pending",
            "Entries delivered to a consumer group and not yet acknowledged.",
            labels=["stream", "group"],
        )
        lag = GaugeMetricFamily(
            "fanout_group_lag",
            "Entries in a stream not yet delivered to a consumer group.",
            labels=["stream", "group"],
        )
        for stream, group, pending_count, lag_count in self._groups:
            pending.add_metric([stream, group], pending_count)
            if lag_count is not None:
                lag.add_metric([stream, group], lag_count)
        yield from (length, pending, lag)


def exposition(stream_stats: StreamStats | None = None) -> bytes:
    """The text a scrape gets: this process's metrics, or every worker's."""
    if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
        registry = CollectorRegistry()
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    else:
        registry = REGISTRY
    output = generate_latest(registry)
    if stream_stats is not None:
        extra = CollectorRegistry(auto_describe=False)
        extra.register(stream_stats)
        output += generate_latest(extra)
    return output
