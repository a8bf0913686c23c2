"""The webhook envelope as Voucherify sends it, read but not yet published.

What Voucherify POSTs to a registered webhook URL is an envelope
``{id, project_id, created_at, type, data, source, event}``. This module holds
its Structs, reads its fields (``read_envelope``: ``data`` left as the bytes
received), tells an envelope from other JSON (``is_envelope``,
``looks_like_envelope``) and finds its event type. ``webhooks.delivery`` then
makes the delivery published for it.

Event type, validity and drift
------------------------------
The event type is the envelope ``type`` for project-settings webhooks and
``event.type`` when ``source.object == "distribution"``; the vendor's other
spellings are mapped to the payload schemas' enum spelling (``ALIASES``).
An envelope without ``id``, ``type`` or an object ``data``, or whose event type
has characters outside ``[A-Za-z0-9._-]`` or is over 200 characters, raises
``MalformedEnvelope`` (a ``msgspec.ValidationError``: a dead letter).
Anything else is accepted: data that does not decode into its Struct, or an
event type with no Struct, gives ``schema_valid = False`` and the decoder's
message (drift), never a refusal. The Struct of a Workflows envelope
(``source.object == "workflow"``) comes from ``workflow_data`` (Loyalty v2
transactions and activities), of any other from ``webhook_data``; the types the
project settings offer without a data schema (``event_types.SCHEMALESS``) are
known and valid, their data untyped.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec

from ..errors import FanoutError
from .ids import IdText, refuse_unprintable
from .webhook_data import ALIASES, BY_TYPE

MAX_TYPE_LENGTH = 200
#: The type of custom bodies (``custom.CUSTOM_TYPE``): no envelope's event type may take
#: their stream. (Said here, not imported: ``custom`` builds on this module.)
RESERVED_TYPE = "custom"
_TYPE_PATTERN = re.compile(rf"[A-Za-z0-9._-]{{1,{MAX_TYPE_LENGTH}}}")
_ABSENT = msgspec.Raw(b"")
_DOCUMENTED = frozenset(BY_TYPE) | frozenset(ALIASES)


class MalformedEnvelope(FanoutError, msgspec.ValidationError):
    """An authenticated envelope that cannot be published: dead-lettered ``invalid_payload``."""


# --- inbound ---------------------------------------------------------------------


class Source(msgspec.Struct, kw_only=True):
    """``source``: the webhook (project settings) or distribution that sent the envelope."""

    id: str | None = None
    object: str | None = None
    target_url: str | None = None


class EventInfo(msgspec.Struct, kw_only=True):
    """``event``: the event behind the sendout; ``group_id`` is the request that caused it.

    The ids become parts of Redis keys: at most 256 printable characters, as
    the async action's (``ids.IdText``); an empty one counts as absent.
    """

    id: IdText | None = None
    type: str | None = None
    created_at: str | None = None
    entity_id: str | None = None
    group_id: IdText | None = None
    event_source: dict[str, Any] | None = None


class Envelope(msgspec.Struct, kw_only=True):
    """The v2024-01-01 webhook envelope as sent; ``data`` stays the bytes received."""

    id: IdText | None = None
    project_id: str | None = None
    created_at: str | None = None
    type: str | None = None
    data: msgspec.Raw = _ABSENT
    source: Source | None = None
    event: EventInfo | None = None

    @property
    def is_distribution(self) -> bool:
        return self.source is not None and self.source.object == "distribution"

    @property
    def is_workflow(self) -> bool:
        """Sent by a Workflows "Webhook callout" step (Loyalty v2 transactions, activities)."""
        return self.source is not None and self.source.object == "workflow"


class _Shape(msgspec.Struct):
    """The keys that make a body an envelope, their values skipped."""

    data: msgspec.Raw = _ABSENT
    source: msgspec.Raw = _ABSENT
    event: msgspec.Raw = _ABSENT


_envelope_decoder = msgspec.json.Decoder(Envelope)
_shape_decoder = msgspec.json.Decoder(_Shape)


def read_envelope(body: bytes) -> Envelope:
    """The envelope's fields, ``data`` left as its bytes; nothing checked but their JSON types
    and the ids. ``MalformedEnvelope`` for a field of the wrong type, ``msgspec.DecodeError``
    for bytes that are not JSON (or cannot be decoded safely)."""
    try:
        envelope = _envelope_decoder.decode(body)
    except msgspec.ValidationError as exc:
        raise MalformedEnvelope(str(exc)) from None
    except UnicodeDecodeError as exc:
        raise msgspec.DecodeError(f"invalid UTF-8 in a string ({exc.reason})") from None
    except RecursionError:
        raise msgspec.DecodeError("JSON nested too deeply to decode") from None
    _refuse_unprintable_ids(envelope)
    return envelope


def _refuse_unprintable_ids(envelope: Envelope) -> None:
    """The ids' characters, which ``IdText`` leaves to code (see ``ids``)."""
    try:
        refuse_unprintable(envelope.id, "$.id")
        if envelope.event is not None:
            refuse_unprintable(envelope.event.id, "$.event.id")
            refuse_unprintable(envelope.event.group_id, "$.event.group_id")
    except msgspec.ValidationError as exc:
        raise MalformedEnvelope(str(exc)) from None


def is_envelope(envelope: Envelope) -> bool:
    """Whether decoded fields are an envelope's: ``data``, and ``source`` or ``event``."""
    return bool(len(envelope.data)) and (envelope.source is not None or envelope.event is not None)


def looks_like_envelope(body: bytes) -> bool:
    """The same rule on a body whose fields did not decode (``MalformedEnvelope``)."""
    try:
        shape = _shape_decoder.decode(body)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        return False
    return bool(len(shape.data)) and bool(len(shape.source) or len(shape.event))


def event_type(envelope: Envelope) -> str:
    """The event type by the contract's rule, in its canonical spelling."""
    if envelope.is_distribution:
        value = envelope.event.type if envelope.event else None
        path = "$.event.type"
    else:
        value = envelope.type
        path = "$.type"
    if not value:
        where = " - at `$.event`" if envelope.is_distribution else ""
        raise MalformedEnvelope(f"Object missing required field `type`{where}")
    if not is_event_type(value):
        shown = value if len(value) <= 60 else value[:57] + "..."
        raise MalformedEnvelope(
            f"Invalid event type {shown!r}: expected 1 to {MAX_TYPE_LENGTH} characters "
            f"of [A-Za-z0-9._-] - at `{path}`"
        )
    if value == RESERVED_TYPE:
        raise MalformedEnvelope(
            f"Invalid event type {value!r}: the stream of custom bodies - at `{path}`"
        )
    return canonical_type(value)


def canonical_type(name: str) -> str:
    """An event type in the payload schemas' enum spelling (others mapped, the rest as is)."""
    return ALIASES.get(name, name)


def is_event_type(name: str) -> bool:
    """Whether ``name`` may be an event type: 1 to 200 of ``[A-Za-z0-9._-]``."""
    # The documented names (nearly every delivery) are known good: no regex for them.
    return name in _DOCUMENTED or _TYPE_PATTERN.fullmatch(name) is not None
