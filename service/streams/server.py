"""What the Redis server is, read once at start-up, and what the service makes of it.

Read with INFO (``server``, ``memory``, ``persistence``, ``replication``): managed
services (ElastiCache, Memorystore, Azure, Upstash) allow INFO where they block
CONFIG. From it start-up decides, per promise:

- **eviction**: ``allkeys-*`` may evict any key, whole streams of acknowledged
  entries included (measured, Redis 7.0, ``allkeys-lru``: 23,155 of 40,000
  acknowledged deliveries lost), so it is refused in one line, unless
  ``FANOUT_ALLOW_EVICTION=1`` says "entries may be lost". ``volatile-*`` evicts
  only keys with a TTL, and no key of the service has one (``records.py``,
  ``refusals.py``, the reconciler's lease), so for our data it acts as
  ``noeviction``: a full server answers OOM, and deliveries get 503.
- **access**: a server in protected mode (``DENIED``), one that wants a
  password (``NOAUTH``) or refuses the one given (``WRONGPASS``), or a user who
  may not run INFO (``NOPERM``) is a configuration fault, named as what it is
  with its fix: start-up exits with the configuration status (2), not into a
  retry loop.

A server that does not answer at start-up is not judged here: deliveries get
503 until it does, as before.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from redis.asyncio.cluster import RedisCluster
from redis.exceptions import AuthenticationError, NoPermissionError, RedisError

from ..errors import FanoutError
from .connection import Client

SECTIONS = ("server", "memory", "persistence", "replication")
#: The policies that may evict a key without a TTL: a stream, a dedup record.
EVICTING = ("allkeys-lru", "allkeys-lfu", "allkeys-random")


class ServerRefused(FanoutError):
    """The server cannot serve the service as configured; one line naming the setting."""

    def __init__(self, setting: str, problem: str) -> None:
        self.setting = setting
        self.problem = problem
        super().__init__(f"{setting}: {problem}")


@dataclass(frozen=True, slots=True)
class ServerInfo:
    #: ``Redis 7.0.15``, ``Valkey 9.1.2``.
    software: str
    maxmemory: int
    policy: str
    aof_enabled: bool
    role: str

    @classmethod
    def parse(cls, info: dict[str, Any]) -> ServerInfo:
        if info.get("valkey_version"):
            software = f"Valkey {info['valkey_version']}"
        else:
            software = f"Redis {info.get('redis_version', '?')}"
        return cls(
            software=software,
            maxmemory=int(info.get("maxmemory", 0) or 0),
            policy=str(info.get("maxmemory_policy", "noeviction")),
            aof_enabled=str(info.get("aof_enabled", "0")) == "1",
            role=str(info.get("role", "master")),
        )


def access_problem(error: BaseException) -> ServerRefused | None:
    """The configuration fault behind a refusal at start-up, or None (not one of ours)."""
    text = str(error)
    if text.startswith("DENIED"):
        return ServerRefused(
            "FANOUT_REDIS_URL",
            "the Redis server is in protected mode and refuses connections from other hosts "
            "(DENIED): give its default user a password (requirepass) or the service an ACL "
            "user, and put them in the URL (redis://user:password@host:port); or, on a private "
            "network only, start it with protected-mode no",
        )
    if isinstance(error, AuthenticationError) or text.startswith(("NOAUTH", "WRONGPASS")):
        if "HELLO must be called" in text or text.startswith("NOAUTH"):
            return ServerRefused(
                "FANOUT_REDIS_URL",
                "the Redis server wants a password and the URL gives none (NOAUTH): use "
                "redis://user:password@host:port (or redis://:password@host:port)",
            )
        return ServerRefused(
            "FANOUT_REDIS_URL",
            "the Redis server refused the user and password in the URL (WRONGPASS): check "
            "them, and that the ACL user is on",
        )
    if isinstance(error, NoPermissionError):
        return ServerRefused(
            "FANOUT_REDIS_URL",
            f"the Redis user lacks a permission the service needs (NOPERM: {text}); grant the "
            "commands listed under 'Least privilege' in RELIABILITY.md (+info among them)",
        )
    return None


async def inspect(client: Client, seconds: float) -> list[ServerInfo] | None:
    """Every primary's INFO (one for a single server); None when the server does not
    answer. ``ServerRefused`` for a configuration fault (protected mode, auth, ACL)."""
    try:
        async with asyncio.timeout(seconds):
            if isinstance(client, RedisCluster):
                reply = await client.info(*SECTIONS, target_nodes=RedisCluster.PRIMARIES)
            else:
                reply = await client.info(*SECTIONS)
    except (RedisError, OSError, TimeoutError) as exc:
        problem = access_problem(exc)
        if problem is not None:
            raise problem from None
        return None
    per_node = [reply] if "maxmemory" in reply else list(reply.values())
    return [ServerInfo.parse(info) for info in per_node if isinstance(info, dict)]


def eviction(servers: list[ServerInfo], *, allowed: bool) -> tuple[str, bool]:
    """The start-up line on eviction and whether it warns; ``ServerRefused`` for a policy
    that may evict acknowledged entries without ``FANOUT_ALLOW_EVICTION=1``."""
    server = next((s for s in servers if s.policy in EVICTING), servers[0])
    limit = _limit(server.maxmemory)
    if server.policy in EVICTING:
        if not allowed:
            raise ServerRefused(
                "maxmemory-policy",
                f"the Redis server runs {server.policy}, which evicts any key when memory is "
                "full: whole streams of acknowledged entries, and dedup records (resends "
                "published twice). Set maxmemory-policy noeviction or volatile-lru on the "
                "server, or FANOUT_ALLOW_EVICTION=1 to run anyway: entries may be lost",
            )
        return (
            f"memory: maxmemory-policy {server.policy} {limit} with FANOUT_ALLOW_EVICTION=1: "
            "entries may be lost (the server evicts streams and dedup records when full)",
            True,
        )
    if server.policy.startswith("volatile-"):
        return (
            f"memory: maxmemory-policy {server.policy} {limit}: no key of the service has a "
            "TTL, so none of them is evicted; a full server is a 503",
            False,
        )
    return f"memory: maxmemory-policy {server.policy} {limit}: a full server is a 503", False


def _limit(maxmemory: int) -> str:
    if maxmemory <= 0:
        return "(no maxmemory: the server grows until its host runs out)"
    return f"(maxmemory {maxmemory / 2**20:.0f} MiB)"
