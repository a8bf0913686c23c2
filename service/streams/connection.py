"""The Redis client, configured so that no call can hang a request.

``FANOUT_REDIS_URL`` is a ``redis://``, ``rediss://`` or ``unix://`` URL, or names
Redis Sentinels and the master they watch::

    redis+sentinel://[[user]:password@]host:port[,host:port...]/master_name[/db]

(``rediss+sentinel://`` for TLS to the data nodes; ``?sentinel_password=...`` when
the Sentinels require one). Every new connection asks a Sentinel where the
master is, a connection that meets READONLY (its server was demoted) is dropped,
and ``follow_master`` re-asks every second so pooled connections leave a demoted
master quickly: a failover is followed without a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TypeAlias

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.backoff import NoBackoff
from redis.exceptions import (
    ClusterDownError,
    OutOfMemoryError,
    ReadOnlyError,
    RedisError,
    ResponseError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ..config import SENTINEL_SCHEMES, SentinelTarget, Settings

#: A client of one server or of a cluster; every module takes this one alias.
Client: TypeAlias = "Redis | RedisCluster"

# Connections one process keeps to a server (per node with a cluster). A burst
# of deliveries above this waits for a free connection, bounded by the timeout,
# instead of failing at once: redis-py's default pool refuses a 101st
# concurrent call with "Too many connections", which turned a burst into 503s.
POOL_SIZE = 128


class _BlockingSentinelPool(SentinelConnectionPool, BlockingConnectionPool):
    """Sentinel's pool (connections go to the master a Sentinel names, and leave a
    demoted one) that waits for a free connection like the single-server pool."""


class _SentinelRedis(Redis):
    """The master's client; closing it closes its connections to the Sentinels too."""

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        await super().aclose(close_connection_pool)
        pool = self.connection_pool
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


async def follow_master(client: Client, interval: float = 1.0) -> None:
    """With Sentinel, ask every ``interval`` seconds where the master is; idle pooled
    connections to a server that is no longer it are dropped (until cancelled).
    Sentinel tells a demoted master so only at its next round (up to 10 s), and
    until then it still takes writes that its resync will throw away."""
    pool = client.connection_pool if isinstance(client, Redis) else None
    if not isinstance(pool, SentinelConnectionPool):
        return
    while True:
        with contextlib.suppress(RedisError, OSError):
            await pool.get_master_address()  # type: ignore[no-untyped-call]
        await asyncio.sleep(interval)


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
