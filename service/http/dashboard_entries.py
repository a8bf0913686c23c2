"""One stream entry as the dashboard shows it: what the page needs of it, never a raw
body (a dead letter's size, not its bytes; failed records cut to ``MAX_FAILURES``).
"""

from __future__ import annotations

from typing import Any

import msgspec

from ..streams import replies
from ..streams.dead_letters import DeadLetter

#: Failed records shown per action.
MAX_FAILURES = 20


def summary(stream_kind: str, entry_id: str, fields: dict[bytes, bytes]) -> dict[str, Any]:
    """What the page needs of one stream entry (never a raw body)."""
    if stream_kind == "dead":
        letter = DeadLetter.from_fields(fields)
        return {
            "kind": "dead",
            "entry_id": entry_id,
            "reason": letter.reason,
            "detail": letter.detail[:300],
            "received_at": letter.received_at,
            "size": len(letter.body),
        }
    event = msgspec.json.decode(fields.get(b"event", b"{}"))
    if stream_kind == "events":
        return {
            "kind": "events",
            "entry_id": entry_id,
            "type": replies.text(fields.get(b"type")),
            "id": replies.text(fields.get(b"id")),
            "request_id": replies.text(fields.get(b"request_id")),
            "webhook_type": event.get("webhook_type"),
            "source": (event.get("source") or {}).get("object"),
            "schema_valid": event.get("schema_valid"),
            "schema_error": (event.get("schema_error") or "")[:300] or None,
            "received_at": event.get("received_at"),
        }
    result = event.get("result") or {}
    records = result.get("failed") or result.get("errors") or []
    if isinstance(records, dict):
        records = [records]
    return {
        "kind": stream_kind,
        "entry_id": entry_id,
        "type": replies.text(fields.get(b"type")),
        "status": replies.text(fields.get(b"status")),
        "id": replies.text(fields.get(b"id")),
        "request_id": replies.text(fields.get(b"request_id")),
        "progress": event.get("progress"),
        "done_count": event.get("done_count"),
        "failed_count": event.get("failed_count"),
        "received_at": event.get("received_at"),
        # In-flight age runs from when the action was created (else first seen).
        "created_at": event.get("created_at"),
        "failures": [
            {
                "row": r.get("row"),
                "code": r.get("code"),
                "source_id": r.get("source_id"),
                "reason": r.get("reason") or r.get("message") or r.get("details"),
            }
            for r in records[:MAX_FAILURES]
            if isinstance(r, dict)
        ],
    }


def order(entry_id: str) -> tuple[int, int]:
    millis, _, seq = entry_id.partition("-")
    return int(millis), int(seq or 0)
