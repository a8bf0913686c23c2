"""Refused deliveries per minute and reason, kept in Redis for the dashboard.

Every receiver process counts its refusals in memory (``count``, no I/O on the
request path) and adds them to Redis every few seconds (``flush``): one
``HINCRBY`` per minute and reason into ``<P>:{refusals}:<minute>``, a hash
kept for ``KEEP_SECONDS``: not by a key TTL (under a ``volatile-*`` maxmemory
policy the server would evict it first), the flush deletes the minutes that
have aged out. So the figures are the sum over every
worker and every machine sharing the Redis, survive restarts, and are there
when the page opens. Counts that cannot be written (Redis is down: exactly
when 503s happen) stay in memory and go with the next flush; at most
``KEEP_SECONDS`` worth are held.

``/metrics`` (``fanout_deliveries_total{outcome}``) counts the same refusals
for Prometheus; this exists because a dashboard has no Prometheus to ask.

The latest refusals themselves (``note``) go with the same flush to
``<P>:{refusals}:latest``, a stream capped at ``LATEST`` entries by ``MAXLEN``
with no key TTL (nothing there is evictable under a ``volatile-*`` policy): when,
the status, reason and detail, the peer address, the path and the *names* of
the request headers, never their values, the body or the signature. The
dashboard and ``fanout tail --refused`` read it. At most ``LATEST`` wait in
memory while Redis is away.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, deque
from typing import Any

import msgspec
from redis.exceptions import RedisError

from . import replies
from .connection import Client
from .keys import Keys

logger = logging.getLogger("service.refusals")

#: HTTP status of each refusal reason, as the dashboard shows them.
STATUS = {
    "malformed_json": 400,
    "invalid_signature": 401,
    "forbidden": 403,
    "too_large": 413,
    "unsupported_media_type": 415,
    "invalid_payload": 422,
    "unavailable": 503,
    "stream_full": 503,  # back-pressure: a stream at its cap that a group still needs
    "memory_full": 503,  # the server's memory at FANOUT_MEMORY_LIMIT of its maxmemory
}
KEEP_SECONDS = 2 * 3600
FLUSH_EVERY = 2.0
#: Refusals kept in ``<P>:{refusals}:latest`` (and waiting in memory at most).
LATEST = 200
#: A longer detail is cut (a decoder's message can quote much of a body's path).
DETAIL_CHARS = 500


class Refusal(msgspec.Struct, frozen=True, kw_only=True):
    """One refused delivery, as kept in ``<P>:{refusals}:latest`` (fields: strings)."""

    at: str  # when (RFC 3339, UTC)
    status: int
    reason: str
    detail: str
    peer: str  # the sender's address (as the allowlist sees it)
    path: str
    headers: str  # the request's header names, comma-separated; never a value

    def fields(self) -> dict[str, str]:
        return {name: str(getattr(self, name)) for name in self.__struct_fields__}

    @classmethod
    def from_fields(cls, fields: dict[bytes, bytes]) -> Refusal:
        text = {k.decode(): v.decode(errors="replace") for k, v in fields.items()}
        known = {k: v for k, v in text.items() if k in cls.__struct_fields__}
        return msgspec.convert(known, cls, strict=False)


def _minute(now: float | None = None) -> int:
    return int((time.time() if now is None else now) // 60)


class Refusals:
    """This process's refusal counts, flushed into Redis."""

    def __init__(self, redis: Client, keys: Keys, timeout: float = 2.0) -> None:
        self._redis = redis
        self._keys = keys
        self._timeout = timeout
        self._pending: Counter[tuple[int, str]] = Counter()
        self._latest: deque[Refusal] = deque(maxlen=LATEST)
        #: Minutes before this one are deleted (a day back at the first flush).
        self._swept: int | None = None

    def count(self, reason: str, now: float | None = None) -> None:
        """Note one refusal (in memory; ``flush`` writes it)."""
        self._pending[_minute(now), reason] += 1

    def note(self, refusal: Refusal) -> None:
        """Keep one refusal's details for ``<P>:{refusals}:latest`` (in memory until ``flush``)."""
        self._latest.append(refusal)

    async def flush(self) -> None:
        """Add the counts noted so far to Redis; on failure keep them for the next flush."""
        if not self._pending and not self._latest:
            return
        taken, self._pending = self._pending, Counter()
        latest, self._latest = self._latest, deque(maxlen=LATEST)
        oldest = _minute() - KEEP_SECONDS // 60
        try:
            async with asyncio.timeout(self._timeout):
                async with self._redis.pipeline(transaction=False) as pipe:
                    for (minute, reason), n in taken.items():
                        if minute < oldest:
                            continue
                        pipe.hincrby(self._keys.refusals(minute), reason, n)
                    swept = oldest - 24 * 60 if self._swept is None else self._swept
                    for minute in range(max(swept, oldest - 24 * 60), oldest):
                        # Not pipe.unlink: on a cluster pipeline that is a coroutine (a
                        # multi-key command split by slot), never queued nor awaited.
                        pipe.execute_command("UNLINK", self._keys.refusals(minute))
                    for refusal in latest:
                        pipe.xadd(
                            self._keys.refusals_latest(),
                            refusal.fields(),  # type: ignore[arg-type]
                            maxlen=LATEST,
                            approximate=False,
                        )
                    await pipe.execute()
            self._swept = oldest
        except (RedisError, OSError, TimeoutError) as exc:
            logger.debug("refusal counts not written yet: %s", exc)
            taken.update(self._pending)
            self._pending = Counter({k: n for k, n in taken.items() if k[0] >= oldest})
            latest.extend(self._latest)
            self._latest = latest

    async def run(self) -> None:
        """Flush every ``FLUSH_EVERY`` seconds until cancelled, then once more."""
        try:
            while True:
                await asyncio.sleep(FLUSH_EVERY)
                await self.flush()
        finally:
            await asyncio.shield(self.flush())


async def history(
    redis: Client, keys: Keys, minutes: int = 60, now: float | None = None
) -> dict[str, Any]:
    """The last ``minutes`` minutes: ``{"start": ms, "reasons": {reason: [count per minute]}}``."""
    last = _minute(now)
    first = last - minutes + 1
    async with redis.pipeline(transaction=False) as pipe:
        for minute in range(first, last + 1):
            pipe.hgetall(keys.refusals(minute))
        rows: list[Any] = await pipe.execute()
    reasons: dict[str, list[int]] = {}
    for n, row in enumerate(rows):
        for reason, count in (row or {}).items():
            name = reason.decode() if isinstance(reason, bytes) else str(reason)
            reasons.setdefault(name, [0] * minutes)[n] = int(count)
    return {"start": first * 60_000, "reasons": reasons, "status": STATUS}


async def latest(redis: Client, keys: Keys, count: int = 50) -> list[tuple[str, Refusal]]:
    """The newest ``count`` refusals, newest first, with their entry ids."""
    rows = replies.rows(await redis.xrevrange(keys.refusals_latest(), count=count))
    return [(entry_id, Refusal.from_fields(fields)) for entry_id, fields in rows]
