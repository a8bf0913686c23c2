"""A lease in Redis: at most one poller calls the Voucherify API at a time.

The lease is redis-py's own ``redis.asyncio.lock.Lock`` (a key holding a random
token, set with ``NX PX``; extend and release compare the token in a script).
What Lock does not do, and this module adds, is keep it: ``kept()`` renews the
lease every third of its time to live in a background task, and ``held`` tells
the poller whether it still holds it, so a holder that stops (crash, pause, lost
network) loses it when it expires and another poller takes over. The writes
made under the lease compare ``token`` first, so a poller that lost the lease
cannot undo its successor's work.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import AsyncIterator

from redis.asyncio.lock import Lock
from redis.exceptions import LockNotOwnedError, RedisError

from ..errors import FanoutError
from ..streams.connection import Client

logger = logging.getLogger("service.poll")


class LeaseLost(FanoutError):
    """The lease expired or was taken over while work was under way."""


class Lease:
    """One holder's handle on the lease key."""

    def __init__(self, redis: Client, key: str, *, ttl: float = 30.0) -> None:
        self.key = key
        self.token = secrets.token_hex(16)
        self.ttl = ttl
        self.held = False
        # Not thread-local: the token belongs to this handle, whatever task renews it.
        self._lock = Lock(redis, key, timeout=ttl, blocking=False, thread_local=False)

    async def try_acquire(self) -> bool:
        """Take the lease when free, or renew it when ours; ``held`` says which it is now."""
        try:
            taken = await self._take()
        except (RedisError, OSError) as exc:
            # Unknown state: act as if lost, the key expires on its own.
            logger.warning("lease %s: redis error (%s), standing by", self.key, exc)
            taken = False
        if self.held and not taken:
            logger.warning("lease %s lost; another poller takes over", self.key)
        self.held = taken
        return taken

    async def _take(self) -> bool:
        if self._lock.local.token is not None:  # ours before: renew if still ours
            with contextlib.suppress(LockNotOwnedError):
                return await self._lock.reacquire()
        return bool(await self._lock.acquire(token=self.token))

    async def release(self) -> None:
        if not self.held:
            return
        self.held = False
        try:
            await self._lock.release()
        except LockNotOwnedError:
            pass  # expired or taken over meanwhile: nothing of ours to delete
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
