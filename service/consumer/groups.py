"""A consumer's group on the server: created, created again when lost, left at the end,
and Redis outages waited out meanwhile.

``Consumer`` reads and claims; this is what it does around that with the group
itself: XGROUP CREATE ... MKSTREAM for every stream (from the first entry or
from now on), again from the first entry still held when Redis lost the group
(NOGROUP after a restart or FLUSHALL), XGROUP DELCONSUMER after a graceful stop,
and the back-off on a fresh connection while Redis is away or failing over,
logged once when it goes and once when it is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable, Sequence

from redis.exceptions import RedisError, ResponseError

from ..streams.connection import Client, passing, reconnect
from .handling import CONNECTION_ERRORS

logger = logging.getLogger("service.consumer")


class Outage:
    """One log line when Redis goes away and one when it is back, however many of the
    consumer's loops (a read per slot, a claim loop per stream) notice it.

    Both at warning level, so whoever sees the first sees the second. Each retry
    used to log a warning naming every stream: with the 22 completion streams, a
    1,169-character line every 2 s while the server was down.
    """

    def __init__(self) -> None:
        self.since: float | None = None

    def lost(self, exc: BaseException) -> None:
        if self.since is None:
            self.since = time.monotonic()
            text = (str(exc) or type(exc).__name__).splitlines()[0][:200]
            logger.warning("lost Redis (%s); retrying until it is back", text)
        else:
            logger.debug("Redis still unavailable: %s", exc)

    def back(self) -> None:
        if self.since is not None:
            logger.warning("Redis is back after %.1fs", time.monotonic() - self.since)
            self.since = None


class Groups:
    """The group ``group`` on each of ``streams``, for the consumer ``name``.

    ``stopping`` is the consumer's: set, it cuts short every wait here.
    """

    def __init__(
        self,
        redis: Client,
        group: str,
        name: str,
        streams: Sequence[str],
        stopping: asyncio.Event,
    ) -> None:
        self.redis = redis
        self.group = group
        self.name = name
        self.streams = streams
        self.stopping = stopping
        self.outage = Outage()

    async def start(self, start_id: str) -> bool:
        """Create the groups, waiting out an unreachable or read-only server; False if
        ``stop()`` came first."""
        backoff = 0.05
        while not self.stopping.is_set():
            try:
                await self.ensure(self.streams, start_id)
                self.outage.back()
                return True
            except RedisError as exc:
                if not passing(exc):
                    raise
                await self.retry_later("creating the groups on", self.streams, exc, backoff)
                backoff = min(backoff * 2, 2.0)
        return False

    async def ensure(self, streams: Iterable[str], start_id: str) -> None:
        for stream in streams:
            try:
                await self.redis.xgroup_create(stream, self.group, id=start_id, mkstream=True)
                logger.info("created group %s on %s from %s", self.group, stream, start_id)
            except ResponseError as exc:
                if not str(exc).startswith("BUSYGROUP"):
                    raise

    async def recreate(self, streams: Sequence[str]) -> None:
        """The group again on ``streams`` after NOGROUP, from the first entry they hold."""
        try:
            await self.ensure(streams, "0")
        except (RedisError, *CONNECTION_ERRORS) as exc:
            if not passing(exc):
                raise

    async def leave(self) -> None:
        """After a graceful stop, remove this consumer from the group where it holds nothing,
        so the group's consumer list shows live members (entries it holds stay claimable)."""
        for stream in self.streams:
            try:
                held = await self.redis.xpending_range(
                    stream, self.group, min="-", max="+", count=1, consumername=self.name
                )
                if not held:
                    await self.redis.xgroup_delconsumer(stream, self.group, self.name)
            except (RedisError, *CONNECTION_ERRORS) as exc:
                logger.debug("could not leave %s: %s", stream, exc)

    async def retry_later(
        self, doing: str, streams: Sequence[str], exc: BaseException, backoff: float
    ) -> None:
        self.outage.lost(exc)  # only passing failures come here: away, failing over
        logger.debug("%s %s failed; retrying in %.2fs", doing, ", ".join(streams), backoff)
        with contextlib.suppress(RedisError, OSError):
            await reconnect(self.redis)
        await self.sleep(backoff)

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds``, or less when the consumer is asked to stop."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self.stopping.wait()
