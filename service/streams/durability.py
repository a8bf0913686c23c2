"""What a 2xx waits for: the durability in force, per primary, and the one line saying so.

``FANOUT_DURABILITY=auto``, the default:

- where the primary has replicas (one server with replicas, Sentinel, every cluster
  shard), a 2xx waits for every replica online, at least one, and for the
  primary's append-only file where the server can confirm it: ``WAITAOF 1 N``
  (Redis >= 7.2 or Valkey, ``appendonly yes``), else ``WAIT N`` (Redis 7.0,
  ElastiCache, AOF off). A primary without a replica online answers 503
  (``replication.py``: when, and why every replica rather than one);
- where it has none, ``WAITAOF 1 0`` wherever the server can confirm that, and
  otherwise it answers once Redis applied the write, saying at start-up in one
  line what that survives (``promise.py``).

A server that does not answer at start-up is assumed able; its first answer
decides. ``aof`` (``WAITAOF 1 0``) and ``replicas:N`` (``WAIT N``) are refused
at start-up by a server that cannot give them, and answered 503 whenever it
does not confirm in time.

Measured (RELIABILITY.md): with ``none``, Valkey 9.1 on ``appendfsync everysec``
with fsyncs slowed to 2.5 s lost 2,001-3,735 of ~16,000 acknowledged deliveries
to a kill -9; with WAITAOF none. Under ``everysec`` WAITAOF confirms a write the
server has written to the file, which a kill -9 of the server cannot undo, but
(redis/redis#13793) not always fsynced: against a crash of the host only
``appendfsync always`` is exact, and it also makes WAITAOF answer at once.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from redis.asyncio.cluster import RedisCluster
from redis.exceptions import NoPermissionError, RedisError, ResponseError

from ..config import Durability
from . import promise, replies
from .connection import Client
from .errors import DurabilityRefused
from .promise import Promise, Survival
from .replication import Replication
from .waits import NotConfirmed, Wait

logger = logging.getLogger("service.publish")


class ReplicasMissing(NotConfirmed):
    """The primary has fewer replicas online than a 2xx waits for: a 503, nothing sent."""


def cannot_wait(error: BaseException) -> str | None:
    """Why a server refused WAITAOF for good (a key of ``promise.AT_RISK``), or None."""
    if isinstance(error, NoPermissionError):
        return "noperm"
    text = str(error).lower()
    if "unknown command" in text:
        return "no_waitaof"
    if "appendonly" in text:
        return "aof_off"
    return None


class Waiter:
    """The wait sent after every batch, per primary, as the mode and the server allow."""

    def __init__(
        self,
        configured: Durability,
        *,
        timeout: float,
        cluster: bool,
        sentinel: bool = False,
        replication: Replication | None = None,
    ) -> None:
        self.configured = configured
        self.replication = replication if replication is not None else Replication()
        self._cluster = cluster
        self._sentinel = sentinel
        self._wait_ms = max(1, int(timeout * 800))
        self._timeout = timeout
        #: ``auto``: the server confirms its append-only file (decided by ``check``).
        self.local = configured.mode in ("auto", "aof")
        #: Why not, when not (a key of ``promise.AT_RISK``).
        self.why_not_local: str | None = None
        self._appendfsync: str | None = None
        self._aof_enabled: bool | None = None
        self._waits: dict[tuple[bool, int], Wait] = {}

    # --- the hot path: one call per batch -------------------------------------------

    def wait_for(self, name: str) -> Wait | None:
        """The wait after a batch to the primary ``name``; ``ReplicasMissing`` when it
        lacks the replicas a 2xx waits for (the batch is not sent)."""
        mode = self.configured.mode
        if mode == "none":
            return None
        if mode == "replicas":
            count = self.configured.replicas
            online = self.replication.online(name)
            if online is not None and online < count:
                raise ReplicasMissing(
                    f"the Redis primary has {online} of the {count} replicas "
                    f"FANOUT_DURABILITY={self.configured} waits for online; retry later"
                )
            return self._wait(False, count)
        if mode == "auto" and self.replication.expected:
            missing = self.replication.missing(name)
            if missing is not None:
                raise ReplicasMissing(missing)
            return self._wait(self.local, self.replication.required(name))
        return self._wait(True, 0) if self.local else None

    def missing(self) -> str | None:
        """Why some primary cannot give a 2xx now (for ``/readyz``), or None."""
        for name in self.replication.snapshot() or {"": (0, 0)}:
            try:
                self.wait_for(name)
            except ReplicasMissing as exc:
                return str(exc)
        return None

    def _wait(self, local: bool, replicas: int) -> Wait:
        key = (local, replicas)
        wait = self._waits.get(key)
        if wait is None:
            wait = self._waits[key] = Wait.of(local, replicas, self._wait_ms)
        return wait

    def refused(self, error: BaseException) -> bool:
        """A batch's WAITAOF was refused. With ``auto`` and a server that cannot confirm its
        disk, go on without it (True; its WAIT, where there are replicas, still counts),
        said once; else False (a 503)."""
        why = cannot_wait(error)
        if self.configured.mode != "auto" or why is None:
            return False
        if self.local:
            self.local, self.why_not_local = False, why
            logger.warning(self.promise().line)
        return True

    # --- what it is worth -------------------------------------------------------------

    def survival(self) -> Survival:
        mode = self.configured.mode
        replicas = mode == "replicas" or (mode == "auto" and self.replication.expected)
        local = mode == "aof" or (mode == "auto" and self.local)
        return Survival(replicas, local, self._appendfsync, self._aof_enabled)

    def waited_for(self) -> dict[str, tuple[int, int]]:
        """``{primary: (replicas online, replicas a 2xx waits for)}`` as last sampled
        (``"primary"`` names the one server)."""
        survival, mode = self.survival(), self.configured.mode
        out = {}
        for name, (online, required) in self.replication.snapshot().items():
            waited = self.configured.replicas if mode == "replicas" else required
            out[name or "primary"] = (online, waited if survival.replicas else 0)
        return out

    def state(self) -> dict[str, Any]:
        """For ``/readyz``: the faults a 2xx survives now, and the replicas per primary."""
        return {
            "survives": self.survival().names(),
            "primaries": {
                name: {"replicas_online": online, "replicas_waited_for": waited}
                for name, (online, waited) in self.waited_for().items()
            },
        }

    def promise(self) -> Promise:
        """The one statement of what a 2xx survives now."""
        configured, survival = self.configured, self.survival()
        unreplicated = (
            "; NOT a failover to a replica: nothing waits for the replicas this primary has "
            "(FANOUT_DURABILITY=auto waits for every one)"
            if self.replication.expected
            else ""
        )
        if configured.mode == "none":
            text = promise.unconfirmed(self._appendfsync) + unreplicated
            return self._line(Durability("none"), text, False)
        if configured.mode == "replicas":
            return self._line(configured, promise.replicas_kept(configured.replicas), False)
        if configured.mode == "aof":
            text = promise.aof_kept(self._appendfsync) + unreplicated
            return self._line(configured, text, False)
        if survival.replicas:
            now = self.replication.required("")
            if self._cluster:
                now = min((n for _, n in self.replication.snapshot().values()), default=1)
            wait = self._wait(self.local, now)
            text = promise.every_replica(survival, str(wait), now, self.why_not_local)
            at_risk = not (survival.local or survival.fsyncs_first)
            return self._line(Durability("replicas", now), text, at_risk, f"every replica, {wait}")
        if not self.local:
            text, at_risk = promise.without_wait(self.why_not_local or "no_waitaof", survival)
            return self._line(Durability("none"), text, at_risk)
        text = promise.aof_kept(self._appendfsync)
        if self._sentinel:
            text += (
                "; but Sentinel watches no replica of this primary, so a failover has nothing "
                "to promote that holds the 2xx: give it a replica (a 2xx then waits for it)"
            )
            return self._line(Durability("aof"), text, True)
        return self._line(Durability("aof"), text, self._appendfsync == "everysec")

    def _line(
        self, resolved: Durability, text: str, at_risk: bool, label: str | None = None
    ) -> Promise:
        name = str(self.configured)
        if self.configured.mode == "auto":
            name = f"auto -> {label or resolved}"
        return Promise(resolved, f"durability {name}: {text}", at_risk)

    # --- start-up -----------------------------------------------------------------------

    async def check(self, redis: Client) -> Promise:
        """Ask the server what it can give; ``DurabilityRefused`` for an explicit mode it
        cannot. The replicas seen here start ``replication``; the sampler keeps it."""
        configured = self.configured
        await self._read_server(redis)
        if configured.mode == "none":
            return self.promise()
        probe = ("WAIT", 0, 1) if configured.mode == "replicas" else ("WAITAOF", 1, 0, 1)
        try:
            async with asyncio.timeout(self._timeout):
                if isinstance(redis, RedisCluster):
                    await redis.execute_command(*probe, target_nodes=RedisCluster.PRIMARIES)
                else:
                    await redis.execute_command(*probe)  # type: ignore[no-untyped-call]
        except (RedisError, OSError, TimeoutError) as exc:
            return self._refused_at_start(str(probe[0]), exc)
        if self.local and self._appendfsync == "no" and configured.mode != "replicas":
            # WAITAOF answers a connection that wrote nothing (the probe) at once, but
            # after a write under appendfsync no it waits out its whole timeout
            # (measured, Valkey 9): every delivery would be a 503.
            if configured.mode == "aof":
                raise DurabilityRefused(
                    f"FANOUT_DURABILITY={configured}: the Redis server runs with appendfsync "
                    "no and never confirms WAITAOF; set appendfsync always (or everysec)"
                )
            self.local, self.why_not_local = False, "no_fsync"
        return self.promise()

    async def _read_server(self, redis: Client) -> None:
        """appendfsync (CONFIG GET, where allowed), appendonly and the replicas (INFO)."""
        try:
            async with asyncio.timeout(self._timeout):
                if isinstance(redis, RedisCluster):
                    reply: Any = await redis.info(
                        "persistence", "replication", target_nodes=RedisCluster.PRIMARIES
                    )
                else:
                    reply = await redis.info("persistence", "replication")
        except (RedisError, OSError, TimeoutError):
            reply = {}
        nodes = {"": reply} if "role" in reply else reply
        for name, info in nodes.items():
            if isinstance(info, dict):
                self.replication.observe(name, info)
                self._aof_enabled = str(info.get("aof_enabled", "0")) == "1"
        try:
            async with asyncio.timeout(self._timeout):
                config = await redis.config_get("appendfsync")
        except (RedisError, OSError, TimeoutError):
            return
        values = {replies.text(k): replies.text(v) for k, v in dict(config).items()}
        self._appendfsync = values.get("appendfsync")

    def _refused_at_start(self, name: str, exc: BaseException) -> Promise:
        configured = self.configured
        why = cannot_wait(exc) if isinstance(exc, ResponseError) else None
        if configured.mode == "auto":
            if why is not None:
                self.local, self.why_not_local = False, why
                return self.promise()
            # Not answering (yet): assumed able; the first batch's answer decides.
            return Promise(
                configured,
                "durability auto: Redis does not answer yet; a 2xx will wait for WAITAOF 1 0 "
                "(and every replica online, where the primary has replicas) if the server "
                f"can give it (decided when it answers: {exc or 'timed out'})",
                at_risk=False,
            )
        hint = "; it needs Redis >= 7.2 or Valkey with appendonly yes" if name == "WAITAOF" else ""
        raise DurabilityRefused(
            f"FANOUT_DURABILITY={configured}: the Redis server refused {name} ({exc}){hint}"
        ) from exc
