"""While a handler runs, its entry stays claimed by this consumer, and runs nowhere else.

XAUTOCLAIM hands an entry to another consumer once it has been idle (neither
delivered nor claimed) for ``min_idle``. A handler that runs longer, also past
its timeout when it holds off cancellation to clean up, would then run a second
time at once. So every entry whose handler has not returned yet is:

* in ``Running``: a read or claim of it in this process is not dispatched again;
* claimed afresh every ``interval`` seconds (``KEEP_CLAIMS_LUA``: idle time reset,
  delivery count unchanged), so no other consumer's XAUTOCLAIM finds it idle.

What this cannot cover: a handler that blocks the event loop (no keep-alive can
run meanwhile; use ``asyncio.to_thread`` for blocking work), work a handler
leaves behind when it returns (a task it shielded or started), and Redis being
unreachable for longer than ``min_idle`` while a handler runs.
"""

from __future__ import annotations

import asyncio
import logging

from redis.exceptions import RedisError

from ..streams import replies
from ..streams.connection import Client
from ..streams.scripts import KEEP_CLAIMS_LUA

logger = logging.getLogger("service.consumer")


class Running:
    """The entries of one consumer whose handlers have not returned, and their keep-alive."""

    def __init__(self, redis: Client, group: str, consumer: str, *, interval: float) -> None:
        self._group = group
        self._consumer = consumer
        self.interval = interval
        self._entries: dict[str, set[str]] = {}  # stream -> entry ids
        self._keep = redis.register_script(KEEP_CLAIMS_LUA)
        self.lost = 0

    def __contains__(self, item: tuple[str, str]) -> bool:
        stream, entry_id = item
        return entry_id in self._entries.get(stream, ())

    def add(self, stream: str, entry_id: str) -> None:
        self._entries.setdefault(stream, set()).add(entry_id)

    def discard(self, stream: str, entry_id: str) -> None:
        ids = self._entries.get(stream)
        if ids is not None:
            ids.discard(entry_id)
            if not ids:
                del self._entries[stream]

    async def keep(self) -> None:
        """Claim the running entries afresh every ``interval`` seconds, until cancelled."""
        while True:
            await asyncio.sleep(self.interval)
            for stream, ids in list(self._entries.items()):
                await self._renew(stream, sorted(ids))

    async def _renew(self, stream: str, ids: list[str]) -> None:
        try:
            lost = await self._keep(keys=[stream], args=[self._group, self._consumer, *ids])
        except (RedisError, OSError, TimeoutError) as exc:
            # Tried again next round; only an outage longer than min_idle lets another take it.
            logger.warning(
                "could not keep the claim on %d entries of %s: %s", len(ids), stream, exc
            )
            return
        for entry_id in map(replies.text, lost or ()):
            if (stream, entry_id) in self:
                self.lost += 1
                logger.error(
                    "entry %s of %s is no longer claimed by %s while its handler runs "
                    "(Redis unreachable for longer than min_idle, or removed by an operator)",
                    entry_id,
                    stream,
                    self._consumer,
                )
