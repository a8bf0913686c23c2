"""The body Voucherify would post for a sample of any type: one source for
``fanout send --sample`` and ``service.testing.sample``.

Every kind the receiver takes has samples, built from the vendor's examples:

- the 22 async action types (``samples.sample``: what the sender really sends);
- the 72 documented webhook event types, in either spelling, and the 17 the
  project settings offer with no schema (``webhook_samples.envelope``; the data
  is the vendor's example, ``{}`` for a schema-less type);
- the 80 Workflows types (``webhook_samples.workflow_envelope``);
- ``custom``: a custom body (a distribution's Payload Designer payload).

Overrides replace what they name and are refused (``TypeError``) where the
kind has no such thing, so a test never believes it set what it did not.
"""

from __future__ import annotations

import secrets
from typing import Any

import msgspec

from . import actions, samples, webhook_samples
from .custom import CUSTOM_TYPE
from .webhook_data import ALIASES, SCHEMALESS_TYPES

#: Every type a sample is made of, canonical spellings (``--list-samples``): the 22 async
#: action types, the 72 documented and 17 schema-less event types, the 80 Workflows types
#: and ``custom``.
TYPES: tuple[str, ...] = (
    *actions.TYPES,
    *webhook_samples.TYPES,
    *SCHEMALESS_TYPES,
    *webhook_samples.ALL_WORKFLOW_TYPES,
    CUSTOM_TYPE,
)

#: What ``body`` takes: ``TYPES`` and the vendor's other spellings of event types.
ACCEPTED: tuple[str, ...] = (*TYPES, *ALIASES)

_ACTION_ONLY = ("status", "result", "progress")
_WEBHOOK_ONLY = ("data", "sendout_id", "project_id", "distribution")


def custom_body() -> dict[str, Any]:
    """A custom body as a Payload Designer might shape one (neither an envelope nor an
    async action): fresh values each time, so each is a new event."""
    return {
        "event": "voucher_published",
        "customer": {"id": f"cust_{secrets.token_hex(8)}", "email": "jane@example.com"},
        "voucher": {"code": f"SUMMER-{secrets.token_hex(3).upper()}", "discount": 15},
    }


def body(
    type_: str,
    *,
    id_: str | None = None,
    request_id: str | None = None,
    status: str | None = None,
    result: Any = None,
    progress: int | None = None,
    data: Any = None,
    sendout_id: str | None = None,
    project_id: str | None = None,
    distribution: bool | None = None,
    custom: Any = None,
) -> bytes:
    """The JSON body of a sample of ``type_``, as Voucherify posts it.

    ``id_`` and ``request_id`` are an async action's ``id`` and ``request_id``, or
    a webhook event's ``event.id`` and ``event.group_id``. ``status`` (default
    ``DONE``), ``result`` and ``progress`` are an async action's; ``data``,
    ``sendout_id``, ``project_id`` and ``distribution`` a webhook event's;
    ``custom`` is a custom body's JSON value. ``result`` and ``data`` may be
    msgspec Structs or plain values. ``KeyError`` for an unknown type.
    """
    given = {
        "status": status,
        "result": result,
        "progress": progress,
        "data": data,
        "sendout_id": sendout_id,
        "project_id": project_id,
        "distribution": distribution,
    }
    if type_ == CUSTOM_TYPE:
        _refuse(type_, given | {"id_": id_, "request_id": request_id}, "custom")
        return msgspec.json.encode(custom_body() if custom is None else custom)
    if custom is not None:
        raise TypeError(f"custom= is for the type 'custom', not {type_!r}")
    if type_ in actions.BY_TYPE:
        _refuse(type_, {k: given[k] for k in _WEBHOOK_ONLY}, "an async action")
        action = samples.sample(
            type_, status=status or "DONE", id_=id_, request_id=request_id, progress=progress
        )
        if result is not None:
            action["result"] = msgspec.to_builtins(result)
        return msgspec.json.encode(action)
    _refuse(type_, {k: given[k] for k in _ACTION_ONLY}, "a webhook event")
    canonical = ALIASES.get(type_, type_)
    if canonical in webhook_samples.ALL_WORKFLOW_TYPES:
        sent = webhook_samples.workflow_envelope(canonical)
    elif canonical in webhook_samples.TYPES or canonical in SCHEMALESS_TYPES:
        sent = webhook_samples.envelope(type_, distribution=distribution)
    else:
        raise KeyError(
            f"no sample of {type_!r}; the types are those of `fanout send --list-samples`"
        )
    if distribution is not None and canonical in webhook_samples.ALL_WORKFLOW_TYPES:
        raise TypeError("distribution= does not apply to a Workflows type (a workflow sends it)")
    if data is not None:
        sent["data"] = msgspec.to_builtins(data)
    if id_ is not None:
        sent["event"]["id"] = id_
    if request_id is not None:
        sent["event"]["group_id"] = request_id
    if sendout_id is not None:
        sent["id"] = sendout_id
    if project_id is not None:
        sent["project_id"] = project_id
    return msgspec.json.encode(sent)


def _refuse(type_: str, given: dict[str, Any], kind: str) -> None:
    wrong = [name for name, value in given.items() if value is not None]
    if wrong:
        names = ", ".join(f"{name.rstrip('_')}=" for name in wrong)
        raise TypeError(f"{names} does not apply to {type_!r}, {kind}")
