"""The AsyncAPI 3.0 document of the streams, generated from the msgspec types.

One channel per stream: each async action type's ``completed`` and ``progress``
streams, then the dead letters. A stream entry is one message: its plain string
fields are the message's headers, and the JSON in its ``event`` field is the
payload, whose schema msgspec generates from the event struct of the type.

Redis keys hold a ``{...}`` hash tag, and AsyncAPI reads braces in a channel's
``address`` as parameters. So every channel has ``address: null`` (the spec's
"unknown or dynamic") and its literal key in the ``x-redis-key`` extension; the
document's description says so, for readers and code generators alike.
"""

from __future__ import annotations

import functools
from importlib.metadata import version
from typing import Any

import msgspec

from ..domain import actions, completion
from ..streams.dead_letters import DeadLetter
from ..streams.keys import Keys

ASYNCAPI_VERSION = "3.0.0"
_REF = "#/components/schemas/{name}"

_STATUSES: dict[str, tuple[str, ...]] = {
    "completed": ("DONE", "FAILED"),
    "progress": ("ENQUEUED", "IN_PROGRESS"),
}
_KIND_TEXT = {
    "completed": (
        "One entry per DONE or FAILED {type} async action, exactly once per (id, request_id)."
    ),
    "progress": (
        "ENQUEUED and IN_PROGRESS updates of {type} async actions, each (id, request_id, "
        "status, progress) once; none after that action's completion."
    ),
}
# The only dead-letter reasons the service writes; see README "Dead letters".
DEAD_LETTER_REASONS = ("malformed_json", "invalid_payload", "unknown_type", "conflict", "poison")

_DESCRIPTION = """\
Redis Streams written by voucherify-fanout: one stream per async action type and \
kind (completed, progress), and one of dead letters. Read them with XREAD or a \
consumer group (XREADGROUP).

Each channel is one stream. Its key contains a `{...}` Redis Cluster hash tag, and \
AsyncAPI reads braces in a channel address as a parameter, so every channel has \
`address: null` and gives its literal Redis key in the `x-redis-key` extension \
(`x-redis-key-template` shows it with the configured prefix as `<prefix>`).

A stream entry is one message: the entry's plain string fields are the message \
headers, and the message payload is the JSON held in the field named by the \
message's `x-redis-payload-field` (`event` for events). With FANOUT_CLOUDEVENTS=1 \
every event entry also has a `data` field holding a CloudEvents 1.0 structured \
JSON event whose `data` is the same event JSON (what Dapr's Redis Streams pub/sub \
reads).
"""


def document(prefix: str = "voucherify") -> dict[str, Any]:
    """The AsyncAPI document for streams under ``prefix`` (``FANOUT_STREAM_PREFIX``)."""
    keys = Keys(prefix)
    template = Keys("<prefix>")
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}

    def add(
        name: str, key: str, key_template: str, channel: dict[str, Any], message: dict[str, Any]
    ) -> None:
        messages[name] = message
        channels[name] = {
            "address": None,
            "x-redis-key": key,
            "x-redis-key-template": key_template,
            **channel,
            "messages": {name: {"$ref": f"#/components/messages/{name}"}},
        }
        operations[f"send.{name}"] = {
            "action": "send",
            "channel": {"$ref": f"#/channels/{name}"},
            "summary": f"Append an entry to {key}",
            "messages": [{"$ref": f"#/channels/{name}/messages/{name}"}],
        }

    refs, schemas = msgspec.json.schema_components(completion.EVENT_TYPES, ref_template=_REF)
    for type_, ref in zip(actions.TYPES, refs, strict=True):
        for kind in ("completed", "progress"):
            key = getattr(keys, kind)(type_)
            name = f"{type_}.{kind}"
            text = _KIND_TEXT[kind].format(type=type_)
            add(
                name,
                key,
                getattr(template, kind)(type_),
                {
                    "title": f"{type_} {kind}",
                    "description": text,
                    "tags": [{"name": "async_action"}, {"name": kind}],
                },
                {
                    "name": name,
                    "title": f"{type_} {'completion' if kind == 'completed' else 'progress'}",
                    "summary": text,
                    "contentType": "application/json",
                    "x-redis-payload-field": "event",
                    "headers": _event_headers(type_, _STATUSES[kind]),
                    "payload": ref,
                },
            )

    add(
        "dead.letters",
        keys.dead_letters(),
        template.dead_letters(),
        {
            "title": "dead letters",
            "description": (
                "Authenticated bodies that failed to decode, conflicts (same key, different "
                "content) and entries a consumer group gave up on (poison). The same body is "
                "dead-lettered once however often it is resent."
            ),
            "tags": [{"name": "dead_letters"}],
        },
        {
            "name": "dead.letters",
            "title": "dead letter",
            "summary": "A body the service could not publish, kept with the reason.",
            "contentType": "application/octet-stream",
            "x-redis-payload-field": "body",
            "headers": _dead_letter_headers(),
            "payload": {
                "type": "string",
                "description": "The body exactly as received (poison: the entry's event JSON).",
            },
        },
    )

    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": "voucherify-fanout streams",
            "version": version("voucherify-fanout"),
            "description": _DESCRIPTION,
            "license": {"name": "MIT"},
        },
        "defaultContentType": "application/json",
        "servers": {
            "redis": {
                "host": "{host}",
                "protocol": "redis",
                "description": "The Redis (or Valkey) server of FANOUT_REDIS_URL.",
                "variables": {
                    "host": {"default": "localhost:6379", "description": "host:port"},
                },
            }
        },
        "channels": channels,
        "operations": operations,
        "components": {"schemas": schemas, "messages": messages},
    }


def render(doc: dict[str, Any]) -> bytes:
    """The document as indented JSON with a trailing newline, as checked in."""
    return msgspec.json.format(msgspec.json.encode(doc), indent=2) + b"\n"


@functools.cache
def rendered(prefix: str) -> bytes:
    """``render(document(prefix))``, made once per process (``GET /asyncapi.json``)."""
    return render(document(prefix))


def _string(description: str, **extra: Any) -> dict[str, Any]:
    return {"type": "string", "description": description, **extra}


def _event_headers(type_: str, statuses: tuple[str, ...]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "type": _string("The async action type.", const=type_),
            "status": _string("The action's status.", enum=list(statuses)),
            "id": _string("The async action id (aa_...)."),
            "request_id": _string("The request id (v-..., w-...); empty string when absent."),
            "data": _string(
                "Only with FANOUT_CLOUDEVENTS=1: a CloudEvents 1.0 structured JSON event "
                "whose data is the event JSON.",
                contentMediaType="application/cloudevents+json",
            ),
        },
        "required": ["type", "status", "id", "request_id"],
    }


# What each dead-letter field holds; the fields themselves are DeadLetter's.
_DEAD_LETTER_FIELDS = {
    "reason": _string("Why the body was not published.", enum=list(DEAD_LETTER_REASONS)),
    "detail": _string("What was wrong and where (the decoder's message)."),
    "sha256": _string("Hex SHA-256 of the body."),
    "received_at": _string("When the body arrived (RFC 3339).", format="date-time"),
    "group": _string("poison: the consumer group that gave up."),
    "consumer": _string("poison: the group's last consumer."),
    "stream": _string("poison: the stream of the entry."),
    "entry_id": _string("poison: the entry's id."),
    "deliveries": _string("poison: how often the entry was delivered (decimal)."),
    "error": _string("poison: the consumer's last error."),
}


def _dead_letter_headers() -> dict[str, Any]:
    fields = [f for f in msgspec.structs.fields(DeadLetter) if f.name != "body"]  # the payload
    return {
        "type": "object",
        "properties": {f.name: _DEAD_LETTER_FIELDS[f.name] for f in fields},
        "required": [f.name for f in fields if f.required],
    }
