"""A lease in Redis: at most one poller calls the Voucherify API at a time.

The lease key holds ``"<token> <expires at, ms of the server's clock>"`` and
carries no key TTL: under a ``volatile-*`` maxmemory policy (the managed-Redis
default) the server evicts keys with a TTL first, and an evicted lease would let
a second poller in while the first still works. Its expiry lives in its value
instead, and every script that reads it compares it with the server's own
``TIME``: take (free, expired, or ours: renew), release (only ours), and the
writes made under the lease (``held_by`` in ``poller.SET_MARK_LUA``), so a poller
that lost the lease cannot undo its successor's work. A value without an expiry
is a lease of an older version (redis-py's ``Lock``: a token with ``PX``): held
while its key lives.

``kept()`` renews the lease every third of its time to live in a background
task, and ``held`` tells the poller whether it still holds it, so a holder that
stops (crash, pause, lost network) loses it when it expires and another poller
takes over.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import AsyncIterator

from redis.exceptions import RedisError

from ..errors import FanoutError
from ..streams.connection import Client

logger = logging.getLogger("service.poll")

#: Lua: ``held_by(key, token)`` is whether ``token`` holds the lease now.
LEASE_PRELUDE = """
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- owner, expiry (nil: an older version's lease, kept by its key TTL); nil when free
local function lease_of(key)
  local value = redis.call('GET', key)
  if not value then return nil end
  local owner, expires = string.match(value, '^(%S+) (%d+)$')
  if not owner then return value, nil end
  if tonumber(expires) <= now_ms() then return nil end
  return owner, tonumber(expires)
end

local function held_by(key, token)
  return lease_of(key) == token
end
"""

# Take the lease when free or expired, renew it when ours.  KEYS: lease.  ARGV: token, ttl ms.
TAKE_LUA = (
    LEASE_PRELUDE
    + """
local owner = lease_of(KEYS[1])
if owner and owner ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1] .. ' ' .. (now_ms() + tonumber(ARGV[2])))
return 1
"""
)

# Give the lease up if it is ours.  KEYS: lease.  ARGV: token.
RELEASE_LUA = (
    LEASE_PRELUDE
    + """
if not held_by(KEYS[1], ARGV[1]) then return 0 end
redis.call('DEL', KEYS[1])
return 1
"""
)


def remaining_ms(value: bytes | str | None, now_ms: int) -> int:
    """Milliseconds a lease value has left by ``now_ms`` (0 when free or expired; -1 for
    an older version's lease, whose key TTL tells)."""
    if value is None:
        return 0
    text = value.decode() if isinstance(value, bytes) else value
    _, _, expires = text.partition(" ")
    if not expires.isdigit():
        return -1
    return max(0, int(expires) - now_ms)


class LeaseLost(FanoutError):
    """The lease expired or was taken over while work was under way."""


class Lease:
    """One holder's handle on the lease key."""

    def __init__(self, redis: Client, key: str, *, ttl: float = 30.0) -> None:
        self.key = key
        self.token = secrets.token_hex(16)
        self.ttl = ttl
        self.held = False
        self._take = redis.register_script(TAKE_LUA)
        self._release = redis.register_script(RELEASE_LUA)

    async def try_acquire(self) -> bool:
        """Take the lease when free, or renew it when ours; ``held`` says which it is now."""
        try:
            taken = bool(await self._take(keys=[self.key], args=[self.token, int(self.ttl * 1000)]))
        except (RedisError, OSError) as exc:
            # Unknown state: act as if lost, the lease expires on its own.
            logger.warning("lease %s: redis error (%s), standing by", self.key, exc)
            taken = False
        if self.held and not taken:
            logger.warning("lease %s lost; another poller takes over", self.key)
        self.held = taken
        return taken

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
                # A cancel that landed inside the Redis call can come out of it as a
                # Redis error, which try_acquire takes for a lost lease: the task is
                # still marked cancelling, so honour that here, or this block's exit
                # waits for it forever (seen: 1 in 11 runs of two pollers on the loaded
                # test machine, the task asleep in this loop while "cancelling").
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    raise asyncio.CancelledError

        task = asyncio.create_task(keep())
        try:
            yield self
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await self.release()
