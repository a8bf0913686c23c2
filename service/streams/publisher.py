"""Deduplicate and publish, atomically, with one Redis script call per delivery.

Each script touches only keys of one hash slot (see ``keys.py``), so the same
code runs on a single server and on Redis Cluster. No delivery state is kept in
process memory: a duplicate is recognised from Redis alone, by any replica of
the service.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any, TypeAlias

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError

from .. import metrics
from ..config import Durability, Settings
from ..domain.outbound import Publication
from . import cloud_events, connection, dead_letters, replies
from .connection import Client
from .dead_letters import DeadLetter, Filed
from .durability import Promise, Waiter
from .errors import RedisUnavailable, StreamFull
from .group_commit import GroupCommit
from .keys import Keys
from .scripts import COMPLETE_LUA, DEAD_LETTER_LUA, EVENT_LUA, PROGRESS_LUA, WRITABLE_LUA, Reply

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
        """What a 2xx means with this server: one line for start-up. ``DurabilityRefused``
        when an explicit FANOUT_DURABILITY is one the server cannot give."""
        promise = await self._waiter.check(self._redis)
        if self._batch is not None:
            self._batch.wait = self._waiter.command
        return promise

    def _wait_refused(self, error: Exception) -> bool:
        accepted = self._waiter.refused(error)
        if accepted and self._batch is not None:
            self._batch.wait = self._waiter.command
        return accepted

    def entry_pairs(self, publication: Publication) -> list[str | bytes]:
        """An event entry's field/value pairs: the publication's, and ``data`` with
        FANOUT_CLOUDEVENTS."""
        if self._cloudevents_source is None:
            return publication.fields
        data = cloud_events.for_event(self._cloudevents_source, publication.event, publication.json)
        return [*publication.fields, "data", data]

    async def publish(self, publication: Publication) -> Outcome:
        """Append an event to its stream once per its dedup identity; ``StreamFull`` when
        consumers are a cap behind."""
        keys, type_, id_ = self._keys, publication.type, publication.id
        request_id = publication.request_id
        script: AsyncScript
        names: tuple[str, ...]
        match publication.kind:
            case "completed":
                script = self._complete
                stream = keys.completed(type_)
                names = (keys.seen(type_, id_, request_id), keys.done(type_, id_), stream)
            case "progress":
                script = self._progress
                stream = keys.progress(type_)
                seen = keys.progress_seen(
                    type_, id_, request_id, publication.status or "", publication.progress
                )
                names = (seen, keys.done(type_, id_), stream)
            case "events":
                script = self._event
                stream = keys.events(type_)
                names = (keys.event_seen(type_, id_, request_id), stream)
            case "custom":  # deduplicated by content alone: the same script, keyed by it
                script = self._event
                stream = keys.custom()
                names = (keys.custom_seen(publication.digest), stream)
        pairs = self.entry_pairs(publication)
        args = (publication.digest, self._ttl, self._maxlen, *pairs)
        code, entry = await self._run(script, names, args)
        outcome = self._outcome(code, stream, replies.text(entry))
        if publication.unknown_type and isinstance(outcome, Accepted):
            await self._note_other_type(type_)
        return outcome

    def _outcome(self, code: int, stream: str, entry_id: str) -> Outcome:
        """The outcome a publish script's reply code names.

        The code is compared with the names, not made a ``Reply``: ``Reply(code)``
        costs 0.28 us a delivery, a comparison 0.06 us (timeit, loaded machine).
        """
        match code:
            case Reply.ACCEPTED:
                return Accepted(stream, entry_id)
            case Reply.DUPLICATE:
                return Duplicate(entry_id)
            case Reply.CONFLICT:
                return Conflict(entry_id)
            case Reply.STALE:
                return Stale(entry_id)
            case Reply.FULL:
                raise StreamFull(stream, self._maxlen)
        raise AssertionError(f"a publish script answered {code!r}")

    async def _note_other_type(self, type_: str) -> None:
        """Remember a stream of an event type the service does not know, for the gauges
        (``stats.other_streams``). Only for such types, once per new entry; the entry is
        stored already, so a Redis error here is logged, not answered."""
        try:
            async with asyncio.timeout(self._timeout):
                await self._redis.sadd(self._keys.other_types(), type_)
        except (RedisError, OSError, TimeoutError) as exc:
            logger.warning(
                "event type not noted for the gauges",
                extra={"fields": {"type": type_, "error": repr(exc)}},
            )

    async def dead_letter(
        self, reason: str, detail: str, body: bytes, received_at: datetime
    ) -> Filed:
        """File ``body`` as a dead letter, once per body however often it comes.

        ``StreamFull`` when the dead-letter stream's groups are a whole cap behind.
        """
        letter = DeadLetter.of(reason, detail, body, received_at)
        filed = await dead_letters.file(
            partial(self._run, self._dead),
            self._keys,
            self._keys.dead_seen(letter.sha256),
            letter,
            ttl=self._ttl,
            maxlen=self._maxlen,
        )
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

    async def published(self, type_: str, id_: str, request_id: str | None) -> bool:
        """True when the completion of (``id_``, ``request_id``) of ``type_`` is already
        in its stream (its seen key exists): what ``publish`` would answer as a duplicate.

        ``RedisUnavailable`` when Redis fails or takes longer than the timeout.
        """
        seen = self._keys.seen(type_, id_, request_id or "")
        try:
            async with asyncio.timeout(self._timeout):
                return bool(await self._redis.exists(seen))
        except (RedisError, OSError, TimeoutError) as exc:
            raise RedisUnavailable(str(exc) or type(exc).__name__) from exc

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
