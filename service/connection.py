"""The Redis client, configured so that no call can hang a request."""

from __future__ import annotations

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from .config import Settings


def connect(url: str, *, cluster: bool, timeout: float) -> Redis | RedisCluster:
    """A client for ``url``; every socket operation is bounded by ``timeout`` seconds.

    One immediate retry lets a request survive a pooled connection that died
    with a restarted server; the caller bounds the whole call anyway.
    """
    if cluster:
        return RedisCluster.from_url(
            url,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 1),
        )
    return Redis.from_url(
        url,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 1),
        health_check_interval=30,
    )


def from_settings(settings: Settings) -> Redis | RedisCluster:
    if settings.redis_url is None:
        raise ValueError("FANOUT_REDIS_URL is not set and no embedded server was started")
    return connect(
        settings.redis_url, cluster=settings.redis_cluster, timeout=settings.redis_timeout
    )
