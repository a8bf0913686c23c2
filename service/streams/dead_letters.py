"""The fields of a dead letter, written and read through one struct.

Every letter has the contract's fields: ``reason`` (``malformed_json``,
``invalid_payload``, ``unknown_type``, ``stale``, ``conflict``, ``poison`` or
``trimmed``), ``detail``,
``body`` (the raw bytes), ``sha256`` (of the body) and ``received_at``. A
``poison`` letter (a consumer group gave up on an entry) also names the group,
consumer, stream, entry id, deliveries and last error; its body is the entry's
event JSON. A ``trimmed`` letter names the group, consumer, stream and entry id
of an entry deleted before the group acknowledged it; its body is empty.

``file`` is the one writer of a new letter, for the receiver (``Publisher``) and
for consumer groups (``consumer.poison``) alike.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeAlias

import msgspec
from redis.commands.core import AsyncScript

from ..domain import clock
from . import replies
from .errors import StreamFull
from .keys import Keys
from .records import Records
from .scripts import Reply

#: Runs the dead-letter script (``scripts.DEAD_LETTER_LUA``) with its keys and
#: arguments, bounded in time.
Run: TypeAlias = Callable[[tuple[str, ...], tuple[Any, ...]], Awaitable[list[Any]]]


class DeadLetter(msgspec.Struct, kw_only=True):
    reason: str
    detail: str
    body: bytes
    sha256: str
    received_at: str
    group: str | None = None
    consumer: str | None = None
    stream: str | None = None
    entry_id: str | None = None
    deliveries: int | None = None
    error: str | None = None

    @classmethod
    def of(
        cls, reason: str, detail: str, body: bytes, received_at: datetime, **poison: Any
    ) -> DeadLetter:
        """A new letter for ``body``, its digest computed here."""
        return cls(
            reason=reason,
            detail=detail,
            body=body,
            sha256=hashlib.sha256(body).hexdigest(),
            received_at=clock.iso(received_at),
            **poison,
        )

    @classmethod
    def from_fields(cls, fields: dict[bytes, bytes]) -> DeadLetter:
        """A letter as read from the stream (missing fields read as empty)."""
        deliveries = fields.get(b"deliveries")
        optional = {
            name: replies.text(fields[name.encode()])
            for name in ("group", "consumer", "stream", "entry_id", "error")
            if name.encode() in fields
        }
        return cls(
            reason=replies.text(fields.get(b"reason")),
            detail=replies.text(fields.get(b"detail")),
            body=fields.get(b"body", b""),
            sha256=replies.text(fields.get(b"sha256")),
            received_at=replies.text(fields.get(b"received_at")),
            deliveries=int(deliveries) if deliveries and deliveries.isdigit() else None,
            **optional,
        )

    def fields(self) -> dict[str, str | bytes]:
        """The stream entry's fields, in order, leaving out what a letter does not have."""
        out: dict[str, str | bytes] = {}
        for name in self.__struct_fields__:
            value = getattr(self, name)
            if value is not None:
                out[name] = value if isinstance(value, bytes | str) else str(value)
        return out

    def pairs(self) -> list[str | bytes]:
        """``fields()`` flattened to name, value, ... for a script's ARGV."""
        return [part for item in self.fields().items() for part in item]

    def as_object(self, entry_id: str) -> dict[str, str]:
        """The letter as plain text, for JSON output (``fanout tail --dead --json``, ``dlq``)."""
        return {"entry_id": entry_id} | {k: replies.text(v) for k, v in self.fields().items()}

    @property
    def received(self) -> datetime:
        return clock.parse(self.received_at)


@dataclass(frozen=True, slots=True)
class Filed:
    """Where a dead letter is: a new entry, or the one filed before for the same key."""

    entry_id: str
    new: bool


async def file(
    run: Run,
    keys: Keys,
    seen: tuple[str, bytes],
    letter: DeadLetter,
    *,
    records: Records,
    maxlen: int,
    cutoff: int = 0,
) -> Filed:
    """File ``letter`` once per ``seen`` (for a body's digest, or a consumer group's one
    entry: the key an older version kept, and the record's field) on the dead-letter
    stream; remembered for the dedup window (``records.py``). A ``cutoff`` (ms) also
    trims the acknowledged letters older than it (FANOUT_RETENTION).

    ``StreamFull`` when the stream's groups are a whole ``maxlen`` behind.
    """
    stream = keys.dead_letters()
    legacy, record = seen
    names = (stream, legacy, *records.buckets("dead"))
    code, entry = await run(names, (maxlen, cutoff, record, *letter.pairs()))
    if code == Reply.FULL:
        raise StreamFull(stream, maxlen)
    return Filed(replies.text(entry), code == Reply.ACCEPTED)


def bounded(script: AsyncScript, timeout: float) -> Run:
    """A ``Run`` of ``script`` that raises ``TimeoutError`` after ``timeout`` seconds."""

    async def run(keys: tuple[str, ...], args: tuple[Any, ...]) -> list[Any]:
        async with asyncio.timeout(timeout):
            reply: list[Any] = await script(keys=keys, args=args)
            return reply

    return run
