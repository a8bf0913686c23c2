"""Typed sample events, built the way the service builds them in production.

``sample`` takes the body Voucherify would post (``domain.sample_bodies``, the
source of ``fanout send --sample`` too), decodes it as the receiver does
(``domain.inbound``), makes its publication (``domain.outbound``: the entry
fields the publisher writes) and decodes that entry's ``event`` field as the
consumer does (``decode_event``). So the event is the one a handler receives,
and an override the service would not publish (an id over 256 characters, a
``result`` of the wrong shape) fails here as it would be dead-lettered there.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from datetime import UTC, datetime
from typing import Any, Literal, TypeAlias, overload

from ..domain import completion, custom, inbound, outbound, sample_bodies, webhooks
from ..domain.completion import CompletionEvent
from ..domain.custom import CustomEvent
from ..domain.entries import StreamEvent, decode_event
from ..domain.outbound import Publication
from ..domain.webhooks import WebhookEvent
from ..errors import FanoutError

#: The 22 async action types, for type checkers (``sample`` of one is a ``CompletionEvent``).
ActionType: TypeAlias = Literal[
    "CAMPAIGN.VOUCHERS_IMPORT",
    "CAMPAIGN.VOUCHERS_IMPORT_CSV",
    "CAMPAIGN.VOUCHERS_UPDATE",
    "CAMPAIGN.VOUCHERS_DELETE",
    "CAMPAIGN.VOUCHERS_GENERATE",
    "CAMPAIGNS.METADATA_KEY_PURGE",
    "CUSTOMERS.IMPORT_CSV",
    "CUSTOMERS.BULK_UPDATE",
    "CUSTOMERS.METADATA_UPDATE",
    "CUSTOMERS.METADATA_KEY_PURGE",
    "PRODUCTS.BULK_UPDATE",
    "PRODUCTS.METADATA_UPDATE",
    "PRODUCTS.METADATA_KEY_PURGE",
    "PRODUCTS.IMPORT_CSV",
    "SKUS.IMPORT_CSV",
    "VOUCHERS.IMPORT",
    "VOUCHERS.IMPORT_CSV",
    "VOUCHERS.BULK_UPDATE",
    "VOUCHERS.METADATA_UPDATE",
    "VOUCHERS.METADATA_KEY_PURGE",
    "ORDERS.IMPORT",
    "ORDERS.METADATA_KEY_PURGE",
]

#: Every type ``sample`` takes, canonical spellings (it takes the vendor's other
#: spellings of event types too): the same list as ``fanout send --list-samples``.
SAMPLE_TYPES: tuple[str, ...] = sample_bodies.TYPES


class SampleRefused(FanoutError, ValueError):
    """The sample, as overridden, is a body the service would dead-letter, not publish;
    the message is the dead letter's reason and detail (msgspec's, with its path)."""


@overload
def sample(
    type_: ActionType,
    *,
    id: str | None = ...,
    request_id: str | None = ...,
    status: Literal["ENQUEUED", "IN_PROGRESS", "DONE", "FAILED"] | None = ...,
    result: Any = ...,
    progress: int | None = ...,
) -> CompletionEvent: ...


@overload
def sample(type_: Literal["custom"], *, body: Any = ...) -> CustomEvent: ...


@overload
def sample(
    type_: str,
    *,
    id: str | None = ...,
    request_id: str | None = ...,
    status: Literal["ENQUEUED", "IN_PROGRESS", "DONE", "FAILED"] | None = ...,
    result: Any = ...,
    progress: int | None = ...,
    data: Any = ...,
    sendout_id: str | None = ...,
    project_id: str | None = ...,
    distribution: bool | None = ...,
    body: Any = ...,
) -> StreamEvent: ...


def sample(
    type_: str,
    *,
    id: str | None = None,  # the event's own name for it
    request_id: str | None = None,
    status: str | None = None,
    result: Any = None,
    progress: int | None = None,
    data: Any = None,
    sendout_id: str | None = None,
    project_id: str | None = None,
    distribution: bool | None = None,
    body: Any = None,
) -> StreamEvent:
    """The typed event a handler receives for a sample of ``type_``.

    ``type_`` is one of ``SAMPLE_TYPES`` (an async action type, a webhook event
    type in either spelling, a Workflows type, or ``"custom"``). Overrides:

    - every kind but custom: ``id`` (the async action's, or the event's
      ``event.id``) and ``request_id`` (the action's, or ``event.group_id``);
      fresh ones by default, so each sample is a new event;
    - async actions: ``status`` (default ``DONE``; ``ENQUEUED`` and
      ``IN_PROGRESS`` give a progress event), ``result`` (the whole result, a dict
      or a ``service.results`` Struct), ``progress``;
    - webhook events: ``data`` (the whole data, a dict or Struct), ``sendout_id``,
      ``project_id``, ``distribution`` (sent by a distribution, not a project
      webhook);
    - ``custom``: ``body``, the custom body's JSON value.

    ``TypeError`` for an override the type has no use for, ``KeyError`` for an
    unknown type, ``SampleRefused`` for a sample the service would not publish.
    """
    sent = sample_bodies.body(
        type_,
        id_=id,
        request_id=request_id,
        status=status,
        result=result,
        progress=progress,
        data=data,
        sendout_id=sendout_id,
        project_id=project_id,
        distribution=distribution,
        custom=body,
    )
    return from_body(sent)


def from_body(body: bytes | str) -> StreamEvent:
    """The typed event a handler receives for a body Voucherify posts (a captured
    delivery, say): decoded as the receiver decodes it, published, read back as the
    consumer reads it. ``SampleRefused`` for a body the service would dead-letter."""
    try:
        decoded = inbound.decode(body.encode() if isinstance(body, str) else body)
    except inbound.Unpublishable as refused:
        raise SampleRefused(f"{refused.reason}: {refused.detail}") from None
    published = outbound.publication(decoded, datetime.now(UTC))
    event = decode_event(published.json)
    _AS_PUBLISHED[id(event)] = (event, published.json)
    while len(_AS_PUBLISHED) > _KEEP:
        _AS_PUBLISHED.popitem(last=False)
    return event


#: The JSON the publisher wrote for the latest events ``from_body`` made, so an event left
#: unchanged is delivered in exactly those bytes (a webhook's ``data`` as the vendor sent
#: it, not re-encoded from its Struct, which writes absent fields as null). Each entry
#: holds its event, so its id names no other object while it is kept.
_AS_PUBLISHED: OrderedDict[int, tuple[StreamEvent, bytes]] = OrderedDict()
_KEEP = 4096


def publication(event: StreamEvent) -> Publication:
    """The publication of ``event``: its stream kind, identity and the entry's fields as
    the publisher writes them (``event`` holding its JSON)."""
    kept = _AS_PUBLISHED.get(id(event))
    if kept is not None and kept[0] is event and decode_event(kept[1]) == event:
        data = kept[1]  # unchanged since it was made: the publisher's own bytes
        return outbound.of_event(event, data, hashlib.blake2b(data, digest_size=16).hexdigest())
    match event:
        case CompletionEvent():
            data = completion.encode_event(event)
        case WebhookEvent():
            data = webhooks.encode_event(event)
        case CustomEvent():
            data = custom.encode_event(event)
        case _:
            raise TypeError(f"not an event of this library: {type(event).__name__}")
    # Content compared on a resend of the same identity: the event's JSON stands for it.
    return outbound.of_event(event, data, hashlib.blake2b(data, digest_size=16).hexdigest())


def entry_fields(event: StreamEvent) -> dict[bytes, bytes]:
    """The stream entry's fields for ``event``, as the publisher writes them and as
    redis-py hands them to a consumer (bytes to bytes)."""
    return fields_of(publication(event))


def fields_of(published: Publication) -> dict[bytes, bytes]:
    """A publication's entry fields, bytes to bytes."""
    pairs = published.fields
    return {
        _bytes(name): _bytes(value) for name, value in zip(pairs[::2], pairs[1::2], strict=True)
    }


def _bytes(value: str | bytes) -> bytes:
    return value if isinstance(value, bytes) else value.encode()
