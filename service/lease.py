"""A lease in Redis: at most one poller calls the Voucherify API at a time.

The lease is a key holding a random token, set with ``NX PX``. Its holder renews
it every third of its time to live; a holder that stops (crash, pause, lost
network) loses it when it expires and another poller takes over. Renewal,
release and the writes made under the lease compare the token first, in a
script, so a poller that lost the lease cannot undo its successor's work.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import AsyncIterator
from typing import TypeAlias

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import RedisError

logger = logging.getLogger("service.poll")

Client: TypeAlias = "Redis | RedisCluster"

# Take the lease when free, or extend it when already ours.
# KEYS: lease.  ARGV: token, ttl ms.
ACQUIRE_LUA = """
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if holder then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"""

# Delete the lease only if it is still ours.  KEYS: lease.  ARGV: token.
RELEASE_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class LeaseLost(Exception):
    """The lease expired or was taken over while work was under way."""


class Lease:
    """One holder's handle on the lease key."""

    def __init__(self, redis: Client, key: str, *, ttl: float = 30.0) -> None:
        self.key = key
        self.token = secrets.token_hex(16)
        self.ttl = ttl
        self.held = False
        self._acquire = redis.register_script(ACQUIRE_LUA)
        self._release = redis.register_script(RELEASE_LUA)

    async def try_acquire(self) -> bool:
        """Take or extend the lease; ``held`` says whether it is ours now."""
        try:
            reply = await self._acquire(keys=[self.key], args=[self.token, int(self.ttl * 1000)])
        except (RedisError, OSError) as exc:
            # Unknown state: act as if lost, the key expires on its own.
            logger.warning("lease %s: redis error (%s), standing by", self.key, exc)
            reply = 0
        if self.held and not reply:
            logger.warning("lease %s lost; another poller takes over", self.key)
        self.held = bool(reply)
        return self.held

    async def release(self) -> None:
        if not self.held:
            return
        self.held = False
        try:
            await self._release(keys=[self.key], args=[self.token])
        except (RedisError, OSError) as exc:
            logger.warning("lease %s: not released (%s); it expires on its own", self.key, exc)

    def check(self) -> None:
        """Raise ``LeaseLost`` unless the lease is ours."""
        if not self.held:
            raise LeaseLost(f"lease {self.key} is no longer held")

    @contextlib.asynccontextmanager
    async def kept(self) -> AsyncIterator[Lease]:
        """Keep trying to take the lease, and renew it once held, until the block ends."""
        await self.try_acquire()

        async def keep() -> None:
            while True:
                await asyncio.sleep(self.ttl / 3)
                await self.try_acquire()

        task = asyncio.create_task(keep())
        try:
            yield self
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await self.release()
