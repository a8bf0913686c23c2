"""Group commit on Redis Cluster: one lane (``GroupCommit``) per primary, calls routed by slot.

Every key of a delivery shares one hash tag (``keys.py``), so a call belongs to the
primary that owns its first key's slot. Each lane batches its primary's calls and
follows every batch with its durability wait on the same connection: ``WAIT`` and
``WAITAOF`` count the writes of the connection they are sent on, so a keyless wait
sent through the cluster client would land elsewhere and prove nothing.

A call the cluster refuses without running it is sent again, within its deadline:

- ``MOVED``: the slot map is updated (``NodesManager.move_slot``) and the call goes
  to the new owner's lane; a full refresh of the map follows in the background;
- ``ASK`` (a slot being migrated): once to the named node, after ``ASKING``;
- ``TRYAGAIN``, ``CLUSTERDOWN``, ``MASTERDOWN``: after ``RETRY_AFTER``, routed again
  on a refreshed map.

A script that ran is never sent twice by the router: a redirect means nothing was
written. A batch lost with its connection fails (503) and the sender's resend is
answered as a duplicate by the script itself. After a refresh, lanes of nodes that
are no longer primaries are retired: their queued calls are routed again and the
node's idle connections closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.connection import AbstractConnection
from redis.commands.core import AsyncScript
from redis.exceptions import (
    AskError,
    ClusterError,
    MovedError,
    RedisClusterException,
    RedisError,
    ResponseError,
)

from .group_commit import GroupCommit, _Call
from .waits import Wait

logger = logging.getLogger("service.publish")

#: Seconds before a call refused with TRYAGAIN or CLUSTERDOWN is sent again.
RETRY_AFTER = 0.1
#: Redirects one call may follow before its error is its answer.
MAX_HOPS = 5
#: Seconds between two refreshes of the slot map asked for by failures.
REFRESH_EVERY = 0.25


class NodeConnections:
    """A cluster node's own pooled connections, as a lane takes them."""

    __slots__ = ("node",)

    def __init__(self, node: ClusterNode) -> None:
        self.node = node

    async def get_connection(self) -> AbstractConnection:
        connection = self.node.acquire_connection()
        try:
            await connection.connect()  # type: ignore[no-untyped-call]
        except BaseException:
            await connection.disconnect()
            self.node.release(connection)
            raise
        return connection

    async def release(self, connection: AbstractConnection) -> None:
        await self.node.disconnect_if_needed(connection)  # type: ignore[arg-type]
        self.node.release(connection)  # type: ignore[arg-type]


class ClusterLanes:
    """The lanes of a cluster's primaries; ``call`` is ``GroupCommit.call`` routed by slot."""

    def __init__(
        self,
        client: RedisCluster,
        timeout: float,
        *,
        wait: Callable[[str], Wait | None] | None = None,
        on_wait_refused: Callable[[Exception], bool] | None = None,
        on_retired: Callable[[str], None] | None = None,
    ) -> None:
        self._client = client
        self._timeout = timeout
        self._wait = wait
        self._on_wait_refused = on_wait_refused
        self._on_retired = on_retired
        self.lanes: dict[str, GroupCommit] = {}
        self._refresh: asyncio.Task[None] | None = None
        self._refreshed_at = -REFRESH_EVERY
        self._tasks: set[asyncio.Task[None]] = set()

    async def call(
        self, script: AsyncScript, keys: tuple[str, ...], args: tuple[Any, ...]
    ) -> list[Any]:
        try:
            await self._client.initialize()  # the slot map, on first use (then a no-op)
        except RedisClusterException as exc:  # "cannot be connected": not a RedisError
            raise ClusterError(str(exc)) from exc
        lane = self._lane(self._owner(keys[0]))
        return await lane.call(script, keys, args)

    def _owner(self, key: str) -> ClusterNode:
        """The primary of ``key``'s slot; ``ClusterError`` (a 503) for a slot no node
        serves now."""
        slot = self._client.keyslot(key)
        try:
            return self._client.nodes_manager.get_node_from_slot(slot)
        except RedisClusterException as exc:
            raise ClusterError(str(exc)) from exc

    def _route(self, call: _Call) -> None:
        try:
            lane = self._lane(self._owner(call.keys[0]))
        except ClusterError as exc:
            call.settle(exc)
            return
        lane.put(call)

    def _lane(self, node: ClusterNode) -> GroupCommit:
        lane = self.lanes.get(node.name)
        if lane is None:
            lane = self.lanes[node.name] = GroupCommit(
                NodeConnections(node),
                self._timeout,
                wait=self._wait,
                on_wait_refused=self._on_wait_refused,
                name=node.name,
                redirect=self._redirect,
                on_failure=self._failed,
            )
        return lane

    async def _redirect(self, refused: list[tuple[_Call, ResponseError]]) -> None:
        """Send again, where they belong now, calls the cluster refused without running."""
        later: list[_Call] = []
        for call, error in refused:
            call.hops += 1
            if call.hops > MAX_HOPS:
                call.settle(error)
                continue
            if isinstance(error, AskError) and not isinstance(error, MovedError):
                node = self._client.nodes_manager.get_node(error.host, error.port)
                if node is not None:
                    call.asking = True
                    self._lane(node).put(call)
                    continue
            call.asking = False
            if isinstance(error, MovedError):
                with contextlib.suppress(RedisError, KeyError):
                    await self._client.nodes_manager.move_slot(error)
                self._route(call)
            else:
                later.append(call)
        self._failed(None)
        if later:
            await asyncio.sleep(RETRY_AFTER)
            await self._refreshing()
            for call in later:
                self._route(call)

    def _failed(self, error: BaseException | None) -> None:
        """A lane lost its connection or was redirected: refresh the map, at most every
        ``REFRESH_EVERY`` seconds, in the background."""
        loop = asyncio.get_running_loop()
        if self._refresh is not None or loop.time() - self._refreshed_at < REFRESH_EVERY:
            return
        self._refresh = loop.create_task(self._refresh_map())

    async def _refreshing(self) -> None:
        self._failed(None)
        if self._refresh is not None:
            await asyncio.shield(self._refresh)

    async def _refresh_map(self) -> None:
        try:
            await self._client.nodes_manager.initialize()
        except (RedisError, OSError) as exc:
            logger.debug("cluster slot map not refreshed: %r", exc)
        finally:
            self._refreshed_at = asyncio.get_running_loop().time()
            self._refresh = None
        self._retire()

    def _retire(self) -> None:
        """Lanes of nodes that own no slot any more: their queue goes where it belongs."""
        primaries = {node.name for node in self._client.get_primaries()}
        for name in [name for name in self.lanes if name not in primaries]:
            lane = self.lanes.pop(name)
            queued = lane.take_queue()
            logger.info("redis cluster: lane of %s retired (no longer a primary)", name)
            if self._on_retired is not None:
                self._on_retired(name)
            for call in queued:
                self._route(call)
            source = lane.source
            if isinstance(source, NodeConnections):
                task = asyncio.get_running_loop().create_task(
                    source.node.disconnect_free_connections()
                )
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
