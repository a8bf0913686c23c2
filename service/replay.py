"""Replay a dead letter through the same decode and publish path as the webhook.

For instance after an upgrade that knows a new type. A letter that now
publishes (accepted, or already there) is removed; one that fails again stays,
re-filed under the reason it fails with now.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgspec

from . import events
from .publish import Conflict, Publisher, timestamp


class ReplayOutcome(msgspec.Struct, omit_defaults=True):
    entry_id: str
    replayed: bool
    #: accepted, duplicate, stale, or why it still fails (conflict, unknown_type, ...).
    outcome: str
    detail: str = ""
    #: Where the letter went: its new stream entry, or its re-filed dead letter.
    new_entry_id: str | None = None


async def replay(publisher: Publisher, entry_id: str) -> ReplayOutcome:
    redis: Any = publisher.redis  # redis-py's stream reply annotations are loose unions
    keys = publisher.keys
    found = await redis.xrange(keys.dead_letters(), entry_id, entry_id)
    if not found:
        return ReplayOutcome(entry_id, False, "missing", "no such dead letter")
    fields = found[0][1]
    body: bytes = fields[b"body"]
    sha = fields.get(b"sha256", b"").decode()
    now = datetime.now(UTC)
    try:
        action = events.decode(body)
    except msgspec.ValidationError as exc:
        return await _refile(publisher, entry_id, events.failure_reason(exc), str(exc), body, sha)
    except msgspec.DecodeError as exc:
        return await _refile(publisher, entry_id, "malformed_json", str(exc), body, sha)
    outcome = await publisher.publish(action, now)
    if isinstance(outcome, Conflict):
        detail = f"same id and request_id as entry {outcome.entry_id}, different content"
        return await _refile(publisher, entry_id, "conflict", detail, body, sha)
    async with redis.pipeline(transaction=True) as pipe:  # both keys in the {dead} slot
        pipe.xdel(keys.dead_letters(), entry_id)
        pipe.delete(keys.dead_seen(sha))
        await pipe.execute()
    return ReplayOutcome(entry_id, True, type(outcome).__name__.lower(), "", outcome.entry_id)


async def _refile(
    publisher: Publisher, entry_id: str, reason: str, detail: str, body: bytes, sha: str
) -> ReplayOutcome:
    """Keep the letter, under the reason it fails with now (entries are immutable)."""
    redis: Any = publisher.redis
    keys = publisher.keys
    found = await redis.xrange(keys.dead_letters(), entry_id, entry_id)
    current = found[0][1].get(b"reason", b"").decode() if found else ""
    if current == reason:
        return ReplayOutcome(entry_id, False, reason, detail, entry_id)
    async with redis.pipeline(transaction=True) as pipe:
        pipe.xadd(
            keys.dead_letters(),
            {
                "reason": reason,
                "detail": detail,
                "body": body,
                "sha256": sha,
                "received_at": timestamp(datetime.now(UTC)),
            },
        )
        pipe.xdel(keys.dead_letters(), entry_id)
        new_id, _ = await pipe.execute()
    new = new_id.decode() if isinstance(new_id, bytes) else str(new_id)
    await redis.set(keys.dead_seen(sha), new, keepttl=True)
    return ReplayOutcome(entry_id, False, reason, detail, new)
