"""What is published for one decoded body, ready made: the event, its entry, its identity.

``publication`` turns an inbound body (``inbound.decode``, or an async action the
reconciler read from the API) into a ``Publication``: which stream kind it goes
to, the dedup identity (type, id, request id, and for progress its status and
step), the content digest, the typed event and the stream entry's field/value
pairs (the contract's fields, ``event`` holding the event's JSON). The
publisher picks the keys and the script from it and adds nothing but the
CloudEvents ``data`` field when that is on; it never calls back into the domain.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Literal, TypeAlias

import msgspec

from . import completion, custom, event_types, webhooks
from .actions import COMPLETED_STATUSES, AsyncAction
from .completion import CompletionEvent
from .custom import CustomBody, CustomEvent
from .webhooks import WebhookDelivery, WebhookEvent

#: Where a publication goes: a type's completions, its progress, its webhook events,
#: or the custom bodies' stream.
StreamKind: TypeAlias = Literal["completed", "progress", "events", "custom"]
OutboundEvent: TypeAlias = CompletionEvent | WebhookEvent | CustomEvent

_msgpack = msgspec.msgpack.Encoder()

#: The entry field that holds the W3C trace context (``00-<trace>-<span>-<flags>``) of the
#: delivery's span in the receiver, added by the publisher when FANOUT_TRACING=1 (after ``fields``).
TRACEPARENT = "traceparent"


class Publication(msgspec.Struct, frozen=True):
    """One event ready to publish.

    ``request_id`` is ``""`` when absent (as in the entry). ``status`` and
    ``progress`` are part of a progress update's identity. ``json`` is the
    event's JSON, also the ``event`` value in ``fields``.
    """

    kind: StreamKind
    type: str
    id: str
    request_id: str
    digest: str
    event: OutboundEvent
    json: bytes
    fields: list[str | bytes]
    status: str | None = None
    progress: int | None = None
    #: An event type outside ``event_types.KNOWN``: the publisher notes its stream for the
    #: gauges, which know the others by name.
    unknown_type: bool = False


def action_digest(action: AsyncAction) -> str:
    """Identifies the decoded content of an async action (not its bytes).

    Kept in Redis dedup keys, so the same function in every version.
    """
    return hashlib.blake2b(_msgpack.encode(action), digest_size=16).hexdigest()


def publication(
    inbound: AsyncAction | WebhookDelivery | CustomBody, received_at: datetime
) -> Publication:
    """The publication of one decoded body, received at ``received_at``."""
    if isinstance(inbound, WebhookDelivery):
        event = inbound.event(received_at)
        return of_event(event, webhooks.encode_event(event), inbound.digest)
    if isinstance(inbound, CustomBody):
        body = inbound.event(received_at)
        return of_event(body, custom.encode_event(body), inbound.digest)
    completed = completion.from_action(inbound, received_at)
    return of_event(completed, completion.encode_event(completed), action_digest(inbound))


def of_event(event: OutboundEvent, data: bytes, digest: str = "") -> Publication:
    """The publication of an event whose JSON is ``data``. Without a digest for an event
    published before and appended again as it is (a replayed poison letter)."""
    if isinstance(event, CustomEvent):
        fields: list[str | bytes] = ["type", event.type, "id", event.id, "request_id", ""]
        fields += ["event", data]
        return Publication(
            kind="custom",
            type=event.type,
            id=event.id,
            request_id="",
            digest=digest,
            event=event,
            json=data,
            fields=fields,
        )
    request_id = event.request_id or ""
    if isinstance(event, WebhookEvent):
        fields = ["type", event.type, "id", event.id, "request_id", request_id]
        fields += ["sendout_id", event.sendout_id, "project_id", event.project_id or ""]
        fields += ["event", data]
        return Publication(
            kind="events",
            type=event.type,
            id=event.id,
            request_id=request_id,
            digest=digest,
            event=event,
            json=data,
            fields=fields,
            unknown_type=not event_types.is_known(event.type),
        )
    type_, status = event.type, event.status
    fields = ["type", type_, "status", status, "id", event.id, "request_id", request_id]
    fields += ["event", data]
    return Publication(
        kind="completed" if status in COMPLETED_STATUSES else "progress",
        type=type_,
        id=event.id,
        request_id=request_id,
        digest=digest,
        event=event,
        json=data,
        fields=fields,
        status=status,
        progress=event.progress,
    )
