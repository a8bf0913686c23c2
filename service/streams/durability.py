"""What a 2xx waits for: the durability in force, and the one line that says what it is worth.

``FANOUT_DURABILITY=auto``, the default, waits for ``WAITAOF 1 0`` (the delivery is
in the server's append-only file) wherever the server can confirm that: Redis
>= 7.2 or Valkey, with ``appendonly yes`` and an ``appendfsync`` other than ``no``.
Where it cannot (an older Redis, AOF off, appendfsync no, a user without WAITAOF,
Redis Cluster) it answers once Redis applied the write, and says at start-up, in
one line, what is at risk and how to fix it.
A server that does not answer at start-up is assumed able; its first answer
decides. ``aof`` and ``replicas:N`` are refused at start-up by a server that
cannot give them, and answered 503 whenever it does not confirm in time.

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
from dataclasses import dataclass
from typing import Any, Literal

from redis.exceptions import NoPermissionError, RedisError, ResponseError

from ..config import Durability
from . import replies
from .connection import Client
from .errors import DurabilityRefused

logger = logging.getLogger("service.publish")

_FIX = "(or set FANOUT_DURABILITY=none to accept this)"
_AT_RISK = {
    "no_waitaof": "this Redis has no WAITAOF (Redis < 7.2), so a 2xx is sent before the "
    "delivery is on disk and a kill -9 of Redis can lose acknowledged deliveries; use "
    f"Redis >= 7.2 or Valkey with appendonly yes and appendfsync always {_FIX}",
    "aof_off": "Redis runs with appendonly no, so a restart of Redis loses what it holds, "
    "acknowledged deliveries included; set appendonly yes and appendfsync always on the "
    f"server {_FIX}",
    "no_fsync": "Redis runs with appendfsync no, so it never confirms that a delivery is "
    "on disk (a 2xx waiting for it would wait out every request) and a crash of its host "
    f"can lose acknowledged deliveries; set appendfsync always on the server {_FIX}",
    "noperm": "the Redis user may not run WAITAOF, so a 2xx cannot wait for the disk and a "
    f"kill -9 of Redis can lose acknowledged deliveries; grant it +waitaof {_FIX}",
    "cluster": "FANOUT_REDIS_CLUSTER=1 waits for no disk, so a kill -9 of a node can lose "
    "acknowledged deliveries unless the nodes run with appendonly yes and appendfsync "
    "always (which writes and fsyncs before each reply)",
}


def _unconfirmed(appendfsync: str | None) -> str:
    """What a 2xx of ``FANOUT_DURABILITY=none`` survives, by the server's appendfsync."""
    sent = "a 2xx is sent once Redis applied the write"
    if appendfsync == "always":
        return (
            f"{sent}, and the server fsyncs before it replies (appendfsync always): it survives "
            "a kill -9 of Redis and a crash of its host"
        )
    return (
        f"{sent}: a kill -9 of Redis (while its disk is slow) or a crash of its host can lose "
        "acknowledged deliveries (measured under appendfsync everysec: 1,427 of 29,560 lost to "
        "host crashes); FANOUT_DURABILITY=auto waits for the disk where the server can"
    )


@dataclass(frozen=True, slots=True)
class Promise:
    """What a 2xx means from now on, as one start-up line."""

    #: In force: ``none``, ``aof`` or ``replicas:N``; ``auto`` while Redis has not answered.
    durability: Durability
    line: str
    #: A 2xx can be lost where a better configured server would keep it.
    at_risk: bool


def cannot_wait(error: BaseException) -> str | None:
    """Why a server refused WAITAOF for good (a key of the lines above), or None."""
    if isinstance(error, NoPermissionError):
        return "noperm"
    text = str(error).lower()
    if "unknown command" in text:
        return "no_waitaof"
    if "appendonly" in text:
        return "aof_off"
    return None


class Waiter:
    """The command appended to every batch of writes, as the mode and the server allow."""

    def __init__(
        self, configured: Durability, *, timeout: float, cluster: bool, sentinel: bool = False
    ) -> None:
        self.configured = configured
        self._cluster = cluster
        self._sentinel = sentinel
        self._wait_ms = max(1, int(timeout * 800))
        self._timeout = timeout
        mode = configured.mode
        if mode == "auto":
            mode = "none" if cluster else "aof"  # the cluster client has no batch to wait on
        self.mode: Literal["none", "aof", "replicas"] = mode

    @property
    def command(self) -> tuple[Any, ...] | None:
        if self.mode == "aof":
            return ("WAITAOF", 1, 0, self._wait_ms)
        if self.mode == "replicas":
            return ("WAIT", self.configured.replicas, self._wait_ms)
        return None

    @property
    def required(self) -> int:
        """Copies the command must confirm: the local file, or N replicas."""
        return self.configured.replicas if self.mode == "replicas" else 1

    async def check(self, redis: Client) -> Promise:
        """Ask the server what it can give; ``DurabilityRefused`` for an explicit mode it cannot."""
        configured = self.configured
        if configured.mode == "none":
            return self._promise(_unconfirmed(await self._appendfsync(redis)), at_risk=False)
        if self._cluster:
            if configured.mode != "auto":
                raise DurabilityRefused(
                    f"FANOUT_DURABILITY={configured}: only 'auto' and 'none' work with "
                    "FANOUT_REDIS_CLUSTER=1"
                )
            return self._promise(_AT_RISK["cluster"], at_risk=True)
        command = self.command
        assert command is not None
        try:
            async with asyncio.timeout(self._timeout):
                await redis.execute_command(*command[:-1], 1)
        except (RedisError, OSError, TimeoutError) as exc:
            return self._refused_at_start(command[0], exc)
        appendfsync = await self._appendfsync(redis) if self.mode == "aof" else None
        if appendfsync == "no":
            # WAITAOF answers a connection that wrote nothing (the check above) at once,
            # but after a write under appendfsync no it waits out its whole timeout
            # (measured, Valkey 9): every delivery would be a 503.
            if configured.mode != "auto":
                raise DurabilityRefused(
                    f"FANOUT_DURABILITY={configured}: the Redis server runs with appendfsync "
                    "no and never confirms WAITAOF; set appendfsync always (or everysec)"
                )
            self.mode = "none"
            return self._promise(_AT_RISK["no_fsync"], at_risk=True)
        if self._sentinel and self.mode == "aof":
            # Replication is asynchronous: a replica promoted before it received a
            # write, or a demoted master taking writes until Sentinel tells it, loses
            # them with their 2xx. Only waiting for a replica closes that.
            return self._promise(
                f"{self._kept(appendfsync)}; but a Sentinel failover can lose what the replica "
                "had not received: set FANOUT_DURABILITY=replicas:1 to wait for a replica instead",
                at_risk=True,
            )
        # Under everysec a 2xx survives a kill -9 of Redis but not a crash of its host:
        # a promise a better configured server would keep.
        return self._promise(self._kept(appendfsync), at_risk=appendfsync == "everysec")

    async def _appendfsync(self, redis: Client) -> str | None:
        """The server's appendfsync, or None if the user may not ask (CONFIG is
        usually not the service's to run; docs/contract.md says what then)."""
        try:
            async with asyncio.timeout(self._timeout):
                reply = await redis.config_get("appendfsync")
        except (RedisError, OSError, TimeoutError):
            return None
        values = {replies.text(k): replies.text(v) for k, v in dict(reply).items()}
        return values.get("appendfsync")

    def refused(self, error: BaseException) -> bool:
        """A batch's WAITAOF was refused. With ``auto`` and a server that cannot wait at all,
        switch to answering without it (True), and say so once; else False (a 503)."""
        why = cannot_wait(error)
        if self.configured.mode != "auto" or self.mode != "aof" or why is None:
            return False
        self.mode = "none"
        logger.warning(f"durability auto: {_AT_RISK[why]}")
        return True

    def _refused_at_start(self, name: str, exc: BaseException) -> Promise:
        configured = self.configured
        why = cannot_wait(exc) if isinstance(exc, ResponseError) else None
        if configured.mode == "auto":
            if why is not None:
                self.mode = "none"
                return self._promise(_AT_RISK[why], at_risk=True)
            # Not answering (yet): assumed able; the first batch's answer decides.
            return Promise(
                configured,
                "durability auto: Redis does not answer yet; a 2xx will wait for WAITAOF 1 0 "
                f"if the server can give it (decided when it answers: {exc or 'timed out'})",
                at_risk=False,
            )
        hint = "; it needs Redis >= 7.2 or Valkey with appendonly yes" if name == "WAITAOF" else ""
        raise DurabilityRefused(
            f"FANOUT_DURABILITY={configured}: the Redis server refused {name} ({exc}){hint}"
        ) from exc

    def _kept(self, appendfsync: str | None = None) -> str:
        if self.mode == "replicas":
            n = self.configured.replicas
            return (
                f"a 2xx waits until {n} replica(s) have the delivery (WAIT {n}), so it survives "
                "the loss of the master"
            )
        waits = "a 2xx waits until Redis has the delivery in its append-only file (WAITAOF 1 0)"
        if appendfsync == "always":
            return (
                f"{waits} and the server fsyncs before it replies (appendfsync always): it "
                "survives a kill -9 of Redis and a crash of its host"
            )
        if appendfsync == "everysec":
            return (
                f"{waits}: it survives a kill -9 of Redis, NOT a crash of its host: under "
                "appendfsync everysec the server confirms before its fsync (measured: 335 of "
                "5,688 acknowledged lost to host crashes); set appendfsync always for both, "
                "and about 10x the speed (each 2xx now waits for the next fsync)"
            )
        return (
            f"{waits}: it survives a kill -9 of Redis; a crash of its host only if the server "
            "runs appendfsync always, which this Redis user may not read (CONFIG GET)"
        )

    def _promise(self, text: str, *, at_risk: bool) -> Promise:
        resolved = Durability(self.mode, self.configured.replicas)
        label = str(self.configured)
        if self.configured.mode == "auto":
            label = f"auto -> {resolved}"
        return Promise(resolved, f"durability {label}: {text}", at_risk)
