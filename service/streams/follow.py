"""Under Sentinel, follow the primary: nothing goes to a server Sentinel no longer names.

A ``Follower`` belongs to the connection pool of a ``redis+sentinel://`` client
(``connection.connect``). It listens to every Sentinel's events on a connection of
its own and, as a fallback while a subscription is down or missed something, asks
``SENTINEL GET-MASTER-ADDR-BY-NAME`` and ``SENTINEL MASTER`` every second (every
0.1 s while a failover is under way).

It *fences* the primary as soon as a failover of it starts (``+try-failover``, or
any later step of that failover: ``+selected-slave``, ``+promoted-slave``...) and
lifts the fence when Sentinel names a primary again: the promoted replica
(``+promoted-slave``, from which on ``GET-MASTER-ADDR-BY-NAME`` names it, or
``+switch-master``), or the same one when the failover was aborted. While fenced no
connection is handed out; each change raises ``epoch``, so a batch that was sent
before and answered after it is not acknowledged (``group_commit``).

Why the start of the failover and not ``+switch-master``: measured on Valkey 9 with
two replicas and a planned ``SENTINEL FAILOVER`` (tests/support/sentinel.py), the
replica became a master 0.24 s after ``+try-failover``, ``+promoted-slave`` came
0.58 s after that, the other replica was told to follow it 0.05 s later and
``+switch-master`` 1.0 s later still. Until that reconfiguration the old primary
keeps its other replica, so a ``WAIT 1`` on it is confirmed for writes the new
primary never gets; and the old primary itself takes writes until Sentinel demotes
it, about 10 s later.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence

from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from ..errors import FanoutError
from .sentinel_events import Address, master_state, parse_event, text, to_address

logger = logging.getLogger("service.redis")


#: Steps of a failover of a master: each names the master it fails over.
_STARTS = (
    "+try-failover",
    "+elected-leader",
    "+failover-state-select-slave",
    "+selected-slave",
    "+failover-state-send-slaveof-noone",
    "+failover-state-wait-promotion",
    "+promoted-slave",
    "+failover-state-reconf-slaves",
)
_ABORTED = "-failover-abort-"
#: Sentinel learned of a replica of a master (at its INFO of the master, every 10 s):
#: one it may promote from now on.
_REPLICA = "+slave"
_CHANNELS = (
    *_STARTS,
    "+switch-master",
    _REPLICA,
    "-failover-abort-not-elected",
    "-failover-abort-no-good-slave",
    "-failover-abort-slave-timeout",
)
#: Seconds between two questions to a Sentinel, and while a failover is under way.
POLL = 1.0
POLL_FENCED = 0.1


class Fenced(FanoutError, RedisConnectionError):
    """The primary a batch went to began failing over before the batch was answered:
    its answer proves nothing (a passing error: the sender gets 503, or a retry
    on the new primary)."""


class Follower:
    """Where the primary of ``name`` is, as Sentinel says, and whether it is failing over."""

    def __init__(
        self,
        sentinels: Sequence[Redis],
        name: str,
        *,
        timeout: float,
        on_change: Callable[[], Awaitable[None]],
    ) -> None:
        self._sentinels = list(sentinels)
        self.name = name
        self._timeout = timeout
        self._on_change = on_change
        #: The primary Sentinel names; None until it was asked.
        self.address: Address | None = None
        #: Raised on every fence and every new primary.
        self.epoch = 0
        # Sentinels reporting a failover of `address`, each until when it may last at
        # most (Sentinel's failover-timeout: one that died mid-way fences no longer).
        self._failing_over: dict[int, float] = {}
        self._failover_timeout = 180.0  # Sentinel's default, until it says its own
        self._listening: set[int] = set()
        self._changed: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        # A Sentinel's answer asked before the last change is stale; a Sentinel that
        # has not yet learned a failover names the old primary with an older epoch.
        self._changed_at = 0.0
        self._config_epoch = -1
        self.switched_at: float | None = None  # monotonic time of the last new primary
        self._on_switch: list[Callable[[], None]] = []
        self._on_replica: list[Callable[[], None]] = []
        self._stopping = False

    @property
    def fenced(self) -> bool:
        if self._failing_over:
            now = time.monotonic()
            for sentinel, until in list(self._failing_over.items()):
                if until <= now:
                    del self._failing_over[sentinel]  # its failover timed out
        return bool(self._failing_over)

    # --- what the pool asks ---------------------------------------------------

    def start(self) -> None:
        """Follow from now on, in the running loop (idempotent)."""
        loop = asyncio.get_running_loop()
        if self._task is None or self._task.done() or self._task.get_loop() is not loop:
            self._changed = asyncio.Event()
            self._stopping = False
            self._task = loop.create_task(self._run(), name=f"sentinel-follow-{self.name}")

    async def stop(self) -> None:
        """Stop following, within about a second whatever a Redis call in flight does.

        A cancel that lands as a timeout inside a Redis call fires is absorbed (it
        becomes a TimeoutError, which the loops take for a lost answer): the flag
        ends each loop at its next turn, and the cancel is repeated meanwhile."""
        self._stopping = True
        task, self._task = self._task, None
        await _cancel(task)

    async def primary(self, within: float | None = None) -> Address:
        """The primary to write to, waiting (up to ``within`` seconds) while it is fenced.

        ``Fenced`` when no primary is named in time."""
        self.start()
        deadline = time.monotonic() + (self._timeout if within is None else within)
        while True:
            if self.address is None:
                await self._ask()
            if self.address is not None and not self.fenced:
                return self.address
            assert self._changed is not None
            left = deadline - time.monotonic()
            if left <= 0:
                if self.address is None:
                    raise Fenced(f"no Sentinel named the primary of {self.name!r} in time")
                raise Fenced(f"no primary of {self.name!r}: a failover of it is under way")
            changed = self._changed
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), min(left, POLL_FENCED))

    def on_switch(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` (in the loop, not awaited) whenever a new primary is named."""
        self._on_switch.append(callback)

    def on_replica(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` (in the loop, not awaited) when a Sentinel says it learned of
        a replica of the primary: one it could promote from then on."""
        self._on_replica.append(callback)

    # --- what changes it ------------------------------------------------------

    def _notify(self) -> None:
        self._changed_at = time.monotonic()
        if self._changed is not None:
            self._changed.set()
            self._changed = asyncio.Event()

    async def _fence(self, sentinel: int, why: str) -> None:
        first = not self.fenced
        self._failing_over[sentinel] = time.monotonic() + self._failover_timeout
        if first:
            self.epoch += 1
            logger.warning(
                "redis primary fenced: a failover of it started",
                extra={"fields": {"primary": text(self.address), "event": why}},
            )
            await self._on_change()
            self._notify()

    def _unfence(self, sentinel: int) -> None:
        if sentinel in self._failing_over:
            del self._failing_over[sentinel]
            if not self.fenced:
                logger.warning(
                    "redis primary kept: the failover was abandoned",
                    extra={"fields": {"primary": text(self.address)}},
                )
                self._notify()

    async def _switch(self, address: Address, why: str, config_epoch: int | None = None) -> None:
        if address == self.address:
            return
        # Named by an event: newer than any epoch seen so far; by a question: its own.
        self._config_epoch = self._config_epoch + 1 if config_epoch is None else config_epoch
        old, self.address = self.address, address
        self._failing_over.clear()
        self.epoch += 1
        if old is not None:
            self.switched_at = time.monotonic()
            logger.warning(
                "redis primary switched",
                extra={"fields": {"old": text(old), "new": text(address), "event": why}},
            )
        await self._on_change()
        self._notify()
        if old is not None:
            for callback in self._on_switch:
                callback()

    async def handle(self, sentinel: int, channel: str, data: str) -> None:
        """One event from Sentinel number ``sentinel``."""
        name, master, named = parse_event(channel, data)
        if name != self.name or master is None:
            return
        if channel == "+switch-master" and named is not None:
            await self._switch(named, channel)
        elif master != self.address:
            return  # about a primary we no longer write to
        elif channel == _REPLICA:
            for callback in self._on_replica:
                callback()
        elif channel == "+promoted-slave" and named is not None:
            # From this step on Sentinel names the promoted replica, and the
            # failover is past the point where it could be abandoned.
            await self._switch(named, channel)
        elif channel in _STARTS:
            await self._fence(sentinel, channel)
        elif channel.startswith(_ABORTED):
            self._unfence(sentinel)

    # --- the loops -------------------------------------------------------------

    async def _run(self) -> None:
        listeners = [
            asyncio.create_task(self._listen(n, sentinel))
            for n, sentinel in enumerate(self._sentinels)
        ]
        try:
            while not self._stopping:
                # ValueError, TypeError: an answer of an unexpected shape; ask again later.
                with contextlib.suppress(RedisError, OSError, TimeoutError, ValueError, TypeError):
                    await self._ask()
                if self.fenced:
                    await asyncio.sleep(POLL_FENCED)
                elif len(self._listening) < len(self._sentinels):
                    await asyncio.sleep(POLL / 4)  # the fallback while a subscription is down
                else:
                    await asyncio.sleep(POLL)
        finally:
            for listener in listeners:
                await _cancel(listener)

    async def _ask(self) -> None:
        """Ask the Sentinels what primary they name and whether a failover of ours is
        under way there: in turn until one answers, or all of them while fenced (only
        the Sentinel that leads a failover reports it; one that did not hear of it yet
        names the old primary with an older configuration epoch)."""
        if not self.fenced:
            for n in range(len(self._sentinels)):
                if await self._ask_one(n):
                    return
            return
        await asyncio.gather(*(self._ask_one(n) for n in range(len(self._sentinels))))

    async def _ask_one(self, n: int) -> bool:
        """Sentinel ``n``'s answer applied; False when it gave none."""
        asked = time.monotonic()
        try:
            async with asyncio.timeout(self._timeout):
                async with self._sentinels[n].pipeline(transaction=False) as pipe:
                    pipe.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.name)
                    pipe.execute_command("SENTINEL", "MASTER", self.name)
                    named, state = await pipe.execute()
        except (RedisError, OSError, TimeoutError):
            return False
        try:
            address = to_address(*named)
            master = master_state(state)
        except (TypeError, ValueError):  # no master of that name, or an answer of another shape
            return False
        if master.failover_timeout is not None:
            self._failover_timeout = master.failover_timeout
        if asked < self._changed_at:
            return True  # an event changed things meanwhile: ask again next time
        if address != self.address:
            if master.epoch < self._config_epoch:
                return False  # this Sentinel has not heard of the failover yet
            await self._switch(address, "SENTINEL GET-MASTER-ADDR-BY-NAME", master.epoch)
        elif "failover_in_progress" in master.flags and master.address == self.address:
            await self._fence(n, "SENTINEL MASTER: failover_in_progress")
        else:
            self._unfence(n)
        return True

    async def _listen(self, n: int, sentinel: Redis) -> None:
        """Sentinel ``n``'s events, on a connection of their own, until cancelled."""
        backoff = 0.1
        while not self._stopping:
            pubsub = sentinel.pubsub()
            try:
                await pubsub.subscribe(*_CHANNELS)
                self._listening.add(n)
                backoff = 0.1
                quiet_since = time.monotonic()
                pinged = False
                while not self._stopping:
                    message = await pubsub.get_message(timeout=1.0)
                    now = time.monotonic()
                    if message is None:
                        if now - quiet_since > 3 * POLL:
                            if pinged:
                                raise TimeoutError("the Sentinel answers no PING")
                            await pubsub.ping()
                            pinged = True
                        continue
                    quiet_since, pinged = now, False
                    if message["type"] == "message":
                        await self.handle(n, text(message["channel"]), text(message["data"]))
            except (RedisError, OSError, TimeoutError, ValueError, TypeError) as exc:
                logger.debug("sentinel subscription lost: %r", exc)
            finally:
                self._listening.discard(n)
                with contextlib.suppress(RedisError, OSError):
                    await pubsub.aclose()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, POLL)


async def _cancel(task: asyncio.Task[None] | None, within: float = 3.0) -> None:
    """Cancel ``task`` and wait for it, cancelling again every 0.1 s, at most ``within``."""
    for _ in range(int(within / 0.1)):
        if task is None or task.done():
            return
        task.cancel()
        await asyncio.wait({task}, timeout=0.1)
    logger.warning("a Sentinel follower task did not stop; left behind")
