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
from datetime import datetime
from functools import partial
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError

from .. import metrics
from ..config import Durability, Settings
from ..domain.custom import CUSTOM_TYPE
from ..domain.outbound import TRACEPARENT, Publication
from . import cloud_events, connection, dead_letters, replies, server
from .connection import Client
from .dead_letters import DeadLetter, Filed
from .durability import Waiter
from .errors import MemoryFull, RedisUnavailable
from .group_commit import GroupCommit
from .keys import Keys
from .legacy import LegacyWindow
from .memory import MemoryWatch
from .outcomes import Accepted as Accepted
from .outcomes import Conflict as Conflict
from .outcomes import Duplicate as Duplicate
from .outcomes import Outcome as Outcome
from .outcomes import Stale as Stale
from .outcomes import of_reply
from .promise import Promise
from .records import Records, field
from .replication import Replication
from .routing import ClusterLanes
from .scripts import COMPLETE_LUA, DEAD_LETTER_LUA, EVENT_LUA, PROGRESS_LUA, WRITABLE_LUA

logger = logging.getLogger("service.publish")


#: Hex digits of a content digest kept in a record: 64 bits tell a conflict from a
#: duplicate of the same (id, request_id), at half the bytes.
RECORD_DIGEST = 16


#: Seconds between two retention trims of one stream by this process; each removes
#: whole stream nodes, at most 1,000 entries (scripts.py, ``append``).
TRIM_EVERY = 1.0


class _Retention:
    """When a stream's next append also trims what is older than FANOUT_RETENTION."""

    __slots__ = ("_due", "_ms")

    def __init__(self, seconds: int) -> None:
        self._ms = seconds * 1000
        self._due: dict[str, float] = {}

    def cutoff(self, stream: str) -> int:
        """0 (no trim this time), or the entry time (ms) before which entries may go."""
        now = time.monotonic()
        if self._due.get(stream, 0.0) > now:
            return 0
        self._due[stream] = now + TRIM_EVERY
        return int(time.time() * 1000) - self._ms


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
        memory_limit: int = 90,
        retention: int | None = None,
    ) -> None:
        self._redis = redis
        self._keys = keys
        self._records = Records(keys, dedup_ttl)
        self._retention = _Retention(dedup_ttl if retention is None else retention)
        #: Replicas per primary, sampled with the memory (where a 2xx can wait for them).
        self.replication = Replication()
        #: Sampled by ``memory.run()`` in the background (the app starts it).
        self.memory = MemoryWatch(
            redis,
            limit=memory_limit,
            timeout=timeout,
            replication=self.replication,
        )
        self._maxlen = stream_maxlen
        self._timeout = timeout
        self.waiter = Waiter(
            durability,
            timeout=timeout,
            cluster=isinstance(redis, RedisCluster),
            sentinel=connection.is_sentinel(redis),
            replication=self.replication,
        )
        self._cloudevents_source = cloud_events.source(keys.prefix) if cloudevents else None
        self._health = _Health()
        #: Whether a delivery is deleting dedup buckets that left the window (``_sweep``).
        self._sweeping = False
        self._sweep_failing = False
        #: Whether the dedup keys of an older version are still read (``legacy.py``).
        self.legacy = LegacyWindow(redis, keys, timeout)
        self._complete = redis.register_script(COMPLETE_LUA)
        self._progress = redis.register_script(PROGRESS_LUA)
        self._event = redis.register_script(EVENT_LUA)
        self._dead = redis.register_script(DEAD_LETTER_LUA)
        self._writable = redis.register_script(WRITABLE_LUA)
        # Group commit: one lane for a single server, one per primary on a cluster,
        # each batch followed by its durability wait on the same connection.
        self._batch: GroupCommit | ClusterLanes = (
            GroupCommit(
                redis,
                timeout,
                wait=self.waiter.wait_for,
                on_wait_refused=self.waiter.refused,
                guard=connection.guard(redis),
            )
            if isinstance(redis, Redis)
            else ClusterLanes(
                redis,
                timeout,
                wait=self.waiter.wait_for,
                on_wait_refused=self.waiter.refused,
                on_retired=self.replication.forget,
            )
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
            memory_limit=settings.memory_limit,
            retention=settings.retention_seconds,
        )

    @property
    def redis(self) -> Client:
        return self._redis

    @property
    def keys(self) -> Keys:
        return self._keys

    @property
    def records(self) -> Records:
        return self._records

    async def check_server(self, *, allow_eviction: bool) -> tuple[str, bool] | None:
        """The start-up line on memory and eviction, and whether it warns; None when the
        server does not answer yet. ``ServerRefused`` for a server the service must not
        run on as configured (an evicting policy, protected mode, auth, ACL)."""
        found = await server.inspect(self._redis, self._timeout)
        if not found:
            return None
        return server.eviction(found, allowed=allow_eviction)

    async def check_durability(self) -> Promise:
        """What a 2xx means with this server: one line for start-up. ``DurabilityRefused``
        when an explicit FANOUT_DURABILITY is one the server cannot give."""
        return await self.waiter.check(self._redis)

    def entry_pairs(self, publication: Publication, tp: str | None = None) -> list[str | bytes]:
        """An entry's field/value pairs, with ``traceparent`` and FANOUT_CLOUDEVENTS' ``data``."""
        pairs = publication.fields if tp is None else [*publication.fields, TRACEPARENT, tp]
        if self._cloudevents_source is None:
            return pairs
        source, event, json = self._cloudevents_source, publication.event, publication.json
        return [*pairs, "data", cloud_events.for_event(source, event, json, tp)]

    async def publish(self, publication: Publication, traceparent: str | None = None) -> Outcome:
        """Append an event to its stream once per its dedup identity, with a W3C
        ``traceparent`` field when given (FANOUT_TRACING); ``StreamFull`` when consumers
        are a cap behind, ``MemoryFull`` when the server's memory is at the limit.

        Its dedup records go into the bucket hashes of ``records.py`` (no key TTL); the
        keys an older version kept are still read."""
        if self.memory.full:
            raise MemoryFull(self.memory.describe())
        keys, type_, id_ = self._keys, publication.type, publication.id
        request_id = publication.request_id
        script: AsyncScript
        names: tuple[str, ...]
        records: tuple[bytes, ...]
        buckets = self._records.buckets(type_)
        # Out of an upgrade window the legacy keys are named as the stream: not read.
        legacy = self.legacy.open
        match publication.kind:
            case "completed":
                script = self._complete
                stream = keys.completed(type_)
                seen = keys.seen(type_, id_, request_id) if legacy else stream
                done = keys.done(type_, id_) if legacy else stream
                names = (stream, seen, done, *buckets)
                records = (field("seen", id_, request_id), field("done", id_))
            case "progress":
                script = self._progress
                stream = keys.progress(type_)
                status, step = publication.status or "", publication.progress
                seen = (
                    keys.progress_seen(type_, id_, request_id, status, step) if legacy else stream
                )
                done = keys.done(type_, id_) if legacy else stream
                names = (stream, seen, done, *buckets)
                step_text = "" if step is None else str(step)
                records = (field("pseen", id_, request_id, status, step_text), field("done", id_))
            case "events":
                script = self._event
                stream = keys.events(type_)
                seen = keys.event_seen(type_, id_, request_id) if legacy else stream
                names = (stream, seen, *buckets)
                records = (field("eseen", id_, request_id),)
            case "custom":  # deduplicated by content alone: the same script, keyed by it
                script = self._event
                stream = keys.custom()
                seen = keys.custom_seen(publication.digest) if legacy else stream
                names = (stream, seen, *self._records.buckets(CUSTOM_TYPE))
                records = (field("cseen", publication.digest),)
        pairs = self.entry_pairs(publication, traceparent)
        cutoff = self._retention.cutoff(stream)
        args = (publication.digest[:RECORD_DIGEST], self._maxlen, cutoff, *records, *pairs)
        # ``_run``, inline: one coroutine frame less on every delivery's way back.
        try:
            code, entry = await self._batch.call(script, names, args)
        except (RedisError, OSError, TimeoutError) as exc:
            self._health.failed(exc)
            raise RedisUnavailable(str(exc) or type(exc).__name__) from exc
        self._health.succeeded()
        if self._records.due and not self._sweeping:
            await self._sweep()
        outcome = of_reply(code, stream, replies.text(entry), self._maxlen)
        if publication.unknown_type and isinstance(outcome, Accepted):
            await self._note_other_type(type_)
        return outcome

    async def _sweep(self) -> None:
        """Delete the dedup buckets that left the window (``records.py``): after the
        script call of the delivery that found one due, once per type and bucket (and
        once per type after start). Not a task beside the deliveries: one that outlived
        its client took a connection nothing closed. A failure does not touch the
        delivery (its entry is stored): it is tried again after a later one, and logged
        once until a sweep succeeds (a user without ``+unlink`` would otherwise log it
        on every delivery)."""
        self._sweeping = True
        try:
            async with asyncio.timeout(self._timeout):
                await self._records.sweep(self._redis)
        except (RedisError, OSError, TimeoutError) as exc:
            if not self._sweep_failing:
                self._sweep_failing = True
                logger.warning(
                    "old dedup buckets not deleted yet", extra={"fields": {"error": repr(exc)}}
                )
        else:
            self._sweep_failing = False
        finally:
            self._sweeping = False

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

        ``StreamFull`` when the dead-letter stream's groups are a whole cap behind,
        ``MemoryFull`` at the memory limit.
        """
        if self.memory.full:
            raise MemoryFull(self.memory.describe())
        letter = DeadLetter.of(reason, detail, body, received_at)
        filed = await dead_letters.file(
            partial(self._run, self._dead),
            self._keys,
            (self._keys.dead_seen(letter.sha256), field("dead", letter.sha256)),
            letter,
            records=self._records,
            maxlen=self._maxlen,
            cutoff=self._retention.cutoff(self._keys.dead_letters()),
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
        in its stream (its record is kept): what ``publish`` would answer as a duplicate.

        ``RedisUnavailable`` when Redis fails or takes longer than the timeout.
        """
        legacy = self._keys.seen(type_, id_, request_id or "")
        record = field("seen", id_, request_id or "")
        try:
            async with asyncio.timeout(self._timeout):
                return await self._records.holds(self._redis, type_, record, legacy)
        except (RedisError, OSError, TimeoutError) as exc:
            raise RedisUnavailable(str(exc) or type(exc).__name__) from exc

    async def ping(self) -> bool:
        try:
            async with asyncio.timeout(self._timeout):
                return bool(await self._redis.ping())
        except (RedisError, OSError, TimeoutError):
            return False

    async def writable(self) -> str | None:
        """None when the server takes writes now and a 2xx can be given; else why not (a
        replica's READONLY, NOREPLICAS, MISCONF, OOM, memory at FANOUT_MEMORY_LIMIT, a
        primary without the replicas a 2xx waits for, or no answer in time)."""
        await self.memory.sample()  # a probe's pace, not a delivery's: read it now
        if self.memory.full:
            return self.memory.describe()
        missing = self.waiter.missing()
        if missing is not None:
            return missing
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
            reply = await self._batch.call(script, keys, args)  # bounded by the lane
        except (RedisError, OSError, TimeoutError) as exc:
            self._health.failed(exc)
            raise RedisUnavailable(str(exc) or type(exc).__name__) from exc
        self._health.succeeded()
        return reply
