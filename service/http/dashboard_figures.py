"""The figures the dashboard shows every two seconds: consumer groups, dead letters,
refusals (counts and the latest with their details), Redis, the reconciler and
the front door.
"""

from __future__ import annotations

import asyncio
import resource
import time
from typing import Any

import msgspec
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import RedisError

from .. import metrics
from ..config import Settings
from ..streams import refusals, replies, stats
from ..streams.publisher import Publisher
from . import front_door

#: Refused deliveries listed with their details (newest first).
LATEST_REFUSALS = 20


class Figures:
    """Reads the figures from Redis (and this process's front-door counters)."""

    def __init__(self, settings: Settings, publisher: Publisher) -> None:
        self._keys = publisher.keys
        self._memory_limit = publisher.memory.limit
        # redis-py's annotations of stream replies are loose unions; read them as Any.
        self._redis: Any = publisher.redis
        self._streams = stats.known_streams(self._keys)
        self._timeout = settings.redis_timeout
        # As fanout serve resolved them: its workers inherit its raised file limit.
        self._limits = front_door.limits_for(
            settings, resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        )[0]

    async def collect(self) -> dict[str, Any]:
        """Every figure; only Redis's state and the front door's when Redis is down."""
        redis = await self.redis_status()
        if not redis["ok"]:
            return {"redis": redis, "front_door": self.front_door()}
        groups = []
        for stream in self._streams:
            if not await self._redis.exists(stream):
                continue
            found = await stats.groups(self._redis, stream)
            length = int(await self._redis.xlen(stream)) if found else 0
            for group in found:
                groups.append(
                    {
                        "stream": stream,
                        "length": length,
                        "group": group.name,
                        "consumers": group.consumers,
                        "pending": group.pending,
                        "lag": group.lag,
                    }
                )
        return {
            "redis": redis,
            "groups": groups,
            "dead_count": int(await self._redis.xlen(self._keys.dead_letters())),
            "refusals": await refusals.history(self._redis, self._keys),
            "refused_latest": [
                {"entry_id": entry_id, **msgspec.structs.asdict(refusal)}
                for entry_id, refusal in await refusals.latest(
                    self._redis, self._keys, LATEST_REFUSALS
                )
            ],
            "reconciler": await self.reconciler(),
            "front_door": self.front_door(),
        }

    def front_door(self) -> dict[str, Any]:
        """Connections cut off before the app since start (every worker's), and the limits."""
        limits = self._limits
        return {
            "counts": metrics.front_door_totals(),
            "limits": {
                "max_connections": limits.max_connections,
                "max_head_bytes": limits.max_head_bytes,
                "head_timeout": limits.head_timeout,
                "body_timeout": limits.body_timeout,
                "keep_alive_timeout": limits.keep_alive_timeout,
            },
        }

    async def redis_status(self) -> dict[str, Any]:
        """Whether Redis answers, how fast, and what it is."""
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self._timeout):
                await self._redis.ping()
                latency = (time.perf_counter() - started) * 1000
                info = await self._redis.info()
        except (RedisError, OSError, TimeoutError) as exc:
            return {"ok": False, "error": str(exc) or type(exc).__name__}
        if "redis_version" not in info and info:  # a cluster answers per node
            info = next(iter(info.values()))
        server = "valkey" if "valkey_version" in info else "redis"
        return {
            "ok": True,
            "latency_ms": round(latency, 2),
            "server": f"{server} {info.get(server + '_version') or info.get('redis_version')}",
            "memory": info.get("used_memory_human"),
            # Headroom: deliveries get 503 from memory_limit percent of maxmemory on.
            "used_memory": int(info.get("used_memory", 0)),
            "maxmemory": int(info.get("maxmemory", 0) or 0),
            "memory_limit": self._memory_limit,
            "maxmemory_policy": info.get("maxmemory_policy"),
            "evicted_keys": int(info.get("evicted_keys", 0)),
            "clients": info.get("connected_clients"),
            "aof": bool(info.get("aof_enabled")),
            "role": info.get("role"),
            "cluster": isinstance(self._redis, RedisCluster),
        }

    async def reconciler(self) -> dict[str, Any]:
        """Whether a poller holds the lease now, and how far the API is reconciled."""
        # "<token> <expires ms>" (reconciler/lease.py; no key TTL), or an older
        # version's token with a PX expiry.
        value = replies.text(await self._redis.get(self._keys.poll_lease()))
        _, _, expires = value.partition(" ")
        if expires.isdigit():
            ttl = int(expires) - int(time.time() * 1000)
        else:
            ttl = int(await self._redis.pttl(self._keys.poll_lease()))
        mark = await self._redis.get(self._keys.poll_mark())
        return {
            "running": ttl > 0,
            "lease_ms": max(ttl, 0),
            "mark": replies.text(mark) if mark else None,
        }
