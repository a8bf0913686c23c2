"""The headers of each kind of stream entry in the AsyncAPI document: the entry's plain
string fields, one JSON schema per kind (completion, webhook event, custom body,
dead letter).
"""

from __future__ import annotations

from typing import Any

import msgspec

from ..domain.custom import CUSTOM_TYPE
from ..streams.dead_letters import DeadLetter

# The only dead-letter reasons the service writes; see README "Dead letters".
DEAD_LETTER_REASONS = (
    "malformed_json",
    "invalid_payload",
    "unknown_type",
    "stale",
    "project_mismatch",
    "conflict",
    "poison",
    "trimmed",
)


def string(description: str, **extra: Any) -> dict[str, Any]:
    return {"type": "string", "description": description, **extra}


CLOUDEVENT = string(
    "Only with FANOUT_CLOUDEVENTS=1: a CloudEvents 1.0 structured JSON event whose data "
    "is the event JSON.",
    contentMediaType="application/cloudevents+json",
)
TRACEPARENT = string(
    "Only with FANOUT_TRACING=1: the W3C trace context (00-<trace id>-<span id>-<flags>) "
    "of the delivery's span in the receiver; a consumer's span continues the trace from it.",
    pattern="^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$",
)


def completion(type_: str, statuses: tuple[str, ...]) -> dict[str, Any]:
    """An async action's completed or progress entry."""
    return {
        "type": "object",
        "properties": {
            "type": string("The async action type.", const=type_),
            "status": string("The action's status.", enum=list(statuses)),
            "id": string("The async action id (aa_...)."),
            "request_id": string("The request id (v-..., w-...); empty string when absent."),
            "data": CLOUDEVENT,
            "traceparent": TRACEPARENT,
        },
        "required": ["type", "status", "id", "request_id"],
    }


def webhook(type_schema: dict[str, Any]) -> dict[str, Any]:
    """A webhook event's entry; ``type_schema``: what its ``type`` may be."""
    return {
        "type": "object",
        "properties": {
            "type": string("The event type (the vendor's payload schema spelling).", **type_schema),
            "id": string("The event id (event.id, else the envelope id)."),
            "request_id": string("event.group_id; empty string when absent."),
            "sendout_id": string("The envelope id (one per webhook that sent the event)."),
            "project_id": string(
                "The envelope's project_id; empty string when absent (entries written "
                "before this field existed lack it)."
            ),
            "data": CLOUDEVENT,
            "traceparent": TRACEPARENT,
        },
        "required": ["type", "id", "request_id", "sendout_id"],
    }


# What each dead-letter field holds; the fields themselves are DeadLetter's.
_DEAD_LETTER_FIELDS = {
    "reason": string("Why the body was not published.", enum=list(DEAD_LETTER_REASONS)),
    "detail": string("What was wrong and where (the decoder's message)."),
    "sha256": string("Hex SHA-256 of the body."),
    "received_at": string("When the body arrived (RFC 3339).", format="date-time"),
    "group": string("poison: the consumer group that gave up; trimmed: the group that lost it."),
    "consumer": string("poison, trimmed: the group's last consumer."),
    "stream": string("poison, trimmed: the stream of the entry."),
    "entry_id": string("poison, trimmed: the entry's id."),
    "deliveries": string("poison: how often the entry was delivered (decimal)."),
    "error": string("poison: the consumer's last error."),
}


def dead_letter() -> dict[str, Any]:
    """A dead letter: every field of ``DeadLetter`` but the body (the payload)."""
    fields = [f for f in msgspec.structs.fields(DeadLetter) if f.name != "body"]  # the payload
    return {
        "type": "object",
        "properties": {f.name: _DEAD_LETTER_FIELDS[f.name] for f in fields},
        "required": [f.name for f in fields if f.required],
    }


def custom() -> dict[str, Any]:
    """A custom body's entry."""
    return {
        "type": "object",
        "properties": {
            "type": string("Always custom.", const=CUSTOM_TYPE),
            "id": string("The digest of the body's JSON values (hex)."),
            "request_id": string("Always the empty string.", const=""),
            "data": CLOUDEVENT,
            "traceparent": TRACEPARENT,
        },
        "required": ["type", "id", "request_id"],
    }
