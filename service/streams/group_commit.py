"""Group commit: script calls issued in the same event-loop turn share round trips.

Every delivery still runs its own script, atomically, and gets its own reply;
only the network trip is shared: one pipeline write, one read of all replies
(a burst goes out ``EARLY_BATCH`` calls at a time, the rest at the turn's end),
and, when a durability mode is set, one WAITAOF or WAIT for the whole batch on
the connection that wrote it (WAIT and WAITAOF count that connection's writes
only). A ``GroupCommit`` is one *lane*: the calls of one primary. A single server
or Sentinel's master has one lane; a cluster has one per primary (``routing.py``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.connection import AbstractConnection
from redis.commands.core import AsyncScript
from redis.exceptions import (
    AskError,
    ClusterDownError,
    ConnectionError,
    NoScriptError,
    ResponseError,
    TryAgainError,
)

from .. import metrics
from .follow import Follower
from .lane_connections import LaneConnections
from .waits import NotConfirmed, Wait
from .wire import Connections, write_now
from .wire import pack as pack  # re-exported: tests and bench pack commands with it

#: Calls in one pipeline at most; more wait for the next one.
MAX_BATCH = 256
#: Pipelines in flight at once (each holds a pooled connection).
MAX_IN_FLIGHT = 4
#: Calls queued in one loop turn that go out at once, mid-turn, rather than at its end.
EARLY_BATCH = 8


@dataclass(slots=True)
class _Call:
    script: AsyncScript
    command: bytes
    future: asyncio.Future[list[Any]]
    deadline: float  # event-loop time by which the caller must have an answer
    keys: tuple[str, ...] = ()
    reloaded: bool = False
    #: Sent after ASKING (a slot being migrated: the node of an ASK redirect).
    asking: bool = False
    #: Redirects followed so far (cluster).
    hops: int = 0

    def settle(self, reply: Any) -> None:
        if self.future.done():
            return  # the caller gave up waiting; the reply is not needed
        if isinstance(reply, BaseException):
            self.future.set_exception(reply)
        else:
            self.future.set_result(reply)


#: ``ASKING`` in RESP: sent before a call redirected by ASK.
_ASKING = pack(("ASKING",))


def _due(batch: list[_Call]) -> list[_Call]:
    """The calls of ``batch`` to send; those past their deadline fail unsent (TimeoutError)."""
    now = asyncio.get_running_loop().time()
    for call in batch:
        if call.deadline <= now:
            call.settle(TimeoutError("no reply from Redis in time"))
    return [call for call in batch if not call.future.done()]


def _payload(batch: list[_Call], wait: Wait | None) -> tuple[bytes, int]:
    """A batch's bytes, its wait last, and how many replies they get."""
    payload = b"".join(_ASKING + c.command if c.asking else c.command for c in batch)
    count = len(batch) + sum(call.asking for call in batch)
    if wait is not None:
        payload += wait.command
        count += wait.replies
    return payload, count


@dataclass(slots=True)
class _Sent:
    """A batch written already (``GroupCommit._send_early``): what reading it needs."""

    connection: AbstractConnection
    payload: bytes
    count: int
    wait: Wait | None
    epoch: int


@dataclass(slots=True)
class GroupCommit:
    """One lane: queues script calls and flushes them as pipelines, each followed by its
    durability wait on the same connection: at the end of the loop turn, or at once when
    ``EARLY_BATCH`` calls are queued and a kept connection is free (``_send_early``).

    The hot path drives redis-py's connections directly: commands are packed once into
    one buffer, written once, and the replies read back in order. Measured against
    redis-py's own ``pipeline(transaction=False)`` with ``evalsha`` (``python -m
    bench.pipeline``, COMPLETE_LUA with a real event, local Redis, best of 3): 58,900 vs
    39,200 calls/s in batches of 256 (1.50x), 43,100 vs 23,400 in batches of 16 (1.84x),
    7,300 vs 5,700 one at a time (1.27x): the pipeline builds a command object per call
    and re-packs it at execute.

    Every call gets an answer within ``timeout`` seconds of being queued: a batch is
    bounded by the earliest deadline among its calls, and calls whose deadline passed
    while they waited for a free slot fail with ``TimeoutError`` without being sent.
    """

    #: A single server's client (its pool is used), or a cluster node's connections.
    source: Redis | Connections
    timeout: float
    #: The wait after each batch for this lane's primary (None: none), asked per batch;
    #: raising fails the batch unsent (a primary without its replicas: a 503 at once).
    wait: Callable[[str], Wait | None] | None = None
    #: Called when the server answers ``wait`` with an error; True makes the batch
    #: succeed without it (``durability auto`` on a server that cannot wait).
    on_wait_refused: Callable[[Exception], bool] | None = None
    #: The lane's primary, as ``wait`` knows it: ``""`` for a single server.
    name: str = ""
    #: Cluster only: calls answered MOVED, ASK, TRYAGAIN or CLUSTERDOWN (nothing
    #: written), with their error, handed back to be sent again where they belong.
    redirect: Callable[[list[tuple[_Call, ResponseError]]], Awaitable[None]] | None = None
    #: Under Sentinel, the primary's follower: a batch answered after a failover of
    #: its primary began is not acknowledged (``Fenced``; the one retry goes to the
    #: new primary).
    guard: Follower | None = None
    #: Cluster only: told when a round trip failed (the node may have left).
    on_failure: Callable[[BaseException], None] | None = None
    _queue: list[_Call] = field(default_factory=list)
    _in_flight: set[asyncio.Task[None]] = field(default_factory=set)
    _scheduled: bool = False
    #: Its connections: the pool's, and those it keeps open between batches.
    _lines: LaneConnections = field(init=False)

    def __post_init__(self) -> None:
        self._lines = LaneConnections(self.connections, self.guard)

    @property
    def connections(self) -> Connections:
        source = self.source
        return source.connection_pool if isinstance(source, Redis) else source

    def call(
        self, script: AsyncScript, keys: tuple[str, ...], args: tuple[Any, ...]
    ) -> asyncio.Future[list[Any]]:
        """Queue one script call; the future gets its reply (or its error)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[Any]] = loop.create_future()
        command = pack(("EVALSHA", script.sha, len(keys), *keys, *args))
        self._queue.append(_Call(script, command, future, loop.time() + self.timeout, keys))
        if len(self._queue) >= EARLY_BATCH and len(self._in_flight) < MAX_IN_FLIGHT:
            self._send_early()
        if self._queue:
            self._schedule(loop)
        return future

    def _send_early(self) -> None:
        """Write the queued calls at once, on a connection this lane holds open, and read
        their replies in a task: the server works on them while this loop turn goes on.

        A burst (every connection answered together sends again together) is handled
        in one turn; flushed at its end, the server began only after the whole burst
        and the loop then waited for it (26-42% idle at 32 connections). Measured
        against that (docs/performance.md): 1.40-1.59x the deliveries per second,
        0.82-0.95x the CPU per delivery; batches of 4 to 16 did the same as 8.
        """
        lines = self._lines
        connection = lines.take_idle()
        if connection is None:
            return
        batch, self._queue = _due(self._queue[:MAX_BATCH]), self._queue[MAX_BATCH:]
        epoch = lines.epoch()  # (just taken out of the kept ones: there is room to keep it)
        if not batch:
            lines.keep(connection, epoch)
            return
        try:
            wait = self.wait(self.name) if self.wait is not None else None
        except Exception:  # the batch fails unsent: the usual path says why
            self._queue[:0] = batch
            lines.keep(connection, epoch)
            return
        payload, count = _payload(batch, wait)
        if not write_now(connection, payload):  # its transport is closing
            self._queue[:0] = batch
            lines.let_go(connection)
            return
        self._launch(batch, _Sent(connection, payload, count, wait, epoch))

    def put(self, call: _Call) -> None:
        """Queue a call made elsewhere (one redirected here from another lane)."""
        self._queue.append(call)
        self._schedule(asyncio.get_running_loop())

    def _schedule(self, loop: asyncio.AbstractEventLoop) -> None:
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._start)

    def _start(self) -> None:
        self._scheduled = False
        while self._queue and len(self._in_flight) < MAX_IN_FLIGHT:
            batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
            self._launch(batch, None)

    def _launch(self, batch: list[_Call], sent: _Sent | None) -> None:
        task = asyncio.create_task(self._flush(batch, sent))
        self._in_flight.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._in_flight.discard(task)
        if self._queue:
            self._schedule(asyncio.get_running_loop())

    def take_queue(self) -> list[_Call]:
        """The calls queued and not sent yet, taken out (the lane's primary left); the
        connections it kept open are closed."""
        self._lines.drop_idle()
        queued, self._queue = self._queue, []
        return queued

    async def _flush(self, batch: list[_Call], sent: _Sent | None = None) -> None:
        if sent is None:  # (a batch written already was taken through ``_due``)
            batch = _due(batch)
            if not batch:
                return
        metrics.batch(len(batch))
        started = time.perf_counter()
        try:
            async with asyncio.timeout_at(min(call.deadline for call in batch)):
                replies, unconfirmed = await self._round_trip(batch, sent)
            metrics.round_trip(time.perf_counter() - started)
        except Exception as exc:  # the round trip failed: every call fails with it
            for call in batch:
                call.settle(exc)
            if self.on_failure is not None:
                self.on_failure(exc)
            return
        retry, moved = [], []
        for call, reply in zip(batch, replies, strict=True):
            if isinstance(reply, NoScriptError) and not call.reloaded:
                retry.append(call)  # the script cache was flushed: load and go again
            elif self.redirect is not None and _redirected(reply):
                moved.append((call, reply))  # not run here: send it where it belongs
            elif unconfirmed is not None and not isinstance(reply, Exception):
                call.settle(unconfirmed)  # written, but not as durably as a 2xx needs
            else:
                call.settle(reply)
        if retry:
            await self._reload(retry)
        if moved:
            await self.redirect(moved)  # type: ignore[misc]

    async def _round_trip(
        self, batch: list[_Call], sent: _Sent | None
    ) -> tuple[list[Any], Exception | None]:
        """Each call's reply, and why the wait did not confirm the batch (None: it did)."""
        if sent is None:
            wait = self.wait(self.name) if self.wait is not None else None
            payload, count = _payload(batch, wait)
        else:
            wait, payload, count = sent.wait, sent.payload, sent.count
        try:
            if sent is None:
                replies = await self._exchange(payload, count)
            else:
                replies = await self._lines.read(sent.connection, count, sent.epoch)
        except ConnectionError:
            # A connection that died with a restarted server fails on first use (as would the
            # lane's other kept ones); the scripts are idempotent: one more try, pool-checked.
            self._lines.drop_idle()
            replies = await self._exchange(payload, count)
        unconfirmed = None
        if wait is not None:
            confirmations = replies[len(replies) - wait.replies :]
            del replies[len(replies) - wait.replies :]
            try:
                wait.check(confirmations, self.on_wait_refused)
            except (ResponseError, NotConfirmed) as exc:
                unconfirmed = exc
        return _without_asking(batch, replies), unconfirmed

    async def _exchange(self, payload: bytes, count: int) -> list[Any]:
        """Write ``payload`` on one of the lane's connections; its ``count`` replies."""
        return await self._lines.exchange(payload, count)

    async def _reload(self, calls: list[_Call]) -> None:
        """Load the scripts of ``calls`` on this lane's server and queue them again."""
        try:
            for source in {call.script.script for call in calls}:
                text = source if isinstance(source, bytes | str) else bytes(source)
                async with asyncio.timeout(self.timeout):
                    [loaded] = await self._exchange(pack(("SCRIPT", "LOAD", text)), 1)
                if isinstance(loaded, Exception):
                    raise loaded
        except Exception as exc:
            for call in calls:
                call.settle(exc)
            return
        for call in calls:
            call.reloaded = True
            self._queue.append(call)
        self._schedule(asyncio.get_running_loop())


#: Cluster refusals that mean the script did not run here: send it again (MOVED, ASK
#: elsewhere; TRYAGAIN, CLUSTERDOWN and MASTERDOWN a moment later).
_REDIRECTS = (AskError, TryAgainError, ClusterDownError)


def _redirected(reply: Any) -> bool:
    return isinstance(reply, _REDIRECTS)


def _without_asking(batch: list[_Call], replies: list[Any]) -> list[Any]:
    """The calls' own replies: each ASKING's ``OK`` (or error) taken out."""
    if not any(call.asking for call in batch):
        return replies
    out, position = [], 0
    for call in batch:
        position += call.asking
        out.append(replies[position])
        position += 1
    return out
