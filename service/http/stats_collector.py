"""Prometheus gauges read from Redis: stream lengths, group pending and lag.

Read at most every ``STREAM_STATS_INTERVAL`` seconds, not per scrape, and
through ``streams.stats``, the same reader as ``fanout stats`` and the dashboard.

The ``stream`` label values are a bounded set: the streams known by name
(``stats.known_streams``: every async action type, every known event type, the
dead letters; and the custom bodies' stream), and one more, ``other``, which
sums the streams of every other event type that arrived (drift), so a sender
cannot add label values at will.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from redis.exceptions import RedisError

from ..domain.event_types import OTHER
from ..streams import stats
from ..streams.connection import Client
from ..streams.durability import Waiter
from ..streams.keys import Keys
from ..streams.memory import MemoryWatch

STREAM_STATS_INTERVAL = 5.0


class StreamStats(Collector):
    """Stream lengths, group pending and lag, read from Redis and cached briefly."""

    def __init__(
        self,
        redis: Client,
        keys: Keys,
        timeout: float,
        maxlen: int,
        *,
        memory: MemoryWatch | None = None,
        durability: Waiter | None = None,
    ) -> None:
        self._memory = memory
        self._durability = durability
        self._redis = redis
        self._keys = keys
        self._timeout = timeout
        self._maxlen = maxlen
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
        # The custom bodies' stream is known by name too (the dashboard reads it apart).
        known = [*stats.known_streams(self._keys), self._keys.custom()]
        others = set(await stats.other_streams(self._redis, self._keys))
        lengths: dict[str, int] = {}
        by_group: dict[tuple[str, str], tuple[int, int | None]] = {}
        # One round trip for which of the (200-odd) streams exist; most never do.
        async with self._redis.pipeline(transaction=False) as pipe:
            for stream in (*known, *sorted(others)):
                pipe.exists(stream)
            present = await pipe.execute()
        for stream, exists in zip((*known, *sorted(others)), present, strict=True):
            if not exists:
                continue
            label = OTHER if stream in others else stream
            lengths[label] = lengths.get(label, 0) + int(await self._redis.xlen(stream))
            for group in await stats.groups(self._redis, stream):
                pending, lag = by_group.get((label, group.name), (0, 0))
                total = None if lag is None or group.lag is None else lag + group.lag
                by_group[(label, group.name)] = (pending + group.pending, total)
        self._lengths = lengths
        self._groups = [(s, g, pending, lag) for (s, g), (pending, lag) in by_group.items()]

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
            "Entries in a stream not yet delivered to a consumer group (entries that exist).",
            labels=["stream", "group"],
        )
        for stream, group, pending_count, lag_count in self._groups:
            pending.add_metric([stream, group], pending_count)
            if lag_count is not None:
                lag.add_metric([stream, group], lag_count)
        cap = GaugeMetricFamily(
            "fanout_stream_maxlen",
            "FANOUT_STREAM_MAXLEN: entries a stream may hold; when the entries a group has not "
            "acknowledged reach it, deliveries get 503 until the group catches up.",
        )
        cap.add_metric([], self._maxlen)
        yield from (length, pending, lag, cap)
        if self._memory is not None:
            yield from _memory_metrics(self._memory)
        if self._durability is not None:
            yield from _durability_metrics(self._durability)


def _durability_metrics(waiter: Waiter) -> Iterator[Metric]:
    """What a 2xx survives now, and the replicas it waits for (sampled once a second)."""
    survives = GaugeMetricFamily(
        "fanout_durability_survives",
        "1 when a 2xx sent now survives the fault (failover: to a replica; redis_kill: a "
        "kill -9 of Redis restarted on its files; host_crash: of the Redis host), else 0.",
        labels=["fault"],
    )
    for fault, kept in waiter.survival().faults().items():
        survives.add_metric([fault], int(kept))
    online = GaugeMetricFamily(
        "fanout_redis_replicas_online",
        "Replicas of the Redis primary online (INFO replication), per primary.",
        labels=["primary"],
    )
    waited = GaugeMetricFamily(
        "fanout_durability_replicas",
        "Replicas a 2xx waits for, per primary (0: none); more than online: deliveries to "
        "that primary get 503.",
        labels=["primary"],
    )
    for name, (count, needed) in waiter.waited_for().items():
        online.add_metric([name], count)
        waited.add_metric([name], needed)
    yield from (survives, online, waited)


def _memory_metrics(memory: MemoryWatch) -> Iterator[Metric]:
    """The server's memory as last sampled (``streams.memory``, once a second)."""
    used = GaugeMetricFamily("fanout_redis_used_memory_bytes", "Redis used_memory (INFO).")
    used.add_metric([], memory.used)
    limit = GaugeMetricFamily(
        "fanout_redis_maxmemory_bytes", "Redis maxmemory (INFO); 0: no limit."
    )
    limit.add_metric([], memory.maxmemory)
    threshold = GaugeMetricFamily(
        "fanout_redis_memory_limit_ratio",
        "FANOUT_MEMORY_LIMIT as a ratio of maxmemory: at or above it deliveries get 503.",
    )
    threshold.add_metric([], memory.limit / 100)
    evicted = CounterMetricFamily(
        "fanout_redis_evicted_keys",
        "Keys the Redis server evicted (INFO stats evicted_keys, all of its keys).",
    )
    evicted.add_metric([], memory.evicted)
    yield from (used, limit, threshold, evicted)
