"""CloudEvents 1.0 structured JSON for an entry's ``data`` field (``FANOUT_CLOUDEVENTS=1``).

Dapr's Redis Streams pub/sub reads only an entry's ``data`` field and expects a
CloudEvent there; Redpanda Connect reads one body field (``body_key: data``).
The attributes:

- ``id``: a hash of the entry's dedup identity (stream kind, type, id,
  request_id, and for progress the status and progress), so a resend that
  makes a new entry (after the dedup key expired or the stream was trimmed)
  and a replayed poison entry carry the same id, and two different entries never do.
- ``source``: ``/voucherify/<prefix>``, the deployment's ``FANOUT_STREAM_PREFIX``.
- ``type``: ``io.voucherify.async_action.<type, lowercased>.<completed|progress>``,
  e.g. ``io.voucherify.async_action.vouchers.import.completed``, and
  ``io.voucherify.webhook.<event type>``, e.g. ``io.voucherify.webhook.voucher.published``,
  and ``io.voucherify.custom`` for a custom body (``domain.custom``).
- ``subject``: the async action id or the webhook event id; ``time``: when it
  happened at Voucherify (an action's ``updated_at``, else ``created_at``; a
  webhook event's ``created_at``), else when it was received.
- ``datacontenttype``: ``application/json``; ``data``: the entry's event JSON,
  embedded as is (not encoded a second time).
- ``traceparent``: with FANOUT_TRACING=1, the W3C trace context of the delivery's
  span (the entry's ``traceparent`` field), as the distributed tracing
  extension names it; Dapr continues the trace from it.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Literal
from urllib.parse import quote

import msgspec

from ..domain import clock
from ..domain.actions import COMPLETED_STATUSES
from ..domain.completion import CompletionEvent
from ..domain.custom import CustomEvent
from ..domain.webhooks import WebhookEvent

SPECVERSION = "1.0"
TYPE_NAMESPACE = "io.voucherify"
Kind = Literal["completed", "progress"]


class _Attributes(msgspec.Struct, kw_only=True):
    """The context attributes, in the order they are written; ``data`` follows."""

    specversion: str = SPECVERSION
    id: str
    source: str
    type: str
    subject: str
    time: str
    datacontenttype: str = "application/json"


class _TracedAttributes(_Attributes, kw_only=True):
    """The attributes with the distributed tracing extension's ``traceparent``."""

    traceparent: str


_encoder = msgspec.json.Encoder()


def source(prefix: str) -> str:
    """The ``source`` of every event of one deployment (a URI reference)."""
    return f"/voucherify/{quote(prefix, safe='')}"


def action_type(type_: str, kind: Kind) -> str:
    """``io.voucherify.async_action.vouchers.import.completed`` for VOUCHERS.IMPORT."""
    return f"{TYPE_NAMESPACE}.async_action.{type_.lower()}.{kind}"


def webhook_type(type_: str) -> str:
    """``io.voucherify.webhook.voucher.published`` for voucher.published (spelled as published)."""
    return f"{TYPE_NAMESPACE}.webhook.{type_}"


def event_id(*identity: str | int | None) -> str:
    """A stable id from the parts of a dedup identity (JSON-encoded, so unambiguous)."""
    return hashlib.sha256(_encoder.encode(identity)).hexdigest()[:32]


def structured(
    *,
    id: str,
    source: str,
    type: str,
    subject: str,
    time: datetime,
    data: bytes,
    traceparent: str | None = None,
) -> bytes:
    """A structured-mode CloudEvent; ``data`` must be JSON text and is embedded unchanged."""
    moment = time if time.tzinfo else time.replace(tzinfo=UTC)  # naive: taken as UTC
    at = clock.iso(moment)
    head = _encoder.encode(
        _Attributes(id=id, source=source, type=type, subject=subject, time=at)
        if traceparent is None
        else _TracedAttributes(
            id=id, source=source, type=type, subject=subject, time=at, traceparent=traceparent
        )
    )
    return b"".join((head[:-1], b',"data":', data, b"}"))


def for_event(
    source: str,
    event: CompletionEvent | WebhookEvent | CustomEvent,
    data: bytes,
    traceparent: str | None = None,
) -> bytes:
    """The CloudEvent of one event entry; ``data`` is the entry's event JSON; with a
    ``traceparent``, the distributed tracing extension's attribute."""
    if isinstance(event, WebhookEvent):
        return _for_webhook(source, event, data, traceparent)
    if isinstance(event, CustomEvent):  # identified by its content; no time of its own
        return structured(
            id=event_id("custom", event.id),
            source=source,
            type=f"{TYPE_NAMESPACE}.custom",
            subject=event.id,
            time=event.received_at,
            data=data,
            traceparent=traceparent,
        )
    request_id = event.request_id or ""
    if event.status in COMPLETED_STATUSES:
        kind: Kind = "completed"
        identity = event_id(kind, event.type, event.id, request_id)
    else:
        kind = "progress"
        identity = event_id(kind, event.type, event.id, request_id, event.status, event.progress)
    return structured(
        id=identity,
        source=source,
        type=action_type(event.type, kind),
        subject=event.id,
        time=event.updated_at or event.created_at or event.received_at,
        data=data,
        traceparent=traceparent,
    )


def _for_webhook(source: str, event: WebhookEvent, data: bytes, traceparent: str | None) -> bytes:
    # The identity of the dedup key: (event type, event id, request id).
    received = event.received_at
    return structured(
        id=event_id("webhook", event.type, event.id, event.request_id or ""),
        source=source,
        type=webhook_type(event.type),
        subject=event.id,
        time=clock.parse(event.created_at, received) if event.created_at else received,
        data=data,
        traceparent=traceparent,
    )
