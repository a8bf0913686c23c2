"""Refused deliveries per minute and reason, kept in Redis for the dashboard.

Every receiver process counts its refusals in memory (``count``, no I/O on the
request path) and adds them to Redis every few seconds (``flush``): one
``HINCRBY`` per minute and reason into ``<P>:{refusals}:<minute>``, a hash
that expires after ``KEEP_SECONDS``. So the figures are the sum over every
worker and every machine sharing the Redis, survive restarts, and are there
when the page opens. Counts that cannot be written (Redis is down: exactly
when 503s happen) stay in memory and go with the next flush; at most
``KEEP_SECONDS`` worth are held.

``/metrics`` (``fanout_deliveries_total{outcome}``) counts the same refusals
for Prometheus; this exists because a dashboard has no Prometheus to ask.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from typing import Any

from redis.exceptions import RedisError

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
}
KEEP_SECONDS = 2 * 3600
FLUSH_EVERY = 2.0


def _minute(now: float | None = None) -> int:
    return int((time.time() if now is None else now) // 60)


class Refusals:
    """This process's refusal counts, flushed into Redis."""

    def __init__(self, redis: Client, keys: Keys, timeout: float = 2.0) -> None:
        self._redis = redis
        self._keys = keys
        self._timeout = timeout
        self._pending: Counter[tuple[int, str]] = Counter()

    def count(self, reason: str, now: float | None = None) -> None:
        """Note one refusal (in memory; ``flush`` writes it)."""
        self._pending[_minute(now), reason] += 1

    async def flush(self) -> None:
        """Add the counts noted so far to Redis; on failure keep them for the next flush."""
        if not self._pending:
            return
        taken, self._pending = self._pending, Counter()
        oldest = _minute() - KEEP_SECONDS // 60
        try:
            async with asyncio.timeout(self._timeout):
                async with self._redis.pipeline(transaction=False) as pipe:
                    for (minute, reason), n in taken.items():
                        if minute < oldest:
                            continue
                        key = self._keys.refusals(minute)
                        pipe.hincrby(key, reason, n)
                        pipe.expire(key, KEEP_SECONDS)
                    await pipe.execute()
        except (RedisError, OSError, TimeoutError) as exc:
            logger.debug("refusal counts not written yet: %s", exc)
            taken.update(self._pending)
            self._pending = Counter({k: n for k, n in taken.items() if k[0] >= oldest})

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
