"""The Redis client, configured so that no call can hang a request.

``FANOUT_REDIS_URL`` is a ``redis://``, ``rediss://`` or ``unix://`` URL, or a
``redis+sentinel://`` one naming Redis Sentinels and the master they watch::

    redis+sentinel://[[user]:password@]host:port[,host:port...]/master_name[/db]

(``rediss+sentinel://`` for TLS to the data nodes; ``?sentinel_password=...`` when
the Sentinels require one). The pool of such a client follows the primary
(``follow.Follower``): no connection is handed out while a failover of the
primary is under way, and every connection, busy or idle when the primary
changed, is checked before its next use and reconnected to the primary Sentinel
names now. Receiver, consumers and reconciler all get their client here.
"""

from __future__ import annotations

from typing import TypeAlias

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import AbstractConnection
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.backoff import NoBackoff
from redis.exceptions import (
    ClusterDownError,
    OutOfMemoryError,
    ReadOnlyError,
    ResponseError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ..config import SENTINEL_SCHEMES, SentinelTarget, Settings
from .follow import Fenced, Follower
from .sentinel_events import Address

__all__ = ["Client", "Fenced", "connect", "guard", "passing"]

#: A client of one server or of a cluster; every module takes this one alias.
Client: TypeAlias = "Redis | RedisCluster"

# Connections one process keeps to a server (per node with a cluster). A burst
# of deliveries above this waits for a free connection, bounded by the timeout,
# instead of failing at once: redis-py's default pool refuses a 101st
# concurrent call with "Too many connections", which turned a burst into 503s.
POOL_SIZE = 128


class _BlockingSentinelPool(SentinelConnectionPool, BlockingConnectionPool):
    """Sentinel's pool that waits for a free connection like the single-server pool,
    and hands out connections to the primary its ``Follower`` names only.

    redis-py's asyncio pool does not check on release that a connection still goes
    to the master, and reuses the most recently released one first: measured before
    this pool, the receiver ran 1,520 script calls on an old primary after a planned
    failover (issue 28). Here each connection is checked when it is handed out.
    """

    follower: Follower

    async def get_master_address(self) -> Address:
        """Where a new connection goes: the primary, once no failover is under way."""
        address = await self.follower.primary(self.timeout)
        self.master_address = address
        return address

    async def ensure_connection(self, connection: AbstractConnection) -> None:
        address = await self.follower.primary(self.timeout)
        if (
            connection.is_connected
            and (
                getattr(connection, "host", None),
                getattr(connection, "port", None),
            )
            != address
        ):
            await connection.disconnect()  # to an old primary: connect afresh
        await super().ensure_connection(connection)

    async def follow(self) -> None:
        """The primary changed or is failing over: close the idle connections now (busy
        ones are checked before their next use)."""
        await self.disconnect(inuse_connections=False)


class _SentinelRedis(Redis):
    """The master's client; closing it stops following and closes its connections to
    the Sentinels too."""

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        pool = self.connection_pool
        if isinstance(pool, _BlockingSentinelPool):
            await pool.follower.stop()
        await super().aclose(close_connection_pool)
        if isinstance(pool, SentinelConnectionPool):
            for sentinel in pool.sentinel_manager.sentinels:
                await sentinel.aclose()


def connect(url: str, *, cluster: bool, timeout: float) -> Client:
    """A client for ``url``; every socket operation is bounded by ``timeout`` seconds.

    One immediate retry lets a request survive a pooled connection that died
    with a restarted server (or a demoted master); the caller bounds the whole
    call anyway.
    """
    if url.startswith(SENTINEL_SCHEMES):
        target = SentinelTarget.parse(url)
        socket = {"socket_timeout": timeout, "socket_connect_timeout": timeout}
        # redis-py types Sentinel from 8.2 on; older releases leave it untyped.
        sentinel = Sentinel(  # type: ignore[no-untyped-call,unused-ignore]
            list(target.sentinels),
            sentinel_kwargs={**socket, "password": target.sentinel_password},
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
        )
        master: Redis = sentinel.master_for(
            target.master,
            redis_class=_SentinelRedis,
            connection_pool_class=_BlockingSentinelPool,
            max_connections=POOL_SIZE,
            timeout=timeout,
            db=target.db,
            username=target.username,
            password=target.password,
            ssl=target.ssl,
            retry=Retry(NoBackoff(), 1),
            health_check_interval=30,
        )
        pool = master.connection_pool
        assert isinstance(pool, _BlockingSentinelPool)
        pool.follower = Follower(
            sentinel.sentinels, target.master, timeout=timeout, on_change=pool.follow
        )
        return master
    if cluster:
        # The cluster client has no waiting pool: allow enough connections per
        # node that a burst the single-server pool would queue is not refused.
        return RedisCluster.from_url(
            url,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 1),
            max_connections=4 * POOL_SIZE,
        )
    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=POOL_SIZE,
        timeout=timeout,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 1),
        health_check_interval=30,
    )
    return Redis.from_pool(pool)


# Refusals that pass by themselves, which redis-py leaves as plain ResponseError:
# a blocked read cut short when the server became a replica (UNBLOCKED), writes
# stopped until enough replicas (NOREPLICAS) or the disk (MISCONF) are back.
_REFUSED_FOR_NOW = ("UNBLOCKED", "NOREPLICAS", "MISCONF")


def passing(exc: BaseException) -> bool:
    """Whether ``exc`` is a Redis failure that passes without anyone changing the code:
    a connection lost or too slow, a server still loading its data, or one that
    refuses for now (a replica after a failover, READONLY; UNBLOCKED; MASTERDOWN,
    TRYAGAIN, CLUSTERDOWN; full memory or a disk error). Retry later, on a fresh
    connection."""
    if isinstance(exc, RedisConnectionError | RedisTimeoutError | OSError | TimeoutError):
        return True  # also LOADING (BusyLoadingError is a ConnectionError)
    if isinstance(exc, ReadOnlyError | TryAgainError | ClusterDownError | OutOfMemoryError):
        return True
    return isinstance(exc, ResponseError) and str(exc).startswith(_REFUSED_FOR_NOW)


def is_sentinel(client: Client) -> bool:
    """Whether ``client`` finds its master through Sentinel."""
    return isinstance(client, Redis) and isinstance(client.connection_pool, SentinelConnectionPool)


def guard(client: Client) -> Follower | None:
    """The follower of a Sentinel client's primary (its ``epoch`` rises whenever a
    failover of the primary starts and whenever a new one is named), else None."""
    pool = client.connection_pool if isinstance(client, Redis) else None
    return pool.follower if isinstance(pool, _BlockingSentinelPool) else None


async def follow_master(client: Client) -> None:
    """With Sentinel, start following the primary now rather than at first use."""
    follower = guard(client)
    if follower is not None:
        follower.start()


async def reconnect(client: Client) -> None:
    """Drop the idle pooled connections, so the next call connects afresh (to the new
    master of a Sentinel, or wherever the URL's name points now)."""
    if isinstance(client, Redis):
        await client.connection_pool.disconnect(inuse_connections=False)


def from_settings(settings: Settings) -> Client:
    if settings.redis_url is None:
        raise ValueError("FANOUT_REDIS_URL is not set and no embedded server was started")
    return connect(
        settings.redis_url, cluster=settings.redis_cluster, timeout=settings.redis_timeout
    )
