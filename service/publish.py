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

from . import completion, events, metrics
from .batch import GroupCommit
from .config import Durability, Settings
from .errors import Unavailable
from .keys import Keys

Client: TypeAlias = "Redis | RedisCluster"

logger = logging.getLogger("service.publish")

# Every answer from an existing key rewrites it unchanged (SET ... KEEPTTL): that
# write follows the first one in the replication stream and the AOF, so the
# WAIT/WAITAOF of a durability mode covers a duplicate answer too.

# A completion: answer from the (id, request_id) key if it is there, else append.
# The key holds "<entry id> <digest>"; a different digest is a conflict.
# KEYS: seen, done, stream.  ARGV: digest, ttl, maxlen, type, status, id, request_id, event.
COMPLETE_LUA = """
local seen = redis.call('GET', KEYS[1])
if seen then
  redis.call('SET', KEYS[1], seen, 'KEEPTTL')
  local sep = string.find(seen, ' ', 1, true)
  local first = string.sub(seen, 1, sep - 1)
  if string.sub(seen, sep + 1) == ARGV[1] then return {0, first} end
  return {2, first}
end
local entry = redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[3], '*',
  'type', ARGV[4], 'status', ARGV[5], 'id', ARGV[6], 'request_id', ARGV[7], 'event', ARGV[8])
redis.call('SET', KEYS[1], entry .. ' ' .. ARGV[1], 'EX', ARGV[2])
redis.call('SET', KEYS[2], entry, 'EX', ARGV[2], 'NX')
return {1, entry}
"""

# A progress update: dropped once the action completed, else once per step.
# KEYS: progress seen, done, stream.  ARGV: as COMPLETE_LUA.
PROGRESS_LUA = """
local done = redis.call('GET', KEYS[2])
if done then
  redis.call('SET', KEYS[2], done, 'KEEPTTL')
  return {3, done}
end
local seen = redis.call('GET', KEYS[1])
if seen then
  redis.call('SET', KEYS[1], seen, 'KEEPTTL')
  return {0, seen}
end
local entry = redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[3], '*',
  'type', ARGV[4], 'status', ARGV[5], 'id', ARGV[6], 'request_id', ARGV[7], 'event', ARGV[8])
redis.call('SET', KEYS[1], entry, 'EX', ARGV[2])
return {1, entry}
"""

# A dead letter, once per body hash.
# KEYS: dead seen, dead stream.  ARGV: ttl, maxlen, reason, detail, body, sha256, received_at.
DEAD_LETTER_LUA = """
local seen = redis.call('GET', KEYS[1])
if seen then
  redis.call('SET', KEYS[1], seen, 'KEEPTTL')
  return {0, seen}
end
local entry = redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*',
  'reason', ARGV[3], 'detail', ARGV[4], 'body', ARGV[5], 'sha256', ARGV[6],
  'received_at', ARGV[7])
redis.call('SET', KEYS[1], entry, 'EX', ARGV[1])
return {1, entry}
"""


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
class DeadLetter:
    entry_id: str
    new: bool


_msgpack = msgspec.msgpack.Encoder()


def digest(action: events.AsyncAction) -> str:
    """Identifies the decoded content of a delivery (not its bytes)."""
    return hashlib.blake2b(_msgpack.encode(action), digest_size=16).hexdigest()


def timestamp(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


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
    ) -> None:
        self._redis = redis
        self._keys = keys
        self._ttl = dedup_ttl
        self._maxlen = stream_maxlen
        self._timeout = timeout
        self._durability = durability
        self._health = _Health()
        self._complete = redis.register_script(COMPLETE_LUA)
        self._progress = redis.register_script(PROGRESS_LUA)
        self._dead = redis.register_script(DEAD_LETTER_LUA)
        wait_ms = max(1, int(timeout * 800))
        self._wait: tuple[Any, ...] | None = {
            "none": None,
            "aof": ("WAITAOF", 1, 0, wait_ms),
            "replicas": ("WAIT", durability.replicas, wait_ms),
        }[durability.mode]
        # A single server gets group commit; a cluster client routes each call
        # to its slot's node itself (and has no durability modes, see below).
        self._batch = (
            GroupCommit(
                redis,
                timeout,
                self._wait,
                required=durability.replicas if durability.mode == "replicas" else 1,
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
        )

    @property
    def redis(self) -> Client:
        return self._redis

    @property
    def keys(self) -> Keys:
        return self._keys

    async def check_durability(self) -> None:
        """Fail fast when the server cannot give the configured durability."""
        if self._wait is None:
            return
        if isinstance(self._redis, RedisCluster):
            raise RuntimeError(
                "FANOUT_DURABILITY: only 'none' is supported with FANOUT_REDIS_CLUSTER=1"
            )
        try:
            async with asyncio.timeout(self._timeout):
                await self._redis.execute_command(*self._wait[:-1], 1)  # type: ignore[no-untyped-call]
        except (RedisError, OSError, TimeoutError) as exc:
            name = self._wait[0]
            raise RuntimeError(
                f"FANOUT_DURABILITY={self._durability}: the Redis server refused {name} ({exc}); "
                + (
                    "it needs Redis >= 7.2 or Valkey with appendonly yes"
                    if name == "WAITAOF"
                    else ""
                )
            ) from exc

    async def publish(self, action: events.AsyncAction, received_at: datetime) -> Outcome:
        event = completion.encode_event(completion.from_action(action, received_at))
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
        args = (digest(action), self._ttl, self._maxlen, type_, action.status, action.id)
        code, entry = await self._run(script, (seen, done, stream), (*args, request_id, event))
        entry_id = entry.decode() if isinstance(entry, bytes) else str(entry)
        if code == 1:
            return Accepted(stream, entry_id)
        if code == 0:
            return Duplicate(entry_id)
        if code == 2:
            return Conflict(entry_id)
        return Stale(entry_id)

    async def dead_letter(
        self, reason: str, detail: str, body: bytes, received_at: datetime
    ) -> DeadLetter:
        sha = hashlib.sha256(body).hexdigest()
        keys = (self._keys.dead_seen(sha), self._keys.dead_letters())
        args = (self._ttl, self._maxlen, reason, detail, body, sha, timestamp(received_at))
        code, entry = await self._run(self._dead, keys, args)
        letter = DeadLetter(entry.decode() if isinstance(entry, bytes) else str(entry), code == 1)
        if letter.new:
            metrics.dead_letter(reason)
            logger.warning(
                "dead letter",
                extra={"fields": {"reason": reason, "entry_id": letter.entry_id, "sha256": sha}},
            )
        return letter

    async def ping(self) -> bool:
        try:
            async with asyncio.timeout(self._timeout):
                return bool(await self._redis.ping())
        except (RedisError, OSError, TimeoutError):
            return False

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
            raise Unavailable() from exc
        self._health.succeeded()
        return reply
