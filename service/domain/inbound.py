"""The one entry of inbound decoding: classify an authentic body once, decode it by kind.

A body is one of:

- an **async action** (its ``type`` one of the 22): ``actions``;
- a webhook **envelope** (an object with ``data``, and ``source`` or ``event``),
  whatever sent it (project settings, a distribution): ``webhooks``;
- a **custom body** (any other JSON: a distribution's Payload Designer
  payload): ``custom``;
- **not publishable**: not JSON, an async action that is not valid, or an
  envelope that is malformed. ``Unpublishable`` says why (the dead letter's
  reason and detail); the body is kept as a dead letter, never refused.

Each step of the classification is the first step of its kind's decoder, so no
body is parsed twice on the common paths: msgspec reads a tagged union's tag
before it builds anything, so an async action is classified and decoded in one
pass (as it cost before); a body whose tag is not one of the 22 is decoded as an
envelope's fields, whose presence decides; anything else is parsed once into
its JSON values, which give a custom body's digest. Only a body whose envelope
fields do not decode is looked at once more (``webhooks.looks_like_envelope``),
to tell a malformed envelope from a custom body.

Every kind has ``type``, ``id``, ``request_id`` and ``project_id``; the receiver
hands the decoded body to ``outbound.publication`` and the result to the
publisher: http -> domain -> streams, no way back.

Replays: a signature has no timestamp, so a captured body verifies forever.
``check_age`` holds a delivery whose own time (``own_time``) lies further back
than ``FANOUT_MAX_AGE``: ``Unpublishable("stale")``, a dead letter the
operator may replay. Only the receiver applies it: a replayed letter and the
reconciler (which reads the API itself) publish whatever their time.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TypeAlias

import msgspec

from ..errors import FanoutError
from . import actions, clock, custom, webhooks
from .actions import AnyAction, AsyncAction
from .custom import CustomBody
from .webhooks import WebhookDelivery

Inbound: TypeAlias = AnyAction | WebhookDelivery | CustomBody

#: Dead-letter reasons of bodies that cannot be published.
MALFORMED_JSON = "malformed_json"
INVALID_PAYLOAD = "invalid_payload"
STALE = "stale"
PROJECT_MISMATCH = "project_mismatch"


class Unpublishable(FanoutError):
    """An authentic body that cannot be published: it is kept as a dead letter.

    ``reason`` is the letter's (``malformed_json``, ``invalid_payload``),
    ``detail`` what was wrong and where (msgspec's message with its path),
    ``type_label`` the metrics label of the body's type (``actions.type_label``).
    """

    def __init__(self, reason: str, detail: str, type_label: str | None = None) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
        self.type_label = type_label


def decode(body: bytes) -> Inbound:
    """The async action, webhook delivery or custom body in one authentic body;
    ``Unpublishable`` for a body that cannot be published (the caller dead-letters it)."""
    try:
        return actions.decode(body)
    except msgspec.ValidationError as exc:
        if not _other_kind(exc):  # its type is one of the 22: an invalid async action
            raise Unpublishable(INVALID_PAYLOAD, str(exc), actions.type_label(body)) from None
        # Not an async action. (Its error is not kept: held, the exception holds this
        # frame, whose locals hold it, and each envelope (body, values, Structs) waited
        # for the cyclic GC: 0.3 us more per envelope in bench.decode.)
    except msgspec.DecodeError as exc:
        raise Unpublishable(MALFORMED_JSON, str(exc)) from None
    try:
        fields = webhooks.read_envelope(body)
        if webhooks.is_envelope(fields):
            return webhooks.delivery(fields)
    except webhooks.MalformedEnvelope as exc:
        if webhooks.looks_like_envelope(body):
            raise Unpublishable(INVALID_PAYLOAD, str(exc), actions.type_label(body)) from None
    except msgspec.DecodeError as exc:
        raise Unpublishable(MALFORMED_JSON, str(exc)) from None
    return custom.decode_custom(body, _values(body))


def own_time(inbound: Inbound) -> tuple[str, datetime] | None:
    """When the body says its event happened, and which field said so: an envelope's
    ``event.created_at``, else its ``created_at``; an async action's ``updated_at``, else
    its ``created_at``. None for a custom body (it has no time of its own) and for a body
    without a time that can be read (no reason to hold what cannot be dated)."""
    if isinstance(inbound, CustomBody):
        return None
    if isinstance(inbound, WebhookDelivery):
        envelope = inbound.envelope
        event = envelope.event
        text: str | None
        if event is not None and event.created_at:
            field, text = "event.created_at", event.created_at
        else:
            field, text = "created_at", envelope.created_at
        if not text:
            return None
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            return None
    elif inbound.updated_at is not None:
        field, moment = "updated_at", inbound.updated_at
    elif inbound.created_at is not None:
        field, moment = "created_at", inbound.created_at
    else:
        return None
    return field, _aware(moment)


def check_age(inbound: Inbound, received_at: datetime, max_age: int) -> None:
    """``Unpublishable(STALE)`` when ``inbound``'s own time lies more than ``max_age``
    seconds before ``received_at`` (a replay, or a resend past the dedup window).

    On every delivery: an action's typed ``updated_at`` is read inline and
    ``own_time`` runs for the others. Measured (``time.process_time``, loaded
    machine): 0.3 us an action, 1.1 us an envelope (its time parsed from text).
    """
    moment = inbound.updated_at if isinstance(inbound, AsyncAction) else None
    if moment is None or moment.tzinfo is None:
        found = own_time(inbound)
        if found is None:
            return
        moment = found[1]
    if (received_at - moment).total_seconds() > max_age:
        field = own_time(inbound)
        detail = (
            f"{field[0] if field else 'time'} {clock.iso(moment)} is older than "
            f"FANOUT_MAX_AGE ({max_age} s): not published by itself; "
            "`fanout dlq replay` publishes it"
        )
        raise Unpublishable(STALE, detail, inbound.type)


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _values(body: bytes) -> object:
    """The body's JSON values (a custom body's): a full parse."""
    try:
        return msgspec.json.decode(body)
    except msgspec.DecodeError as exc:
        raise Unpublishable(MALFORMED_JSON, str(exc)) from None
    except UnicodeDecodeError as exc:
        detail = f"invalid UTF-8 in a string ({exc.reason})"
        raise Unpublishable(MALFORMED_JSON, detail) from None
    except RecursionError:
        raise Unpublishable(MALFORMED_JSON, "JSON nested too deeply to decode") from None


def check_project(inbound: Inbound, project: str | None) -> None:
    """``Unpublishable`` (``project_mismatch``) for an envelope signed with a secret bound
    to ``project`` (``FANOUT_SECRETS`` entry ``proj_...=secret``) that claims another
    project, or none. A plain secret (``project`` None) signs for any project; an async
    action and a custom body carry no project (``project_id`` None) to hold them to."""
    if project is None or not isinstance(inbound, WebhookDelivery):
        return
    if inbound.project_id != project:
        claimed = "no project_id" if inbound.project_id is None else repr(inbound.project_id)
        raise Unpublishable(
            PROJECT_MISMATCH,
            f"signed with the secret bound to {project}, but the envelope claims {claimed}"
            " - at `$.project_id`",
            "other",
        )


def _other_kind(error: msgspec.ValidationError) -> bool:
    """Whether the async action decoder refused the body for not being one: its ``type``
    is missing or not one of the 22, or the body is not an object at all."""
    if actions.failure_reason(error) == "unknown_type":
        return True
    message = str(error)  # msgspec names no path for the top-level value
    return message.startswith("Expected `object`") and " - at `" not in message
