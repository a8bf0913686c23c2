"""A real Redis for an integration test: the service's publisher on one side, a real
``Consumer`` on the other, under a key prefix of the test's own.

``Fanout`` is what the pytest plugin's ``fanout`` fixture gives (``plugin.py``);
it can also be made by hand around any Redis URL (``async with Fanout(url):``).
Publishing goes through ``streams.publisher.Publisher``, the receiver's own
(its scripts: dedup, the entry fields, the stream cap), so a consumer reads
entries exactly as ``fanout serve`` writes them.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from types import TracebackType
from typing import Any

from ..config import Settings
from ..consumer import Consumer, Handler
from ..consumer.connect import SOCKET_TIMEOUT
from ..domain.entries import StreamEvent
from ..streams import connection, replies
from ..streams.connection import Client
from ..streams.dead_letters import DeadLetter
from ..streams.keys import Keys
from ..streams.publisher import Accepted, Duplicate, Publisher
from .samples import publication


class Fanout:
    """A Redis, a publisher and consumers of it, all under ``prefix``; ``aclose()`` removes
    every key of the prefix and closes the clients."""

    def __init__(self, url: str, prefix: str | None = None) -> None:
        self.url = url
        #: The key prefix (``FANOUT_STREAM_PREFIX``) of this test's streams.
        self.prefix = prefix or f"test{uuid.uuid4().hex[:12]}"
        self.keys = Keys(self.prefix)
        settings = Settings(redis_url=url, stream_prefix=self.prefix)
        #: A client of the server, for what a test wants to look at itself.
        self.redis: Client = connection.from_settings(settings)
        self._publisher = Publisher.from_settings(self.redis, settings)
        self._checked = False
        self._clients: list[Client] = []

    async def __aenter__(self) -> Fanout:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def publish(self, *events: StreamEvent) -> list[str]:
        """Publish ``events`` as the receiver does (deduplicated: the same event twice is
        one entry); the entry id of each, in order."""
        if not self._checked:  # what the receiver does once at start-up
            await self._publisher.check_durability()
            self._checked = True
        ids = []
        for event in events:
            outcome = await self._publisher.publish(publication(event))
            if not isinstance(outcome, Accepted | Duplicate):
                raise RuntimeError(f"{event.type} {event.id} was not published: {outcome}")
            ids.append(outcome.entry_id)
        return ids

    def consumer(self, group: str, **options: Any) -> Consumer:
        """A real ``Consumer`` of this prefix's streams, on a client of its own (closed by
        ``aclose()``); ``options`` are the ``Consumer``'s (``types``, ``max_deliveries``,
        ``handler_timeout``, ``min_idle``, ...)."""
        client = connection.connect(self.url, cluster=False, timeout=SOCKET_TIMEOUT)
        self._clients.append(client)
        return Consumer(client, group, prefix=self.prefix, **options)

    @contextlib.asynccontextmanager
    async def consuming(
        self, handler: Handler, group: str = "tests", **options: Any
    ) -> AsyncIterator[Consumer]:
        """Run a ``consumer(group, **options)`` on ``handler`` for the ``async with`` block:
        its groups exist when the block starts; on leaving, it stops and its handlers in
        flight finish. An error of the consumer's own is raised there."""
        consumer = self.consumer(group, **options)
        running = asyncio.create_task(consumer.run(handler))
        ready = asyncio.create_task(consumer.wait_ready())
        await asyncio.wait({running, ready}, return_when=asyncio.FIRST_COMPLETED)
        if running.done():
            ready.cancel()
            await running  # raises what stopped it
        try:
            yield consumer
        finally:
            consumer.stop()
            await running

    async def settled(self, consumer: Consumer, *, within: float = 30.0) -> None:
        """Wait until ``consumer``'s group has read every entry of its streams and holds
        none pending: each was acknowledged (handled, or poisoned and dead-lettered).

        An entry left pending by a raise waits for ``min_idle`` before it is claimed
        again: give the consumer a short one in tests. ``TimeoutError`` after
        ``within`` seconds, saying what is still outstanding."""
        try:
            async with asyncio.timeout(within):
                while True:
                    if not await self._outstanding(consumer):
                        return
                    await asyncio.sleep(0.02)  # the server tells no one when a group settles
        except TimeoutError:
            left = await self._outstanding(consumer)
            raise TimeoutError(f"group {consumer.group} has not settled: {left}") from None

    async def _outstanding(self, consumer: Consumer) -> dict[str, dict[str, int]]:
        left = {}
        for stream in consumer.streams:
            for group in await self.redis.xinfo_groups(stream):
                name = group["name"]
                if (name.decode() if isinstance(name, bytes) else name) != consumer.group:
                    continue
                pending, lag = int(group["pending"]), group.get("lag")
                if lag is not None:
                    unread = int(lag)
                else:  # Redis < 7, or entries deleted: has it read up to the last entry?
                    last = (await self.redis.xinfo_stream(stream))["last-generated-id"]
                    unread = int(replies.text(group["last-delivered-id"]) != replies.text(last))
                if pending or unread:
                    left[stream] = {"pending": pending, "unread": unread}
        return left

    async def dead_letters(self) -> list[dict[str, str]]:
        """The dead letters under this prefix (``poison`` ones name their group, stream,
        entry id, deliveries and last error), oldest first, as text."""
        entries = await self.redis.xrange(self.keys.dead_letters()) or []
        return [
            DeadLetter.from_fields(replies.fields(fields) or {}).as_object(replies.text(entry_id))
            for entry_id, fields in entries
        ]

    async def aclose(self) -> None:
        """Remove every key of the prefix, then close the clients."""
        try:
            async for key in self.redis.scan_iter(match=f"{self.prefix}:*", count=1000):
                await self.redis.delete(key)
        finally:
            for client in (*self._clients, self.redis):
                await client.aclose()
