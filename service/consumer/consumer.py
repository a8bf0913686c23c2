"""Read the streams with a consumer group: typed events in, at-least-once handling.

A ``Consumer`` subscribes one group to the streams of some types: completion
streams of async action types (and, if asked, their progress streams) and event
streams of webhook event types (``types=["voucher.published"]``). It decodes
each entry into the typed event of its type (a ``CompletionEvent``, or a
``WebhookEvent`` whose ``data`` is the typed Struct of its event type) and hands
it to an async handler:

* a handler that returns acknowledges the entry (XACK); one that raises, or
  runs past ``handler_timeout``, leaves it pending;
* entries pending longer than ``min_idle`` (which must exceed the handler
  timeout) are claimed with XAUTOCLAIM by any live consumer of the group; an
  entry whose handler still runs, here, is never idle: it is claimed afresh
  every ``min_idle / 3`` until the handler returns, also past its timeout, so it
  never runs twice at once (``claims.py`` says what remains);
* an entry whose ``max_deliveries``-th handling fails, or that is claimed after
  more deliveries than that, goes to the dead letters with reason ``poison``
  and is acknowledged, so one bad event cannot block the group;
* the group is created when missing (XGROUP CREATE ... MKSTREAM) and created
  again when Redis lost it (NOGROUP after a restart or FLUSHALL);
* a pending entry found deleted from the stream (trimmed or XDEL'd before the
  group acknowledged it) is logged, counted in ``stats.trimmed`` and
  dead-lettered with reason ``trimmed``;
* Redis going away, a failover (READONLY, UNBLOCKED, LOADING, MASTERDOWN) and
  the like are waited out with back-off on fresh connections, never fatal;
* at most ``concurrency`` handlers run at once; reads block (BLOCK) while the
  streams are idle; ``stop()`` finishes the handlers in flight and returns.

Reads never cross a hash slot: on one server a single XREADGROUP covers every
stream, with ``RedisCluster`` there is one per type (the streams of a type
share the type's slot).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeAlias

from redis.asyncio.cluster import RedisCluster
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ..domain import actions, webhooks
from ..domain.entries import StreamEvent, decode_event
from ..domain.webhook_data import BY_TYPE as WEBHOOK_TYPES
from ..streams import replies
from ..streams.connection import Client, passing, reconnect
from ..streams.errors import StreamFull
from ..streams.keys import Keys
from .claims import Running
from .poison import Poison, PoisonLetters

logger = logging.getLogger("service.consumer")

Handler: TypeAlias = Callable[[StreamEvent], Awaitable[object]]
Start: TypeAlias = Literal["beginning", "now"]

_CONNECTION_ERRORS = (RedisConnectionError, RedisTimeoutError, OSError, TimeoutError)


@dataclass(frozen=True, slots=True)
class _Delivery:
    stream: str
    entry_id: str
    fields: dict[bytes, bytes] | None
    deliveries: int


@dataclass(slots=True)
class ConsumerStats:
    """What one ``Consumer`` did since it was made, for the application's own metrics."""

    #: Entries acknowledged after their handler returned.
    handled: int = 0
    #: Handler runs that raised or timed out (the entry stays pending, to be retried).
    failed: int = 0
    #: Entries given up on: dead-lettered with reason ``poison`` and acknowledged.
    poisoned: int = 0
    #: Pending entries found deleted from the stream: dead-lettered with reason ``trimmed``.
    trimmed: int = 0
    #: Entries another consumer took while a handler here still ran them.
    claims_lost: int = 0


def default_name() -> str:
    """A consumer name unique to this process: host, pid and a random part."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class Consumer:
    """One member of a consumer group over the streams of ``types``.

    ``start`` decides where a group that does not exist yet begins: at the
    first entry still in the streams (``"beginning"``) or with entries added
    from now on (``"now"``). A group lost on the server is recreated from the
    beginning of what the streams then hold, so nothing is skipped.
    """

    def __init__(
        self,
        redis: Client,
        group: str,
        *,
        types: Iterable[str] = actions.TYPES,
        progress: bool = False,
        prefix: str = "voucherify",
        name: str | None = None,
        start: Start = "beginning",
        concurrency: int = 16,
        handler_timeout: float = 30.0,
        min_idle: float = 120.0,
        claim_interval: float | None = None,
        max_deliveries: int = 5,
        block: float = 1.0,
        dead_letter_ttl: int = 604_800,
        dead_letter_maxlen: int = 1_000_000,
    ) -> None:
        # Webhook event types in the vendor's other spelling read the canonical stream.
        types = tuple(dict.fromkeys(webhooks.canonical_type(t) for t in types))
        unknown = [t for t in types if t not in actions.BY_TYPE and t not in WEBHOOK_TYPES]
        if unknown or not types:
            raise ValueError(
                f"unknown async action or webhook event type(s): {unknown or 'none given'}"
            )
        if start not in ("beginning", "now"):
            raise ValueError(f"start must be 'beginning' or 'now', got {start!r}")
        if concurrency < 1 or max_deliveries < 1:
            raise ValueError("concurrency and max_deliveries must be at least 1")
        if min_idle <= handler_timeout:
            raise ValueError(
                f"min_idle ({min_idle}s) must be longer than handler_timeout "
                f"({handler_timeout}s), or entries in progress would be claimed by others"
            )
        socket_timeout = _socket_timeout(redis)
        if socket_timeout is not None and block >= socket_timeout:
            raise ValueError(
                f"block ({block}s) must be shorter than the client's socket_timeout "
                f"({socket_timeout}s), or every idle read would time out"
            )
        self.redis = redis
        self.group = group
        self.name = name or default_name()
        self.keys = Keys(prefix)
        self.types = types
        self.start: Start = start
        self.concurrency = concurrency
        self.handler_timeout = handler_timeout
        self.min_idle = min_idle
        self.claim_interval = claim_interval if claim_interval is not None else min_idle / 2
        self.max_deliveries = max_deliveries
        self.block = block
        self._poison = PoisonLetters(
            redis, self.keys, ttl=dead_letter_ttl, maxlen=dead_letter_maxlen
        )
        streams = [
            [self.keys.completed(t)] + ([self.keys.progress(t)] if progress else [])
            if t in actions.BY_TYPE
            else [self.keys.events(t)]
            for t in types
        ]
        # One read per hash slot: all streams at once on one server, one type per read on a cluster.
        self._reads: list[list[str]] = (
            streams
            if isinstance(redis, RedisCluster)
            else [[s for group_ in streams for s in group_]]
        )
        self.streams: tuple[str, ...] = tuple(s for group_ in streams for s in group_)
        self._slots = asyncio.Semaphore(concurrency)
        self._in_flight: set[asyncio.Task[None]] = set()
        self._running = Running(redis, group, self.name, interval=min_idle / 3)
        self._stats = ConsumerStats()
        self._stopping = asyncio.Event()
        self._ready = asyncio.Event()
        self._owns_client = False

    # --- public -------------------------------------------------------------

    @classmethod
    async def connect(
        cls,
        group: str,
        *,
        url: str | None = None,
        data_dir: str | Path | None = None,
        prefix: str | None = None,
        announce: bool = True,
        **options: Any,
    ) -> Consumer:
        """A consumer of the Redis at ``url``, else ``FANOUT_REDIS_URL``, else the local server's.

        The local server is the running ``fanout serve`` whose data folder is
        ``data_dir`` (or ``FANOUT_DATA_DIR``, or ``.fanout`` here or in a parent
        folder). One line on stderr says which Redis it connected to (unless
        ``announce`` is false). ``prefix`` defaults to ``FANOUT_STREAM_PREFIX``,
        else the local server's. The client is the consumer's: ``aclose()``
        closes it. Raises ``NoRedis`` or ``ConnectionError`` with one line.
        """
        from .connect import open_redis, stream_prefix

        redis, target = await open_redis(url, data_dir=data_dir, announce=announce)
        try:
            consumer = cls(redis, group, prefix=prefix or stream_prefix(target), **options)
        except BaseException:
            await redis.aclose()
            raise
        consumer._owns_client = True
        return consumer

    async def aclose(self) -> None:
        """Close the Redis client if ``connect()`` made it (a client you passed stays open)."""
        if self._owns_client:
            await self.redis.aclose()

    async def run(self, handler: Handler) -> None:
        """Consume until ``stop()``; then finish the handlers in flight and return."""
        self._stopping.clear()
        if not await self._start_groups():
            return
        self._ready.set()
        loops = [self._read_loop(streams, handler) for streams in self._reads]
        loops += [self._claim_loop(stream, handler) for stream in self.streams]
        keeper = asyncio.create_task(self._running.keep())
        try:
            async with asyncio.TaskGroup() as tasks:
                for loop in loops:
                    tasks.create_task(loop)
        except BaseExceptionGroup as failed:
            raise failed.exceptions[0] from None
        finally:
            self._ready.clear()
            if self._in_flight:
                await asyncio.gather(*self._in_flight, return_exceptions=True)
            keeper.cancel()
            await asyncio.gather(keeper, return_exceptions=True)
        await self._leave()

    @property
    def stats(self) -> ConsumerStats:
        """Counters since this consumer was made (handled, failed, poisoned, trimmed, ...)."""
        self._stats.claims_lost = self._running.lost
        return self._stats

    def stop(self) -> None:
        """Ask ``run()`` to return: no new reads, handlers in flight finish and ack."""
        self._stopping.set()

    async def wait_ready(self) -> None:
        """Wait until the groups exist and the first read is about to be made."""
        await self._ready.wait()

    # --- groups -------------------------------------------------------------

    async def _leave(self) -> None:
        """After a graceful stop, remove this consumer from the group where it holds nothing,
        so the group's consumer list shows live members (entries it holds stay claimable)."""
        for stream in self.streams:
            try:
                held = await self.redis.xpending_range(
                    stream, self.group, min="-", max="+", count=1, consumername=self.name
                )
                if not held:
                    await self.redis.xgroup_delconsumer(stream, self.group, self.name)
            except (RedisError, *_CONNECTION_ERRORS) as exc:
                logger.debug("could not leave %s: %s", stream, exc)

    async def _start_groups(self) -> bool:
        """Create the groups, waiting out an unreachable or read-only server; False if
        ``stop()`` came first."""
        backoff = 0.05
        while not self._stopping.is_set():
            try:
                await self._ensure_groups(self.streams, "0" if self.start == "beginning" else "$")
                return True
            except RedisError as exc:
                if not passing(exc):
                    raise
                await self._retry_later("creating the groups on", self.streams, exc, backoff)
                backoff = min(backoff * 2, 2.0)
        return False

    async def _retry_later(
        self, doing: str, streams: Sequence[str], exc: BaseException, backoff: float
    ) -> None:
        logger.warning(
            "%s %s failed: %s; retrying in %.2fs", doing, ", ".join(streams), exc, backoff
        )
        with contextlib.suppress(RedisError, OSError):
            await reconnect(self.redis)
        await self._sleep(backoff)

    async def _ensure_groups(self, streams: Iterable[str], start_id: str) -> None:
        for stream in streams:
            try:
                await self.redis.xgroup_create(stream, self.group, id=start_id, mkstream=True)
                logger.info("created group %s on %s from %s", self.group, stream, start_id)
            except ResponseError as exc:
                if not str(exc).startswith("BUSYGROUP"):
                    raise

    # --- reading ------------------------------------------------------------

    async def _read_loop(self, streams: list[str], handler: Handler) -> None:
        backoff = 0.05
        while not self._stopping.is_set():
            await self._wait_for_slot()
            # COUNT applies per stream; ask for about the free capacity in total.
            free = max(1, self.concurrency - len(self._in_flight))
            count = max(1, free // len(streams))
            try:
                reply = await self.redis.xreadgroup(
                    self.group,
                    self.name,
                    dict.fromkeys(streams, ">"),
                    count=count,
                    block=max(1, int(self.block * 1000)),
                )
                backoff = 0.05
            except (RedisError, *_CONNECTION_ERRORS) as exc:
                if str(exc).startswith("NOGROUP"):
                    logger.warning("group %s is gone (%s); creating it again", self.group, exc)
                    await self._recreate(streams)
                    await self._sleep(backoff)  # never a hot loop, whatever the server answers
                elif passing(exc):  # connection lost, a failover, ...
                    await self._retry_later("reading", streams, exc, backoff)
                else:
                    raise
                backoff = min(backoff * 2, 2.0)
                continue
            for stream, entries in replies.streams(reply):
                for entry_id, fields in entries:
                    delivery = _Delivery(stream, replies.text(entry_id), replies.fields(fields), 1)
                    await self._dispatch(delivery, handler)

    async def _recreate(self, streams: Sequence[str]) -> None:
        try:
            await self._ensure_groups(streams, "0")
        except (RedisError, *_CONNECTION_ERRORS) as exc:
            if not passing(exc):
                raise

    async def _wait_for_slot(self) -> None:
        # Read only when a handler slot is free, so entries do not wait in memory
        # while their idle time runs towards min_idle.
        await self._slots.acquire()
        self._slots.release()

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._stopping.wait()

    # --- claiming -----------------------------------------------------------

    async def _claim_loop(self, stream: str, handler: Handler) -> None:
        min_idle_ms = max(1, int(self.min_idle * 1000))
        while not self._stopping.is_set():
            await self._sleep(self.claim_interval)
            if self._stopping.is_set():
                return
            cursor = "0-0"
            backoff = 0.05
            try:
                while not self._stopping.is_set():
                    await self._wait_for_slot()
                    reply = await self.redis.xautoclaim(
                        stream,
                        self.group,
                        self.name,
                        min_idle_ms,
                        start_id=cursor,
                        count=self.concurrency,
                    )
                    cursor = replies.text(reply[0])
                    claimed = [(replies.text(i), f) for i, f in reply[1]]
                    # Redis >= 7: pending entries no longer in the stream, now out of the PEL.
                    for deleted in reply[2] if len(reply) > 2 else ():
                        await self._trimmed(stream, replies.text(deleted))
                    if claimed:
                        counts = await self._delivery_counts(stream, claimed)
                        for entry_id, fields in claimed:
                            delivery = _Delivery(
                                stream, entry_id, replies.fields(fields), counts.get(entry_id, 1)
                            )
                            logger.info(
                                "claimed %s %s (delivery %d)", stream, entry_id, delivery.deliveries
                            )
                            await self._dispatch(delivery, handler)
                    if cursor == "0-0":
                        break
            except (RedisError, *_CONNECTION_ERRORS) as exc:
                if str(exc).startswith("NOGROUP"):
                    await self._recreate([stream])
                elif passing(exc):
                    await self._retry_later("claiming on", [stream], exc, backoff)
                else:
                    raise

    async def _delivery_counts(self, stream: str, claimed: list[tuple[str, Any]]) -> dict[str, int]:
        ids = sorted(claimed, key=lambda item: tuple(int(p) for p in item[0].split("-")))
        rows = await self.redis.xpending_range(
            stream,
            self.group,
            min=ids[0][0],
            max=ids[-1][0],
            count=len(claimed) + 100,
            consumername=self.name,
        )
        counts: dict[str, int] = {}
        for row in rows:
            counts[replies.text(row["message_id"])] = int(row["times_delivered"])
        return counts

    # --- handling -----------------------------------------------------------

    async def _dispatch(self, delivery: _Delivery, handler: Handler) -> None:
        if (delivery.stream, delivery.entry_id) in self._running:
            # Claimed back while its handler still runs here: never a second run at once.
            logger.warning(
                "%s %s is already being handled here", delivery.stream, delivery.entry_id
            )
            return
        self._running.add(delivery.stream, delivery.entry_id)
        await self._slots.acquire()
        task = asyncio.create_task(self._handle(delivery, handler))
        self._in_flight.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._in_flight.discard(task)
        self._slots.release()
        if not task.cancelled() and task.exception() is not None:
            logger.error("handling failed unexpectedly", exc_info=task.exception())

    async def _handle(self, delivery: _Delivery, handler: Handler) -> None:
        try:
            done = await self._run_handler(delivery, handler)
        finally:
            # From here on it is not running: no more keep-alive, a later claim may run it.
            self._running.discard(delivery.stream, delivery.entry_id)
        if done:
            await self._ack(delivery)

    async def _run_handler(self, delivery: _Delivery, handler: Handler) -> bool:
        """Decode and handle one entry; True when it is to be acknowledged now."""
        fields = delivery.fields
        if fields is None:  # deleted from the stream while pending (Redis < 7 reports so)
            await self._trimmed(delivery.stream, delivery.entry_id)
            return True
        body = fields.get(b"event", b"")
        if delivery.deliveries > self.max_deliveries:
            error = "the consumer handling the last delivery stopped before it ended"
            return await self._dead(delivery, body, error)
        try:
            event = decode_event(body)
        except Exception as exc:  # any decode failure is final
            return await self._dead(delivery, body, f"cannot decode the event: {exc}")
        try:
            # Past the timeout the handler is cancelled; this waits until it has really
            # returned (it may hold off cancellation), and the entry stays claimed till then.
            async with asyncio.timeout(self.handler_timeout):
                await handler(event)
        except Exception as exc:  # the handler's failure: left pending
            self._stats.failed += 1
            error = (
                f"handler timed out after {self.handler_timeout}s"
                if isinstance(exc, TimeoutError)
                else f"{type(exc).__name__}: {exc}"
            )
            logger.warning(
                "handler failed on %s %s (delivery %d of %d): %s",
                delivery.stream,
                delivery.entry_id,
                delivery.deliveries,
                self.max_deliveries,
                error,
            )
            if delivery.deliveries >= self.max_deliveries:
                return await self._dead(delivery, body, error)
            return False
        self._stats.handled += 1
        return True

    async def _ack(self, delivery: _Delivery) -> None:
        try:
            await self.redis.xack(delivery.stream, self.group, delivery.entry_id)
        except (*_CONNECTION_ERRORS, ResponseError) as exc:
            # Left pending: it will be claimed and handled again (at least once).
            logger.warning("could not ack %s %s: %s", delivery.stream, delivery.entry_id, exc)

    async def _trimmed(self, stream: str, entry_id: str) -> None:
        """A pending entry is gone from the stream: say so where it cannot be missed."""
        self._stats.trimmed += 1
        logger.error(
            "entry %s of %s was deleted before group %s acknowledged it; dead-lettered as trimmed",
            entry_id,
            stream,
            self.group,
        )
        try:
            await self._poison.send_trimmed(self.group, self.name, stream, entry_id)
        except (RedisError, StreamFull, *_CONNECTION_ERRORS) as exc:
            logger.warning("could not dead-letter the trimmed entry %s: %s", entry_id, exc)

    async def _dead(self, delivery: _Delivery, body: bytes, error: str) -> bool:
        """Dead-letter as poison; True (acknowledge it now) once the letter is filed."""
        poison = Poison(
            group=self.group,
            consumer=self.name,
            stream=delivery.stream,
            entry_id=delivery.entry_id,
            deliveries=delivery.deliveries,
            max_deliveries=self.max_deliveries,
            body=body,
            error=error,
        )
        try:
            await self._poison.send(poison)
        except (RedisError, StreamFull, *_CONNECTION_ERRORS) as exc:
            logger.warning("could not dead-letter %s: %s", delivery.entry_id, exc)
            return False
        self._stats.poisoned += 1
        logger.error("dead-lettered %s %s: %s", delivery.stream, delivery.entry_id, poison.detail)
        return True


def _socket_timeout(redis: Client) -> float | None:
    kwargs: dict[str, Any] = (
        redis.connection_kwargs
        if isinstance(redis, RedisCluster)
        else redis.connection_pool.connection_kwargs
    )
    value = kwargs.get("socket_timeout")
    return None if value is None else float(value)
