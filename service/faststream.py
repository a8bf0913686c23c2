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
pending entry again, and when nothing does).

An optional extra: ``pip install 'voucherify-fanout[faststream]'``. Nothing
else in the package imports this module or FastStream.
"""

from __future__ import annotations

from typing import Any

try:
    from faststream.message import StreamMessage
except ImportError as missing:  # pragma: no cover - the extra is not installed
    raise ImportError(
        "service.faststream needs FastStream: pip install 'voucherify-fanout[faststream]'"
    ) from missing

from .domain import actions, webhooks
from .domain.entries import StreamEvent, decode_event
from .streams.keys import Keys

__all__ = ["decoder", "stream"]


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
