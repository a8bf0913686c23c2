"""Read the streams with a consumer group: typed events in, at-least-once handling.

A ``Consumer`` subscribes one group to the streams of some types: completion
streams of async action types (and, if asked, their progress streams) and event
streams of webhook event types (``types=["voucher.published"]``), and the stream
of custom bodies (``types=["custom"]``). It decodes
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
  again when Redis lost it (NOGROUP after a restart or FLUSHALL): ``groups.py``;
* a pending entry found deleted from the stream (trimmed or XDEL'd before the
  group acknowledged it) is logged, counted in ``stats.trimmed`` and
  dead-lettered with reason ``trimmed``;
* Redis going away, a failover (READONLY, UNBLOCKED, LOADING, MASTERDOWN) and
  the like are waited out with back-off on fresh connections, never fatal;
* at most ``concurrency`` handlers run at once; reads block (BLOCK) while the
  streams are idle; ``stop()`` finishes the handlers in flight and returns;
* with tracing on, each handling is a span, the child of the entry's ``traceparent``.

Reads never cross a hash slot: on one server a single XREADGROUP covers every
stream, with ``RedisCluster`` there is one per type (the streams of a type
share the type's slot).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

from redis.asyncio.cluster import RedisCluster
from redis.exceptions import RedisError

from ..config import tracing_enabled
from ..domain import actions, webhooks
from ..domain.custom import CUSTOM_TYPE
from ..domain.event_types import is_known
from ..streams import replies
from ..streams.connection import Client, passing
from ..streams.keys import Keys
from ..tracing import INSTALL
from .claims import Running
from .groups import Groups
from .handling import CONNECTION_ERRORS, ConsumerStats, Delivery, Handler, Handlers
from .poison import PoisonLetters

if TYPE_CHECKING:
    from opentelemetry.trace import TracerProvider

    from .tracing import HandlerSpans

logger = logging.getLogger("service.consumer")

Start: TypeAlias = Literal["beginning", "now"]


def default_name() -> str:
    """A consumer name unique to this process: host, pid and a random part."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class Consumer:
    """One member of a consumer group over the streams of ``types``.

    ``start`` decides where a group that does not exist yet begins: at the
    first entry still in the streams (``"beginning"``) or with entries added
    from now on (``"now"``). A group lost on the server is recreated from the
    beginning of what the streams then hold, so nothing is skipped.

    ``tracing`` (default: FANOUT_TRACING, or on when a ``tracer_provider`` is given)
    puts each entry's handling in an OpenTelemetry span continuing the trace of the
    delivery (``tracing.py``), made by ``tracer_provider``, else by the application's
    global one; it needs the ``[otel]`` extra.
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
        tracing: bool | None = None,
        tracer_provider: TracerProvider | None = None,
    ) -> None:
        # Webhook event types in the vendor's other spelling read the canonical stream.
        types = tuple(dict.fromkeys(webhooks.canonical_type(t) for t in types))
        unknown = [
            t for t in types if t not in actions.BY_TYPE and not is_known(t) and t != CUSTOM_TYPE
        ]
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
        self._running = Running(redis, group, self.name, interval=min_idle / 3)
        self._stats = ConsumerStats()
        self._handlers = Handlers(
            redis,
            group,
            self.name,
            running=self._running,
            poison=PoisonLetters(redis, self.keys, ttl=dead_letter_ttl, maxlen=dead_letter_maxlen),
            stats=self._stats,
            concurrency=concurrency,
            handler_timeout=handler_timeout,
            max_deliveries=max_deliveries,
            spans=_spans(tracing, tracer_provider, group, self.name),
        )
        self._stopping = asyncio.Event()
        self._groups = Groups(redis, group, self.name, self.streams, self._stopping)
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
        if not await self._groups.start("0" if self.start == "beginning" else "$"):
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
            await self._handlers.drain()
            keeper.cancel()
            await asyncio.gather(keeper, return_exceptions=True)
        await self._groups.leave()

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

    # --- reading ------------------------------------------------------------

    async def _read_loop(self, streams: list[str], handler: Handler) -> None:
        backoff = 0.05
        while not self._stopping.is_set():
            await self._handlers.wait_for_slot()
            # COUNT applies per stream; ask for about the free capacity in total.
            free = max(1, self.concurrency - len(self._handlers.in_flight))
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
                self._groups.outage.back()
            except (RedisError, *CONNECTION_ERRORS) as exc:
                if str(exc).startswith("NOGROUP"):
                    logger.warning("group %s is gone (%s); creating it again", self.group, exc)
                    await self._groups.recreate(streams)
                    await self._groups.sleep(
                        backoff
                    )  # never a hot loop, whatever the server answers
                elif passing(exc):  # connection lost, a failover, ...
                    await self._groups.retry_later("reading", streams, exc, backoff)
                else:
                    raise
                backoff = min(backoff * 2, 2.0)
                continue
            for stream, entries in replies.streams(reply):
                for entry_id, fields in entries:
                    delivery = Delivery(stream, replies.text(entry_id), replies.fields(fields), 1)
                    await self._handlers.dispatch(delivery, handler)

    # --- claiming -----------------------------------------------------------

    async def _claim_loop(self, stream: str, handler: Handler) -> None:
        min_idle_ms = max(1, int(self.min_idle * 1000))
        while not self._stopping.is_set():
            await self._groups.sleep(self.claim_interval)
            if self._stopping.is_set():
                return
            cursor = "0-0"
            backoff = 0.05
            try:
                while not self._stopping.is_set():
                    await self._handlers.wait_for_slot()
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
                        await self._handlers.trimmed(stream, replies.text(deleted))
                    if claimed:
                        counts = await self._delivery_counts(stream, claimed)
                        for entry_id, fields in claimed:
                            delivery = Delivery(
                                stream, entry_id, replies.fields(fields), counts.get(entry_id, 1)
                            )
                            logger.info(
                                "claimed %s %s (delivery %d)", stream, entry_id, delivery.deliveries
                            )
                            await self._handlers.dispatch(delivery, handler)
                    if cursor == "0-0":
                        break
            except (RedisError, *CONNECTION_ERRORS) as exc:
                if str(exc).startswith("NOGROUP"):
                    await self._groups.recreate([stream])
                elif passing(exc):
                    await self._groups.retry_later("claiming on", [stream], exc, backoff)
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


def _socket_timeout(redis: Client) -> float | None:
    kwargs: dict[str, Any] = (
        redis.connection_kwargs
        if isinstance(redis, RedisCluster)
        else redis.connection_pool.connection_kwargs
    )
    value = kwargs.get("socket_timeout")
    return None if value is None else float(value)


def _spans(
    tracing: bool | None, provider: TracerProvider | None, group: str, name: str
) -> HandlerSpans | None:
    """The spans of the handler calls, when the consumer traces: ``tracing``, else
    whether a provider was given, else FANOUT_TRACING. OpenTelemetry is imported only
    then (the ``[otel]`` extra)."""
    if tracing is None:
        tracing = provider is not None or tracing_enabled()
    if not tracing:
        return None
    try:
        from .tracing import HandlerSpans
    except ImportError as exc:
        raise ImportError(f"tracing needs OpenTelemetry: {INSTALL}") from exc
    return HandlerSpans(group, name, provider)
