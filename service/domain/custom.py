"""Custom bodies: signed JSON that is neither an envelope nor an async action.

A distribution's webhook can carry a custom body, the Payload Designer's raw
payload: JSON the user designed, signed like any other delivery. The service
cannot tell a designed body from a mistake, and the consumer can, so any such
JSON value (an object, and also an array or a scalar: the designer's text is
the user's) is published, unchanged, to one stream of its own,
``<P>:{custom}:events``, as a ``CustomEvent`` whose ``body`` is the JSON as
received.

A custom body has no id and no time of its own: it is identified by its
content. ``digest`` is the envelope's dedup digest (``webhooks.content_digest``)
over the type ``custom``, an empty id and the body's JSON values, so
whitespace, string escapes and number notation do not count (key order does,
as for envelopes): a retry or a pretty-printed resend is one entry. The digest
is also the event's ``id``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

import msgspec

from .envelope import RESERVED_TYPE
from .webhooks import content_digest

#: The type of every custom body: its stream's, its event's, ``Consumer(types=...)``'s.
CUSTOM_TYPE = RESERVED_TYPE
SCHEMA_VERSION = 1


class CustomBody(msgspec.Struct, frozen=True):
    """One custom body, with what publishing and dedup need; ``body`` is the bytes as sent."""

    body: bytes
    digest: str

    type = CUSTOM_TYPE
    request_id = None
    project_id = None

    @property
    def id(self) -> str:
        return self.digest

    def event(self, received_at: datetime) -> CustomEvent:
        return CustomEvent(id=self.digest, received_at=received_at, body=msgspec.Raw(self.body))


class CustomEvent(msgspec.Struct, kw_only=True):
    """What downstream services receive for a custom body (the entry's ``event``).

    ``id`` identifies the content (the dedup digest); ``body`` is the JSON as
    received, decoded by ``decode_custom_event`` into plain values.
    """

    schema: int = SCHEMA_VERSION
    type: Literal["custom"] = "custom"
    id: str
    received_at: datetime
    body: Any


class _WireEvent(CustomEvent, kw_only=True):
    body: msgspec.Raw


_wire_decoder = msgspec.json.Decoder(_WireEvent)
_encoder = msgspec.json.Encoder()


def decode_custom(body: bytes, value: Any) -> CustomBody:
    """The custom body of ``body``, whose JSON values are ``value``."""
    return CustomBody(body, content_digest(CUSTOM_TYPE, "", value))


def encode_event(event: CustomEvent) -> bytes:
    return _encoder.encode(event)


def decode_custom_event(data: bytes | str) -> CustomEvent:
    """An entry's ``event`` field back into a ``CustomEvent`` (``body`` plain JSON values)."""
    wire = _wire_decoder.decode(data)
    if wire.type != CUSTOM_TYPE:
        raise msgspec.ValidationError(f"Expected `{CUSTOM_TYPE}` - at `$.type`")
    return CustomEvent(
        id=wire.id, received_at=wire.received_at, body=msgspec.json.decode(wire.body)
    )
