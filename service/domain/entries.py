"""Decode a stream entry of either kind: a completion event or a webhook event.

``decode_event`` is the downstream surface (``from service import decode_event``):
it takes an entry's ``event`` field, or the entry's whole field mapping, and
returns the typed event of its type. Completion events are a msgspec tagged
union of the 22 async action types and decode first; any other ``type`` is
refused at the tag, and the entry is then decoded as a webhook event (whose
type is open: the service publishes event types it does not know, as drift).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeAlias

import msgspec

from . import completion, custom, webhooks
from .actions import failure_reason
from .completion import CompletionEvent
from .custom import CustomEvent
from .webhooks import WebhookEvent

StreamEvent: TypeAlias = CompletionEvent | WebhookEvent | CustomEvent


def event_field(entry: bytes | str | Mapping[Any, Any]) -> bytes | str:
    """The ``event`` field of an entry given as that field or as its whole field mapping."""
    if not isinstance(entry, Mapping):
        return entry
    data = entry.get(b"event", entry.get("event"))
    if not isinstance(data, bytes | str):
        raise msgspec.ValidationError("Object missing required field `event`")
    return data


def decode_event(entry: bytes | str | Mapping[Any, Any]) -> StreamEvent:
    """The typed event of a stream entry: give its ``event`` field or all its fields.

    ``entry`` is the ``event`` field (bytes or str), or the entry's whole field
    mapping as redis-py returns it (keys ``b"event"`` or ``"event"``). The result
    is a ``CompletionEvent`` (one class per async action type), a
    ``WebhookEvent`` (its ``data`` the typed Struct of its event type) or a
    ``CustomEvent`` (a custom body, ``body`` its JSON values). Raises
    ``msgspec.ValidationError`` (a ``msgspec.DecodeError``) for anything else.
    """
    data = event_field(entry)
    try:
        return completion.decode_event(data)
    except msgspec.ValidationError as exc:
        # Without its traceback, which would hold this frame and so the exception:
        # a cycle that kept each webhook event alive until the cyclic GC ran.
        not_a_completion = exc.with_traceback(None)
    try:
        return webhooks.decode_webhook_event(data)
    except msgspec.ValidationError as exc:
        not_a_webhook_event = exc.with_traceback(None)
    try:
        return custom.decode_custom_event(data)
    except msgspec.ValidationError:
        if failure_reason(not_a_completion) == "unknown_type":
            # not an async action type: the webhook event's own error says more
            raise not_a_webhook_event from None
        raise not_a_completion from None
