"""Deduplicate and publish, atomically, with one Redis script call per delivery.

Each script touches only keys of one hash slot (see ``keys.py``), so the same
code runs on a single server and on Redis Cluster. No delivery state is kept in
process memory: a duplicate is recognised from Redis alone, by any replica of
the service.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeAlias

import msgspec
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError
from redis.typing import EncodableT, FieldT

from .. import metrics
from ..config import Durability, Settings
from ..domain import actions, completion, webhooks
from . import cloud_events, connection, replies
from .connection import Client
from .dead_letters import DeadLetter
from .durability import Promise, Waiter
from .errors import RedisUnavailable, StreamFull
from .group_commit import GroupCommit
from .keys import Keys
from .scripts import COMPLETE_LUA, DEAD_LETTER_LUA, EVENT_LUA, FULL, PROGRESS_LUA, WRITABLE_LUA

logger = logging.getLogger("service.publish")


@dataclass(frozen=True, slots=True)
class Accepted:
    """A new entry was appended."""

    stream: str
    entry_id: str


@dataclass(frozen=True, slots=True)
class Duplicate:
    """The same delivery was published before, as ``entry_id``."""

    entry_id: str


@dataclass(frozen=True, slots=True)
class Conflict:
    """Same (id, request_id) as ``entry_id`` but different content."""

    entry_id: str


@dataclass(frozen=True, slots=True)
class Stale:
    """A progress update for an action whose completion is ``entry_id``."""

    entry_id: str


Outcome: TypeAlias = Accepted | Duplicate | Conflict | Stale


@dataclass(frozen=True, slots=True)
class Filed:
    """Where a dead letter is: a new entry, or the one filed before for the same body."""

    entry_id: str
    new: bool


_msgpack = msgspec.msgpack.Encoder()


def digest(action: actions.AsyncAction) -> str:
    """Identifies the decoded content of a delivery (not its bytes)."""
    return hashlib.blake2b(_msgpack.encode(action), digest_size=16).hexdigest()


class _Health:
    """Logs once when Redis starts failing and once when it answers again."""

    __slots__ = ("_down_since",)

    def __init__(self) -> None:
        self._down_since: float | None = None

    def failed(self, exc: BaseException) -> None:
        if self._down_since is None:
            self._down_since = time.monotonic()
            logger.error("redis unavailable", extra={"fields": {"error": repr(exc)}})

    def succeeded(self) -> None:
        if self._down_since is not None:
            down = time.monotonic() - self._down_since
            self._down_since = None
            logger.warning("redis recovered", extra={"fields": {"down_seconds": round(down, 3)}})


class Publisher:
    """Runs the publish scripts with a bounded time, honouring the durability mode."""

    def __init__(
        self,
        redis: Client,
        keys: Keys,
        *,
        dedup_ttl: int,
        stream_maxlen: int,
        timeout: float,
        durability: Durability,
        cloudevents: bool = False,
    ) -> None:
        self._redis = redis
        self._keys = keys
        self._ttl = dedup_ttl
        self._maxlen = stream_maxlen
        self._timeout = timeout
        self._waiter = Waiter(
            durability,
            timeout=timeout,
            cluster=isinstance(redis, RedisCluster),
            sentinel=connection.is_sentinel(redis),
        )
        self._cloudevents_source = cloud_events.source(keys.prefix) if cloudevents else None
        self._health = _Health()
        self._complete = redis.register_script(COMPLETE_LUA)
        self._progress = redis.register_script(PROGRESS_LUA)
        self._event = redis.register_script(EVENT_LUA)
        self._dead = redis.register_script(DEAD_LETTER_LUA)
        self._writable = redis.register_script(WRITABLE_LUA)
        # A single server gets group commit; a cluster client routes each call
        # to its slot's node itself (and has no durability wait, see durability.py).
        self._batch = (
            GroupCommit(
                redis,
                timeout,
                self._waiter.command,
                required=self._waiter.required,
                on_wait_refused=self._wait_refused,
            )
            if isinstance(redis, Redis)
            else None
        )

    @classmethod
    def from_settings(cls, redis: Client, settings: Settings) -> Publisher:
        return cls(
            redis,
            Keys(settings.stream_prefix),
            dedup_ttl=settings.dedup_ttl,
            stream_maxlen=settings.stream_maxlen,
            timeout=settings.redis_timeout,
            durability=settings.durability,
            cloudevents=settings.cloudevents,
        )

    @property
    def redis(self) -> Client:
        return self._redis

    @property
    def keys(self) -> Keys:
        return self._keys

    async def check_durability(self) -> Promise:
        """What a 2xx means with this server: one line for start-up. ``RuntimeError`` when
        an explicit FANOUT_DURABILITY is one the server cannot give."""
        promise = await self._waiter.check(self._redis)
        if self._batch is not None:
            self._batch.wait = self._waiter.command
        return promise

    def _wait_refused(self, error: Exception) -> bool:
        accepted = self._waiter.refused(error)
        if accepted and self._batch is not None:
            self._batch.wait = self._waiter.command
        return accepted

    def entry_fields(
        self, event: completion.CompletionEvent | webhooks.WebhookEvent, data: bytes
    ) -> dict[FieldT, EncodableT]:
        """An event entry's fields: the contract's five, and ``data`` with FANOUT_CLOUDEVENTS.

        ``data`` is the event's JSON (the ``event`` field).
        """
        fields: dict[FieldT, EncodableT]
        if isinstance(event, webhooks.WebhookEvent):
            fields = {"type": event.type, "id": event.id, "request_id": event.request_id or ""}
            fields |= {"sendout_id": event.sendout_id, "event": data}
        else:
            fields = {"type": event.type, "status": event.status, "id": event.id}
            fields |= {"request_id": event.request_id or "", "event": data}
        if self._cloudevents_source is not None:
            fields["data"] = cloud_events.for_event(self._cloudevents_source, event, data)
        return fields

    async def publish(self, action: actions.AsyncAction, received_at: datetime) -> Outcome:
        """Append ``action`` to its stream once; ``StreamFull`` when consumers are a cap behind."""
        event = completion.from_action(action, received_at)
        fields = self.entry_fields(event, completion.encode_event(event))
        type_, request_id = action.type, action.request_id or ""
        done = self._keys.done(type_, action.id)
        if action.completed:
            script = self._complete
            seen = self._keys.seen(type_, action.id, request_id)
            stream = self._keys.completed(type_)
        else:
            script = self._progress
            seen = self._keys.progress_seen(
                type_, action.id, request_id, action.status, action.progress
            )
            stream = self._keys.progress(type_)
        pairs = [item for pair in fields.items() for item in pair]
        args = (digest(action), self._ttl, self._maxlen, *pairs)
        code, entry = await self._run(script, (seen, done, stream), args)
        entry_id = replies.text(entry)
        if code == FULL:
            raise StreamFull(stream, self._maxlen)
        if code == 1:
            return Accepted(stream, entry_id)
        if code == 0:
            return Duplicate(entry_id)
        if code == 2:
            return Conflict(entry_id)
        return Stale(entry_id)

    async def publish_event(
        self, delivery: webhooks.WebhookDelivery, received_at: datetime
    ) -> Outcome:
        """Append a webhook event to its type's stream, once per (event id, request id);
        ``StreamFull`` when consumers are a cap behind."""
        event = delivery.event(received_at)
        fields = self.entry_fields(event, webhooks.encode_event(event))
        type_, request_id = delivery.type, delivery.request_id or ""
        seen = self._keys.event_seen(type_, delivery.id, request_id)
        stream = self._keys.events(type_)
        pairs = [item for pair in fields.items() for item in pair]
        args = (delivery.digest, self._ttl, self._maxlen, *pairs)
        code, entry = await self._run(self._event, (seen, stream), args)
        entry_id = replies.text(entry)
        if code == FULL:
            raise StreamFull(stream, self._maxlen)
        if code == 1:
            return Accepted(stream, entry_id)
        if code == 0:
            return Duplicate(entry_id)
        return Conflict(entry_id)

    async def dead_letter(
        self, reason: str, detail: str, body: bytes, received_at: datetime
    ) -> Filed:
        """File ``body`` as a dead letter, once per body however often it comes.

        ``StreamFull`` when the dead-letter stream's groups are a whole cap behind.
        """
        letter = DeadLetter.of(reason, detail, body, received_at)
        keys = (self._keys.dead_seen(letter.sha256), self._keys.dead_letters())
        code, entry = await self._run(self._dead, keys, (self._ttl, self._maxlen, *letter.pairs()))
        if code == FULL:
            raise StreamFull(keys[1], self._maxlen)
        filed = Filed(replies.text(entry), code == 1)
        if filed.new:
            metrics.dead_letter(reason)
            logger.warning(
                "dead letter",
                extra={
                    "fields": {
                        "reason": reason,
                        "entry_id": filed.entry_id,
                        "sha256": letter.sha256,
                    }
                },
            )
        return filed

    async def ping(self) -> bool:
        try:
            async with asyncio.timeout(self._timeout):
                return bool(await self._redis.ping())
        except (RedisError, OSError, TimeoutError):
            return False

    async def writable(self) -> str | None:
        """None when the server takes writes now; else why not (a replica's READONLY,
        NOREPLICAS, MISCONF, OOM, or no answer in time)."""
        try:
            async with asyncio.timeout(self._timeout):
                await self._writable(keys=[self._keys.dead_letters()], args=[])
        except (RedisError, OSError, TimeoutError) as exc:
            return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        return None

    async def _run(
        self, script: AsyncScript, keys: tuple[str, ...], args: tuple[Any, ...]
    ) -> list[Any]:
        try:
            if self._batch is not None:
                reply = await self._batch.call(script, keys, args)  # bounded by the batcher
            else:
                async with asyncio.timeout(self._timeout):
                    reply = await script(keys=keys, args=args)
        except (RedisError, OSError, TimeoutError) as exc:
            self._health.failed(exc)
            raise RedisUnavailable(str(exc) or type(exc).__name__) from exc
        self._health.succeeded()
        return reply
