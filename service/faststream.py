"""FastStream on the service's streams: a decoder that hands a subscriber's handler the
typed event of this library, and the stream keys to subscribe to.

    from faststream.redis import RedisBroker, StreamSub
    from service import StreamEvent
    from service.faststream import decoder, stream

    @broker.subscriber(
        stream=StreamSub(stream("VOUCHERS.IMPORT"), group="billing", consumer="billing-1"),
        decoder=decoder,
    )
    async def on_import(event: StreamEvent) -> None: ...

Without it, FastStream 0.7 hands a handler the entry's fields as a dict of
strings, ``event`` among them as a JSON string. With it, the handler gets what
``Consumer`` hands its handler: a ``CompletionEvent``, ``WebhookEvent`` or
``CustomEvent`` whose ``result`` or ``data`` is typed. A batch subscriber
(``StreamSub(..., batch=True)``) gets a list of them.

Acknowledgement stays FastStream's: docs/consumers.md ("FastStream") compares
its ack policy with the ``Consumer``'s (what a raise does, who delivers a
pending entry again, and when nothing does). FastStream sets no limit on
deliveries; ``DeadLetters`` (a broker middleware) adds the ``Consumer``'s: the
``max_deliveries``-th failure of an entry files it in the service's dead letters
as ``poison`` (the letter ``Consumer`` files, through the same code) and
acknowledges it, so the group moves on.

An optional extra: ``pip install 'voucherify-fanout[faststream]'``. Nothing
else in the package imports this module or FastStream.
"""

from __future__ import annotations

import logging
from typing import Any

try:
    from faststream import BaseMiddleware, ContextRepo
    from faststream.message import StreamMessage
    from faststream.redis.message import RedisStreamMessage
except ImportError as missing:  # pragma: no cover - the extra is not installed
    raise ImportError(
        "service.faststream needs FastStream: pip install 'voucherify-fanout[faststream]'"
    ) from missing

from redis.asyncio import Redis, RedisCluster

from .consumer.poison import Poison, PoisonLetters
from .domain import actions, webhooks
from .domain.entries import StreamEvent, decode_event
from .streams import replies
from .streams.keys import Keys

__all__ = ["DeadLetters", "decoder", "stream"]

logger = logging.getLogger("service.faststream")


async def decoder(message: StreamMessage[Any]) -> StreamEvent | list[StreamEvent]:
    """A FastStream decoder (``subscriber(..., decoder=decoder)``): the typed event of a
    stream entry, or a list of them for a batch subscriber.

    An entry whose ``event`` does not decode raises ``msgspec.ValidationError``,
    which FastStream treats as the handler's failure (by its default ack policy
    the entry stays pending, unacknowledged).
    """
    data = message.raw_message["data"]
    if isinstance(data, list):  # StreamSub(batch=True): one dict of fields per entry
        return [decode_event(fields) for fields in data]
    return decode_event(data)


def stream(type_: str, *, prefix: str = "voucherify", progress: bool = False) -> str:
    """The stream key of ``type_`` under ``prefix`` (``FANOUT_STREAM_PREFIX``): an async
    action type's completions (its progress with ``progress=True``), a webhook event
    type's events (either spelling), or the custom bodies' stream for ``"custom"``."""
    keys = Keys(prefix)
    if type_ in actions.BY_TYPE:
        return keys.progress(type_) if progress else keys.completed(type_)
    if progress:
        raise ValueError(f"{type_!r} is not an async action type: it has no progress stream")
    if not webhooks.is_event_type(type_):
        raise ValueError(f"{type_!r} is not an async action or webhook event type")
    return keys.events(webhooks.canonical_type(type_))


class DeadLetters:
    """A FastStream broker middleware: the ``Consumer``'s limit on deliveries.

    ``RedisBroker(url, middlewares=[DeadLetters(max_deliveries=5)])``. When a
    handler fails on a stream entry of a consumer group delivered
    ``max_deliveries`` times or more (XPENDING's count: a claiming subscriber,
    ``StreamSub(..., min_idle_time=...)``, delivers it again), the entry is filed
    in ``<prefix>:{dead}:letters`` with reason ``poison`` (fields ``group``,
    ``consumer``, ``stream``, ``entry_id``, ``deliveries``, ``error``, the event as
    ``body``: ``fanout dlq replay`` puts it back) and acknowledged. Earlier
    failures are FastStream's as before (by its default ack policy, left
    pending). FastStream decodes inside this scope, so an entry whose event does
    not decode counts the same way (``Consumer`` files it at its first delivery).
    """

    def __init__(
        self,
        max_deliveries: int = 5,
        *,
        prefix: str = "voucherify",
        dead_letter_ttl: int = 604_800,
        dead_letter_maxlen: int = 1_000_000,
    ) -> None:
        if max_deliveries < 1:
            raise ValueError("max_deliveries must be at least 1")
        self.max_deliveries = max_deliveries
        self.keys = Keys(prefix)
        self.ttl = dead_letter_ttl
        self.maxlen = dead_letter_maxlen

    def __call__(self, msg: Any, /, *, context: ContextRepo) -> BaseMiddleware:
        return _DeadLetterScope(msg, context=context, limits=self)


class _DeadLetterScope(BaseMiddleware):
    def __init__(self, msg: Any, /, *, context: ContextRepo, limits: DeadLetters) -> None:
        super().__init__(msg, context=context)
        self.limits = limits

    async def consume_scope(self, call_next: Any, msg: StreamMessage[Any]) -> Any:
        try:
            return await call_next(msg)
        except Exception as exc:
            if not isinstance(msg, RedisStreamMessage) or msg.group is None:
                raise
            if not await self._poisoned(msg, exc):
                raise
            return None

    async def _poisoned(self, msg: RedisStreamMessage, exc: Exception) -> bool:
        """File the letter when this was the last allowed delivery; True once it is filed
        and the entry acknowledged."""
        limits = self.limits
        stream = msg.raw_message["channel"]
        [entry_id] = msg.raw_message["message_ids"]
        group = msg.group
        assert group is not None
        rows = await msg.consumer.xpending_range(stream, group, entry_id, entry_id, 1)
        if not rows or int(rows[0]["times_delivered"]) < limits.max_deliveries:
            return False
        poison = Poison(
            group=group,
            consumer=replies.text(rows[0]["consumer"]),
            stream=stream,
            entry_id=replies.text(entry_id),
            deliveries=int(rows[0]["times_delivered"]),
            max_deliveries=limits.max_deliveries,
            body=msg.raw_message["data"].get(b"event", b""),
            error=f"{type(exc).__name__}: {exc}",
        )
        client = msg.consumer  # the broker's client, typed by FastStream as a protocol
        if not isinstance(client, Redis | RedisCluster):
            return False
        letters = PoisonLetters(client, limits.keys, ttl=limits.ttl, maxlen=limits.maxlen)
        await letters.send(poison)  # a Redis error here leaves the entry pending
        await msg.ack()
        logger.error("dead-lettered %s %s: %s", stream, poison.entry_id, poison.detail)
        return True
