"""The upgrade window: while an older version's dedup keys may be left, they are read.

Before the dedup records of ``records.py`` (fields of bucket hashes), each record
was a key of its own with a TTL of the dedup window (``keys.LEGACY_KINDS``). The
publish scripts read those keys too, so a resend across an upgrade is still a
duplicate; that costs each script one or two reads (and a call) more. Once no
such key is left, nothing can be found in them: ``LegacyWindow.watch`` looks with
SCAN (stopping at the first found) when the app starts and every
``LEGACY_SCAN_EVERY`` seconds until none is left, then closes the window for this
process, and the publisher names no legacy key any more (the scripts read none).
The window closes a dedup window after the last older instance stopped writing.
A scan that fails leaves the window open and is tried again later; a scan the
server refuses (a Redis user without ``+scan``, ``NOPERM``) is logged once at
warning, as it keeps every delivery reading those keys (one or two calls more
per script) for as long as the process runs.
"""

from __future__ import annotations

import asyncio
import logging

from redis.exceptions import NoPermissionError, RedisError

from .connection import Client
from .keys import Keys

logger = logging.getLogger("service.legacy")

#: Seconds between two looks for the dedup keys of an older version.
LEGACY_SCAN_EVERY = 60.0


class LegacyWindow:
    """Whether the publish scripts still read the dedup keys of an older version."""

    __slots__ = ("_keys", "_redis", "_timeout", "open")

    def __init__(self, redis: Client, keys: Keys, timeout: float) -> None:
        self._redis = redis
        self._keys = keys
        self._timeout = timeout
        #: Open until a scan finds no such key (a process that never looks keeps reading).
        self.open = True

    async def watch(self, every: float = LEGACY_SCAN_EVERY) -> None:
        """Look for a legacy key now and every ``every`` seconds until none is left."""
        refused = False
        while self.open:
            try:
                async with asyncio.timeout(max(self._timeout, 60.0)):
                    left = await self.left()
            except NoPermissionError as exc:
                left = True
                if not refused:
                    refused = True
                    logger.warning(
                        "cannot look for dedup keys of an older version, so they are still "
                        "read on every delivery: give the Redis user +scan",
                        extra={"fields": {"error": str(exc)}},
                    )
            except (RedisError, OSError, TimeoutError):
                left = True
            if not left:
                self.open = False
                logger.info("no dedup keys of an older version left: no longer read")
                return
            await asyncio.sleep(every)

    async def left(self) -> bool:
        """Whether any dedup key of an older version is left under the prefix."""
        async for key in self._redis.scan_iter(match=f"{self._keys.prefix}:*", count=1000):
            if self._keys.is_legacy(key.decode() if isinstance(key, bytes) else key):
                return True
        return False
