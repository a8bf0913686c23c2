"""Outbound model: the completion event published in every stream entry's ``event``.

One event class per async action type, derived from the inbound Struct so the
``result`` keeps its type-specific shape. Events are versioned by ``schema``;
fields are only ever added, with defaults, so older consumers keep decoding.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, Union

import msgspec

from .actions import ACTION_TYPES, PUBLISHED_RESULT, AsyncAction, Status
from .results import Result

SCHEMA_VERSION = 1


class CompletionEvent(msgspec.Struct, tag_field="type", kw_only=True):
    """What downstream services receive. ``type`` is the async action type."""

    schema: int = SCHEMA_VERSION
    id: str
    request_id: str | None = None
    status: Status
    operation_status: str | None = None
    progress: int | None = None
    processing_time: int | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    received_at: datetime
    done_count: int | None = None
    failed_count: int | None = None
    result: Result | None = None

    @property
    def type(self) -> str:
        tag = type(self).__struct_config__.tag
        assert isinstance(tag, str)
        return tag


def _event_class(action_cls: type[AsyncAction]) -> type[CompletionEvent]:
    result_type = PUBLISHED_RESULT.get(action_cls) or next(
        f.type for f in msgspec.structs.fields(action_cls) if f.name == "result"
    )
    tag = action_cls.__struct_config__.tag
    cls: type[CompletionEvent] = msgspec.defstruct(  # type: ignore[assignment]
        f"{action_cls.__name__}Event",
        [("result", result_type, None)],
        bases=(CompletionEvent,),
        tag=tag,
        kw_only=True,
        module=__name__,
    )
    return cls


EVENT_TYPES: tuple[type[CompletionEvent], ...] = tuple(_event_class(c) for c in ACTION_TYPES)
EVENT_BY_TYPE: dict[str, type[CompletionEvent]] = {
    str(c.__struct_config__.tag): c for c in EVENT_TYPES
}

if TYPE_CHECKING:
    AnyEvent = CompletionEvent
else:
    AnyEvent = Union[EVENT_TYPES]  # noqa: UP007 - a runtime-built union

_encoder = msgspec.json.Encoder()
_decoder: msgspec.json.Decoder[Any] = msgspec.json.Decoder(AnyEvent)


def from_action(action: AsyncAction, received_at: datetime) -> CompletionEvent:
    """The event for one decoded action, with its counts lifted out of the result."""
    result = action.result
    return EVENT_BY_TYPE[action.type](
        id=action.id,
        request_id=action.request_id,
        status=action.status,
        operation_status=action.operation_status,
        progress=action.progress,
        processing_time=action.processing_time,
        created_at=action.created_at,
        updated_at=action.updated_at,
        received_at=received_at,
        done_count=getattr(result, "done_count", None),
        failed_count=getattr(result, "failed_count", None),
        result=result,
    )


def encode_event(event: CompletionEvent) -> bytes:
    return _encoder.encode(event)


def decode_event(entry: bytes | str | Mapping[Any, Any]) -> CompletionEvent:
    """The typed event of a stream entry: give its ``event`` field or all its fields.

    ``entry`` is the ``event`` field (bytes or str), or the entry's whole field
    mapping as redis-py returns it (keys ``b"event"`` or ``"event"``). Raises
    ``msgspec.ValidationError`` (a ``msgspec.DecodeError``) for anything else.
    """
    if isinstance(entry, Mapping):
        data = entry.get(b"event", entry.get("event"))
        if not isinstance(data, bytes | str):
            raise msgspec.ValidationError("Object missing required field `event`")
    else:
        data = entry
    event: CompletionEvent = _decoder.decode(data)
    return event
