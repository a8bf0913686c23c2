"""The connections of one group-commit lane: the pool's, and those it keeps open.

A lane writes each batch on a connection and reads its replies back on it
(``group_commit.py``). Rather than handing it back to the pool after each batch
and asking for one before the next (two awaits, and a check that reads the
socket), it keeps up to ``KEPT`` open connections itself, so a batch can be
written the moment it is full, without a loop turn (``GroupCommit._send_early``).
A kept connection is written on only while it is open, nothing unexpected came
on it, and, under Sentinel, the primary has not changed nor begun failing over
since it was kept; otherwise it is closed and given back. When a batch meets a
connection that died (a restarted server), the lane's other kept connections go
too, and the one retry takes a connection the pool checks.
"""

from __future__ import annotations

import asyncio
from typing import Any

from redis.asyncio.connection import AbstractConnection

from .follow import Fenced, Follower
from .wire import Connections, read_replies, write_now

#: Connections a lane keeps open between batches: one per batch it has in flight.
KEPT = 4


class LaneConnections:
    """Where one lane's batches are written and read back (see the module)."""

    __slots__ = ("_closing", "_idle", "guard", "source")

    def __init__(self, source: Connections, guard: Follower | None) -> None:
        self.source = source
        self.guard = guard
        #: Connections kept open, each with the guard's epoch when kept.
        self._idle: list[tuple[AbstractConnection, int]] = []
        self._closing: set[asyncio.Task[None]] = set()

    def epoch(self) -> int:
        """The guard's epoch now (0 without Sentinel): what a batch is checked against."""
        return self.guard.epoch if self.guard is not None else 0

    def keep(self, connection: AbstractConnection, epoch: int) -> bool:
        """Keep ``connection`` open for a next batch; False when enough are kept."""
        if len(self._idle) >= KEPT:
            return False
        self._idle.append((connection, epoch))
        return True

    def drop_idle(self) -> None:
        """Close every kept connection (one was found dead, or the lane retired)."""
        while self._idle:
            self.let_go(self._idle.pop()[0])

    def take_idle(self) -> AbstractConnection | None:
        """A connection this lane holds open and may write on now, if any: connected, no
        end of stream or error seen on it, and under Sentinel taken before the primary's
        last change and not while a failover is under way (the pool hands out none then)."""
        guard = self.guard
        while self._idle:
            connection, epoch = self._idle.pop()
            stream = getattr(connection._parser, "_stream", None)
            if (
                connection.is_connected
                and stream is not None
                and not stream.at_eof()
                and stream.exception() is None
                and (guard is None or (guard.epoch == epoch and not guard.fenced))
            ):
                return connection
            self.let_go(connection)
        return None

    async def exchange(self, payload: bytes, count: int) -> list[Any]:
        """Write ``payload`` on a connection (one this lane holds open, else the pool's)
        and read ``count`` replies back (error replies as exceptions in the list)."""
        connection = self.take_idle()
        if connection is None:
            connection = await self.source.get_connection()
        epoch = self.epoch()
        try:
            if not write_now(connection, payload):
                await connection.send_packed_command(payload, check_health=False)
        except BaseException:
            self.let_go(connection)
            raise
        return await self.read(connection, count, epoch)

    async def read(self, connection: AbstractConnection, count: int, epoch: int) -> list[Any]:
        """The ``count`` replies of what was written on ``connection``; the connection is
        kept open for the lane's next batch, or dropped on failure."""
        guard = self.guard
        try:
            replies = await read_replies(connection, count)
            if guard is not None and guard.epoch != epoch:
                raise Fenced("the primary began failing over before the batch was confirmed")
        except BaseException:
            # Replies may still be on the wire: this connection cannot be reused.
            self.let_go(connection)
            raise
        if not self.keep(connection, epoch):
            await self.source.release(connection)
        return replies

    def let_go(self, connection: AbstractConnection) -> None:
        """Close ``connection`` and give it back to the pool, apart: closing can itself
        wait on a stalled server, and the callers get their answer (a 503) now."""
        cleanup = asyncio.get_running_loop().create_task(self._discard(connection))
        self._closing.add(cleanup)
        cleanup.add_done_callback(self._closing.discard)

    async def _discard(self, connection: AbstractConnection) -> None:
        try:
            await connection.disconnect()
        finally:
            await self.source.release(connection)
