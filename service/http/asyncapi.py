"""The AsyncAPI 3.0 document of the streams, generated from the msgspec types.

One channel per stream: each async action type's ``completed`` and ``progress``
streams, each known webhook event type's ``events`` stream (documented,
schema-less and Workflows types: ``event_types.KNOWN``), one channel for the
streams of every other webhook event type (types the service does not know), the
stream of custom bodies, then the dead letters. A stream entry is one message:
its plain string fields are the message's headers, and the JSON in its ``event``
field is the payload, whose schema msgspec generates from the event Struct of
the type (for webhook events: ``WebhookEvent`` with that type's data).

Redis keys hold a ``{...}`` hash tag, and AsyncAPI reads braces in a channel's
``address`` as parameters. So every channel has ``address: null`` (the spec's
"unknown or dynamic") and its literal key in the ``x-redis-key`` extension; the
document's description says so, for readers and code generators alike.

The headers of each kind of entry are in ``asyncapi_headers.py``, the server
object (the Redis in use, its password left out) in ``asyncapi_server.py``.
"""

from __future__ import annotations

import functools
import re
from importlib.metadata import version
from typing import Any, Literal

import msgspec

from ..domain import actions, completion, event_types, webhooks
from ..domain.custom import CUSTOM_TYPE, CustomEvent
from ..domain.webhook_data import BY_TYPE, PROJECT_SETTINGS_TYPES
from ..domain.workflow_data import BY_TYPE as WORKFLOW_BY_TYPE
from ..streams.keys import Keys
from . import asyncapi_headers as headers
from .asyncapi_server import ANY_SERVER, PASSWORD, server_of

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

_DESCRIPTION = """\
Redis Streams written by voucherify-fanout: one stream per async action type and \
kind (completed, progress), one per webhook event type, and one of dead letters. \
Read them with XREAD or a consumer group (XREADGROUP).

Each channel is one stream. Its key contains a `{...}` Redis Cluster hash tag, and \
AsyncAPI reads braces in a channel address as a parameter, so every channel has \
`address: null` and gives its literal Redis key in the `x-redis-key` extension \
(`x-redis-key-template` shows it with the configured prefix as `<prefix>`). The \
channel of the other webhook event types stands for many streams: it has an \
`x-redis-key-pattern` (SCAN MATCH syntax) instead of one key.

A stream entry is one message: the entry's plain string fields are the message \
headers, and the message payload is the JSON held in the field named by the \
message's `x-redis-payload-field` (`event` for events). With FANOUT_CLOUDEVENTS=1 \
every event entry also has a `data` field holding a CloudEvents 1.0 structured \
JSON event whose `data` is the same event JSON (what Dapr's Redis Streams pub/sub \
reads).
"""


class _Document:
    """Channels, operations and messages, added one stream at a time."""

    def __init__(self, prefix: str) -> None:
        self.keys = Keys(prefix)
        self.template = Keys("<prefix>")
        self.channels: dict[str, Any] = {}
        self.operations: dict[str, Any] = {}
        self.messages: dict[str, Any] = {}

    def add(self, name: str, keys: dict[str, str], channel: Any, message: Any) -> None:
        """One stream; ``keys`` maps ``key``, ``key-template``, ``key-pattern`` to x-redis-*."""
        self.messages[name] = {"name": name, **message}
        self.channels[name] = {
            "address": None,
            **{f"x-redis-{k}": v for k, v in keys.items()},
            **channel,
            "messages": {name: {"$ref": f"#/components/messages/{name}"}},
        }
        self.operations[f"send.{name}"] = {
            "action": "send",
            "channel": {"$ref": f"#/channels/{name}"},
            "messages": [{"$ref": f"#/channels/{name}/messages/{name}"}],
        }


def document(prefix: str = "voucherify", server: dict[str, Any] | None = None) -> dict[str, Any]:
    """The AsyncAPI document for streams under ``prefix`` (``FANOUT_STREAM_PREFIX``).

    ``server`` is the one in use (``server_of``: what ``GET /asyncapi.json``
    names); without it the document names none, only how to find it (the
    checked-in ``docs/asyncapi.json``).
    """
    doc = _Document(prefix)
    webhook_events = _webhook_event_types()
    refs, schemas = msgspec.json.schema_components(
        [*completion.EVENT_TYPES, *webhook_events.values(), OtherWebhookEvent, CustomEvent],
        ref_template=_REF,
    )
    action_refs = refs[: len(actions.TYPES)]
    webhook_refs = refs[len(actions.TYPES) : -2]
    _action_channels(doc, action_refs)
    _webhook_channels(doc, dict(zip(webhook_events, webhook_refs, strict=True)), refs[-2])
    _custom_channel(doc, refs[-1])
    _dead_letter_channel(doc)
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": "voucherify-fanout streams",
            "version": version("voucherify-fanout"),
            "description": _DESCRIPTION,
            "license": {"name": "MIT"},
        },
        "defaultContentType": "application/json",
        "servers": {"redis": server or ANY_SERVER},
        "channels": doc.channels,
        "operations": doc.operations,
        "components": {
            "schemas": schemas,
            "messages": doc.messages,
            **(
                {"securitySchemes": {"redisPassword": PASSWORD}}
                if "security" in (server or {})
                else {}
            ),
        },
    }


def _action_channels(doc: _Document, refs: tuple[dict[str, Any], ...]) -> None:
    for type_, ref in zip(actions.TYPES, refs, strict=True):
        for kind in ("completed", "progress"):
            text = _KIND_TEXT[kind].format(type=type_)
            doc.add(
                f"{type_}.{kind}",
                {
                    "key": getattr(doc.keys, kind)(type_),
                    "key-template": getattr(doc.template, kind)(type_),
                },
                {
                    "title": f"{type_} {kind}",
                    "description": text,
                    "tags": [{"name": "async_action"}, {"name": kind}],
                },
                {
                    "title": f"{type_} {'completion' if kind == 'completed' else 'progress'}",
                    "summary": text,
                    "contentType": "application/json",
                    "x-redis-payload-field": "event",
                    "headers": headers.completion(type_, _STATUSES[kind]),
                    "payload": ref,
                },
            )


def _webhook_channels(
    doc: _Document, refs: dict[str, dict[str, Any]], other: dict[str, Any]
) -> None:
    for type_, ref in refs.items():
        text = f"{type_} webhook events ({_SENDERS[_sender(type_)]}), once per (event id, " + (
            "request_id). Its data has no documented schema: published as received, "
            "schema_valid true."
            if type_ in event_types.SCHEMALESS
            else "request_id). The payload's data has the documented shape unless "
            "schema_valid is false (drift: data as received, the decoder's message in "
            "schema_error)."
        )
        doc.add(
            f"{type_}.events",
            {"key": doc.keys.events(type_), "key-template": doc.template.events(type_)},
            {"title": f"{type_} events", "description": text, "tags": [{"name": "webhook"}]},
            {
                "title": f"{type_} webhook event",
                "summary": text,
                "contentType": "application/json",
                "x-redis-payload-field": "event",
                "headers": headers.webhook({"const": type_}),
                "payload": ref,
            },
        )
    text = (
        "Webhook events of any other type: a type the service does not know (published "
        "with schema_valid false). One stream per event type; x-redis-key-pattern matches "
        "them all (with the streams above, and the custom bodies' stream)."
    )
    doc.add(
        "other_webhook_types.events",
        {"key-pattern": doc.keys.events("*"), "key-template": doc.template.events("<event type>")},
        {"title": "other webhook events", "description": text, "tags": [{"name": "webhook"}]},
        {
            "title": "webhook event of another type",
            "summary": text,
            "contentType": "application/json",
            "x-redis-payload-field": "event",
            "headers": headers.webhook({"pattern": "^[A-Za-z0-9._-]{1,200}$"}),
            "payload": other,
        },
    )


def _custom_channel(doc: _Document, ref: dict[str, Any]) -> None:
    text = (
        "Custom bodies: signed JSON that is neither a webhook envelope nor an async action "
        "(a distribution's Payload Designer payload), once per content (a digest of its "
        "JSON values, which is also the id). The payload's body is the JSON as received."
    )
    doc.add(
        f"{CUSTOM_TYPE}.events",
        {"key": doc.keys.custom(), "key-template": doc.template.custom()},
        {"title": "custom bodies", "description": text, "tags": [{"name": "custom"}]},
        {
            "title": "custom body",
            "summary": text,
            "contentType": "application/json",
            "x-redis-payload-field": "event",
            "headers": headers.custom(),
            "payload": ref,
        },
    )


def _dead_letter_channel(doc: _Document) -> None:
    doc.add(
        "dead.letters",
        {"key": doc.keys.dead_letters(), "key-template": doc.template.dead_letters()},
        {
            "title": "dead letters",
            "description": (
                "Authenticated bodies that failed to decode, conflicts (same key, different "
                "content), entries a consumer group gave up on (poison) and pending entries "
                "deleted from their stream before the group acknowledged them (trimmed). The "
                "same body is dead-lettered once however often it is resent."
            ),
            "tags": [{"name": "dead_letters"}],
        },
        {
            "title": "dead letter",
            "summary": "A body the service could not publish, kept with the reason.",
            "contentType": "application/octet-stream",
            "x-redis-payload-field": "body",
            "headers": headers.dead_letter(),
            "payload": {
                "type": "string",
                "description": (
                    "The body exactly as received (poison: the entry's event JSON; trimmed: "
                    "empty, the entry is gone)."
                ),
            },
        },
    )


def render(doc: dict[str, Any]) -> bytes:
    """The document as indented JSON with a trailing newline, as checked in."""
    return msgspec.json.format(msgspec.json.encode(doc), indent=2) + b"\n"


@functools.cache
def served(
    prefix: str, redis_url: str | None = None, cluster: bool = False, password_file: str = ""
) -> bytes:
    """The document as compact JSON (half the size), made once per process: GET /asyncapi.json."""
    server = None if redis_url is None else server_of(redis_url, cluster, password_file or None)
    return msgspec.json.encode(document(prefix, server))


class OtherWebhookEvent(webhooks.WebhookEvent, kw_only=True):
    """A webhook event of a type with no documented schema: ``data`` as received."""

    data: dict[str, Any]


_SENDERS = {
    "project": "sent by a project settings webhook",
    "distribution": "sent by a distribution webhook",
    "workflow": 'sent by a Workflows "Webhook callout" step, source.object workflow',
}


def _sender(type_: str) -> str:
    if type_ in WORKFLOW_BY_TYPE:
        return "workflow"
    if type_ in PROJECT_SETTINGS_TYPES or type_ in event_types.SCHEMALESS:
        return "project"
    return "distribution"


@functools.cache
def _webhook_event_types() -> dict[str, type[webhooks.WebhookEvent]]:
    """One WebhookEvent Struct per known event type, its ``data`` of that type's Struct
    (a JSON object for the schema-less types)."""
    literal: Any = Literal  # a Literal of a runtime value
    data_types: dict[str, Any] = {**BY_TYPE, **WORKFLOW_BY_TYPE}
    return {
        type_: msgspec.defstruct(  # type: ignore[misc]
            "".join(part.capitalize() for part in re.split(r"[._-]", type_)) + "WebhookEvent",
            [("type", literal[type_]), ("data", data_types.get(type_, dict[str, Any]))],
            bases=(webhooks.WebhookEvent,),
            kw_only=True,
            module=__name__,
        )
        for type_ in event_types.KNOWN
    }
