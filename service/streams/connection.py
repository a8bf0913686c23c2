"""The Redis client, configured so that no call can hang a request."""

from __future__ import annotations

from typing import TypeAlias

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
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

from ..config import Settings

#: A client of one server or of a cluster; every module takes this one alias.
Client: TypeAlias = "Redis | RedisCluster"

# Connections one process keeps to a server (per node with a cluster). A burst
# of deliveries above this waits for a free connection, bounded by the timeout,
# instead of failing at once: redis-py's default pool refuses a 101st
# concurrent call with "Too many connections", which turned a burst into 503s.
POOL_SIZE = 128


def connect(url: str, *, cluster: bool, timeout: float) -> Client:
    """A client for ``url``; every socket operation is bounded by ``timeout`` seconds.

    One immediate retry lets a request survive a pooled connection that died
    with a restarted server; the caller bounds the whole call anyway.
    """
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
