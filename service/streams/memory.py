"""Memory headroom: the server's used and max memory, sampled in the background.

A server at ``maxmemory`` refuses writes (OOM) or, under an evicting policy,
drops keys. The service stops taking deliveries before that: once
``used_memory`` reaches ``FANOUT_MEMORY_LIMIT`` percent of ``maxmemory``,
deliveries get 503 with ``Retry-After`` (``MemoryFull``) and ``/readyz`` 503,
so the last writes never meet the limit half-way. The hot path reads one
attribute; INFO runs here, once a second (``EVERY``), never per delivery.

``evicted_keys`` (INFO stats) is kept too: with no TTL on any key of the
service and a ``volatile-*`` or ``noeviction`` policy it stays 0 for our data,
and any rise is an alert (``FanoutRedisEvicting``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from redis.asyncio.cluster import RedisCluster
from redis.exceptions import RedisError

from .connection import Client, guard
from .replication import Replication

logger = logging.getLogger("service.memory")

#: Seconds between two samples.
EVERY = 1.0


class MemoryWatch:
    """The last sample of the server's memory, and whether deliveries must wait."""

    __slots__ = (
        "_announced",
        "_redis",
        "_resampling",
        "_stopped",
        "_timeout",
        "evicted",
        "full",
        "limit",
        "maxmemory",
        "replication",
        "used",
    )

    def __init__(
        self,
        redis: Client,
        *,
        limit: int,
        timeout: float,
        replication: Replication | None = None,
    ) -> None:
        self._redis = redis
        #: Fed with each primary's INFO replication from the same sample, when given.
        self.replication = replication
        self._timeout = timeout
        #: FANOUT_MEMORY_LIMIT: percent of maxmemory.
        self.limit = limit
        self.used = 0
        self.maxmemory = 0
        self.evicted = 0
        #: True from a sample at or above the limit until one below it.
        self.full = False
        self._stopped = False
        self._resampling: set[asyncio.Task[None]] = set()
        self._announced: asyncio.Task[None] | None = None
        if (follower := guard(redis)) is not None:
            follower.on_switch(self.primary_switched)
            follower.on_replica(self.replica_announced)

    def describe(self) -> str:
        percent = 100 * self.used / self.maxmemory if self.maxmemory else 0.0
        return (
            f"redis memory is at {percent:.0f}% of maxmemory ({self.used / 2**20:.1f} of "
            f"{self.maxmemory / 2**20:.1f} MiB), at or above FANOUT_MEMORY_LIMIT={self.limit}%: "
            "retry later (consumers and trimming free it; or raise maxmemory)"
        )

    async def sample(self) -> None:
        """Read INFO memory and stats (and replication) once; on failure keep the last
        values."""
        sections = (
            ("memory", "stats", "replication")
            if self.replication is not None
            else ("memory", "stats")
        )
        try:
            async with asyncio.timeout(self._timeout):
                if isinstance(self._redis, RedisCluster):
                    reply = await self._redis.info(*sections, target_nodes=RedisCluster.PRIMARIES)
                else:
                    reply = await self._redis.info(*sections)
        except (RedisError, OSError, TimeoutError) as exc:
            logger.debug("memory not sampled: %s", exc)
            return
        named: dict[str, dict[str, Any]] = (
            {"": reply}
            if "used_memory" in reply
            else {k: v for k, v in reply.items() if isinstance(v, dict)}
        )
        if not named:
            return
        if self.replication is not None:
            for name, info in named.items():
                self.replication.observe(name, info)
        nodes = list(named.values())
        # On a cluster the fullest primary decides: its slots are the ones that fail first.
        fullest = max(nodes, key=_ratio)
        self.used = int(fullest.get("used_memory", 0))
        self.maxmemory = int(fullest.get("maxmemory", 0) or 0)
        self.evicted = sum(int(node.get("evicted_keys", 0)) for node in nodes)
        full = bool(self.maxmemory) and self.used * 100 >= self.maxmemory * self.limit
        if full != self.full:
            (logger.warning if full else logger.info)(
                self.describe() if full else "redis memory below FANOUT_MEMORY_LIMIT again"
            )
        self.full = full

    def primary_switched(self) -> None:
        """Sentinel named a new primary: the replicas counted were the old one's (and a
        count kept while one left would hold the new one to it); count its own now,
        and every 0.1 s until one is online (a replica Sentinel points at it attaches
        about a second later: measured with two replicas, the first 2xx came
        2.1-2.2 s after a planned failover began with the sampler's 1 s pace)."""
        if self.replication is not None:
            self.replication.forget("")
        self._resample(lambda online: bool(online))

    def replica_announced(self) -> None:
        """A Sentinel learned of a replica of the primary: from now on it may promote it,
        so a 2xx must wait for it too. Count the primary's replicas now, and every 0.1 s
        until one more is online (it may still be in its first sync), for 2 s at most;
        then the once-a-second sample. Without this, a replica that attached was waited
        for only from the next sample, up to a second after Sentinel could know it
        (Sentinel learns replicas at its INFO of the primary, every 10 s: measured
        9.8-10.1 s after an attach made just after one)."""
        if self.replication is None or self._announced is not None:
            return  # each Sentinel says it; one count at a time
        before = self.replication.online("") or 0
        self._announced = self._resample(lambda online: (online or 0) > before, within=2.0)
        self._announced.add_done_callback(self._counted)

    def _counted(self, _: asyncio.Task[None]) -> None:
        self._announced = None

    def _resample(
        self, done: Callable[[int | None], bool], within: float = 5.0
    ) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(self._until(done, within))
        self._resampling.add(task)
        task.add_done_callback(self._resampling.discard)
        return task

    async def _until(self, done: Callable[[int | None], bool], within: float) -> None:
        for _ in range(int(within / 0.1)):
            if self._stopped:
                return
            await self.sample()
            if self.replication is None or done(self.replication.online("")):
                return
            await asyncio.sleep(0.1)

    async def run(self) -> None:
        """Sample every ``EVERY`` seconds until cancelled or ``stop()``.

        ``stop()`` as well as the cancel: three times under load (full test runs
        on the shared machine) an app's shutdown waited on this loop until the
        test's timeout, once with the sampler inside the client's connect; where
        the cancel was lost was not found. The flag ends the loop at its next
        turn whatever happened to the cancel (and the app's shutdown cancels
        again, a bounded time: ``http.app._stop``).
        """
        self._stopped = False
        while not self._stopped:
            await self.sample()
            await asyncio.sleep(EVERY)

    def stop(self) -> None:
        self._stopped = True

    def pending(self) -> list[asyncio.Task[None]]:
        """The counts ``primary_switched`` and ``replica_announced`` started that still
        run: the app stops them with the sampler, before it closes the client (a Redis
        call after that, under Sentinel, would start its follower again)."""
        return [task for task in self._resampling if not task.done()]


def _ratio(node: dict[str, Any]) -> float:
    maxmemory = int(node.get("maxmemory", 0) or 0)
    return int(node.get("used_memory", 0)) / maxmemory if maxmemory else 0.0
