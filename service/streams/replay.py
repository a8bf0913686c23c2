"""Replay a dead letter through the same decode and publish path as the webhook.

Used by ``fanout dlq replay`` and by the dashboard's replay button; async
actions, webhook envelopes and custom bodies alike. No age check: replaying a
``stale`` letter is the operator's decision to publish it. A letter
that is now accepted, a duplicate, or stale progress is removed; one that fails
again stays, re-filed under the reason it fails with now. A ``poison`` letter
(a consumer group gave up on it) holds a published event: replay appends it
again to its stream, so every group of that stream receives it once more.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import msgspec

from ..config import Settings
from ..domain import outbound
from ..domain.entries import decode_event
from ..domain.inbound import Unpublishable, decode
from ..domain.webhooks import WebhookEvent
from . import replies
from .connection import Client
from .dead_letters import DeadLetter
from .errors import StreamFull
from .keys import Keys
from .publisher import Accepted, Conflict, Duplicate, Publisher, Stale
from .records import Records, field
from .scripts import APPEND_LUA, REPLACE_LETTER_LUA, Reply


class Letter(NamedTuple):
    entry_id: str
    letter: DeadLetter


async def find_letter(client: Client, keys: Keys, id_: str) -> Letter | None:
    found = replies.rows(await client.xrange(keys.dead_letters(), min=id_, max=id_, count=1))
    if not found:
        return None
    [(letter_id, fields)] = found
    return Letter(letter_id, DeadLetter.from_fields(fields))


@dataclass(frozen=True, slots=True)
class Replayed:
    letter: str
    outcome: str  # accepted, duplicate, stale, requeued, dead, missing, full
    detail: str
    #: The letter's new entry id when it failed again and was re-filed.
    new_entry_id: str | None = None

    @property
    def ok(self) -> bool:
        return self.outcome in ("accepted", "duplicate", "stale", "requeued")


class Replayer:
    """Sends dead letters through the publish path again, one at a time."""

    def __init__(self, client: Client, config: Settings) -> None:
        self.client = client
        self.keys = Keys(config.stream_prefix)
        self.config = config
        self.publisher = Publisher.from_settings(client, config)
        self._replace = client.register_script(REPLACE_LETTER_LUA)
        self._append = client.register_script(APPEND_LUA)

    async def replay(self, id_: str) -> Replayed:
        letter = await find_letter(self.client, self.keys, id_)
        if letter is None:
            return Replayed(id_, "missing", "no dead letter with this id")
        if letter.letter.reason == "poison":
            return await self._requeue(letter)
        if letter.letter.reason == "trimmed":
            return Replayed(
                letter.entry_id, "dead", "trimmed: the entry is gone, nothing to replay"
            )
        try:
            inbound = decode(letter.letter.body)
        except Unpublishable as unpublishable:  # not JSON, nor an async action or envelope
            return await self._keep(letter, unpublishable.reason, unpublishable.detail)
        try:
            publication = outbound.publication(inbound, letter.letter.received)
            outcome = await self.publisher.publish(publication)
        except StreamFull as exc:
            return Replayed(letter.entry_id, "full", str(exc))
        if isinstance(outcome, Conflict):
            detail = f"same id and request_id as entry {outcome.entry_id}, different content"
            return await self._keep(letter, "conflict", detail)
        await self.client.xdel(self.keys.dead_letters(), letter.entry_id)
        match outcome:
            case Accepted(stream=stream, entry_id=entry):
                return Replayed(letter.entry_id, "accepted", f"{stream} {entry}")
            case Duplicate(entry_id=entry):
                return Replayed(letter.entry_id, "duplicate", f"published before as {entry}")
            case Stale(entry_id=entry):
                return Replayed(letter.entry_id, "stale", f"progress after completion {entry}")
        raise AssertionError(outcome)

    async def _requeue(self, letter: Letter) -> Replayed:
        body = letter.letter.body
        stream = letter.letter.stream or ""
        try:
            event = decode_event(body)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            return Replayed(letter.entry_id, "dead", f"poison: cannot decode the event: {exc}")
        if isinstance(event, WebhookEvent):
            streams: tuple[str, ...] = (self.keys.events(event.type),)
        else:
            streams = (self.keys.completed(event.type), self.keys.progress(event.type))
        if stream not in streams:
            return Replayed(letter.entry_id, "dead", f"poison: unknown stream {stream!r}")
        pairs = self.publisher.entry_pairs(outbound.of_event(event, body))
        code, entry = await self._append(keys=[stream], args=[self.config.stream_maxlen, *pairs])
        if code == Reply.FULL:
            return Replayed(
                letter.entry_id, "full", str(StreamFull(stream, self.config.stream_maxlen))
            )
        await self.client.xdel(self.keys.dead_letters(), letter.entry_id)
        return Replayed(letter.entry_id, "requeued", f"{stream} {replies.text(entry)}")

    async def _keep(self, letter: Letter, reason: str, detail: str) -> Replayed:
        old = letter.letter
        if old.reason == reason and old.detail == detail:
            return Replayed(letter.entry_id, "dead", f"{reason}: {detail}")
        updated = msgspec.structs.replace(old, reason=reason, detail=detail)
        records = Records(self.keys, self.config.dedup_ttl)
        args: list[Any] = [letter.entry_id, self.config.stream_maxlen, field("dead", old.sha256)]
        legacy = self.keys.dead_seen(old.sha256)
        code, new = await self._replace(
            keys=[self.keys.dead_letters(), legacy, *records.buckets("dead")],
            args=[*args, *updated.pairs()],
        )
        if code == Reply.FULL:
            full = StreamFull(self.keys.dead_letters(), self.config.stream_maxlen)
            return Replayed(letter.entry_id, "full", str(full))
        now = replies.text(new)
        return Replayed(letter.entry_id, "dead", f"{reason}: {detail} (now {now})", now)
