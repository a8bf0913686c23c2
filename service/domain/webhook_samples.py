"""Webhook envelopes as Voucherify sends them, around the vendor's example data.

Project-settings events come from a project webhook (``source.object`` is
``webhook``, the envelope ``type`` is the event type); the others come from a
distribution (``source.object`` is ``distribution``, the envelope ``type`` is
the user's own event name and ``event.type`` the event type). The data is the
vendor's documented example of the type (``webhook_examples.json``, generated).
"""

from __future__ import annotations

import functools
import json
import secrets
from pathlib import Path
from typing import Any

from . import clock
from .webhook_data import ALIASES, BY_TYPE, PROJECT_SETTINGS_TYPES, SCHEMALESS_TYPES
from .workflow_data import BY_TYPE as WORKFLOW_BY_TYPE
from .workflow_data import TRANSACTION_TYPES

EXAMPLES_PATH = Path(__file__).with_name("webhook_examples.json")
WORKFLOW_EXAMPLES_PATH = Path(__file__).with_name("workflow_examples.json")
PROJECT_ID = "proj_5T4Rpl4T1nuM"
TARGET_URL = "https://fanout.example.com/webhooks/voucherify"

#: Every documented event type, canonical spelling, in the vendor's order.
TYPES: tuple[str, ...] = tuple(BY_TYPE)


@functools.cache
def _examples() -> dict[str, dict[str, Any]]:
    examples: dict[str, dict[str, Any]] = json.loads(EXAMPLES_PATH.read_bytes())["examples"]
    return examples


@functools.cache
def _workflow_examples() -> dict[str, dict[str, Any]]:
    examples: dict[str, dict[str, Any]] = json.loads(WORKFLOW_EXAMPLES_PATH.read_bytes())[
        "examples"
    ]
    return examples


#: The Workflows types the vendor gives an example of (``workflow_envelope``).
WORKFLOW_TYPES: tuple[str, ...] = tuple(_workflow_examples())


#: Every Workflows type (80): card transactions and activities (``workflow_data.BY_TYPE``).
ALL_WORKFLOW_TYPES: tuple[str, ...] = tuple(WORKFLOW_BY_TYPE)


def workflow_envelope(type_: str) -> dict[str, Any]:
    """A Workflows envelope of ``type_`` as it would be sent now: new sendout and event
    ids, dated now.

    The data is the vendor's example of the type where it gives one (``POINTS_EARNED``,
    ``vl.member.created``); else the example of a type with the same data Struct (a
    card transaction's, with its ``transaction.type``; a member activity's); else
    ``{}``, which every Workflows data Struct decodes (all fields optional).
    """
    if type_ not in WORKFLOW_BY_TYPE:
        raise KeyError(f"unknown Workflows type {type_!r}")
    examples = _workflow_examples()
    model = (
        type_
        if type_ in examples
        else next((t for t in examples if WORKFLOW_BY_TYPE[t] is WORKFLOW_BY_TYPE[type_]), None)
    )
    sent: dict[str, Any] = json.loads(json.dumps(examples[model or WORKFLOW_TYPES[-1]]))
    if model is None:
        sent["data"] = {}
    if type_ in TRANSACTION_TYPES and isinstance(sent["data"].get("transaction"), dict):
        sent["data"]["transaction"]["type"] = type_
    created_at = clock.now()
    prefix = sent["event"]["id"].split("_", 1)[0]
    event_id = f"{prefix}_{secrets.token_hex(6)}"
    sent["id"] = f"whs_{secrets.token_hex(9)}"
    sent["type"] = type_
    sent["created_at"] = created_at
    sent["event"] |= {"id": event_id, "entity_id": event_id, "created_at": created_at}
    sent["event"]["type"] = type_
    sent["event"]["group_id"] = f"i-{secrets.token_hex(6)}"
    return sent


def example(type_: str) -> dict[str, Any]:
    """A fresh copy of the vendor's example ``data`` of ``type_`` (either spelling); ``{}``
    for the types the project settings offer with no documented schema (nor example)."""
    canonical = ALIASES.get(type_, type_)
    if canonical in SCHEMALESS_TYPES:
        return {}
    if canonical not in BY_TYPE:
        raise KeyError(f"unknown webhook event type {type_!r}")
    copied: dict[str, Any] = json.loads(json.dumps(_examples()[canonical]))
    return copied


def envelope(
    type_: str,
    data: dict[str, Any] | None = None,
    *,
    distribution: bool | None = None,
    sendout_id: str | None = None,
    event_id: str | None = None,
    group_id: str | None = None,
    source_id: str | None = None,
    event_name: str = "Fan-out sample",
) -> dict[str, Any]:
    """One v2024-01-01 envelope of ``type_`` (spelled as given), as Voucherify posts it.

    ``distribution`` defaults to how the vendor sends the type: a project
    webhook for project-settings events, a distribution for the others.
    ``data`` defaults to the vendor's example of the type.
    """
    canonical = ALIASES.get(type_, type_)
    if distribution is None:
        distribution = canonical not in PROJECT_SETTINGS_TYPES and canonical not in SCHEMALESS_TYPES
    created_at = clock.now()
    if distribution:
        source = {
            "id": source_id or f"distr_{secrets.token_hex(13)}",
            "object": "distribution",
            "target_url": TARGET_URL,
        }
    else:
        source = {
            "id": source_id or f"wh_{secrets.token_hex(12)}",
            "object": "webhook",
            "target_url": TARGET_URL,
        }
    return {
        "id": sendout_id or f"whs_{secrets.token_hex(9)}",
        "project_id": PROJECT_ID,
        "created_at": created_at,
        "type": event_name if distribution else type_,
        "data": example(type_) if data is None else data,
        "source": source,
        "event": {
            "id": event_id or f"evt_{secrets.token_hex(9)}",
            "type": type_,
            "created_at": created_at,
            "entity_id": f"ent_{secrets.token_hex(9)}",
            "group_id": group_id or f"v-{secrets.token_hex(9)}",
            "event_source": {"channel": "API"},
        },
    }
