"""Handling one delivered entry: its handler run with a slot and a kept claim, then the ack.

``Handlers`` runs at most ``concurrency`` handlers at once. Each entry is marked
running (so ``claims.Running`` keeps its claim alive and a second delivery of it
here is not dispatched), decoded, and handed to the handler within
``handler_timeout``. A handler that returns acknowledges the entry; one that
fails leaves it pending, until its ``max_deliveries``-th failure dead-letters it
as ``poison``. An entry found deleted from the stream is reported as ``trimmed``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, TypeAlias

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ..domain.entries import StreamEvent, decode_event
from ..streams.connection import Client
from ..streams.errors import StreamFull
from .claims import Running
from .poison import Poison, PoisonLetters

if TYPE_CHECKING:
    from .tracing import HandlerSpans

logger = logging.getLogger("service.consumer")

Handler: TypeAlias = Callable[[StreamEvent], Awaitable[object]]

CONNECTION_ERRORS = (RedisConnectionError, RedisTimeoutError, OSError, TimeoutError)


@dataclass(frozen=True, slots=True)
class Delivery:
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


#: What becomes of one delivered entry: acknowledged, left pending (to be delivered
#: again), or dead-lettered as ``poison`` (and then acknowledged).
Verdict: TypeAlias = Literal["ack", "retry", "poison"]

#: What became of a delivered entry, as its span says (``tracing.py``): acknowledged after
#: its handler returned, left pending (``failed``), dead-lettered as poison or as trimmed.
Settled: TypeAlias = Literal["acked", "failed", "poison", "trimmed"]

#: Why an entry delivered more often than ``max_deliveries`` is poison without a run.
STOPPED_BEFORE_IT_ENDED = "the consumer handling the last delivery stopped before it ended"


@dataclass(frozen=True, slots=True)
class Attempt:
    """One delivery of an entry to a handler, and its verdict.

    ``event`` is what the handler was given (None when the entry was not run: it
    could not be decoded, or came back more often than ``max_deliveries``),
    ``error`` why it is not acknowledged (the handler's exception or timeout, or
    why it is poison), ``handler_failed`` whether the handler itself raised or
    timed out, ``body`` the entry's ``event`` field (a poison letter's body).
    """

    verdict: Verdict
    body: bytes
    event: StreamEvent | None = None
    error: str = ""
    handler_failed: bool = False


async def attempt(
    fields: Mapping[bytes, bytes],
    deliveries: int,
    handler: Handler,
    *,
    handler_timeout: float,
    max_deliveries: int,
) -> Attempt:
    """Decode an entry's fields and run the handler on its event, as ``Consumer.run`` does.

    The one place that decides an entry's fate, shared by ``Handlers`` (which then
    acknowledges or dead-letters it in Redis) and ``service.testing`` (which runs
    a handler in process): ``deliveries`` is this delivery's number (1 for the
    first). A handler that returns: ``ack``; one that raises or runs past
    ``handler_timeout``: ``retry``, or ``poison`` on the ``max_deliveries``-th
    delivery; an event that does not decode, or a delivery past
    ``max_deliveries``: ``poison`` without a run.
    """
    body = fields.get(b"event", b"")
    if deliveries > max_deliveries:
        return Attempt("poison", body, error=STOPPED_BEFORE_IT_ENDED)
    try:
        event = decode_event(body)
    except Exception as exc:  # any decode failure is final
        return Attempt("poison", body, error=f"cannot decode the event: {exc}")
    try:
        # Past the timeout the handler is cancelled; this waits until it has really
        # returned (it may hold off cancellation), and the entry stays claimed till then.
        async with asyncio.timeout(handler_timeout):
            await handler(event)
    except Exception as exc:  # the handler's failure: left pending
        error = (
            f"handler timed out after {handler_timeout}s"
            if isinstance(exc, TimeoutError)
            else f"{type(exc).__name__}: {exc}"
        )
        verdict: Verdict = "poison" if deliveries >= max_deliveries else "retry"
        return Attempt(verdict, body, event, error, handler_failed=True)
    return Attempt("ack", body, event)


class Handlers:
    """The handlers of one consumer: at most ``concurrency`` at once, each entry once at a time."""

    def __init__(
        self,
        redis: Client,
        group: str,
        name: str,
        *,
        running: Running,
        poison: PoisonLetters,
        stats: ConsumerStats,
        concurrency: int,
        handler_timeout: float,
        max_deliveries: int,
        spans: HandlerSpans | None = None,
    ) -> None:
        self.redis = redis
        self.group = group
        self.name = name
        self.handler_timeout = handler_timeout
        self.max_deliveries = max_deliveries
        #: A span around each entry's handling, when the consumer traces.
        self.spans = spans
        self._running = running
        self._poison = poison
        self._stats = stats
        self._slots = asyncio.Semaphore(concurrency)
        self.in_flight: set[asyncio.Task[object]] = set()

    async def wait_for_slot(self) -> None:
        # Read only when a handler slot is free, so entries do not wait in memory
        # while their idle time runs towards min_idle.
        await self._slots.acquire()
        self._slots.release()

    async def drain(self) -> None:
        """Wait for the handlers in flight to finish."""
        if self.in_flight:
            await asyncio.gather(*self.in_flight, return_exceptions=True)

    async def dispatch(self, delivery: Delivery, handler: Handler) -> None:
        if (delivery.stream, delivery.entry_id) in self._running:
            # Claimed back while its handler still runs here: never a second run at once.
            logger.warning(
                "%s %s is already being handled here", delivery.stream, delivery.entry_id
            )
            return
        self._running.add(delivery.stream, delivery.entry_id)
        await self._slots.acquire()
        # Untraced, the task is the handling itself: no extra coroutine per entry.
        handling = self._settle if self.spans is None else self._traced
        task: asyncio.Task[object] = asyncio.create_task(handling(delivery, handler))
        self.in_flight.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[object]) -> None:
        self.in_flight.discard(task)
        self._slots.release()
        if not task.cancelled() and task.exception() is not None:
            logger.error("handling failed unexpectedly", exc_info=task.exception())

    async def _traced(self, delivery: Delivery, handler: Handler) -> None:
        """``_settle`` in the entry's span (``tracing.py``)."""
        assert self.spans is not None
        stream, entry_id = delivery.stream, delivery.entry_id
        with self.spans.handling(stream, entry_id, delivery.fields, delivery.deliveries) as span:
            span.done(*await self._settle(delivery, handler))

    async def _settle(self, delivery: Delivery, handler: Handler) -> tuple[Settled, str]:
        """Handle one entry and acknowledge it when that is its fate; what became of it
        and why (the handler's error, or why it is poison)."""
        try:
            settled, error = await self._run_handler(delivery, handler)
        finally:
            # From here on it is not running: no more keep-alive, a later claim may run it.
            self._running.discard(delivery.stream, delivery.entry_id)
        if settled != "failed":
            await self._ack(delivery)
        return settled, error

    async def _run_handler(self, delivery: Delivery, handler: Handler) -> tuple[Settled, str]:
        """Decode and handle one entry; ``failed`` when it is left pending."""
        fields = delivery.fields
        if fields is None:  # deleted from the stream while pending (Redis < 7 reports so)
            await self.trimmed(delivery.stream, delivery.entry_id)
            return "trimmed", "deleted from the stream before it was acknowledged"
        outcome = await attempt(
            fields,
            delivery.deliveries,
            handler,
            handler_timeout=self.handler_timeout,
            max_deliveries=self.max_deliveries,
        )
        if outcome.verdict == "ack":
            self._stats.handled += 1
        if outcome.handler_failed:
            self._stats.failed += 1
            logger.warning(
                "handler failed on %s %s (delivery %d of %d): %s",
                delivery.stream,
                delivery.entry_id,
                delivery.deliveries,
                self.max_deliveries,
                outcome.error,
            )
        match outcome.verdict:
            case "ack":
                return "acked", ""
            case "retry":
                return "failed", outcome.error
            case "poison":
                filed = await self._dead(delivery, outcome.body, outcome.error)
                return ("poison" if filed else "failed"), outcome.error

    async def _ack(self, delivery: Delivery) -> None:
        try:
            await self.redis.xack(delivery.stream, self.group, delivery.entry_id)
        except (*CONNECTION_ERRORS, ResponseError) as exc:
            # Left pending: it will be claimed and handled again (at least once).
            logger.warning("could not ack %s %s: %s", delivery.stream, delivery.entry_id, exc)

    async def trimmed(self, stream: str, entry_id: str) -> None:
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
        except (RedisError, StreamFull, *CONNECTION_ERRORS) as exc:
            logger.warning("could not dead-letter the trimmed entry %s: %s", entry_id, exc)

    async def _dead(self, delivery: Delivery, body: bytes, error: str) -> bool:
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
        except (RedisError, StreamFull, *CONNECTION_ERRORS) as exc:
            logger.warning("could not dead-letter %s: %s", delivery.entry_id, exc)
            return False
        self._stats.poisoned += 1
        logger.error("dead-lettered %s %s: %s", delivery.stream, delivery.entry_id, poison.detail)
        return True
